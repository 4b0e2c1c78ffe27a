"""The job's life after submit on ``local``: priority across jobs, holds, dependencies.

Real supervisors and real processes; the order tasks ran in is read from a file each
task appends to, never from timings."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import InvalidRequestError, Job, JobState, get_plugin_manager, submit, wait

TIMEOUT = 60


@pytest.fixture
def one_slot(tmp_path: Path) -> Iterator[Any]:
    backend = get_plugin_manager().create_backend(
        "local", {"root": str(tmp_path / "local"), "slots": 1, "grace_period": 2}
    )
    yield backend
    backend.close()


def run(backend: Any, **request: Any) -> Job:
    job = submit(backend, request, journal=False)
    assert isinstance(job, Job)
    return job


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def supervisor_recorded(backend: Any, job_id: str) -> bool:
    with sqlite3.connect(backend.db_path) as conn:
        (pid,) = conn.execute("SELECT supervisor_pid FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return pid is not None


def gated_job(backend: Any, order: Path, gate: Path, label: str, priority: int) -> Job:
    """Three one-frame tasks; the first waits for ``gate`` to exist. Each task appends
    ``<label><frame>`` to ``order`` when it starts."""
    script = (
        f"echo {label}$0 >> {order}; "
        f'if [ "$0" = 1 ]; then while [ ! -e {gate} ]; do sleep 0.05; done; fi'
    )
    return run(
        backend,
        name=label,
        frames="1-3",
        priority=priority,
        commands=[["sh", "-c", script, "{frame}"]],
    )


def test_a_higher_priority_job_takes_the_next_free_slot(one_slot: Any, tmp_path: Path) -> None:
    order, gate = tmp_path / "order", tmp_path / "gate"
    low = gated_job(one_slot, order, gate, "low", 0)
    wait_until(lambda: lines(order) == ["low1"], "the first low task started")
    high = run(
        one_slot, name="high", priority=100, commands=[["sh", "-c", f"echo high >> {order}"]]
    )
    wait_until(lambda: supervisor_recorded(one_slot, high.id), "the high job's supervisor")
    gate.touch()
    assert wait(one_slot, high.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert wait(one_slot, low.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert lines(order) == ["low1", "high", "low2", "low3"]


def test_equal_priorities_run_in_submission_order(one_slot: Any, tmp_path: Path) -> None:
    order, gate = tmp_path / "order", tmp_path / "gate"
    first = gated_job(one_slot, order, gate, "a", 50)
    wait_until(lambda: lines(order) == ["a1"], "the first task started")
    second = run(one_slot, name="b", priority=50, commands=[["sh", "-c", f"echo b >> {order}"]])
    wait_until(lambda: supervisor_recorded(one_slot, second.id), "the second supervisor")
    gate.touch()
    assert wait(one_slot, second.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert wait(one_slot, first.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert lines(order) == ["a1", "a2", "a3", "b"]


def test_priority_changed_after_submit_reorders_waiting_tasks(
    one_slot: Any, tmp_path: Path
) -> None:
    order, gate = tmp_path / "order", tmp_path / "gate"
    low = gated_job(one_slot, order, gate, "low", 50)
    wait_until(lambda: lines(order) == ["low1"], "the first low task started")
    late = run(one_slot, name="late", priority=0, commands=[["sh", "-c", f"echo late >> {order}"]])
    wait_until(lambda: supervisor_recorded(one_slot, late.id), "the late job's supervisor")
    one_slot.set_priority(late.id, 90)
    gate.touch()
    assert wait(one_slot, late.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert wait(one_slot, low.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert lines(order) == ["low1", "late", "low2", "low3"]


def test_priority_outside_0_100_is_refused(one_slot: Any) -> None:
    job = run(one_slot, commands=[["true"]])
    with pytest.raises(InvalidRequestError) as info:
        one_slot.set_priority(job.id, 101)
    assert info.value.field == "priority"


def test_a_held_job_runs_only_once_released(one_slot: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    job = run(one_slot, hold=True, commands=[["touch", str(marker)]])
    assert job.state is JobState.QUEUED
    assert f"farm-adapters release {job.id}" in job.message
    wait_until(lambda: supervisor_recorded(one_slot, job.id), "the supervisor")
    assert one_slot.get_job(job.id).state is JobState.QUEUED
    assert not marker.exists()
    one_slot.release_job(job.id)
    assert wait(one_slot, job.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert marker.exists()


def test_a_held_job_does_not_hold_back_other_jobs(one_slot: Any, tmp_path: Path) -> None:
    held = run(one_slot, hold=True, priority=100, frames="1-2", commands=[["echo", "{frame}"]])
    other = run(one_slot, priority=0, commands=[["true"]])
    assert wait(one_slot, other.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert one_slot.get_job(held.id).state is JobState.QUEUED
    one_slot.stop_job(held.id)  # no supervisor is left waiting after the test
    assert wait(one_slot, held.id, timeout=TIMEOUT).state is JobState.STOPPED


def test_stopping_a_held_job_stops_it_without_running(one_slot: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    job = run(one_slot, hold=True, commands=[["touch", str(marker)]])
    wait_until(lambda: supervisor_recorded(one_slot, job.id), "the supervisor")
    one_slot.stop_job(job.id)
    assert wait(one_slot, job.id, timeout=TIMEOUT).state is JobState.STOPPED
    assert not marker.exists()


def test_a_dependant_runs_after_every_frame_of_its_dependency(
    local_backend: Any, tmp_path: Path
) -> None:
    order = tmp_path / "order"
    frames = run(
        local_backend,
        frames="1-3",
        commands=[["sh", "-c", f"sleep 0.5; echo f$0 >> {order}", "{frame}"]],
    )
    sheet = run(
        local_backend,
        after=[frames.id],
        commands=[["sh", "-c", f"echo sheet >> {order}"]],
    )
    assert sheet.state is JobState.QUEUED
    assert sheet.message == f"waiting for {frames.id}"
    assert wait(local_backend, sheet.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert sorted(lines(order)[:3]) == ["f1", "f2", "f3"]
    assert lines(order)[3:] == ["sheet"]


def test_a_dependant_of_a_failed_job_fails_naming_it_and_never_runs(
    local_backend: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    bad = run(local_backend, commands=[["sh", "-c", "sleep 0.5; exit 3"]])
    after = run(local_backend, after=[bad.id], commands=[["touch", str(marker)]])
    done = wait(local_backend, after.id, timeout=TIMEOUT)
    assert done.state is JobState.FAILED
    assert bad.id in done.message
    assert not marker.exists()


def test_after_any_runs_after_a_failed_job(local_backend: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bad = run(local_backend, commands=[["sh", "-c", "exit 3"]])
    after = run(
        local_backend,
        after=[{"job_id": bad.id, "condition": "ended"}],
        commands=[["touch", str(marker)]],
    )
    assert wait(local_backend, after.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert marker.exists()


def test_a_dependant_of_a_stopped_job_fails_naming_it(local_backend: Any, tmp_path: Path) -> None:
    long = run(local_backend, commands=[["sleep", "60"]])
    after = run(local_backend, after=[long.id], commands=[["true"]])
    wait_until(lambda: local_backend.get_job(long.id).state is JobState.RUNNING, "running")
    local_backend.stop_job(long.id)
    done = wait(local_backend, after.id, timeout=TIMEOUT)
    assert done.state is JobState.FAILED
    assert long.id in done.message and "stopped" in done.message


def test_after_an_unknown_job_is_refused_naming_the_field(local_backend: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        run(local_backend, after=["nosuchjob"], commands=[["true"]])
    assert info.value.field == "after"


def test_a_process_that_read_first_then_writes_keeps_its_writes(tmp_path: Path) -> None:
    """A DCC polls (a read-only connection) and then stops and deletes a job: the
    deletion must survive the supervisor's own writes and checkpoint."""
    import subprocess
    import sys

    settings = {"root": str(tmp_path / "local"), "slots": 1, "grace_period": 2}
    backend = get_plugin_manager().create_backend("local", settings)
    job = run(backend, commands=[["sleep", "60"]])
    wait_until(lambda: backend.get_job(job.id).state is JobState.RUNNING, "running")
    backend.close()
    script = (
        "import sys, json, farm_adapters as fa\n"
        "b = fa.get_plugin_manager().create_backend('local', json.loads(sys.argv[1]))\n"
        "job_id = sys.argv[2]\n"
        "b.get_job(job_id)\n"  # the first use: a read-only connection
        "b.stop_job(job_id)\n"
        "fa.wait(b, job_id, timeout=60, poll_interval=0.1)\n"
        "b.delete_job(job_id)\n"
    )
    import json

    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(settings), job.id],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(tmp_path / "local" / "state.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs WHERE id = ?", (job.id,)).fetchone() == (0,)


# -- slurm: holds and priority natively (a real single-node cluster) --------------------


@pytest.fixture
def slurm(slurm_settings: dict[str, Any]) -> Iterator[Any]:
    backend = get_plugin_manager().create_backend("slurm", slurm_settings, target="hpc")
    yield backend
    backend.close()


def squeue_field(cluster: Any, job_id: str, field: str) -> list[str]:
    out = cluster.run("squeue", "-h", "-r", "-j", job_id, "-o", field)
    return [line.strip() for line in out.splitlines() if line.strip()]


def test_slurm_holds_natively_and_releases(slurm: Any, slurm_cluster: Any, tmp_path: Path) -> None:
    marker = tmp_path / "slurm-shared" / "ran"
    job = run(slurm, hold=True, commands=[["touch", str(marker)]])
    assert any("held" in r.lower() for r in squeue_field(slurm_cluster, job.id, "%r"))
    assert slurm.get_job(job.id).state is JobState.QUEUED
    slurm.release_job(job.id)
    assert wait(slurm, job.id, timeout=TIMEOUT).state is JobState.COMPLETED
    assert marker.exists()


def test_slurm_changes_priority_after_submit(slurm: Any, slurm_cluster: Any) -> None:
    job = run(slurm, hold=True, priority=50, commands=[["true"]])
    from farm_adapters.plugins.slurm import mapping

    assert squeue_field(slurm_cluster, job.id, "%y") == ["0"]  # priority 50: nice 0
    slurm.set_priority(job.id, 10)
    assert squeue_field(slurm_cluster, job.id, "%y") == [str(mapping.nice_for(10))]
    with pytest.raises(InvalidRequestError) as info:
        slurm.set_priority(job.id, 90)  # a negative nice: operators only
    assert info.value.field == "priority"
    slurm.stop_job(job.id)
    assert wait(slurm, job.id, timeout=TIMEOUT).state is JobState.STOPPED
