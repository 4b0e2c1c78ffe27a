"""The local backend: real processes, detached supervisors, SQLite state."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import (
    InvalidRequestError,
    Job,
    JobState,
    get_plugin_manager,
    submit,
    wait,
)
from farm_adapters.logfile import complete_utf8 as _complete_utf8
from farm_adapters.plugins.local import machine

TIMEOUT = 60


def run(backend: Any, **request: Any) -> Job:
    job = submit(backend, request, journal=False)
    assert isinstance(job, Job)
    return job


def db_row(backend: Any, sql: str, *args: Any) -> Any:
    with sqlite3.connect(backend.db_path) as conn:
        return conn.execute(sql, args).fetchone()


def wait_for_state(backend: Any, job_id: str, state: JobState, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while backend.get_job_state(job_id) is not state:
        assert time.monotonic() < deadline, f"job never reached {state}"
        time.sleep(0.05)


def running_pgids(backend: Any, job_id: str, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(backend.db_path) as conn:
            pids = [
                p
                for (p,) in conn.execute(
                    "SELECT pid FROM tasks WHERE job_id = ? AND state = 'running'", (job_id,)
                )
            ]
        if len(pids) >= count:
            return pids
        assert time.monotonic() < deadline, "tasks never started"
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies (exited, not yet reaped) are not alive.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def test_six_frames_complete_with_every_line_in_the_job_log(local_backend: Any) -> None:
    job = run(local_backend, commands=[["sh", "-c", "echo rendering frame {frame}"]], frames="1-6")
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.COMPLETED
    assert done.task_counts == {JobState.COMPLETED: 6}
    log = local_backend.get_render_log(job.id).text
    for frame in range(1, 7):
        assert f"rendering frame {frame}\n" in log
    path = local_backend.get_render_log_filename(job.id)
    assert path is not None and Path(path).read_text() == log
    # one file per task too
    task_log = Path(path).parent / "task-00003.log"
    assert task_log.read_text() == "rendering frame 4\n"


def test_one_failing_frame_fails_the_job_and_the_log_shows_the_code(local_backend: Any) -> None:
    job = run(
        local_backend,
        commands=[["sh", "-c", "echo frame {frame}; [ {frame} -ne 4 ] || exit 3"]],
        frames="1-6",
    )
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.FAILED
    assert done.task_counts == {JobState.COMPLETED: 5, JobState.FAILED: 1}
    log = local_backend.get_render_log(job.id).text
    assert "task 3 (frame 4) failed: exited with code 3" in log
    assert "frame 6\n" in log


def test_job_outlives_the_submitting_process(tmp_path: Path, local_backend: Any) -> None:
    script = textwrap.dedent(f"""
        import farm_adapters as fa
        b = fa.get_plugin_manager().create_backend(
            "local", {{"root": {str(local_backend.root)!r}, "slots": 2}})
        job = fa.submit(b, {{"commands": [["sh", "-c", "sleep 1; echo done {{frame}}"]],
                            "frames": "1-2"}}, journal=False)
        print(job.id)
    """)
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    submitter_seconds = time.monotonic() - started
    job_id = out.stdout.strip()
    # The submitter is gone; a new reader finds the job still going.
    fresh = get_plugin_manager().create_backend("local", {"root": str(local_backend.root)})
    state = fresh.get_job_state(job_id)
    assert state in {JobState.QUEUED, JobState.RUNNING}, (state, submitter_seconds)
    done = wait(fresh, job_id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.COMPLETED
    assert "done 2" in fresh.get_render_log(job_id).text


def test_killed_supervisor_is_reported_failed_within_one_query(local_backend: Any) -> None:
    job = run(local_backend, commands=[["sh", "-c", "sleep 60"]], frames="1-3")
    (pgid, *_) = running_pgids(local_backend, job.id, 1)
    (pid,) = db_row(local_backend, "SELECT supervisor_pid FROM jobs WHERE id = ?", job.id)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while machine.process_start(pid) is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    after = local_backend.get_job(job.id)
    assert after.state is JobState.FAILED
    assert "supervisor" in after.message and str(pid) in after.message
    # its task processes do not linger as orphans
    deadline = time.monotonic() + 10
    while group_alive(pgid):
        assert time.monotonic() < deadline, "the task's process group outlived the failure"
        time.sleep(0.05)


def test_stop_leaves_no_process_of_the_job(local_backend: Any) -> None:
    # Each task has a child of its own in its process group.
    job = run(local_backend, commands=[["sh", "-c", "sleep 100 & sleep 100; wait"]], frames="1-2")
    pgids = running_pgids(local_backend, job.id, 2)
    assert all(group_alive(p) for p in pgids)
    local_backend.stop_job(job.id)
    assert local_backend.get_job_state(job.id) in {JobState.STOPPING, JobState.STOPPED}
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.STOPPED
    assert done.task_counts == {JobState.STOPPED: 2}
    assert not any(group_alive(p) for p in pgids)


def test_stop_kills_what_ignores_sigterm_after_the_grace_period(tmp_path: Path) -> None:
    backend = get_plugin_manager().create_backend(
        "local", {"root": str(tmp_path / "l"), "slots": 1, "grace_period": 0.5}
    )
    job = run(backend, commands=[["sh", "-c", "trap '' TERM; echo ready; sleep 100; sleep 100"]])
    (pgid,) = running_pgids(backend, job.id, 1)
    deadline = time.monotonic() + 30
    while "ready" not in backend.get_render_log(job.id).text:  # the trap is installed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    backend.stop_job(job.id)
    done = wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.STOPPED
    assert not group_alive(pgid)
    assert "SIGKILL" in backend.get_render_log(job.id).text


def test_stop_of_queued_tasks(tmp_path: Path) -> None:
    backend = get_plugin_manager().create_backend(
        "local", {"root": str(tmp_path / "l"), "slots": 1, "grace_period": 1}
    )
    job = run(backend, commands=[["sleep", "100"]], frames="1-5")
    running_pgids(backend, job.id, 1)
    backend.stop_job(job.id)
    done = wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.task_counts == {JobState.STOPPED: 5}


def test_two_processes_polling_never_see_errors_or_torn_states(local_backend: Any) -> None:
    tasks = 300
    job = run(local_backend, commands=[["sh", "-c", "echo {frame}"]], frames=f"1-{tasks}")
    poller = textwrap.dedent(f"""
        import json, sys, time
        import farm_adapters as fa
        b = fa.get_plugin_manager().create_backend("local", {{"root": {str(local_backend.root)!r}}})
        polls, last_done, problems = 0, -1, []
        while True:
            try:
                j = b.get_job({job.id!r})
                chunk = b.get_render_log({job.id!r}, 0)
            except Exception as exc:
                problems.append(repr(exc)); break
            polls += 1
            if j.total_tasks != {tasks}:
                problems.append(f"total {{j.total_tasks}}")
            if j.finished_tasks < last_done:
                problems.append(f"went back from {{last_done}} to {{j.finished_tasks}}")
            last_done = j.finished_tasks
            if j.state.final:
                break
        print(json.dumps({{"polls": polls, "problems": problems, "state": j.state.value}}))
    """)
    procs = [
        subprocess.Popen([sys.executable, "-c", poller], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    for result in results:
        assert result["problems"] == []
        assert result["state"] == "completed"
        assert result["polls"] >= 2


def test_slots_are_shared_by_every_job_on_the_machine(tmp_path: Path) -> None:
    backend = get_plugin_manager().create_backend(
        "local", {"root": str(tmp_path / "l"), "slots": 2}
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    script = (
        f"date +%s.%N > {marks}/{{context}}-{{frame}}.start; sleep 0.4; "
        f"date +%s.%N > {marks}/{{context}}-{{frame}}.end"
    )
    jobs = [run(backend, commands=[["sh", "-c", script]], frames="1-3") for _ in range(2)]
    for job in jobs:
        assert wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.COMPLETED
    events = []
    for start in marks.glob("*.start"):
        events.append((float(start.read_text()), 1))
        events.append((float(start.with_suffix(".end").read_text()), -1))
    assert len(events) == 12
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    assert peak <= 2


def test_timeout_fails_the_task(tmp_path: Path) -> None:
    backend = get_plugin_manager().create_backend(
        "local", {"root": str(tmp_path / "l"), "grace_period": 1}
    )
    job = run(backend, commands=[["sleep", "60"]], requirements={"timeout": 0.5})
    done = wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.FAILED
    assert "timed out after 0.5 s" in backend.get_render_log(job.id).text


def test_max_retries_reruns_failed_tasks(local_backend: Any, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; "
        f"echo attempt $n; [ $n -ge 3 ]"
    )
    job = run(local_backend, commands=[["sh", "-c", script]], max_retries=2)
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.COMPLETED
    log = local_backend.get_render_log(job.id).text
    assert "retrying (1 of 2)" in log and "retrying (2 of 2)" in log and "attempt 3" in log
    # without retries the same script fails
    counter.unlink()
    job = run(local_backend, commands=[["sh", "-c", script]])
    assert wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.FAILED


def test_restart_is_a_new_attempt_that_keeps_the_old_log(
    local_backend: Any, tmp_path: Path
) -> None:
    flag = tmp_path / "flag"
    script = f"echo frame {{frame}}; [ {{frame}} -ne 2 ] || [ -f {flag} ]"
    job = run(local_backend, commands=[["sh", "-c", script]], frames="1-3")
    assert wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.FAILED
    with pytest.raises(InvalidRequestError):
        running = run(local_backend, commands=[["sleep", "30"]])
        try:
            local_backend.restart_job(running.id)
        finally:
            local_backend.stop_job(running.id)
    flag.write_text("")
    local_backend.restart_job(job.id)
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.COMPLETED
    log = local_backend.get_render_log(job.id).text
    assert "attempt 1:" in log and "attempt 2: 1 task(s) queued" in log
    assert log.count("frame 1\n") == 1  # completed tasks are not re-run
    assert log.count("frame 2\n") == 2


def test_commands_of_a_task_run_in_order_and_stop_at_a_failure(local_backend: Any) -> None:
    job = run(local_backend, commands=[["echo", "one"], ["sh", "-c", "exit 5"], ["echo", "never"]])
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.FAILED
    log = local_backend.get_render_log(job.id).text
    assert "one\n" in log and "never\n" not in log
    assert "command 2: exited with code 5" in log


def test_missing_executable_fails_with_a_reason(local_backend: Any) -> None:
    job = run(local_backend, commands=[["no-such-renderer-xyz", "--go"]])
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.FAILED
    assert "cannot start 'no-such-renderer-xyz'" in local_backend.get_render_log(job.id).text


def test_environment_and_cwd_reach_the_task(local_backend: Any, tmp_path: Path) -> None:
    job = run(
        local_backend,
        commands=[
            {
                "argv": ["sh", "-c", "echo $SCENE $TASKVAR $FARM_ADAPTERS_FRAMES; pwd"],
                "cwd": str(tmp_path),
                "env": {"TASKVAR": "t{frame}"},
            }
        ],
        environment={"SCENE": "cornell"},
        frames="7",
    )
    wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    log = local_backend.get_render_log(job.id).text
    assert "cornell t7 7\n" in log and f"{tmp_path}\n" in log


@pytest.mark.parametrize(
    ("requirements", "field"),
    [
        ({"cpus": 10_000}, "requirements.cpus"),
        ({"memory": "1PiB"}, "requirements.memory"),
        ({"labels": ["a100"]}, "requirements.labels"),
        ({"pool": "render"}, "requirements.pool"),
        ({"extra": {"queue": "x"}}, "requirements.extra.queue"),
    ],
)
def test_what_the_machine_lacks_is_refused(
    local_backend: Any, requirements: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        run(local_backend, commands=[["true"]], requirements=requirements)
    assert info.value.field == field
    assert local_backend.get_jobs() == []


def test_gpus_beyond_the_machine_are_refused(local_backend: Any) -> None:
    wanted = len(machine.gpu_ids()) + 1
    with pytest.raises(InvalidRequestError, match=f"asks for {wanted} GPU"):
        run(local_backend, commands=[["true"]], requirements={"gpus": wanted})


def test_gpu_ids_are_handed_out_through_cuda_visible_devices(
    local_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine, "gpu_ids", lambda: ("0", "1"))
    # The supervisor is another process: give it a fake nvidia-smi on PATH.
    fake = local_backend.root.parent / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Fake'\necho 'GPU 1: Fake'\n")
    (fake / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    job = run(
        local_backend,
        commands=[["sh", "-c", "echo gpus=$CUDA_VISIBLE_DEVICES"]],
        frames="1-2",
        requirements={"gpus": 1},
    )
    assert (
        wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.COMPLETED
    )
    log = local_backend.get_render_log(job.id).text
    lines = [line for line in log.splitlines() if line.startswith("gpus=")]
    assert len(lines) == 2 and set(lines) <= {"gpus=0", "gpus=1"}


def test_list_jobs_newest_first_with_filter(local_backend: Any) -> None:
    first = run(local_backend, commands=[["true"]])
    second = run(local_backend, commands=[["false"]])
    for job in (first, second):
        wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert [j.id for j in local_backend.get_jobs()] == [second.id, first.id]
    assert [j.id for j in local_backend.get_jobs([JobState.FAILED])] == [second.id]


def test_render_log_never_splits_a_character() -> None:
    text = "é€😀".encode()
    for cut in range(len(text) + 1):
        kept = _complete_utf8(text[:cut])
        kept.decode("utf-8")  # never raises
        assert text.startswith(kept) and cut - len(kept) < 4


def test_check_reports_state_folders_and_slots(local_backend: Any) -> None:
    results = {r.name: r for r in local_backend.check()}
    assert all(r.ok for r in results.values())
    assert "2 slot(s)" in results["slots"].detail


def test_check_reports_an_unwritable_root(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        blocker = tmp_path / "file"
        blocker.write_text("")
        root = blocker / "sub"  # a path under a regular file can never be created
    else:
        root = tmp_path / "ro"
        root.mkdir(mode=0o500)
    backend = get_plugin_manager().create_backend("local", {"root": str(root)})
    results = {r.name: r for r in backend.check()}
    assert not results["state database"].ok and "writable" in results["state database"].detail


def test_negative_log_offset_is_an_invalid_request(local_backend: Any) -> None:
    job = run(local_backend, commands=[["true"]])
    with pytest.raises(InvalidRequestError) as info:
        local_backend.get_render_log(job.id, -1)
    assert info.value.field == "offset"
