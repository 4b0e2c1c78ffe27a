"""What this machine has (CPUs, memory, GPUs) and which processes are alive."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

#: Set in every task's environment; used to recognise a job's processes for sure
#: before signalling a process group recorded in the database.
JOB_MARKER_ENV = "FARM_ADAPTERS_LOCAL_JOB"

#: The module a job's supervisor runs; recognised in its command line.
SUPERVISOR_MODULE = "farm_adapters.plugins.local.supervisor"


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def total_memory() -> int | None:
    """Physical memory in bytes, or None when it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@lru_cache(maxsize=1)
def gpu_ids() -> tuple[str, ...]:
    """GPU indices reported by ``nvidia-smi -L`` (empty when there is none)."""
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run(
            [exe, "-L"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU "))


def process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, as text), or None when
    no such process is running (zombies count as gone). Together with the pid this
    identifies a process across pid reuse and reboots."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return _alive_without_proc(pid)
    fields = stat[stat.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _alive_without_proc(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return ""
    return ""


def is_alive(pid: int | None, start: str | None) -> bool:
    """Whether the process recorded as (pid, start) is still the one running.

    Without a recorded start time the pid alone proves nothing (it may have been
    reused by any process since), so the answer is False."""
    if not pid or not start:
        return False
    now = process_start(pid)
    if now is None:
        return False
    return not now or now == start


def belongs_to_job(pid: int, job_id: str) -> bool:
    """True when process ``pid`` carries the job's marker in its environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    return f"{JOB_MARKER_ENV}={job_id}".encode() in env.split(b"\0")


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def find_supervisor(db_path: Path, job_id: str) -> tuple[int, str] | None:
    """(pid, start) of a running supervisor of ``job_id`` on the state database
    ``db_path``, recognised by its command line; None when there is none. Used when no
    pid was recorded (the submitting process died before it could write it)."""
    module = SUPERVISOR_MODULE.encode()
    want = [str(db_path).encode(), job_id.encode()]
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if any(module in a for a in argv) and argv[-2:] == want:
            start = process_start(pid)
            if start:
                return pid, start
    return None


def job_processes(job_id: str) -> list[int]:
    """Every live process carrying the job's marker in its environment, whatever its
    process group or session (background grandchildren included)."""
    me = os.getpid()
    return [pid for pid in _pids() if pid != me and belongs_to_job(pid, job_id)]


def kill_job_processes(job_id: str) -> None:
    """SIGKILL every process carrying the job's marker (never a reused pid: the marker
    is checked on each one). Repeated until none is left, so a process forked while
    the first sweep ran is caught by the next."""
    for _ in range(20):
        pids = job_processes(job_id)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def kill_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def kill_job_leftovers(job_id: str, pgids: Iterable[int]) -> None:
    """SIGKILL what is left of a job whose supervisor is gone: the process groups whose
    leader still carries the job's marker (never a reused pid), then every other
    process carrying it (a background grandchild whose group leader has exited)."""
    for pgid in pgids:
        if pgid and belongs_to_job(pgid, job_id):
            kill_group(pgid, signal.SIGKILL)
    kill_job_processes(job_id)


class LockPool:
    """Machine-wide tokens (CPU slots, GPU ids) as ``flock`` ed files in a folder.

    Every supervisor on the machine draws from the same folder, so two jobs never run
    more tasks at once than there are slots. Locks die with their process: a killed
    supervisor frees its slots by itself.
    """

    def __init__(self, folder: Path, names: Iterable[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._fds: dict[str, int] = {}
        for name in names:
            self._fds[name] = os.open(folder / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._held: set[str] = set()

    def __len__(self) -> int:
        return len(self._fds)

    def fds(self, names: Iterable[str]) -> list[int]:
        """The descriptors holding ``names``: a task process that inherits them keeps
        its tokens locked even if its supervisor is killed (``flock`` locks belong to
        the open file, which the task then shares)."""
        return [self._fds[name] for name in names]

    def acquire(self, count: int) -> list[str] | None:
        """Take ``count`` free tokens at once, or none (None)."""
        taken: list[str] = []
        for name, fd in self._fds.items():
            if len(taken) == count:
                break
            if name in self._held:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            taken.append(name)
            self._held.add(name)
        if len(taken) < count:
            self.release(taken)
            return None
        return taken

    def release(self, names: Iterable[str]) -> None:
        for name in names:
            if name in self._held:
                fcntl.flock(self._fds[name], fcntl.LOCK_UN)
                self._held.discard(name)

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        self._held.clear()
