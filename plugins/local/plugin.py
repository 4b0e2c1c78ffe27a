"""``local``: the embedded backend that runs jobs on this machine.

A small, trustworthy farm on one machine: each job gets a detached supervisor (see
:mod:`.supervisor`) that runs its tasks as real processes in parallel slots shared by
every job on the machine; state lives in SQLite (WAL) so a DCC and the CLI can read it
at once, and jobs outlive the process that submitted them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from farm_adapters import (
    CheckResult,
    FarmPlugin,
    InstallationMetadata,
    InvalidRequestError,
    Job,
    JobRequest,
    JobState,
    LogChunk,
)
from farm_adapters._paths import data_dir
from farm_adapters.errors import BackendUnavailableError, SubmitError
from farm_adapters.models import Dependency
from farm_adapters.plugin import ProgressCallback

from . import files, machine, store, view


def supervisor_argv(db_path: Path, job_id: str) -> list[str]:
    """How a supervisor is started: like ``python -m farm_adapters.plugins.local.supervisor
    DB_PATH JOB_ID`` (the module name stays in the command line, where
    :func:`.machine.find_supervisor` recognises it), but on the shortest import path,
    since its start-up is on the way from submit to the first task:

    - ``-S``: no ``site`` (site-packages, ``.pth`` files, editable-install finders): the
      supervisor needs the standard library only;
    - the packages above it are entered as bare namespaces pointing at the folders this
      process loaded them from, so their ``__init__`` (pydantic, pluggy, the models) is
      never run and the same files are used, whatever the install layout;
    - the caller's working directory is not on ``sys.path`` (``-P`` needs 3.11), so a
      ``farm_adapters/`` folder there never shadows the installed package; the
      supervisor keeps it as its own directory, the tasks' default.
    """
    names = [__package__.rsplit(".", n)[0] for n in (2, 1, 0)]  # the three packages
    packages = [(name, list(sys.modules[name].__path__)) for name in names]
    boot = (
        "import sys\n"
        "if sys.path and sys.path[0] == '':\n"
        "    del sys.path[0]\n"
        "t = type(sys)\n"
        f"for name, path in {packages!r}:\n"
        "    if name not in sys.modules:\n"
        "        m = sys.modules[name] = t(name)\n"
        "        m.__path__ = path\n"
        f"from {machine.SUPERVISOR_MODULE} import main\n"
        "sys.exit(main())\n"
    )
    return [sys.executable, "-S", "-c", boot, str(db_path), job_id]


class LocalSettings(BaseModel):
    """Settings of a ``local`` target."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    root: Path | None = Field(
        default=None,
        description="state database, logs and slot locks (default: user data dir/local)",
    )
    folders: Path | None = Field(
        default=None, description="where temporary render folders go (default: ROOT/folders)"
    )
    slots: int | None = Field(
        default=None, ge=1, le=1024, description="tasks at once on this machine (default: CPUs)"
    )
    grace_period: float = Field(
        default=10.0, ge=0, description="seconds between SIGTERM and SIGKILL on stop/timeout"
    )
    labels: list[str] = Field(
        default_factory=list, description="labels this machine satisfies (requirements.labels)"
    )
    heartbeat_timeout: float = Field(
        default=60.0,
        gt=0,
        description="seconds without a heartbeat from a job's live supervisor before the "
        "job is reported unknown (the supervisor is stopped or starved)",
    )


class LocalPlugin(FarmPlugin):
    """Runs jobs on this machine. Thread-safe: one SQLite connection per thread."""

    name = "local"
    display_name = "This machine"
    settings_model = LocalSettings

    def __init__(self, settings: Any = None, *, target: str | None = None) -> None:
        super().__init__(settings, target=target)
        s: LocalSettings = self.settings  # type: ignore[assignment]
        self.root = (s.root or data_dir() / "local").expanduser().absolute()
        self.folders = (s.folders or self.root / "folders").expanduser().absolute()
        self.slots = s.slots or machine.cpu_count()
        self.db_path = self.root / "state.sqlite3"
        self._local = threading.local()
        self._init_lock = threading.Lock()
        self._initialised = False

    # -- storage of state --------------------------------------------------------------

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        try:
            if conn is None:
                with self._init_lock:
                    if not self._initialised:
                        store.init(self.db_path).close()
                        if self.settings.root is None:  # type: ignore[attr-defined]
                            store.tighten(self.root)  # the default one: ours alone
                        self._initialised = True
                conn = store.connect(self.db_path)
                self._local.conn = conn
            yield conn
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailableError(
                f"local backend state {self.db_path}: {exc}; check that the folder is "
                f"writable, or set `root` in the target's settings"
            ) from exc

    @contextmanager
    def _read_db(self) -> Iterator[sqlite3.Connection]:
        """A connection that never writes, for queries: they keep working on a full
        disk or a read-only mount. (A query that finds an orphaned job still writes
        its end through :meth:`_db`.)"""
        if not self.db_path.exists():
            with self._db() as writer:
                yield writer
            return
        conn: sqlite3.Connection | None = getattr(self._local, "ro", None)
        try:
            if conn is None:
                conn = store.connect_readonly(self.db_path)
                self._local.ro = conn
            yield conn
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailableError(
                f"local backend state {self.db_path}: {exc}; check that the file is "
                f"readable, or set `root` in the target's settings"
            ) from exc

    def close(self) -> None:
        for attr in ("conn", "ro"):
            conn = getattr(self._local, attr, None)
            if conn is not None:
                conn.close()
                setattr(self._local, attr, None)

    # -- stage 1: files ----------------------------------------------------------------

    def create_temporary_folder(self, render_context: str) -> str:
        with suppress(OSError):  # the root holds job environments: owner only
            store.private_dir(self.root)
        return self.make_temporary_folder(render_context, self.folders)

    def copy_render_files(
        self, paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
    ) -> list[str]:
        return self.copy_files(paths, folder, progress)

    # -- stage 2: environment ----------------------------------------------------------

    def get_installation_metadata(self) -> InstallationMetadata:
        return InstallationMetadata(
            root=sys.prefix,
            executable=sys.executable,
            version=sys.version.split()[0],
            platform=sys.platform,
        )

    def get_environment_for_job(self, request: JobRequest) -> dict[str, str]:
        return {}

    # -- stage 3: submit ---------------------------------------------------------------

    def _check_requirements(self, request: JobRequest) -> int:
        """Refuse what this machine cannot give; return CPU slots per task."""
        req = request.requirements
        for key in req.extra:
            raise InvalidRequestError(
                f"requirements.extra.{key}: the local backend takes no extra options; "
                f"remove it (extras are backend-specific)",
                field=f"requirements.extra.{key}",
            )
        gpus_here = machine.gpu_ids()
        if req.gpus and req.gpus > len(gpus_here):
            raise InvalidRequestError(
                f"requirements.gpus: the job asks for {req.gpus} GPU(s) per task; this "
                f"machine has {len(gpus_here)} (nvidia-smi -L); lower it or use a farm target",
                field="requirements.gpus",
            )
        slots_per_task = 1
        if req.cpus:
            slots_per_task = max(1, int(-(-req.cpus // 1)))
            if slots_per_task > self.slots:
                raise InvalidRequestError(
                    f"requirements.cpus: the job asks for {req.cpus:g} CPU(s) per task; this "
                    f"target runs {self.slots} slot(s) (machine: {machine.cpu_count()} CPUs); "
                    f"lower it or raise the target's `slots`",
                    field="requirements.cpus",
                )
        total = machine.total_memory()
        if req.memory and total and int(req.memory) > total:
            raise InvalidRequestError(
                f"requirements.memory: the job asks for {req.memory.human_readable()} per task; "
                f"this machine has {total / 2**30:.1f} GiB",
                field="requirements.memory",
            )
        labels: LocalSettings = self.settings  # type: ignore[assignment]
        for key, wanted in (("labels", req.labels), ("pool", [req.pool] if req.pool else [])):
            missing = [x for x in wanted if x not in labels.labels]
            if missing:
                raise InvalidRequestError(
                    f"requirements.{key}: this machine does not have {', '.join(missing)}; "
                    f"remove them or list them in the target's `labels` setting",
                    field=f"requirements.{key}",
                )
        return slots_per_task

    def native_payloads(self, request: JobRequest) -> list[dict[str, Any]]:
        self._check_requirements(request)
        return [
            {
                "task": task.index,
                "frames": list(task.frames),
                "commands": [c.model_dump(mode="json") for c in task.commands],
            }
            for task in request.tasks()
        ]

    def native_dependencies(self, after: Sequence[Dependency]) -> list[str]:
        """The ids of the jobs waited for, each checked to be a job of this target."""
        ids = []
        with self._read_db() as conn:
            for i, dep in enumerate(after):
                found = conn.execute("SELECT 1 FROM jobs WHERE id = ?", (dep.job_id,)).fetchone()
                if found is None:
                    raise InvalidRequestError(
                        f"after[{i}]: job {dep.job_id!r} is not a job of target "
                        f"{self.target!r}; a job can only wait for jobs on its own target",
                        field="after",
                    )
                ids.append(dep.job_id)
        return ids

    def submit_job(self, request: JobRequest) -> str:
        import uuid

        self.refuse_unsupported(request)
        self.native_dependencies(request.after)
        slots_per_task = self._check_requirements(request)
        job_id = uuid.uuid4().hex[:12]
        log_dir = self.root / "logs" / job_id
        tasks = request.tasks()
        after = json.dumps([[d.job_id, d.condition] for d in request.after])
        rows = [
            (
                job_id,
                task.index,
                "queued",
                ",".join(str(f) for f in task.frames),
                json.dumps([c.model_dump(mode="json") for c in task.commands]),
            )
            for task in tasks
        ]
        with self._db() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()
                conn.execute(
                    "INSERT INTO jobs (id, seq, name, render_context, submitted_at, folder, "
                    "log_dir, environment, max_retries, timeout, gpus, slots_per_task, slots, "
                    "grace_period, priority, held, after, ready, message, notify) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        job_id,
                        seq,
                        request.name,
                        request.render_context,
                        time.time(),
                        request.folder,
                        str(log_dir),
                        json.dumps(request.environment),
                        request.max_retries,
                        request.requirements.timeout,
                        request.requirements.gpus or 0,
                        slots_per_task,
                        self.slots,
                        self.settings.grace_period,  # type: ignore[attr-defined]
                        request.priority,
                        int(request.hold),
                        after,
                        int(not (request.hold or request.after)),
                        waiting_message(job_id, request.hold, [d.job_id for d in request.after]),
                        self._notify_spec(request),
                    ),
                )
                conn.executemany(
                    "INSERT INTO tasks (job_id, idx, state, frames, commands) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._start_supervisor(job_id, log_dir)
        return job_id

    def _notify_spec(self, request: JobRequest) -> str | None:
        """What the supervisor needs to notify the job's end (the target's [notify]
        sinks, or the desktop for ``notify=True``), or None."""
        if request.notify is False or (self.notify is None and not request.notify):
            return None
        from farm_adapters.notify import NotifyConfig, parse_notify

        config = parse_notify(self.notify) if self.notify is not None else NotifyConfig()
        return json.dumps(
            {
                "target": self.target,
                "config": config.model_dump(mode="json"),
                "wanted": request.notify,
            }
        )

    def _start_supervisor(self, job_id: str, log_dir: Path) -> None:
        import subprocess

        from .files import HEARTBEAT_FILE

        # A previous attempt's heartbeat must not make the new supervisor look stalled
        # before it has touched its own.
        with contextlib.suppress(OSError):
            (log_dir / HEARTBEAT_FILE).unlink(missing_ok=True)
        try:
            store.private_dir(log_dir)
            fd = os.open(log_dir / "supervisor.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with open(fd, "ab") as out:
                proc = subprocess.Popen(
                    supervisor_argv(self.db_path, job_id),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,  # survives the terminal and the DCC
                    close_fds=True,
                )
        except OSError as exc:
            with self._db() as conn:
                conn.execute(
                    "UPDATE tasks SET state = 'failed', finished_at = ?, message = ? "
                    "WHERE job_id = ? AND state = 'queued'",
                    (time.time(), f"cannot start the supervisor: {exc}", job_id),
                )
            raise SubmitError(
                f"job {job_id}: cannot start the local supervisor: {exc}", transient=False
            ) from exc
        # The supervisor records itself first thing; this is for the case it died
        # before it could (then ``start`` is None and the job is settled as failed).
        start = machine.process_start(proc.pid)
        with self._db() as conn:
            conn.execute(
                "UPDATE jobs SET supervisor_pid = ?, supervisor_start = ? "
                "WHERE id = ? AND supervisor_pid IS NULL",
                (proc.pid, start, job_id),
            )
        # Reap the supervisor when it ends if this process lives that long (a DCC):
        # no zombie lingers, and the job does not depend on this thread.
        threading.Thread(target=proc.wait, name=f"reap-{job_id}", daemon=True).start()

    # -- information -------------------------------------------------------------------

    _JOB_COLUMNS = view.JOB_COLUMNS

    def _job_row(self, conn: sqlite3.Connection, job_id: str) -> tuple[Any, ...]:
        return view.job_row(conn, job_id, self.name)

    def _counts(self, conn: sqlite3.Connection, job_id: str) -> dict[JobState, int]:
        return view.task_counts(conn, job_id)

    def _settle_if_orphaned(
        self, conn: sqlite3.Connection, row: tuple[Any, ...], counts: dict[JobState, int]
    ) -> bool:
        """If the job's supervisor is gone while tasks are still active (killed, crashed,
        machine rebooted), end those tasks with a reason. Returns True if it did."""
        reason = view.orphan_reason(self.db_path, row, counts)
        if reason is None:
            return False
        job_id, stop_requested, pid = row[0], row[7], row[8]
        state = "stopped" if stop_requested else "failed"
        if stop_requested:
            reason = "stopped by request"
        conn = self._writer()  # queries read through a read-only connection
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute(
                "SELECT supervisor_pid FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if current is None or current[0] != pid:
                conn.execute("ROLLBACK")  # restarted meanwhile
                return False
            pgids = [
                p
                for (p,) in conn.execute(
                    "SELECT pid FROM tasks WHERE job_id = ? AND state = 'running'", (job_id,)
                )
            ]
            conn.execute(
                "UPDATE tasks SET state = ?, finished_at = ?, message = ? "
                "WHERE job_id = ? AND state IN ('queued', 'running', 'stopping', 'unknown')",
                (state, time.time(), reason, job_id),
            )
            conn.execute(
                "UPDATE jobs SET finished_at = COALESCE(finished_at, ?), message = ? WHERE id = ?",
                (time.time(), reason, job_id),
            )
            # Killed while the write lock is held: no restart can start a new attempt
            # (whose tasks carry the same marker) until the old one's are gone.
            machine.kill_job_leftovers(job_id, pgids)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._append_job_log(Path(row[11]), f"[farm-adapters] {state}: {reason}\n")
        return True

    def _writer(self) -> sqlite3.Connection:
        """This thread's connection that may write (errors map in the caller's
        ``with self._db()`` or ``with self._read_db()``)."""
        with self._db() as conn:
            return conn

    def _append_job_log(self, log_dir: Path, text: str) -> None:
        try:
            store.private_dir(log_dir)
            append = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            data = text.encode()
            fd = os.open(log_dir / "job.log", append, 0o600)
            try:
                os.write(fd, data)
                end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just after our bytes
            finally:
                os.close(fd)
            fd = os.open(log_dir / files.TIMES_FILE, append, 0o600)
            try:  # when it was written, for `logs --timestamps`
                os.write(fd, files.TIME_RECORD.pack(end - len(data), time.time()))
            finally:
                os.close(fd)
        except OSError:
            pass  # the state in the database is what matters; the log line is a courtesy

    def _job(
        self, conn: sqlite3.Connection, row: tuple[Any, ...], counts: dict[JobState, int]
    ) -> Job:
        record = view.job_record(
            row,
            counts,
            backend=self.name,
            target=self.target,
            heartbeat_timeout=self.settings.heartbeat_timeout,  # type: ignore[attr-defined]
        )
        # Trusted data from our own store: built without validating it again.
        return Job.model_construct(**view.explain_failure(conn, record).fields())

    def get_job(self, job_id: str) -> Job:
        with self._read_db() as conn:
            row = self._job_row(conn, job_id)
            counts = self._counts(conn, job_id)
            if self._settle_if_orphaned(conn, row, counts):
                row = self._job_row(conn, job_id)
                counts = self._counts(conn, job_id)
            return self._job(conn, row, counts)

    def get_jobs(self, states: Sequence[JobState] | None = None) -> list[Job]:
        with self._read_db() as conn:
            rows = [
                tuple(r)
                for r in conn.execute(f"SELECT {self._JOB_COLUMNS} FROM jobs ORDER BY seq DESC")
            ]
            all_counts = view.all_task_counts(conn)
            jobs = []
            for row in rows:
                counts = all_counts.get(row[0], {})
                if self._settle_if_orphaned(conn, row, counts):
                    row = self._job_row(conn, row[0])
                    counts = self._counts(conn, row[0])
                jobs.append(self._job(conn, row, counts))
        wanted = set(states) if states else None
        return [j for j in jobs if wanted is None or j.state in wanted]

    def get_render_log_filename(self, job_id: str) -> str | None:
        with self._read_db() as conn:
            row = self._job_row(conn, job_id)
        path = Path(row[11]) / "job.log"
        return str(path) if path.exists() else None

    def get_render_log(self, job_id: str, offset: int = 0) -> LogChunk:
        job = self.get_job(job_id)
        with self._read_db() as conn:
            row = self._job_row(conn, job_id)
        return LogChunk(**view.render_log(job, row[11], offset).fields())

    def get_task_details(self, job_id: str) -> list[dict[str, Any]]:
        """One dict per task, in order: index, frames ("1-4" or "7"), state, attempt
        (runs so far), exit_code, started_at and finished_at (POSIX times), message.
        Optional backend method read by ``farm-adapters status --tasks``."""
        with self._read_db() as conn:
            return view.task_details(conn, job_id)

    def get_task_log(self, job_id: str, task: int, offset: int = 0) -> LogChunk:
        """One task's output (every run of it), from byte ``offset`` of that output.

        Output is stored once, in the job's log; ``task-00003.idx`` beside it lists the
        byte ranges that are task 3's. ``complete`` once the task has ended and all
        of it is read."""
        with self._read_db() as conn:
            return LogChunk(**view.task_log(conn, job_id, task, offset).fields())

    def get_task_lines(self, job_id: str) -> list[tuple[int | None, str]]:
        """The job's log as (task index, line) pairs in the order written; the task is
        None for the job's own lines (attempts, starts, exits). Optional backend method
        read by ``farm-adapters logs`` to prefix each line with its task."""
        with self._read_db() as conn:
            return view.task_lines(conn, job_id)

    def get_timed_lines(self, job_id: str) -> list[tuple[int | None, float | None, str]] | None:
        """The job's log as (task index, time written, line) in the order written; the
        time is None for a line written before times were recorded, and the answer is
        None when the job's log has no per-line times at all. Optional backend method
        read by ``farm-adapters logs --timestamps``."""
        with self._read_db() as conn:
            return view.timed_lines(conn, job_id)

    # -- control -----------------------------------------------------------------------

    def stop_job(self, job_id: str) -> None:
        with self._db() as conn:
            row = self._job_row(conn, job_id)
            counts = self._counts(conn, job_id)
            if all(s.final for s in counts):
                return
            conn.execute("UPDATE jobs SET stop_requested = 1 WHERE id = ?", (job_id,))
            pid, start = row[8], row[9]
            if machine.is_alive(pid, start):
                os.kill(pid, signal.SIGTERM)
            else:
                self._settle_if_orphaned(conn, self._job_row(conn, job_id), counts)

    def restart_job(self, job_id: str) -> None:
        with self._db() as conn:
            job = self.get_job(job_id)
            if not job.state.final:
                raise InvalidRequestError(
                    f"job {job_id} is {job.state}; stop it or wait for it to end before "
                    f"restarting it",
                    field="job_id",
                )
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Checked again under the write lock: of two restarts at once, the
                # second finds the first's queued tasks and is refused.
                counts = self._counts(conn, job_id)
                if not all(s.final for s in counts):
                    conn.execute("ROLLBACK")
                    raise InvalidRequestError(
                        f"job {job_id} was restarted meanwhile (by another process); "
                        f"follow it, or stop it before restarting it again",
                        field="job_id",
                    )
                everything = set(counts) == {JobState.COMPLETED}
                conn.execute(
                    "UPDATE tasks SET state = 'queued', retries = 0, exit_code = NULL, "
                    "pid = NULL, finished_at = NULL, message = '' WHERE job_id = ?"
                    + ("" if everything else " AND state != 'completed'"),
                    (job_id,),
                )
                conn.execute(
                    "UPDATE jobs SET attempt = attempt + 1, stop_requested = 0, "
                    "finished_at = NULL, supervisor_pid = NULL, supervisor_start = NULL, "
                    "started_at = NULL, submitted_at = ?, message = '', "
                    "ready = (held = 0 AND after = '[]') WHERE id = ?",
                    (time.time(), job_id),
                )
                conn.execute("COMMIT")
            except InvalidRequestError:
                raise
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            row = self._job_row(conn, job_id)
        self._forget_notification(job_id)
        self._start_supervisor(job_id, Path(row[11]))

    def _forget_notification(self, job_id: str) -> None:
        """A restarted job's next end is news again: the journal forgets that its
        end was notified (a --no-notify job stays silent)."""
        from farm_adapters.errors import FarmAdapterError
        from farm_adapters.journal import Journal

        journal = Journal()
        if not journal.path.exists():
            return
        with contextlib.suppress(FarmAdapterError):
            entry = journal.get(job_id, self.target)
            if entry is not None and entry.notified_state not in (None, "off"):
                journal.reset_notification(job_id, self.target)

    def release_job(self, job_id: str) -> None:
        with self._db() as conn:
            self._job_row(conn, job_id)
            conn.execute("UPDATE jobs SET held = 0 WHERE id = ?", (job_id,))
        # The job's supervisor sees it within a second and starts the tasks (or waits
        # for the jobs in ``after`` first).

    def set_priority(self, job_id: str, priority: int) -> None:
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
            raise InvalidRequestError(
                f"priority: {priority!r} is not a whole number from 0 (lowest) to 100 (highest)",
                field="priority",
            )
        with self._db() as conn:
            self._job_row(conn, job_id)
            conn.execute("UPDATE jobs SET priority = ? WHERE id = ?", (priority, job_id))

    def delete_job(self, job_id: str) -> None:
        import shutil

        with self._db() as conn:
            job = self.get_job(job_id)
            if not job.state.final:
                raise InvalidRequestError(
                    f"job {job_id} is {job.state}; stop it first (or delete with --stop)",
                    field="job_id",
                )
            row = self._job_row(conn, job_id)
            (folder,) = conn.execute("SELECT folder FROM jobs WHERE id = ?", (job_id,)).fetchone()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM tasks WHERE job_id = ?", (job_id,))
                conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        # Only folders of our own: the logs, and the render folder when it is one of
        # this target's temporary folders (a target storage's is removed through it).
        doomed = [Path(row[11])]
        if folder and self.storage is None and Path(folder).parent == self.folders:
            doomed.append(Path(folder))
        for path in doomed:
            if path.parent not in (self.root / "logs", self.folders):
                continue
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise BackendUnavailableError(
                    f"job {job_id} was deleted but {path} could not be removed: {exc}; "
                    f"remove it by hand"
                ) from exc

    # -- test --------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        results = []
        try:
            with self._db() as conn:
                conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
            results.append(CheckResult(name="state database", ok=True, detail=str(self.db_path)))
        except BackendUnavailableError as exc:
            results.append(CheckResult(name="state database", ok=False, detail=str(exc)))
        try:
            self.folders.mkdir(parents=True, exist_ok=True)
            probe = self.folders / f".probe-{os.getpid()}-{threading.get_ident()}"
            probe.write_bytes(b"")
            probe.unlink()
            results.append(CheckResult(name="temporary folders", ok=True, detail=str(self.folders)))
        except OSError as exc:
            results.append(
                CheckResult(
                    name="temporary folders",
                    ok=False,
                    detail=f"{self.folders} is not writable: {exc}",
                )
            )
        results.append(
            CheckResult(
                name="slots",
                ok=True,
                detail=f"{self.slots} slot(s); {machine.cpu_count()} CPU(s); "
                f"{len(machine.gpu_ids())} GPU(s)",
            )
        )
        return results


def waiting_message(job_id: str, held: bool, after: Sequence[str]) -> str:
    """What a job that may not start yet shows as its message."""
    if held:
        return f"held: release it with `farm-adapters release {job_id}`"
    if after:
        return f"waiting for {', '.join(after)}"
    return ""
