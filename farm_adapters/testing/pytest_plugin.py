"""The farm-adapters pytest plug-in (registered through the ``pytest11`` entry point).

Point the shipped conformance suite at any backend with one option::

    pytest --farm-backend studio_farm                      # default settings
    pytest --farm-target studio-farm                       # a target from the targets file
    pytest --farm-backend studio_farm --farm-settings '{"url": "http://127.0.0.1:8222"}'

Either option makes pytest collect the conformance suite
(:mod:`farm_adapters.testing.conformance`) and nothing else, wherever pytest is started
(a project's own ``testpaths`` are not collected). ``--farm-timeout`` bounds each wait
of a check for a job; a check that is still running after a few of those budgets is
failed with the step and the job state it was stuck in. To run the suite inside a test
tree of your own instead, import its tests into a test module and provide a
``farm_backend`` fixture (see docs/testing-a-backend.md).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Generator, Iterator
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
        default=60.0,
        metavar="SECONDS",
        help="how long one step of a conformance check may wait for a job (default 60)",
    )


def _selected(config: pytest.Config) -> bool:
    return bool(config.getoption("--farm-backend") or config.getoption("--farm-target"))


def pytest_configure(config: pytest.Config) -> None:
    if not _selected(config):
        return
    path = str(Path(conformance.__file__))
    # Only the conformance suite: not the testpaths (or the folder) pytest was started
    # in. Explicit node ids into the suite (conformance.py::test_x) are kept.
    keep = [a for a in config.args if Path(a.split("::")[0]).resolve() == Path(path).resolve()]
    config.args[:] = keep or [path]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _selected(config):
        return
    suite = Path(conformance.__file__).resolve()
    items[:] = [i for i in items if Path(str(i.path)).resolve() == suite]
    for item in items:
        if item.nodeid.startswith("::"):
            # The suite lies outside the folder pytest started in (an installed
            # package): give its ids a file part, so they name the check in full.
            _rename(item, f"farm_adapters/testing/conformance.py{item.nodeid}")


def _rename(item: pytest.Item, nodeid: str) -> None:
    try:  # pytest >= 9 keeps a structured id
        from _pytest.nodeid import coerce_node_id

        item._id = coerce_node_id(nodeid)
    except ImportError:  # older pytest: a plain string
        item._nodeid = nodeid  # type: ignore[attr-defined,unused-ignore]


class _Stuck(BaseException):
    """Raised in the test's thread when a check outlives its budget (a BaseException so
    a backend's ``except Exception`` cannot swallow it)."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    function = getattr(item, "function", None)
    if (
        getattr(function, "__module__", None) != conformance.__name__
        or threading.current_thread() is not threading.main_thread()
        or not hasattr(signal, "SIGALRM")
        or os.environ.get("FARM_ADAPTERS_CONFORMANCE_NO_WATCHDOG")
    ):
        yield
        return
    budget = getattr(function, "budget", 4)
    try:
        default = item.config.getoption("--farm-timeout")
        timeout = float(item.funcargs.get("farm_timeout", default))  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        timeout = 60.0
    limit = timeout * budget + 10.0

    def expire(signum: int, frame: object) -> None:
        raise _Stuck(
            f"{item.name} did not finish in {limit:g} s ({budget} x --farm-timeout + 10 s); "
            f"it was stuck {conformance.current_step()}"
        )

    conformance._step("starting the check")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
    """Seconds one step of a conformance check may wait for a job."""
    return float(request.config.getoption("--farm-timeout"))
