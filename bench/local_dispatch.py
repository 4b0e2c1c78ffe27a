"""Local backend dispatch throughput against ``xargs -P``, in one run.

1000 single-command tasks (``true``) with 2 slots, from submit to every task
COMPLETED, against ``xargs -P 2`` running the same 1000 commands. Also prints the
supervisor's peak memory (its own ru_maxrss, recorded when it exits) for a 10,000-task
job.

    python bench/local_dispatch.py [--tasks 1000] [--big 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report


def run_ours(root: Path, tasks: int, slots: int) -> tuple[float, int]:
    """Seconds from submit to all COMPLETED, and the supervisor's peak RSS in KiB."""
    import farm_adapters as fa

    backend = fa.get_plugin_manager().create_backend(
        "local", {"root": str(root), "slots": slots, "grace_period": 1}
    )
    true = shutil.which("true") or "/bin/true"
    start = time.perf_counter()
    job = fa.submit(
        backend,
        {"name": "bench", "commands": [[true]], "frames": f"1-{tasks}"},
        journal=False,
    )
    assert isinstance(job, fa.Job)
    while True:
        state = backend.get_job(job.id)
        if state.state.final:
            break
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    if state.state is not fa.JobState.COMPLETED:
        raise SystemExit(f"bench job ended {state.state}: {state.task_counts}: {state.message}")
    # The supervisor writes its peak RSS just after the last task state.
    for _ in range(200):
        with sqlite3.connect(root / "state.sqlite3") as conn:
            (peak,) = conn.execute(
                "SELECT peak_rss_kb FROM jobs WHERE id = ?", (job.id,)
            ).fetchone()
        if peak is not None:
            break
        time.sleep(0.05)
    backend.close()
    return elapsed, int(peak or 0)


def run_xargs(tasks: int, slots: int) -> float:
    true = shutil.which("true") or "/bin/true"
    data = ("x\n" * tasks).encode()
    start = time.perf_counter()
    subprocess.run(
        ["xargs", "-P", str(slots), "-n", "1", true],
        input=data,
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--big", type=int, default=10_000)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fa-bench-") as tmp:
        ours, theirs, peaks = [], [], []
        for i in range(args.repeat):
            seconds, peak = run_ours(Path(tmp) / f"run{i}", args.tasks, args.slots)
            ours.append(args.tasks / seconds)
            peaks.append(peak)
            theirs.append(args.tasks / run_xargs(args.tasks, args.slots))
            print(
                f"run {i}: ours {ours[-1]:.0f} tasks/s, xargs {theirs[-1]:.0f} tasks/s", flush=True
            )
        big_seconds, big_peak = run_ours(Path(tmp) / "big", args.big, args.slots)
        small_peak = median(peaks)
        print(
            f"{args.big}-task job: {args.big / big_seconds:.0f} tasks/s, supervisor peak "
            f"RSS {big_peak / 1024:.1f} MiB ({args.tasks}-task job: {small_peak / 1024:.1f} MiB)"
        )
    report(
        "local_dispatch_throughput",
        median(ours),
        median(theirs),
        unit="tasks/s",
        better="higher",
        target=">=0.8",
    )
    # Memory: the 10,000-task job against the 1000-task job of the same run, so the
    # ratio shows how the supervisor's footprint grows with the task count.
    report(
        "local_supervisor_peak_rss_10k",
        big_peak / 1024,
        small_peak / 1024,
        unit="MiB",
        better="lower",
        target="<=2",
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
