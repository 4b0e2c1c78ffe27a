"""``ovfarm``: NVIDIA Omniverse Farm through its queue REST API.

Registers the backend and, through the command-line hook, ``farm-adapters jobdefs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from farm_adapters import hookimpl

from .plugin import OmniverseFarmPlugin, OmniverseFarmSettings

__all__ = ["OmniverseFarmPlugin", "OmniverseFarmSettings"]


@hookimpl
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    register(OmniverseFarmPlugin)


@hookimpl
def farm_adapters_register_commands(cli: Any) -> None:
    from .commands import jobdefs

    cli.add_command(jobdefs)
