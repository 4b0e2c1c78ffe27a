"""``local``: the embedded backend that runs jobs on this machine.

Registered by reference, so listing backends does not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from farm_adapters import Availability, hookimpl

__all__ = ["LocalPlugin", "LocalSettings"]


@hookimpl
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    register(
        "farm_adapters.plugins.local.plugin:LocalPlugin",
        name="local",
        availability=lambda: Availability(True),
        display_name="This machine",
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(name)
