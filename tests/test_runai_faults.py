"""The runai backend under real emulator faults: proxies answering HTML, malformed
answers, 429s, a client clock running ahead, a cluster API that fails once."""

from __future__ import annotations

import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import (
    InvalidRequestError,
    Job,
    JobState,
    SubmitError,
    get_plugin_manager,
    submit,
    wait,
)
from farm_adapters.errors import APIError, BackendUnavailableError
from farm_adapters.journal import Journal

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the emulators extra is not installed")

from farm_adapters.testing.emulators._server import BackgroundServer  # noqa: E402
from farm_adapters.testing.emulators.runai import create_app  # noqa: E402

CREATE = "^/api/v1/workloads/trainings$"
LISTING = "^/api/v1/workloads$"
HTML = "<html><head><title>400 Bad Request</title></head><body>nginx: 400 Bad Request</body></html>"


@pytest.fixture
def backend(runai_settings: dict[str, Any]) -> Iterator[Any]:
    b = get_plugin_manager().create_backend("runai", runai_settings, target="gpu-cluster")
    yield b
    b.close()


@pytest.fixture
def faults(runai_emulator: Any) -> Iterator[Any]:
    client = httpx.Client(base_url=runai_emulator.url)

    def add(**fault: Any) -> None:
        client.post("/_emulator/faults", json=fault).raise_for_status()

    yield add
    client.delete("/_emulator/faults")
    client.close()


def workloads_of(emulator: Any, job_id: str) -> list[dict[str, Any]]:
    with emulator.state.lock:
        return [dict(w) for w in emulator.state.workloads.values() if f"-{job_id}-" in w["name"]]


def assert_stopped(emulator: Any, job_id: str, count: int, in_flight: int = 0) -> None:
    """The workloads a failed submit created were suspended: each is Stopping, or
    already Stopped, when the error reaches the caller. Creates run a few at a time:
    up to ``in_flight`` more may have been sent beside the one that failed."""
    workloads = workloads_of(emulator, job_id)
    assert count <= len(workloads) <= count + in_flight
    assert all(w["desiredPhase"] == "Stopped" for w in workloads), workloads
    assert all(w["phase"] in ("Stopping", "Stopped") for w in workloads), workloads


# -- item 16: an HTML 400 and malformed 200s -----------------------------------------


def test_an_html_400_part_way_stops_what_was_created(
    backend: Any, runai_emulator: Any, faults: Any, tmp_path: Path
) -> None:
    backend.get_jobs()
    journal = Journal(tmp_path / "journal.sqlite3")
    faults(path=CREATE, kind="answer", status=400, body=HTML, content_type="text/html", skip=1)
    with pytest.raises(SubmitError, match="400 Bad Request") as info:
        submit(backend, {"commands": [["sleep", "60"]], "frames": "1-3"}, journal=journal)
    (entry,) = journal.entries()
    assert entry.job_id in str(info.value) and "--target gpu-cluster" in str(info.value)
    assert_stopped(runai_emulator, entry.job_id, 1, in_flight=1)  # workload 2 may be sent
    assert not [w for w in workloads_of(runai_emulator, entry.job_id) if "-1-r0-" in w["name"]]


def test_an_html_400_on_the_first_workload_is_an_invalid_request(
    backend: Any, runai_emulator: Any, faults: Any
) -> None:
    backend.get_jobs()
    faults(path=CREATE, kind="answer", status=400, body=HTML, content_type="text/html")
    with pytest.raises(InvalidRequestError, match="nginx: 400 Bad Request"):
        submit(backend, {"commands": [["true"]]}, journal=False)


@pytest.mark.parametrize("body", ["null", "[]", "{}", '"text"', '{"workloads": [{"name": 1}]}'])
def test_a_malformed_listing_is_an_api_error_never_a_missing_job(
    backend: Any, faults: Any, body: str
) -> None:
    job = submit(backend, {"commands": [["true"]]}, journal=False)
    assert isinstance(job, Job)
    faults(path=LISTING, kind="answer", body=body)
    with pytest.raises(APIError, match="unexpected answer"):
        backend.get_job(job.id)
    assert backend.get_job(job.id).id == job.id


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("^/api/v1/token$", "null"),
        ("^/api/v1/token$", "{}"),
        ("^/api/v1/token$", '"token"'),
        ("^/api/v1/org-unit/projects$", "[]"),
        ("^/api/v1/org-unit/projects$", '{"projects": null}'),
        ("^/api/v1/org-unit/projects$", '{"projects": [{"name": "team-a"}]}'),
    ],
)
def test_malformed_token_and_project_answers_are_api_errors(
    runai_settings: dict[str, Any], faults: Any, path: str, body: str
) -> None:
    faults(path=path, kind="answer", body=body)
    backend = get_plugin_manager().create_backend("runai", runai_settings)
    with pytest.raises(APIError, match="unexpected answer"):
        backend.get_jobs()
    assert backend.get_jobs() is not None


def test_a_malformed_create_answer_stops_the_workload(
    backend: Any, runai_emulator: Any, faults: Any, tmp_path: Path
) -> None:
    backend.get_jobs()
    journal = Journal(tmp_path / "journal.sqlite3")
    faults(path=CREATE, phase="after", kind="answer", status=202, body="null")
    with pytest.raises(SubmitError, match="unexpected answer"):
        submit(backend, {"commands": [["sleep", "60"]], "frames": "1-2"}, journal=journal)
    (entry,) = journal.entries()
    assert_stopped(runai_emulator, entry.job_id, 1)


# -- item 17: 429 is transient -------------------------------------------------------


def test_429s_on_create_are_retried_then_transient(
    backend: Any, runai_emulator: Any, faults: Any
) -> None:
    backend.get_jobs()
    faults(path=CREATE, kind="answer", status=429, retry_after=0, body="{}", count=2)
    job = submit(backend, {"commands": [["true"]], "frames": "1-2"}, journal=False)
    assert len(workloads_of(runai_emulator, job.id)) == 2
    faults(path=CREATE, kind="answer", status=429, retry_after=0, body="{}", count=-1)
    with pytest.raises(SubmitError, match="429") as info:
        submit(backend, {"commands": [["true"]]}, journal=False)
    assert info.value.transient


# -- item 18: token expiry from expiresIn; only successful cluster checks are cached ---


def test_a_client_clock_running_ahead_still_reuses_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from farm_adapters.plugins.runai import plugin as runai_plugin

    # This machine's wall clock is 10 minutes ahead of the server's (only the
    # client's: the emulator in this process keeps the real time).
    ahead = types.SimpleNamespace(
        time=lambda: time.time() + 600, monotonic=time.monotonic, sleep=time.sleep
    )
    monkeypatch.setattr(runai_plugin, "time", ahead)
    app = create_app(client_id="c", client_secret="s", token_lifetime=300, phase_delay=0.01)
    with BackgroundServer(app) as server:
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
        for _ in range(3):
            backend.get_jobs()
        stats = httpx.get(f"{server.url}/_emulator/stats").json()["requests"]
        assert stats.get("POST /api/v1/token") == 1
        backend.close()


def test_one_failed_cluster_check_does_not_disable_log_reading(
    runai_settings: dict[str, Any], faults: Any
) -> None:
    settings = {k: v for k, v in runai_settings.items() if k != "volume"}
    backend = get_plugin_manager().create_backend("runai", settings)
    job = submit(backend, {"commands": [["echo", "from-the-cluster"]]}, journal=False)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    faults(path="^/cluster-api/status$", status=503, count=2)  # both attempts fail
    with pytest.raises(BackendUnavailableError, match="unreachable"):
        backend.get_render_log(job.id)
    assert "from-the-cluster" in backend.get_render_log(job.id).text
