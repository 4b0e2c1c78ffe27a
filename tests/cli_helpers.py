"""The command line as the tests run it: a real `python -m farm_adapters` process."""

from __future__ import annotations

import os
import subprocess
import sys

EXE = [sys.executable, "-m", "farm_adapters"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line with extra environment variables; its captured result."""
    return subprocess.run(
        [*EXE, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )
