"""``farm-adapters jobs`` when one target's secret variable is unset and another's farm
accepts connections but never answers, against ``jobs`` with the same number of rows
all on healthy targets (median wall time of whole processes, alternately, one run).
Issue 13's acceptance: every row listed, each marked, in under 2 s.

    python bench/jobs_unreachable.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PYTHON, median, report, time_command


def _journal(folder: Path, targets: list[str]) -> None:
    os.environ["FARM_ADAPTERS_DATA_DIR"] = str(folder)
    from farm_adapters.journal import Journal
    from farm_adapters.models import parse_request

    journal = Journal()
    request = parse_request({"commands": [["true"]], "name": "shot"})
    for i, target in enumerate(targets):
        journal.record(job_id=f"job{i}", target=target, backend="x", request=request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fa-bench-"))
    silent = socket.socket()  # accepts (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        config = root / "farm-adapters.toml"
        config.write_text(
            "[targets.gpu]\n"
            'backend = "runai"\n'
            'url = "http://127.0.0.1:9"\n'
            'client_id = { env = "BENCH_UNSET_ID" }\n'
            'client_secret = { env = "BENCH_UNSET_SECRET" }\n'
            'project = "a"\n'
            'image = "x"\n'
            "[targets.down]\n"
            'backend = "ovfarm"\n'
            f'url = "http://127.0.0.1:{silent.getsockname()[1]}"\n'
        )
        os.environ["FARM_ADAPTERS_CONFIG"] = str(config)
        broken, healthy = root / "broken", root / "healthy"
        _journal(broken, ["gpu"] * 5 + ["down"] * 5 + ["local"] * 5)
        _journal(healthy, ["local"] * 15)
        argv = [PYTHON, "-m", "farm_adapters", "jobs"]

        def run(folder: Path) -> float:
            os.environ["FARM_ADAPTERS_DATA_DIR"] = str(folder)
            return time_command(argv, 1)[0]

        run(broken)
        run(healthy)
        ours, base = [], []
        for _ in range(args.runs):
            ours.append(run(broken))
            base.append(run(healthy))
        report(
            "jobs_secret_unset_and_farm_silent",
            median(ours) * 1000,
            median(base) * 1000,
            unit="ms",
            better="lower",
            target="ours<2000",
        )
    finally:
        silent.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
