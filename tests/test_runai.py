"""The runai backend and its emulator."""

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
    AuthenticationError,
    InvalidRequestError,
    Job,
    JobState,
    get_plugin_manager,
    parse_request,
    submit,
    wait,
)
from farm_adapters.plugins.runai import mapping

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the emulators extra is not installed")

from farm_adapters.testing.emulators._server import BackgroundServer  # noqa: E402
from farm_adapters.testing.emulators.runai import create_app  # noqa: E402

EXE = [sys.executable, "-m", "farm_adapters"]
PHASES = (
    "Creating",
    "Initializing",
    "Resuming",
    "Pending",
    "Deleting",
    "Running",
    "Updating",
    "Stopped",
    "Stopping",
    "Degraded",
    "Failed",
    "Completed",
    "Terminating",
    "Unknown",
)


@pytest.fixture
def backend(runai_settings: dict[str, Any]) -> Iterator[Any]:
    b = get_plugin_manager().create_backend("runai", runai_settings, target="gpu-cluster")
    yield b
    b.close()


@pytest.fixture
def control(runai_emulator: Any) -> Iterator[Any]:
    client = httpx.Client(base_url=runai_emulator.url)
    yield client
    client.delete("/_emulator/faults")


def requests_to(control: Any, route: str) -> int:
    return int(control.get("/_emulator/stats").json()["requests"].get(route, 0))


def workloads_named(emulator: Any, fragment: str) -> list[str]:
    with emulator.state.lock:
        return [w["name"] for w in emulator.state.workloads.values() if fragment in w["name"]]


@pytest.mark.parametrize(
    ("phase", "state"),
    [
        ("Creating", JobState.QUEUED),
        ("Pending", JobState.QUEUED),
        ("Resuming", JobState.QUEUED),
        ("Initializing", JobState.QUEUED),
        ("Running", JobState.RUNNING),
        ("Updating", JobState.RUNNING),
        ("Degraded", JobState.RUNNING),
        ("Completed", JobState.COMPLETED),
        ("Failed", JobState.FAILED),
        ("Stopping", JobState.STOPPING),
        ("Stopped", JobState.STOPPED),
        ("Deleting", JobState.STOPPING),
        ("Terminating", JobState.STOPPING),
        ("Unknown", JobState.UNKNOWN),
        ("SomethingNew", JobState.UNKNOWN),
    ],
)
def test_phase_table_row_by_row(phase: str, state: JobState) -> None:
    assert mapping.map_phase(phase) is state


def test_phase_table_covers_all_14() -> None:
    assert set(mapping.PHASE_TABLE) == set(PHASES)


def test_priority_classes() -> None:
    assert mapping.priority_class(0) == "very-low"
    assert mapping.priority_class(50) == "medium"
    assert mapping.priority_class(100) == "very-high"


def test_requirements_mapping_and_refusals() -> None:
    spec = mapping.spec_for(
        parse_request(
            {
                "commands": [["x"]],
                "max_retries": 2,
                "priority": 80,
                "requirements": {
                    "gpus": 2,
                    "cpus": 4,
                    "memory": "16GiB",
                    "pool": "a100",
                    "extra": {"large_shm": True},
                },
            }
        )
    )
    assert spec == {
        "backoffLimit": 2,
        "priorityClass": "high",
        "nodePools": ["a100"],
        "compute": {
            "gpuDevicesRequest": 2,
            "cpuCoreRequest": 4.0,
            "cpuMemoryRequest": "16Gi",
            "largeShmRequest": True,
        },
    }
    portion = mapping.spec_for(
        parse_request({"commands": [["x"]], "requirements": {"extra": {"gpu_portion": 0.5}}})
    )
    assert portion["compute"] == {"gpuRequestType": "portion", "gpuPortionRequest": 0.5}
    for requirements, field in (
        ({"labels": ["x"]}, "requirements.labels"),
        ({"timeout": 60}, "requirements.timeout"),
        ({"extra": {"queue": "q"}}, "requirements.extra.queue"),
        ({"gpus": 2, "extra": {"gpu_portion": 0.5}}, "requirements.gpus"),
    ):
        with pytest.raises(InvalidRequestError) as info:
            mapping.spec_for(parse_request({"commands": [["x"]], "requirements": requirements}))
        assert info.value.field == field


def test_names_are_k8s_safe_and_parse_back() -> None:
    name = mapping.workload_name("fa", "0123456789", 12, 3, "cornell-orbit")
    assert name == "fa-0123456789-12-r3-cornell-orbit" and len(name) <= 63
    assert mapping.parse_name("fa", name) == ("0123456789", 12, 3)
    assert mapping.parse_name("fa", "someone-elses-job") is None


def test_request_bodies_validate_with_runapy_and_drop_nothing(backend: Any) -> None:
    runai_models = pytest.importorskip(
        "runai.models.training_creation_request", reason="runapy (test-only) is not installed"
    )
    request = parse_request(
        {
            "name": "Shot 010 / Final!",
            "commands": [["render", "--frame", "{frame}"]],
            "frames": "1-3",
            "environment": {"SHOT": "sh010"},
            "max_retries": 1,
            "requirements": {"gpus": 1, "cpus": 2, "memory": "8GiB", "pool": "default"},
        }
    )
    payloads = backend.native_payloads(request)
    assert len(payloads) == 3
    for payload in payloads:
        body = payload["body"]
        model = runai_models.TrainingCreationRequest.model_validate(body)
        dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")

        def keys(value: Any, prefix: str = "") -> set[str]:
            if isinstance(value, dict):
                return {f"{prefix}/{k}" for k in value} | {
                    p for k, v in value.items() for p in keys(v, f"{prefix}/{k}")
                }
            if isinstance(value, list):
                return {p for i, v in enumerate(value) for p in keys(v, f"{prefix}[{i}]")}
            return set()

        assert keys(body) == keys(dumped), keys(body) ^ keys(dumped)
        assert isinstance(body["spec"]["command"], str) and isinstance(body["spec"]["args"], str)
        assert body["spec"]["storage"]["hostPath"][0]["readOnly"] is False


def test_chunked_job_runs_with_logs_from_the_cluster(backend: Any) -> None:
    job = submit(
        backend,
        {
            "commands": [["sh", "-c", "echo chunk {start}-{end} $SHOT"]],
            "frames": "1-5",
            "chunk_size": 2,
            "environment": {"SHOT": "s1"},
        },
        journal=False,
    )
    assert isinstance(job, Job)
    done = wait(backend, job.id, timeout=60, poll_interval=0.1)
    assert done.state is JobState.COMPLETED and done.total_tasks == 3
    log = backend.get_render_log(job.id).text
    for chunk in ("1-2", "3-4", "5-5"):
        assert f"chunk {chunk} s1" in log


def test_logs_come_from_shared_storage_when_the_cluster_api_is_down(
    runai_settings: dict[str, Any], control: Any
) -> None:
    control.post("/_emulator/faults", json={"path": "^/cluster-api/", "status": 503, "count": -1})
    backend = get_plugin_manager().create_backend("runai", runai_settings)
    assert {r.name: r for r in backend.check()}["cluster logs"].detail.startswith(
        "cluster API unreachable; logs are read from shared storage"
    )
    job = submit(backend, {"commands": [["echo", "via-storage"]]}, journal=False)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    assert "via-storage" in backend.get_render_log(job.id).text


def test_stop_and_restart_go_through_stopped_and_back_to_running(backend: Any) -> None:
    job = submit(backend, {"commands": [["sh", "-c", "echo up; sleep 60"]]}, journal=False)
    deadline = time.monotonic() + 30
    while backend.get_job_state(job.id) is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    backend.stop_job(job.id)
    assert backend.get_job_state(job.id) in {JobState.STOPPING, JobState.STOPPED}
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.STOPPED
    backend.restart_job(job.id)
    seen = set()
    deadline = time.monotonic() + 30
    while JobState.RUNNING not in seen:
        assert time.monotonic() < deadline, seen
        seen.add(backend.get_job_state(job.id))
        time.sleep(0.02)
    backend.stop_job(job.id)
    wait(backend, job.id, timeout=60, poll_interval=0.1)


def test_restart_of_a_failed_job_is_a_new_attempt(
    backend: Any, runai_settings: dict, runai_emulator: Any
) -> None:
    flag = Path(runai_settings["volume"]["local_path"]) / "ok"
    job = submit(
        backend, {"commands": [["sh", "-c", "test -f /mnt/farm/ok && echo fixed"]]}, journal=False
    )
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.FAILED
    flag.write_text("")
    backend.restart_job(job.id)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    names = sorted(workloads_named(runai_emulator, job.id))
    assert [n.split("-")[3] for n in names] == ["r0", "r1"]
    assert "fixed" in backend.get_render_log(job.id).text


def test_token_is_cached_and_refreshed_before_expiry(tmp_path: Path) -> None:
    # Whole-second exp: issued with 62-63 s left, so no refresh is due until ~3 s later.
    app = create_app(client_id="c", client_secret="s", token_lifetime=63, phase_delay=0.01)
    with BackgroundServer(app) as server:
        control = httpx.Client(base_url=server.url)
        backend = get_plugin_manager().create_backend(
            "runai",
            {
                "url": server.url,
                "client_id": "c",
                "client_secret": "s",
                "project": "team-a",
                "image": "img",
                "log_dir": str(tmp_path),
            },
        )
        backend.get_jobs()
        backend.get_jobs()
        assert requests_to(control, "POST /api/v1/token") == 1  # cached
        time.sleep(3.1)  # now within 60 s of expiry
        backend.get_jobs()
        assert requests_to(control, "POST /api/v1/token") == 2


def test_expired_token_mid_job_is_refreshed_silently(backend: Any, control: Any) -> None:
    job = submit(backend, {"commands": [["sh", "-c", "sleep 0.5; echo late"]]}, journal=False)
    control.post("/_emulator/expire-tokens")
    done = wait(backend, job.id, timeout=60, poll_interval=0.1)
    assert done.state is JobState.COMPLETED
    assert "late" in backend.get_render_log(job.id).text


def test_wrong_secret_is_an_authentication_error_naming_the_target(
    runai_settings: dict[str, Any],
) -> None:
    backend = get_plugin_manager().create_backend(
        "runai", {**runai_settings, "client_secret": "wrong"}, target="gpu-cluster"
    )
    with pytest.raises(AuthenticationError, match="'gpu-cluster'") as info:
        backend.get_jobs()
    assert "wrong" not in str(info.value)
    assert not backend.check()[0].ok


def test_faults_never_create_a_workload_twice(
    runai_settings: dict[str, Any], control: Any, runai_emulator: Any
) -> None:
    backend = get_plugin_manager().create_backend(
        "runai", {**runai_settings, "timeout": 1.0, "retries": 4}
    )
    backend.get_jobs()
    route = "^/api/v1/workloads/trainings$"
    control.post("/_emulator/faults", json={"path": route, "phase": "after", "status": 500})
    control.post(
        "/_emulator/faults", json={"path": route, "phase": "after", "kind": "hang", "seconds": 2.0}
    )
    control.post("/_emulator/faults", json={"path": route, "status": 429, "retry_after": 0})
    control.post(
        "/_emulator/faults", json={"path": "^/api/v1/workloads$", "status": 503, "count": 2}
    )
    job = submit(backend, {"commands": [["true"]], "frames": "1-4"}, journal=False)
    names = workloads_named(runai_emulator, job.id)
    assert len(names) == 4 == len(set(names))
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED


def test_polling_n_workloads_costs_ceil_n_over_page(
    backend: Any, control: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from farm_adapters.plugins.runai import plugin as runai_plugin

    job = submit(backend, {"commands": [["true"]], "frames": "1-5"}, journal=False)
    wait(backend, job.id, timeout=60, poll_interval=0.1)
    monkeypatch.setattr(runai_plugin, "PAGE", 2)
    control.delete("/_emulator/stats")
    assert backend.get_job(job.id).total_tasks == 5
    assert requests_to(control, "GET /api/v1/workloads") == 3  # ceil(5 / 2)


def test_emulator_fidelity(runai_emulator: Any) -> None:
    client = httpx.Client(base_url=runai_emulator.url)
    for body in (
        {"grantType": "client_credentials", "clientID": "render-bot", "clientSecret": "s3cret"},
        {"grantType": "client_credentials", "clientId": "render-bot", "clientSecret": "s3cret"},
        {"grantType": "app_token", "AppId": "render-bot", "AppSecret": "s3cret"},
    ):
        assert client.post("/api/v1/token", json=body).json()["accessToken"]
    v2 = client.post(
        "/api/v2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "render-bot",
            "client_secret": "s3cret",
        },
    )
    assert v2.json()["token_type"] == "Bearer" and v2.json()["expires_in"] == 3600
    bad = client.post(
        "/api/v2/token",
        data={"grant_type": "client_credentials", "client_id": "render-bot", "client_secret": "x"},
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    missing = client.get("/api/v1/workloads")
    assert missing.status_code == 401 and set(missing.json()) == {"code", "message"}
    token = client.post(
        "/api/v1/token",
        json={
            "grantType": "client_credentials",
            "clientId": "render-bot",
            "clientSecret": "s3cret",
        },
    ).json()["accessToken"]
    auth = {"Authorization": f"Bearer {token}"}
    clusters = client.get("/api/v1/clusters", headers=auth).json()
    assert isinstance(clusters, list) and clusters[0]["domain"]
    project = client.get(
        "/api/v1/org-unit/projects", params={"filterBy": "name==team-a"}, headers=auth
    ).json()["projects"][0]
    base = {
        "name": "fidelity-1",
        "projectId": project["id"],
        "clusterId": project["clusterId"],
        "spec": {"image": "img", "command": "sh", "args": "-c 'echo hi'"},
    }
    created = client.post("/api/v1/workloads/trainings", json=base, headers=auth)
    assert created.status_code == 202 and created.json()["actualPhase"] == "Creating"
    assert created.json()["spec"]["backoffLimit"] == 6
    assert client.post("/api/v1/workloads/trainings", json=base, headers=auth).status_code == 409
    as_list = {**base, "name": "fidelity-2", "spec": {**base["spec"], "command": ["sh"]}}
    assert client.post("/api/v1/workloads/trainings", json=as_list, headers=auth).status_code == 400
    assert client.get("/api/v1/workloads", params={"limit": 501}, headers=auth).status_code == 400
    assert client.get("/api/v1/workloads/not-a-uuid", headers=auth).status_code == 400
    suspended = client.post(
        f"/api/v1/workloads/trainings/{created.json()['workloadId']}/suspend", headers=auth
    )
    assert suspended.status_code == 202
    assert suspended.json() == {"code": 202, "message": "Request has been accepted."}


def test_read_only_volumes_lose_writes(runai_emulator: Any, tmp_path: Path) -> None:
    client = httpx.Client(base_url=runai_emulator.url)
    token = client.post(
        "/api/v1/token",
        json={
            "grantType": "client_credentials",
            "clientId": "render-bot",
            "clientSecret": "s3cret",
        },
    ).json()["accessToken"]
    auth = {"Authorization": f"Bearer {token}"}
    project = client.get("/api/v1/org-unit/projects", headers=auth).json()["projects"][0]
    for name, volume in (("ro-default", {}), ("rw-explicit", {"readOnly": False})):
        body = {
            "name": name,
            "projectId": project["id"],
            "clusterId": project["clusterId"],
            "spec": {
                "image": "img",
                "command": "sh",
                "args": f"-c 'echo x > /out/{name}'",
                "storage": {"hostPath": [{"path": str(tmp_path), "mountPath": "/out", **volume}]},
            },
        }
        workload_id = client.post("/api/v1/workloads/trainings", json=body, headers=auth).json()[
            "workloadId"
        ]
        deadline = time.monotonic() + 30
        while (
            client.get(f"/api/v1/workloads/{workload_id}", headers=auth).json()["phase"]
            != "Completed"
        ):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert not (tmp_path / "ro-default").exists()
    assert (tmp_path / "rw-explicit").read_text() == "x\n"


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        cwd=cwd,
    )


def test_cli_chunked_job_and_auth_error(runai_settings: dict[str, Any], tmp_path: Path) -> None:
    storage = runai_settings["volume"]
    config = tmp_path / "farm-adapters.toml"
    config.write_text(
        f'[targets.gpu-cluster]\nbackend = "runai"\nurl = "{runai_settings["url"]}"\n'
        f'client_id = {{ env = "RUNAI_ID" }}\nclient_secret = {{ env = "RUNAI_SECRET" }}\n'
        f'project = "team-a"\nimage = "renderer:1"\nlog_dir = "{tmp_path / "logs"}"\n'
        f'volume = {{ kind = "hostPath", mount_path = "/mnt/farm", '
        f'path = "{storage["path"]}", local_path = "{storage["local_path"]}" }}\n'
    )
    env = {"FARM_ADAPTERS_CONFIG": str(config), "RUNAI_ID": "render-bot", "RUNAI_SECRET": "s3cret"}
    result = _cli(
        [
            "submit",
            "--target",
            "gpu-cluster",
            "--frames",
            "1-4",
            "--chunk",
            "2",
            "--wait",
            "--json",
            "--",
            "sh",
            "-c",
            "echo frames {start}-{end}",
        ],
        env,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "completed" and job["task_counts"] == {"completed": 2}
    logs = _cli(["logs", job["id"]], env, tmp_path).stdout
    assert "frames 1-2" in logs and "frames 3-4" in logs
    dry = _cli(["submit", "--target", "gpu-cluster", "--dry-run", "--", "render"], env, tmp_path)
    assert json.loads(dry.stdout)["payloads"][0]["path"] == "/api/v1/workloads/trainings"
    wrong = _cli(
        ["submit", "--target", "gpu-cluster", "--", "true"],
        {**env, "RUNAI_SECRET": "nope"},
        tmp_path,
    )
    assert wrong.returncode == 3 and "gpu-cluster" in wrong.stderr
    assert "nope" not in wrong.stderr and "Traceback" not in wrong.stderr
