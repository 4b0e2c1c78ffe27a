"""``ovfarm``: NVIDIA Omniverse Farm through its queue REST API.

Registers the backend (by reference: listing backends does not import it) and,
through the command-line hook, ``farm-adapters jobdefs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from farm_adapters import hookimpl, requires

__all__ = ["OmniverseFarmPlugin", "OmniverseFarmSettings"]


@hookimpl
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    register(
        "farm_adapters.plugins.ovfarm.plugin:OmniverseFarmPlugin",
        name="ovfarm",
        availability=requires("httpx"),
        display_name="NVIDIA Omniverse Farm",
    )


@hookimpl
def farm_adapters_register_commands(cli: Any) -> None:
    from .commands import jobdefs

    cli.add_command(jobdefs)


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(name)
