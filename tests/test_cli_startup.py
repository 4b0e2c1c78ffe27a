"""Start-up of the artist's commands (issues 13 and 17): `--help` and completing a
command name import no command module; `jobs`, `status` and `logs` of local jobs read
the local store without pydantic, pluggy or the plug-in manager, and print exactly
what the full path prints. Every command runs in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXE = [sys.executable, "-m", "farm_adapters"]

#: Modules the light paths must not import.
HEAVY = ("pydantic", "pluggy", "farm_adapters.manager", "farm_adapters.models")


def loaded_modules(args: list[str], env: dict[str, str] | None = None) -> set[str]:
    """The modules a command line imported, run as `python -m farm_adapters` runs it."""
    code = (
        "import sys, json, atexit\n"
        "def report():\n"
        "    sys.__stderr__.write('MODULES' + json.dumps(sorted(sys.modules)))\n"
        "atexit.register(report)\n"
        "from farm_adapters.cli import main\n"
        f"main({args!r})\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert "MODULES" in proc.stderr, proc.stderr
    return set(json.loads(proc.stderr.rsplit("MODULES", 1)[1]))


def test_every_command_is_in_the_lazy_table_with_its_own_short_help() -> None:
    from farm_adapters.cli import cli

    table = dict(cli.lazy)
    for name in table:
        command = cli.get_command(None, name)
        assert command is not None, name
        assert command.name == name
        for limit in (20, 45, 60, 200):
            stub = __import__("click").Command(name, help=table[name][2])
            assert stub.get_short_help_str(limit) == command.get_short_help_str(limit), name
    # Every command the modules define is in the table (a new command must be added).
    assert set(cli.commands) == set(table)


def test_help_and_command_completion_import_no_command_module(tmp_path: Path) -> None:
    env = {"FARM_ADAPTERS_DATA_DIR": str(tmp_path)}
    help_modules = loaded_modules(["--help"], env)
    complete = {
        **env,
        "_FARM_ADAPTERS_COMPLETE": "bash_complete",
        "COMP_WORDS": "farm-adapters st",
        "COMP_CWORD": "1",
    }
    completion_modules = loaded_modules([], complete)
    for modules in (help_modules, completion_modules):
        commands = {
            m
            for m in modules
            if m.startswith("farm_adapters.cli.") and m != "farm_adapters.cli._common"
        }
        assert not commands, commands
    # Completing a command name loads plug-ins (they may add commands); --help does not.
    assert not {m for m in help_modules if m.split(".")[0] in ("pydantic", "pluggy", "rich")}


def test_command_name_completion_lists_the_commands_with_their_help(tmp_path: Path) -> None:
    proc = subprocess.run(
        EXE,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "FARM_ADAPTERS_DATA_DIR": str(tmp_path),
            "_FARM_ADAPTERS_COMPLETE": "zsh_complete",
            "COMP_WORDS": "farm-adapters st",
            "COMP_CWORD": "1",
        },
        timeout=120,
    )
    lines = proc.stdout.splitlines()
    # zsh: type, value, help, for each item
    items = {lines[i + 1]: lines[i + 2] for i in range(0, len(lines) - 2, 3)}
    assert items == {
        "status": "Show one job's state, task counts and times.",
        "stop": "Stop a job (its running tasks get SIGTERM,...",  # click cuts at 45
    }


@pytest.mark.parametrize("args", [["status", "--help"], ["emulate", "--help"]])
def test_a_command_imports_its_own_module_only(args: list[str], tmp_path: Path) -> None:
    modules = loaded_modules(args, {"FARM_ADAPTERS_DATA_DIR": str(tmp_path)})
    assert "farm_adapters.cli.jobs" in modules or "farm_adapters.cli.emulate" in modules
    assert "farm_adapters.cli.lifecycle" not in modules
