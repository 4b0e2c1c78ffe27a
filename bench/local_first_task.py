"""Submit to first task started on ``local``, against ``python -c pass``, in one run.

The clock starts before ``farm_adapters.submit`` (backend already built, as in a DCC
session) and stops when the job's one task has started: the task opens a FIFO the
bench is blocked on. The baseline is the start-up of a bare interpreter, the least any
detached supervisor written in Python can cost. Measured alternately, medians.

    python bench/local_first_task.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PYTHON, median, report, time_command


def first_task(backend: object, fifo: Path) -> float:
    """Seconds from submit until the job's task has opened ``fifo``."""
    import farm_adapters as fa

    request = {"name": "first", "commands": [["/bin/sh", "-c", 'echo x > "$0"', str(fifo)]]}
    os.mkfifo(fifo)
    signal.alarm(60)  # a task that never starts must not hang the bench
    start = time.perf_counter()
    job = fa.submit(backend, request, journal=False)  # type: ignore[arg-type]
    fd = os.open(fifo, os.O_RDONLY)  # blocks until the task opens the FIFO
    elapsed = time.perf_counter() - start
    signal.alarm(0)
    os.read(fd, 16)
    os.close(fd)
    os.unlink(fifo)
    assert isinstance(job, fa.Job)
    fa.wait(backend, job.id, timeout=60)  # type: ignore[arg-type]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    import farm_adapters as fa

    with tempfile.TemporaryDirectory(prefix="fa-bench-") as tmp:
        backend = fa.get_plugin_manager().create_backend(
            "local", {"root": str(Path(tmp) / "root"), "slots": 2}
        )
        fifo = Path(tmp) / "started"
        first_task(backend, fifo)  # warm the byte-code and the database
        time_command([PYTHON, "-c", "pass"], 2)
        ours: list[float] = []
        baseline: list[float] = []
        for _ in range(args.runs):
            ours.append(first_task(backend, fifo))
            baseline += time_command([PYTHON, "-c", "pass"], 1)
        backend.close()
    print(
        f"submit to first task: median {median(ours) * 1000:.1f} ms, min "
        f"{min(ours) * 1000:.1f} ms; python -c pass: median {median(baseline) * 1000:.1f} ms"
    )
    report(
        "local_submit_to_first_task",
        median(ours) * 1000,
        median(baseline) * 1000,
        unit="ms",
        better="lower",
        target="<=3",
    )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
