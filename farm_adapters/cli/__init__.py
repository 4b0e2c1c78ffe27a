"""The ``farm-adapters`` command line.

Exit codes: 0 success; 1 the job failed (or was stopped) while waiting on it;
2 usage or invalid input (bad request, unknown target or job, bad configuration);
3 target unreachable or authentication failed; 4 a plug-in (or farm-adapters itself)
raised an unexpected exception, a bug. Errors are one line on stderr; ``--debug`` adds
the traceback.

One module per command group, each registering on :data:`cli` (``@cli.command()``):

- :mod:`._common`: exit codes, :class:`Context`, output (tables, JSON, errors, hints),
  target resolution, completion of job ids and target names
- :mod:`.info`: ``backends``, ``targets``, ``check``, ``completion``
- :mod:`.run`: ``submit``
- :mod:`.jobs`: ``jobs``, ``status``, ``logs``, ``stop``, ``restart``
- :mod:`.monitor`: ``monitor`` (the web monitor)
- :mod:`.emulate`: ``emulate ovfarm|runai``
- DCC commands (``blender``, ``katana``) come from :mod:`farm_adapters.dcc._cli`;
  plug-ins add theirs through the ``farm_adapters_register_commands`` hook.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import click

from ..dcc._cli import blender, katana
from . import _common as _c
from . import emulate as _emulate
from . import info as _info
from . import jobs as _jobs
from . import lifecycle as _lifecycle
from . import monitor as _monitor
from . import run as _run
from ._common import (
    EXIT_BUG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    MAX_LOG_OFFSET,
    Context,
    cli,
    describe_bug,
    exit_code_for,
    fail,
    handle_errors,
    pass_ctx,
)

__all__ = [
    "EXIT_BUG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "MAX_LOG_OFFSET",
    "Context",
    "cli",
    "describe_bug",
    "exit_code_for",
    "fail",
    "handle_errors",
    "main",
    "pass_ctx",
]

_COMMAND_MODULES = (_info, _run, _jobs, _lifecycle, _monitor, _emulate)

cli.add_command(blender)
cli.add_command(katana)
for _command in _lifecycle.commands:
    cli.add_command(_command)
# The order of --help: set up, send, follow, tools; plug-ins' commands come after.
_ORDER = [
    "backends",
    "targets",
    "check",
    "submit",
    "jobs",
    "status",
    "logs",
    "stop",
    "restart",
    "wait",
    "release",
    "priority",
    "outputs",
    "delete",
    "clean",
    "monitor",
    "emulate",
    "blender",
    "katana",
    "completion",
]
cli.commands = {
    **{name: cli.commands[name] for name in _ORDER if name in cli.commands},
    **{name: cmd for name, cmd in cli.commands.items() if name not in _ORDER},
}


def _add_plugin_commands() -> None:
    if os.environ.get("_FARM_ADAPTERS_NO_PLUGIN_COMMANDS"):
        return
    try:
        from ..manager import get_plugin_manager

        manager = get_plugin_manager()
        manager.hook.farm_adapters_register_commands(cli=cli)
    except Exception as exc:  # a plug-in's bug must not take the command line down
        click.echo(f"warning: a plug-in failed to add commands: {exc}", err=True)


def _needs_plugin_commands(args: Sequence[str]) -> bool:
    """Plug-in commands are loaded (importing every backend's module) only when the
    command line may name one: not for the built-in commands, whose start-up stays
    light."""
    words = [a for a in args if not a.startswith("-")]
    if os.environ.get("_FARM_ADAPTERS_COMPLETE"):
        # Completing: the words typed so far (the last one is being completed). Once a
        # built-in command is named, its job ids and targets complete without loading
        # any plug-in.
        typed = os.environ.get("COMP_WORDS", "").split()[1:]
        if os.environ.get("COMP_WORDS", "").endswith(" "):
            typed.append("")
        named = [w for w in typed[:-1] if not w.startswith("-")]
        return not named or named[0] not in cli.commands
    if not words:
        return False  # `--help` lists the built-ins and says how plug-ins add theirs
    return words[0] not in cli.commands


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``farm-adapters`` console script."""
    import sys

    args = list(argv) if argv is not None else sys.argv[1:]
    if _needs_plugin_commands(args):
        _add_plugin_commands()
    cli.main(args=args, prog_name="farm-adapters")


# The helpers' names in the single-module cli.py this package replaced, for command
# modules written against it (new code imports them from ._common, .run, .info).
_console = _c.console
_dump = _c.dump
_job_json = _c.job_json
_state_text = _c.state_text
_fmt_time = _c.fmt_full_time
_warn = _c.warn
_current_manager = _c.current_manager
_STATE_STYLE = _c.STATE_STYLE
_Group = _c.Group
_check_target = _info.check_target
_read_job_file = _run._read_job_file
_parse_env = _run._parse_env
_transfer_progress = _c.transfer_progress
_wait_with_progress = _run.wait_with_progress
