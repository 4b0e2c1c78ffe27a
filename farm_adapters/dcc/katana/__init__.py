"""A bridge that shows farm-adapters' render targets to Katana as render farm plug-ins.

Katana loads render farm plug-ins from ``<dir>/Plugins/*.py`` for every ``<dir>`` on
``KATANA_RESOURCES``. :data:`RESOURCES` is such a directory: its plug-in file builds one
``FarmAPI.BaseFarmPlugin`` subclass per configured target (:mod:`.bridge`) and lists
them in its ``PluginRegistry``. ``farm-adapters katana path`` prints it.

Every Katana name the bridge uses is in :mod:`.names`, with whether Foundry's public
documentation shows it; correct a wrong guess there.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RESOURCES", "resources_path"]

#: The directory to add to ``KATANA_RESOURCES``.
RESOURCES = Path(__file__).resolve().parent / "Resources"


def resources_path() -> str:
    """:data:`RESOURCES` as a string, for ``KATANA_RESOURCES``."""
    return str(RESOURCES)
