"""Where farm-adapters keeps its own files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATA_DIR_ENV = "FARM_ADAPTERS_DATA_DIR"
APP_NAME = "farm-adapters"
#: platformdirs' Linux answers without importing it (it costs more start-up than the
#: rest of `farm-adapters status`): the XDG variable when it holds an absolute path,
#: else the default under an absolute $HOME. Anything else asks platformdirs;
#: tests/test_cli_startup.py checks both agree.
_XDG = {"data": ("XDG_DATA_HOME", ".local/share"), "config": ("XDG_CONFIG_HOME", ".config")}


def user_dir(kind: str) -> Path:
    """The user's ``data`` or ``config`` folder of farm-adapters, as platformdirs says."""
    home = os.environ.get("HOME", "")
    if sys.platform == "linux" and home.startswith("/") and "ANDROID_DATA" not in os.environ:
        variable, default = _XDG[kind]
        xdg = os.environ.get(variable, "")
        if xdg.startswith("/"):
            return Path(xdg) / APP_NAME
        if not xdg:
            return Path(home) / default / APP_NAME
    import platformdirs

    if kind == "data":
        return Path(platformdirs.user_data_path(APP_NAME, appauthor=False))
    return Path(platformdirs.user_config_path(APP_NAME, appauthor=False))


def data_dir() -> Path:
    """``$FARM_ADAPTERS_DATA_DIR``, else the user data directory (platformdirs)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return user_dir("data")
