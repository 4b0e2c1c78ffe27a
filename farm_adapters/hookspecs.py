"""The hooks a farm-adapters plug-in can implement.

All hook names start with ``farm_adapters_`` and take keyword arguments; an
implementation may accept any subset of them. Mark implementations with
:data:`farm_adapters.hookimpl`::

    from farm_adapters import hookimpl

    @hookimpl
    def farm_adapters_register_backends(register):
        register(StudioFarmPlugin)

docs/hooks.md documents every hook here (a test keeps the two in step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .models import Job, JobState
    from .plugin import FarmPlugin

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

#: The pluggy project name, also the entry-point group.
PROJECT_NAME = "farm_adapters"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def farm_adapters_register_backends(register: Callable[..., None]) -> None:
    """Register backend classes.

    Call ``register(cls)`` once per :class:`~farm_adapters.plugin.FarmPlugin` subclass;
    the backend is listed under ``cls.name``, or under ``register(cls, name="other")``.
    Two plug-ins registering one name is an error that names both.
    """


@hookspec
def farm_adapters_register_commands(cli: Any) -> None:
    """Add commands to the ``farm-adapters`` command line.

    ``cli`` is the top-level :class:`click.Group`; add commands with
    ``cli.add_command(...)`` or the ``@cli.command()`` decorator. Import click inside
    the hook, never at module import.
    """


@hookspec
def farm_adapters_job_state_changed(
    job: Job, previous: JobState | None, backend: FarmPlugin
) -> None:
    """Called when :func:`farm_adapters.wait` or the CLI sees a job change state.

    ``previous`` is None the first time the job is seen. Implementations must return
    quickly (post a message, write a line); they run on the polling thread.
    """
