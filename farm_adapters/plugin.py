"""The contract every backend implements: :class:`FarmPlugin`.

Modelled on Katana's ``FarmAPI.BaseFarmPlugin``. A job goes through three stages:

1. temporary render files: :meth:`~FarmPlugin.create_temporary_folder` for the render
   context, then :meth:`~FarmPlugin.copy_render_files` into it;
2. environment: :meth:`~FarmPlugin.get_installation_metadata` and
   :meth:`~FarmPlugin.get_environment_for_job`;
3. :meth:`~FarmPlugin.submit_job`, which returns the job id every later call uses.

Callers normally do not drive the stages themselves: :func:`farm_adapters.submit` does,
the same way for every backend. Then come information (:meth:`~FarmPlugin.get_job`,
:meth:`~FarmPlugin.get_jobs`, :meth:`~FarmPlugin.get_render_log`), control
(:meth:`~FarmPlugin.stop_job`, :meth:`~FarmPlugin.restart_job`) and the self-test
(:meth:`~FarmPlugin.check`).

Optional operations raise :class:`~farm_adapters.errors.UnsupportedOperationError` by
default; :attr:`FarmPlugin.capabilities` lists the ones a backend overrides, so a UI can
grey out the rest, as Katana does for unimplemented methods.
"""

from __future__ import annotations

import enum
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigurationError, UnsupportedOperationError
from .models import (
    CheckResult,
    Dependency,
    InstallationMetadata,
    Job,
    JobRequest,
    JobState,
    LogChunk,
    OutputFile,
    validation_problems,
)

__all__ = [
    "Availability",
    "Capability",
    "FarmPlugin",
    "NoSettings",
    "ProgressCallback",
    "TransferProgress",
    "requires",
]


class Capability(str, enum.Enum):
    """Optional operations a backend may implement."""

    RENDER_LOG = "render_log"
    RENDER_LOG_FILENAME = "render_log_filename"
    STOP = "stop"
    RESTART = "restart"
    DRY_RUN = "dry_run"
    DEPENDENCIES = "dependencies"
    HOLD = "hold"
    PRIORITY = "priority"
    OUTPUTS = "outputs"
    DELETE = "delete"

    def __str__(self) -> str:
        return self.value


# Which method each capability stands for; a capability is present when the backend
# overrides the method.
_CAPABILITY_METHODS = {
    Capability.RENDER_LOG: "get_render_log",
    Capability.RENDER_LOG_FILENAME: "get_render_log_filename",
    Capability.STOP: "stop_job",
    Capability.RESTART: "restart_job",
    Capability.DRY_RUN: "native_payloads",
    Capability.DEPENDENCIES: "native_dependencies",
    Capability.HOLD: "release_job",
    Capability.PRIORITY: "set_priority",
    Capability.DELETE: "delete_job",
}
#: Capabilities the core provides for every backend (through the target's storage).
_CORE_CAPABILITIES = frozenset({Capability.OUTPUTS})


class Availability(NamedTuple):
    """Whether a backend can be used here, and if not, why and what to do."""

    available: bool
    reason: str = ""


def requires(*modules: str, install: str = "") -> Callable[[], Availability]:
    """An availability check for a backend that needs ``modules``: it finds them without
    importing them, so listing backends stays fast. ``install`` is the fix to show."""

    def check() -> Availability:
        import importlib.util

        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            fix = install or f"pip install {' '.join(missing)}"
            return Availability(False, f"needs {', '.join(missing)}: {fix}")
        return Availability(True)

    return check


class TransferProgress(NamedTuple):
    """Where a copy stands: bytes and files done of the totals, and the current file."""

    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    current: str = ""


ProgressCallback = Callable[[TransferProgress], None]


class NoSettings(BaseModel):
    """Settings of a backend that takes none."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class FarmPlugin(ABC):
    """Base class of every backend.

    Subclasses set :attr:`name`, :attr:`settings_model` and implement the abstract
    methods. The constructor takes the backend's settings (a mapping or an instance of
    :attr:`settings_model`), validates them, and must not touch the network: connect
    lazily, on first use. Heavy libraries (httpx, paramiko) are imported inside methods,
    never at module import, so listing backends stays fast.

    Instances are used from several threads at once (a DCC's UI thread polling while a
    worker submits): implementations must be thread-safe.

    Errors: every method raises only :class:`~farm_adapters.errors.FarmAdapterError`
    subclasses. The ones named in each docstring carry a specific meaning; transport
    failures are :class:`~farm_adapters.errors.BackendUnavailableError`, refused
    credentials :class:`~farm_adapters.errors.AuthenticationError`, other error answers
    :class:`~farm_adapters.errors.APIError`.
    """

    #: Short id used in target files and on the command line ("local", "ovfarm").
    name: ClassVar[str] = ""
    #: Human-readable name for menus ("Omniverse Farm").
    display_name: ClassVar[str] = ""
    #: The pydantic model of the backend's settings; must forbid unknown keys.
    settings_model: ClassVar[type[BaseModel]] = NoSettings
    #: The optional operations this backend implements (derived from the overridden
    #: methods unless the class sets it).
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    #: The storage the target configures (``[targets.NAME.storage]``): a
    #: :class:`~farm_adapters.transfer.FileTransfer`, or None to use the backend's own.
    storage: Any = None
    #: Where temporary folders go on that storage (its ``root``).
    storage_root: str | None = None
    #: The target's :class:`~farm_adapters.pathmap.PathMapper`, or None.
    path_mapper: Any = None
    #: What the last copy did (a :class:`~farm_adapters.transfer.TransferReport`).
    last_transfer: Any = None
    #: The targets file's ``[notify]`` sinks (a
    #: :class:`~farm_adapters.notify.NotifyConfig`), or None. A backend that observes
    #: its own jobs' ends (``local``) fires them through
    #: :func:`farm_adapters.notify.notify_job_end`.
    notify: Any = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "capabilities" not in cls.__dict__:
            cls.capabilities = _CORE_CAPABILITIES | frozenset(
                cap
                for cap, method in _CAPABILITY_METHODS.items()
                if getattr(cls, method) is not getattr(FarmPlugin, method)
            )
        extra = cls.settings_model.model_config.get("extra")
        if extra != "forbid":
            raise TypeError(
                f"{cls.__qualname__}.settings_model must set model_config "
                f"extra='forbid' so a misspelt setting is an error, not ignored"
            )

    def __init__(
        self, settings: BaseModel | Mapping[str, Any] | None = None, *, target: str | None = None
    ) -> None:
        self.settings = self.validate_settings(settings, target=target)
        #: The render target this instance serves (defaults to the backend name).
        self.target = target or self.name

    # -- construction ------------------------------------------------------------------

    @classmethod
    def validate_settings(
        cls, settings: BaseModel | Mapping[str, Any] | None, *, target: str | None = None
    ) -> BaseModel:
        """Validate settings into :attr:`settings_model`.

        Raises :class:`~farm_adapters.errors.ConfigurationError` naming the target and
        every offending key.
        """
        if isinstance(settings, cls.settings_model):
            return settings
        data = settings.model_dump() if isinstance(settings, BaseModel) else dict(settings or {})
        try:
            return cls.settings_model.model_validate(data)
        except ValidationError as exc:
            where = (
                f"target {target!r} (backend {cls.name!r})" if target else f"backend {cls.name!r}"
            )
            lines = "; ".join(f"{f}: {m}" for f, m in validation_problems(exc))
            raise ConfigurationError(f"invalid settings for {where}: {lines}") from None

    @classmethod
    def availability(cls) -> Availability:
        """Whether the backend can be used on this machine (dependencies installed...).

        Must be cheap and must not touch the network: it runs when backends are listed.
        """
        return Availability(True)

    def close(self) -> None:  # noqa: B027 - optional hook, empty on purpose
        """Release connections and other resources. Safe to call twice."""

    def __enter__(self) -> FarmPlugin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- submission, stage 1: temporary render files -----------------------------------

    def storage_folder(self, render_context: str) -> str | None:
        """With a target storage: make ``<root>/<render_context>`` there and return it;
        None when the target configures no storage. For backends to call first."""
        if self.storage is None:
            return None
        if not self.storage_root:
            raise ConfigurationError(
                f"target {self.target!r}: storage needs a root, the folder on the storage "
                f"where temporary folders are made"
            )
        folder = f"{self.storage_root.rstrip('/')}/{render_context}"
        self.storage.makedirs(folder)
        return folder

    def make_temporary_folder(
        self, render_context: str, default_root: str | os.PathLike[str]
    ) -> str:
        """The folder for ``render_context``: on the target's storage when it has one,
        else ``<default_root>/<render_context>`` on this machine's (shared) filesystem."""
        remote = self.storage_folder(render_context)
        if remote is not None:
            return remote
        folder = Path(default_root) / render_context
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from .errors import TransferError

            raise TransferError(f"cannot create temporary folder {folder}: {exc}") from exc
        return str(folder)

    def copy_files(
        self, paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
    ) -> list[str]:
        """Copy through the target's storage when it has one, else on this machine's
        (shared) filesystem; the report is kept in :attr:`last_transfer`."""
        copied = self.storage_copy(paths, folder, progress)
        if copied is not None:
            return copied
        from .transfer.local import LocalTransfer

        self.last_transfer = LocalTransfer().upload(paths, folder, progress)
        return list(self.last_transfer.remote_paths)

    def check_storage(self) -> list[CheckResult]:
        """The target storage's part of a self-test (nothing without one)."""
        if self.storage is None:
            return []
        from .errors import FarmAdapterError

        try:
            self.storage.makedirs(self.storage_root or "/")
            return [
                CheckResult(name="storage", ok=True, detail=f"{self.storage_root} is reachable")
            ]
        except FarmAdapterError as exc:
            return [CheckResult(name="storage", ok=False, detail=str(exc))]

    def storage_copy(
        self, paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
    ) -> list[str] | None:
        """With a target storage: upload ``paths`` into ``folder`` there; else None."""
        if self.storage is None:
            return None
        self.last_transfer = self.storage.upload(paths, folder, progress)
        return list(self.last_transfer.remote_paths)

    @abstractmethod
    def create_temporary_folder(self, render_context: str) -> str:
        """Create a folder that both this workstation and the render node can reach.

        ``render_context`` is unique per submission (a UUID4); the folder's path includes
        it. Returns the path as the render node sees it. Calling it twice with the same
        context returns the same folder.

        Raises :class:`~farm_adapters.errors.TransferError` when storage is not writable.
        """

    @abstractmethod
    def copy_render_files(
        self, paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
    ) -> list[str]:
        """Copy local files (or folders) into ``folder``; return their remote paths, in
        the order given.

        When this returns the files are complete under their final names: a copy that
        fails leaves no partial file under a final name. ``progress`` is called with a
        :class:`TransferProgress` as bytes move.

        Raises :class:`~farm_adapters.errors.TransferError` (naming the file) on failure,
        :class:`~farm_adapters.errors.InvalidRequestError` for a missing local file.
        """

    # -- submission, stage 2: environment ----------------------------------------------

    def get_installation_metadata(self) -> InstallationMetadata:
        """Describe the software installed on the render node (paths, versions)."""
        return InstallationMetadata()

    def get_environment_for_job(self, request: JobRequest) -> dict[str, str]:
        """Extra environment variables the job's processes need on the render node.

        The request's own ``environment`` is applied over these.
        """
        return dict(self.get_installation_metadata().environment)

    # -- submission, stage 3 -----------------------------------------------------------

    @abstractmethod
    def submit_job(self, request: JobRequest) -> str:
        """Submit a validated request; return an id that uniquely identifies the job.

        ``request.folder`` holds the temporary folder and ``request.files`` the remote
        paths when called through :func:`farm_adapters.submit`. A successful return
        guarantees the farm has the job: it appears in :meth:`get_jobs` and
        :meth:`get_job` finds it. A job is never submitted twice for one call.

        Raises :class:`~farm_adapters.errors.InvalidRequestError` (naming the field) for
        a request this farm cannot run, :class:`~farm_adapters.errors.SubmitError` when
        the farm did not take it (``transient`` says whether to retry).
        """

    def refuse_unsupported(self, request: JobRequest) -> None:
        """Raise :class:`~farm_adapters.errors.InvalidRequestError` naming the field and
        the capability when ``request`` asks for what this backend lacks (``after``
        without :attr:`Capability.DEPENDENCIES`, ``hold`` without
        :attr:`Capability.HOLD`): a request is refused, never accepted and ignored.
        :func:`farm_adapters.submit` calls it; a backend's ``submit_job`` may too."""
        from .errors import InvalidRequestError

        wants = (
            ("after", bool(request.after), Capability.DEPENDENCIES, "make a job wait for others"),
            ("hold", request.hold, Capability.HOLD, "submit a job held"),
        )
        for field, asked, capability, what in wants:
            if asked and capability not in self.capabilities:
                raise InvalidRequestError(
                    f"{field}: backend {self.name!r} (target {self.target!r}) cannot {what} "
                    f"(capability {capability!s}); remove `{field}`, or use a target whose "
                    f"backend lists the {capability!s} capability",
                    field=field,
                )

    def native_payloads(self, request: JobRequest) -> list[dict[str, Any]]:
        """Exactly what :meth:`submit_job` would send for ``request``, without sending it.

        Optional (:attr:`Capability.DRY_RUN`). Raises
        :class:`~farm_adapters.errors.InvalidRequestError` like :meth:`submit_job`.
        """
        raise UnsupportedOperationError(f"backend {self.name!r} has no dry run")

    def native_dependencies(self, after: Sequence[Dependency]) -> list[str]:
        """What the farm waits on for a request's ``after`` list (native references).

        Optional (:attr:`Capability.DEPENDENCIES`): a backend without it has every request
        with ``after`` refused by :func:`farm_adapters.submit`. Raises
        :class:`~farm_adapters.errors.InvalidRequestError` (field ``after``) for a job
        it cannot wait for.
        """
        raise UnsupportedOperationError(f"backend {self.name!r} cannot wait for other jobs")

    # -- information -------------------------------------------------------------------

    @abstractmethod
    def get_job(self, job_id: str) -> Job:
        """The current view of one job.

        Raises :class:`~farm_adapters.errors.JobNotFoundError` for an unknown id.
        """

    def get_job_state(self, job_id: str) -> JobState:
        """The job's current :class:`~farm_adapters.models.JobState`.

        Raises :class:`~farm_adapters.errors.JobNotFoundError` for an unknown id.
        """
        return self.get_job(job_id).state

    @abstractmethod
    def get_jobs(self, states: Sequence[JobState] | None = None) -> list[Job]:
        """The jobs this backend knows, newest first, optionally only in ``states``.

        Uses one round trip to the farm where the farm allows it.
        """

    def get_render_log(self, job_id: str, offset: int = 0) -> LogChunk:
        """The job's render log from byte ``offset``; pass ``next_offset`` back to tail.

        Optional (:attr:`Capability.RENDER_LOG`). Raises
        :class:`~farm_adapters.errors.JobNotFoundError` for an unknown id.
        """
        raise UnsupportedOperationError(f"backend {self.name!r} cannot read render logs")

    def get_render_log_filename(self, job_id: str) -> str | None:
        """A local path to the job's render log that grows as the job runs (for a DCC's
        log panel to watch), or None while it does not exist yet.

        Optional (:attr:`Capability.RENDER_LOG_FILENAME`).
        """
        raise UnsupportedOperationError(f"backend {self.name!r} has no local render log file")

    # -- control -----------------------------------------------------------------------

    def stop_job(self, job_id: str) -> None:
        """Ask the farm to stop the job. Returns once the stop is requested; the job
        goes through STOPPING to STOPPED. Stopping a final job does nothing.

        Optional (:attr:`Capability.STOP`). Raises
        :class:`~farm_adapters.errors.JobNotFoundError` for an unknown id.
        """
        raise UnsupportedOperationError(f"backend {self.name!r} cannot stop jobs")

    def restart_job(self, job_id: str) -> None:
        """Run a final job again (a new attempt; the earlier attempt's log is kept).

        Optional (:attr:`Capability.RESTART`). Raises
        :class:`~farm_adapters.errors.JobNotFoundError` for an unknown id and
        :class:`~farm_adapters.errors.InvalidRequestError` when the job is still active.
        """
        raise UnsupportedOperationError(f"backend {self.name!r} cannot restart jobs")

    def release_job(self, job_id: str) -> None:
        """Let a job submitted with ``hold`` run. Releasing a job that is not held does
        nothing.

        Optional (:attr:`Capability.HOLD`): a backend without it has every request with
        ``hold`` refused by :func:`farm_adapters.submit`. Raises
        :class:`~farm_adapters.errors.JobNotFoundError` for an unknown id.
        """
        raise UnsupportedOperationError(
            f"backend {self.name!r} cannot hold or release jobs (capability {Capability.HOLD})"
        )

    def set_priority(self, job_id: str, priority: int) -> None:
        """Change a submitted job's priority (0 lowest, 100 highest, mapped as at
        submit); tasks not yet started are scheduled by the new value.

        Optional (:attr:`Capability.PRIORITY`). Raises
        :class:`~farm_adapters.errors.JobNotFoundError` for an unknown id and
        :class:`~farm_adapters.errors.InvalidRequestError` (field ``priority``) for a
        value outside 0-100.
        """
        raise UnsupportedOperationError(
            f"backend {self.name!r} cannot change a job's priority after submit "
            f"(capability {Capability.PRIORITY})"
        )

    def list_outputs(self, job_id: str) -> list[OutputFile]:
        """The files the job wrote: the request's ``outputs`` (``{frame}`` substituted
        per frame; a folder stands for the files in it) and the render-context folder,
        read through the target's storage and path mappings.

        The core provides it for every backend from the journal's record of the
        request (:attr:`Capability.OUTPUTS`); a backend that knows better overrides it.
        Raises :class:`~farm_adapters.errors.JobNotFoundError` when the job is not in
        this machine's journal.
        """
        from .outputs import list_outputs

        return list_outputs(self, job_id)

    def delete_job(self, job_id: str) -> None:
        """Forget a final job on the farm: its record, state and logs (archived where
        the farm archives rather than deletes). The render-context folder and the
        journal row are removed by :func:`farm_adapters.cleanup.delete`, not here.

        Optional (:attr:`Capability.DELETE`). Raises
        :class:`~farm_adapters.errors.JobNotFoundError` for an unknown id and
        :class:`~farm_adapters.errors.InvalidRequestError` for a job still active.
        """
        raise UnsupportedOperationError(
            f"backend {self.name!r} cannot delete jobs (capability {Capability.DELETE})"
        )

    # -- test --------------------------------------------------------------------------

    @abstractmethod
    def check(self) -> list[CheckResult]:
        """Self-test: reachability, authentication, storage writable. Never raises for
        a failed check; each failure is a :class:`~farm_adapters.models.CheckResult`
        with ``ok=False`` and a detail that says what to do."""
