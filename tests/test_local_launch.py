"""How the local supervisor starts a task's process: what the task inherits (open
files, signal dispositions, process group and session) and where its program is
found, both when the C library's ``posix_spawn`` starts it and when ``Popen`` does
(a command with its own working directory)."""

from __future__ import annotations

import re
import signal
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import Job, JobState, submit, wait

TIMEOUT = 60

#: The two ways a task is started: a plain command (posix_spawn), a command with its
#: own working directory (Popen).
STARTS = pytest.mark.parametrize("own_cwd", [False, True], ids=["spawn", "popen"])


def run_task(backend: Any, tmp_path: Path, script: str, own_cwd: bool, **request: Any) -> Job:
    command: dict[str, Any] = {"argv": ["sh", "-c", script]}
    if own_cwd:
        command["cwd"] = str(tmp_path)
    job = submit(backend, {"name": "launch", "commands": [command], **request}, journal=False)
    assert isinstance(job, Job)
    done = wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.05)
    assert done.state is JobState.COMPLETED, backend.get_render_log(job.id).text
    return job


def task_output(backend: Any, job_id: str, task: int = 0) -> str:
    return str(backend.get_task_log(job_id, task).text)


@STARTS
def test_a_task_holds_only_its_stdio_and_its_own_slot_lock(
    local_backend: Any, tmp_path: Path, own_cwd: bool
) -> None:
    # Two tasks at once on the 2-slot backend: each holds one slot, and must not hold
    # the other's (an orphaned task would then keep two slots), nor the supervisor's
    # database, log or pipes.
    job = run_task(
        local_backend,
        tmp_path,
        "ls -l /proc/$$/fd; sleep 0.5",
        own_cwd,
        frames="1-2",
    )
    slots = []
    for task in (0, 1):
        links = dict(re.findall(r" (\d+) -> (.*)$", task_output(local_backend, job.id, task), re.M))
        assert links.pop("0") == "/dev/null"
        assert links.pop("1").startswith("pipe:") and links.pop("2").startswith("pipe:")
        assert len(links) == 1, links
        (target,) = links.values()
        assert Path(target).parent == (Path(local_backend.root) / "slots").resolve(), target
        slots.append(Path(target).name)
    assert sorted(slots) == ["slot-0", "slot-1"]


@STARTS
def test_a_task_gets_sigpipe_and_sigxfsz_at_their_defaults(
    local_backend: Any, tmp_path: Path, own_cwd: bool
) -> None:
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal survives exec: a
    # task's pipeline (``render | head``) must end the way it does in a terminal.
    job = run_task(local_backend, tmp_path, "grep SigIgn /proc/$$/status", own_cwd)
    (mask,) = re.findall(r"SigIgn:\s*([0-9a-f]+)", task_output(local_backend, job.id))
    ignored = int(mask, 16)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        assert not ignored & (1 << (sig - 1)), f"{sig.name} is ignored in the task"


@STARTS
def test_a_task_leads_its_own_process_group_in_the_jobs_session(
    local_backend: Any, tmp_path: Path, own_cwd: bool
) -> None:
    # Stop and timeouts signal the task's process group; the task is not a session
    # leader (so it never takes a terminal): it stays in its supervisor's session.
    job = run_task(local_backend, tmp_path, "echo $$; cat /proc/$$/stat", own_cwd)
    pid_line, stat_line = task_output(local_backend, job.id).splitlines()[:2]
    fields = stat_line[stat_line.rfind(")") + 2 :].split()
    pgrp, session = int(fields[2]), int(fields[3])
    with sqlite3.connect(local_backend.db_path) as conn:
        (supervisor,) = conn.execute(
            "SELECT supervisor_pid FROM jobs WHERE id = ?", (job.id,)
        ).fetchone()
    assert pgrp == int(pid_line)
    assert session == supervisor != pgrp


@STARTS
def test_a_program_is_found_on_the_path_the_job_sets(
    local_backend: Any, tmp_path: Path, own_cwd: bool
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    renderer = tools / "fa-test-renderer"
    renderer.write_text("#!/bin/sh\necho rendered $1\n")
    renderer.chmod(renderer.stat().st_mode | stat.S_IXUSR)
    (tools / "fa-test-not-executable").write_text("#!/bin/sh\necho never\n")
    path = f"{tools}:/usr/bin:/bin"
    command: dict[str, Any] = {"argv": ["fa-test-renderer", "{frame}"]}
    if own_cwd:
        command["cwd"] = str(tmp_path)
    job = submit(
        local_backend,
        {"name": "path", "commands": [command], "frames": "3", "environment": {"PATH": path}},
        journal=False,
    )
    assert isinstance(job, Job)
    assert wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.05).state is (
        JobState.COMPLETED
    )
    assert "rendered 3\n" in local_backend.get_render_log(job.id).text
    # A file of that name that may not be executed is refused with the reason.
    command["argv"] = ["fa-test-not-executable"]
    job = submit(
        local_backend,
        {"name": "denied", "commands": [command], "environment": {"PATH": path}},
        journal=False,
    )
    assert isinstance(job, Job)
    assert wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.05).state is (
        JobState.FAILED
    )
    log = local_backend.get_render_log(job.id).text
    assert "cannot start 'fa-test-not-executable': Permission denied" in log
    assert "never" not in log
