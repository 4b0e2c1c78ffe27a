"""The detached supervisor of one local job.

Started by :class:`~farm_adapters.plugins.local.plugin.LocalPlugin` in a session of
its own (``setsid``), so closing the DCC or the terminal does not stop the render::

    python -m farm_adapters.plugins.local.supervisor DB_PATH JOB_ID

One supervisor runs all of a job's tasks (never one interpreter per task): each
task's commands run in order as real processes, each in its own process group, with
output written once, line by line, to the job's log; each task's index file
(``task-00003.idx``) lists the byte ranges of the job's log that are its output. CPU
slots and GPU ids are machine-wide ``flock`` tokens shared by every supervisor. Task
states are written to SQLite in small batches, kept and retried while the database is
locked or the disk is full (the tasks keep running); SIGTERM (or ``stop_requested``)
stops the job: SIGTERM to every task's group, SIGKILL after the grace period.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import selectors
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import store
from .files import HEARTBEAT_FILE, SEGMENT, TIME_RECORD, TIMES_FILE
from .launch import keep_descriptors_private, start_process
from .machine import JOB_MARKER_ENV, LockPool, is_alive, kill_group, process_start

# Start-up is on the path from submit to the first task, so this module and the three it
# imports use the standard library only: no pydantic, no package ``__init__`` (see
# ``plugin.supervisor_argv``); ``traceback`` is imported where it is used.

FLUSH_INTERVAL = 0.1  # seconds between batched state writes
STOP_POLL_INTERVAL = 1.0  # seconds between checks of stop_requested (if a signal is lost)
SLOT_POLL_INTERVAL = 0.05  # seconds between tries when other jobs hold every slot
PARTIAL_LINE_LIMIT = 1 << 16  # bytes of an unfinished line kept before writing it out
PARTIAL_LINE_DELAY = 1.0  # seconds an unfinished line waits before it is written out
STATE_BUSY_TIMEOUT_MS = 200  # one state write waits this long for a lock, then retries
STATE_RETRY_MAX = 5.0  # longest pause between retries of a state write
#: SQLite errors a later retry can cure: a lock held elsewhere, a full disk, I/O.
RETRYABLE_STATE_ERRORS = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_FULL", "SQLITE_IOERR")
#: Write errors that lose task output rather than the job: a full disk or quota.
OUTPUT_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
DEPENDENCY_POLL_INTERVAL = 0.5  # seconds between looks at a held job or its dependencies
#: Another job's supervisor that has not beaten for this long no longer holds this
#: job back from a free slot (it is stopped or starved).
STALLED_AFTER = 60.0
#: A job whose supervisor has not recorded itself within this long is not waited for.
SUPERVISOR_START_GRACE = 60.0
FINAL_TASK_STATES = frozenset({"completed", "failed", "stopped"})


def peak_rss_kb() -> int:
    """This process's peak resident memory in KiB: Linux's VmHWM, which is this
    program's own. ``ru_maxrss`` is the fallback: on Linux it keeps the peak of the
    process that started us from before exec (a 300 MB submitter reads as 300 MB)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@dataclass
class Run:
    """One task being run: its current command, process, pipe and logs."""

    idx: int
    frames: str
    commands: list[dict[str, Any]]
    retries: int
    runs: int
    step: int = 0
    pid: int | None = None  # of the current command's process (its group's id too)
    pipe: int | None = None
    partial: bytearray = field(default_factory=bytearray)
    partial_since: float | None = None  # when the unfinished line began
    log_fd: int | None = None  # the task's index file
    index_size: int = 0
    segment: tuple[int, int, int] | None = None  # (record position, offset, end)
    started: float = 0.0
    deadline: float | None = None
    kill_at: float | None = None
    outcome: str | None = None  # "timeout" or "stopped" once we signalled it
    slots: list[str] = field(default_factory=list)
    gpus: list[str] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def label(self) -> str:
        if not self.frames:
            return f"task {self.idx}"
        frames = self.frames.split(",")
        if len(frames) == 1:
            return f"task {self.idx} (frame {frames[0]})"
        return f"task {self.idx} (frames {frames[0]}-{frames[-1]})"


class Supervisor:
    def __init__(self, db_path: Path, job_id: str) -> None:
        self.db_path = db_path
        self.root = db_path.parent
        self.job_id = job_id
        self.conn = store.connect(db_path)
        row = self.conn.execute(
            "SELECT attempt, log_dir, environment, max_retries, timeout, gpus, "
            "slots_per_task, slots, grace_period, stop_requested, ready, after "
            "FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            raise SystemExit(f"no job {job_id} in {db_path}")
        (
            self.attempt,
            log_dir,
            environment,
            self.max_retries,
            self.timeout,
            self.gpus,
            self.slots_per_task,
            slots,
            self.grace,
            stop_requested,
            ready,
            after,
        ) = row
        self.ready = bool(ready)
        #: The jobs this one waits for: (job id, "succeeded" or "ended").
        self.after: list[tuple[str, str]] = [(d, c) for d, c in json.loads(after)]
        self.log_dir = Path(log_dir)
        store.private_dir(self.log_dir)
        self.job_env = json.loads(environment)
        self.base_env = dict(os.environ)
        self.stop = bool(stop_requested)
        self.queue: deque[Run] = deque(
            Run(idx=i, frames=fr, commands=json.loads(cmds), retries=rt, runs=rn)
            for i, fr, cmds, rt, rn in self.conn.execute(
                "SELECT idx, frames, commands, retries, runs FROM tasks "
                "WHERE job_id = ? AND state = 'queued' ORDER BY idx",
                (job_id,),
            )
        )
        self.running: dict[int, Run] = {}  # pid -> run
        #: pid -> the Popen that started it (a task with its own cwd), kept until the
        #: pid is reaped here so its finaliser never reaps it first.
        self.popens: dict[int, subprocess.Popen[bytes]] = {}
        self.by_pipe: dict[int, Run] = {}
        self.pending: list[tuple[str, tuple[Any, ...]]] = []
        self.last_flush = time.monotonic()
        self.conn.execute(f"PRAGMA busy_timeout = {STATE_BUSY_TIMEOUT_MS}")
        self.state_failures = 0  # state writes failed in a row (lock held, disk full)
        self.state_retry_at = 0.0
        self.lost_output = 0  # bytes of task output a full disk refused
        self.slot_pool = LockPool(self.root / "slots", [f"slot-{i}" for i in range(slots)])
        self.gpu_pool: LockPool | None = None
        if self.gpus:
            from .machine import gpu_ids

            self.gpu_pool = LockPool(self.root / "gpus", [f"gpu-{g}" for g in gpu_ids()])
        append = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self.job_log = os.open(self.log_dir / "job.log", append, 0o600)
        self.job_times = os.open(self.log_dir / TIMES_FILE, append, 0o600)
        self.selector = selectors.DefaultSelector()
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    # -- life ------------------------------------------------------------------------

    def record_self(self) -> None:
        """Record this process as the job's supervisor (pid and start time), before
        anything else: the submitting process may die before it records the pid, and a
        job whose supervisor is alive must never be settled as orphaned."""
        self.beat()
        self.conn.execute(
            "UPDATE jobs SET supervisor_pid = ?, supervisor_start = ? WHERE id = ?",
            (os.getpid(), process_start(os.getpid()), self.job_id),
        )

    def beat(self) -> None:
        with contextlib.suppress(OSError):
            path = self.log_dir / HEARTBEAT_FILE
            try:
                os.utime(path)
            except FileNotFoundError:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))

    # -- logging -----------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.write_log(f"[farm-adapters] {text}\n".encode())

    def write_log(self, data: bytes) -> tuple[int, int] | None:
        """Append ``data`` to the job's log; the (offset, end) it landed at, or None if
        a full disk refused it: then the loss is counted, noted in the job's message,
        and told in the log once the disk takes writes again. Never raises for that:
        losing output must not lose the render."""
        if self.lost_output:
            note = (
                f"[farm-adapters] {self.lost_output} byte(s) of output were lost: "
                f"the disk was full (ENOSPC)\n"
            ).encode()
            if self._write_all(note):
                self.lost_output += len(data)
                return None
            self.lost_output = 0
        lost = self._write_all(data)
        if lost:
            if not self.lost_output:
                self.queue_write(
                    "UPDATE jobs SET message = ? WHERE id = ?",
                    (
                        f"disk full (ENOSPC): task output could not be written to "
                        f"{self.log_dir / 'job.log'}; free space there",
                        self.job_id,
                    ),
                )
            self.lost_output += lost
            return None
        end = os.lseek(self.job_log, 0, os.SEEK_CUR)  # O_APPEND: just after our bytes
        with contextlib.suppress(OSError):  # a time lost costs `--timestamps` a line's time
            os.write(self.job_times, TIME_RECORD.pack(end - len(data), time.time()))
        return end - len(data), end

    def _write_all(self, data: bytes) -> int:
        """Write ``data`` to the job's log; how many bytes a full disk refused."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.job_log, view) :]
            except OSError as exc:
                if exc.errno not in OUTPUT_WRITE_ERRORS:
                    raise
                if len(view) < len(data):  # a torn line: end it so the next starts clean
                    with contextlib.suppress(OSError):
                        os.write(self.job_log, b"\n")
                return len(view)
        return 0

    def task_log(self, run: Run) -> int:
        """The task's index file, opened (created) on its first output: a task that
        prints nothing costs no file."""
        if run.log_fd is None:
            run.log_fd = os.open(
                self.log_dir / f"task-{run.idx:05d}.idx",
                os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
            run.index_size = os.fstat(run.log_fd).st_size // SEGMENT.size * SEGMENT.size
            run.segment = None
        return run.log_fd

    def write_output(self, run: Run, data: bytes) -> None:
        """Task output, whole lines only: into the job's log (once), and its place
        into the task's index (a range continuing the task's last one extends it)."""
        where = self.write_log(data)
        if where is None:
            return
        offset, end = where
        with contextlib.suppress(OSError):  # a full disk: the job's log still has it
            fd = self.task_log(run)
            if run.segment is not None and run.segment[2] == offset:
                pos, offset = run.segment[0], run.segment[1]
            else:
                pos = run.index_size
            os.pwrite(fd, SEGMENT.pack(offset, end - offset), pos)
            run.index_size = max(run.index_size, pos + SEGMENT.size)
            run.segment = (pos, offset, end)

    def tee(self, run: Run, data: bytes) -> None:
        """Output as it comes: complete lines go out at once; ``\n``, ``\r\n`` and a
        lone ``\r`` (progress bars) each end a line. An unfinished line is written
        out (ended with a newline) once it reaches PARTIAL_LINE_LIMIT bytes or has
        waited PARTIAL_LINE_DELAY: memory stays bounded and nothing waits for a
        newline that may never come. Linear in the output's size."""
        buf = run.partial
        scan = max(0, len(buf) - 1)  # only a held-back "\r" can precede the new data
        buf += data
        cut = max(buf.rfind(b"\n", scan), buf.rfind(b"\r", scan)) + 1
        if cut == len(buf) and buf[-1:] == b"\r":  # maybe half of "\r\n": wait
            cut = max(buf.rfind(b"\n", scan, cut - 1), buf.rfind(b"\r", scan, cut - 1)) + 1
        if cut:
            self.write_output(run, _lines(bytes(buf[:cut])))
            del buf[:cut]
        while len(buf) >= PARTIAL_LINE_LIMIT:
            self.write_output(run, _lines(bytes(buf[:PARTIAL_LINE_LIMIT])) + b"\n")
            del buf[:PARTIAL_LINE_LIMIT]
        if buf and run.partial_since is None:
            run.partial_since = time.monotonic()
        elif not buf:
            run.partial_since = None

    def flush_partial(self, run: Run) -> None:
        """Write out the task's unfinished line, ended with a newline."""
        if run.partial:
            data = _lines(bytes(run.partial))
            self.write_output(run, data if data.endswith(b"\n") else data + b"\n")
            run.partial.clear()
        run.partial_since = None

    def flush_partials(self, now: float) -> None:
        for run in self.by_pipe.values():
            if run.partial_since is not None and now - run.partial_since >= PARTIAL_LINE_DELAY:
                self.flush_partial(run)

    # -- state writes ------------------------------------------------------------------

    def queue_write(self, sql: str, params: tuple[Any, ...]) -> None:
        self.pending.append((sql, params))

    def flush(self) -> bool:
        """Write the pending state changes in one transaction; True when none is left.

        While another process holds the database locked longer than a state write
        waits (a backup, a ``sqlite3`` shell, NFS), or the disk is full, the changes
        are kept and retried with a growing pause: the tasks keep running meanwhile."""
        now = self.last_flush = time.monotonic()
        if not self.pending:
            return True
        if now < self.state_retry_at:
            return False
        pending, self.pending = self.pending, []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in pending:
                    self.conn.execute(sql, params)
                self.conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            if not name.startswith(RETRYABLE_STATE_ERRORS):
                raise
            self.pending[:0] = pending
            self.state_failures += 1
            self.state_retry_at = now + min(
                STATE_RETRY_MAX, FLUSH_INTERVAL * 2 ** min(self.state_failures, 8)
            )
            if self.state_failures == 1:
                self.say(
                    f"cannot write the job's state to {self.db_path} ({exc}); the tasks "
                    f"keep running and their states are written once it can be"
                )
            return False
        if self.state_failures:
            self.say(f"job state written again after {self.state_failures} retried write(s)")
            self.state_failures = 0
            self.state_retry_at = 0.0
        return True

    # -- signals -----------------------------------------------------------------------

    def install_signals(self) -> None:
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_stop_signal)
        self.selector.register(self.wake_r, selectors.EVENT_READ, None)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        self.stop = True

    # -- tasks -------------------------------------------------------------------------

    def try_start(self, now: float) -> bool:
        """Start the next queued task if tokens are free; False when blocked."""
        run = self.queue[0]
        slots = self.slot_pool.acquire(self.slots_per_task)
        if slots is None:
            return False
        if not self.my_turn():
            self.slot_pool.release(slots)
            return False
        gpus: list[str] = []
        if self.gpus and self.gpu_pool is not None:
            got = self.gpu_pool.acquire(self.gpus)
            if got is None:
                self.slot_pool.release(slots)
                return False
            gpus = [g.removeprefix("gpu-") for g in got]
        self.queue.popleft()
        run.slots, run.gpus = slots, gpus
        run.runs += 1
        run.step = 0
        run.outcome = None
        run.started = now
        run.deadline = now + self.timeout if self.timeout else None
        run.kill_at = None
        self.spawn(run)
        return True

    def my_turn(self) -> bool:
        """Whether a free slot is this job's to take: no other job on the machine that
        may run has a queued task and a higher priority (or the same priority and an
        earlier submission). Checked only once a slot is free, so a busy machine costs
        no queries; a job whose supervisor is gone (or stalled) does not hold others
        back."""
        try:
            rows = self.conn.execute(
                "SELECT j.id, j.supervisor_pid, j.supervisor_start, j.submitted_at, j.log_dir "
                "FROM jobs AS j, jobs AS me WHERE me.id = ? AND j.id != me.id "
                "AND j.ready = 1 AND j.stop_requested = 0 "
                "AND (j.priority > me.priority OR (j.priority = me.priority AND j.seq < me.seq)) "
                "AND EXISTS (SELECT 1 FROM tasks AS t WHERE t.job_id = j.id "
                "AND t.state = 'queued')",
                (self.job_id,),
            ).fetchall()
        except sqlite3.OperationalError:
            return False  # locked for now: asked again at the next free slot
        now = time.time()
        for _, pid, start, submitted_at, log_dir in rows:
            if pid is None:
                if now - submitted_at < SUPERVISOR_START_GRACE:
                    return False  # its supervisor is starting
                continue
            if not is_alive(pid, start):
                continue
            try:
                age = now - os.stat(Path(log_dir) / HEARTBEAT_FILE).st_mtime
            except OSError:
                return False  # alive, not yet beating
            if age <= STALLED_AFTER:
                return False
        return True

    def wait_until_ready(self) -> bool:
        """Before any task runs: wait while the job is held, then for the jobs in
        ``after``. True to go on; False when the job ended without running (stopped,
        or a job it waited to succeed did not)."""
        shown = None
        while True:
            self.beat()
            if not self.stop and self.stop_requested_in_db():
                self.stop = True
            if self.stop:
                self.begin_stop(time.monotonic())
                return False
            try:
                (held,) = self.conn.execute(
                    "SELECT held FROM jobs WHERE id = ?", (self.job_id,)
                ).fetchone()
                blocking, failed = ([], None) if held else self.dependencies()
            except sqlite3.OperationalError:
                held, blocking, failed = True, [], None  # locked for now: ask again
            if failed is not None:
                self.fail_queued(failed)
                return False
            message = (
                f"held: release it with `farm-adapters release {self.job_id}`"
                if held
                else (f"waiting for {', '.join(blocking)}" if blocking else "")
            )
            if message != shown:
                shown = message
                if message:
                    self.say(message)
                self.queue_write("UPDATE jobs SET message = ? WHERE id = ?", (message, self.job_id))
            if not held and not blocking:
                self.queue_write("UPDATE jobs SET ready = 1 WHERE id = ?", (self.job_id,))
                self.ready = True
                return True
            self.flush()
            for _ in self.selector.select(DEPENDENCY_POLL_INTERVAL):
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass

    def dependencies(self) -> tuple[list[str], str | None]:
        """(the jobs still waited for, the reason this job cannot run or None)."""
        blocking = []
        for dep, condition in self.after:
            row = self.conn.execute(
                "SELECT supervisor_pid, supervisor_start, submitted_at FROM jobs WHERE id = ?",
                (dep,),
            ).fetchone()
            if row is None:
                return [], f"job {dep}, which this job waits for, no longer exists"
            counts = dict(
                self.conn.execute(
                    "SELECT state, COUNT(*) FROM tasks WHERE job_id = ? GROUP BY state", (dep,)
                ).fetchall()
            )
            pid, start, submitted_at = row
            ended = all(state in FINAL_TASK_STATES for state in counts)
            gone = not ended and (
                (pid is None and time.time() - submitted_at > SUPERVISOR_START_GRACE)
                or (pid is not None and not is_alive(pid, start))
            )
            if not ended and not gone:
                blocking.append(dep)
                continue
            if condition == "ended" or (ended and set(counts) <= {"completed"}):
                continue
            how = (
                "its supervisor is gone"
                if gone
                else ("failed" if "failed" in counts else "was stopped")
            )
            return [], (
                f"job {dep}, which this job waits for, {how}; this job needed it to "
                f"succeed and will not run (restart {dep}, then this one)"
            )
        return blocking, None

    def fail_queued(self, reason: str) -> None:
        """End every queued task failed with ``reason``, without running it."""
        self.say(reason)
        while self.queue:
            run = self.queue.popleft()
            self.queue_write(
                "UPDATE tasks SET state = 'failed', finished_at = ?, message = ? "
                "WHERE job_id = ? AND idx = ?",
                (time.time(), reason, self.job_id, run.idx),
            )
        self.queue_write("UPDATE jobs SET message = ? WHERE id = ?", (reason, self.job_id))

    def spawn(self, run: Run) -> None:
        command = run.commands[run.step]
        argv = ["/bin/sh", "-c", command["argv"][0]] if command.get("shell") else command["argv"]
        env = {**self.base_env, **self.job_env, **command.get("env", {})}
        env[JOB_MARKER_ENV] = self.job_id
        env["FARM_ADAPTERS_TASK_INDEX"] = str(run.idx)
        env["FARM_ADAPTERS_FRAMES"] = run.frames
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(run.gpus)
        header = f"{run.label} started"
        if len(run.commands) > 1:
            header += f", command {run.step + 1} of {len(run.commands)}"
        if run.runs > 1:
            header += f", run {run.runs}"
        header += f": {shlex.join(argv)}"
        self.say(header)
        # The task inherits the lock files of its slots (and GPUs): if this supervisor
        # is killed, the tokens stay taken until the task's processes are gone too.
        held = self.slot_pool.fds(run.slots)
        if self.gpu_pool is not None:
            held += self.gpu_pool.fds(f"gpu-{g}" for g in run.gpus)
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            pid, popen = start_process(
                argv,
                env=env,
                cwd=command.get("cwd"),
                stdin=self.devnull,
                output=w,
                keep_fds=held,
            )
        except OSError as exc:
            os.close(r)
            os.close(w)
            self.finish_step(run, 127, f"cannot start {argv[0]!r}: {exc.strerror or exc}")
            return
        os.close(w)
        if popen is not None:
            self.popens[pid] = popen
        run.pid = pid
        run.pipe = r
        run.exit_code = None
        os.set_blocking(r, False)
        self.running[pid] = run
        self.by_pipe[r] = run
        self.selector.register(r, selectors.EVENT_READ, run)
        if run.step == 0:
            self.queue_write(
                "UPDATE tasks SET state = 'running', pid = ?, started_at = ?, runs = ?, "
                "message = '' WHERE job_id = ? AND idx = ?",
                (pid, time.time(), run.runs, self.job_id, run.idx),
            )
        else:
            self.queue_write(
                "UPDATE tasks SET pid = ? WHERE job_id = ? AND idx = ?",
                (pid, self.job_id, run.idx),
            )

    def read_pipe(self, run: Run) -> bool:
        """Read what is there; True at end of file."""
        assert run.pipe is not None
        while True:
            try:
                data = os.read(run.pipe, 65536)
            except BlockingIOError:
                return False
            if not data:
                return True
            self.tee(run, data)

    def close_pipe(self, run: Run) -> None:
        if run.pipe is None:
            return
        self.selector.unregister(run.pipe)
        del self.by_pipe[run.pipe]
        os.close(run.pipe)
        run.pipe = None

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = self.running.pop(pid, None)
            if run is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            popen = self.popens.pop(pid, None)
            if popen is not None:
                popen.returncode = code  # reaped here; keeps Popen from waiting again
            if run.pipe is not None and not self.read_pipe(run):
                # A background descendant still holds the output pipe: the task is
                # over, so its leftovers go with it.
                kill_group(pid, signal.SIGKILL)
                for _ in range(50):
                    if self.read_pipe(run):
                        break
                    time.sleep(0.01)
            else:
                kill_group(pid, signal.SIGKILL)
            self.close_pipe(run)
            self.finish_step(run, code, "")

    def finish_step(self, run: Run, code: int, problem: str) -> None:
        if run.partial:
            self.flush_partial(run)
        if problem:
            self.say(f"{run.label}: {problem}")
        if code == 0 and run.outcome is None and run.step + 1 < len(run.commands):
            run.step += 1
            self.spawn(run)
            return
        elapsed = time.monotonic() - run.started
        self.slot_pool.release(run.slots)
        if self.gpu_pool is not None:
            self.gpu_pool.release([f"gpu-{g}" for g in run.gpus])
        if run.outcome == "stopped":
            state, message = "stopped", "stopped by request"
        elif run.outcome == "timeout":
            state, message = "failed", f"timed out after {self.timeout:g} s"
        elif code == 0:
            state, message = "completed", ""
        else:
            state = "failed"
            message = problem or (
                f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
            )
            if len(run.commands) > 1:
                message = f"command {run.step + 1}: {message}"
        self.say(f"{run.label} {state}: {message or 'exit code 0'} ({elapsed:.2f} s)")
        if run.log_fd is not None:
            os.close(run.log_fd)
            run.log_fd = None
        if state == "failed" and run.retries < self.max_retries and not self.stop:
            run.retries += 1
            self.say(f"{run.label}: retrying ({run.retries} of {self.max_retries})")
            self.queue_write(
                "UPDATE tasks SET state = 'queued', retries = ?, exit_code = ?, message = ? "
                "WHERE job_id = ? AND idx = ?",
                (run.retries, code, f"retrying after: {message}", self.job_id, run.idx),
            )
            self.queue.append(run)
            return
        self.queue_write(
            "UPDATE tasks SET state = ?, exit_code = ?, finished_at = ?, message = ?, "
            "retries = ? WHERE job_id = ? AND idx = ?",
            (state, code, time.time(), message, run.retries, self.job_id, run.idx),
        )

    def signal_run(self, run: Run, sig: int) -> None:
        if run.pid is not None:
            kill_group(run.pid, sig)

    def begin_stop(self, now: float) -> None:
        if self.queue:
            self.say(f"stop requested: {len(self.queue)} queued task(s) will not run")
        while self.queue:
            run = self.queue.popleft()
            self.queue_write(
                "UPDATE tasks SET state = 'stopped', finished_at = ?, message = ? "
                "WHERE job_id = ? AND idx = ?",
                (time.time(), "stopped before it started", self.job_id, run.idx),
            )
        for run in self.running.values():
            if run.outcome != "stopped":
                run.outcome = "stopped"
                run.kill_at = now + self.grace
                self.signal_run(run, signal.SIGTERM)

    def check_deadlines(self, now: float) -> None:
        for run in list(self.running.values()):
            if run.kill_at is not None and now >= run.kill_at:
                self.say(f"{run.label}: still running {self.grace:g} s after SIGTERM; SIGKILL")
                run.kill_at = None
                self.signal_run(run, signal.SIGKILL)
            elif run.outcome is None and run.deadline is not None and now >= run.deadline:
                self.say(f"{run.label}: timed out after {self.timeout:g} s; SIGTERM")
                run.outcome = "timeout"
                run.kill_at = now + self.grace
                self.signal_run(run, signal.SIGTERM)

    def stop_requested_in_db(self) -> bool:
        try:
            row = self.conn.execute(
                "SELECT stop_requested FROM jobs WHERE id = ?", (self.job_id,)
            ).fetchone()
        except sqlite3.OperationalError:
            return False  # locked or unreadable for now: asked again next time
        return bool(row and row[0])

    # -- main loop ---------------------------------------------------------------------

    def run(self) -> None:
        self.install_signals()
        self.say(
            f"attempt {self.attempt}: {len(self.queue)} task(s) queued, "
            f"{len(self.slot_pool)} slot(s), supervisor pid {os.getpid()}"
        )
        if not self.ready and not self.wait_until_ready():
            self.queue_write(
                "UPDATE jobs SET finished_at = ? WHERE id = ?", (time.time(), self.job_id)
            )
            while not self.flush():
                time.sleep(max(0.01, self.state_retry_at - time.monotonic()))
            self.say(f"attempt {self.attempt} finished")
            self.notify_end()
            return
        self.queue_write(
            "UPDATE jobs SET started_at = COALESCE(started_at, ?), message = '' WHERE id = ?",
            (time.time(), self.job_id),
        )
        first_round = True  # the first tasks start before the first state write
        stopping = False
        next_stop_poll = time.monotonic() + STOP_POLL_INTERVAL
        while True:
            now = time.monotonic()
            if now >= next_stop_poll:
                next_stop_poll = now + STOP_POLL_INTERVAL
                self.beat()
                if not self.stop and self.stop_requested_in_db():
                    self.stop = True
            if self.stop and not stopping:
                stopping = True
                self.begin_stop(now)
            blocked = False
            while self.queue and not stopping:
                if not self.try_start(now):
                    blocked = True
                    break
            if first_round:
                first_round = False
                self.flush()
            if not self.queue and not self.running:
                break
            timeout = max(0.0, next_stop_poll - now)
            if self.pending:
                timeout = min(timeout, max(0.0, self.last_flush + FLUSH_INTERVAL - now))
            if blocked:
                timeout = min(timeout, SLOT_POLL_INTERVAL)
            for run in self.running.values():
                for t in (run.deadline if run.outcome is None else None, run.kill_at):
                    if t is not None:
                        timeout = min(timeout, max(0.0, t - now))
            for run in self.by_pipe.values():
                if run.partial_since is not None:
                    timeout = min(timeout, max(0.0, run.partial_since + PARTIAL_LINE_DELAY - now))
            for key, _ in self.selector.select(timeout):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 512):
                            pass
                    continue
                run = key.data
                if run.pipe is not None and self.read_pipe(run):
                    self.close_pipe(run)
            self.reap()
            now = time.monotonic()
            self.check_deadlines(now)
            self.flush_partials(now)
            if self.pending and now - self.last_flush >= FLUSH_INTERVAL:
                self.flush()
        peak = peak_rss_kb()
        self.queue_write(
            "UPDATE jobs SET finished_at = ?, peak_rss_kb = ? WHERE id = ?",
            (time.time(), peak, self.job_id),
        )
        while not self.flush():  # the tasks are done; their states must be recorded
            time.sleep(max(0.01, self.state_retry_at - time.monotonic()))
        self.say(f"attempt {self.attempt} finished")
        self.notify_end()

    def notify_end(self) -> None:
        """Fire the job's end notification (the targets file's [notify], kept at
        submit), unless another observer already did: the journal says who sent it.
        Never fails the job: a problem is a line in its log."""
        try:
            row = self.conn.execute(
                "SELECT notify, name, message FROM jobs WHERE id = ?", (self.job_id,)
            ).fetchone()
            if row is None or not row[0]:
                return
            spec = json.loads(row[0])
            counts = dict(
                self.conn.execute(
                    "SELECT state, COUNT(*) FROM tasks WHERE job_id = ? GROUP BY state",
                    (self.job_id,),
                ).fetchall()
            )
            from farm_adapters.models import Job
            from farm_adapters.notify import notify_job_end

            job = Job.from_task_states(
                counts, id=self.job_id, name=row[1], message=row[2], target=spec["target"]
            )
            sent, problems = notify_job_end(
                spec["config"], job, spec["target"], wanted=spec.get("wanted")
            )
            if sent:
                self.say(f"notified: job {job.state.value}")
            for problem in problems:
                self.say(problem)
        except Exception as exc:  # a notification must never turn into a failed job
            self.say(f"could not notify the job's end: {type(exc).__name__}: {exc}")

    def fail_everything(self, reason: str) -> None:
        """Last resort after an internal error: no task is left running or queued."""
        for run in list(self.running.values()):
            self.signal_run(run, signal.SIGKILL)
        self.pending.clear()
        with contextlib.suppress(sqlite3.Error, OSError):
            self.conn.execute(
                "UPDATE tasks SET state = 'failed', finished_at = ?, message = ? "
                "WHERE job_id = ? AND state IN ('queued', 'running')",
                (time.time(), reason, self.job_id),
            )
            self.conn.execute(
                "UPDATE jobs SET finished_at = ?, message = ? WHERE id = ?",
                (time.time(), reason, self.job_id),
            )
            self.say(reason)


def _lines(data: bytes) -> bytes:
    """Line ends as the log keeps them: ``\r\n`` and a lone ``\r`` become ``\n``."""
    if b"\r" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(
            "usage: python -m farm_adapters.plugins.local.supervisor DB_PATH JOB_ID",
            file=sys.stderr,
        )
        return 2
    keep_descriptors_private()
    supervisor = Supervisor(Path(args[0]), args[1])
    try:
        supervisor.record_self()
        supervisor.run()
    except BaseException as exc:
        import traceback

        traceback.print_exc()
        supervisor.fail_everything(f"supervisor error: {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
