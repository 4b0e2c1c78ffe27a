"""The conformance suite: the lifecycle every backend must get right.

Each test takes the ``farm_backend`` fixture (a :class:`~farm_adapters.FarmPlugin`
instance) and ``farm_timeout``; the pytest plug-in provides both from ``--farm-backend``
or ``--farm-target``, and a test tree can override ``farm_backend``. Jobs run POSIX
``sh`` one-liners, so the render node needs ``/bin/sh``. Optional operations the
backend does not list in ``capabilities`` are checked to raise
:class:`~farm_adapters.errors.UnsupportedOperationError` instead.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from farm_adapters import (
    Capability,
    CheckResult,
    FarmPlugin,
    InvalidRequestError,
    Job,
    JobNotFoundError,
    JobState,
    UnsupportedOperationError,
    submit,
    wait,
)

__all__ = [
    "test_bad_request_is_refused",
    "test_check_reports_results",
    "test_failed_task_fails_the_job",
    "test_list_jobs",
    "test_render_log_offsets",
    "test_restart_runs_again",
    "test_stop_running_job",
    "test_submit_runs_to_completion",
    "test_unknown_job_is_not_found",
]


def _submit(backend: FarmPlugin, **request: Any) -> Job:
    request.setdefault("name", "conformance")
    job = submit(backend, request, journal=False)
    assert isinstance(job, Job)
    assert job.id, "submit must return a job with an id"
    return job


def _wait(backend: FarmPlugin, job_id: str, timeout: float) -> Job:
    return wait(backend, job_id, timeout=timeout, poll_interval=0.2, max_interval=1.0)


def _full_log(backend: FarmPlugin, job_id: str) -> str:
    text, offset = "", 0
    for _ in range(10_000):
        chunk = backend.get_render_log(job_id, offset)
        assert chunk.offset == offset
        assert chunk.next_offset >= offset
        text += chunk.text
        if chunk.next_offset == offset:
            break
        offset = chunk.next_offset
    return text


def _requires(backend: FarmPlugin, capability: Capability) -> None:
    if capability not in backend.capabilities:
        pytest.skip(f"backend {backend.name!r} does not implement {capability}")


def test_submit_runs_to_completion(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    job = _submit(
        farm_backend,
        commands=[["sh", "-c", "echo conformance-frame-{frame}"]],
        frames="1-3",
    )
    assert job.state in {JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED}
    done = _wait(farm_backend, job.id, farm_timeout)
    assert done.state is JobState.COMPLETED, done.message
    assert done.total_tasks == 3
    assert done.task_counts == {JobState.COMPLETED: 3}
    assert done.progress == 1.0
    assert farm_backend.get_job_state(job.id) is JobState.COMPLETED
    if Capability.RENDER_LOG in farm_backend.capabilities:
        log = _full_log(farm_backend, job.id)
        for frame in (1, 2, 3):
            assert f"conformance-frame-{frame}" in log


def test_render_log_offsets(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    if Capability.RENDER_LOG not in farm_backend.capabilities:
        with pytest.raises(UnsupportedOperationError):
            farm_backend.get_render_log("anything", 0)
        return
    job = _submit(farm_backend, commands=[["sh", "-c", "echo alpha; echo beta; echo gamma"]])
    _wait(farm_backend, job.id, farm_timeout)
    full = _full_log(farm_backend, job.id)
    assert "alpha" in full and "gamma" in full
    encoded = full.encode()
    middle = encoded.index(b"beta")
    tail = farm_backend.get_render_log(job.id, middle)
    assert tail.offset == middle
    assert tail.text.encode() == encoded[middle:]
    end = farm_backend.get_render_log(job.id, len(encoded))
    assert end.text == ""
    assert end.next_offset == len(encoded)
    assert end.complete


def test_failed_task_fails_the_job(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    job = _submit(
        farm_backend,
        commands=[["sh", "-c", "echo frame {frame}; test {frame} -ne 2 || exit 3"]],
        frames="1-3",
    )
    done = _wait(farm_backend, job.id, farm_timeout)
    assert done.state is JobState.FAILED
    assert done.task_counts.get(JobState.FAILED) == 1
    if Capability.RENDER_LOG in farm_backend.capabilities:
        assert "3" in _full_log(farm_backend, job.id)


def test_stop_running_job(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    if Capability.STOP not in farm_backend.capabilities:
        with pytest.raises(UnsupportedOperationError):
            farm_backend.stop_job("anything")
        return
    job = _submit(farm_backend, commands=[["sh", "-c", "echo started; sleep 300"]])
    deadline = time.monotonic() + farm_timeout
    while farm_backend.get_job_state(job.id) is not JobState.RUNNING:
        assert time.monotonic() < deadline, "the job never started running"
        time.sleep(0.1)
    farm_backend.stop_job(job.id)
    state = farm_backend.get_job_state(job.id)
    assert state in {JobState.STOPPING, JobState.STOPPED}
    done = _wait(farm_backend, job.id, farm_timeout)
    assert done.state is JobState.STOPPED
    farm_backend.stop_job(job.id)  # stopping a final job does nothing
    assert farm_backend.get_job_state(job.id) is JobState.STOPPED


def test_restart_runs_again(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    _requires(farm_backend, Capability.RESTART)
    # The first run fails and leaves a marker in the job's folder; the second passes.
    script = "if [ -f {folder}/ran ]; then echo second; else touch {folder}/ran; exit 3; fi"
    job = _submit(farm_backend, commands=[["sh", "-c", script]])
    assert _wait(farm_backend, job.id, farm_timeout).state is JobState.FAILED
    farm_backend.restart_job(job.id)
    done = _wait(farm_backend, job.id, farm_timeout)
    assert done.state is JobState.COMPLETED, done.message
    if Capability.RENDER_LOG in farm_backend.capabilities:
        assert "second" in _full_log(farm_backend, job.id)


def test_list_jobs(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    job = _submit(farm_backend, commands=[["sh", "-c", "echo listed"]])
    assert job.id in {j.id for j in farm_backend.get_jobs()}
    _wait(farm_backend, job.id, farm_timeout)
    completed = farm_backend.get_jobs([JobState.COMPLETED])
    assert job.id in {j.id for j in completed}
    assert all(j.state is JobState.COMPLETED for j in completed)
    assert job.id not in {j.id for j in farm_backend.get_jobs([JobState.FAILED])}


def test_unknown_job_is_not_found(farm_backend: FarmPlugin) -> None:
    missing = "conformance-no-such-job-0000"
    with pytest.raises(JobNotFoundError):
        farm_backend.get_job(missing)
    with pytest.raises(JobNotFoundError):
        farm_backend.get_job_state(missing)
    if Capability.RENDER_LOG in farm_backend.capabilities:
        with pytest.raises(JobNotFoundError):
            farm_backend.get_render_log(missing)
    if Capability.STOP in farm_backend.capabilities:
        with pytest.raises(JobNotFoundError):
            farm_backend.stop_job(missing)


def test_bad_request_is_refused(farm_backend: FarmPlugin) -> None:
    before = {j.id for j in farm_backend.get_jobs()}
    with pytest.raises(InvalidRequestError) as info:
        submit(farm_backend, {"commands": [["true"]], "frames": "10-1"}, journal=False)
    assert info.value.field == "frames"
    # An explicit backend extra the backend does not know must be refused, not ignored.
    with pytest.raises(InvalidRequestError) as info:
        submit(
            farm_backend,
            {"commands": [["true"]], "requirements": {"extra": {"no_such_option_xyz": 1}}},
            journal=False,
        )
    assert "no_such_option_xyz" in str(info.value)
    assert {j.id for j in farm_backend.get_jobs()} == before, "a refused job was submitted"


def test_check_reports_results(farm_backend: FarmPlugin) -> None:
    results = farm_backend.check()
    assert results and all(isinstance(r, CheckResult) for r in results)
    assert all(r.ok for r in results), [r for r in results if not r.ok]
