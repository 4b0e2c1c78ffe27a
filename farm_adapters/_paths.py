"""Where farm-adapters keeps its own files."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "FARM_ADAPTERS_DATA_DIR"


def data_dir() -> Path:
    """``$FARM_ADAPTERS_DATA_DIR``, else the user data directory (platformdirs)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    import platformdirs  # a few ms; only when a path is needed

    return Path(platformdirs.user_data_path("farm-adapters", appauthor=False))
