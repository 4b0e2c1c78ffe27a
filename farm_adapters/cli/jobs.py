"""Following jobs: ``jobs``, ``status``, ``logs``, ``stop``, ``restart``."""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import click

from ..listing import farm_rows as _farm_rows
from ..listing import journal_rows as _journal_rows
from ..listing import task_rows as _task_rows
from ._common import (
    EXIT_FAILED,
    JOB_TARGET_HELP,
    MAX_LOG_OFFSET,
    STATE_STYLE,
    STATES,
    Context,
    cli,
    complete_job_id,
    complete_target,
    console,
    dump,
    esc,
    fmt_full_time,
    fmt_time,
    handle_errors,
    job_json,
    pass_ctx,
    state_text,
    still_running,
    warn,
)


def parse_since(text: str) -> float:
    """``2d``, ``12h``, ``30m``, ``90s``, ``1w`` ago, or an ISO date: a POSIX time."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        scale = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return time.time() - float(match.group(1)) * scale
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: write a duration like 2d, 12h, 30m, or a date like 2026-11-22"
        ) from None


@cli.command(
    epilog="""\b
Examples:
  farm-adapters jobs
  farm-adapters jobs --state running --state queued --since 2d
  farm-adapters jobs --name 'shot010*' --user ana --json
  farm-adapters jobs --target studio-farm   (every job on that farm)"""
)
@click.option(
    "-t",
    "--target",
    shell_complete=complete_target,
    help="List every job this target's farm holds (not only this machine's), filtered.",
)
@click.option(
    "-s",
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only jobs in this state (repeatable).",
)
@click.option("--name", "name_glob", help="Only jobs whose name matches this glob, e.g. 'shot*'.")
@click.option("-u", "--user", help="Only jobs submitted by this user.")
@click.option("--since", help="Only jobs submitted since: 2d, 12h, 30m, or a date (2026-11-22).")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=50,
    show_default=True,
    help="Show at most this many rows, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def jobs(
    obj: Context,
    target: str | None,
    states: tuple[str, ...],
    name_glob: str | None,
    user: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List jobs submitted from this machine (the journal), newest first.

    Every journal row is listed: a row whose farm cannot be read now keeps its last
    known state and is marked (unreachable, unknown to the farm, target not
    configured)."""
    obj.read_only = True
    with handle_errors(obj.debug):
        since_ts = parse_since(since) if since else None
        problems: list[str] = []
        if target is not None:
            if user:
                raise click.UsageError(
                    "--user filters this machine's journal; a farm's job list does not "
                    "say who submitted: drop --target or --user"
                )
            rows = _farm_rows(obj, target, states, name_glob, since_ts, limit)
        else:
            rows, problems = _journal_rows(obj, states, name_glob, user, since_ts, limit)
        if as_json:
            dump({"jobs": [r["json"] for r in rows], "errors": problems})
        else:
            _print_table(rows)
        for problem in problems:
            warn(problem)


def _print_table(rows: list[dict[str, Any]]) -> None:
    from ._print import Column, Output

    out = Output()
    if not rows:
        out.line("no jobs")
        return
    cells = []
    for row in rows:
        done, total = row["finished_tasks"], row["total_tasks"]
        state = row["state"] + ("?" if row["mark"] else "")
        cells.append(
            (
                row["id"],
                row["name"],
                row["target"],
                state,
                f"{done}/{total}" if total is not None else "?",
                fmt_time(row["submitted_at"]),
            )
        )
    headers = ("id", "name", "target", "state", "tasks", "submitted")
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    widths[2] = min(widths[2], 14)
    # Every column but the name keeps its full width; the name takes what is left of
    # the terminal (at least 8), ellipsised: one line per job at 80 columns.
    rest = sum(widths) - widths[1] + len(headers) - 1
    widths[1] = max(8, min(widths[1], out.width - rest))
    columns = [Column(h, widths[i], right=h == "tasks") for i, h in enumerate(headers)]
    table = []
    for row, (job_id, name, target, state, tasks, submitted) in zip(rows, cells, strict=True):
        shown = (state, "dim") if row["mark"] else (state, STATE_STYLE.get(row["state"], "white"))
        table.append([(job_id, ""), (name, ""), (target, ""), shown, (tasks, ""), (submitted, "")])
    out.table(columns, table, left=0)
    marked: dict[str, list[str]] = {}
    for row in rows:
        if row["mark"]:
            marked.setdefault(row["mark"], []).append(row["target"])
    for mark, names in marked.items():
        where = ", ".join(sorted(set(names)))
        out.line(
            (
                f"?: last known state; target {where}: {mark} "
                f"({len(names)} job{'s' if len(names) != 1 else ''})",
                "dim",
            )
        )


# -- one job -----------------------------------------------------------------------------


@cli.command(
    epilog="""\b
Examples:
  farm-adapters status 3f9c2a1b7d4e
  farm-adapters status 3f9c2a1b7d4e --tasks
  farm-adapters status 3f9c2a1b7d4e --json"""
)
@click.argument("job_id", shell_complete=complete_job_id)
@click.option("-t", "--target", help=JOB_TARGET_HELP, shell_complete=complete_target)
@click.option("--tasks", "show_tasks", is_flag=True, help="One line per task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def status(obj: Context, job_id: str, target: str | None, show_tasks: bool, as_json: bool) -> None:
    """Show one job's state, task counts and times."""
    obj.read_only = True
    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        job = backend.get_job(job_id)
        from ..journal import Journal

        # The last state seen, for `jobs` to show when the farm cannot be asked.
        journal = Journal()
        if journal.path.exists():
            journal.update_states(
                [(backend.target, job_id, job.state.value, job.finished_tasks, job.total_tasks)]
            )
        tasks = _task_rows(backend, job_id) if show_tasks else None
        if as_json:
            data = job_json(job)
            if tasks is not None:
                data["tasks"] = tasks
            dump(data)
            return
        from ._print import Output

        out = Output()
        state = str(getattr(job.state, "value", job.state))
        out.line(
            (job.id, "bold"),
            f" {job.name}  ",
            (state, STATE_STYLE.get(state, "white")),
            f"  target {job.target or backend.target}",
        )
        out.line(f"tasks: {_task_summary(job)}")
        for label, value in (
            ("submitted", job.submitted_at),
            ("started", job.started_at),
            ("finished", job.finished_at),
        ):
            if value:
                out.line(f"{label}: {fmt_full_time(value)}")
        if job.message:
            out.line(f"message: {job.message}")
        if tasks is not None:
            _print_tasks(tasks)


def _task_summary(job: Any) -> str:
    """``3 of 6 completed, 1 failed, 2 stopped``: never reads as all done when none
    completed."""
    order = list(STATES)
    counts = {str(getattr(k, "value", k)): n for k, n in job.task_counts.items() if n}
    completed = counts.get("completed", 0)
    parts = [f"{completed} of {job.total_tasks} completed"]
    parts += [
        f"{n} {s}"
        for s, n in sorted(counts.items(), key=lambda kv: order.index(kv[0]))
        if s != "completed"
    ]
    return ", ".join(parts)


def _print_tasks(tasks: list[dict[str, Any]]) -> None:
    from ._print import Column, Output

    rows = []
    for t in tasks:
        started, finished = t.get("started_at"), t.get("finished_at")
        duration = ""
        if started:
            seconds = (finished or time.time()) - started
            duration = _fmt_duration(seconds)
        rows.append(
            [
                (str(t["index"]), ""),
                (t.get("frames") or "-", ""),
                (t["state"], STATE_STYLE.get(t["state"], "white")),
                (str(t.get("attempt") or 0), ""),
                ("" if t.get("exit_code") is None else str(t["exit_code"]), ""),
                (duration, ""),
            ]
        )
    headers = ("task", "frames", "state", "attempt", "exit", "duration")
    Output().table([Column(h) for h in headers], rows)


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _read_all(backend: Any, job_id: str, offset: int) -> tuple[str, int]:
    """The log from ``offset`` to its current end, and that end's offset."""
    parts = []
    while True:
        chunk = backend.get_render_log(job_id, offset)
        parts.append(chunk.text)
        if chunk.next_offset == offset or not chunk.text:
            return "".join(parts), offset
        offset = chunk.next_offset


class _Stamper:
    """Puts the local time at the start of each line of a stream of text pieces."""

    def __init__(self) -> None:
        self.at_start = True

    def __call__(self, text: str) -> str:
        if not text:
            return text
        now = time.strftime("%H:%M:%S ")
        out = []
        for line in text.splitlines(keepends=True):
            out.append((now if self.at_start else "") + line)
            self.at_start = line.endswith("\n")
        return "".join(out)


def _print_timed(
    backend: Any, job_id: str, task: int | None, tail: int | None, show: Any, raw: bool
) -> bool:
    """Print the log with the time each line was written, and True; or, where the
    backend keeps no such times, say so (never invent them) and return False so the
    log is printed without them."""
    read = getattr(backend, "get_timed_lines", None)
    lines = read(job_id) if read is not None else None
    if lines is None:
        what = "this job's log" if read is not None else "its logs"
        warn(
            f"backend {backend.name!r} (target {backend.target}) keeps no time per line for "
            f"{what}; printing the log without times (with --follow, lines are stamped "
            f"as they arrive)"
        )
        return False
    if task is not None:
        lines = [line for line in lines if line[0] == task]
    several = len({index for index, _, _ in lines if index is not None}) > 1
    today = time.strftime("%Y-%m-%d")
    out = []
    for index, when, line in lines:
        if when is None:
            stamp = " " * 8  # written before times were recorded: none is made up
        elif time.strftime("%Y-%m-%d", time.localtime(when)) == today:
            stamp = time.strftime("%H:%M:%S", time.localtime(when))
        else:
            stamp = time.strftime("%m-%d %H:%M:%S", time.localtime(when))
        prefix = f"[{index}] " if several and index is not None else ""
        out.append(f"{stamp} {prefix}{line}")
    if tail is not None:
        out = out[-tail:] if tail else []
    click.echo(show("".join(out)), nl=False, color=raw or None)
    return True


#: Colour and other terminal codes (CSI, OSC, two-byte escapes), stripped unless --raw.
_ANSI = r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]"


@cli.command(
    epilog="""\b
Examples:
  farm-adapters logs 3f9c2a1b7d4e
  farm-adapters logs 3f9c2a1b7d4e --task 3 --tail 50
  farm-adapters logs 3f9c2a1b7d4e --follow --tail 20 --timestamps"""
)
@click.argument("job_id", shell_complete=complete_job_id)
@click.option("-t", "--target", help=JOB_TARGET_HELP, shell_complete=complete_target)
@click.option("--follow", is_flag=True, help="Keep printing until the job ends.")
@click.option("--task", "task", type=click.IntRange(0), help="Only this task's output.")
@click.option("--tail", type=click.IntRange(0), help="Only the last N lines.")
@click.option(
    "--timestamps",
    is_flag=True,
    help="Start each line with the time it was written (with --follow: the time it came).",
)
@click.option("--raw", is_flag=True, help="Keep colour codes (ANSI) as the farm sent them.")
@click.option(
    "--offset",
    type=click.IntRange(0, MAX_LOG_OFFSET),
    default=0,
    help="Start at this byte offset of the log.",
)
@pass_ctx
def logs(
    obj: Context,
    job_id: str,
    target: str | None,
    follow: bool,
    task: int | None,
    tail: int | None,
    timestamps: bool,
    raw: bool,
    offset: int,
) -> None:
    """Print a job's render log (render-node paths shown as this machine's).

    Where the backend knows which task wrote a line (local does), the line starts with
    the task's number: [3]."""
    obj.read_only = True
    with handle_errors(obj.debug, interrupted=f"stopped following; job {job_id} goes on"):
        backend = obj.backend_for_job(job_id, target)
        mapper = backend.path_mapper
        mapped = mapper.text_to_local if mapper else (lambda text: text)

        def show(text: str) -> str:
            text = mapped(text)
            return text if raw else re.sub(_ANSI, "", text)

        if follow and task is not None:
            raise click.UsageError(
                "--follow streams the whole job's log (each line names its task when the "
                "job ends); drop --task, or drop --follow to read one task"
            )
        if timestamps and not follow:
            if offset:
                raise click.UsageError(
                    "--timestamps reads the log line by line from its start; drop --offset"
                )
            if _print_timed(backend, job_id, task, tail, show, raw):
                return
        if follow:
            if tail is not None:  # the last lines so far, then what comes
                text, offset = _read_all(backend, job_id, offset)
                lines = text.splitlines(keepends=True)
                click.echo(show("".join(lines[-tail:] if tail else [])), nl=False)
            from ..submit import follow_log

            stamp = _Stamper() if timestamps else None
            for text in follow_log(backend, job_id, offset=offset):
                shown = show(text)
                click.echo(stamp(shown) if stamp else shown, nl=False, color=raw or None)
            return
        read: Any
        if task is not None:
            read = getattr(backend, "get_task_log", None)
            if read is None:
                from ..errors import UnsupportedOperationError

                raise UnsupportedOperationError(
                    f"backend {backend.name!r} keeps one log per job, not per task; drop --task"
                )
        else:
            read = backend.get_render_log

        def chunks(offset: int) -> Any:
            while True:
                chunk = read(job_id, task, offset) if task is not None else read(job_id, offset)
                yield chunk.text
                if chunk.next_offset == offset or not chunk.text:
                    return
                offset = chunk.next_offset

        tagged = getattr(backend, "get_task_lines", None)
        pairs = tagged(job_id) if task is None and offset == 0 and tagged is not None else []
        if len({index for index, _ in pairs if index is not None}) > 1:
            # Each line with its task, so the output of parallel tasks reads apart
            # (a job of one task, and --offset, show the log as written).
            text = "".join(
                (f"[{index}] " if index is not None else "") + line for index, line in pairs
            )
            if tail is not None:
                text = "".join(text.splitlines(keepends=True)[-tail:] if tail else [])
            click.echo(show(text), nl=False, color=raw or None)
            return
        if tail is not None:
            everything = "".join(chunks(offset)).splitlines(keepends=True)
            last = everything[-tail:] if tail else []
            click.echo(show("".join(last)), nl=False, color=raw or None)
            return
        for text in chunks(offset):
            click.echo(show(text), nl=False, color=raw or None)


@cli.command(
    epilog="""\b
Examples:
  farm-adapters stop 3f9c2a1b7d4e
  farm-adapters stop 3f9c2a1b7d4e --wait"""
)
@click.argument("job_id", shell_complete=complete_job_id)
@click.option("-t", "--target", help=JOB_TARGET_HELP, shell_complete=complete_target)
@click.option("--wait", "wait_", is_flag=True, help="Wait until the job has stopped.")
@pass_ctx
def stop(obj: Context, job_id: str, target: str | None, wait_: bool) -> None:
    """Stop a job (its running tasks get SIGTERM, then SIGKILL)."""
    from ..submit import wait

    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        backend.stop_job(job_id)
        if wait_:
            delay = getattr(backend, "stop_delay_hint", None)
            note = f" (the farm may take up to {delay:g} s)" if delay else ""
            click.echo(f"waiting for job {job_id}'s tasks to stop{note}...", err=True)
    with handle_errors(obj.debug, interrupted=f"stopped waiting; job {job_id} is stopping"):
        job = wait(backend, job_id, poll_interval=0.2) if wait_ else backend.get_job(job_id)
        console(stderr=True).print(f"job {esc(job_id)} {state_text(job.state)}")


@cli.command(
    epilog="""\b
Examples:
  farm-adapters restart 3f9c2a1b7d4e --wait"""
)
@click.argument("job_id", shell_complete=complete_job_id)
@click.option("-t", "--target", help=JOB_TARGET_HELP, shell_complete=complete_target)
@click.option("--wait", "wait_", is_flag=True, help="Show progress until the job ends.")
@pass_ctx
def restart(obj: Context, job_id: str, target: str | None, wait_: bool) -> None:
    """Run a finished, failed or stopped job again (a new attempt)."""
    from .run import wait_with_progress

    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        backend.restart_job(job_id)
        job = backend.get_job(job_id)
    with handle_errors(obj.debug, interrupted=still_running(job_id)):
        if wait_:
            job = wait_with_progress(obj, backend, job)
        console(stderr=True).print(f"job {esc(job_id)} {state_text(job.state)}")
        if wait_ and job.state.value != "completed":
            sys.exit(EXIT_FAILED)
