"""The Run:ai emulator, driven by Run:ai's official client (runapy): its own API client
makes every call, and every answer must validate against runapy's models, which are
generated from the control plane's OpenAPI spec."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the emulators extra is not installed")
pytest.importorskip("runai.models", reason="runapy (the test extra) is not installed")

from runai import exceptions, models  # noqa: E402
from runai.api_client import ApiClient  # noqa: E402
from runai.configuration import Configuration  # noqa: E402
from runai.runai_client import RunaiClient  # noqa: E402

from farm_adapters.testing.emulators._server import BackgroundServer  # noqa: E402
from farm_adapters.testing.emulators.runai import create_app  # noqa: E402

DEADLINE = 60.0


@pytest.fixture
def client(runai_emulator: Any) -> Iterator[RunaiClient]:
    config = Configuration(
        client_id="render-bot",
        client_secret="s3cret",
        runai_base_url=runai_emulator.url,
        retry_enabled=False,
    )
    api = ApiClient(config)  # posts the app_token grant right away, as runapy does
    yield RunaiClient(api)
    api.close()


def valid(model: Any, data: Any) -> Any:
    """``data`` validated by the runapy model, which must also know every key the
    emulator sent (runapy's models ignore unknown keys, so compare the dumps)."""
    parsed = model.model_validate(data)
    dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    unknown = _unknown_keys(data, dumped)
    assert not unknown, f"{model.__name__} does not know {unknown}"
    return parsed


def _unknown_keys(sent: Any, known: Any, where: str = "") -> list[str]:
    if isinstance(sent, dict) and isinstance(known, dict):
        found = [f"{where}/{k}" for k in sent if k not in known]
        for key in sent.keys() & known.keys():
            found += _unknown_keys(sent[key], known[key], f"{where}/{key}")
        return found
    if isinstance(sent, list) and isinstance(known, list):
        return [
            k for a, b in zip(sent, known, strict=False) for k in _unknown_keys(a, b, where + "[]")
        ]
    return []


def wait_phase(client: RunaiClient, workload_id: str, phases: set[str]) -> Any:
    deadline = time.monotonic() + DEADLINE
    seen = []
    while True:
        workload = valid(
            models.WorkloadDetailed, client.workloads.workloads.get_workload(workload_id).data
        )
        seen.append(workload.phase.value)
        if workload.phase.value in phases:
            return workload
        assert time.monotonic() < deadline, f"still {seen[-1]} after {DEADLINE} s, wanted {phases}"
        time.sleep(0.05)


def test_a_training_life_cycle_through_runapy(client: RunaiClient, tmp_path: Path) -> None:
    clusters = client.organizations.clusters.get_clusters().data
    assert isinstance(clusters, list)  # a bare array, unlike every other list
    cluster = valid(models.DisplayedCluster, clusters[0])
    projects = client.organizations.projects.get_projects(filter_by=["name==team-a"]).data
    # runapy's GetProjects200Response points at a different, name-clashing "Project"
    # model (reference §4.2), so only the envelope is checked here.
    (project,) = projects["projects"]
    assert project["clusterId"] == cluster.uuid

    name = f"life-{uuid.uuid4().hex[:6]}"
    script = "echo started; test -f /work/go || sleep 120; echo finished"
    request = models.TrainingCreationRequest(
        name=name,
        projectId=project["id"],
        clusterId=cluster.uuid,
        spec=models.TrainingSpecSpec(
            image="registry.example/renderer:1.0",
            command="sh",
            args=f"-c '{script}'",
            backoffLimit=0,
            storage=models.SupersetSpecAllOfStorage(
                hostPath=[
                    models.HostPathInstance(path=str(tmp_path), mountPath="/work", readOnly=False)
                ]
            ),
        ),
    )
    created = client.workloads.trainings.create_training1(training_creation_request=request)
    assert created.status_code == 202
    training = valid(models.Training1, created.data)
    workload_id = training.workload_id
    assert training.name == training.requested_name == name

    running = wait_phase(client, workload_id, {"Running"})
    assert running.requested_pods is not None and running.requested_pods.number == 1
    assert running.type == "Training" and running.project_id == project["id"]
    got = valid(models.Training1, client.workloads.trainings.get_training(workload_id).data)
    assert got.desired_phase.value == "Running"

    pods = valid(
        models.ListPods200Response, client.workloads.pods.get_workload_pods(workload_id).data
    )
    assert [p.name for p in pods.pods] == [f"{name}-0-0"]
    everywhere = valid(
        models.ListPods200Response,
        client.workloads.pods.list_pods(filter_by=[f"workloadId=={workload_id}"]).data,
    )
    assert [p.id for p in everywhere.pods] == [pods.pods[0].id]

    suspended = client.workloads.trainings.suspend_training(workload_id)
    assert suspended.status_code == 202
    valid(models.HttpResponse, suspended.data)
    wait_phase(client, workload_id, {"Stopped"})
    stopped = valid(models.Training1, client.workloads.trainings.get_training(workload_id).data)
    assert stopped.desired_phase.value == "Stopped"
    assert client.workloads.pods.get_workload_pods(workload_id).data["pods"] == []

    (tmp_path / "go").write_text("")
    valid(models.HttpResponse, client.workloads.trainings.resume_training(workload_id).data)
    done = wait_phase(client, workload_id, {"Completed", "Failed"})
    assert done.phase.value == "Completed" and done.completed_at is not None

    events = valid(
        models.GetWorkloadEvents200Response,
        client.workloads.events.get_workload_events(workload_id).data,
    )
    assert events.events and events.events[-1].reason == "Created"  # newest first
    history = valid(
        models.GetWorkloadHistory200Response,
        client.workloads.events.get_workload_history(workload_id).data,
    )
    phases = [r.spec.phase_update.phase.value for r in history.records if r.spec.phase_update]
    assert phases[0] == "Creating" and phases[-1] == "Completed"
    assert phases.index("Running") < phases.index("Stopping") < phases.index("Stopped")
    assert phases.index("Stopped") < phases.index("Resuming") < len(phases) - 1
    assert any(r.meta.type.value == "Event" for r in history.records)

    listed = valid(
        models.GetWorkloads200Response,
        client.workloads.workloads.get_workloads(filter_by=[f"name=={name}"]).data,
    )
    assert [w.id for w in listed.workloads] == [workload_id]
    count = valid(
        models.CountResponse,
        client.workloads.workloads.count_workloads(filter_by=[f"name=={name}"]).data,
    )
    assert count.count == 1

    stranger = str(uuid.uuid4())
    batch = client.workloads.workloads_batch.batch_workloads(
        workload_batch=models.WorkloadBatch(ids=[workload_id, stranger], action="delete")
    )
    result = valid(models.BatchResponse, batch.data)
    assert result.succeeded == [workload_id]
    assert [(f.id, f.code) for f in result.failed or []] == [(stranger, 404)]
    deleted = valid(
        models.GetWorkloads200Response,
        client.workloads.workloads.get_workloads(deleted=True, filter_by=[f"name=={name}"]).data,
    )
    assert [w.id for w in deleted.workloads] == [workload_id]
    with pytest.raises(exceptions.NotFoundException) as missing:
        client.workloads.workloads.get_workload(workload_id)
    assert missing.value.status == 404


def test_batch_suspends_and_resumes_many(client: RunaiClient) -> None:
    project = client.organizations.projects.get_projects().data["projects"][0]
    ids = []
    for i in range(3):
        body = models.TrainingCreationRequest(
            name=f"batch-{uuid.uuid4().hex[:6]}-{i}",
            projectId=project["id"],
            clusterId=project["clusterId"],
            spec=models.TrainingSpecSpec(image="img", command="sleep", args="120"),
        )
        created = client.workloads.trainings.create_training1(training_creation_request=body)
        ids.append(valid(models.Training1, created.data).workload_id)
    for workload_id in ids:
        wait_phase(client, workload_id, {"Running"})
    answer = client.workloads.workloads_batch.batch_workloads(
        workload_batch=models.WorkloadBatch(ids=ids, action="suspend")
    )
    assert answer.status_code == 200
    assert valid(models.BatchResponse, answer.data).succeeded == ids
    for workload_id in ids:
        wait_phase(client, workload_id, {"Stopped"})
    resumed = client.workloads.workloads_batch.batch_workloads(
        workload_batch=models.WorkloadBatch(ids=ids, action="resume")
    )
    assert valid(models.BatchResponse, resumed.data).failed in ([], None)
    for workload_id in ids:
        wait_phase(client, workload_id, {"Running"})
    removed = client.workloads.workloads_batch.batch_workloads(
        workload_batch=models.WorkloadBatch(ids=ids, action="delete")
    )
    assert valid(models.BatchResponse, removed.data).succeeded == ids


def test_a_workspace_through_runapy(client: RunaiClient) -> None:
    project = client.organizations.projects.get_projects().data["projects"][0]
    body = models.WorkspaceCreationRequest(
        name=f"ws-{uuid.uuid4().hex[:6]}",
        projectId=project["id"],
        clusterId=project["clusterId"],
        spec=models.WorkspaceSpecSpec(image="img", command="sleep", args="120"),
    )
    created = client.workloads.workspaces.create_workspace1(workspace_creation_request=body)
    assert created.status_code == 202
    workspace = valid(models.Workspace1, created.data)
    running = wait_phase(client, workspace.workload_id, {"Running"})
    assert running.type == "Workspace"
    # A workspace is not a training: the trainings routes do not know it.
    with pytest.raises(exceptions.NotFoundException):
        client.workloads.trainings.get_training(workspace.workload_id)
    valid(
        models.HttpResponse,
        client.workloads.workspaces.delete_workspace(workspace.workload_id).data,
    )


def _token(url: str, client_id: str = "render-bot", secret: str = "s3cret") -> dict[str, str]:
    token = httpx.post(
        f"{url}/api/v1/token",
        json={"grantType": "client_credentials", "clientId": client_id, "clientSecret": secret},
    ).json()["accessToken"]
    return {"Authorization": f"Bearer {token}"}


def test_unknown_routes_answer_in_run_ai_error_shape(runai_emulator: Any) -> None:
    auth = _token(runai_emulator.url)
    for method, path, status in (
        ("GET", "/api/v1/no-such-thing", 404),
        ("GET", "/api/v2/workloads", 404),
        ("PUT", "/api/v1/workloads/batch", 405),
    ):
        answer = httpx.request(method, f"{runai_emulator.url}{path}", headers=auth)
        assert answer.status_code == status
        error = valid(models.Error, answer.json())
        assert error.code == status and path in error.message
    too_many = httpx.post(
        f"{runai_emulator.url}/api/v1/workloads/batch",
        json={"ids": [str(uuid.uuid4()) for _ in range(101)], "action": "delete"},
        headers=auth,
    )
    assert too_many.status_code == 400 and valid(models.Error, too_many.json()).code == 400


def test_finished_workloads_are_deleted_after_the_auto_deletion_time(
    runai_emulator: Any,
) -> None:
    url, auth = runai_emulator.url, _token(runai_emulator.url)
    project = httpx.get(f"{url}/api/v1/org-unit/projects", headers=auth).json()["projects"][0]
    body = {
        "name": f"auto-{uuid.uuid4().hex[:6]}",
        "projectId": project["id"],
        "clusterId": project["clusterId"],
        "spec": {
            "image": "img",
            "command": "true",
            "autoDeletionTimeAfterCompletionSeconds": 0,
        },
    }
    workload_id = httpx.post(f"{url}/api/v1/workloads/trainings", json=body, headers=auth).json()[
        "workloadId"
    ]
    deadline = time.monotonic() + DEADLINE
    while httpx.get(f"{url}/api/v1/workloads/{workload_id}", headers=auth).status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    deleted = httpx.get(f"{url}/api/v1/workloads", params={"deleted": "true"}, headers=auth).json()[
        "workloads"
    ]
    assert workload_id in {w["id"] for w in deleted}


def test_names_stay_unique_per_project_after_deletes() -> None:
    # The name index must agree with the rules: a deleted workload frees its name,
    # a live one keeps it.
    app = create_app(client_id="c", client_secret="s", phase_delay=3600)
    with BackgroundServer(app) as server:
        auth = _token(server.url, "c", "s")
        project = httpx.get(f"{server.url}/api/v1/org-unit/projects", headers=auth).json()[
            "projects"
        ][0]
        body = {
            "name": "same",
            "projectId": project["id"],
            "clusterId": project["clusterId"],
            "spec": {"image": "img", "command": "true"},
        }
        first = httpx.post(f"{server.url}/api/v1/workloads/trainings", json=body, headers=auth)
        assert first.status_code == 202
        again = httpx.post(f"{server.url}/api/v1/workloads/trainings", json=body, headers=auth)
        assert again.status_code == 409
        workload_id = first.json()["workloadId"]
        httpx.delete(f"{server.url}/api/v1/workloads/trainings/{workload_id}", headers=auth)
        reused = httpx.post(f"{server.url}/api/v1/workloads/trainings", json=body, headers=auth)
        assert reused.status_code == 202
        prefixed = httpx.post(
            f"{server.url}/api/v1/workloads/trainings",
            json={**body, "useGivenNameAsPrefix": True},
            headers=auth,
        )
        assert prefixed.status_code == 202 and prefixed.json()["name"].startswith("same-")


def test_a_training_suspended_before_its_pod_starts_ends_stopped() -> None:
    # The real cluster deletes a pending pod at once: the workload reaches Stopped.
    # Suspend it while the emulator is still between Creating and Running.
    app = create_app(client_id="c", client_secret="s", phase_delay=0.5)
    with BackgroundServer(app) as server:
        auth = _token(server.url, "c", "s")
        base = f"{server.url}/api/v1/workloads/trainings"
        project = httpx.get(f"{server.url}/api/v1/org-unit/projects", headers=auth).json()[
            "projects"
        ][0]
        body = {
            "name": f"early-{uuid.uuid4().hex[:6]}",
            "projectId": project["id"],
            "clusterId": project["clusterId"],
            "spec": {"image": "img", "command": "sleep", "args": "120"},
        }
        workload_id = httpx.post(base, json=body, headers=auth).json()["workloadId"]
        suspended = httpx.post(f"{base}/{workload_id}/suspend", headers=auth)
        assert suspended.status_code == 202
        deadline = time.monotonic() + DEADLINE
        phases = []
        while not phases or phases[-1] != "Stopped":
            assert time.monotonic() < deadline, f"phases seen: {phases}"
            phase = httpx.get(f"{server.url}/api/v1/workloads/{workload_id}", headers=auth).json()[
                "phase"
            ]
            if not phases or phases[-1] != phase:
                phases.append(phase)
            time.sleep(0.05)
        assert "Running" not in phases, phases


def test_departments_search_and_event_order_through_runapy(client: RunaiClient) -> None:
    departments = valid(
        models.GetDepartments200Response,
        client.organizations.departments.get_departments().data,
    )
    (department,) = departments.departments
    project = client.organizations.projects.get_projects().data["projects"][0]
    assert project["parentId"] == department.id
    assert project["name"] in {c.name for c in department.children or []}

    name = f"findme-{uuid.uuid4().hex[:6]}"
    body = models.TrainingCreationRequest(
        name=name,
        projectId=project["id"],
        clusterId=project["clusterId"],
        spec=models.TrainingSpecSpec(image="img", command="true"),
    )
    workload_id = valid(
        models.Training1,
        client.workloads.trainings.create_training1(training_creation_request=body).data,
    ).workload_id
    wait_phase(client, workload_id, {"Completed"})
    found = valid(
        models.GetWorkloads200Response,
        client.workloads.workloads.get_workloads(search=name[:10]).data,
    )
    assert [w.id for w in found.workloads] == [workload_id]
    newest = client.workloads.events.get_workload_events(workload_id).data["events"]
    oldest = client.workloads.events.get_workload_events(workload_id, sort_order="asc").data
    valid(models.GetWorkloadEvents200Response, oldest)
    assert oldest["events"] == list(reversed(newest)) and oldest["events"][0]["reason"] == "Created"


def test_token_answers_validate(runai_emulator: Any) -> None:
    # runapy's ApiClient consumes the v1 answer itself; check both grants' shapes here.
    v1 = httpx.post(
        f"{runai_emulator.url}/api/v1/token",
        json={"grantType": "app_token", "AppId": "render-bot", "AppSecret": "s3cret"},
    )
    assert v1.status_code == 200 and valid(models.TokenResponse, v1.json()).access_token
    v2 = httpx.post(
        f"{runai_emulator.url}/api/v2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "render-bot",
            "client_secret": "s3cret",
        },
    )
    assert valid(models.OAuth2TokenResponse, v2.json()).token_type == "Bearer"
