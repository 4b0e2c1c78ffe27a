"""The cost of polling one 100-task ovfarm job on a farm whose finished history is
2,000 tasks against one whose history is 40,000, in one run: two emulators, each in a
process of its own (as a farm is), polled alternately (median wall time of
``get_job``), plus the tasks each farm listed per poll, counted by the emulator.

The history is other jobs' finished tasks of the same task type, submitted to each
emulator in its own process (over HTTP, 40,000 submits would take minutes).

    python bench/ovfarm_poll.py [--tasks 100] [--small 2000] [--large 40000] [--polls 31]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report
from _emulator import emulator_process


def setup(stack: ExitStack, tasks: int, history: int) -> tuple[Any, str, Any]:
    """An emulator with ``history`` finished tasks, a backend, and a live job on it."""
    import httpx

    import farm_adapters as fa

    emulator = stack.enter_context(emulator_process("ovfarm", api_key="bench", agents=0))
    tmp = stack.enter_context(tempfile.TemporaryDirectory())
    backend = fa.get_plugin_manager().create_backend(
        "ovfarm", {"url": emulator.url, "api_key": "bench", "log_dir": tmp, "folders": tmp}
    )
    stack.callback(backend.close)
    job = fa.submit(backend, {"commands": [["true"]], "frames": f"1-{tasks}"}, journal=False)
    assert isinstance(job, fa.Job)
    emulator.history(history, backend._job_definition()["name"])
    return backend, job.id, httpx.Client(base_url=emulator.url)


def poll(backend: Any, job_id: str, control: Any) -> tuple[float, int]:
    """Seconds of one get_job, and the tasks the farm listed for it."""
    control.delete("/_emulator/stats")
    start = time.perf_counter()
    job = backend.get_job(job_id)
    seconds = time.perf_counter() - start
    assert not job.state.final, job.state
    return seconds, int(control.get("/_emulator/stats").json()["tasks_listed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=40_000)
    parser.add_argument("--polls", type=int, default=31)
    args = parser.parse_args()

    with ExitStack() as stack:
        small_farm = setup(stack, args.tasks, args.small)
        large_farm = setup(stack, args.tasks, args.large)
        small, large = [], []
        for _ in range(args.polls):
            seconds, small_listed = poll(*small_farm)
            small.append(seconds)
            seconds, large_listed = poll(*large_farm)
            large.append(seconds)
        start = time.perf_counter()
        everything = len(large_farm[0].list_tasks())  # what a poll listed before
        whole = time.perf_counter() - start
    print(
        f"listing every status on the large farm ({everything} tasks), as a poll did "
        f"before: {whole * 1000:.0f} ms"
    )
    print(
        f"one poll of a {args.tasks}-task job: {median(small) * 1000:.1f} ms with "
        f"{args.small} finished tasks on the farm ({small_listed} listed), "
        f"{median(large) * 1000:.1f} ms with {args.large} ({large_listed} listed)"
    )
    report(
        "ovfarm_poll_vs_history",
        median(large) * 1000,
        median(small) * 1000,
        unit="ms",
        better="lower",
        target="<=1.2",
    )


if __name__ == "__main__":
    main()
