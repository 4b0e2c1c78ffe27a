"""Start-up of the artist's commands (issues 13 and 17): `--help` and completing a
command name import no command module; `jobs`, `status` and `logs` of local jobs read
the local store without pydantic, pluggy or the plug-in manager, and print exactly
what the full path prints. Every command runs in a real subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


# -- the light path of jobs, status and logs -------------------------------------------


def run(args: list[str], data: Path, *, full: bool = False, **env: str) -> tuple[int, str, str]:
    """A command's exit code, stdout and stderr through pipes."""
    environ = {**os.environ, "FARM_ADAPTERS_DATA_DIR": str(data), **env}
    environ.pop("FARM_ADAPTERS_CONFIG", None)
    environ.pop("COLUMNS", None)
    if full:
        environ["_FARM_ADAPTERS_NO_LIGHT_PATH"] = "1"
    proc = subprocess.run(
        [*EXE, *args], capture_output=True, text=True, env=environ, cwd=data, timeout=120
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_pty(args: list[str], data: Path, *, full: bool = False) -> tuple[int, bytes]:
    """A command on an 80-column pseudo-terminal: its exit code and every byte it wrote
    (colours included)."""
    import fcntl
    import pty
    import struct
    import termios

    environ = {**os.environ, "FARM_ADAPTERS_DATA_DIR": str(data), "TERM": "xterm"}
    environ.pop("FARM_ADAPTERS_CONFIG", None)
    environ.pop("COLUMNS", None)
    if full:
        environ["_FARM_ADAPTERS_NO_LIGHT_PATH"] = "1"
    argv = [*EXE, *args]
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.chdir(data)
        os.execve(argv[0], argv, environ)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def wait_for_supervisor_exit(data: Path, job_id: str) -> None:
    import sqlite3

    from farm_adapters.plugins.local import machine

    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(data / "local" / "state.sqlite3") as conn:
            pid, start = conn.execute(
                "SELECT supervisor_pid, supervisor_start FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        if not machine.is_alive(pid, start):
            return
        assert time.monotonic() < deadline, f"{job_id}'s supervisor still runs after 60 s"
        time.sleep(0.05)


def submit(data: Path, *args: str) -> str:
    code, out, err = run(["submit", "--json", *args], data)
    assert code in (0, 1), err
    return str(json.loads(out)["id"])


@pytest.fixture(scope="module")
def jobs_data(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Local jobs of every kind: one task, parallel tasks with a failure, colour codes,
    a name too long for 80 columns, markup-like text, a stopped job, a running one."""
    data = tmp_path_factory.mktemp("light")
    ids = {
        "one": submit(data, "--wait", "-n", "one", "--", "echo", "hello"),
        "parallel": submit(
            data,
            "--wait",
            "--frames",
            "1-6",
            "-n",
            "a-very-long-job-name-that-cannot-fit-in-eighty-columns-of-a-terminal",
            "--",
            "sh",
            "-c",
            "echo start {frame}; sleep 0.3; echo end {frame}; test {frame} -ne 4",
        ),
        "colour": submit(
            data,
            "--wait",
            "--frames",
            "1-2",
            "-n",
            "grade [bold]x[/] 100%",
            "--",
            "sh",
            "-c",
            "printf '\\033[31mred {frame}\\033[0m\\n'",
        ),
        "stopped": submit(data, "-n", "stopped", "--", "sleep", "60"),
    }
    run(["stop", "--wait", ids["stopped"]], data)
    ids["running"] = submit(data, "-n", "running", "--", "sleep", "120")
    deadline = time.monotonic() + 60
    while json.loads(run(["status", ids["running"], "--json"], data)[1])["state"] != "running":
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.2)
    yield data, ids
    run(["stop", ids["running"]], data)


def commands(ids: dict[str, str]) -> list[list[str]]:
    listed = [
        ["jobs"],
        ["jobs", "--json"],
        ["jobs", "--limit", "2"],
        ["jobs", "--state", "failed", "--state", "running"],
        ["jobs", "--name", "grade*"],
        ["jobs", "--target", "local"],
        ["jobs", "-t", "local", "--state", "completed", "--json"],
        ["logs", ids["one"], "--follow", "--tail", "2"],
        ["status", "nosuchjob"],
        ["logs", "nosuchjob"],
        ["logs", ids["parallel"], "--task", "99"],
    ]
    for kind, job_id in ids.items():
        listed += [
            ["status", job_id],
            ["status", job_id, "--json"],
            ["status", job_id, "-t", "local"],
            ["logs", job_id],
            ["logs", job_id, "--tail", "3"],
            ["logs", job_id, "--task", "1" if kind == "parallel" else "0"],
            ["logs", job_id, "--raw"],
            ["logs", job_id, "--offset", "7"],
        ]
        if kind != "running":  # a running task's duration grows between the two runs
            listed += [["status", job_id, "--tasks"], ["status", job_id, "--tasks", "--json"]]
    return listed


@pytest.mark.parametrize("runner", [run, run_pty], ids=["pipes", "terminal"])
def test_light_and_full_paths_print_the_same(jobs_data: Any, runner: Any) -> None:
    data, ids = jobs_data
    for args in commands(ids):
        if runner is run_pty and args[0] == "logs" and "--raw" not in args:
            continue  # the log's text goes out the same way on both paths
        if runner(args, data) != runner(args, data, full=True):
            # Once more, in case a minute turned between the two (tables show times
            # to the minute) or a task of the running job moved on.
            assert runner(args, data) == runner(args, data, full=True), args


def test_the_light_path_imports_neither_pydantic_nor_pluggy(jobs_data: Any) -> None:
    data, ids = jobs_data
    env = {"FARM_ADAPTERS_DATA_DIR": str(data)}
    for args in (
        ["jobs"],
        ["status", ids["one"], "--tasks"],
        ["status", ids["running"]],
        ["logs", ids["parallel"]],
        ["logs", ids["parallel"], "--task", "2"],
    ):
        modules = loaded_modules(args, env)
        assert not {m for m in modules if m.split(".")[0] in ("pydantic", "pluggy", "rich")}, args
        assert "farm_adapters.plugins.local.view" in modules, args
    # Anything that could change the answer takes the full path.
    config = data / "targets.toml"
    config.write_text('[targets.gpu]\nbackend = "local"\nslots = 1\n')
    plugins = data / "resources"
    (plugins / "Plugins").mkdir(parents=True, exist_ok=True)
    for extra in (
        {"FARM_ADAPTERS_CONFIG": str(config)},
        {"FARM_ADAPTERS_RESOURCES": str(plugins)},
        {"FARM_ADAPTERS_BLOCK": "ovfarm"},
        {"FARM_ADAPTERS_DISABLE_AUTOLOAD": "1"},
    ):
        modules = loaded_modules(["status", ids["one"]], {**env, **extra})
        assert "farm_adapters.manager" in modules, extra
    code, _, err = run(["status", ids["one"], "-t", "gpu"], data)
    assert code == 2 and "no target named 'gpu'" in err  # only `local` is read lightly


def test_a_job_whose_supervisor_is_gone_is_settled_by_the_plugin(tmp_path: Path) -> None:
    import signal
    import sqlite3

    job_id = submit(tmp_path, "-n", "orphan", "--", "sleep", "120")
    db = tmp_path / "local" / "state.sqlite3"
    deadline = time.monotonic() + 60
    while True:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT supervisor_pid, (SELECT pid FROM tasks WHERE job_id = ?) FROM jobs "
                "WHERE id = ?",
                (job_id, job_id),
            ).fetchone()
        if row[0] and row[1]:
            break
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.2)
    os.kill(row[0], signal.SIGKILL)
    os.killpg(row[1], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{row[0]}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # until the supervisor's zombie is reaped
    code, out, err = run(["status", job_id], tmp_path)  # light path first
    assert code == 0, err
    assert "failed" in out and f"supervisor (pid {row[0]}) is gone" in out
    assert run(["status", job_id], tmp_path) == run(["status", job_id], tmp_path, full=True)
    assert "is gone" in run(["logs", job_id], tmp_path)[1]


def test_entry_points_other_than_the_builtins_are_seen(tmp_path: Path) -> None:
    from farm_adapters.cli._light import only_builtin_entry_points

    ours = tmp_path / "site" / "farm_adapters-1.0.dist-info"
    ours.mkdir(parents=True)
    (ours / "entry_points.txt").write_text(
        "[console_scripts]\nfarm-adapters = farm_adapters.cli:main\n\n[farm_adapters]\n"
        "local = farm_adapters.plugins.local\novfarm = farm_adapters.plugins.ovfarm\n"
    )
    other = tmp_path / "site" / "other-2.0.dist-info"
    other.mkdir()
    (other / "entry_points.txt").write_text("[console_scripts]\nx = y:z\n")
    assert only_builtin_entry_points([str(tmp_path / "site"), str(tmp_path / "missing")])
    studio = tmp_path / "site" / "studio_farm-0.1.dist-info"
    studio.mkdir()
    (studio / "entry_points.txt").write_text("[farm_adapters]\nstudio = studio_farm\n")
    assert not only_builtin_entry_points([str(tmp_path / "site")])
    (studio / "entry_points.txt").write_text("[farm_adapters]\nlocal = studio_farm.local\n")
    assert not only_builtin_entry_points([str(tmp_path / "site")])
    archive = tmp_path / "plugins.zip"
    archive.write_bytes(b"")
    assert not only_builtin_entry_points([str(archive)])
    # This environment as installed: the built-ins only.
    assert only_builtin_entry_points()


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"XDG_DATA_HOME": "/srv/data", "XDG_CONFIG_HOME": "/srv/config"},
        {"XDG_DATA_HOME": "relative/data", "XDG_CONFIG_HOME": ""},
        {"HOME": "relative-home"},
    ],
)
def test_user_folders_are_those_platformdirs_gives(env: dict[str, str], tmp_path: Path) -> None:
    code = (
        "import json, platformdirs\n"
        "from farm_adapters._paths import user_dir\n"
        "print(json.dumps([\n"
        "    str(user_dir('data')),\n"
        "    str(platformdirs.user_data_path('farm-adapters', appauthor=False)),\n"
        "    str(user_dir('config')),\n"
        "    str(platformdirs.user_config_path('farm-adapters', appauthor=False)),\n"
        "]))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    environ.update({"HOME": str(tmp_path), **env})
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    ours_data, theirs_data, ours_config, theirs_config = json.loads(out.stdout)
    assert (ours_data, ours_config) == (theirs_data, theirs_config)


def test_the_view_reads_the_supervisors_files_as_it_writes_them() -> None:
    from farm_adapters.plugins.local import supervisor, view

    assert view.SEGMENT.format == supervisor.SEGMENT.format
    assert view.HEARTBEAT_FILE == supervisor.HEARTBEAT_FILE
    assert view.TIMES_FILE == supervisor.TIMES_FILE
    assert view.TIME_RECORD.format == supervisor.TIME_RECORD.format
    assert view.SUPERVISOR_START_GRACE == supervisor.SUPERVISOR_START_GRACE


# -- plain printing is rich's --------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {},  # a pipe or a file: no styles
        {"FORCE_COLOR": "1", "TERM": "xterm-256color"},
        {"TTY_COMPATIBLE": "1", "TERM": "xterm", "COLORTERM": "truecolor"},
        {"FORCE_COLOR": "1", "TERM": "dumb"},  # rich prints these itself
        {"FORCE_COLOR": "1", "TERM": "xterm", "NO_COLOR": "1"},
    ],
    ids=["pipe", "terminal-256", "terminal-truecolor", "dumb", "no-color"],
)
def test_plain_lines_and_tables_are_what_rich_prints(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import random

    from rich.console import Console

    from farm_adapters.cli._print import Column, Output

    rng = random.Random(7)
    alphabet = "abcdefghij KLM-_./[]:%0123456789"

    def word(longest: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))

    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLORTERM", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    styles = ["", "bold", "dim", "green", "red", "yellow", "cyan", "magenta", "blue", "white"]
    plain = 0
    for _ in range(400):
        width = rng.choice([20, 40, 80, 120])
        monkeypatch.setenv("COLUMNS", str(width))
        if rng.random() < 0.4:
            line = [(word(30), rng.choice(styles)) for _ in range(rng.randint(1, 4))]
            table = None
        else:
            fixed = rng.random() < 0.5
            columns = [
                Column(word(8) or "h", rng.randint(1, 12) if fixed else None, right=i == 2)
                for i in range(rng.randint(1, 5))
            ]
            rows = [
                [(word(16), rng.choice(styles)) for _ in columns] for _ in range(rng.randint(0, 4))
            ]
            table = (columns, rows, 0 if fixed else 1)
        outputs = []
        for use_rich in (False, True):
            buffer = io.StringIO()
            monkeypatch.setattr(sys, "stdout", buffer)
            out = Output()
            if use_rich:
                out._plain_width = None
                out._rich = Console(file=buffer, width=width, highlight=False, soft_wrap=False)
            if table is None:
                out.line(*line)
            else:
                out.table(table[0], table[1], left=table[2])
            outputs.append(buffer.getvalue())
            plain += not use_rich and out._plain_width is not None
        assert outputs[0] == outputs[1], outputs
    dumb = env.get("TERM") == "dumb" or "NO_COLOR" in env
    assert bool(plain) != dumb  # written directly, except where rich prints them itself


# -- logs --timestamps -------------------------------------------------------------------


def test_logs_timestamps_print_the_times_lines_were_written(tmp_path: Path) -> None:
    import struct
    from datetime import datetime
    from datetime import time as clock

    before = datetime.now().replace(microsecond=0)
    job_id = submit(
        tmp_path, "--wait", "--frames", "1-2", "--", "sh", "-c", "echo a{frame}; echo b{frame}"
    )
    log_dir = tmp_path / "local" / "logs" / job_id
    wait_for_supervisor_exit(tmp_path, job_id)  # its last line written
    after = datetime.now()
    # The supervisor recorded when each piece was written: every line carries a time
    # between the submit and its end (today's: the time of day only).
    for full in (False, True):
        code, out, err = run(["logs", job_id, "--timestamps"], tmp_path, full=full)
        assert code == 0 and not err, err
        lines = out.splitlines()
        assert any(line.endswith("[0] a1") for line in lines), lines
        assert len(lines) == len(run(["logs", job_id], tmp_path)[1].splitlines())
        for line in lines:
            # Today's lines show the time of day; another day's (past midnight) the date too.
            dated = re.match(r"(\d\d)-(\d\d) ", line)
            day = before.date().replace(month=int(dated[1]), day=int(dated[2])) if dated else None
            text = line[6:] if dated else line
            stamp = datetime.combine(day or datetime.now().date(), clock.fromisoformat(text[:8]))
            assert before <= stamp <= after, (line, before, after)
    # A log with no times (an older job): said on stderr, naming the backend; the log
    # printed as it is.
    (log_dir / "job.times").unlink()
    code, out, err = run(["logs", job_id, "--timestamps"], tmp_path)
    assert code == 0
    assert "backend 'local' (target local) keeps no time per line" in err
    assert out == run(["logs", job_id], tmp_path)[1]
    # Times recorded on another day show their date too.
    log = (log_dir / "job.log").read_bytes()
    second = min(log.index(b"\na1") + 1, log.index(b"\na2") + 1)  # the first task output
    first_time = datetime(2026, 1, 2, 9, 40, 12).timestamp()
    later = datetime.now().replace(hour=10, minute=0, second=5, microsecond=0).timestamp()
    (log_dir / "job.times").write_bytes(
        struct.pack("<Qd", 0, first_time) + struct.pack("<Qd", second, later)
    )
    for full in (False, True):
        code, out, err = run(["logs", job_id, "--timestamps"], tmp_path, full=full)
        assert code == 0 and not err, err
        lines = out.splitlines()
        # Not today: the date too; today: the time only.
        assert lines[0].startswith("01-02 09:40:12 [farm-adapters] attempt 1")
        assert {"10:00:05 [0] a1", "10:00:05 [1] a2", "10:00:05 [1] b2"} <= set(lines)
        code, out, _ = run(["logs", job_id, "--timestamps", "--task", "1"], tmp_path, full=full)
        assert out.splitlines() == ["10:00:05 a2", "10:00:05 b2"]
        code, out, _ = run(["logs", job_id, "--timestamps", "--tail", "1"], tmp_path, full=full)
        assert len(out.splitlines()) == 1 and out.startswith("10:00:05 ")


def test_reading_a_finished_job_writes_nothing_to_the_journal(tmp_path: Path) -> None:
    import sqlite3

    job_id = submit(tmp_path, "--wait", "--", "echo", "hi")
    journal = tmp_path / "journal.sqlite3"

    def recorded() -> tuple[Any, ...]:
        with sqlite3.connect(journal) as conn:
            return tuple(
                conn.execute(
                    "SELECT state, finished_tasks, total_tasks, state_at FROM jobs "
                    "WHERE job_id = ?",
                    (job_id,),
                ).fetchone()
            )

    for full in (False, True):
        assert run(["status", job_id], tmp_path, full=full)[0] == 0
    first = recorded()
    assert first[:3] == ("completed", 1, 1)
    for args in (["status", job_id], ["jobs"], ["status", job_id, "--json"]):
        for full in (False, True):
            assert run(args, tmp_path, full=full)[0] == 0
    assert recorded() == first  # the final state is known: not written again
