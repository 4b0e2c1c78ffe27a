"""The cost of polling one 100-task ovfarm job while the farm's finished history grows
from 2,000 to 40,000 tasks, in one run (median wall time of ``get_job``), plus the tasks
the farm listed per poll, counted by the emulator itself.

The history is other jobs' finished tasks of the same task type, submitted to the
emulator in-process (over HTTP, 40,000 submits would take minutes).

    python bench/ovfarm_poll.py [--tasks 100] [--small 2000] [--large 40000] [--polls 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report


def grow(farm: Any, template: dict[str, Any], count: int) -> None:
    """Add ``count`` finished tasks of other jobs, of the job's task type."""
    from farm_adapters.testing.emulators.ovfarm import TaskSubmissionModel

    for _ in range(count):
        meta = {"job": uuid.uuid4().hex[:12], "task": 0, "tasks": 1, "name": "old"}
        body = TaskSubmissionModel(
            user="old",
            task_type=template["task_type"],
            task_args=template["task_args"],
            metadata={"farm_adapters": meta},
            status="finished",
        )
        farm.submit(body)


def polls(backend: Any, job_id: str, count: int) -> tuple[float, int]:
    """Median seconds of one get_job, and the tasks the farm listed for the last one."""
    import httpx

    times = []
    control = httpx.Client(base_url=backend.s.url)
    for _ in range(count):
        control.delete("/_emulator/stats")
        start = time.perf_counter()
        job = backend.get_job(job_id)
        times.append(time.perf_counter() - start)
        assert not job.state.final, job.state
    listed = int(control.get("/_emulator/stats").json()["tasks_listed"])
    return median(times), listed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=40_000)
    parser.add_argument("--polls", type=int, default=15)
    args = parser.parse_args()

    import farm_adapters as fa
    from farm_adapters.testing.emulators._server import BackgroundServer
    from farm_adapters.testing.emulators.ovfarm import create_app

    app = create_app(api_key="bench", agents=0)  # the job's tasks stay queued: live
    farm = app.state.farm
    with BackgroundServer(app) as server, tempfile.TemporaryDirectory() as tmp:
        backend = fa.get_plugin_manager().create_backend(
            "ovfarm", {"url": server.url, "api_key": "bench", "log_dir": tmp, "folders": tmp}
        )
        job = fa.submit(
            backend, {"commands": [["true"]], "frames": f"1-{args.tasks}"}, journal=False
        )
        assert isinstance(job, fa.Job)
        with farm.lock:
            template = dict(next(iter(farm.tasks.values())))
        grow(farm, template, args.small)
        small, small_listed = polls(backend, job.id, args.polls)
        grow(farm, template, args.large - args.small)
        large, large_listed = polls(backend, job.id, args.polls)
        print(
            f"one poll of a {args.tasks}-task job: {small * 1000:.1f} ms with {args.small} "
            f"finished tasks on the farm ({small_listed} listed), {large * 1000:.1f} ms with "
            f"{args.large} ({large_listed} listed)"
        )
        backend.close()
    report(
        "ovfarm_poll_vs_history",
        large * 1000,
        small * 1000,
        unit="ms",
        better="lower",
        target="<=1.2",
    )


if __name__ == "__main__":
    main()
