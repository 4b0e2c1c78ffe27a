"""``runai``: NVIDIA Run:ai through its control-plane REST API.

Registered by reference, so listing backends does not import it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from farm_adapters import hookimpl, requires

__all__ = ["RunAIPlugin", "RunAISettings"]


@hookimpl
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    register(
        "farm_adapters.plugins.runai.plugin:RunAIPlugin",
        name="runai",
        availability=requires("httpx"),
        display_name="NVIDIA Run:ai",
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(name)
