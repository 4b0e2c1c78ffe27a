"""The local supervisor starts on the shortest import path: its start-up is on the way
from submit to the first task (issue 17, item 2)."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from farm_adapters import Job, JobState, submit, wait
from farm_adapters.plugins.local.plugin import supervisor_argv

TIMEOUT = 60
#: What a DCC session has loaded, none of which a supervisor needs.
HEAVY = ("pydantic", "pydantic_core", "click", "rich", "pluggy", "httpx", "paramiko")


def imported_by(argv: list[str]) -> set[str]:
    """Top-level names of every module the command imports (``-X importtime``)."""
    argv = [argv[0], "-X", "importtime", *argv[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert names, done.stderr
    return names


def test_the_supervisor_imports_neither_pydantic_nor_the_cli(local_backend: Any) -> None:
    # A real supervisor command line, for a job id the database does not hold: it
    # imports everything it would, then exits saying so.
    job = submit(local_backend, {"name": "warm", "commands": [["true"]]}, journal=False)
    assert isinstance(job, Job)
    wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    modules = imported_by(supervisor_argv(local_backend.db_path, "no-such-job"))
    assert "farm_adapters.plugins.local.supervisor" in modules
    loaded = {m for m in modules if m.split(".")[0] in HEAVY}
    assert not loaded, f"the supervisor imported {sorted(loaded)}"
    assert "farm_adapters.models" not in modules
    assert "site" not in modules


def test_a_supervisor_started_without_site_runs_the_job(local_backend: Any) -> None:
    # The task's own interpreter is a normal one (site-packages included): only the
    # supervisor skips ``site``.
    job = submit(
        local_backend,
        {
            "name": "site",
            "commands": [["python3", "-c", "import sys; print('site' in sys.modules)"]],
            "frames": "1-3",
        },
        journal=False,
    )
    assert isinstance(job, Job)
    done = wait(local_backend, job.id, timeout=TIMEOUT, poll_interval=0.1)
    assert done.state is JobState.COMPLETED, done.message
    assert local_backend.get_render_log(job.id).text.count("True\n") == 3
    with sqlite3.connect(Path(local_backend.db_path)) as conn:
        (started, finished) = conn.execute(
            "SELECT started_at, finished_at FROM jobs WHERE id = ?", (job.id,)
        ).fetchone()
    assert started is not None and finished is not None and started <= finished <= time.time()
