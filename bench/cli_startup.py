"""Start-up of the artist's commands against ``python -c "import click, rich"`` (the
floor any click + rich command line pays), each in a fresh process, measured
alternately in one run: ``farm-adapters --help``, ``jobs``, ``status ID`` and
``logs ID`` of a local job (median wall time of whole processes).

    python bench/cli_startup.py [--runs 9]

A private data folder holds the one job these commands read; nothing else is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PYTHON, median, report, time_command

BASELINE = [PYTHON, "-c", "import click, rich"]


def _exe() -> list[str]:
    script = Path(PYTHON).with_name("farm-adapters")
    return [str(script)] if script.exists() else [PYTHON, "-m", "farm_adapters"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="fa-bench-")
    os.environ["FARM_ADAPTERS_DATA_DIR"] = data
    os.environ.pop("FARM_ADAPTERS_CONFIG", None)
    # Measured as installed: byte-code cached (the warm-up writes it), as pip does for
    # a wheel; a shell with PYTHONDONTWRITEBYTECODE would time compiling instead.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    exe = _exe()
    try:
        out = subprocess.run(
            [*exe, "submit", "--json", "--wait", "--", "echo", "hello"],
            check=True,
            capture_output=True,
            text=True,
            cwd=data,
        ).stdout
        job_id = json.loads(out)["id"]
        commands = {
            "cli_help": [*exe, "--help"],
            "cli_jobs": [*exe, "jobs"],
            "cli_status": [*exe, "status", job_id],
            "cli_logs": [*exe, "logs", job_id],
        }
        for argv in [BASELINE, *commands.values()]:  # warm caches and byte-code
            time_command(argv, 2)
        times: dict[str, list[float]] = {name: [] for name in commands}
        base: list[float] = []
        for _ in range(args.runs):
            base += time_command(BASELINE, 1)
            for name, argv in commands.items():
                times[name] += time_command(argv, 1)
        for name in commands:
            report(
                name,
                median(times[name]) * 1000,
                median(base) * 1000,
                unit="ms",
                better="lower",
                target="<=1.5",
            )
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
