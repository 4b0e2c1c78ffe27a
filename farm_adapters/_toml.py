"""Reading TOML files (targets files, job files) on every supported Python."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

__all__ = ["TOMLDecodeError", "read_toml", "tomllib"]

TOMLDecodeError = tomllib.TOMLDecodeError


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file. Raises OSError and :data:`TOMLDecodeError`."""
    with open(path, "rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return data
