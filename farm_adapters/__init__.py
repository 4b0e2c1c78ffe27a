"""farm-adapters: send render jobs to any render farm through one plug-in interface.

The public surface is listed in ``__all__``; everything else is private.
"""

from __future__ import annotations

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
