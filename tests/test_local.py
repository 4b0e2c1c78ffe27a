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


def wait_for_state(backend: Any, job_id: str, state: JobState, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while backend.get_job_state(job_id) is not state:
        assert time.monotonic() < deadline, f"job never reached {state}"
        time.sleep(0.05)


def running_pgids(backend: Any, job_id: str, count: int, timeout: float = TIMEOUT) -> list[int]:
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


def wait_gone(pid: int) -> None:
    """Wait until process ``pid`` has exited (a zombie counts as gone)."""
    deadline = time.monotonic() + TIMEOUT
    while machine.process_start(pid) is not None:
        assert time.monotonic() < deadline, f"process {pid} never exited"
        time.sleep(0.02)


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
    # each task's own output too (stored once, in the job's log)
    assert local_backend.get_task_log(job.id, 3).text == "rendering frame 4\n"


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
    go = tmp_path / "go"
    # The tasks wait for `go`, so the job cannot end before the test looks at it.
    task = f"while [ ! -f {go} ]; do sleep 0.05; done; echo done {{frame}}"
    script = textwrap.dedent(f"""
        import farm_adapters as fa
        b = fa.get_plugin_manager().create_backend(
            "local", {{"root": {str(local_backend.root)!r}, "slots": 2}})
        job = fa.submit(b, {{"commands": [["sh", "-c", {task!r}]],
                            "frames": "1-2"}}, journal=False)
        print(job.id)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    job_id = out.stdout.strip()
    # The submitter is gone; a new reader finds the job still going.
    fresh = get_plugin_manager().create_backend("local", {"root": str(local_backend.root)})
    assert fresh.get_job_state(job_id) in {JobState.QUEUED, JobState.RUNNING}
    go.write_text("")
    done = wait(fresh, job_id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.COMPLETED
    assert "done 2" in fresh.get_render_log(job_id).text


def test_killed_supervisor_is_reported_failed_within_one_query(local_backend: Any) -> None:
    job = run(local_backend, commands=[["sh", "-c", "sleep 60"]], frames="1-3")
    (pgid, *_) = running_pgids(local_backend, job.id, 1)
    (pid,) = db_row(local_backend, "SELECT supervisor_pid FROM jobs WHERE id = ?", job.id)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    after = local_backend.get_job(job.id)
    assert after.state is JobState.FAILED
    assert "supervisor" in after.message and str(pid) in after.message
    # its task processes do not linger as orphans
    deadline = time.monotonic() + TIMEOUT
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
    deadline = time.monotonic() + TIMEOUT
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


def test_two_processes_polling_never_see_errors_or_torn_states(
    local_backend: Any, tmp_path: Path
) -> None:
    tasks = 300
    go = tmp_path / "go"
    # The first tasks wait for `go`: both pollers see the job under way, then the rest
    # of it go by, however fast or slow the machine is.
    task = f"while [ ! -f {go} ]; do sleep 0.05; done; echo {{frame}}"
    job = run(local_backend, commands=[["sh", "-c", task]], frames=f"1-{tasks}")
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
            if polls == 1:
                print("polling", j.state.value, flush=True)
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
    try:
        first = [p.stdout.readline().split() for p in procs if p.stdout is not None]
        # each poller saw the job before it ended
        assert len(first) == 2 and all(
            f[:1] == ["polling"] and f[1:] in (["queued"], ["running"]) for f in first
        ), first
        go.write_text("")
        results = [json.loads(p.communicate(timeout=600)[0]) for p in procs]
    finally:
        go.write_text("")
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for result in results:
        assert result["problems"] == []
        assert result["state"] == "completed"


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


# -- the supervisor's life cycle (issue 10) ---------------------------------------------


def supervisor_of(backend: Any, job_id: str) -> int:
    deadline = time.monotonic() + TIMEOUT
    while True:
        (pid,) = db_row(backend, "SELECT supervisor_pid FROM jobs WHERE id = ?", job_id)
        if pid:
            return int(pid)
        assert time.monotonic() < deadline, "the supervisor never recorded itself"
        time.sleep(0.05)


def slot_taken(backend: Any, name: str) -> bool:
    import fcntl

    fd = os.open(backend.root / "slots" / name, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_farm_adapters_folder_in_the_callers_directory_is_never_imported(
    local_backend: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Like running from a source checkout with a non-editable install: the folder must
    # not shadow the installed package in the supervisor.
    here = tmp_path / "checkout"
    (here / "farm_adapters").mkdir(parents=True)
    (here / "farm_adapters" / "__init__.py").write_text("")
    monkeypatch.chdir(here)
    job = run(local_backend, commands=[["pwd"]])
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.COMPLETED, done.message
    # the tasks still run in the caller's directory by default
    assert f"{here}\n" in local_backend.get_render_log(job.id).text


def test_a_submitter_killed_before_it_records_the_supervisor_leaves_the_job_running(
    local_backend: Any,
) -> None:
    # The submitting process is SIGKILLed right after it starts the supervisor, before
    # it can record the supervisor's pid.
    script = textwrap.dedent(f"""
        import os, signal
        import farm_adapters as fa
        from farm_adapters.plugins.local import machine
        machine.process_start = lambda pid: os.kill(os.getpid(), signal.SIGKILL)
        b = fa.get_plugin_manager().create_backend(
            "local", {{"root": {str(local_backend.root)!r}, "slots": 2}})
        fa.submit(b, {{"name": "orphan", "commands": [["sleep", "300"]]}}, journal=False)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (job_id,) = db_row(local_backend, "SELECT id FROM jobs WHERE name = 'orphan'")
    (pgid,) = running_pgids(local_backend, job_id, 1)
    # A status query long after the submit (the start grace period is over).
    with sqlite3.connect(local_backend.db_path) as conn:
        conn.execute("UPDATE jobs SET submitted_at = submitted_at - 3600 WHERE id = ?", (job_id,))
    assert local_backend.get_job_state(job_id) is JobState.RUNNING
    assert group_alive(pgid)
    # Even with no pid recorded at all (a supervisor still starting up), a supervisor
    # that is running is found and the job is left alone.
    with sqlite3.connect(local_backend.db_path) as conn:
        conn.execute("UPDATE jobs SET supervisor_pid = NULL WHERE id = ?", (job_id,))
    assert local_backend.get_job_state(job_id) is JobState.RUNNING
    assert group_alive(pgid)
    local_backend.stop_job(job_id)
    assert wait(local_backend, job_id, timeout=TIMEOUT, poll_interval=0.1).state is (
        JobState.STOPPED
    )


def test_tasks_of_a_killed_supervisor_keep_their_slots(local_backend: Any) -> None:
    job = run(local_backend, commands=[["sleep", "300"]], frames="1-4")
    pgids = running_pgids(local_backend, job.id, 2)
    pid = supervisor_of(local_backend, job.id)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    # Both orphaned tasks still run: both slots stay taken, so no other job can start
    # a third and fourth task process on this 2-slot machine.
    assert all(group_alive(p) for p in pgids)
    assert slot_taken(local_backend, "slot-0") and slot_taken(local_backend, "slot-1")
    # Once the job is settled its processes are gone and the slots free again.
    assert local_backend.get_job_state(job.id) is JobState.FAILED
    deadline = time.monotonic() + TIMEOUT
    while slot_taken(local_backend, "slot-0") or slot_taken(local_backend, "slot-1"):
        assert time.monotonic() < deadline, "the slots were never freed"
        time.sleep(0.05)
    after = run(local_backend, commands=[["echo", "next"]])
    assert wait(local_backend, after.id, timeout=TIMEOUT, poll_interval=0.1).state is (
        JobState.COMPLETED
    )


def test_settling_a_dead_job_kills_its_background_grandchildren(
    local_backend: Any, tmp_path: Path
) -> None:
    bg, go = tmp_path / "bg", tmp_path / "go"
    task = (
        f"sleep 300 & echo $! > {bg}.tmp; mv {bg}.tmp {bg}; "
        f"while [ ! -f {go} ]; do sleep 0.05; done"
    )
    job = run(local_backend, commands=[["sh", "-c", task]])
    (pgid,) = running_pgids(local_backend, job.id, 1)
    deadline = time.monotonic() + TIMEOUT
    while not bg.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(bg.read_text())
    pid = supervisor_of(local_backend, job.id)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    go.write_text("")
    wait_gone(pgid)  # the task's group leader has exited; its background child has not
    assert machine.process_start(grandchild) is not None
    assert local_backend.get_job_state(job.id) is JobState.FAILED
    wait_gone(grandchild)


def test_a_live_process_without_a_recorded_start_time_is_not_the_supervisor(
    local_backend: Any,
) -> None:
    job = run(local_backend, commands=[["sleep", "300"]])
    (pgid,) = running_pgids(local_backend, job.id, 1)
    pid = supervisor_of(local_backend, job.id)
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    # The recorded pid now belongs to another live process (pid reuse), and no start
    # time was recorded to tell them apart.
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        with sqlite3.connect(local_backend.db_path) as conn:
            conn.execute(
                "UPDATE jobs SET supervisor_pid = ?, supervisor_start = NULL WHERE id = ?",
                (stranger.pid, job.id),
            )
        after = local_backend.get_job(job.id)
        assert after.state is JobState.FAILED and str(stranger.pid) in after.message
        assert stranger.poll() is None  # the stranger is left alone
        deadline = time.monotonic() + TIMEOUT
        while group_alive(pgid):
            assert time.monotonic() < deadline, "the job's task outlived the failure"
            time.sleep(0.05)
    finally:
        stranger.kill()
        stranger.wait()
    assert not machine.is_alive(os.getpid(), None)
    assert machine.is_alive(os.getpid(), machine.process_start(os.getpid()))


def test_a_stopped_supervisor_is_reported_and_recovers(tmp_path: Path) -> None:
    backend = get_plugin_manager().create_backend(
        "local",
        {"root": str(tmp_path / "l"), "slots": 1, "grace_period": 1, "heartbeat_timeout": 2},
    )
    job = run(backend, commands=[["sleep", "300"]])
    running_pgids(backend, job.id, 1)
    pid = supervisor_of(backend, job.id)
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + TIMEOUT
        while (seen := backend.get_job(job.id)).state is not JobState.UNKNOWN:
            assert time.monotonic() < deadline, "a stopped supervisor was never reported"
            time.sleep(0.1)
        assert f"supervisor (pid {pid}) has not reported" in seen.message
        assert f"kill -CONT {pid}" in seen.message
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for_state(backend, job.id, JobState.RUNNING)
    backend.stop_job(job.id)
    assert wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.STOPPED


def test_a_failed_jobs_message_names_the_task_and_the_reason(local_backend: Any) -> None:
    job = run(
        local_backend,
        commands=[["sh", "-c", "[ {frame} -lt 4 ] || exit 3"]],
        frames="1-5",
    )
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.FAILED
    assert done.message == "task 3 (frame 4) failed: exited with code 3; 1 more task(s) failed"
    assert [j.message for j in local_backend.get_jobs() if j.id == job.id] == [done.message]
    killed = run(local_backend, commands=[["sh", "-c", "kill -9 $$"]])
    done = wait(local_backend, killed.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.message == "task 0 failed: killed by signal 9"
