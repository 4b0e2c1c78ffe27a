"""``local``: the embedded backend that runs jobs on this machine."""

from __future__ import annotations

from collections.abc import Callable

from farm_adapters import hookimpl

from .plugin import LocalPlugin, LocalSettings

__all__ = ["LocalPlugin", "LocalSettings"]


@hookimpl
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    register(LocalPlugin)
