"""POSIX sh scripts that run a task's argv commands exactly, for farms whose unit of
work is one command line (a Farm task, a container's command).

Every argument is quoted with :func:`shlex.quote`, so an argv list stays an argv list:
nothing in it is ever re-interpreted by the shell. Commands run in order, each in a
subshell with its own ``cwd`` and ``env``; the first that fails ends the script with
its exit code. A command given with ``shell=True`` is run by ``/bin/sh -c`` on purpose.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable

from .errors import InvalidRequestError
from .models import Command

__all__ = ["DEFAULT_PATH", "check_env_names", "command_line", "task_script"]

#: PATH for nodes that start tasks with an empty environment (Farm agents on Linux).
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def command_line(command: Command) -> str:
    """One sh line running ``command`` exactly: a subshell that changes to its ``cwd``,
    exports its ``env`` and execs its quoted argv."""
    steps = []
    if command.cwd:
        steps.append(f"cd {shlex.quote(command.cwd)}")
    for key, value in command.env.items():
        steps.append(f"{key}={shlex.quote(value)}; export {key}")
    steps.append("exec " + shlex.join(command.resolved_argv()))
    return "(" + " && ".join(steps) + ")"


def check_env_names(commands: Iterable[Command]) -> None:
    """Refuse environment names sh cannot export."""
    for i, command in enumerate(commands):
        for key in command.env:
            if not key or key[0].isdigit() or not key.replace("_", "a").isalnum():
                raise InvalidRequestError(
                    f"commands[{i}]: environment name {key!r} cannot be exported by sh; use "
                    f"letters, digits and '_'",
                    field=f"commands.{i}",
                )


def task_script(commands: Iterable[Command], *, log_file: str | None = None) -> str:
    """A script running ``commands`` in order, stopping at the first failure. With
    ``log_file``, the output is also appended to that file (on shared storage, so it
    can be read when the farm's own log service cannot), keeping the exit code."""
    body = "\n".join(command_line(c) for c in commands)
    head = f': "${{PATH:={DEFAULT_PATH}}}"; export PATH\n'
    if log_file is None:
        return f"{head}set -e\n{body}\n"
    log = shlex.quote(log_file)
    rc = shlex.quote(log_file + ".rc")
    return (
        f'{head}mkdir -p "$(dirname {log})"\n'
        f"{{ ( set -e\n{body}\n); echo $? > {rc}; }} 2>&1 | tee -a {log}\n"
        f'exit "$(cat {rc})"\n'
    )
