"""``slurm``: a Slurm cluster through its command-line tools (here or on a login node).

Registered by reference, so listing backends does not import it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

from farm_adapters import hookimpl
from farm_adapters.plugin import Availability

__all__ = ["SlurmPlugin", "SlurmSettings", "availability"]


def availability() -> Availability:
    """Available where ``sbatch`` is on PATH (found, never run), or where paramiko can
    reach the tools on a login node (``host`` setting)."""
    if shutil.which("sbatch") or os.path.exists("/usr/bin/sbatch"):
        return Availability(True)
    import importlib.util

    if importlib.util.find_spec("paramiko") is not None:
        return Availability(True)
    return Availability(
        False,
        "needs the Slurm client tools (apt-get install slurm-client) or, for a login node "
        "over SSH, paramiko (pip install 'farm-adapters[ssh]')",
    )


@hookimpl
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    register(
        "farm_adapters.plugins.slurm.plugin:SlurmPlugin",
        name="slurm",
        availability=availability,
        display_name="Slurm",
    )


def __getattr__(name: str) -> Any:
    if name in ("SlurmPlugin", "SlurmSettings"):
        from . import plugin

        return getattr(plugin, name)
    raise AttributeError(name)
