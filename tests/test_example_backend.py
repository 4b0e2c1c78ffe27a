"""The documented example backend (a spool-folder farm) survives what a farm must:
its worker killed mid-task, and a process that submits and exits."""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path
from typing import Any

from farm_adapters import JobState, submit, wait

EXAMPLE = Path(__file__).resolve().parent.parent / "examples/resources/Plugins/studio_farm.py"


def example(root: Path) -> Any:
    spec = importlib.util.spec_from_file_location("studio_farm_example_under_test", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.StudioFarmPlugin({"root": str(root)})


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_a_killed_worker_fails_its_task_and_the_next_worker_goes_on(tmp_path: Path) -> None:
    backend = example(tmp_path / "farm")
    job = submit(backend, {"commands": [["sh", "-c", "echo started; sleep 300"]]}, journal=False)
    deadline = time.monotonic() + 60
    while not (
        backend.get_job(job.id).state is JobState.RUNNING
        and "started" in backend.get_render_log(job.id).text
    ):
        assert time.monotonic() < deadline, backend.get_job(job.id)
        time.sleep(0.1)
    worker = int((tmp_path / "farm" / "worker.lock").read_text())
    task_pid = backend.spool.read(job.id)["tasks"][0]["pid"]
    os.kill(worker, signal.SIGKILL)  # a real crash: nothing of the worker runs again

    later = submit(backend, {"commands": [["sh", "-c", "echo later"]]}, journal=False)
    assert wait(backend, later.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    crashed = backend.get_job(job.id)
    assert crashed.state is JobState.FAILED
    assert "worker died" in backend.get_render_log(job.id).text
    while running(task_pid):  # the orphaned render was ended, not left running
        assert time.monotonic() < deadline
        time.sleep(0.1)
