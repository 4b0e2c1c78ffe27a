"""Polling an ovfarm job costs the farm's live tasks, not its finished history
(issue 17, item 4): ``tasks/list`` has no pagination, so a farm that keeps its history
answers a listing of every status with every task it ever ran."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from farm_adapters import Job, JobState, get_plugin_manager, submit, wait

pytest.importorskip("fastapi", reason="the emulators extra is not installed")
httpx = pytest.importorskip("httpx")

TIMEOUT = 60
FINAL = {"finished", "errored", "cancelled", "archived"}


@pytest.fixture
def backend(ovfarm_settings: dict[str, Any]) -> Iterator[Any]:
    b = get_plugin_manager().create_backend("ovfarm", ovfarm_settings, target="studio-farm")
    yield b
    b.close()


def tasks_of(emulator: Any, job_id: str) -> list[dict[str, Any]]:
    with emulator.farm.lock:
        return [
            dict(t)
            for t in emulator.farm.tasks.values()
            if (t["metadata"].get("farm_adapters") or {}).get("job") == job_id
        ]


@contextmanager
def history(emulator: Any, template: dict[str, Any]) -> Iterator[Any]:
    """``grow(n)`` adds n finished tasks of the same task type (other jobs' history);
    all of them are removed again at the end (the emulator lives for the session)."""
    from farm_adapters.testing.emulators.ovfarm import TaskSubmissionModel

    farm = emulator.farm
    added: list[str] = []

    def grow(count: int) -> None:
        for _ in range(count):
            meta = {"job": uuid.uuid4().hex[:12], "task": 0, "tasks": 1, "name": "old"}
            body = TaskSubmissionModel(
                user="old",
                task_type=template["task_type"],
                task_args=template["task_args"],
                metadata={"farm_adapters": meta},
                status="finished",
            )
            added.append(farm.submit(body))

    try:
        yield grow
    finally:
        with farm.lock:
            for task_id in added:
                farm.by_status.get(farm.tasks.pop(task_id)["status"], {}).pop(task_id, None)


def listed_by_one_poll(emulator: Any, backend: Any, job_id: str) -> tuple[int, int, Job]:
    """Tasks the farm listed for one ``get_job``, and the farm's live tasks then."""
    control = httpx.Client(base_url=emulator.url)
    control.delete("/_emulator/stats").raise_for_status()
    job = backend.get_job(job_id)
    listed = control.get("/_emulator/stats").json()["tasks_listed"]
    with emulator.farm.lock:
        live = sum(1 for t in emulator.farm.tasks.values() if t["status"] not in FINAL)
    return int(listed), live, job


def test_a_poll_lists_the_live_tasks_not_the_farms_history(
    backend: Any, ovfarm_emulator: Any
) -> None:
    job = submit(backend, {"commands": [["sh", "-c", "sleep 60"]], "frames": "1-4"}, journal=False)
    try:
        template = tasks_of(ovfarm_emulator, job.id)[0]
        with history(ovfarm_emulator, template) as grow:
            grow(200)
            small, live_small, polled = listed_by_one_poll(ovfarm_emulator, backend, job.id)
            assert polled.total_tasks == 4
            grow(3800)  # the finished history grows 20 times
            large, live_large, polled = listed_by_one_poll(ovfarm_emulator, backend, job.id)
            assert polled.total_tasks == 4 and not polled.state.final
        # Flat: only live tasks are listed (the job's four, and whatever else is live).
        assert small <= max(live_small, 4) < 200
        assert large <= max(live_large, 4) < 200
    finally:
        backend.stop_job(job.id)
    assert wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.STOPPED


def test_finished_tasks_are_read_once_then_kept(
    backend: Any, ovfarm_emulator: Any, ovfarm_settings: dict[str, Any], tmp_path: Any
) -> None:
    job = submit(
        backend,
        {"commands": [["echo", "{frame}"]], "frames": "1-3", "environment": {"TOKEN": "s3cr3t"}},
        journal=False,
    )
    assert wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.COMPLETED
    # What is kept is what a listing shows: not the tasks' script or environment.
    book = backend.log_dir / f"{job.id}.tasks.json"
    assert "s3cr3t" not in book.read_text() and "task_args" not in book.read_text()
    assert book.stat().st_mode & 0o077 == 0
    template = tasks_of(ovfarm_emulator, job.id)[0]
    with history(ovfarm_emulator, template) as grow:
        grow(2000)
        # The same backend, and a new process sharing its log folder (the CLI after a
        # DCC), read the finished job without listing the history.
        again = get_plugin_manager().create_backend("ovfarm", ovfarm_settings, target="studio-farm")
        for reader in (backend, again):
            listed, _, polled = listed_by_one_poll(ovfarm_emulator, reader, job.id)
            assert polled.state is JobState.COMPLETED and polled.total_tasks == 3
            assert listed < 2000
        again.close()
        # A process that never saw the job reads it from the history, once.
        fresh = get_plugin_manager().create_backend(
            "ovfarm", {**ovfarm_settings, "log_dir": str(tmp_path / "other")}, target="x"
        )
        first, _, polled = listed_by_one_poll(ovfarm_emulator, fresh, job.id)
        assert polled.state is JobState.COMPLETED and polled.total_tasks == 3
        assert first >= 2000
        second, _, polled = listed_by_one_poll(ovfarm_emulator, fresh, job.id)
        assert polled.state is JobState.COMPLETED and second < 2000
        assert fresh.get_render_log(job.id).text.count("\n") >= 3
        fresh.close()


def test_a_restarted_task_that_ends_between_two_polls_is_read_back(
    backend: Any, ovfarm_emulator: Any, tmp_path: Any
) -> None:
    counter = tmp_path / "runs"
    script = f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ $n -ge 1 ]"
    job = submit(backend, {"commands": [["sh", "-c", script]]}, journal=False)
    assert wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.FAILED
    backend.restart_job(job.id)
    # No poll while the retried task runs: it is finished before the next one.
    deadline = time.monotonic() + TIMEOUT
    while tasks_of(ovfarm_emulator, job.id)[0]["status"] != "finished":
        assert time.monotonic() < deadline, "the retried task never finished"
        time.sleep(0.05)
    assert backend.get_job(job.id).state is JobState.COMPLETED


def test_an_unknown_job_is_not_found_and_leaves_no_file(backend: Any) -> None:
    from farm_adapters import JobNotFoundError

    with pytest.raises(JobNotFoundError):
        backend.get_job("0123456789ab")
    assert not list(backend.log_dir.glob("0123456789ab*"))


def test_a_book_saved_by_another_instance_replaces_the_one_in_memory(tmp_path: Any) -> None:
    # A restart from a second instance (another thread's backend, the CLI beside a DCC)
    # watches its tasks again; this instance must not keep answering from the settled
    # states it had in memory, or a restarted job reads as its old final state.
    from farm_adapters.plugins.ovfarm.book import JobBook, TaskBook

    mine, theirs = TaskBook(tmp_path), TaskBook(tmp_path)
    settled = {"task_id": "t1", "status": "cancelled"}
    mine.save("job", JobBook(total=1, final={"t1": settled}, complete=True))
    assert mine.get("job").final == {"t1": settled}

    restarted = theirs.get("job")
    restarted.final.pop("t1")
    restarted.watch.add("t1")
    theirs.save("job", restarted)

    seen = mine.get("job")
    assert seen.final == {} and seen.watch == {"t1"}
