"""The monitor's HTML: pages from the shipped templates, and the fragments the page's
script swaps in on every update. Every job, user and farm text goes through
:func:`esc`; templates are :class:`string.Template` files whose values are escaped
here, before substitution."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from fnmatch import fnmatchcase
from html import escape
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import quote

from ..cli._common import FINAL_STATES, STATES
from ._poller import JobDetail, Snapshot, TargetStatus

FINAL = frozenset(FINAL_STATES)
#: Which actions each capability allows, and in which states.
ACTIONS: dict[str, tuple[str, Callable[[str], bool]]] = {
    "stop": ("stop", lambda state: state not in FINAL),
    "restart": ("restart", lambda state: state in FINAL),
    "priority": ("priority", lambda state: state not in FINAL),
    "delete": ("delete", lambda state: state in FINAL),
}


def esc(value: object) -> str:
    """Text made safe inside HTML elements and quoted attributes."""
    return escape("" if value is None else str(value), quote=True)


def job_url(target: str, job_id: str, kind: str = "job") -> str:
    return f"/{kind}/{quote(target, safe='')}/{quote(job_id, safe='')}"


@functools.cache
def template(name: str) -> Template:
    text = resources.files(__package__).joinpath("templates").joinpath(name).read_text("utf-8")
    return Template(text)


def page(
    *,
    title: str,
    page_name: str,
    body: str,
    csrf: str,
    interval: float,
    snapshot: Snapshot,
    data: dict[str, str] | None = None,
) -> str:
    """A whole page around ``body`` (already HTML)."""
    attrs = "".join(f' data-{k}="{esc(v)}"' for k, v in (data or {}).items())
    return template("base.html").substitute(
        csrf=esc(csrf),
        title=esc(title),
        page=esc(page_name),
        interval=esc(f"{interval:g}"),
        data=attrs,
        jobs_current=' aria-current="page"' if page_name == "jobs" else "",
        targets_current=' aria-current="page"' if page_name == "targets" else "",
        updated=esc(updated_text(snapshot)),
        body=body,
    )


def updated_text(snapshot: Snapshot) -> str:
    from ..cli._common import fmt_full_time

    if not snapshot.generation:
        return "asking the farms..."
    from datetime import datetime

    return "updated " + fmt_full_time(datetime.fromtimestamp(snapshot.taken_at).astimezone())


# -- jobs ------------------------------------------------------------------------------


def filter_rows(rows: Any, filters: dict[str, str]) -> list[dict[str, Any]]:
    """Rows matching the filters (target, state: exact; name: a glob, or a part of
    the name without glob characters; user: exact), newest first."""
    target, state = filters.get("target"), filters.get("state")
    name, user = filters.get("name", "").strip(), filters.get("user", "").strip()
    out = []
    for row in rows:
        if target and row["target"] != target:
            continue
        if state and row["state"] != state:
            continue
        if name:
            text = str(row["name"] or "")
            glob = any(c in name for c in "*?[")
            if not (fnmatchcase(text, name) if glob else name.lower() in text.lower()):
                continue
        if user and (row.get("user") or "") != user:
            continue
        out.append(row)
    out.sort(key=lambda r: r["submitted_at"] or 0.0, reverse=True)
    return out


def progress(done: int | None, total: int | None, state: str) -> str:
    if total is None:
        return '<span class="muted">?</span>'
    value = done or 0
    return (
        f'<progress class="s-{esc(state)}" max="{max(total, 1)}" value="{value}"></progress> '
        f'<span class="count">{value}/{total}</span>'
    )


def state_badge(state: str, mark: str = "") -> str:
    if mark:
        return (
            f'<span class="badge stale" title="last known state; {esc(mark)}">{esc(state)}?</span>'
        )
    return f'<span class="badge s-{esc(state)}">{esc(state)}</span>'


def job_rows(rows: list[dict[str, Any]]) -> str:
    from ..cli._common import fmt_time

    if not rows:
        return '<tr class="empty"><td colspan="7">no jobs</td></tr>'
    out = []
    for row in rows:
        state, mark = str(row["state"]), str(row.get("mark") or "")
        out.append(
            f'<tr data-id="{esc(row["id"])}" data-target="{esc(row["target"])}" '
            f'data-state="{esc(state)}"{" class=marked" if mark else ""}>'
            f'<td><a href="{esc(job_url(row["target"], row["id"]))}"><code>'
            f"{esc(row['id'])}</code></a></td>"
            f'<td class="name">{esc(row["name"])}</td>'
            f"<td>{esc(row['target'])}</td>"
            f"<td>{esc(row.get('user') or '')}</td>"
            f"<td>{state_badge(state, mark)}</td>"
            f'<td class="tasks">{progress(row["finished_tasks"], row["total_tasks"], state)}</td>'
            f"<td>{esc(fmt_time(row['submitted_at']))}</td></tr>"
        )
    return "\n".join(out)


def marks(rows: list[dict[str, Any]]) -> str:
    """What the ``?`` means, per mark, as ``jobs`` prints it under its table."""
    marked: dict[str, list[str]] = {}
    for row in rows:
        if row.get("mark"):
            marked.setdefault(row["mark"], []).append(row["target"])
    lines = []
    for mark, names in marked.items():
        where = ", ".join(sorted(set(names)))
        n = len(names)
        lines.append(
            f"?: last known state; target {esc(where)}: {esc(mark)} "
            f"({n} job{'s' if n != 1 else ''})"
        )
    return "<br>".join(lines)


def problems(lines: Any) -> str:
    return "".join(f'<p class="problem">{esc(line)}</p>' for line in lines)


def options(values: list[str], chosen: str, everything: str) -> str:
    out = [f'<option value="">{esc(everything)}</option>']
    for value in values:
        selected = " selected" if value == chosen else ""
        out.append(f'<option value="{esc(value)}"{selected}>{esc(value)}</option>')
    return "".join(out)


def jobs_body(snapshot: Snapshot, filters: dict[str, str]) -> str:
    rows = filter_rows(snapshot.rows, filters)
    names = sorted({t.name for t in snapshot.targets} | {r["target"] for r in snapshot.rows})
    return template("jobs.html").substitute(
        target_options=options(names, filters.get("target", ""), "all"),
        state_options=options(list(STATES), filters.get("state", ""), "all"),
        name=esc(filters.get("name", "")),
        user=esc(filters.get("user", "")),
        problems=problems(snapshot.problems),
        rows=job_rows(rows),
        marks=marks(rows),
    )


# -- targets ---------------------------------------------------------------------------


def target_rows(targets: tuple[TargetStatus, ...]) -> str:
    if not targets:
        return '<tr class="empty"><td colspan="5">asking the targets...</td></tr>'
    out = []
    for t in targets:
        if t.reachable:
            reach = '<span class="badge s-completed">reachable</span>'
        else:
            reach = (
                f'<span class="badge s-failed">{esc(t.mark or "unreachable")}</span>'
                f'<div class="problem small">{esc(t.problem)}</div>'
            )
        caps = " ".join(f'<span class="cap">{esc(c)}</span>' for c in t.capabilities)
        out.append(
            f'<tr data-target="{esc(t.name)}" data-reachable="{str(t.reachable).lower()}">'
            f"<td><b>{esc(t.name)}</b>{' (default)' if t.default else ''}</td>"
            f"<td>{esc(t.backend)}</td><td>{reach}</td><td>{caps}</td>"
            f"<td>{esc(t.description)}</td></tr>"
        )
    return "\n".join(out)


# -- one job ---------------------------------------------------------------------------


def summary(detail: JobDetail, row: dict[str, Any] | None) -> str:
    """Name, id, target, state and progress: from the followed job once read, else
    from the jobs snapshot's row."""
    from ..cli._common import fmt_full_time

    job = detail.job
    if job is not None:
        state, mark = job.state.value, ""
        name, done, total = job.name, job.finished_tasks, job.total_tasks
        times = [
            (label, fmt_full_time(value))
            for label, value in (
                ("submitted", job.submitted_at),
                ("started", job.started_at),
                ("finished", job.finished_at),
            )
            if value
        ]
        message = job.message
    elif row is not None:
        state, mark = str(row["state"]), str(row.get("mark") or "")
        name, done, total = row["name"], row["finished_tasks"], row["total_tasks"]
        times, message = [], ""
    else:
        return f"<h1><code>{esc(detail.job_id)}</code></h1><p class='muted'>reading the job...</p>"
    when = " · ".join(f"{label} {esc(value)}" for label, value in times)
    return (
        f'<h1>{esc(name) or "<i>unnamed</i>"} <code class="id">{esc(detail.job_id)}</code></h1>'
        f'<p class="meta">target <b>{esc(detail.target)}</b> · '
        f'<span id="job-state" data-state="{esc(state)}">{state_badge(state, mark)}</span></p>'
        f'<div class="bigbar">{progress(done, total, state)}</div>'
        f'<p class="meta muted">{when}</p>'
        + (f'<p class="message">{esc(message)}</p>' if message else "")
    )


def actions(detail: JobDetail, state: str | None) -> str:
    """The buttons the backend's capabilities allow in this state (none while the
    state is not known)."""
    if state is None:
        return ""
    out = []
    for cap, (action, allowed) in ACTIONS.items():  # allowed: state -> bool
        if cap not in detail.capabilities or not allowed(state):
            continue
        if action == "priority":
            out.append(
                '<span class="priority"><input id="priority-value" type="number" min="0" '
                'max="100" value="50" aria-label="priority 0-100">'
                '<button data-action="priority">Set priority</button></span>'
            )
        else:
            danger = " danger" if action in ("stop", "delete") else ""
            out.append(
                f'<button class="action{danger}" data-action="{action}">{action.title()}</button>'
            )
    return "".join(out)


def tasks(detail: JobDetail) -> str:
    """One cell per task, coloured by state, with its frames and attempts."""
    if detail.tasks is None:
        if detail.generation:
            return '<p class="muted">this backend does not list tasks one by one</p>'
        return '<p class="muted">reading tasks...</p>'
    cells = []
    for t in detail.tasks:
        state = str(t.get("state") or "unknown")
        frames = t.get("frames") or ""
        attempt = t.get("attempt") or 0
        tip = f"task {t['index']} · frames {frames or '-'} · {state} · attempt {attempt}"
        if t.get("exit_code") is not None:
            tip += f" · exit {t['exit_code']}"
        if t.get("message"):
            tip += f" · {t['message']}"
        cells.append(
            f'<div class="task s-{esc(state)}" data-state="{esc(state)}" title="{esc(tip)}">'
            f'<b>{esc(t["index"])}</b><span class="frames">{esc(frames)}</span>'
            f"<small>&times;{esc(attempt)}</small></div>"
        )
    return '<div class="grid">' + "".join(cells) + "</div>" if cells else "<p>no tasks</p>"


def outputs(detail: JobDetail) -> str:
    """Thumbnails of the image outputs, the last rendered frame large, other files
    listed."""
    from ..thumbnails import is_image

    files = detail.outputs
    if not files:
        return '<p class="muted">no output files yet</p>'
    images = [(i, f) for i, f in enumerate(files) if is_image(f.path)]
    out = []
    if images:
        last_i, last = max(images, key=lambda p: (p[1].mtime, p[1].frame or 0))
        version = quote(f"{last.mtime:.6f}")
        large = job_url(detail.target, detail.job_id, "frame") + f"?n={last_i}&v={version}"
        out.append(
            f'<figure class="last"><img id="last-frame" src="{esc(large)}" '
            f'alt="last rendered frame"><figcaption>last rendered: '
            f"{esc(os.path.basename(last.path))}</figcaption></figure>"
        )
        out.append('<div class="thumbs">')
        for i, f in images:
            v = quote(f"{f.mtime:.6f}")
            thumb = job_url(detail.target, detail.job_id, "thumb") + f"?n={i}&v={v}"
            big = job_url(detail.target, detail.job_id, "frame") + f"?n={i}&v={v}"
            label = os.path.basename(f.path)
            out.append(
                f'<figure class="thumb"><a href="{esc(big)}" target="_blank" rel="noopener">'
                f'<img src="{esc(thumb)}" alt="{esc(label)}" loading="lazy"></a>'
                f"<figcaption>{esc(label)}</figcaption></figure>"
            )
        out.append("</div>")
    others = [f for f in files if not is_image(f.path)]
    if others:
        out.append('<ul class="files">')
        out += [f"<li>{esc(f.path)} <span class='muted'>{f.size:,} B</span></li>" for f in others]
        out.append("</ul>")
    return "".join(out)
