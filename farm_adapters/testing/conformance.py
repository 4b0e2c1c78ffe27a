"""The conformance suite: what every backend must get right, checked from outside.

Each test takes the ``farm_backend`` fixture (a :class:`~farm_adapters.FarmPlugin`
instance) and ``farm_timeout`` (how long one step may wait for a job); the pytest
plug-in provides both from ``--farm-backend`` or ``--farm-target``, and a test tree can
override ``farm_backend``. Jobs run POSIX ``sh`` one-liners, so the render node needs
``/bin/sh``. Test names say what they check, grouped by area:

- lifecycle: submit, poll, log, fail, stop, restart, list, self-test;
- files: the temporary folder and copies (files and folders), on the target's storage
  when it has one, readable by the task;
- persistence: a second instance, and a fresh process, find, poll, read, stop and
  restart a job; ids are unique across instances; a job outlives the process that
  submitted it (the CLI submits and exits);
- honesty: what the backend cannot honour (requirements, retries, a time limit,
  operations outside its ``capabilities``) is refused naming the field; what it
  accepts it does;
- states: the job's state follows :func:`~farm_adapters.models.derive_job_state` at
  every poll, final states stay final, a stopped job ends STOPPED, a restarted
  completed job runs again;
- logs: offsets are bytes, stable across instances, chunks never repeat or skip;
- errors: unknown and malformed ids raise only ``FarmAdapterError`` subclasses.

Nothing here asserts how long anything takes: steps wait for states, up to
``farm_timeout`` each, and a failure says which state the job was stuck in.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from farm_adapters import (
    Capability,
    CheckResult,
    FarmAdapterError,
    FarmPlugin,
    InvalidRequestError,
    Job,
    JobNotFoundError,
    JobState,
    SubmitError,
    UnsupportedOperationError,
    derive_job_state,
    submit,
)

__all__ = [
    "current_step",
    "test_bad_request_is_refused",
    "test_check_reports_results",
    "test_errors_unknown_and_malformed_ids_stay_in_the_error_tree",
    "test_failed_task_fails_the_job",
    "test_files_folder_and_copies_reach_the_task",
    "test_honesty_retries_rerun_or_are_refused",
    "test_honesty_timeout_stops_the_task_or_is_refused",
    "test_honesty_unclaimed_capabilities_are_refused",
    "test_honesty_unmet_requirements_are_refused_or_mapped",
    "test_list_jobs",
    "test_logs_tail_across_instances_without_gaps_or_repeats",
    "test_persistence_ids_are_unique_across_instances",
    "test_persistence_job_outlives_the_submitting_process",
    "test_persistence_second_instance_and_process_drive_the_job",
    "test_render_log_offsets",
    "test_restart_runs_again",
    "test_states_restart_of_completed_job_runs_every_task_again",
    "test_states_stopped_job_ends_stopped",
    "test_stop_running_job",
    "test_submit_runs_to_completion",
    "test_unknown_job_is_not_found",
]

F = TypeVar("F", bound=Callable[..., Any])

# -- where a check stands (for the plug-in's per-test watchdog) ------------------------

_NOW: dict[str, Any] = {"step": "starting", "job": None, "state": None}


def current_step() -> str:
    """What the running check was doing, and the last state it saw of its job."""
    text = f"while {_NOW['step']}"
    if _NOW["job"]:
        text += f" (job {_NOW['job']}, last seen {_NOW['state'] or 'never'})"
    return text


def _step(what: str, job_id: str | None = None) -> None:
    _NOW.update(step=what, job=job_id, state=None)


def budget(steps: int) -> Callable[[F], F]:
    """How many ``--farm-timeout`` waits a check may use in all (for the watchdog)."""

    def mark(function: F) -> F:
        function.budget = steps  # type: ignore[attr-defined]
        return function

    return mark


# -- helpers ---------------------------------------------------------------------------


def _submit(backend: FarmPlugin, **request: Any) -> Job:
    request.setdefault("name", "conformance")
    _step(f"submitting {request['name']!r}")
    job = _call(backend, "submit", lambda: submit(backend, request, journal=False))
    assert isinstance(job, Job)
    assert job.id, "submit must return a job with an id"
    return job


def _call(backend: FarmPlugin, what: str, action: Callable[[], Any], fix: str = "") -> Any:
    """Run ``action``; a foreign exception fails the check with the fix."""
    try:
        return action()
    except FarmAdapterError:
        raise
    except Exception as exc:
        pytest.fail(
            f"{what} raised {type(exc).__name__}: {exc}. Only FarmAdapterError subclasses may "
            f"leave a backend: translate it where it happens (raise TransferError/"
            f"BackendUnavailableError/... from exc). {fix}",
            pytrace=False,
        )


def _counts(job: Job) -> dict[str, int]:
    return {str(s): n for s, n in job.task_counts.items()}


def _check_rule(job: Job) -> None:
    """The job's state must follow the shared rule from its task counts."""
    if not job.task_counts:
        return
    derived = derive_job_state(job.task_counts)
    if job.state is derived:
        return
    if job.state is JobState.STOPPING and not derived.final:
        return  # after stop_job(): STOPPING until every task has ended
    counts = {str(s): n for s, n in job.task_counts.items()}
    pytest.fail(
        f"job {job.id} reports {job.state} but its tasks {counts} make it {derived} by the "
        f"shared rule: build the answer with Job.from_task_states(task_states, ...)",
        pytrace=False,
    )


def _poll(
    backend: FarmPlugin,
    job_id: str,
    until: Callable[[Job], bool],
    what: str,
    timeout: float,
    hint: str = "",
) -> Job:
    """Poll ``get_job`` until ``until(job)``; fail with the state the job was stuck in."""
    _step(what, job_id)
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    final: JobState | None = None
    interval = 0.1
    while True:
        job: Job = _call(backend, f"get_job({job_id!r})", lambda: backend.get_job(job_id))
        _NOW["state"] = str(job.state)
        if not seen or seen[-1] != str(job.state):
            seen.append(str(job.state))
        _check_rule(job)
        if final is not None and job.state is not final:
            pytest.fail(
                f"job {job_id} was {final} (a final state) and then {job.state} without a "
                f"restart: final states stay final",
                pytrace=False,
            )
        if job.state.final:
            final = job.state
        if until(job):
            return job
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what}: job {job_id} was stuck in {job.state} after {timeout:g} s "
                f"(states seen: {' -> '.join(seen)}"
                + (f"; message: {job.message!r}" if job.message else "")
                + f"). {hint}",
                pytrace=False,
            )
        time.sleep(interval)
        interval = min(1.0, interval * 1.5)


def _wait(backend: FarmPlugin, job_id: str, timeout: float, hint: str = "") -> Job:
    return _poll(
        backend, job_id, lambda j: j.state.final, "waiting for a final state", timeout, hint
    )


def _wait_running(backend: FarmPlugin, job_id: str, timeout: float) -> Job:
    def running(job: Job) -> bool:
        if job.state.final:
            pytest.fail(
                f"job {job_id} ended {job.state} before it was seen running "
                f"({job.message!r}); its command sleeps, so it should have been running",
                pytrace=False,
            )
        return job.state is JobState.RUNNING

    return _poll(backend, job_id, running, "waiting for the job to run", timeout)


def _full_log(backend: FarmPlugin, job_id: str) -> str:
    text, offset = "", 0
    for _ in range(10_000):
        chunk = backend.get_render_log(job_id, offset)
        assert chunk.offset == offset, f"asked for offset {offset}, got {chunk.offset}"
        assert chunk.next_offset >= offset, "next_offset went backwards"
        text += chunk.text
        if chunk.next_offset == offset:
            break
        offset = chunk.next_offset
    return text


def _log_shows(backend: FarmPlugin, job_id: str, needle: str, timeout: float) -> str:
    """The full log once it contains ``needle`` (a log may lag its job a little)."""
    _step(f"waiting for {needle!r} in the render log", job_id)
    deadline = time.monotonic() + timeout
    while True:
        log = _full_log(backend, job_id)
        if needle in log or time.monotonic() > deadline:
            return log
        time.sleep(0.3)


def _requires(backend: FarmPlugin, *capabilities: Capability) -> None:
    for capability in capabilities:
        if capability not in backend.capabilities:
            pytest.skip(f"backend {backend.name!r} does not implement {capability}")


def _stop_quietly(backend: FarmPlugin, job_id: str) -> None:
    if Capability.STOP in backend.capabilities:
        with contextlib.suppress(Exception):  # cleanup; the check has already judged
            backend.stop_job(job_id)


def _refusal_names(exc: FarmAdapterError, field: str) -> bool:
    return str(getattr(exc, "field", "") or "").startswith(field) or field in str(exc)


def fresh_instance(backend: FarmPlugin) -> FarmPlugin:
    """A second instance of the backend under test, built from the same settings (and
    the same target storage and path mappings), sharing nothing else with it."""
    _step("building a second instance from the same settings")
    try:
        other = type(backend)(backend.settings, target=backend.target)
    except FarmAdapterError as exc:
        pytest.fail(f"a second instance could not be built from the same settings: {exc}")
    for attr in ("storage", "storage_root", "path_mapper"):
        if attr in vars(backend):
            setattr(other, attr, vars(backend)[attr])
    return other


def in_fresh_process(
    backend: FarmPlugin, calls: Sequence[tuple[str, list[Any]]], timeout: float
) -> list[dict[str, Any]]:
    """Run ``calls`` (method name and arguments; ``"submit"`` takes a request) on a new
    instance of the backend in a new Python process, which then exits."""
    cls = type(backend)
    module = sys.modules.get(cls.__module__)
    extras = {
        a: vars(backend)[a]
        for a in ("storage", "storage_root", "path_mapper")
        if a in vars(backend)
    }
    with tempfile.TemporaryDirectory(prefix="farm-conformance-") as folder:
        try:
            blob = pickle.dumps((backend.settings, extras))
        except Exception:  # an unpicklable storage connection: settings alone
            blob = pickle.dumps((backend.settings, {}))
        (Path(folder) / "settings.pickle").write_bytes(blob)
        (Path(folder) / "call.json").write_text(
            json.dumps(
                {
                    "module": cls.__module__,
                    "file": getattr(module, "__file__", None),
                    "qualname": cls.__qualname__,
                    "target": backend.target,
                    "calls": list(calls),
                }
            )
        )
        _step(f"running {[c[0] for c in calls]} in a fresh process")
        # Output goes to a file, not a pipe: a detached worker the backend starts may
        # keep it open; only the process's own exit is waited for.
        with open(Path(folder) / "output.txt", "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "farm_adapters.testing._fresh_process", folder],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(
                f"a fresh process running {[c[0] for c in calls]} did not exit in {timeout:g} s: "
                f"the backend must not keep its caller's process alive (run jobs in a "
                f"detached process or on the farm)",
                pytrace=False,
            )
        result = Path(folder) / "result.json"
        if not result.exists():
            pytest.fail(
                f"a fresh process could not build the backend (exit {code}): "
                f"{(Path(folder) / 'output.txt').read_text(errors='replace')[-2000:]}",
                pytrace=False,
            )
        answers: list[dict[str, Any]] = json.loads(result.read_text())
        return answers


def _found_by(backend: FarmPlugin, job_id: str, how: str) -> Job:
    """The job as ``backend`` sees it; an unknown id fails with the persistence fix."""
    _step(f"finding the job from {how}", job_id)
    try:
        return backend.get_job(job_id)
    except JobNotFoundError:
        pass
    pytest.fail(f"job {job_id} is unknown to {how}: {_PERSIST_FIX}", pytrace=False)


def _value(answer: dict[str, Any], what: str) -> Any:
    if "error" in answer:
        pytest.fail(f"in a fresh process, {what} raised {answer['error']}: {answer['message']}")
    return answer["value"]


_PERSIST_FIX = (
    "keep jobs where every instance and process finds them (a spool folder, a database, "
    "the farm itself), not in the instance's memory; the CLI builds a new instance for "
    "every command"
)


# -- lifecycle -------------------------------------------------------------------------


@budget(3)
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
        log = _log_shows(farm_backend, job.id, "conformance-frame-3", farm_timeout)
        for frame in (1, 2, 3):
            assert f"conformance-frame-{frame}" in log


@budget(3)
def test_render_log_offsets(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    if Capability.RENDER_LOG not in farm_backend.capabilities:
        with pytest.raises(UnsupportedOperationError):
            farm_backend.get_render_log("anything", 0)
        return
    job = _submit(farm_backend, commands=[["sh", "-c", "echo alpha; echo beta; echo gamma"]])
    _wait(farm_backend, job.id, farm_timeout)
    full = _log_shows(farm_backend, job.id, "gamma", farm_timeout)
    assert "alpha" in full and "gamma" in full
    encoded = full.encode()
    middle = encoded.index(b"beta")
    tail = farm_backend.get_render_log(job.id, middle)
    assert tail.offset == middle
    assert tail.text.encode() == encoded[middle : tail.next_offset], (
        "offsets are byte offsets into one log: reading from the middle must give the same "
        "bytes as the full read"
    )
    end = farm_backend.get_render_log(job.id, len(encoded))
    assert end.text == ""
    assert end.next_offset == len(encoded)
    assert end.complete


@budget(2)
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
    # Final states stay final, also for a second instance.
    other = fresh_instance(farm_backend)
    try:
        _found_by(other, job.id, "a second instance with the same settings")
        for backend in (farm_backend, other, farm_backend):
            assert backend.get_job_state(job.id) is JobState.FAILED, "final states stay final"
    finally:
        other.close()


@budget(3)
def test_stop_running_job(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    if Capability.STOP not in farm_backend.capabilities:
        with pytest.raises(UnsupportedOperationError):
            farm_backend.stop_job("anything")
        return
    job = _submit(
        farm_backend, commands=[["sh", "-c", f"echo started; sleep {_long(farm_timeout)}"]]
    )
    try:
        _wait_running(farm_backend, job.id, farm_timeout)
        if Capability.RESTART in farm_backend.capabilities:
            _step("restarting a running job", job.id)
            with pytest.raises(InvalidRequestError):
                farm_backend.restart_job(job.id)  # only final jobs restart
        _step("stopping the job", job.id)
        farm_backend.stop_job(job.id)
        state = farm_backend.get_job_state(job.id)
        assert state in {JobState.STOPPING, JobState.STOPPED}, (
            f"right after stop_job() the job is {state}: report STOPPING until it has ended"
        )
        done = _wait(farm_backend, job.id, farm_timeout)
        assert done.state is JobState.STOPPED
        farm_backend.stop_job(job.id)  # stopping a final job does nothing
        assert farm_backend.get_job_state(job.id) is JobState.STOPPED
    finally:
        _stop_quietly(farm_backend, job.id)


@budget(4)
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
        assert "second" in _log_shows(farm_backend, job.id, "second", farm_timeout)


@budget(2)
def test_list_jobs(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    job = _submit(farm_backend, commands=[["sh", "-c", "echo listed"]])
    assert job.id in {j.id for j in farm_backend.get_jobs()}
    _wait(farm_backend, job.id, farm_timeout)
    completed = farm_backend.get_jobs([JobState.COMPLETED])
    assert job.id in {j.id for j in completed}
    assert all(j.state is JobState.COMPLETED for j in completed)
    assert job.id not in {j.id for j in farm_backend.get_jobs([JobState.FAILED])}


@budget(1)
def test_unknown_job_is_not_found(farm_backend: FarmPlugin) -> None:
    missing = "conformance-no-such-job-0000"
    _step(f"looking up the unknown id {missing!r}")
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


@budget(1)
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
    assert "no_such_option_xyz" in str(info.value), (
        f"refused with {info.value!r}: name the unknown key (requirements.extra.<key>)"
    )
    assert {j.id for j in farm_backend.get_jobs()} == before, "a refused job was submitted"


@budget(1)
def test_check_reports_results(farm_backend: FarmPlugin) -> None:
    results = farm_backend.check()
    assert results and all(isinstance(r, CheckResult) for r in results)
    assert all(r.ok for r in results), [r for r in results if not r.ok]


def _long(farm_timeout: float) -> int:
    """A sleep that outlasts every wait of a check (the job is stopped at the end)."""
    return int(farm_timeout * 4) + 60


# -- files -----------------------------------------------------------------------------


@budget(2)
def test_files_folder_and_copies_reach_the_task(
    farm_backend: FarmPlugin, farm_timeout: float, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    scene = tmp_path / "scene.txt"
    scene.write_text(f"scene-{token}\n")
    assets = tmp_path / "assets"
    (assets / "sub").mkdir(parents=True)
    (assets / "a.txt").write_text("a\n")
    (assets / "sub" / "b.txt").write_text(f"b-{token}\n")

    context = str(uuid.uuid4())
    _step("creating a temporary folder")
    folder = _call(
        farm_backend,
        "create_temporary_folder()",
        lambda: farm_backend.create_temporary_folder(context),
    )
    assert isinstance(folder, str) and context in folder, (
        f"create_temporary_folder({context!r}) returned {folder!r}: the path must include "
        f"the render context"
    )
    again = farm_backend.create_temporary_folder(context)
    assert again == folder, "create_temporary_folder() must return the same folder for one context"
    storage = farm_backend.storage
    root = farm_backend.storage_root
    if storage is not None:
        assert root and folder.startswith(root.rstrip("/") + "/") and storage.exists(folder), (
            f"the target configures a storage (root {root!r}) but the temporary folder "
            f"{folder!r} is not on it: create it with "
            f"self.make_temporary_folder(render_context, default_root), which uses the "
            f"target's storage when there is one"
        )

    _step("copying a file and a folder")
    remote = _call(
        farm_backend,
        "copy_render_files() with a file and a folder",
        lambda: farm_backend.copy_render_files([str(scene), str(assets)], folder),
        "Folders are copied whole: self.copy_files(paths, folder, progress) copies files "
        "and folders (through the target's storage when it has one) and raises TransferError.",
    )
    assert [p.rstrip("/").rsplit("/", 1)[-1] for p in remote] == ["scene.txt", "assets"], (
        f"copy_render_files() must return one remote path per input, in order; got {remote!r}"
    )
    if storage is not None:
        missing = [
            p
            for p in (remote[0], f"{remote[1]}/a.txt", f"{remote[1]}/sub/b.txt")
            if not storage.exists(p)
        ]
        assert not missing, (
            f"{missing} are not on the target's storage: copy with "
            f"self.copy_files(paths, folder, progress), which uploads through it"
        )
    with pytest.raises(FarmAdapterError):
        _call(
            farm_backend,
            "copy_render_files() of a missing file",
            lambda: farm_backend.copy_render_files([str(tmp_path / "no-such-file")], folder),
        )

    script = (
        f'test "$(cat {{folder}}/scene.txt)" = scene-{token} '
        f'&& test "$(cat {{folder}}/assets/sub/b.txt)" = b-{token} && echo files-ok'
    )
    job = _submit(farm_backend, commands=[["sh", "-c", script]], files=[str(scene), str(assets)])
    done = _wait(farm_backend, job.id, farm_timeout)
    assert done.state is JobState.COMPLETED, (
        f"the task could not read the copied files at {{folder}}/scene.txt and "
        f"{{folder}}/assets/sub/b.txt (job {done.state}: {done.message!r}): copy them into "
        f"the folder the task sees (self.copy_files does, through the target's storage)"
    )


# -- persistence -----------------------------------------------------------------------


@budget(4)
def test_persistence_ids_are_unique_across_instances(
    farm_backend: FarmPlugin, farm_timeout: float
) -> None:
    first, second = fresh_instance(farm_backend), fresh_instance(farm_backend)
    ids = []
    try:
        for backend in (first, second, farm_backend):
            ids.append(_submit(backend, commands=[["sh", "-c", "echo unique"]]).id)
        assert len(set(ids)) == len(ids), (
            f"separate instances handed out the same job id ({ids}): ids must be unique "
            f"across instances and processes; take the farm's id, a UUID, or a counter kept "
            f"with the jobs under a lock"
        )
        for job_id in ids:
            _wait(farm_backend, job_id, farm_timeout)
    finally:
        first.close()
        second.close()


@budget(7)
def test_persistence_second_instance_and_process_drive_the_job(
    farm_backend: FarmPlugin, farm_timeout: float
) -> None:
    caps = farm_backend.capabilities
    pause = _long(farm_timeout) if Capability.STOP in caps else 1
    script = (
        "if [ -f {folder}/first ]; then echo second-run; exit 0; fi; "
        f"touch {{folder}}/first; echo first-run; sleep {pause}"
    )
    job = _submit(farm_backend, commands=[["sh", "-c", script]])
    other = fresh_instance(farm_backend)
    try:
        _found_by(other, job.id, "a second instance with the same settings")
        if Capability.STOP not in caps:
            _wait(other, job.id, farm_timeout)
            return
        _wait_running(other, job.id, farm_timeout)
        if Capability.RENDER_LOG in caps:
            log = _log_shows(other, job.id, "first-run", farm_timeout)
            assert "first-run" in log, "a second instance cannot read the job's render log"

        calls: list[tuple[str, list[Any]]] = [("get_job", [job.id])]
        if Capability.RENDER_LOG in caps:
            calls.append(("get_render_log", [job.id, 0]))
        calls.append(("stop_job", [job.id]))
        answers = in_fresh_process(farm_backend, calls, farm_timeout)
        seen = answers[0]
        if seen.get("error") == "JobNotFoundError":
            pytest.fail(
                f"a fresh process does not find job {job.id}: {_PERSIST_FIX}", pytrace=False
            )
        assert _value(seen, "get_job")["id"] == job.id
        if Capability.RENDER_LOG in caps:
            assert "first-run" in _value(answers[1], "get_render_log")["text"], (
                "a fresh process reads a different render log"
            )
        _value(answers[-1], "stop_job")
        done = _wait(farm_backend, job.id, farm_timeout, "a fresh process stopped it")
        assert done.state is JobState.STOPPED, (
            f"a job stopped from a fresh process ended {done.state}, not stopped: {_PERSIST_FIX}"
        )
        if Capability.RESTART in caps:
            _step("restarting the job from the second instance", job.id)
            other.restart_job(job.id)
            done = _wait(farm_backend, job.id, farm_timeout)
            assert done.state is JobState.COMPLETED, done.message
            if Capability.RENDER_LOG in caps:
                assert "second-run" in _log_shows(farm_backend, job.id, "second-run", farm_timeout)
    finally:
        _stop_quietly(farm_backend, job.id)
        other.close()


@budget(3)
def test_persistence_job_outlives_the_submitting_process(
    farm_backend: FarmPlugin, farm_timeout: float
) -> None:
    request = {"name": "conformance", "commands": [["sh", "-c", "sleep 1; echo outlived"]]}
    (answer,) = in_fresh_process(farm_backend, [("submit", [request])], farm_timeout)
    job_id = _value(answer, "submit")
    _found_by(farm_backend, job_id, "this process (it was submitted by a process that has exited)")
    done = _wait(
        farm_backend,
        job_id,
        farm_timeout,
        "The process that submitted it has exited: run jobs in a detached worker process "
        "or on the farm, never in threads of the submitting process.",
    )
    assert done.state is JobState.COMPLETED, (
        f"job {job_id} ended {done.state} after the process that submitted it exited: jobs "
        f"must run outside it (a detached worker, the farm)"
    )


# -- honesty ---------------------------------------------------------------------------

_UNMET = {
    "gpus": 4096,
    "cpus": 100000,
    "memory": "1024TiB",
    "labels": ["conformance-no-such-label"],
    "pool": "conformance-no-such-pool",
}


@budget(1)
def test_honesty_unclaimed_capabilities_are_refused(farm_backend: FarmPlugin) -> None:
    calls: dict[Capability, Callable[[], Any]] = {
        Capability.RENDER_LOG: lambda: farm_backend.get_render_log("conformance-x", 0),
        Capability.RENDER_LOG_FILENAME: lambda: farm_backend.get_render_log_filename(
            "conformance-x"
        ),
        Capability.STOP: lambda: farm_backend.stop_job("conformance-x"),
        Capability.RESTART: lambda: farm_backend.restart_job("conformance-x"),
        Capability.DRY_RUN: lambda: submit(
            farm_backend, {"commands": [["true"]]}, dry_run=True, journal=False
        ),
    }
    for capability, call in calls.items():
        if capability in farm_backend.capabilities:
            continue
        with pytest.raises(UnsupportedOperationError):
            call()


@budget(6)
def test_honesty_unmet_requirements_are_refused_or_mapped(
    farm_backend: FarmPlugin, farm_timeout: float
) -> None:
    """A requirement the backend accepts must change what reaches the farm (dry run), or,
    without a dry run, the job must not run while the requirement is unmet."""
    for field, value in _UNMET.items():
        context = str(uuid.uuid4())
        request: dict[str, Any] = {"name": "conformance-unmet", "render_context": context}
        request["commands"] = [["sh", "-c", "echo unmet-requirement-ran"]]
        asked = {**request, "requirements": {field: value}}
        _step(f"submitting requirements.{field}={value!r}")
        if Capability.DRY_RUN in farm_backend.capabilities:
            try:
                plain = submit(farm_backend, request, dry_run=True, journal=False)
                with_field = submit(farm_backend, asked, dry_run=True, journal=False)
            except (InvalidRequestError, UnsupportedOperationError) as exc:
                assert _refusal_names(exc, f"requirements.{field}"), (
                    f"requirements.{field} was refused with {exc!r}, which does not name it"
                )
                continue
            assert with_field.payloads != plain.payloads, (  # type: ignore[union-attr]
                f"requirements.{field}={value!r} was accepted but changes nothing the backend "
                f"sends: map it to the farm's setting, or refuse it with "
                f"InvalidRequestError(field='requirements.{field}')"
            )
            continue
        try:
            job = _submit(farm_backend, **asked)
        except (InvalidRequestError, UnsupportedOperationError) as exc:
            assert _refusal_names(exc, f"requirements.{field}"), (
                f"requirements.{field} was refused with {exc!r}, which does not name it"
            )
            continue
        except SubmitError as exc:  # mapped, and the farm itself refused it
            assert not exc.transient, f"requirements.{field}: {exc!r} says to try again"
            continue
        try:
            # A job submitted after it and without the requirement runs to its end; by
            # then the unmet one must still not have run.
            later = _submit(farm_backend, commands=[["sh", "-c", "echo later"]])
            _wait(
                farm_backend,
                later.id,
                farm_timeout,
                f"(A job submitted after one asking for requirements.{field}={value!r}, which "
                f"this backend accepted: is it honoured, or should it be refused?)",
            )
            state = farm_backend.get_job_state(job.id)
            assert state not in {JobState.RUNNING, JobState.COMPLETED}, (
                f"requirements.{field}={value!r} cannot be met here, yet the job was accepted "
                f"and {state}: refuse what you do not map with "
                f"InvalidRequestError(field='requirements.{field}'), or map it to the farm's "
                f"own setting"
            )
        finally:
            _stop_quietly(farm_backend, job.id)


@budget(2)
def test_honesty_retries_rerun_or_are_refused(
    farm_backend: FarmPlugin, farm_timeout: float
) -> None:
    script = (
        "if [ -f {folder}/attempt ]; then echo retried; exit 0; fi; "
        "touch {folder}/attempt; echo first-attempt; exit 3"
    )
    try:
        job = _submit(farm_backend, commands=[["sh", "-c", script]], max_retries=1)
    except (InvalidRequestError, UnsupportedOperationError) as exc:
        assert _refusal_names(exc, "max_retries"), f"refused with {exc!r}, not naming max_retries"
        return
    fix = (
        "rerun a failed task up to max_retries times, or refuse max_retries > 0 with "
        "InvalidRequestError(field='max_retries')"
    )
    done = _wait(farm_backend, job.id, farm_timeout, fix)
    assert done.state is JobState.COMPLETED, (
        f"max_retries=1 was accepted but the failed task did not run again (job "
        f"{done.state}): {fix}"
    )


@budget(4)
def test_honesty_timeout_stops_the_task_or_is_refused(
    farm_backend: FarmPlugin, farm_timeout: float
) -> None:
    script = f"echo started; sleep {_long(farm_timeout)}; echo not-stopped"
    try:
        job = _submit(farm_backend, commands=[["sh", "-c", script]], requirements={"timeout": 2})
    except (InvalidRequestError, UnsupportedOperationError) as exc:
        assert _refusal_names(exc, "requirements.timeout"), (
            f"refused with {exc!r}, not naming requirements.timeout"
        )
        return
    try:
        done = _wait(
            farm_backend,
            job.id,
            farm_timeout * 3,  # a farm may round the limit up (Slurm counts minutes)
            "requirements.timeout=2 was accepted, but the task was not ended: stop a task "
            "that outlives its timeout, or refuse the field with "
            "InvalidRequestError(field='requirements.timeout')",
        )
        assert done.state in {JobState.FAILED, JobState.STOPPED}, (
            f"a task that outlived requirements.timeout ended {done.state}"
        )
    finally:
        _stop_quietly(farm_backend, job.id)


# -- states ----------------------------------------------------------------------------


@budget(4)
def test_states_stopped_job_ends_stopped(farm_backend: FarmPlugin, farm_timeout: float) -> None:
    _requires(farm_backend, Capability.STOP)
    script = f"test {{frame}} -eq 1 || sleep {_long(farm_timeout)}; echo frame-{{frame}}"
    job = _submit(farm_backend, commands=[["sh", "-c", script]], frames="1-3")
    try:
        _wait_running(farm_backend, job.id, farm_timeout)
        # Frame 1 ends at once: let it complete, so that the stop meets a completed task
        # too (a farm that starts the long frames first may not get to it; then none).
        _step("waiting for frame 1 to complete while another frame runs", job.id)
        deadline = time.monotonic() + farm_timeout
        while True:
            now = farm_backend.get_job(job.id)
            _check_rule(now)
            kept = now.task_counts.get(JobState.COMPLETED, 0)
            if kept or now.state.final or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert not now.state.final, f"the job ended {now.state} before it was stopped"
        _step("stopping the job", job.id)
        farm_backend.stop_job(job.id)
        done = _wait(farm_backend, job.id, farm_timeout)
        assert done.state is JobState.STOPPED, (
            f"a stopped job ended {done.state} ({_counts(done)}): "
            f"tasks ended by stop_job() are STOPPED, not FAILED or COMPLETED; record the stop "
            f"before ending their processes"
        )
        assert done.task_counts.get(JobState.COMPLETED, 0) >= kept, "a completed task was lost"
        assert JobState.FAILED not in done.task_counts, "a stopped task was reported FAILED"
    finally:
        _stop_quietly(farm_backend, job.id)


@budget(5)
def test_states_restart_of_completed_job_runs_every_task_again(
    farm_backend: FarmPlugin, farm_timeout: float
) -> None:
    """Documented (FarmPlugin.restart_job): a restart is a new attempt of a final job;
    of a COMPLETED job every task runs again, of a FAILED or STOPPED one the tasks that
    did not complete. The earlier attempt's log is kept."""
    _requires(farm_backend, Capability.RESTART)
    script = (
        "echo run >> {folder}/runs-{frame}; "
        "echo frame-{frame}-run-$(wc -l < {folder}/runs-{frame} | tr -d ' ')"
    )
    job = _submit(farm_backend, commands=[["sh", "-c", script]], frames="1-2")
    assert _wait(farm_backend, job.id, farm_timeout).state is JobState.COMPLETED
    if Capability.RENDER_LOG in farm_backend.capabilities:
        _log_shows(farm_backend, job.id, "frame-2-run-1", farm_timeout)
    _step("restarting a completed job", job.id)
    farm_backend.restart_job(job.id)
    done = _wait(farm_backend, job.id, farm_timeout)
    assert done.state is JobState.COMPLETED, done.message
    assert done.task_counts == {JobState.COMPLETED: 2}
    if Capability.RENDER_LOG in farm_backend.capabilities:
        log = _log_shows(farm_backend, job.id, "frame-2-run-2", farm_timeout)
        assert "frame-1-run-2" in log and "frame-2-run-2" in log, (
            "restart_job() of a COMPLETED job must run every task again (a new attempt); "
            f"the log after the restart is:\n{log[-2000:]}"
        )


# -- logs ------------------------------------------------------------------------------


@budget(4)
def test_logs_tail_across_instances_without_gaps_or_repeats(
    farm_backend: FarmPlugin, farm_timeout: float
) -> None:
    _requires(farm_backend, Capability.RENDER_LOG)
    script = 'i=1; while [ $i -le 40 ]; do echo "log-line-$i"; i=$((i+1)); sleep 0.05; done'
    job = _submit(farm_backend, commands=[["sh", "-c", script]])
    other = fresh_instance(farm_backend)
    try:
        _found_by(other, job.id, "a second instance with the same settings")
        _step("tailing the log from two instances in turn", job.id)
        readers = (farm_backend, other)
        text, offset, turn = "", 0, 0
        deadline = time.monotonic() + farm_timeout * 2
        while True:
            reader = readers[turn % 2]
            turn += 1
            chunk = reader.get_render_log(job.id, offset)
            assert chunk.offset == offset, (
                f"asked for offset {offset}, got a chunk at {chunk.offset}"
            )
            assert chunk.next_offset == offset + len(chunk.text.encode()), (
                f"a chunk from {offset} holds {len(chunk.text.encode())} bytes but says the next "
                f"one starts at {chunk.next_offset}: offsets count the bytes of one log, so a "
                f"chunk never repeats or skips bytes"
            )
            text += chunk.text
            offset = chunk.next_offset
            if chunk.complete or "log-line-40" in text:
                break
            assert time.monotonic() < deadline, f"the log stopped growing at {offset} bytes"
            time.sleep(0.1)
        _wait(farm_backend, job.id, farm_timeout)
        full = _full_log(other, job.id)
        assert full.startswith(text), (
            "the log read by tailing from two instances differs from the log read in one go: "
            "offsets must mean the same bytes for every instance"
        )
        lines = [line for line in full.splitlines() if line.startswith("log-line-")]
        assert lines == [f"log-line-{i}" for i in range(1, 41)], "every line appears once, in order"
    finally:
        other.close()


# -- errors ----------------------------------------------------------------------------

_BAD_IDS = [
    "",
    " ",
    "../../../../etc/passwd",
    "a/b?c=d#e",
    "x" * 2000,
    "nul\x00byte",
    "\u00fcn\u00efcode-\u2603",
    "%2e%2e%2f",
    "1; DROP TABLE jobs",
    "-1",
]


@budget(1)
def test_errors_unknown_and_malformed_ids_stay_in_the_error_tree(farm_backend: FarmPlugin) -> None:
    caps = farm_backend.capabilities
    operations: dict[str, Callable[[str], Any]] = {
        "get_job": farm_backend.get_job,
        "get_job_state": farm_backend.get_job_state,
    }
    if Capability.RENDER_LOG in caps:
        operations["get_render_log"] = farm_backend.get_render_log
    if Capability.RENDER_LOG_FILENAME in caps:
        operations["get_render_log_filename"] = farm_backend.get_render_log_filename
    if Capability.STOP in caps:
        operations["stop_job"] = farm_backend.stop_job
    if Capability.RESTART in caps:
        operations["restart_job"] = farm_backend.restart_job
    for bad in _BAD_IDS:
        for name, operation in operations.items():
            _step(f"calling {name}({bad[:40]!r})")
            try:
                operation(bad)
            except (JobNotFoundError, InvalidRequestError):
                continue
            except FarmAdapterError as exc:
                pytest.fail(
                    f"{name}({bad[:40]!r}) raised {type(exc).__name__}: {exc}; an id that "
                    f"names no job is JobNotFoundError (or InvalidRequestError for one that "
                    f"cannot be an id)",
                    pytrace=False,
                )
            except Exception as exc:
                pytest.fail(
                    f"{name}({bad[:40]!r}) raised {type(exc).__name__}: {exc}. Only "
                    f"FarmAdapterError subclasses may leave a backend: raise "
                    f"JobNotFoundError for an unknown id and InvalidRequestError for one "
                    f"that cannot be an id, chained with `from exc`",
                    pytrace=False,
                )
            pytest.fail(
                f"{name}({bad[:40]!r}) returned instead of raising JobNotFoundError",
                pytrace=False,
            )
    if Capability.RENDER_LOG in caps:
        with pytest.raises(FarmAdapterError):
            farm_backend.get_render_log("conformance-no-such-job-0000", -1)
