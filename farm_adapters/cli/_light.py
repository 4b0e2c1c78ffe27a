"""The light path of the read-only commands (``jobs``, ``status``, ``logs``): jobs of the
built-in ``local`` target are read through its standard-library view of the store
(:mod:`farm_adapters.plugins.local.view`), without pydantic, pluggy or the plug-in
manager, when nothing could make the full path answer differently:

- no targets file is found (``--config``, ``$FARM_ADAPTERS_CONFIG``, ``./farm-adapters.toml``,
  the user config directory): ``local`` has its default settings;
- no resource directories (``FARM_ADAPTERS_RESOURCES``), no block list and no
  ``FARM_ADAPTERS_DISABLE_AUTOLOAD``;
- the ``farm_adapters`` entry-point group holds the built-ins only, as this package
  declares them (read from the distributions' ``entry_points.txt`` on ``sys.path``).

Otherwise, and for every other target, the full path runs. The view never writes: a
job that must be settled first is answered by the real plug-in
(:class:`~farm_adapters.plugins.local.view.LocalReader`). tests/test_cli_startup.py runs
both paths on the same data and compares what they print.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["NO_LIGHT_ENV", "local_reader", "usable"]

#: Set (to anything) to always take the full path (tests compare the two).
NO_LIGHT_ENV = "_FARM_ADAPTERS_NO_LIGHT_PATH"
#: The built-in backends as pyproject.toml declares them in the entry-point group.
BUILTINS = {
    "local": "farm_adapters.plugins.local",
    "ovfarm": "farm_adapters.plugins.ovfarm",
    "runai": "farm_adapters.plugins.runai",
    "slurm": "farm_adapters.plugins.slurm",
}
#: Environment variables that change which plug-ins load (see manager.py).
_PLUGIN_ENV = ("FARM_ADAPTERS_RESOURCES", "FARM_ADAPTERS_BLOCK", "FARM_ADAPTERS_DISABLE_AUTOLOAD")

_usable: bool | None = None


def usable(config_path: str | None) -> bool:
    """Whether ``local`` jobs may be read through the light path (see the module)."""
    global _usable
    if config_path is not None:
        return False
    if _usable is None:
        _usable = (
            not os.environ.get(NO_LIGHT_ENV)
            and not any(os.environ.get(name) for name in _PLUGIN_ENV)
            and not _targets_file_found()
            and only_builtin_entry_points()
        )
    return _usable


def _targets_file_found() -> bool:
    from ..config import CONFIG_ENV, config_search_path

    if os.environ.get(CONFIG_ENV):
        return True
    return any(path.is_file() for path in config_search_path())


def _entry_points_section(text: str) -> dict[str, str]:
    """The ``[farm_adapters]`` section of an ``entry_points.txt``."""
    found: dict[str, str] = {}
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            inside = line == "[farm_adapters]"
        elif inside and "=" in line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            found[name.strip()] = value.strip()
    return found


def only_builtin_entry_points(path: list[str] | None = None) -> bool:
    """True when every distribution on ``path`` (default ``sys.path``) that declares
    ``farm_adapters`` entry points declares only the built-ins, as they are. Anything
    this cannot read for sure (a zip on the path, a finder that lists distributions of
    its own) answers False."""
    from importlib.machinery import PathFinder

    if any(
        hasattr(finder, "find_distributions") and finder is not PathFinder
        for finder in sys.meta_path
    ):
        return False
    for entry in sys.path if path is None else path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except NotADirectoryError:
            return False  # a zip file: its distributions are not read here
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(folder, name, "entry_points.txt"), encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if "farm_adapters" not in text:
                continue
            for ep_name, value in _entry_points_section(text).items():
                if BUILTINS.get(ep_name) != value:
                    return False
    return True


def _view_module() -> ModuleType:
    """:mod:`farm_adapters.plugins.local.view`, without running the ``local``
    package's ``__init__`` (it registers the backend's hook, importing pluggy) unless
    that package is loaded already. The bare package entered for the import is removed
    again, so a later ``import farm_adapters.plugins.local`` runs the real one."""
    from importlib import import_module

    package = "farm_adapters.plugins.local"
    if package in sys.modules:
        return import_module(package + ".view")
    plugins = import_module("farm_adapters.plugins")
    bare = ModuleType(package)
    bare.__path__ = [os.path.join(folder, "local") for folder in plugins.__path__]
    sys.modules[package] = bare
    try:
        return import_module(package + ".view")
    finally:
        if sys.modules.get(package) is bare:
            del sys.modules[package]


def local_reader(full: Callable[[], Any]) -> Any:
    """The light view of the ``local`` target's store; ``full`` builds the real
    backend for what the view hands over to it."""
    from .._paths import data_dir

    view = _view_module()
    return view.LocalReader((data_dir() / "local").expanduser().absolute(), full)
