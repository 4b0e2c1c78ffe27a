"""The ovfarm backend against the emulator: mapping, faults, CLI, job definitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import (
    BackendUnavailableError,
    InvalidRequestError,
    Job,
    JobState,
    get_plugin_manager,
    submit,
    wait,
)
from farm_adapters.plugins.ovfarm import mapping

pytest.importorskip("fastapi", reason="the emulators extra is not installed")
httpx = pytest.importorskip("httpx")

EXE = [sys.executable, "-m", "farm_adapters"]


@pytest.fixture
def backend(ovfarm_settings: dict[str, Any]) -> Iterator[Any]:
    b = get_plugin_manager().create_backend("ovfarm", ovfarm_settings, target="studio-farm")
    yield b
    b.close()


@pytest.fixture
def faults(ovfarm_emulator: Any) -> Iterator[Any]:
    client = httpx.Client(base_url=ovfarm_emulator.url)

    def add(**fault: Any) -> None:
        client.post("/_emulator/faults", json=fault).raise_for_status()

    yield add
    client.delete("/_emulator/faults")
    ovfarm_emulator.farm.stuck = None


def tasks_of(emulator: Any, job_id: str) -> list[dict[str, Any]]:
    with emulator.farm.lock:
        return [
            t
            for t in emulator.farm.tasks.values()
            if (t["metadata"].get("farm_adapters") or {}).get("job") == job_id
        ]


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("submitted", JobState.QUEUED),
        ("waiting", JobState.QUEUED),
        ("pending", JobState.QUEUED),
        ("unscheduled", JobState.QUEUED),
        ("starting", JobState.RUNNING),
        ("running", JobState.RUNNING),
        ("finished", JobState.COMPLETED),
        ("errored", JobState.FAILED),
        ("unschedulable", JobState.FAILED),
        ("cancelling", JobState.STOPPING),
        ("pausing", JobState.STOPPING),
        ("cancelled", JobState.STOPPED),
        ("paused", JobState.STOPPED),
        ("something-new", JobState.UNKNOWN),
    ],
)
def test_state_table_row_by_row(status: str, state: JobState) -> None:
    assert mapping.map_state(status) is state


def test_state_table_covers_every_status() -> None:
    assert set(mapping.ALL_STATUSES_2_0_42) <= set(mapping.STATE_TABLE)
    assert mapping.STATE_TABLE["archived"] is None  # resolved from the revision history


def test_priority_mapping() -> None:
    assert mapping.farm_priority(100) == 0
    assert mapping.farm_priority(0) == 65535
    assert mapping.farm_priority(50) < 65535  # ahead of the Farm's default


def test_arguments_survive_the_runner_exactly(backend: Any) -> None:
    tricky = ["a b", "it's", '"q"', "$HOME", "`x`", "*", "", "semi;colon", "new\nline"]
    job = submit(backend, {"commands": [["printf", "<%s>\\n", *tricky]]}, journal=False)
    assert isinstance(job, Job)
    done = wait(backend, job.id, timeout=60, poll_interval=0.1)
    assert done.state is JobState.COMPLETED, done.message
    log = backend.get_render_log(job.id).text
    for arg in tricky:
        assert f"<{arg}>" in log


def test_chunked_job_environment_and_cwd(backend: Any, tmp_path: Path) -> None:
    job = submit(
        backend,
        {
            "commands": [
                {"argv": ["sh", "-c", "echo $SHOT {start}-{end} $(pwd)"], "cwd": str(tmp_path)}
            ],
            "frames": "1-5",
            "chunk_size": 2,
            "environment": {"SHOT": "sh010"},
        },
        journal=False,
    )
    done = wait(backend, job.id, timeout=60, poll_interval=0.1)
    assert done.state is JobState.COMPLETED and done.total_tasks == 3
    log = backend.get_render_log(job.id).text
    for chunk in ("1-2", "3-4", "5-5"):
        assert f"sh010 {chunk} {tmp_path}" in log
    assert log.count("#### Agent ID:") == 3


def test_one_listing_request_answers_for_every_job(backend: Any, ovfarm_emulator: Any) -> None:
    job = submit(backend, {"commands": [["true"]], "frames": "1-4"}, journal=False)
    wait(backend, job.id, timeout=60, poll_interval=0.1)
    before = backend.http.requests_sent
    jobs = backend.get_jobs()
    assert backend.http.requests_sent - before == 1
    assert job.id in {j.id for j in jobs}
    (this,) = [j for j in jobs if j.id == job.id]
    assert this.total_tasks == 4 and len(this.native_ids) == 4


def test_unsupported_requirements_are_refused(backend: Any) -> None:
    for requirements, field in (
        ({"gpus": 1}, "requirements.gpus"),
        ({"timeout": 5}, "requirements.timeout"),
        ({"extra": {"queue": "x"}}, "requirements.extra.queue"),
    ):
        with pytest.raises(InvalidRequestError) as info:
            submit(backend, {"commands": [["true"]], "requirements": requirements}, journal=False)
        assert info.value.field == field


def test_labels_route_tasks(ovfarm_settings: dict[str, Any], ovfarm_emulator: Any) -> None:
    labelled = get_plugin_manager().create_backend(
        "ovfarm", {**ovfarm_settings, "labels": ["gpu-a100"]}
    )
    job = submit(labelled, {"commands": [["true"]]}, journal=False)
    time.sleep(0.5)  # no agent has that label: the task waits
    assert labelled.get_job(job.id).state is JobState.QUEUED
    assert tasks_of(ovfarm_emulator, job.id)[0]["labels"] == ["gpu-a100"]
    labelled.stop_job(job.id)


def test_submit_never_duplicates_after_ambiguous_failures(
    ovfarm_settings: dict[str, Any], ovfarm_emulator: Any, faults: Any
) -> None:
    backend = get_plugin_manager().create_backend(
        "ovfarm", {**ovfarm_settings, "timeout": 1.0, "retries": 3}
    )
    backend.get_jobs()  # publish the runner first
    # Task 1: the farm creates it and answers 500. Task 2: created, answer lost.
    # Task 3: refused with 503 before anything happens, twice.
    faults(path="/tasks/submit$", phase="after", kind="error", status=500, count=1)
    job = submit(backend, {"commands": [["true"]], "frames": "1-4"}, journal=False)
    assert len(tasks_of(ovfarm_emulator, job.id)) == 4
    faults(path="/tasks/submit$", phase="after", kind="hang", seconds=2.5, count=1)
    faults(path="/tasks/submit$", phase="before", kind="error", status=503, count=2)
    job2 = submit(backend, {"commands": [["true"]], "frames": "1-4"}, journal=False)
    created = tasks_of(ovfarm_emulator, job2.id)
    assert sorted(t["metadata"]["farm_adapters"]["task"] for t in created) == [0, 1, 2, 3]
    assert wait(backend, job2.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED


def test_faults_on_every_endpoint_end_in_success_or_a_clear_error(
    backend: Any, faults: Any
) -> None:
    job = submit(
        backend,
        {"commands": [["sh", "-c", "echo fault-test; sleep 0.3"]], "frames": "1-2"},
        journal=False,
    )
    for path in ("/tasks/list", "/logs/", "/tasks/info/", "/tasks/revision-history/"):
        faults(path=path, phase="before", kind="error", status=502, count=2)
    faults(path=".*", phase="before", kind="latency", seconds=0.2, count=3)
    done = wait(backend, job.id, timeout=60, poll_interval=0.1)
    assert done.state is JobState.COMPLETED
    assert "fault-test" in backend.get_render_log(job.id).text
    # A farm that keeps failing: a clear error, not an httpx exception.
    faults(path="/tasks/list", phase="before", kind="error", status=500, count=-1)
    from farm_adapters.errors import APIError

    with pytest.raises(APIError, match="HTTP 500"):
        backend.get_jobs()


def test_stop_and_restart(backend: Any) -> None:
    job = submit(
        backend, {"commands": [["sh", "-c", "echo go; sleep 60"]], "frames": "1-2"}, journal=False
    )
    deadline = time.monotonic() + 30
    while backend.get_job_state(job.id) is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    backend.stop_job(job.id)
    assert backend.get_job_state(job.id) in {JobState.STOPPING, JobState.STOPPED}
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.STOPPED
    backend.restart_job(job.id)
    assert backend.get_job_state(job.id) in {JobState.QUEUED, JobState.RUNNING}
    backend.stop_job(job.id)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.STOPPED


def test_log_of_a_restarted_quick_job_shows_the_new_attempt(backend: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    script = f"echo run >> {runs}; echo attempt-$(wc -l < {runs} | tr -d ' ')"
    job = submit(backend, {"commands": [["sh", "-c", script]]}, journal=False)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    deadline = time.monotonic() + 60
    while "attempt-1" not in backend.get_render_log(job.id).text:  # read it all once
        assert time.monotonic() < deadline
        time.sleep(0.1)
    backend.restart_job(job.id)
    while runs.read_text().count("run") < 2:  # the rerun happened (however quickly)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    while "attempt-2" not in backend.get_render_log(job.id).text:
        assert time.monotonic() < deadline, "the new attempt's log never showed up"
        time.sleep(0.2)
    assert "attempt-1" in backend.get_render_log(job.id).text  # the earlier one is kept


def test_max_retries_uses_the_farms_retries(backend: Any, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 1 ]"
    job = submit(backend, {"commands": [["sh", "-c", script]], "max_retries": 2}, journal=False)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    assert counter.read_text().strip() == "2"


def test_unreachable_farm_is_backend_unavailable(tmp_path: Path) -> None:
    backend = get_plugin_manager().create_backend(
        "ovfarm", {"url": "http://127.0.0.1:9", "retries": 0, "log_dir": str(tmp_path)}
    )
    with pytest.raises(BackendUnavailableError, match="cannot connect"):
        backend.get_jobs()
    results = backend.check()
    assert not results[0].ok and "cannot connect" in results[0].detail


def test_check_reports_a_wrong_api_key(ovfarm_settings: dict[str, Any]) -> None:
    good = {
        r.name: r for r in get_plugin_manager().create_backend("ovfarm", ovfarm_settings).check()
    }
    assert all(r.ok for r in good.values()), good
    bad = {
        r.name: r
        for r in get_plugin_manager()
        .create_backend("ovfarm", {**ovfarm_settings, "api_key": "wrong"})
        .check()
    }
    assert bad["reachable"].ok and not bad["api key"].ok
    assert "refused" in bad["api key"].detail and "wrong" not in bad["api key"].detail


def test_td_named_definition_maps_allowed_args(
    ovfarm_settings: dict[str, Any], tmp_path: Path
) -> None:
    definition = {
        "name": "render-frames",
        "job_type": "base",
        "command": "/bin/echo",
        "args": ["render"],
        "allowed_args": {
            "scene": {"arg": "--scene", "separator": " "},
            "start": {"arg": "--start"},
            "end": {"arg": "--end"},
            "preset": {"arg": "0"},
        },
    }
    mapped = mapping.task_args_for_definition(
        definition, ["echo", "render", "final", "--scene", "s.usd", "--start=1", "--end=4"]
    )
    assert mapped == {"preset": "final", "scene": "s.usd", "start": "1", "end": "4"}
    with pytest.raises(InvalidRequestError, match="'--frames=3' is not an argument"):
        mapping.task_args_for_definition(definition, ["echo", "--frames=3"])
    with pytest.raises(InvalidRequestError, match="runs '/bin/echo'"):
        mapping.task_args_for_definition(definition, ["python", "x"])

    admin = get_plugin_manager().create_backend("ovfarm", ovfarm_settings)
    admin.publish_definition(definition)
    named = get_plugin_manager().create_backend(
        "ovfarm", {**ovfarm_settings, "job_definition": "render-frames"}
    )
    time.sleep(0.4)  # agents see a new definition after the propagation delay
    job = submit(
        named,
        {
            "commands": [
                ["/bin/echo", "final", "--scene", "shot.usd", "--start={start}", "--end={end}"]
            ],
            "frames": "1-4",
            "chunk_size": 2,
        },
        journal=False,
    )
    assert wait(named, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    log = named.get_render_log(job.id).text
    assert "render final --scene shot.usd --start=1 --end=2" in log
    assert "render final --scene shot.usd --start=3 --end=4" in log


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=cwd,
    )


@pytest.fixture
def cli_env(ovfarm_emulator: Any, tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "farm-adapters.toml"
    config.write_text(
        f'[targets.studio-farm]\nbackend = "ovfarm"\nurl = "{ovfarm_emulator.url}"\n'
        f'api_key = {{ env = "STUDIO_FARM_KEY" }}\nlog_dir = "{tmp_path / "logs"}"\n'
        f'folders = "{tmp_path / "folders"}"\n'
    )
    return {"FARM_ADAPTERS_CONFIG": str(config), "STUDIO_FARM_KEY": "test-key"}


def test_cli_chunked_job_logs_stop_restart(cli_env: dict[str, str], tmp_path: Path) -> None:
    result = _cli(
        [
            "submit",
            "--target",
            "studio-farm",
            "--frames",
            "1-6",
            "--chunk",
            "3",
            "--wait",
            "--json",
            "--",
            "sh",
            "-c",
            "echo chunk {start}-{end}",
        ],
        cli_env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "completed" and job["task_counts"] == {"completed": 2}
    logs = _cli(["logs", job["id"]], cli_env, tmp_path)
    assert "chunk 1-3" in logs.stdout and "chunk 4-6" in logs.stdout
    status = json.loads(_cli(["status", job["id"], "--json"], cli_env, tmp_path).stdout)
    assert status["target"] == "studio-farm"
    listed = json.loads(_cli(["jobs", "--json"], cli_env, tmp_path).stdout)
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    assert "test-key" not in json.dumps(listed)

    long = json.loads(
        _cli(
            ["submit", "--target", "studio-farm", "--json", "--", "sleep", "60"], cli_env, tmp_path
        ).stdout
    )
    deadline = time.monotonic() + 30
    while (
        json.loads(_cli(["status", long["id"], "--json"], cli_env, tmp_path).stdout)["state"]
        != "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stopped = _cli(["stop", long["id"], "--wait"], cli_env, tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert _cli(["restart", long["id"]], cli_env, tmp_path).returncode == 0
    _cli(["stop", long["id"], "--wait"], cli_env, tmp_path)


def test_cli_dry_run_prints_native_payloads_and_submits_nothing(
    cli_env: dict[str, str], tmp_path: Path, ovfarm_emulator: Any
) -> None:
    with ovfarm_emulator.farm.lock:
        before = len(ovfarm_emulator.farm.tasks)
    result = _cli(
        [
            "submit",
            "--target",
            "studio-farm",
            "--dry-run",
            "--frames",
            "1-2",
            "--",
            "render",
            "{frame}",
        ],
        cli_env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    payloads = json.loads(result.stdout)["payloads"]
    assert payloads[0]["path"] == "/queue/management/jobs/save"
    submits = [p["body"] for p in payloads if p["path"].endswith("/tasks/submit")]
    assert len(submits) == 2 and "(exec render 2)" in submits[1]["task_args"]["script"]
    with ovfarm_emulator.farm.lock:
        assert len(ovfarm_emulator.farm.tasks) == before


def test_cli_jobdefs_push_list_remove(cli_env: dict[str, str], tmp_path: Path) -> None:
    kit = tmp_path / "render.kit"
    kit.write_text(
        '[package]\ntitle = "x"\n\n[job.kit-render]\njob_type = "base"\n'
        'command = "/bin/echo"\n[job.kit-render.allowed_args]\n'
        'scene = { arg = "--scene", separator = " " }\n'
    )
    js = tmp_path / "hello.json"
    js.write_text(json.dumps({"name": "json-hello", "job_type": "base", "command": "/bin/true"}))
    pushed = _cli(
        ["jobdefs", "push", str(kit), str(js), "--target", "studio-farm"], cli_env, tmp_path
    )
    assert pushed.returncode == 0, pushed.stderr
    listed = json.loads(
        _cli(["jobdefs", "list", "--target", "studio-farm", "--json"], cli_env, tmp_path).stdout
    )
    assert listed["kit-render"]["allowed_args"]["scene"] == {"arg": "--scene", "separator": " "}
    assert "json-hello" in listed
    assert (
        _cli(
            ["jobdefs", "remove", "json-hello", "--target", "studio-farm"], cli_env, tmp_path
        ).returncode
        == 0
    )
    listed = json.loads(
        _cli(["jobdefs", "list", "--target", "studio-farm", "--json"], cli_env, tmp_path).stdout
    )
    assert "json-hello" not in listed
    wrong = _cli(["jobdefs", "list", "--target", "local"], cli_env, tmp_path)
    assert wrong.returncode == 2 and "needs an ovfarm target" in wrong.stderr


def test_cli_jobdefs_list_shows_arguments_of_any_type(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The 2.0.42 spec types a definition's args as an array of anything: a farm may
    # hold numbers there, and listing must not crash on them.
    js = tmp_path / "numbers.json"
    js.write_text(
        json.dumps({"name": "num-args", "job_type": "base", "command": "/bin/sleep", "args": [5]})
    )
    pushed = _cli(["jobdefs", "push", str(js), "--target", "studio-farm"], cli_env, tmp_path)
    assert pushed.returncode == 0, pushed.stderr
    listed = _cli(["jobdefs", "list", "--target", "studio-farm"], cli_env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "num-args\tbase\t/bin/sleep 5" in listed.stdout


def test_cli_unreachable_farm_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "t.toml"
    config.write_text(
        '[targets.gone]\nbackend = "ovfarm"\nurl = "http://127.0.0.1:9"\nretries = 0\n'
    )
    result = _cli(
        ["submit", "--target", "gone", "--", "true"],
        {"FARM_ADAPTERS_CONFIG": str(config)},
        tmp_path,
    )
    assert result.returncode == 3
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_faults_on_control_and_definition_endpoints(
    ovfarm_settings: dict[str, Any], ovfarm_emulator: Any, faults: Any
) -> None:
    # A fresh backend publishes (or re-checks) the runner through flaky jobs endpoints.
    for path in ("/jobs/load", "/jobs/save", "/tasks/status"):
        faults(path=path, phase="before", kind="error", status=503, count=2)
    backend = get_plugin_manager().create_backend("ovfarm", ovfarm_settings)
    assert all(r.ok for r in backend.check())
    job = submit(backend, {"commands": [["sh", "-c", "sleep 60"]], "frames": "1-2"}, journal=False)
    deadline = time.monotonic() + 30
    while backend.get_job_state(job.id) is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    faults(path="/tasks/cancel", phase="before", kind="error", status=502, count=2)
    backend.stop_job(job.id)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.STOPPED
    faults(path="/tasks/retry", phase="before", kind="error", status=503, count=2)
    backend.restart_job(job.id)
    assert len(tasks_of(ovfarm_emulator, job.id)) == 2  # retried in place, never resubmitted
    backend.stop_job(job.id)
    wait(backend, job.id, timeout=60, poll_interval=0.1)
    # A cancel the farm keeps refusing is a clear error, not an httpx exception.
    job2 = submit(backend, {"commands": [["sleep", "60"]]}, journal=False)
    faults(path="/tasks/cancel", phase="before", kind="error", status=503, count=-1)
    from farm_adapters.errors import APIError

    with pytest.raises(APIError, match="HTTP 503"):
        backend.stop_job(job2.id)
    faults_client = httpx.Client(base_url=ovfarm_emulator.url)
    faults_client.delete("/_emulator/faults")
    backend.stop_job(job2.id)
