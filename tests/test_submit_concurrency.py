"""HTTP backends submit a job's chunks a few at a time (issue 17, item 6): the wait
on the server is overlapped, each request is still exactly-once (looked up before a
retry), and a farm that refuses the first request sees only that one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from farm_adapters import FarmAdapterError, Job, get_plugin_manager, submit
from farm_adapters.http import SUBMIT_CONCURRENCY

pytest.importorskip("fastapi", reason="the emulators extra is not installed")
httpx = pytest.importorskip("httpx")

OVFARM_SUBMIT = "/queue/management/tasks/submit"
RUNAI_CREATE = "/api/v1/workloads/trainings"


@pytest.fixture
def ovfarm(ovfarm_settings: dict[str, Any]) -> Iterator[Any]:
    b = get_plugin_manager().create_backend("ovfarm", ovfarm_settings, target="studio-farm")
    yield b
    b.close()


@pytest.fixture
def runai(runai_settings: dict[str, Any]) -> Iterator[Any]:
    b = get_plugin_manager().create_backend("runai", runai_settings, target="gpu-cluster")
    yield b
    b.close()


def control(emulator: Any) -> Any:
    client = httpx.Client(base_url=emulator.url)
    client.delete("/_emulator/stats").raise_for_status()
    client.delete("/_emulator/faults").raise_for_status()
    return client


def peak(client: Any, route: str) -> int:
    return int(client.get("/_emulator/stats").json()["peak_in_flight"].get(route, 0))


@pytest.mark.parametrize("flavour", ["ovfarm", "runai"])
def test_chunks_are_sent_a_few_at_a_time_and_each_once(
    flavour: str, request: pytest.FixtureRequest
) -> None:
    backend = request.getfixturevalue(flavour)
    emulator = request.getfixturevalue(f"{flavour}_emulator")
    route = OVFARM_SUBMIT if flavour == "ovfarm" else RUNAI_CREATE
    client = control(emulator)
    # A request an earlier test left hanging on the server (a 'hang' fault) still
    # counts as in flight: measure above it.
    before = peak(client, f"POST {route}")
    backend.get_jobs()  # connected and authenticated before the clock of the fault
    # Each submit waits on the server (as a busy farm's do), and two of them fail
    # after the work is done: the answer is lost, the task exists.
    client.post(
        "/_emulator/faults",
        json={"path": route, "kind": "latency", "seconds": 0.3, "count": -1},
    ).raise_for_status()
    client.post(
        "/_emulator/faults",
        json={
            "path": route,
            "phase": "after",
            "kind": "error",
            "status": 502,
            "skip": 3,
            "count": 2,
        },
    ).raise_for_status()
    try:
        job = submit(backend, {"commands": [["true"]], "frames": "1-12"}, journal=False)
    finally:
        client.delete("/_emulator/faults")
    assert isinstance(job, Job)
    assert 1 < peak(client, f"POST {route}") - before <= SUBMIT_CONCURRENCY
    polled = backend.get_job(job.id)
    assert polled.total_tasks == 12 and len(set(polled.native_ids)) == 12  # none twice
    backend.stop_job(job.id)


@pytest.mark.parametrize("flavour", ["ovfarm", "runai"])
def test_a_refused_first_chunk_is_sent_alone(flavour: str, request: pytest.FixtureRequest) -> None:
    backend = request.getfixturevalue(flavour)
    emulator = request.getfixturevalue(f"{flavour}_emulator")
    route = OVFARM_SUBMIT if flavour == "ovfarm" else RUNAI_CREATE
    client = control(emulator)
    backend.get_jobs()
    client.post(
        "/_emulator/faults",
        json={
            "path": route,
            "kind": "answer",
            "status": 400,
            "count": -1,
            "body": '{"detail": "refused", "code": 400, "message": "refused"}',
        },
    ).raise_for_status()
    try:
        with pytest.raises(FarmAdapterError):  # ovfarm: SubmitError; runai: InvalidRequest
            submit(backend, {"commands": [["true"]], "frames": "1-12"}, journal=False)
    finally:
        client.delete("/_emulator/faults")
    assert client.get("/_emulator/stats").json()["requests"].get(f"POST {route}") == 1
