"""Shared helpers for the bench scripts: one result line per figure, in the exact
format CI and the issue notes read."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Sequence


def report(
    name: str,
    ours: float,
    baseline: float,
    *,
    unit: str,
    better: str,
    target: str,
) -> None:
    """Print ``bench <name>: ours=<x> baseline=<y> ratio=<r> unit=<u> better=<..> target=<t>``.

    The ratio is ours / baseline.
    """
    ratio = ours / baseline if baseline else float("nan")
    print(
        f"bench {name}: ours={ours:.4g} baseline={baseline:.4g} ratio={ratio:.3f} "
        f"unit={unit} better={better} target={target}",
        flush=True,
    )


def time_command(argv: Sequence[str], runs: int) -> list[float]:
    """Wall seconds of ``runs`` executions of a command (output discarded)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


PYTHON = sys.executable
