"""Each configured target as a Katana ``FarmAPI.BaseFarmPlugin`` subclass.

:func:`build_registry` is what the plug-in file in ``Resources/Plugins`` calls when
Katana imports it: one class per target of the targets file (``local`` always), in a
``PluginRegistry`` list. Each class delegates to a :class:`TargetBridge`, which drives
our backend through Katana's stages in Katana's order:

1. ``createTemporaryFolder(context)`` -> :meth:`FarmPlugin.create_temporary_folder`;
   ``copyRenderFiles(context, paths)`` -> :meth:`FarmPlugin.copy_render_files` into it;
2. ``getInstallationMetadata()`` and ``getEnvironmentForJob(context)``;
3. ``submitJob(jobRequest)`` -> :func:`farm_adapters.submit` with the folder, files and
   environment of that render context (recorded in the journal like any submission);

then information (``getJobs``, ``getJobState``, ``getRenderLogFilename``), control
(``stopJob``, ``restartJob``) and ``test``. Optional methods a target's backend cannot
do are left off its class, so Katana disables them. Our errors become
``FarmAPI.JobNotFoundException`` / ``FarmAPI.FarmPluginException``.

Every Katana name comes from :mod:`.names`.
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ...errors import FarmAdapterError, InvalidRequestError, JobNotFoundError
from ...models import CheckResult, Job, JobRequest
from . import names

__all__ = [
    "CATALOG_ENV",
    "TargetBridge",
    "build_registry",
    "catalog_server_check",
    "make_plugin_class",
    "missing_names",
]

#: ``host:port`` of the workstation's Catalog Server, for the reachability check.
CATALOG_ENV = "FARM_ADAPTERS_KATANA_CATALOG"


def _farm_api(module: ModuleType | None) -> ModuleType:
    if module is not None:
        return module
    import importlib

    return importlib.import_module(names.MODULE.katana)


def missing_names(farm_api: ModuleType | None = None) -> list[str]:
    """The names of :mod:`.names` that this ``FarmAPI`` lacks (a Katana install checks
    the guesses with this; an empty list means every checkable name exists)."""
    api = _farm_api(farm_api)
    missing = []
    base = getattr(api, names.BASE_CLASS.katana, None)
    if base is None:
        return [f"{names.MODULE.katana}.{names.BASE_CLASS.katana}"]
    for dotted in (
        names.JOB_CLASS.katana,
        names.PLUGIN_EXCEPTION.katana,
        names.JOB_NOT_FOUND_EXCEPTION.katana,
    ):
        if not hasattr(api, dotted):
            missing.append(f"{names.MODULE.katana}.{dotted}")
    if not hasattr(base, names.INSTALLATION_METADATA.katana):
        missing.append(f"{names.BASE_CLASS.katana}.{names.INSTALLATION_METADATA.katana}")
    for method in names.METHODS.values():
        if not hasattr(base, method.katana):
            missing.append(f"{names.BASE_CLASS.katana}.{method.katana}")
    state = getattr(getattr(api, names.JOB_CLASS.katana, None), names.STATE_ENUM.katana, None)
    if state is None:
        missing.append(f"{names.JOB_CLASS.katana}.{names.STATE_ENUM.katana}")
    else:
        for member in names.JOB_STATES.values():
            if not hasattr(state, member):
                missing.append(f"{names.JOB_CLASS.katana}.{names.STATE_ENUM.katana}.{member}")
    return missing


def catalog_server_check(backend_name: str, address: str | None = None) -> CheckResult:
    """Can the render node reach the workstation's Catalog Server (needed by Preview
    and Live renders, not by Disk renders)?

    Tested with a TCP connection when the render node is this machine (``local``);
    otherwise it cannot be tested from here and the result says so.
    """
    address = address if address is not None else os.environ.get(CATALOG_ENV, "")
    if not address:
        return CheckResult(
            name="catalog server",
            ok=True,
            detail=(
                f"not tested: set {CATALOG_ENV}=host:port to the Catalog Server; "
                "Preview and Live renders need the render node to reach it, Disk "
                "renders do not"
            ),
        )
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit():
        return CheckResult(
            name="catalog server",
            ok=False,
            detail=f"{CATALOG_ENV}={address!r} is not host:port, e.g. workstation01:9000",
        )
    if backend_name != "local":
        return CheckResult(
            name="catalog server",
            ok=True,
            detail=(
                f"not tested: the render nodes of a {backend_name} target must reach "
                f"{address} over TCP for Preview and Live renders; this workstation "
                "cannot check that from here"
            ),
        )
    try:
        with socket.create_connection((host, int(port_text)), timeout=5):
            pass
    except OSError as exc:
        return CheckResult(
            name="catalog server",
            ok=False,
            detail=f"{address} is not reachable from the render node (this machine): {exc}",
        )
    return CheckResult(name="catalog server", ok=True, detail=f"{address} is reachable")


def _read(request: Any, candidates: Sequence[str]) -> Any:
    """A field of Katana's JobRequest: an attribute, a getter or a mapping key."""
    for candidate in candidates:
        if isinstance(request, Mapping) and candidate in request:
            return request[candidate]
        value = getattr(request, candidate, None)
        if value is None:
            continue
        return value() if callable(value) else value
    return None


def _commands(raw: Any) -> list[list[str]]:
    """Katana's ordered commands as argv lists; a string command is split like a
    shell would split it, but never run through a shell."""
    if not raw:
        raise InvalidRequestError("the job request has no commands", field="commands")
    if isinstance(raw, str):
        raw = [raw]
    out = []
    for i, command in enumerate(raw):
        if isinstance(command, str):
            try:
                out.append(shlex.split(command))
            except ValueError as exc:
                raise InvalidRequestError(
                    f"commands[{i}]: {exc}: {command!r}", field=f"commands.{i}"
                ) from None
        else:
            out.append([str(a) for a in command])
    return out


@dataclass
class _Context:
    folder: str | None = None
    remote: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)


class TargetBridge:
    """Our side of one Katana plug-in: a target's backend, Katana's stages, and the
    per-render-context state between them. Thread-safe."""

    def __init__(self, target: str, farm_api: ModuleType, config: Any = None) -> None:
        self.target = target
        self.farm_api = farm_api
        self._config = config
        self._backend: Any = None
        self._lock = threading.Lock()
        self._contexts: dict[str, _Context] = {}

    @property
    def backend(self) -> Any:
        with self._lock:
            if self._backend is None:
                from ... import get_plugin_manager
                from ...config import load_targets

                config = self._config if self._config is not None else load_targets()
                self._backend = config.get(self.target).create_backend(get_plugin_manager())
            return self._backend

    def _context(self, render_context: str) -> _Context:
        with self._lock:
            return self._contexts.setdefault(str(render_context), _Context())

    # 1. temporary render files
    def create_temporary_folder(self, render_context: str) -> str:
        folder = self.backend.create_temporary_folder(str(render_context))
        self._context(render_context).folder = folder
        return str(folder)

    def copy_render_files(self, render_context: str, paths: Sequence[str]) -> list[str]:
        ctx = self._context(render_context)
        if ctx.folder is None:
            ctx.folder = self.create_temporary_folder(render_context)
        remote = self.backend.copy_render_files([str(p) for p in paths], ctx.folder)
        ctx.remote.extend(remote)
        return list(remote)

    # 2. environment
    def get_installation_metadata(self) -> Any:
        ours = self.backend.get_installation_metadata()
        base = getattr(self.farm_api, names.BASE_CLASS.katana)
        cls = getattr(base, names.INSTALLATION_METADATA.katana)
        metadata = cls()
        for field_name, katana_name in names.INSTALLATION_METADATA_FIELDS.items():
            setattr(metadata, katana_name, getattr(ours, field_name))
        return metadata

    def get_environment_for_job(self, render_context: str) -> dict[str, str]:
        probe = JobRequest(commands=[["true"]], render_context=str(render_context))  # type: ignore[list-item]
        environment = dict(self.backend.get_environment_for_job(probe))
        self._context(render_context).environment = environment
        return environment

    # 3. submit
    def submit_job(self, job_request: Any) -> str:
        from ...submit import submit

        render_context = _read(job_request, names.JOB_REQUEST_FIELDS["render_context"])
        if not render_context:
            raise InvalidRequestError(
                "the job request has no render context; Katana allocates one per render",
                field="render_context",
            )
        ctx = self._context(render_context)
        if ctx.folder is None:
            self.create_temporary_folder(render_context)
        environment = {
            **ctx.environment,
            **{
                str(k): str(v)
                for k, v in (
                    _read(job_request, names.JOB_REQUEST_FIELDS["environment"]) or {}
                ).items()
            },
        }
        request = JobRequest(
            name=str(_read(job_request, names.JOB_REQUEST_FIELDS["name"]) or ""),
            render_context=str(render_context),
            commands=_commands(_read(job_request, names.JOB_REQUEST_FIELDS["commands"])),  # type: ignore[arg-type]
            environment=environment,
            metadata={"dcc": "katana", "render_files": ctx.remote},
        )
        job = submit(self.backend, request)
        assert isinstance(job, Job)
        return job.id

    # information
    def _state_member(self, job: Job) -> Any:
        enum = getattr(getattr(self.farm_api, names.JOB_CLASS.katana), names.STATE_ENUM.katana)
        member = names.JOB_STATES[job.state]
        try:
            return getattr(enum, member)
        except AttributeError:
            raise FarmAdapterError(
                f"Katana's Job.State has no member {member!r}; correct JOB_STATES in "
                "farm_adapters/dcc/katana/names.py"
            ) from None

    def get_jobs(self) -> list[Any]:
        job_cls = getattr(self.farm_api, names.JOB_CLASS.katana)
        out = []
        for job in self.backend.get_jobs():
            values = {"id": job.id, "name": job.name, "state": self._state_member(job)}
            out.append(job_cls(**{names.JOB_FIELDS[k]: v for k, v in values.items()}))
        return out

    def get_job_state(self, job_id: str) -> Any:
        return self._state_member(self.backend.get_job(str(job_id)))

    def get_render_log_filename(self, job_id: str) -> str | None:
        name = self.backend.get_render_log_filename(str(job_id))
        return None if name is None else str(name)

    # control
    def stop_job(self, job_id: str) -> None:
        self.backend.stop_job(str(job_id))

    def restart_job(self, job_id: str) -> None:
        self.backend.restart_job(str(job_id))

    # test
    def test(self) -> tuple[bool, str]:
        """``(all passed, one line per check)``."""
        results: list[CheckResult] = list(self.backend.check())
        results.append(catalog_server_check(self.backend.name))
        lines = [f"{'ok' if r.ok else 'FAILED'}: {r.name}: {r.detail}" for r in results]
        return all(r.ok for r in results), "\n".join(lines)

    def close(self) -> None:
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None


def _katana_method(operation: str, method: names.Method) -> Callable[..., Any]:
    """A Katana-named method that binds Katana's arguments (by position or Katana's
    keyword) to ours, calls the bridge, and turns our errors into Katana's."""
    ours = [o for o, _ in method.args]
    by_katana = {k: o for o, k in method.args}

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        api = self._farm_adapters_bridge.farm_api
        if len(args) > len(ours):
            raise TypeError(f"{method.katana}() takes {len(ours)} arguments, got {len(args)}")
        bound = dict(zip(ours, args, strict=False))
        for key, value in kwargs.items():
            bound[by_katana.get(key, key)] = value
        try:
            return getattr(self._farm_adapters_bridge, operation)(**bound)
        except JobNotFoundError as exc:
            raise getattr(api, names.JOB_NOT_FOUND_EXCEPTION.katana)(str(exc)) from exc
        except FarmAdapterError as exc:
            raise getattr(api, names.PLUGIN_EXCEPTION.katana)(str(exc)) from exc

    call.__name__ = method.katana
    call.__qualname__ = method.katana
    call.__doc__ = f"Katana's {method.katana}: farm-adapters' {operation}."
    return call


def make_plugin_class(
    target: str,
    farm_api: ModuleType | None = None,
    *,
    capabilities: frozenset[str] | None = None,
    config: Any = None,
    description: str = "",
) -> type:
    """A ``FarmAPI.BaseFarmPlugin`` subclass for ``target``.

    ``capabilities`` (values of :class:`~farm_adapters.plugin.Capability`) decide which
    optional methods the class has; None keeps them all.
    """
    api = _farm_api(farm_api)
    base = getattr(api, names.BASE_CLASS.katana)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, **kwargs)
        self._farm_adapters_bridge = TargetBridge(target, api, config)

    namespace: dict[str, Any] = {
        "__init__": __init__,
        "__doc__": f"farm-adapters target {target!r}" + (f": {description}" if description else ""),
        "__module__": __name__,
        "farm_adapters_target": target,
    }
    for operation, method in names.METHODS.items():
        needed = names.OPTIONAL_METHODS.get(operation)
        if needed is not None and capabilities is not None and needed not in capabilities:
            continue
        namespace[method.katana] = _katana_method(operation, method)
    safe = "".join(c if c.isalnum() else "_" for c in target)
    return type(f"FarmAdapters_{safe}", (base,), namespace)


def build_registry(
    farm_api: ModuleType | None = None, config_path: str | None = None
) -> list[tuple[str, float, str, type]]:
    """``PluginRegistry`` entries, one per configured target (``local`` always).

    A target whose backend cannot load is left out, with a warning on the log, so one
    bad target does not hide the others.
    """
    import logging

    from ... import get_plugin_manager
    from ...config import load_targets

    api = _farm_api(farm_api)
    config = load_targets(config_path)
    manager = get_plugin_manager()
    registry: list[tuple[str, float, str, type]] = []
    for target in config:
        try:
            cls = manager.get_backend_class(target.backend)
        except FarmAdapterError as exc:
            logging.getLogger(__name__).warning(
                "farm-adapters: target %s left out of Katana: %s", target.name, exc
            )
            continue
        caps = frozenset(str(c) for c in cls.capabilities)
        plugin = make_plugin_class(
            target.name, api, capabilities=caps, config=config, description=target.description
        )
        registry.append(
            (
                names.REGISTRY_KIND.katana,
                names.REGISTRY_VERSION,
                f"farm-adapters: {target.name}",
                plugin,
            )
        )
    return registry
