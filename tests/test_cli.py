"""The farm-adapters command line, run as a user would."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plugin_helpers import write_plugin

EXE = [sys.executable, "-m", "farm_adapters"]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_backends_json() -> None:
    result = cli("backends", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    backends = {b["name"]: b for b in data["backends"]}
    assert backends["local"]["available"] is True
    assert backends["local"]["origin"].startswith("entry point local")
    assert backends["ovfarm"]["available"] is True and backends["runai"]["available"] is True
    assert "stop" in backends["local"]["capabilities"]


def test_backends_table_shows_plugin_errors(tmp_path: Path) -> None:
    write_plugin(tmp_path / "res", "broken.py", "import nowhere_to_be_found\n")
    result = cli(
        "backends", env={"FARM_ADAPTERS_RESOURCES": str(tmp_path / "res"), "COLUMNS": "200"}
    )
    assert result.returncode == 0
    assert "local" in result.stdout and "nowhere_to_be_found" in result.stdout


def _run_in_pty(argv: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run a command with a pseudo-terminal as stdin/stdout/stderr; return its exit
    code and everything it drew."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.environ["COLUMNS"] = "100"
        os.environ["TERM"] = "xterm"
        os.execv(argv[0], argv)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


def test_first_submit_with_no_config_waits_with_a_progress_bar_then_logs() -> None:
    code, screen = _run_in_pty(
        [*EXE, "submit", "--frames", "1-4", "--wait", "--", "sh", "-c", "echo frame {frame}"]
    )
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert code == 0, plain
    assert "4/4" in plain and "completed" in plain
    job_id = re.search(r"submitted job (\w+) to local", plain).group(1)  # type: ignore[union-attr]
    logs = cli("logs", job_id)
    assert logs.returncode == 0
    for frame in range(1, 5):  # each line prefixed with the task that wrote it
        assert f"\n[{frame - 1}] frame {frame}\n" in logs.stdout
    status = json.loads(cli("status", job_id, "--json").stdout)
    assert status["state"] == "completed" and status["task_counts"] == {"completed": 4}


def test_failed_job_exits_1_when_waiting() -> None:
    result = cli("submit", "--wait", "--", "sh", "-c", "exit 7")
    assert result.returncode == 1
    assert "failed" in result.stderr


def test_job_file_with_overrides(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(
        'name = "from-file"\nframes = "1-10"\n[[commands]]\nargv = ["echo", "f{frame}"]\n'
    )
    result = cli("submit", str(job), "--frames", "3", "--json", "--wait")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["name"] == "from-file" and data["task_counts"] == {"completed": 1}
    assert "f3" in cli("logs", data["id"]).stdout


def test_malformed_job_file_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('frames = "10-1"\ncommands = ["render scene.xml"]\n')
    result = cli("submit", str(bad))
    assert result.returncode == 2
    line = one_line_error(result)
    assert str(bad) in line and "frames" in line and "commands.0" in line
    broken = tmp_path / "broken.toml"
    broken.write_text("frames = [\n")
    result = cli("submit", str(broken))
    assert result.returncode == 2 and "not valid TOML" in one_line_error(result)


def test_unknown_target_is_one_line_exit_2() -> None:
    result = cli("submit", "--target", "render-cloud", "--", "true")
    assert result.returncode == 2
    assert "render-cloud" in one_line_error(result)


def test_debug_shows_the_traceback() -> None:
    result = cli("--debug", "status", "nope")
    assert result.returncode == 2 and "Traceback" in result.stderr


VAULT = '''
from pydantic import BaseModel, ConfigDict, SecretStr
from farm_adapters import (BackendUnavailableError, CheckResult, FarmPlugin, Job, JobState,
                           hookimpl)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    api_key: SecretStr


class Vault(FarmPlugin):
    """A farm that cannot be reached: every call fails as a dead network would."""
    name = "vault"
    settings_model = Settings

    def _down(self):
        return BackendUnavailableError(f"cannot reach {self.settings.url}: connection refused")

    def create_temporary_folder(self, render_context):
        raise self._down()

    def copy_render_files(self, paths, folder, progress=None):
        raise self._down()

    def submit_job(self, request):
        raise self._down()

    def get_job(self, job_id):
        raise self._down()

    def get_jobs(self, states=None):
        raise self._down()

    def check(self):
        return [CheckResult(name="reachable", ok=False, detail=str(self._down()))]


@hookimpl
def farm_adapters_register_backends(register):
    register(Vault)
'''


@pytest.fixture
def vault_env(tmp_path: Path) -> dict[str, str]:
    write_plugin(tmp_path / "res", "vault.py", VAULT)
    config = tmp_path / "targets.toml"
    config.write_text(
        '[targets.vault]\nbackend = "vault"\nurl = "https://vault.invalid:8222"\n'
        'api_key = { env = "VAULT_API_KEY" }\n'
        'storage = { kind = "ftps", host = "127.0.0.1", port = 9, root = "/farm",'
        ' password = { env = "VAULT_API_KEY" } }\n'
        '[[targets.vault.path_mappings]]\nlocal = "/Volumes/proj"\nremote = "/mnt/proj"\n'
    )
    return {"FARM_ADAPTERS_RESOURCES": str(tmp_path / "res"), "FARM_ADAPTERS_CONFIG": str(config)}


def test_missing_secret_variable_is_one_line_exit_2(vault_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VAULT_API_KEY"} | vault_env
    result = subprocess.run(
        [*EXE, "submit", "--target", "vault", "--", "true"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "VAULT_API_KEY" in one_line_error(result)


def test_unreachable_farm_is_one_line_exit_3(vault_env: dict[str, str]) -> None:
    env = vault_env | {"VAULT_API_KEY": "top-secret-token"}
    result = cli("submit", "--target", "vault", "--", "true", env=env)
    assert result.returncode == 3
    assert "connection refused" in one_line_error(result)
    assert cli("check", "vault", env=env).returncode == 3


def test_json_listings_parse_and_carry_no_secret(vault_env: dict[str, str]) -> None:
    env = vault_env | {"VAULT_API_KEY": "top-secret-token"}
    submitted = json.loads(cli("submit", "--json", "--wait", "--", "echo", "hi", env=env).stdout)
    for args in (
        ["jobs", "--json"],
        ["status", submitted["id"], "--json"],
        ["targets", "--json"],
        ["targets", "--check", "--json"],
    ):
        result = cli(*args, env=env)
        assert "top-secret-token" not in result.stdout + result.stderr
        json.loads(result.stdout)
    targets = json.loads(cli("targets", "--json", env=env).stdout)["targets"]
    vault = next(t for t in targets if t["name"] == "vault")
    assert vault["settings"]["api_key"] == {"env": "VAULT_API_KEY"}
    assert vault["storage"] == {
        "kind": "ftps",
        "host": "127.0.0.1",
        "port": 9,
        "password": {"env": "VAULT_API_KEY"},
        "root": "/farm",
    }
    assert vault["path_mappings"] == [{"local": "/Volumes/proj", "remote": "/mnt/proj"}]
    jobs = json.loads(cli("jobs", "--json", env=env).stdout)["jobs"]
    assert [j["id"] for j in jobs] == [submitted["id"]]


def test_dry_run_prints_payloads_and_submits_nothing() -> None:
    result = cli(
        "submit",
        "--dry-run",
        "--frames",
        "1-3",
        "--chunk",
        "2",
        "--",
        "render",
        "--from",
        "{start}",
        "--to",
        "{end}",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["tasks"] == 2
    assert [p["commands"][0]["argv"] for p in data["payloads"]] == [
        ["render", "--from", "1", "--to", "2"],
        ["render", "--from", "3", "--to", "3"],
    ]
    assert json.loads(cli("jobs", "--json").stdout)["jobs"] == []


def test_stop_and_restart() -> None:
    job = json.loads(cli("submit", "--json", "--", "sh", "-c", "echo go; sleep 60").stdout)
    deadline = time.monotonic() + 30
    while json.loads(cli("status", job["id"], "--json").stdout)["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    stopped = cli("stop", job["id"], "--wait")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    restarted = cli("restart", job["id"])
    assert restarted.returncode == 0
    assert json.loads(cli("status", job["id"], "--json").stdout)["state"] in {"queued", "running"}
    cli("stop", job["id"], "--wait")


def test_shell_completion_script() -> None:
    result = cli("completion", "bash")
    assert result.returncode == 0 and "_FARM_ADAPTERS_COMPLETE" in result.stdout
