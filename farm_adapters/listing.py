"""The rows of ``farm-adapters jobs`` and the web monitor: every job of this machine's
journal with its state now (asked of each target at once, in threads, under one
deadline), or its last known state with a mark saying why it could not be read; a
farm's own job list; and a job's tasks one by one.

A row is a dict: id, name, target, state, finished_tasks, total_tasks, submitted_at
(POSIX time), mark ("" when the state is current), user (journal rows) and ``json``
(what ``jobs --json`` prints). The caller's ``obj`` is the command line's
:class:`~farm_adapters.cli._common.Context` (anything with ``backend(target,
**overrides)``, ``manager`` and ``targets``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from .errors import ConfigurationError, FarmAdapterError

__all__ = [
    "LOCAL_DEADLINE",
    "NOT_CONFIGURED",
    "PLUGIN_ERROR",
    "PROBE_DEADLINE",
    "UNKNOWN_TO_FARM",
    "UNREACHABLE",
    "farm_rows",
    "job_row",
    "journal_rows",
    "probe_class",
    "row_from_entry",
    "task_rows",
]

#: How long `jobs` waits for all farms together; a farm that has not answered by then
#: is marked unreachable (its rows keep their last known state).
PROBE_DEADLINE = 1.0
#: A backend without a url reads this machine's own store: it is waited for.
LOCAL_DEADLINE = 60.0
#: Marks of rows whose state could not be read now.
UNREACHABLE = "unreachable"
UNKNOWN_TO_FARM = "unknown to the farm"
NOT_CONFIGURED = "target not configured"
PLUGIN_ERROR = "plug-in error"


def _describe_bug(exc: BaseException, obj: Any) -> str:
    from .cli._common import describe_bug

    return describe_bug(exc, getattr(obj, "_manager", None))


def probe_class() -> Any:
    """The probe thread class (threading is imported only when listing)."""
    import threading

    class _Probe(threading.Thread):
        """Reads one target's jobs in the background; daemon, so a farm that never answers
        cannot hold the command past its deadline."""

        def __init__(self, obj: Any, target: str, ids: set[str]) -> None:
            super().__init__(daemon=True, name=f"probe-{target}")
            self.obj, self.target, self.ids = obj, target, ids
            self.found: dict[str, Any] = {}
            self.problem: str | None = None
            self.mark = UNREACHABLE

        def prepare(self) -> None:
            """Build the backend (imports, settings; no network) before the clock starts,
            so only the farm's answer counts against the deadline."""
            self.backend: Any = None
            try:
                self.backend = self.obj.backend(self.target, timeout=1.0, retries=0)
            except Exception as exc:  # a plug-in's bug must not hide the other targets
                self._failed(exc)

        def _failed(self, exc: Exception) -> None:
            """Mark this target's rows with what went wrong."""
            if isinstance(exc, ConfigurationError):
                self.mark, self.problem = NOT_CONFIGURED, str(exc)
            elif isinstance(exc, FarmAdapterError):
                self.problem = str(exc)
            else:
                self.mark, self.problem = PLUGIN_ERROR, _describe_bug(exc, self.obj)

        @property
        def remote(self) -> bool:
            """Whether the backend talks to a farm over the network (its settings have a
            url): only those are given up on; this machine's own store is always read."""
            return hasattr(getattr(self.backend, "settings", None), "url")

        def run(self) -> None:
            if self.backend is None:
                return
            try:
                for job in self.backend.get_jobs():
                    if job.id in self.ids:
                        self.found[job.id] = job
            except Exception as exc:  # a plug-in's bug must not hide the other targets
                self._failed(exc)

    return _Probe


def row_from_entry(entry: Any, mark: str) -> dict[str, Any]:
    """A row of a journal entry's last known state, marked with why it is not current."""
    from datetime import datetime, timezone

    row = {
        "id": entry.job_id,
        "name": entry.name,
        "target": entry.target,
        "state": entry.state or "unknown",
        "finished_tasks": entry.finished_tasks,
        "total_tasks": entry.total_tasks,
        "submitted_at": entry.submitted_at,
        "mark": mark,
    }
    row["json"] = {
        **{k: v for k, v in row.items() if k != "submitted_at"},
        "backend": entry.backend,
        "submitted_at": datetime.fromtimestamp(entry.submitted_at, timezone.utc).isoformat(),
        "last_known": True,
    }
    return row


def farm_rows(
    obj: Any,
    farm: str,
    states: tuple[str, ...],
    name_glob: str | None,
    since_ts: float | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Every job target ``farm`` holds (not only this machine's), filtered."""
    from fnmatch import fnmatchcase

    from .models import JobState

    wanted = [JobState(s) for s in states] or None
    found = obj.backend(farm).get_jobs(wanted)
    rows = []
    for job in found:
        if name_glob and not fnmatchcase(job.name, name_glob):
            continue
        if since_ts and job.submitted_at and job.submitted_at.timestamp() < since_ts:
            continue
        rows.append(job_row(job, farm))
        if len(rows) >= limit:
            break
    return rows


def job_row(job: Any, target: str) -> dict[str, Any]:
    """A row of a job as its farm answered now (``job`` keeps the Job itself)."""
    from .cli._common import job_json

    return {
        "id": job.id,
        "name": job.name,
        "target": job.target or target,
        "state": job.state.value,
        "finished_tasks": job.finished_tasks,
        "total_tasks": job.total_tasks,
        "submitted_at": job.submitted_at.timestamp() if job.submitted_at else None,
        "mark": "",
        "json": {**job_json(job), "mark": "", "last_known": False},
        "job": job,
    }


def journal_rows(
    obj: Any,
    states: tuple[str, ...],
    name_glob: str | None,
    user: str | None,
    since_ts: float | None,
    limit: int,
    *,
    also: Iterable[str] = (),
    reached: dict[str, tuple[str, str | None]] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """This machine's journal rows, newest first, each with its state now where its
    target answered within :data:`PROBE_DEADLINE` (this machine's own store is waited
    for), else its last known state and a mark; and one problem line per target that
    could not be read. The states read are saved in the journal.

    ``also`` names targets to ask even without a journal row (the monitor's targets
    page); ``reached``, when given, is filled with target -> (mark, problem or None)."""
    from .journal import Journal

    journal = Journal()
    entries = journal.query(
        name_glob=name_glob,
        user=user,
        since=since_ts,
        states=states,
        limit=None if states else limit,
    )
    if states:  # rows whose state may have changed: read enough to fill the limit
        entries = entries[: max(limit * 4, limit + 200)]
    by_target: dict[str, set[str]] = {name: set() for name in also}
    for entry in entries:
        by_target.setdefault(entry.target, set()).add(entry.job_id)
    if by_target:  # built once here, not raced by the probe threads
        obj.prepare_backends(by_target)
    probe_type = probe_class()
    probes = [probe_type(obj, name, ids) for name, ids in by_target.items()]
    for probe in probes:
        probe.prepare()
    for probe in probes:
        probe.start()
    deadline = time.monotonic() + PROBE_DEADLINE
    for probe in sorted(probes, key=lambda p: not p.remote):
        probe.join(max(0.0, deadline - time.monotonic()) if probe.remote else LOCAL_DEADLINE)
    results = {p.target: p for p in probes}
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: list[tuple[str, str, str, int, int]] = []
    for probe in probes:
        if probe.is_alive():
            problems.append(
                f"target {probe.target}: no answer within {PROBE_DEADLINE:g} s; its jobs "
                f"show their last known state"
            )
        elif probe.problem is not None:
            problems.append(f"target {probe.target}: {probe.problem}")
        if reached is not None:
            if probe.is_alive():
                reached[probe.target] = (UNREACHABLE, f"no answer within {PROBE_DEADLINE:g} s")
            else:
                reached[probe.target] = (probe.mark, probe.problem)
    for entry in entries:
        probe = results[entry.target]
        if probe.is_alive() or probe.problem is not None:
            row = row_from_entry(entry, probe.mark)
        elif entry.job_id in probe.found:
            job = probe.found[entry.job_id]
            row = job_row(job, entry.target)
            row["name"] = row["json"]["name"] = job.name or entry.name
            row["submitted_at"] = row["submitted_at"] or entry.submitted_at
            seen.append(
                (entry.target, entry.job_id, job.state.value, job.finished_tasks, job.total_tasks)
            )
        else:
            row = row_from_entry(entry, UNKNOWN_TO_FARM)
        row["user"] = entry.user
        if states and row["state"] not in states:
            continue
        rows.append(row)
        if len(rows) >= limit:
            break
    journal.update_states(seen)
    return rows, problems


def task_rows(backend: Any, job_id: str) -> list[dict[str, Any]]:
    """One dict per task of the job (the backend's optional ``get_task_details``);
    :class:`~farm_adapters.errors.UnsupportedOperationError` where it has none."""
    get = getattr(backend, "get_task_details", None)
    if get is None:
        from .errors import UnsupportedOperationError

        raise UnsupportedOperationError(
            f"backend {backend.name!r} (target {backend.target}) cannot list a job's tasks "
            f"one by one; `farm-adapters status {job_id}` shows the counts"
        )
    return list(get(job_id))
