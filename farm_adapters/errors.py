"""The one exception tree of farm-adapters.

Every error a caller can see from the core or from a backend derives from
:class:`FarmAdapterError`. Foreign exceptions (httpx, paramiko, sqlite3, OSError...)
are translated where they happen and chained with ``raise ... from exc``, so the
original stays in ``__cause__`` for ``--debug`` output but never escapes a backend.

::

    FarmAdapterError
    ├── ConfigurationError            bad target file, unknown target, missing secret
    │   ├── TargetNotFoundError
    │   ├── BackendNotFoundError      no backend of that name is registered
    │   └── SecretNotFoundError       a secret reference points at nothing
    ├── PluginError
    │   ├── PluginLoadError           a plug-in failed to import or register (chained)
    │   └── PluginConflictError       two sources claim one backend name
    ├── JobError
    │   ├── InvalidRequestError       a request the backend must refuse; names the field
    │   ├── JobNotFoundError          no job with that id on this backend
    │   ├── WaitTimeoutError          wait() gave up before the job ended
    │   └── SubmitError               the farm did not take the job; ``transient`` says
    │                                 whether trying again can help
    ├── BackendError
    │   ├── BackendUnavailableError   cannot reach the farm, or a dependency is missing
    │   ├── AuthenticationError       credentials refused
    │   ├── APIError                  the farm answered with an error (status, body excerpt)
    │   └── UnsupportedOperationError the backend does not implement this operation
    └── TransferError                 copying files to or from farm storage failed

Messages say what to do, not only what went wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "APIError",
    "AuthenticationError",
    "BackendError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "ConfigurationError",
    "FarmAdapterError",
    "InvalidRequestError",
    "JobError",
    "JobNotFoundError",
    "PluginConflictError",
    "PluginError",
    "PluginLoadError",
    "SecretNotFoundError",
    "SubmitError",
    "TargetNotFoundError",
    "TransferError",
    "UnsupportedOperationError",
    "WaitTimeoutError",
]


class FarmAdapterError(Exception):
    """Root of every error raised by farm-adapters and its backends."""


# -- configuration ---------------------------------------------------------------------


class ConfigurationError(FarmAdapterError):
    """The configuration (targets file, settings, secrets) is wrong."""


class TargetNotFoundError(ConfigurationError):
    """No render target of that name is configured."""


class BackendNotFoundError(ConfigurationError):
    """No backend of that name is registered (or it was blocked)."""


class SecretNotFoundError(ConfigurationError):
    """A secret reference (environment variable, keyring entry) resolves to nothing."""


# -- plug-ins --------------------------------------------------------------------------


class PluginError(FarmAdapterError):
    """A plug-in could not be loaded or registered."""


class PluginLoadError(PluginError):
    """A plug-in failed to import or register.

    ``origin`` names where it came from (entry point or file); ``details`` holds the
    formatted traceback of the original exception, which is also ``__cause__``.
    """

    def __init__(self, message: str, *, origin: str = "", details: str = "") -> None:
        super().__init__(message)
        self.origin = origin
        self.details = details


class PluginConflictError(PluginError):
    """Two sources register a backend under the same name; ``origins`` names both."""

    def __init__(self, message: str, *, name: str = "", origins: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.name = name
        self.origins = tuple(origins)


# -- jobs ------------------------------------------------------------------------------


class JobError(FarmAdapterError):
    """Something about one job or job request."""


class InvalidRequestError(JobError, ValueError):
    """The request cannot be run as given.

    ``field`` is the dotted path of the offending field when there is one (for example
    ``"frames"`` or ``"commands.0"``); ``problems`` lists every ``(field, message)``
    pair when validation found several.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        problems: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.field = field
        if not problems and field is not None:
            problems = ((field, message),)
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)


class JobNotFoundError(JobError, LookupError):
    """No job with that id exists on this backend."""

    def __init__(self, job_id: str, *, backend: str = "") -> None:
        where = f" on backend {backend!r}" if backend else ""
        super().__init__(
            f"no job {job_id!r}{where}; list the jobs with `farm-adapters jobs` to find its id"
        )
        self.job_id = job_id
        self.backend = backend


class WaitTimeoutError(JobError, TimeoutError):
    """:func:`farm_adapters.wait` gave up before the job reached a final state; the
    job itself goes on."""


class SubmitError(JobError):
    """The farm did not take the job.

    ``transient`` is True when the same submit may succeed later (farm busy, connection
    dropped after the backend made sure nothing was created), False when retrying the
    same request cannot help.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


# -- backends --------------------------------------------------------------------------


class BackendError(FarmAdapterError):
    """The backend or the farm behind it failed."""


class BackendUnavailableError(BackendError):
    """The farm cannot be reached, or the backend lacks a dependency it needs."""


class AuthenticationError(BackendError):
    """The farm refused the credentials."""


class APIError(BackendError):
    """The farm answered with an error status.

    ``status`` is the HTTP (or native) status code and ``body`` an excerpt of the
    answer, already stripped of anything secret.
    """

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class UnsupportedOperationError(BackendError, NotImplementedError):
    """The backend does not implement this optional operation (see ``capabilities``)."""


# -- storage ---------------------------------------------------------------------------


class TransferError(FarmAdapterError):
    """Copying render files to, or results from, farm storage failed."""
