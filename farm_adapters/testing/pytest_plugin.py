"""The farm-adapters pytest plug-in (registered through the ``pytest11`` entry point).

Point the shipped conformance suite at any backend with one option::

    pytest --farm-backend studio_farm                      # default settings
    pytest --farm-target studio-farm                       # a target from the targets file
    pytest --farm-backend studio_farm --farm-settings '{"url": "http://127.0.0.1:8222"}'

Either option adds :mod:`farm_adapters.testing.conformance` to the collected tests. To
run the suite inside a test tree of your own instead, import its tests into a test
module and provide a ``farm_backend`` fixture (see docs/testing-a-backend.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from . import conformance


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("farm-adapters", "farm-adapters conformance suite")
    group.addoption(
        "--farm-backend",
        metavar="NAME",
        help="run the farm-adapters conformance suite against this registered backend",
    )
    group.addoption(
        "--farm-target",
        metavar="NAME",
        help="run the conformance suite against this render target (targets file)",
    )
    group.addoption(
        "--farm-settings",
        metavar="JSON",
        help="settings for --farm-backend, as JSON or @path/to/settings.json",
    )
    group.addoption(
        "--farm-timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="how long a conformance job may take to end (default 120)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--farm-backend") or config.getoption("--farm-target"):
        path = str(Path(conformance.__file__))
        if path not in config.args:
            config.args.append(path)


def _settings(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text()
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise pytest.UsageError("--farm-settings must be a JSON object")
    return data


@pytest.fixture
def farm_backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The backend under test, from ``--farm-backend``/``--farm-target``.

    Override this fixture in a conftest.py to build the backend yourself.
    """
    from farm_adapters.config import load_targets
    from farm_adapters.manager import get_plugin_manager

    name = request.config.getoption("--farm-backend")
    target = request.config.getoption("--farm-target")
    if not name and not target:
        pytest.skip("no backend selected: pass --farm-backend NAME or --farm-target NAME")
    manager = get_plugin_manager()
    if target:
        backend = load_targets().get(target).create_backend(manager)
    else:
        info = {b.name: b for b in manager.list_backends()}.get(name)
        if info is not None and not info.available:
            pytest.skip(f"backend {name!r} is not available here: {info.reason}")
        backend = manager.create_backend(
            name, _settings(request.config.getoption("--farm-settings"))
        )
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def farm_timeout(request: pytest.FixtureRequest) -> float:
    """Seconds a conformance job may take to reach a final state."""
    return float(request.config.getoption("--farm-timeout"))
