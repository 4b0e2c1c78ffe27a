"""Starting one task process, as cheaply as the platform allows.

A local job's tasks are started one after another by a single supervisor, which waits
while each new process gets to ``exec``; that wait bounds how many short tasks a second
a job runs. ``subprocess.Popen`` does much per call (it closes every descriptor in the
child, re-encodes the environment, waits on an error pipe); :func:`os.posix_spawn` lets
the C library start the process (``vfork`` semantics) with no Python in between. It is
used whenever it can do the same job: stdin/stdout/stderr redirected, the given
descriptors kept open, SIGPIPE and SIGXFSZ back to their defaults (Python ignores them,
and ignored signals survive ``exec``), the program looked up on the task's own
``PATH``. ``Popen`` does it otherwise: a task with its own working directory
(``posix_spawn`` cannot change it) or a platform without ``posix_spawn``.

Each task gets a process group of its own (what stop and timeouts signal), inside the
supervisor's session, not a new session: where the kernel groups scheduling by session
(autogroup, the default on many desktops), a new session per task made each new
process wait for a scheduler slice on a busy machine before it could ``exec``, while
the supervisor waited for it (on 2 cores kept busy by two CPU burners, 1.8x fewer
short tasks a second than a process group). The supervisor's own session has no
controlling terminal, so neither do its tasks.

Standard library only: this is on the supervisor's start-up path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

#: Signals Python ignores at start-up; a task gets them back at their defaults, as
#: ``Popen(restore_signals=True)`` does.
RESTORED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)
)

_posix_spawn_ok = hasattr(os, "posix_spawn")


def keep_descriptors_private() -> None:
    """Make every descriptor above stderr this process holds close-on-exec, so a task
    started by :func:`start_process` inherits only what it is given. Python opens its
    own that way already (and SQLite too); this covers any its parent left open."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc: Python's own descriptors are close-on-exec anyway
        return
    for fd in fds:
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own, closed by now
                os.set_inheritable(fd, False)


def find_program(name: str, env: Mapping[str, str]) -> str:
    """The file ``exec`` would run for ``name``: itself when it holds a ``/``, else the
    first executable file of that name on the ``PATH`` of ``env`` (the task's, as
    ``Popen`` looks it up; not this process's own). Raises FileNotFoundError, or
    PermissionError when only files it may not execute were found."""
    if os.sep in name:
        return name
    denied = None
    for folder in os.get_exec_path(env):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            if os.access(path, os.X_OK):
                return path
            denied = denied or path
    if denied is not None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def start_process(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    stdin: int,
    output: int,
    keep_fds: Sequence[int] = (),
) -> tuple[int, subprocess.Popen[bytes] | None]:
    """Start ``argv`` in a process group of its own, with ``stdin`` as its
    standard input, ``output`` as its standard output and error, and ``keep_fds`` open
    in it (every other descriptor of this process is close-on-exec, Python's default).

    Returns the child's pid and, when ``Popen`` started it, the ``Popen`` object: the
    caller keeps it until it has reaped the child itself (with ``os.waitpid``), so its
    finaliser never reaps the child first. Raises OSError when the program cannot be
    started (not found, not executable, a missing working directory)."""
    global _posix_spawn_ok
    if _posix_spawn_ok and not cwd:
        program = find_program(argv[0], env)
        for fd in keep_fds:
            os.set_inheritable(fd, True)
        try:
            pid = os.posix_spawn(
                program,
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin, 0),
                    (os.POSIX_SPAWN_DUP2, output, 1),
                    (os.POSIX_SPAWN_DUP2, output, 2),
                ],
                setpgroup=0,
                setsigdef=RESTORED_SIGNALS,
            )
        except NotImplementedError:  # a C library without a flag asked for: use Popen
            _posix_spawn_ok = False
        else:
            return pid, None
        finally:
            for fd in keep_fds:
                os.set_inheritable(fd, False)
    # ``process_group`` is new in 3.11; before, a session of its own gives the group.
    group: dict[str, Any] = (
        {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
    )
    proc = subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=output,
        stderr=output,
        cwd=cwd or None,
        env=env,
        pass_fds=keep_fds,
        **group,
    )
    return proc.pid, proc
