"""The ovfarm backend under real emulator faults: what a failure leaves behind.

Each test injects a fault into the running Omniverse Farm emulator (a lost or
malformed answer, a 429, a failed log read, a killed client) and checks what a user
relies on afterwards: no duplicated log text, no farm work unknown to the journal, a
clear error instead of a traceback, nothing written outside ``log_dir``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import (
    Job,
    JobNotFoundError,
    JobState,
    SubmitError,
    get_plugin_manager,
    submit,
    wait,
)
from farm_adapters.errors import APIError
from farm_adapters.journal import Journal

pytest.importorskip("fastapi", reason="the emulators extra is not installed")
httpx = pytest.importorskip("httpx")

EXE = [sys.executable, "-m", "farm_adapters"]
SUBMIT = "/queue/management/tasks/submit$"
CANCELLED = {"cancelling", "cancelled"}


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
    client.close()


def tasks_of(emulator: Any, job_id: str) -> list[dict[str, Any]]:
    with emulator.farm.lock:
        tasks = [
            dict(t)
            for t in emulator.farm.tasks.values()
            if (t["metadata"].get("farm_adapters") or {}).get("job") == job_id
        ]
    return sorted(tasks, key=lambda t: t["metadata"]["farm_adapters"]["task"])


def jobs_named(emulator: Any, name: str) -> set[str]:
    with emulator.farm.lock:
        return {
            str(t["metadata"]["farm_adapters"]["job"])
            for t in emulator.farm.tasks.values()
            if (t["metadata"].get("farm_adapters") or {}).get("name") == name
        }


def wait_for(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- item 14: the log mirror keeps its progress per source ------------------------------


def test_a_failed_log_read_never_duplicates_mirrored_text(
    backend: Any, ovfarm_emulator: Any, faults: Any
) -> None:
    job = submit(
        backend,
        {"commands": [["sh", "-c", "echo out-$((1000 + {frame}))"]], "frames": "1-2"},
        journal=False,
    )
    assert isinstance(job, Job)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    second = tasks_of(ovfarm_emulator, job.id)[1]["task_id"]
    # The first task's log is copied, then reading the second one fails for good.
    faults(path=f"/logs/{second}$", kind="error", status=500, count=-1)
    with pytest.raises(APIError, match="HTTP 500"):
        backend.get_render_log(job.id)
    httpx.delete(f"{ovfarm_emulator.url}/_emulator/faults")
    chunk = backend.get_render_log(job.id)
    assert chunk.text.count("out-1001") == 1
    assert chunk.text.count("out-1002") == 1
    assert chunk.text.index("out-1001") < chunk.text.index("out-1002")
    assert chunk.complete


# -- item 15: a failed submit is journalled, cancelled, and says --target -------------


def test_a_submit_refused_part_way_is_journalled_and_its_tasks_cancelled(
    backend: Any, ovfarm_emulator: Any, faults: Any, tmp_path: Path
) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    backend.get_jobs()
    # The first two submits are taken, the third to reach the farm is refused (a
    # permanent 400). Task 0 goes alone; 1-3 go together, so which one the farm
    # refuses depends on their arrival order.
    faults(
        path=SUBMIT,
        kind="answer",
        status=400,
        body='{"detail": "refused by the test"}',
        skip=2,
        count=1,
    )
    with pytest.raises(SubmitError) as info:
        submit(
            backend,
            {"name": "part-way", "commands": [["sleep", "60"]], "frames": "1-4"},
            journal=journal,
        )
    assert not info.value.transient
    entries = journal.entries()
    assert len(entries) == 1 and entries[0].target == "studio-farm"
    job_id = entries[0].job_id
    assert job_id in str(info.value) and "--target studio-farm" in str(info.value)
    tasks = tasks_of(ovfarm_emulator, job_id)
    # The refused task is not on the farm, none is there twice, and the rest were
    # cancelled.
    indexes = sorted(t["metadata"]["farm_adapters"]["task"] for t in tasks)
    assert indexes[0] == 0 and len(set(indexes)) == len(indexes) <= 3, indexes
    assert {t["status"] for t in tasks} <= CANCELLED, [t["status"] for t in tasks]
    assert wait(backend, job_id, timeout=60, poll_interval=0.1).state is JobState.STOPPED


def test_a_client_killed_mid_submit_leaves_the_job_in_the_journal(
    ovfarm_emulator: Any, faults: Any, tmp_path: Path
) -> None:
    config = tmp_path / "farm-adapters.toml"
    config.write_text(
        f'[targets.studio-farm]\nbackend = "ovfarm"\nurl = "{ovfarm_emulator.url}"\n'
        f'api_key = {{ env = "STUDIO_FARM_KEY" }}\nlog_dir = "{tmp_path / "logs"}"\n'
        f'folders = "{tmp_path / "folders"}"\n'
    )
    env = {**os.environ, "FARM_ADAPTERS_CONFIG": str(config), "STUDIO_FARM_KEY": "test-key"}
    # The second task is created, but its answer does not come before the kill.
    faults(path=SUBMIT, phase="after", kind="hang", seconds=120, skip=1, count=1)
    name = f"killed-{os.getpid()}-{time.monotonic_ns()}"
    argv = ["submit", "--target", "studio-farm", "--name", name, "--frames", "1-3"]
    proc = subprocess.Popen(
        [*EXE, *argv, "--", "sleep", "60"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: (
                any(
                    len(tasks_of(ovfarm_emulator, j)) >= 2
                    for j in jobs_named(ovfarm_emulator, name)
                )
                or proc.poll() is not None
            ),
            "the second task on the farm",
        )
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    (job_id,) = jobs_named(ovfarm_emulator, name)
    entry = Journal().get(job_id)
    assert entry is not None and entry.target == "studio-farm"
    # The journal is enough to stop it: no --target needed.
    result = subprocess.run(
        [*EXE, "stop", job_id], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    wait_for(
        lambda: {t["status"] for t in tasks_of(ovfarm_emulator, job_id)} <= CANCELLED,
        "the killed submit's tasks to be cancelled",
    )


# -- item 16: malformed answers are clear errors -----------------------------------------


@pytest.mark.parametrize("body", ["null", "[]", '"a string"', '{"k": "not a list"}', '{"k": [1]}'])
def test_a_malformed_task_listing_is_an_api_error_not_a_missing_job(
    backend: Any, faults: Any, body: str
) -> None:
    job = submit(backend, {"commands": [["true"]]}, journal=False)
    faults(path="/tasks/list$", kind="answer", body=body, count=1)
    with pytest.raises(APIError, match="unexpected answer"):
        backend.get_job(job.id)
    assert backend.get_job(job.id).id == job.id


@pytest.mark.parametrize("body", ["null", "{}", "[]", '{"logs": 3}'])
def test_a_malformed_log_answer_is_an_api_error(backend: Any, faults: Any, body: str) -> None:
    job = submit(backend, {"commands": [["echo", "fine"]]}, journal=False)
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    faults(path="/logs/", kind="answer", body=body, count=1)
    with pytest.raises(APIError, match="unexpected answer"):
        backend.get_render_log(job.id)
    assert "fine" in backend.get_render_log(job.id).text


def test_a_malformed_submit_answer_cancels_the_job(
    backend: Any, ovfarm_emulator: Any, faults: Any, tmp_path: Path
) -> None:
    backend.get_jobs()
    journal = Journal(tmp_path / "journal.sqlite3")
    # The farm creates task 0 but answers null.
    faults(path=SUBMIT, phase="after", kind="answer", body="null", count=1)
    with pytest.raises(SubmitError, match="unexpected answer"):
        submit(backend, {"commands": [["sleep", "60"]], "frames": "1-2"}, journal=journal)
    (entry,) = journal.entries()
    tasks = tasks_of(ovfarm_emulator, entry.job_id)
    assert len(tasks) == 1 and tasks[0]["status"] in CANCELLED


@pytest.mark.parametrize("body", ["null", "[]", '"x"', '{"fa-runner": 1}'])
def test_malformed_job_definitions_fail_the_check_clearly(
    ovfarm_settings: dict[str, Any], faults: Any, body: str
) -> None:
    faults(path="/jobs/load$", kind="answer", body=body, count=-1)
    backend = get_plugin_manager().create_backend("ovfarm", ovfarm_settings)
    results = {r.name: r for r in backend.check()}
    assert not results["job store"].ok and "unexpected answer" in results["job store"].detail
    with pytest.raises(APIError, match="unexpected answer"):
        submit(backend, {"commands": [["true"]]}, journal=False)


# -- item 17: 429 means "not processed": retried, then transient -------------------------


def test_a_429_on_submit_is_retried_after_retry_after(
    backend: Any, ovfarm_emulator: Any, faults: Any
) -> None:
    backend.get_jobs()
    faults(path=SUBMIT, kind="answer", status=429, retry_after=0, body="{}", count=2)
    job = submit(backend, {"commands": [["true"]], "frames": "1-3"}, journal=False)
    tasks = tasks_of(ovfarm_emulator, job.id)
    assert [t["metadata"]["farm_adapters"]["task"] for t in tasks] == [0, 1, 2]
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED


def test_a_farm_that_keeps_answering_429_is_a_transient_submit_error(
    backend: Any, ovfarm_emulator: Any, faults: Any, tmp_path: Path
) -> None:
    backend.get_jobs()
    faults(path=SUBMIT, kind="answer", status=429, retry_after=0, body="{}", count=-1)
    journal = Journal(tmp_path / "journal.sqlite3")
    with pytest.raises(SubmitError, match="429") as info:
        submit(backend, {"commands": [["true"]]}, journal=journal)
    assert info.value.transient
    (entry,) = journal.entries()
    assert tasks_of(ovfarm_emulator, entry.job_id) == []


# -- item 19: only ids this backend makes ------------------------------------------------


def test_a_farm_supplied_job_id_never_reaches_a_file_path(
    ovfarm_settings: dict[str, Any], ovfarm_emulator: Any, tmp_path: Path
) -> None:
    log_dir = tmp_path / "a" / "b" / "logs"
    backend = get_plugin_manager().create_backend(
        "ovfarm", {**ovfarm_settings, "log_dir": str(log_dir)}
    )
    request = {"name": "hostile", "commands": [["echo", "planted"]]}
    job = submit(backend, request, journal=False)
    wait(backend, job.id, timeout=60, poll_interval=0.1)
    # Someone else's task on the same farm, carrying a path as its job id.
    (payload,) = [
        p
        for p in backend.native_payloads(submit(backend, request, dry_run=True).request)
        if p["path"].endswith("/tasks/submit")
    ]
    body = payload["body"]
    body["metadata"]["farm_adapters"]["job"] = "../../escaped"
    httpx.post(f"{ovfarm_emulator.url}/queue/management/tasks/submit", json=body).raise_for_status()
    hostile = "../../escaped"
    wait_for(
        lambda: all(t["status"] == "finished" for t in tasks_of(ovfarm_emulator, hostile)),
        "the planted task to finish",
    )
    assert hostile not in {j.id for j in backend.get_jobs()}
    with pytest.raises(JobNotFoundError):
        backend.get_render_log(hostile)
    with pytest.raises(JobNotFoundError):
        backend.get_render_log_filename(hostile)
    assert not list(tmp_path.rglob("escaped*"))
    assert "planted" in backend.get_render_log(job.id).text


# -- item 20: the target's user reaches tasks/submit ------------------------------------


def test_the_targets_user_setting_is_the_submitting_user(
    ovfarm_settings: dict[str, Any], ovfarm_emulator: Any
) -> None:
    backend = get_plugin_manager().create_backend(
        "ovfarm", {**ovfarm_settings, "user": "render-svc"}
    )
    job = submit(backend, {"commands": [["sleep", "60"]]}, journal=False)
    (task,) = tasks_of(ovfarm_emulator, job.id)
    assert task["userid"] == "render-svc"
    backend.stop_job(job.id)  # cancel acts as the same user
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.STOPPED
