"""Start-up cost a DCC pays: ``import farm_adapters`` plus listing the backends, against
``import pluggy, pydantic`` with one model defined, each in a fresh interpreter,
measured alternately in one run (median wall time of whole processes).

    python bench/import_time.py [--runs 15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PYTHON, median, report, time_command

OURS = (
    "import farm_adapters\n"
    "m = farm_adapters.get_plugin_manager()\n"
    "names = [(b.name, b.available) for b in m.list_backends()]\n"
    "assert any(n == 'local' for n, _ in names), names\n"
)
BASELINE = (
    "import pluggy, pydantic\n"
    "class Model(pydantic.BaseModel):\n"
    "    name: str\n"
    "    frames: list[int] = []\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    # Warm the file cache and byte-code first.
    time_command([PYTHON, "-c", OURS], 2)
    time_command([PYTHON, "-c", BASELINE], 2)
    ours: list[float] = []
    baseline: list[float] = []
    for _ in range(args.runs):
        ours += time_command([PYTHON, "-c", OURS], 1)
        baseline += time_command([PYTHON, "-c", BASELINE], 1)
    report(
        "import_and_list_backends",
        median(ours) * 1000,
        median(baseline) * 1000,
        unit="ms",
        better="lower",
        target="<=1.3",
    )


if __name__ == "__main__":
    main()
