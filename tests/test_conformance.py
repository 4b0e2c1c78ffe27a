"""The shipped conformance suite, run over every registered backend.

Backends that cannot run here are skipped with their own reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import get_plugin_manager
from farm_adapters.testing.conformance import *

#: How to build each backend here: its settings, from the fixtures it needs.
SETTINGS = {
    "local": lambda request, tmp: {"root": str(tmp / "local"), "slots": 2, "grace_period": 2},
    "ovfarm": lambda request, tmp: request.getfixturevalue("ovfarm_settings"),
    "runai": lambda request, tmp: request.getfixturevalue("runai_settings"),
    "slurm": lambda request, tmp: request.getfixturevalue("slurm_settings"),
}

BACKENDS = [b.name for b in get_plugin_manager().list_backends()]


@pytest.fixture(params=BACKENDS)
def farm_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    manager = get_plugin_manager()
    info = {b.name: b for b in manager.list_backends()}[request.param]
    if not info.available:
        pytest.skip(f"backend {info.name!r} is not available: {info.reason}")
    settings = SETTINGS.get(info.name, lambda request, tmp: {})(request, tmp_path)
    backend = manager.create_backend(info.name, settings)
    yield backend
    backend.close()


@pytest.fixture
def farm_timeout() -> float:
    return 60.0


def test_files_go_through_the_target_storage(tmp_path: Path) -> None:
    """The files check with a target storage configured (here a local one), as
    ``[targets.NAME.storage]`` sets it: the folder and the copies must be on it."""
    from farm_adapters.testing import conformance
    from farm_adapters.transfer.local import LocalTransfer

    backend = get_plugin_manager().create_backend("local", SETTINGS["local"](None, tmp_path))
    backend.storage = LocalTransfer()
    backend.storage_root = str(tmp_path / "storage")
    try:
        conformance.test_files_folder_and_copies_reach_the_task(backend, 60.0, tmp_path)
    finally:
        backend.close()
    assert list((tmp_path / "storage").glob("*/assets/sub/b.txt"))
