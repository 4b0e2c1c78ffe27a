"""``farm-adapters jobs`` with 10,000 journal rows against 10 rows: limit, filters and
order are applied in SQL before anything is built, so the listing costs the same
whatever the journal's size (median wall time of whole processes, alternately, one
run). The rows name jobs the local farm does not know (marked "unknown to the farm"),
so the figure is the CLI's and the journal's, not the backend's.

    python bench/jobs_scale.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PYTHON, median, report, time_command


def _journal(folder: Path, rows: int) -> None:
    """A journal of ``rows`` jobs, written as `submit` writes it."""
    os.environ["FARM_ADAPTERS_DATA_DIR"] = str(folder)
    from farm_adapters.journal import Journal
    from farm_adapters.models import parse_request

    journal = Journal()
    request = parse_request({"commands": [["true"]], "name": "shot"})
    journal.record(job_id="seed", target="local", backend="local", request=request)
    now = time.time()
    with sqlite3.connect(journal.path) as conn:
        conn.executemany(
            "INSERT INTO jobs (job_id, target, backend, name, render_context, request_hash, "
            "submitted_at) VALUES (?, 'local', 'local', ?, ?, 'x', ?)",
            [(f"job{i:06d}", f"shot{i % 97:03d}", f"ctx{i}", now - i) for i in range(rows - 1)],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fa-bench-"))
    try:
        small, large = root / "small", root / "large"
        _journal(small, 10)
        _journal(large, 10_000)
        argv = [PYTHON, "-m", "farm_adapters", "jobs"]

        def run(folder: Path) -> float:
            os.environ["FARM_ADAPTERS_DATA_DIR"] = str(folder)
            return time_command(argv, 1)[0]

        for folder in (small, large):
            run(folder)
        ours, base = [], []
        for _ in range(args.runs):
            base.append(run(small))
            ours.append(run(large))
        report(
            "jobs_10000_rows",
            median(ours) * 1000,
            median(base) * 1000,
            unit="ms",
            better="lower",
            target="<=1.2",
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
