"""Loading plug-in files from resource directories, the way Katana loads
``KATANA_RESOURCES``.

Every ``<dir>/Plugins/*.py`` of every directory on ``FARM_ADAPTERS_RESOURCES``
(``os.pathsep``-separated) is imported in name order, under a unique module name placed
in :data:`sys.modules` before the file runs (so dataclasses, pickling and
``typing.get_type_hints`` work inside it). A file can hold pluggy hook implementations,
a Katana-style registry, or both::

    PluginRegistry = [("FarmPlugin", 2.0, "studio_farm", StudioFarmPlugin)]

Entries whose kind is not ``"FarmPlugin"`` are ignored, as Katana ignores plug-in
types it does not handle.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

__all__ = [
    "RESOURCES_ENV",
    "RegistryEntry",
    "load_plugin_file",
    "plugin_files",
    "registry_entries",
    "resource_dirs_from_env",
]

RESOURCES_ENV = "FARM_ADAPTERS_RESOURCES"
PLUGIN_KIND = "FarmPlugin"


class RegistryEntry(NamedTuple):
    """One ``("FarmPlugin", version, name, class)`` tuple of a ``PluginRegistry``."""

    name: str
    version: Any
    cls: Any


def resource_dirs_from_env(env: Mapping[str, str] | None = None) -> list[Path]:
    """The directories named by ``FARM_ADAPTERS_RESOURCES`` (empty entries skipped)."""
    value = (os.environ if env is None else env).get(RESOURCES_ENV, "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def plugin_files(dirs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every ``<dir>/Plugins/*.py``, directory by directory, files in name order."""
    files: list[Path] = []
    for directory in dirs:
        folder = Path(directory) / "Plugins"
        if folder.is_dir():
            files.extend(
                p for p in sorted(folder.glob("*.py")) if p.is_file() and p.name != "__init__.py"
            )
    return files


def module_name_for(path: Path) -> str:
    """A module name unique to this file, stable across runs."""
    import hashlib  # only when there are plug-in files

    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"_farm_adapters_resource_{digest}_{stem}"


def load_plugin_file(path: Path) -> ModuleType:
    """Import one plug-in file; on failure nothing is left in :data:`sys.modules`."""
    name = module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def registry_entries(module: ModuleType) -> list[RegistryEntry]:
    """The ``FarmPlugin`` entries of a module's ``PluginRegistry``.

    Raises :class:`ValueError` naming the entry when one is malformed.
    """
    registry = getattr(module, "PluginRegistry", None)
    if registry is None:
        return []
    if not isinstance(registry, (list, tuple)):
        raise ValueError(
            "PluginRegistry must be a list of (kind, version, name, class) tuples, "
            f"not {type(registry).__name__}"
        )
    entries = []
    for i, item in enumerate(registry):
        if not isinstance(item, (list, tuple)) or len(item) != 4:
            raise ValueError(
                f"PluginRegistry[{i}] must be a (kind, version, name, class) tuple, "
                f"e.g. ('FarmPlugin', 2.0, 'studio_farm', StudioFarmPlugin); got {item!r}"
            )
        kind, version, name, cls = item
        if kind != PLUGIN_KIND:
            continue
        if not isinstance(name, str) or not name:
            raise ValueError(f"PluginRegistry[{i}]: the name must be a non-empty string")
        entries.append(RegistryEntry(name=name, version=version, cls=cls))
    return entries
