"""NVIDIA Run:ai backend (``runai``): the Run:ai control plane's REST API.

Not implemented yet: it is listed, and reports itself unavailable with the reason,
so that tools see the name and no one mistakes it for a working backend.
"""

from __future__ import annotations

from collections.abc import Callable

from farm_adapters import Availability, hookimpl

from ..unimplemented import UnimplementedPlugin


class RunAIPlugin(UnimplementedPlugin):
    """Run:ai backend (not implemented yet)."""

    name = "runai"
    display_name = "NVIDIA Run:ai"

    @classmethod
    def availability(cls) -> Availability:
        return Availability(False, "not implemented yet: the Run:ai backend is still being built")


@hookimpl
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    register(RunAIPlugin)
