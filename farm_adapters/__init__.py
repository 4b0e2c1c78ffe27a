"""farm-adapters: send render jobs to any render farm through one plug-in interface.

The public surface is listed in ``__all__``; everything else is private.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562), so `import farm_adapters` and the CLI's
# start-up stay light: a DCC or `farm-adapters --help` pays only for what it touches.
_LAZY = {
    "APIError": "errors",
    "AuthenticationError": "errors",
    "Availability": "plugin",
    "BackendError": "errors",
    "BackendInfo": "manager",
    "BackendNotFoundError": "errors",
    "BackendUnavailableError": "errors",
    "Capability": "plugin",
    "CheckResult": "models",
    "Command": "models",
    "ConfigurationError": "errors",
    "DryRun": "submit",
    "FarmAdapterError": "errors",
    "FarmPlugin": "plugin",
    "FarmPluginManager": "manager",
    "FrameSet": "frames",
    "InstallationMetadata": "models",
    "InvalidRequestError": "errors",
    "Job": "models",
    "JobError": "errors",
    "JobNotFoundError": "errors",
    "JobRequest": "models",
    "JobState": "models",
    "LogChunk": "models",
    "PluginConflictError": "errors",
    "PluginError": "errors",
    "PluginLoadError": "errors",
    "Requirements": "models",
    "SecretNotFoundError": "errors",
    "SubmitError": "errors",
    "TargetNotFoundError": "errors",
    "Task": "models",
    "TransferError": "errors",
    "TransferProgress": "plugin",
    "UnsupportedOperationError": "errors",
    "WaitTimeoutError": "errors",
    "derive_job_state": "models",
    "follow_log": "submit",
    "get_plugin_manager": "manager",
    "hookimpl": "hookspecs",
    "parse_request": "models",
    "requires": "plugin",
    "submit": "submit",
    "wait": "submit",
}

if TYPE_CHECKING:
    from .errors import (
        APIError,
        AuthenticationError,
        BackendError,
        BackendNotFoundError,
        BackendUnavailableError,
        ConfigurationError,
        FarmAdapterError,
        InvalidRequestError,
        JobError,
        JobNotFoundError,
        PluginConflictError,
        PluginError,
        PluginLoadError,
        SecretNotFoundError,
        SubmitError,
        TargetNotFoundError,
        TransferError,
        UnsupportedOperationError,
        WaitTimeoutError,
    )
    from .frames import FrameSet
    from .hookspecs import hookimpl
    from .manager import BackendInfo, FarmPluginManager, get_plugin_manager
    from .models import (
        CheckResult,
        Command,
        InstallationMetadata,
        Job,
        JobRequest,
        JobState,
        LogChunk,
        Requirements,
        Task,
        derive_job_state,
        parse_request,
    )
    from .plugin import Availability, Capability, FarmPlugin, TransferProgress, requires
    from .submit import DryRun, follow_log, submit, wait

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AuthenticationError",
    "Availability",
    "BackendError",
    "BackendInfo",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "Capability",
    "CheckResult",
    "Command",
    "ConfigurationError",
    "DryRun",
    "FarmAdapterError",
    "FarmPlugin",
    "FarmPluginManager",
    "FrameSet",
    "InstallationMetadata",
    "InvalidRequestError",
    "Job",
    "JobError",
    "JobNotFoundError",
    "JobRequest",
    "JobState",
    "LogChunk",
    "PluginConflictError",
    "PluginError",
    "PluginLoadError",
    "Requirements",
    "SecretNotFoundError",
    "SubmitError",
    "TargetNotFoundError",
    "Task",
    "TransferError",
    "TransferProgress",
    "UnsupportedOperationError",
    "WaitTimeoutError",
    "__version__",
    "derive_job_state",
    "follow_log",
    "get_plugin_manager",
    "hookimpl",
    "parse_request",
    "requires",
    "submit",
    "wait",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'farm_adapters' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(type(sys.modules[__name__])):  # type: ignore[misc]
    """Importing the submodule ``farm_adapters.submit`` must not hide the public
    function of the same name: the import system binds the submodule on the package."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "submit" and isinstance(value, type(sys)):
            value = value.submit
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
