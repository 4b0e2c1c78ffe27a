"""The artist's command line, second pass (issue 13): every journal row listed, filters,
80 columns, markup-safe text, lookups, lazy secrets, Ctrl-C, forgotten `--`, help,
completion, the emulator command. Every test runs the real command in a subprocess
(layout tests through a pseudo-terminal 80 columns wide)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from farm_adapters._toml import tomllib

EXE = [sys.executable, "-m", "farm_adapters"]
REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


class Pty:
    """A command on a pseudo-terminal of ``columns`` x 40, as an artist runs it."""

    def __init__(self, argv: list[str], columns: int = 80, env: dict[str, str] | None = None):
        import fcntl
        import termios

        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.environ.update(env or {})
            os.environ.pop("COLUMNS", None)
            os.environ["TERM"] = "xterm"
            os.execv(argv[0], argv)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        self.chunks: list[bytes] = []
        self.code: int | None = None

    @property
    def text(self) -> str:
        raw = b"".join(self.chunks).decode(errors="replace")
        return ANSI.sub("", raw).replace("\r\n", "\n")

    def read_until(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text)
            if found:
                return found
            if not self._read(0.2):
                break
        found = re.search(pattern, self.text)
        assert found, f"{pattern!r} not in\n{self.text}"
        return found

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], wait)
        if ready:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return False
            if not data:
                return False
            self.chunks.append(data)
        return True

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            pass
        _, status = os.waitpid(self.pid, 0)
        self.code = os.waitstatus_to_exitcode(status)
        return self.code, self.text


def run_pty(argv: list[str], columns: int = 80) -> tuple[int, str]:
    return Pty(argv, columns).finish()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record(job_id: str, target: str, name: str = "job", user: str = "ana", age: float = 0) -> None:
    """A journal row as `submit` writes it (the farm may or may not know the job)."""
    import sqlite3

    from farm_adapters.journal import Journal
    from farm_adapters.models import parse_request

    journal = Journal()
    request = parse_request({"commands": [["true"]], "name": name, "user": user})
    journal.record(job_id=job_id, target=target, backend="x", request=request)
    if age:
        with sqlite3.connect(journal.path) as conn:
            conn.execute(
                "UPDATE jobs SET submitted_at = ? WHERE job_id = ?", (time.time() - age, job_id)
            )


def submit_local(*command: str, wait: bool = True, name: str | None = None) -> str:
    args = ["submit", "--json", *(["--wait"] if wait else []), *(["-n", name] if name else [])]
    result = cli(*args, "--", *command)
    assert result.returncode in (0, 1), result.stderr
    return str(json.loads(result.stdout)["id"])


def wait_state(job_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = json.loads(cli("status", job_id, "--json").stdout)
        if data["state"] == state or time.monotonic() > deadline:
            assert data["state"] == state, data
            return data  # type: ignore[no-any-return]
        time.sleep(0.2)


@pytest.fixture
def broken_targets(tmp_path: Path) -> dict[str, str]:
    """gpu: a Run:ai target whose secret variables are unset; down: an Omniverse Farm
    nobody listens on."""
    config = tmp_path / "farm-adapters.toml"
    config.write_text(
        "[targets.gpu]\n"
        'backend = "runai"\n'
        f'url = "http://127.0.0.1:{free_port()}"\n'
        'client_id = { env = "GPU_CLIENT_ID_UNSET" }\n'
        'client_secret = { env = "GPU_SECRET_UNSET" }\n'
        'project = "team-a"\n'
        'image = "renderer:1"\n'
        "[targets.down]\n"
        'backend = "ovfarm"\n'
        f'url = "http://127.0.0.1:{free_port()}"\n'
    )
    return {"FARM_ADAPTERS_CONFIG": str(config)}


# -- 1. every journal row, with a mark ----------------------------------------------------


def test_jobs_lists_every_journal_row_with_a_mark(broken_targets: dict[str, str]) -> None:
    done = submit_local("true")
    record("gpu-1", "gpu")
    record("gpu-2", "gpu")
    record("down-1", "down")
    record("gone-1", "local")  # the local farm never heard of it
    record("old-1", "removed")  # its target is no longer in the file
    result = cli("jobs", "--json", env=broken_targets)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = {j["id"]: j for j in data["jobs"]}
    assert set(rows) == {done, "gpu-1", "gpu-2", "down-1", "gone-1", "old-1"}
    assert rows[done]["state"] == "completed" and rows[done]["mark"] == ""
    assert rows["gpu-1"]["mark"] == rows["gpu-2"]["mark"] == "target not configured"
    assert rows["down-1"]["mark"] == "unreachable"
    assert rows["gone-1"]["mark"] == "unknown to the farm"
    assert rows["old-1"]["mark"] == "target not configured"
    # One warning per failing target, naming it; the secret's variable is named.
    warned = {line.split(":")[0] for line in data["errors"]}
    assert warned == {"target gpu", "target down", "target removed"}
    assert any("GPU_" in e and "export" in e for e in data["errors"])
    assert result.stderr.count("warning: ") == 3


def test_limit_counts_rows_shown(broken_targets: dict[str, str]) -> None:
    for i in range(6):
        record(f"down-{i}", "down")
    record("gone-1", "local")
    result = cli("jobs", "--json", "--limit", "4", env=broken_targets)
    assert result.returncode == 0
    assert len(json.loads(result.stdout)["jobs"]) == 4
    assert cli("jobs", "--limit", "0").returncode == 2  # a usage error, not an empty list


def test_last_known_state_is_kept_when_the_farm_is_gone(tmp_path: Path) -> None:
    job = submit_local("true")
    assert json.loads(cli("jobs", "--json").stdout)["jobs"][0]["state"] == "completed"
    config = tmp_path / "elsewhere.toml"  # now 'local' points at a dead farm
    config.write_text('[targets.local]\nbackend = "ovfarm"\nurl = "http://127.0.0.1:9"\n')
    result = cli("jobs", "--json", env={"FARM_ADAPTERS_CONFIG": str(config)})
    (row,) = json.loads(result.stdout)["jobs"]
    assert row["id"] == job and row["state"] == "completed" and row["mark"] == "unreachable"
    assert row["last_known"] is True


# -- 2. filters -------------------------------------------------------------------------


def test_jobs_filters() -> None:
    ok = submit_local("true", name="shot010_beauty")
    bad = submit_local("false", name="shot020_beauty")
    record("old-1", "local", name="shot010_old", user="bob", age=5 * 86400)

    def ids(*args: str) -> set[str]:
        result = cli("jobs", "--json", *args)
        assert result.returncode == 0, result.stderr
        return {j["id"] for j in json.loads(result.stdout)["jobs"]}

    assert ids("--name", "shot010*") == {ok, "old-1"}
    assert ids("--state", "failed") == {bad}
    assert ids("--state", "completed", "--state", "failed") == {ok, bad}
    assert ids("--since", "2d") == {ok, bad}
    assert ids("--user", "bob") == {"old-1"}
    assert ids("--target", "local", "--name", "shot020*") == {bad}
    bad_since = cli("jobs", "--since", "yesterday-ish")
    assert bad_since.returncode == 2 and "2d" in bad_since.stderr


# -- 3. 80 columns ----------------------------------------------------------------------


def test_jobs_table_fits_80_columns_one_line_per_job() -> None:
    long_name = "shot0420_lighting_beauty_pass_with_a_very_long_descriptive_name_v012"
    ids = [submit_local("true", name=long_name) for _ in range(2)]
    code, screen = run_pty([*EXE, "jobs"])
    assert code == 0, screen
    lines = [line for line in screen.splitlines() if line.strip()]
    assert all(len(line.rstrip()) <= 80 for line in lines), screen
    for job_id in ids:
        (row,) = [line for line in lines if job_id in line]
        assert "completed" in row and "1/1" in row and "…" in row
        assert re.search(r"\b\d\d:\d\d\b", row)  # today's jobs: the time only
    assert "2026-" not in screen and "-20" not in screen


def test_backends_and_submit_fit_80_columns() -> None:
    code, screen = run_pty([*EXE, "backends"])
    assert code == 0
    assert all(len(line.rstrip()) <= 80 for line in screen.splitlines()), screen
    assert re.search(r"^local +yes", screen, re.M)
    code, screen = run_pty([*EXE, "submit", "--", "true"])
    assert code == 0, screen
    job_id = re.search(r"submitted job (\w+)", screen).group(1)  # type: ignore[union-attr]
    # The commands to copy are whole, each on its own line.
    assert f"farm-adapters status {job_id}\n" in screen
    assert f"farm-adapters logs {job_id}\n" in screen


# -- 4. markup ----------------------------------------------------------------------------


def test_user_and_config_text_is_printed_as_written() -> None:
    record("gpu-1", "gpu", name="[bold]beauty[/bold] [targets.x]")
    result = cli("jobs", env={"COLUMNS": "200"})
    assert result.returncode == 0
    assert "[bold]beauty[/bold] [targets.x]" in result.stdout
    assert "Add [targets.gpu] to the file" in result.stderr


# -- 5 and 6. finding a job; secrets only when needed -------------------------------------


@pytest.fixture
def ov_env(ovfarm_emulator: Any, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "farm-adapters.toml"
    config.write_text(
        "[targets.ov]\n"
        'backend = "ovfarm"\n'
        f'url = "{ovfarm_emulator.url}"\n'
        'api_key = { env = "OV_API_KEY" }\n'
        f'log_dir = "{tmp_path / "ov-logs"}"\n'
        f'folders = "{tmp_path / "ov-folders"}"\n'
    )
    return {"FARM_ADAPTERS_CONFIG": str(config), "OV_API_KEY": "test-key"}


def test_status_finds_a_job_on_a_configured_target(
    ov_env: dict[str, str], isolated_home: Path
) -> None:
    submitted = cli("submit", "-t", "ov", "--json", "--wait", "--", "echo", "hello", env=ov_env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    (isolated_home / "journal.sqlite3").unlink()  # submitted from another machine
    listed = cli("jobs", "-t", "ov", "--json", env=ov_env)
    assert job_id in {j["id"] for j in json.loads(listed.stdout)["jobs"]}
    status = cli("status", job_id, "--json", env=ov_env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["target"] == "ov"
    missing = cli("status", "nope-123", env=ov_env)
    assert missing.returncode == 2 and "--target" in missing.stderr and "ov" in missing.stderr


def test_read_only_commands_need_no_api_key(ov_env: dict[str, str]) -> None:
    submitted = cli("submit", "-t", "ov", "--json", "--wait", "--", "echo", "hello", env=ov_env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    no_key = {**ov_env, "OV_API_KEY": ""}
    for args in (["status", job_id], ["logs", job_id], ["jobs"], ["jobs", "-t", "ov"]):
        result = cli(*args, env=no_key)
        assert result.returncode == 0, (args, result.stderr)
        assert "OV_API_KEY" not in result.stderr, (args, result.stderr)
    assert "hello" in cli("logs", job_id, env=no_key).stdout


# -- 8. Ctrl-C while waiting ------------------------------------------------------------


def test_ctrl_c_while_waiting_says_the_job_goes_on() -> None:
    term = Pty([*EXE, "submit", "--wait", "--", "sleep", "60"])
    job_id = term.read_until(r"submitted job (\w+)").group(1)
    wait_state(job_id, "running")
    os.write(term.fd, b"\x03")  # Ctrl-C, as the terminal sends it
    code, screen = term.finish()
    assert code == 130, screen
    assert "Traceback" not in screen
    assert "goes on" in screen and f"farm-adapters stop {job_id}" in screen
    assert json.loads(cli("status", job_id, "--json").stdout)["state"] == "running"
    assert cli("stop", job_id, "--wait").returncode == 0


# -- 9. status wording, times, tasks ----------------------------------------------------


def test_status_of_a_stopped_job_does_not_read_as_done() -> None:
    result = cli("submit", "--frames", "1-3", "--json", "--", "sleep", "60")
    job_id = json.loads(result.stdout)["id"]
    wait_state(job_id, "running")
    assert cli("stop", job_id, "--wait").returncode == 0
    status = cli("status", job_id)
    assert "0 of 3 completed" in status.stdout and "stopped" in status.stdout
    tasks = cli("status", job_id, "--tasks")
    rows = [line.split() for line in tasks.stdout.splitlines() if re.match(r"^\d+ ", line)]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert [r[1] for r in rows] == ["1", "2", "3"]
    assert all(r[2] in ("stopped", "failed") for r in rows)
    data = json.loads(cli("status", job_id, "--tasks", "--json").stdout)
    assert [t["frames"] for t in data["tasks"]] == ["1", "2", "3"]


def test_status_tasks_shows_exit_codes_and_attempts() -> None:
    result = cli("submit", "--frames", "1-2", "--wait", "--json", "--", "sh", "-c", "exit {frame}")
    job_id = json.loads(result.stdout)["id"]
    data = json.loads(cli("status", job_id, "--tasks", "--json").stdout)
    assert [(t["state"], t["exit_code"], t["attempt"]) for t in data["tasks"]] == [
        ("failed", 1, 1),
        ("failed", 2, 1),
    ]


# -- 10. logs ---------------------------------------------------------------------------


def test_logs_tail_task_and_colours() -> None:
    result = cli(
        "submit",
        "--frames",
        "1-3",
        "--wait",
        "--json",
        "--",
        "sh",
        "-c",
        r"printf '\033[31mred {frame}\033[0m\n'; echo line2-{frame}",
    )
    job_id = json.loads(result.stdout)["id"]
    plain = cli("logs", job_id).stdout
    assert "red 1" in plain and "\x1b[" not in plain
    assert "\x1b[31mred 1" in cli("logs", job_id, "--raw").stdout
    assert cli("logs", job_id, "--tail", "1").stdout.count("\n") == 1
    assert cli("logs", job_id, "--tail", "2").stdout.splitlines()[-1].endswith("finished")
    task = cli("logs", job_id, "--task", "1").stdout
    assert "red 2" in task and "line2-2" in task and "red 1" not in task and "red 3" not in task
    lines = plain.splitlines()
    for frame in (1, 2, 3):  # parallel tasks' lines read apart: each names its task
        assert f"[{frame - 1}] red {frame}" in lines and f"[{frame - 1}] line2-{frame}" in lines


# -- 11. a forgotten `--` -----------------------------------------------------------------


def test_a_command_in_one_string_is_refused_with_the_fix() -> None:
    result = cli("submit", "echo hi {frame}", "--frames", "1-2")
    assert result.returncode == 2
    assert "--" in result.stderr and "echo hi {frame}" in result.stderr
    assert json.loads(cli("jobs", "--json").stdout)["jobs"] == []
    # On purpose, as a shell script: accepted.
    ok = cli("submit", "--shell", "--wait", "--frames", "1-2", "--", "echo hi {frame}")
    assert ok.returncode == 0, ok.stderr


def test_a_missing_program_is_refused_on_local() -> None:
    result = cli("submit", "--", "no-such-program-xyz", "scene")
    assert result.returncode == 2
    assert "no-such-program-xyz" in result.stderr and "not found" in result.stderr
    assert json.loads(cli("jobs", "--json").stdout)["jobs"] == []


# -- 13. emulate ---------------------------------------------------------------------------


def test_emulate_on_a_busy_port_is_one_error_line() -> None:
    pytest.importorskip("uvicorn", reason="the emulators extra is not installed")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("emulate", "ovfarm", "--port", str(port), timeout=60)
    assert result.returncode == 3
    assert "http://" not in result.stderr  # no URL of a server that is not there
    assert "--port 0" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["ovfarm", "runai"])
def test_emulate_port_0_prints_its_port_and_a_target_block(kind: str) -> None:
    pytest.importorskip("uvicorn", reason="the emulators extra is not installed")
    proc = subprocess.Popen(
        [*EXE, "emulate", kind, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None and proc.stdout is not None
        first = proc.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", first).group(1))  # type: ignore[union-attr]
        assert port != 0
        block = "".join(proc.stdout.readline() for _ in range(4 if kind == "ovfarm" else 7))
        parsed = tomllib.loads(block)
        (target,) = parsed["targets"].values()
        assert target["backend"] == kind and target["url"] == f"http://127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=30):
            pass
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


# -- 15. packaging --------------------------------------------------------------------------


def test_license_is_an_spdx_string() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert not any("License ::" in c for c in project.get("classifiers", []))


# -- 16. completion -------------------------------------------------------------------------


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [*EXE],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            **(env or {}),
            "_FARM_ADAPTERS_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        },
    )
    assert result.returncode == 0, result.stderr
    return [line.split(",", 1)[1] for line in result.stdout.splitlines()]


def test_completion_of_job_ids_and_targets(tmp_path: Path) -> None:
    record("abc123", "local")
    record("abd456", "local")
    record("zzz999", "local")
    assert set(complete("farm-adapters status ab")) == {"abc123", "abd456"}
    assert set(complete("farm-adapters logs abc")) == {"abc123"}
    config = tmp_path / "farm-adapters.toml"
    config.write_text(
        '[targets.studio-farm]\nbackend = "ovfarm"\nurl = "http://farm.invalid"\n'
        '[targets.gpu]\nbackend = "local"\n'
    )
    env = {"FARM_ADAPTERS_CONFIG": str(config)}
    assert set(complete("farm-adapters submit -t ", env)) == {"studio-farm", "gpu", "local"}
    assert set(complete("farm-adapters status abc123 --target st", env)) == {"studio-farm"}


# -- 17. help ---------------------------------------------------------------------------------


def test_every_option_has_help_and_main_commands_have_examples() -> None:
    import click

    from farm_adapters.cli import cli as group

    missing = []

    def walk(command: click.Command, path: str) -> None:
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                missing.append(f"{path} {param.opts[0]}")
        if isinstance(command, click.Group):
            for name in command.list_commands(None):
                sub = command.get_command(None, name)
                assert sub is not None, name
                walk(sub, f"{path} {name}")

    walk(group, "farm-adapters")
    assert not missing, missing
    for name in ("submit", "jobs", "status", "logs"):
        result = cli(name, "--help")
        assert "Examples:" in result.stdout, name
    usage = cli("submit", "--help").stdout.splitlines()[0]
    assert usage == "Usage: farm-adapters submit [OPTIONS] [JOB.toml] [-- COMMAND...]"
    text = cli("submit", "--help", env={"COLUMNS": "200"}).stdout
    assert "file or folder" in text and "default_target" in text and "targets file" in text


def test_state_names_match_the_model() -> None:
    from farm_adapters.cli._common import FINAL_STATES, STATES
    from farm_adapters.models import JobState

    assert tuple(s.value for s in JobState) == STATES
    assert {s.value for s in JobState if s.final} == set(FINAL_STATES)


# -- 7. no silent waits -------------------------------------------------------------------


def test_first_submit_and_stop_wait_say_what_they_wait_for(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the emulators extra is not installed")
    from farm_adapters.testing.emulators._server import BackgroundServer
    from farm_adapters.testing.emulators.ovfarm import create_app

    app = create_app(api_key="k", agents=1, cancel_delay=2.0, propagation_delay=0.2)
    with BackgroundServer(app) as server:  # a new farm: no runner definition yet
        config = tmp_path / "farm-adapters.toml"
        config.write_text(
            f'[targets.ov]\nbackend = "ovfarm"\nurl = "{server.url}"\n'
            f'api_key = {{ env = "OV_API_KEY" }}\nfolders = "{tmp_path / "folders"}"\n'
        )
        env = {"FARM_ADAPTERS_CONFIG": str(config), "OV_API_KEY": "k"}
        first = cli("submit", "-t", "ov", "--json", "--", "sleep", "60", env=env)
        assert first.returncode == 0, first.stderr
        assert "note: published job definition" in first.stderr and "30 s" in first.stderr
        job_id = json.loads(first.stdout)["id"]
        second = cli("submit", "-t", "ov", "--json", "--", "true", env=env)
        assert "published" not in second.stderr  # only the first submit waits
        stopped = cli("stop", job_id, "--wait", env=env)
        assert stopped.returncode == 0, stopped.stderr
        lines = stopped.stderr.splitlines()
        assert lines[0].startswith(f"waiting for job {job_id}") and "30 s" in lines[0]
        assert "stopped" in lines[-1]


def test_status_times_follow_the_attempt(tmp_path: Path) -> None:
    config = tmp_path / "farm-adapters.toml"
    config.write_text('[targets.local]\nbackend = "local"\nslots = 1\n')
    env = {"FARM_ADAPTERS_CONFIG": str(config)}
    busy = json.loads(cli("submit", "--json", "--", "sleep", "60", env=env).stdout)["id"]
    waiting = json.loads(cli("submit", "--json", "--", "true", env=env).stdout)["id"]
    wait_state(busy, "running")
    queued = json.loads(cli("status", waiting, "--json", env=env).stdout)
    assert queued["state"] == "queued" and queued["started_at"] is None
    assert "started:" not in cli("status", waiting, env=env).stdout
    assert cli("stop", busy, "--wait", env=env).returncode == 0
    wait_state(waiting, "completed")
    assert cli("restart", waiting, "--wait", env=env).returncode == 0
    again = json.loads(cli("status", waiting, "--json", env=env).stdout)
    assert again["submitted_at"] <= again["started_at"] <= again["finished_at"]


def test_logs_follow_with_tail_and_timestamps(tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = f"echo one; echo two; while [ ! -e {go} ]; do sleep 0.1; done; echo four"
    job_id = json.loads(cli("submit", "--json", "--", "sh", "-c", script).stdout)["id"]
    follower = subprocess.Popen(
        [*EXE, "logs", job_id, "--follow", "--tail", "50", "--timestamps"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None
    seen = []
    for line in follower.stdout:  # the lines so far come first ...
        seen.append(line.rstrip("\n"))
        if line.rstrip("\n").endswith("two"):
            break
    go.touch()  # ... then the job goes on, and what comes is stamped
    rest, err = follower.communicate(timeout=120)
    assert follower.returncode == 0, err
    later = rest.splitlines()
    (four,) = [line for line in later if line.endswith("four")]
    assert re.match(r"^\d\d:\d\d:\d\d four$", four)
    # Without --follow: each line with the time it was written (the supervisor
    # recorded them), the same lines as without --timestamps.
    timed = cli("logs", job_id, "--timestamps")
    assert timed.returncode == 0 and not timed.stderr, timed.stderr
    stamped = timed.stdout.splitlines()
    stamp = re.compile(r"^(\d\d-\d\d )?\d\d:\d\d:\d\d ")  # the date: not today
    assert all(stamp.match(line) for line in stamped), stamped
    assert [stamp.sub("", line) for line in stamped] == cli("logs", job_id).stdout.splitlines()
    assert cli("logs", job_id, "--timestamps", "--offset", "4").returncode == 2
    assert cli("logs", job_id, "--follow", "--task", "0").returncode == 2
    done = cli("logs", job_id, "--follow", "--tail", "1")
    assert done.stdout.splitlines()[0].endswith("finished")


def test_emulate_without_the_extra_says_how_to_install_it_from_here(tmp_path: Path) -> None:
    blocker = tmp_path / "blocked" / "uvicorn"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named uvicorn')\n")
    path = os.pathsep.join([str(blocker.parent), os.environ.get("PYTHONPATH", "")])
    result = cli("emulate", "ovfarm", "--port", "0", env={"PYTHONPATH": path})
    assert result.returncode == 2
    # This checkout is a clone: the extra comes from it, not from a PyPI release.
    assert f"pip install -e '{REPO}[emulators]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_remembers_the_last_state_for_jobs(tmp_path: Path) -> None:
    job = submit_local("true")
    assert cli("status", job).returncode == 0
    config = tmp_path / "elsewhere.toml"  # then the farm is gone: jobs shows what status saw
    config.write_text('[targets.local]\nbackend = "ovfarm"\nurl = "http://127.0.0.1:9"\n')
    (row,) = json.loads(cli("jobs", "--json", env={"FARM_ADAPTERS_CONFIG": str(config)}).stdout)[
        "jobs"
    ]
    assert row["state"] == "completed" and row["total_tasks"] == 1 and row["last_known"]
