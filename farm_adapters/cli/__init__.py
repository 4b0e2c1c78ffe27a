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
from typing import Any

import click

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

# Every built-in command, in the order of --help (set up, send, follow, tools; plug-ins'
# commands come after): its module, its name there, and its short help, so `--help`
# and completing a command name import none of the modules (tests/test_cli_startup.py
# checks the short help against each command's own).
cli.lazy = {
    "backends": (
        ".cli.info",
        "backends",
        "List the backends, where each comes from, and whether it can be used.",
    ),
    "targets": (
        ".cli.info",
        "targets",
        "List the configured render targets (secrets are shown as references).",
    ),
    "check": (
        ".cli.info",
        "check",
        "Run a target's self-test: reachability, authentication, storage.",
    ),
    "submit": (".cli.run", "submit", "Submit a job: a job file (TOML), or a command after `--`."),
    "jobs": (
        ".cli.jobs",
        "jobs",
        "List jobs submitted from this machine (the journal), newest first.",
    ),
    "status": (".cli.jobs", "status", "Show one job's state, task counts and times."),
    "logs": (
        ".cli.jobs",
        "logs",
        "Print a job's render log (render-node paths shown as this machine's).",
    ),
    "stop": (".cli.jobs", "stop", "Stop a job (its running tasks get SIGTERM, then SIGKILL)."),
    "restart": (
        ".cli.jobs",
        "restart",
        "Run a finished, failed or stopped job again (a new attempt).",
    ),
    "wait": (
        ".cli.lifecycle",
        "wait_command",
        "Wait until a job ends (and notify its end, once); exit 1 unless it completed.",
    ),
    "release": (".cli.lifecycle", "release", "Let a job submitted with --hold run."),
    "priority": (
        ".cli.lifecycle",
        "priority",
        "Change a job's priority: N from 0 (lowest) to 100 (highest).",
    ),
    "outputs": (
        ".cli.lifecycle",
        "outputs",
        "List the files a job wrote; download them or make thumbnails.",
    ),
    "delete": (
        ".cli.lifecycle",
        "delete",
        "Delete jobs: their folder, state, logs and journal record.",
    ),
    "clean": (
        ".cli.lifecycle",
        "clean",
        "Delete the finished jobs of this machine's journal older than an age.",
    ),
    "monitor": (
        ".cli.monitor",
        "monitor",
        "Serve a web page showing every target's jobs, live, on this machine.",
    ),
    "emulate": (
        ".cli.emulate",
        "emulate",
        "Run a farm emulator on this machine (needs the `emulators` extra).",
    ),
    "blender": (
        ".dcc._cli",
        "blender",
        "The Blender add-on: install it, or build the zip Blender's installer takes.",
    ),
    "katana": (
        ".dcc._cli",
        "katana",
        "The Katana bridge: render targets as Katana render farm plug-ins.",
    ),
    "completion": (
        ".cli.info",
        "completion",
        'Print the shell completion script: eval "$(farm-adapters completion bash)".',
    ),
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
        return not named or named[0] not in cli.list_commands(None)
    if not words:
        return False  # `--help` lists the built-ins and says how plug-ins add theirs
    return words[0] not in cli.list_commands(None)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``farm-adapters`` console script."""
    import sys

    args = list(argv) if argv is not None else sys.argv[1:]
    if _needs_plugin_commands(args):
        _add_plugin_commands()
    cli.main(args=args, prog_name="farm-adapters")


# The helpers' names in the single-module cli.py this package replaced, for command
# modules written against it (new code imports them from ._common, .run, .info); the
# command modules are imported only when one of these is asked for.
_ALIASES = {
    "_console": ("._common", "console"),
    "_dump": ("._common", "dump"),
    "_job_json": ("._common", "job_json"),
    "_state_text": ("._common", "state_text"),
    "_fmt_time": ("._common", "fmt_full_time"),
    "_warn": ("._common", "warn"),
    "_current_manager": ("._common", "current_manager"),
    "_STATE_STYLE": ("._common", "STATE_STYLE"),
    "_Group": ("._common", "Group"),
    "_check_target": (".info", "check_target"),
    "_read_job_file": (".run", "_read_job_file"),
    "_parse_env": (".run", "_parse_env"),
    "_transfer_progress": ("._common", "transfer_progress"),
    "_wait_with_progress": (".run", "wait_with_progress"),
}


def __getattr__(name: str) -> Any:
    if name not in _ALIASES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    module, attr = _ALIASES[name]
    return getattr(import_module(module, __name__), attr)
