"""Shared fixtures: every test gets its own data directory and no user config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keep tests away from the user's journal, state and targets file."""
    data = tmp_path / "data"
    monkeypatch.setenv("FARM_ADAPTERS_DATA_DIR", str(data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for var in (
        "FARM_ADAPTERS_CONFIG",
        "FARM_ADAPTERS_RESOURCES",
        "FARM_ADAPTERS_BLOCK",
        "FARM_ADAPTERS_DISABLE_AUTOLOAD",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield data


@pytest.fixture
def local_backend(tmp_path: Path) -> Iterator[object]:
    """A local backend whose state, logs and folders live in the test's tmp dir."""
    from farm_adapters import get_plugin_manager

    backend = get_plugin_manager().create_backend(
        "local", {"root": str(tmp_path / "local"), "slots": 2, "grace_period": 2}
    )
    yield backend
    backend.close()
