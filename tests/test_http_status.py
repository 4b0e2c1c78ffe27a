"""`farm-adapters status` on the HTTP backends (issue 13, finding 9): start and finish
times from the farm's own timestamps, and `status --tasks` with one line per task. Every
command runs in a real subprocess against the real emulators."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the emulators extra is not installed")

EXE = [sys.executable, "-m", "farm_adapters"]


def cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **env},
    )


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


@pytest.fixture
def ov_env(ovfarm_settings: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "farm-adapters.toml"
    lines = ["[targets.ov]", 'backend = "ovfarm"']
    settings = {**ovfarm_settings, "api_key": {"env": "OV_API_KEY"}}
    lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    config.write_text("\n".join(lines) + "\n")
    return {"FARM_ADAPTERS_CONFIG": str(config), "OV_API_KEY": "test-key"}


@pytest.fixture
def runai_env(runai_settings: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "farm-adapters.toml"
    settings = {
        **runai_settings,
        "client_id": {"env": "GPU_ID"},
        "client_secret": {"env": "GPU_SECRET"},
    }
    volume = settings.pop("volume")
    lines = ["[targets.gpu]", 'backend = "runai"']
    lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    lines += ["[targets.gpu.volume]"] + [f"{k} = {toml_value(v)}" for k, v in volume.items()]
    config.write_text("\n".join(lines) + "\n")
    return {"FARM_ADAPTERS_CONFIG": str(config), "GPU_ID": "render-bot", "GPU_SECRET": "s3cret"}


def finished_chunked_job(target: str, env: dict[str, str]) -> str:
    """A job of three tasks (frames 1-5, two per task) whose middle task fails."""
    result = cli(
        "submit", "-t", target, "--frames", "1-5", "--chunk", "2", "--wait", "--json",
        "--", "sh", "-c", "echo frames {start}-{end}; [ {start} -ne 3 ]",
        env=env,
    )  # fmt: skip
    assert result.returncode != 0 or "failed" in result.stdout, result.stderr
    match = re.search(r'"id": "(\w+)"', result.stdout) or re.search(r"job (\w+)", result.stderr)
    assert match, (result.stdout, result.stderr)
    return match.group(1)


def check_status(job_id: str, env: dict[str, str]) -> None:
    status = cli("status", job_id, env=env)
    assert status.returncode == 0, status.stderr
    assert "2 of 3 completed, 1 failed" in status.stdout, status.stdout
    times = {
        label: datetime.fromisoformat(value)
        for label, value in re.findall(r"^(submitted|started|finished): (.+)$", status.stdout, re.M)
    }
    assert set(times) == {"submitted", "started", "finished"}, status.stdout
    assert times["submitted"] <= times["started"] <= times["finished"]

    data = json.loads(cli("status", job_id, "--json", env=env).stdout)
    assert data["started_at"] and data["finished_at"], data

    tasks = cli("status", job_id, "--tasks", env=env)
    assert tasks.returncode == 0, tasks.stderr
    rows = [line.split() for line in tasks.stdout.splitlines() if re.match(r"^\d+ ", line)]
    assert [r[:3] for r in rows] == [
        ["0", "1-2", "completed"],
        ["1", "3-4", "failed"],
        ["2", "5", "completed"],
    ], tasks.stdout
    assert all(int(r[3]) >= 1 for r in rows), tasks.stdout  # each ran at least once
    assert all(re.fullmatch(r"\d+[smh].*", r[-1]) for r in rows), tasks.stdout  # a duration

    data = json.loads(cli("status", job_id, "--tasks", "--json", env=env).stdout)
    for task in data["tasks"]:
        assert task["started_at"] and task["finished_at"], task
        assert task["started_at"] <= task["finished_at"]


def requests_of_one_status(emulator: Any, job_id: str, env: dict[str, str]) -> list[str]:
    """The routes the farm answered for one `status` (a new process)."""
    import httpx

    control = httpx.Client(base_url=emulator.url)
    control.delete("/_emulator/stats").raise_for_status()
    status = cli("status", job_id, env=env)
    assert status.returncode == 0 and "finished: " in status.stdout, status.stderr
    return list(control.get("/_emulator/stats").json()["requests"])


def test_ovfarm_status_shows_times_and_tasks(ov_env: dict[str, str], ovfarm_emulator: Any) -> None:
    job_id = finished_chunked_job("ov", ov_env)
    check_status(job_id, ov_env)
    # The times are kept with the settled tasks: a status asks for no task's history.
    routes = requests_of_one_status(ovfarm_emulator, job_id, ov_env)
    assert not [r for r in routes if "history" in r or "/info/" in r], routes


def test_runai_status_shows_times_and_tasks(runai_env: dict[str, str], runai_emulator: Any) -> None:
    job_id = finished_chunked_job("gpu", runai_env)
    check_status(job_id, runai_env)
    # Ended workloads' starts are kept: a status asks for no workload's history.
    routes = requests_of_one_status(runai_emulator, job_id, runai_env)
    assert not [r for r in routes if "history" in r], routes


def test_ovfarm_times_are_the_latest_runs() -> None:
    """Revision-history rows as the reference shows them (oldest first, merged when the
    status repeats): an automatic retry makes a second run, whose times are shown."""
    from farm_adapters.plugins.ovfarm.plugin import run_times

    rows = [
        {"status": "submitted", "time": 10.0},
        {"status": "starting", "time": 11.0},
        {"status": "running", "time": 12.0},
        {"status": "errored", "time": 20.0},
        {"status": "submitted", "time": 21.0},  # retried
        {"status": "starting", "time": 30.0},
        {"status": "running", "time": 31.0},
        {"status": "finished", "time": 40.0},
    ]
    assert run_times(rows) == {"started_at": 30.0, "finished_at": 40.0, "runs": 2}
    assert run_times(rows[:5]) == {"started_at": None, "finished_at": None, "runs": 1}
    cancelled = [{"status": "submitted", "time": 1.0}, {"status": "cancelled", "time": 2.0}]
    assert run_times(cancelled) == {"started_at": None, "finished_at": 2.0, "runs": 0}


def test_runai_start_is_the_running_update_after_the_last_wait() -> None:
    from farm_adapters.plugins.runai.times import start_from_history

    def update(when: str, phase: str) -> dict[str, Any]:
        return {
            "meta": {"creationTimestamp": when, "type": "PhaseUpdate"},
            "spec": {"phaseUpdate": {"phase": phase, "phaseMessage": ""}},
        }

    event = {"meta": {"creationTimestamp": "2026-01-01T00:00:05Z", "type": "Event"}, "spec": {}}
    records = [
        update("2026-01-01T00:00:09Z", "Completed"),  # any order: sorted by time
        update("2026-01-01T00:00:01Z", "Creating"),
        update("2026-01-01T00:00:02Z", "Initializing"),
        update("2026-01-01T00:00:03Z", "Running"),
        event,
        update("2026-01-01T00:00:06Z", "Running"),  # a restarted container: same run
    ]
    assert start_from_history(records) == "2026-01-01T00:00:03Z"
    assert start_from_history(records[1:3]) is None
