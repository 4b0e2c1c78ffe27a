"""``runai``: NVIDIA Run:ai through its control-plane REST API."""

from __future__ import annotations

from collections.abc import Callable

from farm_adapters import hookimpl

from .plugin import RunAIPlugin, RunAISettings

__all__ = ["RunAIPlugin", "RunAISettings"]


@hookimpl
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    register(RunAIPlugin)
