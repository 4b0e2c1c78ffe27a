"""A read-only view of the local backend's store: how a job's row, task states and log
files are read and what they mean. The standard library only (no pydantic, no pluggy,
no package ``__init__``), so the command line can show a local job quickly.

:class:`~.plugin.LocalPlugin` answers through the same functions (and turns their
:class:`~farm_adapters._records.JobRecord` into a pydantic ``Job``), so both paths give
the same answer. :class:`LocalReader` is the view the command line uses: it never
writes; a job whose supervisor is gone, which the plug-in must settle (a write), is
answered by the full plug-in instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from farm_adapters._private import connect_readonly
from farm_adapters._records import JobRecord, JobState, LogPiece, utc
from farm_adapters.errors import BackendUnavailableError, InvalidRequestError, JobNotFoundError
from farm_adapters.logfile import LOG_CHUNK_LIMIT, complete_utf8, read_chunk

from . import machine
from .files import HEARTBEAT_FILE, SEGMENT, TIME_RECORD, TIMES_FILE

__all__ = ["LocalReader"]

#: A job whose supervisor never recorded itself within this many seconds, and which no
#: running supervisor claims, is failed.
SUPERVISOR_START_GRACE = 60.0


JOB_COLUMNS = (
    "id, name, render_context, submitted_at, started_at, finished_at, attempt, "
    "stop_requested, supervisor_pid, supervisor_start, message, log_dir"
)


def job_row(conn: sqlite3.Connection, job_id: str, backend: str = "local") -> tuple[Any, ...]:
    row = conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFoundError(job_id, backend=backend)
    return tuple(row)


def task_counts(conn: sqlite3.Connection, job_id: str) -> dict[JobState, int]:
    return {
        JobState(state): n
        for state, n in conn.execute(
            "SELECT state, COUNT(*) FROM tasks WHERE job_id = ? GROUP BY state", (job_id,)
        )
    }


def all_task_counts(
    conn: sqlite3.Connection, where: str = "", args: Sequence[object] = ()
) -> dict[str, dict[JobState, int]]:
    counts: dict[str, dict[JobState, int]] = {}
    for job_id, state, n in conn.execute(
        f"SELECT job_id, state, COUNT(*) FROM tasks{where} GROUP BY job_id, state", args
    ):
        counts.setdefault(job_id, {})[JobState(state)] = n
    return counts


def orphan_reason(db_path: Path, row: tuple[Any, ...], counts: dict[JobState, int]) -> str | None:
    """Why the job must be settled (its supervisor is gone while tasks are still
    active: killed, crashed, machine rebooted), or None when it need not be."""
    if all(s.final for s in counts):
        return None
    job_id, submitted_at, pid, start = row[0], row[3], row[8], row[9]
    if pid is None:
        if time.time() - submitted_at < SUPERVISOR_START_GRACE:
            return None
        if machine.find_supervisor(db_path, job_id) is not None:
            return None  # alive, and about to record itself
        return "the job's supervisor never started"
    if machine.is_alive(pid, start):
        return None
    return (
        f"the job's supervisor (pid {pid}) is gone: it was killed or the machine "
        f"restarted; see {row[11]}/supervisor.log, then restart the job"
    )


def stalled_for(pid: int | None, start: str | None, log_dir: str, timeout: float) -> float | None:
    """Seconds since a live supervisor last touched its heartbeat, when that is more
    than ``timeout``; else None."""
    try:
        age = time.time() - (Path(log_dir) / HEARTBEAT_FILE).stat().st_mtime
    except OSError:
        return None  # not started yet, or an older supervisor without a heartbeat
    if age <= timeout or not machine.is_alive(pid, start):
        return None
    return age


def job_record(
    row: tuple[Any, ...],
    counts: dict[JobState, int],
    *,
    backend: str,
    target: str | None,
    heartbeat_timeout: float,
) -> JobRecord:
    """What a job's row and task counts say about it."""
    (
        job_id,
        name,
        context,
        submitted,
        started,
        finished,
        attempt,
        stop_requested,
        pid,
        start,
        message,
        log_dir,
    ) = row
    job = JobRecord.from_task_states(
        counts,
        id=job_id,
        name=name,
        submitted_at=utc(submitted),
        # A job none of whose tasks has left the queue has not started.
        started_at=utc(started) if set(counts) - {JobState.QUEUED} else None,
        backend=backend,
        target=target,
        render_context=context,
        native_ids=[job_id],
        message=message,
    )
    if stop_requested and not job.state.final:
        job.state = JobState.STOPPING
    if job.state.final:
        job.finished_at = utc(finished)
    if not job.state.final:
        stalled = stalled_for(pid, start, log_dir, heartbeat_timeout)
        if stalled is not None:
            job.state = JobState.UNKNOWN
            job.message = (
                f"the job's supervisor (pid {pid}) has not reported for {stalled:.0f} s: "
                f"it is stopped (SIGSTOP, a debugger) or starved; its tasks' timeouts "
                f"cannot fire meanwhile. Resume it (kill -CONT {pid}) or stop the job"
            )
    if attempt > 1 and not job.message:
        job.message = f"attempt {attempt}"
    return job


def explain_failure(conn: sqlite3.Connection, job: JobRecord) -> JobRecord:
    """A failed job's message names the failed task and why (exit code, signal,
    timeout), and how many others failed, unless it already has a reason."""
    if job.state is not JobState.FAILED or (job.message and not job.message.startswith("attempt ")):
        return job
    first = conn.execute(
        "SELECT idx, frames, message, exit_code, COUNT(*) OVER () FROM tasks "
        "WHERE job_id = ? AND state = 'failed' ORDER BY idx LIMIT 1",
        (job.id,),
    ).fetchone()
    if first is None:
        return job
    idx, frames, reason, code, failed = first
    label = f"task {idx}"
    if frames:
        listed: list[str] = str(frames).split(",")
        label += (
            f" (frame {listed[0]})" if len(listed) == 1 else f" (frames {listed[0]}-{listed[-1]})"
        )
    if not reason and code is not None:
        reason = f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
    text = f"{label} failed: {reason or 'no reason recorded'}"
    if failed > 1:
        text += f"; {failed - 1} more task(s) failed"
    if job.message:
        text = f"{job.message}: {text}"
    job.message = text
    return job


def task_details(conn: sqlite3.Connection, job_id: str) -> list[dict[str, Any]]:
    """One dict per task, in order (see ``LocalPlugin.get_task_details``)."""
    job_row(conn, job_id)
    rows = conn.execute(
        "SELECT idx, frames, state, runs, exit_code, started_at, finished_at, message "
        "FROM tasks WHERE job_id = ? ORDER BY idx",
        (job_id,),
    ).fetchall()
    details = []
    for idx, frames, state, runs, code, started, finished, message in rows:
        listed = [f for f in str(frames or "").split(",") if f]
        label = listed[0] if len(listed) == 1 else f"{listed[0]}-{listed[-1]}" if listed else ""
        details.append(
            {
                "index": idx,
                "frames": label,
                "state": state,
                "attempt": runs,
                "exit_code": code,
                "started_at": started,
                "finished_at": finished,
                "message": message,
            }
        )
    return details


def _segments(log_dir: Path, task: int) -> list[tuple[int, int]] | None:
    """A task's (offset, length) ranges in the job's log, or None without an index."""
    try:
        raw = (log_dir / f"task-{task:05d}.idx").read_bytes()
    except FileNotFoundError:
        return None
    return [
        SEGMENT.unpack_from(raw, i) for i in range(0, len(raw) - SEGMENT.size + 1, SEGMENT.size)
    ]


def read_task_output(log_dir: Path, task: int, offset: int, limit: int) -> tuple[bytes, int]:
    """At most ``limit`` bytes of one task's output from ``offset``, and its size."""
    segments = _segments(log_dir, task)
    if segments is None:
        # A job run before output was stored once kept a whole file per task.
        text, _, size = read_chunk(log_dir / f"task-{task:05d}.log", offset, limit)
        return text.encode(), size
    size = sum(length for _, length in segments)
    out = bytearray()
    skip = offset
    with open(log_dir / "job.log", "rb") as log:
        for start, length in segments:
            if skip >= length:
                skip -= length
                continue
            log.seek(start + skip)
            out += log.read(min(length - skip, limit - len(out)))
            skip = 0
            if len(out) >= limit:
                break
    return bytes(out), size


def task_log(conn: sqlite3.Connection, job_id: str, task: int, offset: int) -> LogPiece:
    """One task's output from byte ``offset`` (see ``LocalPlugin.get_task_log``)."""
    if offset < 0:
        raise InvalidRequestError("offset must be 0 or more", field="offset")
    row = job_row(conn, job_id)
    found = conn.execute(
        "SELECT state FROM tasks WHERE job_id = ? AND idx = ?", (job_id, task)
    ).fetchone()
    if found is None:
        raise InvalidRequestError(
            f"job {job_id} has no task {task}; tasks are numbered from 0", field="task"
        )
    final = JobState(found[0]).final
    log_dir = Path(row[11])
    try:
        data, size = read_task_output(log_dir, task, offset, LOG_CHUNK_LIMIT)
    except OSError as exc:
        raise BackendUnavailableError(
            f"cannot read the log of task {task} in {log_dir}: {exc}"
        ) from exc
    data = complete_utf8(data)
    next_offset = offset + len(data)
    return LogPiece(
        job_id=job_id,
        text=data.decode("utf-8", errors="replace"),
        offset=offset,
        next_offset=next_offset,
        complete=final and next_offset >= size,
    )


def _placed_lines(
    conn: sqlite3.Connection, job_id: str
) -> tuple[Path, list[tuple[int | None, int, str]]]:
    """The job's log folder, and its log as (task index, byte offset, line) in the
    order written; the task is None for the job's own lines."""
    row = job_row(conn, job_id)
    total = conn.execute("SELECT COUNT(*) FROM tasks WHERE job_id = ?", (job_id,)).fetchone()[0]
    log_dir = Path(row[11])
    try:
        data = (log_dir / "job.log").read_bytes()
        owner: list[tuple[int, int, int]] = []
        for task in range(total):
            for start, length in _segments(log_dir, task) or []:
                owner.append((start, start + length, task))
    except OSError as exc:
        raise BackendUnavailableError(f"cannot read render log in {log_dir}: {exc}") from exc
    owner.sort()
    lines: list[tuple[int | None, int, str]] = []
    pos, k = 0, 0
    for raw_line in data.splitlines(keepends=True):
        while k < len(owner) and owner[k][1] <= pos:
            k += 1
        task_of = owner[k][2] if k < len(owner) and owner[k][0] <= pos else None
        lines.append((task_of, pos, raw_line.decode("utf-8", errors="replace")))
        pos += len(raw_line)
    return log_dir, lines


def task_lines(conn: sqlite3.Connection, job_id: str) -> list[tuple[int | None, str]]:
    """The job's log as (task index, line) pairs in the order written (see
    ``LocalPlugin.get_task_lines``)."""
    return [(task, line) for task, _, line in _placed_lines(conn, job_id)[1]]


def timed_lines(
    conn: sqlite3.Connection, job_id: str
) -> list[tuple[int | None, float | None, str]] | None:
    """The job's log as (task index, time written, line) in the order written, or
    None when its log has no times file (see ``LocalPlugin.get_timed_lines``)."""
    log_dir, lines = _placed_lines(conn, job_id)
    try:
        raw = (log_dir / TIMES_FILE).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BackendUnavailableError(f"cannot read line times in {log_dir}: {exc}") from exc
    size = TIME_RECORD.size
    marks = sorted(TIME_RECORD.unpack_from(raw, i) for i in range(0, len(raw) - size + 1, size))
    timed: list[tuple[int | None, float | None, str]] = []
    k = -1
    for task, pos, line in lines:
        while k + 1 < len(marks) and marks[k + 1][0] <= pos:
            k += 1
        timed.append((task, marks[k][1] if k >= 0 else None, line))
    return timed


def render_log(job: Any, log_dir: str, offset: int) -> LogPiece:
    """The job's log from byte ``offset`` (see ``LocalPlugin.get_render_log``)."""
    path = Path(log_dir) / "job.log"
    try:
        text, next_offset, size = read_chunk(path, offset)
    except OSError as exc:
        raise BackendUnavailableError(f"cannot read render log {path}: {exc}") from exc
    return LogPiece(
        job_id=job.id,
        text=text,
        offset=offset,
        next_offset=next_offset,
        complete=job.state.final and next_offset >= size,
    )


class _Settings:
    """The settings a ``local`` target has with none given (all the reader needs)."""

    root = None
    heartbeat_timeout = 60.0


class LocalReader:
    """The read-only calls of ``LocalPlugin`` for a ``local`` target with default
    settings, answering plain records. ``full`` builds the real plug-in: it answers a
    job that must be settled first (a write this view never does), and a store that
    does not exist yet."""

    name = "local"
    path_mapper = None
    storage = None
    settings = _Settings()

    def __init__(self, root: Path, full: Callable[[], Any], *, target: str = "local") -> None:
        self.root = root
        self.db_path = root / "state.sqlite3"
        self.target = target
        self._full_factory = full
        self._full: Any = None
        self._conn: sqlite3.Connection | None = None
        #: The jobs a listing will look at (set by the caller): :meth:`get_jobs` then
        #: reads only those, in SQL, whatever the size of the store.
        self.wanted: frozenset[str] | None = None

    def full(self) -> Any:
        """The real plug-in, built on first need."""
        if self._full is None:
            self._full = self._full_factory()
        return self._full

    def _read(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.db_path.exists():
                return None
            try:
                self._conn = connect_readonly(self.db_path)
            except (sqlite3.Error, OSError):
                return None  # the plug-in reports it, with its advice
        return self._conn

    def _record(self, conn: sqlite3.Connection, row: tuple[Any, ...], counts: Any) -> JobRecord:
        record = job_record(
            row,
            counts,
            backend=self.name,
            target=self.target,
            heartbeat_timeout=self.settings.heartbeat_timeout,
        )
        return explain_failure(conn, record)

    def get_job(self, job_id: str) -> Any:
        conn = self._read()
        if conn is None:
            return self.full().get_job(job_id)
        row = job_row(conn, job_id, self.name)
        counts = task_counts(conn, job_id)
        if orphan_reason(self.db_path, row, counts) is not None:
            return self.full().get_job(job_id)
        return self._record(conn, row, counts)

    def get_job_state(self, job_id: str) -> JobState:
        return JobState(self.get_job(job_id).state)

    def get_jobs(self, states: Sequence[JobState] | None = None) -> list[Any]:
        conn = self._read()
        if conn is None:
            return list(self.full().get_jobs(states))
        ids, args = "", list(self.wanted or ())
        if self.wanted is not None and len(args) <= 30000:  # SQLite's bound on variables
            ids = f" IN ({', '.join('?' * len(args))})"
        else:
            args = []
        where = f" WHERE id{ids}" if ids else ""
        rows = [
            tuple(r)
            for r in conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs{where} ORDER BY seq DESC", args)
        ]
        counts = all_task_counts(conn, f" WHERE job_id{ids}" if ids else "", args)
        if any(orphan_reason(self.db_path, row, counts.get(row[0], {})) for row in rows):
            return list(self.full().get_jobs(states))
        jobs = [self._record(conn, row, counts.get(row[0], {})) for row in rows]
        wanted = set(states) if states else None
        return [j for j in jobs if wanted is None or j.state in wanted]

    def get_render_log(self, job_id: str, offset: int = 0) -> Any:
        job = self.get_job(job_id)
        if not isinstance(job, JobRecord):
            return self.full().get_render_log(job_id, offset)
        conn = self._read()
        assert conn is not None
        return render_log(job, job_row(conn, job_id, self.name)[11], offset)

    def get_task_details(self, job_id: str) -> list[dict[str, Any]]:
        conn = self._read()
        if conn is None:
            return list(self.full().get_task_details(job_id))
        return task_details(conn, job_id)

    def get_task_log(self, job_id: str, task: int, offset: int = 0) -> Any:
        conn = self._read()
        if conn is None:
            return self.full().get_task_log(job_id, task, offset)
        return task_log(conn, job_id, task, offset)

    def get_task_lines(self, job_id: str) -> list[tuple[int | None, str]]:
        conn = self._read()
        if conn is None:
            return list(self.full().get_task_lines(job_id))
        return task_lines(conn, job_id)

    def get_timed_lines(self, job_id: str) -> list[tuple[int | None, float | None, str]] | None:
        conn = self._read()
        if conn is None:
            return self.full().get_timed_lines(job_id)  # type: ignore[no-any-return]
        return timed_lines(conn, job_id)
