"""The Omniverse Farm emulator behaves like the real 2.0.42 queue, warts included."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SHARED

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the emulators extra is not installed")

from farm_adapters.testing.emulators._server import BackgroundServer  # noqa: E402
from farm_adapters.testing.emulators.ovfarm import build_argv, create_app  # noqa: E402

TASKS = "/queue/management/tasks"
JOBS = "/queue/management/jobs"


@pytest.fixture
def farm() -> Any:
    app = create_app(
        api_key="k",
        agents=1,
        cancel_delay=1.0,
        propagation_delay=0.0,
        log_interval=0.05,
        agent_poll=0.02,
    )
    with BackgroundServer(app) as server:
        # No keep-alive: after an unhandled exception the server answers 500 and closes
        # the connection (as uvicorn does in production too).
        limits = httpx.Limits(max_keepalive_connections=0)
        yield server, httpx.Client(base_url=server.url, timeout=10, limits=limits)


def wait_status(client: Any, task_id: str, statuses: set[str], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        info = client.get(f"{TASKS}/info/{task_id}").json()
        if info["status"] in statuses:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def save(client: Any, definition: dict[str, Any], key: str = "k") -> Any:
    return client.post(f"{JOBS}/save", json=definition, headers={"X-API-KEY": key})


ECHO = {
    "name": "echo",
    "job_type": "base",
    "command": "/bin/echo",
    "allowed_args": {"message": {"arg": "", "separator": ""}},
}


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_hello_world_with_plain_curl(farm: Any) -> None:
    server, _ = farm

    def curl(*args: str) -> Any:
        out = subprocess.run(
            ["curl", "-sS", "-f", *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        return json.loads(out)

    body = json.dumps(
        {
            "name": "hello-world",
            "job_type": "base",
            "command": "/bin/echo",
            "allowed_args": {"message": {"arg": "", "separator": ""}},
        }
    )
    saved = curl(
        "-X",
        "POST",
        f"{server.url}{JOBS}/save",
        "-H",
        "X-API-KEY: k",
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
    )
    assert saved == {"job-name": "hello-world", "success": True}
    assert "hello-world" in curl(f"{server.url}{JOBS}/load")
    task = json.dumps(
        {
            "user": "artist",
            "task_type": "hello-world",
            "task_args": {"message": "Hello World!"},
            "status": "submitted",
        }
    )
    task_id = curl(
        "-X",
        "POST",
        f"{server.url}{TASKS}/submit",
        "-H",
        "Content-Type: application/json",
        "-d",
        task,
    )["task_id"]
    deadline = time.monotonic() + 20
    while curl(f"{server.url}{TASKS}/info/{task_id}")["status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    logs = curl(f"{server.url}/queue/management/logs/{task_id}")["logs"]
    assert logs.startswith("#### Agent ID: emulator-agent-0\n")
    assert "Hello World!\n" in logs and logs.endswith("Process exited with return code: 0\n")


def test_api_key_and_name_rules(farm: Any) -> None:
    _, client = farm
    assert save(client, ECHO, key="wrong").status_code == 403
    assert save(client, ECHO, key="wrong").json() == {"detail": "Not authenticated"}
    assert client.post(f"{JOBS}/save", json=ECHO).status_code == 403
    assert save(client, {**ECHO, "name": "has_underscore"}).status_code == 422
    assert save(client, {**ECHO, "name": "x" * 33}).status_code == 422
    removed = client.post(
        f"{JOBS}/remove", json={"job_definition_name": "never-existed"}, headers={"X-API-KEY": "k"}
    )
    assert removed.json() == {"job-name": "never-existed", "success": True}
    # Unauthenticated by design: submitting needs no key, even for an unknown type.
    r = client.post(f"{TASKS}/submit", json={"user": "u", "task_type": "nope", "task_args": {}})
    assert r.status_code == 200


def test_list_defaults_shape_and_projection(farm: Any) -> None:
    _, client = farm
    task_id = client.post(
        f"{TASKS}/submit",
        json={
            "user": "u",
            "task_type": "no-agent-has-this",
            "task_args": {"a": "1"},
            "task_comment": "c",
        },
    ).json()["task_id"]
    listed = client.get(f"{TASKS}/list").json()
    assert list(listed) == ["('no-agent-has-this', '')"]
    (task,) = listed["('no-agent-has-this', '')"]
    assert task["task_id"] == task_id and task["status"] == "submitted"
    assert task["metadata"] == {"original_submitter": "u"} and task["priority"] == 65535
    projected = client.get(f"{TASKS}/list", params={"field": "metadata"}).json()
    (slim,) = projected["('no-agent-has-this', '')"]
    assert slim["task_args"] is None and slim["metadata"] and slim["status"] == "submitted"
    bad = client.get(f"{TASKS}/list", params={"field": "status"})
    assert bad.status_code == 400 and "Invalid fields" in bad.json()["detail"]
    assert client.get(f"{TASKS}/list", params={"status": "bogus"}).status_code == 422
    assert client.get(f"{TASKS}/list", params={"status": "finished"}).json() == {}
    assert client.get(f"{TASKS}/info/not-a-task").json() == {"detail": "Task does not exist."}


def test_task_lifecycle_logs_and_forbidden_cancel(farm: Any) -> None:
    _, client = farm
    assert save(client, ECHO).status_code == 200
    task_id = client.post(
        f"{TASKS}/submit", json={"user": "u", "task_type": "echo", "task_args": {"message": "hi"}}
    ).json()["task_id"]
    info = wait_status(client, task_id, {"finished"})
    assert info["task_details"]
    history = [row["status"] for row in client.get(f"{TASKS}/revision-history/{task_id}").json()]
    assert history == ["submitted", "starting", "running", "finished"]
    body = {"task_id": task_id, "task_type": "echo", "status": "finished"}
    assert client.post(f"{TASKS}/cancel", json=body).status_code == 500
    # 2.0.42 requires task_type and status in the body
    assert client.post(f"{TASKS}/cancel", json={"task_id": task_id}).status_code == 422
    assert client.post(f"{TASKS}/retry", json=body).status_code == 200
    assert wait_status(client, task_id, {"finished"})["status"] == "finished"
    archived = client.post(f"{TASKS}/archive", json={"task_ids": [task_id, "nope"]}).json()
    assert archived["archived_tasks_count"] == 1 and archived["error_count"] == 1


def test_logs_are_404_until_uploaded(farm: Any) -> None:
    _, client = farm
    task_id = client.post(
        f"{TASKS}/submit", json={"user": "u", "task_type": "nobody-runs-this", "task_args": {}}
    ).json()["task_id"]
    response = client.get(f"/queue/management/logs/{task_id}")
    assert response.status_code == 404 and "No logs found" in response.json()["detail"]


def test_unknown_argument_errors_the_task_and_auto_retry_rules(farm: Any) -> None:
    _, client = farm
    save(client, ECHO)
    task_id = client.post(
        f"{TASKS}/submit",
        json={
            "user": "u",
            "task_type": "echo",
            "task_args": {"other": "x"},
            "metadata": {"_retry": {"is_retryable": False}},
        },
    ).json()["task_id"]
    info = wait_status(client, task_id, {"errored"})
    assert "other" in info["task_details"]
    # retryable by default: up to 3 retries, so 4 runs
    failing = {"name": "fails", "job_type": "base", "command": "/bin/false"}
    save(client, failing)
    task_id = client.post(
        f"{TASKS}/submit", json={"user": "u", "task_type": "fails", "task_args": {}}
    ).json()["task_id"]
    deadline = time.monotonic() + 30
    while True:
        info = client.get(f"{TASKS}/info/{task_id}").json()
        if info["status"] == "errored" and info["metadata"]["_retry"].get("is_done"):
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    assert info["metadata"]["_retry"]["count"] == 3
    logs = client.get(f"/queue/management/logs/{task_id}").json()["logs"]
    assert logs.count("#### Agent ID:") == 4


def test_cancel_is_two_phase_and_kills_the_process(farm: Any) -> None:
    _, client = farm
    save(client, {"name": "sleeper", "job_type": "base", "command": "/bin/sleep", "args": ["60"]})
    task_id = client.post(
        f"{TASKS}/submit", json={"user": "u", "task_type": "sleeper", "task_args": {}}
    ).json()["task_id"]
    wait_status(client, task_id, {"running"})
    body = {"task_id": task_id, "task_type": "sleeper", "status": "running"}
    assert client.post(f"{TASKS}/cancel", json=body).json() is None
    assert client.get(f"{TASKS}/info/{task_id}").json()["status"] in {"cancelling", "cancelled"}
    assert wait_status(client, task_id, {"cancelled"}, timeout=10)["status"] == "cancelled"


def test_labels_must_match_exactly(farm: Any) -> None:
    _, client = farm
    save(client, ECHO)
    task_id = client.post(
        f"{TASKS}/submit",
        json={"user": "u", "task_type": "echo", "task_args": {"message": "x"}, "labels": ["gpu"]},
    ).json()["task_id"]
    time.sleep(0.5)
    assert client.get(f"{TASKS}/info/{task_id}").json()["status"] == "submitted"


def test_job_dir_survives_a_restart(tmp_path: Path) -> None:
    options = {"api_key": "k", "job_dir": tmp_path / "jobs", "agents": 0}
    with BackgroundServer(create_app(**options)) as server:
        client = httpx.Client(base_url=server.url)
        save(client, {**ECHO, "env": {"A": "1"}, "allowed_args": {"m": {"arg": "--m"}}})
    assert (tmp_path / "jobs" / "echo.kit").read_text().startswith("[job.echo]")
    with BackgroundServer(create_app(**options)) as server:
        loaded = httpx.Client(base_url=server.url).get(f"{JOBS}/load").json()
    assert loaded["echo"]["env"] == {"A": "1"}
    assert loaded["echo"]["allowed_args"] == {"m": {"arg": "--m"}}


def test_argv_rules_from_the_reference() -> None:
    definition = {
        "command": "python3",
        "args": ["-u", "render.py", "--enable a b"],
        "allowed_args": {
            "preset": {"arg": "0"},
            "scene": {"arg": "--scene", "separator": " "},
            "start": {"arg": "--start"},
            "raw": {"arg": "", "separator": ""},
        },
    }
    argv = build_argv(
        definition, {"scene": "s.usd", "start": "1", "preset": "final", "raw": "tail"}
    )
    assert argv == [
        "python3",
        "-u",
        "render.py",
        "--enable",
        "a",
        "b",
        "final",
        "--scene",
        "s.usd",
        "--start=1",
        "tail",
    ]
    with pytest.raises(KeyError):
        build_argv(definition, {"unknown": "x"})


SPEC = SHARED / "reference" / "omniverse-farm-openapi-2.0.42.json"


@pytest.mark.skipif(not SPEC.exists(), reason=f"{SPEC} is absent (../shared not checked out)")
def test_routes_and_request_schemas_match_the_real_spec() -> None:
    real = json.loads(SPEC.read_text())
    ours = create_app(agents=0).openapi()

    def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
        return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}

    assert operations(real) <= operations(ours), operations(real) - operations(ours)
    for path, ops in real["paths"].items():
        for method, op in ops.items():
            mine = ours["paths"][path][method]
            real_params = {(x["name"], x["in"]) for x in op.get("parameters", [])}
            my_params = {
                (x["name"], x["in"]) for x in mine.get("parameters", []) if x["name"] != "X-API-KEY"
            }
            assert real_params == my_params, (method, path)
            real_body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "$ref" in real_body.get("schema", {}):
                name = real_body["schema"]["$ref"].rsplit("/", 1)[1]
                real_schema = real["components"]["schemas"][name]
                my_schema = ours["components"]["schemas"][name]
                assert set(real_schema.get("properties", {})) == set(
                    my_schema.get("properties", {})
                ), name
                assert set(real_schema.get("required", [])) == set(my_schema.get("required", [])), (
                    name
                )
    assert (
        real["components"]["schemas"]["Status"]["enum"]
        == ours["components"]["schemas"]["Status"]["enum"]
    )


AGENTS = "/queue/management/agents"


def test_revision_history_rows_without_a_user_say_unknown(farm: Any) -> None:
    _, client = farm
    save(client, ECHO)
    task_id = client.post(
        f"{TASKS}/submit", json={"user": "artist", "task_type": "echo", "task_args": {}}
    ).json()["task_id"]
    wait_status(client, task_id, {"finished"})
    rows = client.get(f"{TASKS}/revision-history/{task_id}").json()
    # the spec types user_id as a string; the real store writes "unknown" for agents
    assert [(r["status"], r["user_id"]) for r in rows] == [
        ("submitted", "artist"),
        ("starting", "unknown"),
        ("running", "unknown"),
        ("finished", "unknown"),
    ]
    assert {r["agent_id"] for r in rows[1:]} == {"emulator-agent-0"}


def test_agents_service_answers_as_the_real_one(farm: Any) -> None:
    _, client = farm
    checked = client.post(f"{AGENTS}/checkin", json={"agent_id": "outside-1", "labels": ["x"]})
    assert checked.status_code == 200
    assert checked.json() == {"agent_id": "outside-1", "status": "idle"}
    busy = client.post(f"{AGENTS}/checkin", json={"agent_id": "outside-2", "active_tasks": ["t"]})
    assert busy.json() == {"agent_id": "outside-2", "status": "active"}
    assert client.get(f"{AGENTS}/list", params={"status": "bogus"}).status_code == 422
    idle = client.get(f"{AGENTS}/list", params={"status": "idle"}).json()
    assert "outside-1" in idle and "outside-2" not in idle
    assert idle["outside-1"]["labels"] == ["x"] and idle["outside-1"]["errored_task_count"] == 0
    for action in ("evict", "enable"):
        unknown = client.post(f"{AGENTS}/{action}", json={"agent_id": "never-seen"})
        assert unknown.status_code == 200 and unknown.json() is None
    removed = client.post(f"{AGENTS}/remove", json={"agent_id": "never-seen"})
    assert removed.status_code == 404 and removed.json() == {"detail": "Agent does not exist."}
    client.post(f"{AGENTS}/evict", json={"agent_id": "outside-1"})
    again = client.post(f"{AGENTS}/checkin", json={"agent_id": "outside-1"})
    assert again.json()["status"] == "evicted"  # stays evicted until enabled
    client.post(f"{AGENTS}/enable", json={"agent_id": "outside-1"})
    assert client.get(f"{AGENTS}/list").json()["outside-1"]["status"] == "idle"
    assert client.post(f"{AGENTS}/remove", json={"agent_id": "outside-1"}).json() is None
    assert "outside-1" not in client.get(f"{AGENTS}/list").json()


def test_an_evicted_agent_takes_no_new_work_until_enabled(farm: Any) -> None:
    _, client = farm
    save(client, ECHO)
    client.post(f"{AGENTS}/evict", json={"agent_id": "emulator-agent-0"})
    assert client.get(f"{AGENTS}/list").json()["emulator-agent-0"]["status"] == "evicted"
    task_id = client.post(
        f"{TASKS}/submit", json={"user": "u", "task_type": "echo", "task_args": {}}
    ).json()["task_id"]
    time.sleep(0.5)
    assert client.get(f"{TASKS}/info/{task_id}").json()["status"] == "submitted"
    client.post(f"{AGENTS}/enable", json={"agent_id": "emulator-agent-0"})
    assert wait_status(client, task_id, {"finished"})["status"] == "finished"


def test_a_silent_agent_is_lost_and_its_tasks_error() -> None:
    app = create_app(api_key="k", agents=0, propagation_delay=0.0, lost_timeout=1.0)
    with BackgroundServer(app) as server:
        client = httpx.Client(base_url=server.url, timeout=10)
        task_id = client.post(
            f"{TASKS}/submit",
            json={
                "user": "u",
                "task_type": "manual",
                "task_args": {},
                "metadata": {"_retry": {"is_retryable": False}},
            },
        ).json()["task_id"]
        # a test playing agent: fetch the task, report it active, then fall silent
        fetched = client.post(
            f"{TASKS}/fetch", json={"task_types": [["manual", ""]], "agent_id": "mute"}
        ).json()
        assert fetched["task_id"] == task_id and fetched["status"] == "starting"
        client.post(f"{AGENTS}/checkin", json={"agent_id": "mute", "active_tasks": [task_id]})
        info = wait_status(client, task_id, {"errored"}, timeout=60)
        assert info["task_details"] == "agent mute was lost. Failing task."
        agent = client.get(f"{AGENTS}/list", params={"status": "lost"}).json()["mute"]
        assert agent["active_tasks"] == []


def test_agents_take_only_tasks_whose_requirements_they_have() -> None:
    app = create_app(
        api_key="k", agents=1, propagation_delay=0.0, agent_poll=0.02, agent_capacity={"cpu": 8}
    )
    with BackgroundServer(app) as server:
        client = httpx.Client(base_url=server.url, timeout=10)
        save(client, ECHO)

        def submit(requirements: dict[str, Any]) -> str:
            body = {
                "user": "u",
                "task_type": "echo",
                "task_args": {"message": "x"},
                "task_requirements": requirements,
            }
            return str(client.post(f"{TASKS}/submit", json=body).json()["task_id"])

        gpu = submit({"gpu": 1})
        cpu = submit({"cpu": 64, "env": [{"name": "A", "value": "1"}]})  # values not compared
        assert wait_status(client, cpu, {"finished"})["status"] == "finished"
        assert client.get(f"{TASKS}/info/{gpu}").json()["status"] == "submitted"
        # an agent over HTTP that has a gpu gets it
        fetched = client.post(
            f"{TASKS}/fetch",
            json={"task_types": [["echo", ""]], "agent_id": "gpu-box", "capacity": {"gpu": 2}},
        ).json()
        assert fetched["task_id"] == gpu
