"""Finding and loading backends: :func:`get_plugin_manager`.

Order: entry points of the ``farm_adapters`` group (the built-ins are listed there like
any studio package), then resource directories (``FARM_ADAPTERS_RESOURCES`` and any the
caller passes), then plug-in objects passed in code; then ``check_pending()`` so a
misspelt hook is reported instead of silently ignored.

Nothing here is fatal: a plug-in that fails to import, registers a bad class or
misspells a hook is recorded in :attr:`FarmPluginManager.errors` with its traceback and
skipped; asking for its backend raises an error chained to the original. Two sources
claiming one backend name make that name unusable until one is removed or blocked, and
the error names both.

``FARM_ADAPTERS_DISABLE_AUTOLOAD=1`` skips entry points (built-ins included);
``FARM_ADAPTERS_BLOCK`` (comma- or ``os.pathsep``-separated) blocks plug-ins before they
are imported: entry points by name (the built-ins are ``local``, ``ovfarm``,
``runai``), resource files by file stem or full path. Blocking a built-in is how a
studio plug-in takes over its backend name.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import (
    BackendNotFoundError,
    BackendUnavailableError,
    PluginConflictError,
    PluginError,
    PluginLoadError,
)
from .plugin import Availability, FarmPlugin
from .resources import (
    load_plugin_file,
    plugin_files,
    registry_entries,
    resource_dirs_from_env,
)

__all__ = [
    "AUTOLOAD_ENV",
    "BLOCK_ENV",
    "BackendInfo",
    "FarmPluginManager",
    "get_plugin_manager",
]

_log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
AUTOLOAD_ENV = "FARM_ADAPTERS_DISABLE_AUTOLOAD"
BLOCK_ENV = "FARM_ADAPTERS_BLOCK"


class BackendInfo:
    """One backend as the manager sees it: where it came from and whether it works.

    A backend registered by reference (``"package.module:Class"``) is imported on the
    first use of :attr:`cls`; its availability comes from the function registered with
    it, so listing backends imports none of them.
    """

    __slots__ = (
        "_availability",
        "_availability_fn",
        "_cls",
        "_display_name",
        "_ref",
        "error",
        "name",
        "origin",
    )

    def __init__(
        self,
        name: str,
        origin: str,
        cls: type[FarmPlugin] | None = None,
        error: PluginError | None = None,
        *,
        ref: str | None = None,
        availability: Callable[[], Availability] | None = None,
        display_name: str = "",
    ) -> None:
        self.name = name
        self.origin = origin
        self._cls = cls
        self._ref = ref
        self.error = error
        self._availability: Availability | None = None
        self._availability_fn = availability
        self._display_name = display_name

    def __repr__(self) -> str:
        return f"BackendInfo(name={self.name!r}, origin={self.origin!r}, cls={self._cls!r})"

    @property
    def cls(self) -> type[FarmPlugin] | None:
        """The backend class (imported now if it was registered by reference)."""
        if self._cls is None and self._ref is not None and self.error is None:
            try:
                module_name, _, attr = self._ref.partition(":")
                module = importlib.import_module(module_name)
                cls = getattr(module, attr)
                if not (isinstance(cls, type) and issubclass(cls, FarmPlugin)):
                    raise TypeError(f"{self._ref} is not a farm_adapters.FarmPlugin subclass")
                self._cls = cls
            except Exception as exc:
                details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                error = PluginLoadError(
                    f"cannot load backend {self.name!r} ({self._ref}) from {self.origin}: "
                    f"{type(exc).__name__}: {exc}",
                    origin=self.origin,
                    details=details,
                )
                error.__cause__ = exc
                self.error = error
        return self._cls

    @property
    def availability(self) -> Availability:
        """Computed once, on first use (it may probe for optional dependencies)."""
        if self._availability is None:
            probe = self._availability_fn
            if probe is None and self.cls is not None:
                probe = self.cls.availability
            if self.error is not None or probe is None:
                self._availability = Availability(False, str(self.error))
            else:
                try:
                    self._availability = probe()
                except Exception as exc:  # a plug-in's own bug must not break listing
                    self._availability = Availability(
                        False, f"availability() raised {type(exc).__name__}: {exc}"
                    )
        return self._availability

    @property
    def available(self) -> bool:
        return self.availability.available

    @property
    def reason(self) -> str:
        return self.availability.reason

    @property
    def display_name(self) -> str:
        if self._display_name:
            return self._display_name
        return (self._cls.display_name if self._cls else "") or self.name


class FarmPluginManager:
    """The loaded plug-ins and the backends they register.

    Build one with :func:`get_plugin_manager`; each call gives a fresh, independent
    manager (tests rely on that). :attr:`pm` is the underlying
    :class:`pluggy.PluginManager`, through which hooks are called.
    """

    def __init__(self, *, blocked: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.blocked = frozenset(blocked)
        #: Every plug-in that failed to load or register, in load order.
        self.errors: list[PluginError] = []
        self._origins: dict[str, str] = {}
        self._backends: dict[str, BackendInfo] = {}
        self._registry: list[tuple[str, type[FarmPlugin] | Any, str]] = []
        self._collected = False
        #: Called with one line when a hook implementation raises; the failure is
        #: isolated (other implementations still run). Default: a logged warning.
        self.on_hook_error: Callable[[str], None] = _log.warning

    # -- loading -----------------------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Register every entry point of ``group`` that is not blocked."""
        seen: set[str] = set()
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            where = f" from {dist.name} {dist.version}" if dist is not None else ""
            origin = f"entry point {ep.name} = {ep.value}{where}"
            if ep.name in self.blocked or ep.name in seen:
                continue
            seen.add(ep.name)
            try:
                plugin = ep.load()
            except Exception as exc:
                self._record_load_error(f"cannot load {origin}", origin, exc)
                continue
            self._register(plugin, name=f"entry point {ep.name}", origin=origin)

    def load_resources(self, dirs: Iterable[str | os.PathLike[str]]) -> None:
        """Load every ``<dir>/Plugins/*.py`` of ``dirs``, in order."""
        for path in plugin_files(dirs):
            origin = str(path)
            if path.stem in self.blocked or origin in self.blocked:
                continue
            try:
                module = load_plugin_file(path)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit from a plug-in file is its bug too
                self._record_load_error(f"cannot load plug-in file {path}", origin, exc)
                continue
            try:
                entries = registry_entries(module)
            except ValueError as exc:
                self._record_load_error(f"bad PluginRegistry in {path}: {exc}", origin, exc)
                entries = []
            for entry in entries:
                self._registry.append((entry.name, entry.cls, origin))
            self._register(module, name=f"file {path}", origin=origin)

    def register(self, plugin: object, *, name: str | None = None) -> None:
        """Register a plug-in object (module or instance with hook implementations) in
        code, as a DCC or a test does."""
        label = name or getattr(plugin, "__name__", None) or repr(plugin)
        self._register(plugin, name=f"plug-in {label}", origin=f"plug-in {label}")
        self._collected = False

    def _register(self, plugin: object, *, name: str, origin: str) -> None:
        if self.pm.is_registered(plugin):
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._record_load_error(f"cannot register {origin}: {exc}", origin, exc)
            return
        self._origins[name] = origin

    def _record_load_error(self, message: str, origin: str, exc: BaseException) -> None:
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error = PluginLoadError(
            f"{message}: {type(exc).__name__}: {exc}", origin=origin, details=details
        )
        error.__cause__ = exc
        self.errors.append(error)

    def check_pending(self) -> None:
        """Record (and unregister) plug-ins implementing hooks that do not exist."""
        for hook_name in dir(self.pm.hook):
            if hook_name.startswith("_"):
                continue
            caller = getattr(self.pm.hook, hook_name)
            if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                origin = self._origins.get(impl.plugin_name, impl.plugin_name)
                exc = pluggy.PluginValidationError(
                    impl.plugin,
                    f"unknown hook {hook_name!r} in {origin}; the hooks are "
                    + ", ".join(n for n in dir(hookspecs) if n.startswith("farm_adapters_")),
                )
                self._record_load_error(f"unknown hook {hook_name!r}", origin, exc)
                if self.pm.is_registered(impl.plugin):
                    self.pm.unregister(impl.plugin)

    # -- backends ----------------------------------------------------------------------

    def _collect(self) -> None:
        if self._collected:
            return
        self._collected = True
        self._backends = {}
        for impl in self.pm.hook.farm_adapters_register_backends.get_hookimpls():
            origin = self._origins.get(impl.plugin_name, impl.plugin_name)

            def register(
                cls: Any,
                name: str | None = None,
                *,
                availability: Callable[[], Availability] | None = None,
                display_name: str = "",
                _origin: str = origin,
            ) -> None:
                self._add_backend(
                    cls, name, _origin, availability=availability, display_name=display_name
                )

            try:
                impl.function(register=register)
            except Exception as exc:  # a plug-in's bug is recorded, never raised
                self._record_load_error(f"{origin} failed to register its backends", origin, exc)
        for name, cls, origin in self._registry:
            self._add_backend(cls, name, origin)

    def _add_backend(
        self,
        cls: Any,
        name: str | None,
        origin: str,
        *,
        availability: Callable[[], Availability] | None = None,
        display_name: str = "",
    ) -> None:
        if isinstance(cls, str):  # "package.module:Class", imported on first use
            if ":" not in cls or not name:
                exc = TypeError(
                    f"register({cls!r}) needs the form 'package.module:Class' and a name="
                )
                self._record_load_error(f"{origin} registered {cls!r}", origin, exc)
                return
            self._store(
                BackendInfo(
                    name=name,
                    origin=origin,
                    ref=cls,
                    availability=availability,
                    display_name=display_name,
                )
            )
            return
        if not (isinstance(cls, type) and issubclass(cls, FarmPlugin)):
            exc = TypeError(f"{cls!r} is not a farm_adapters.FarmPlugin subclass")
            self._record_load_error(f"{origin} registered {cls!r}", origin, exc)
            return
        name = name or cls.name
        if not name:
            exc = TypeError(f"{cls.__qualname__} has no `name`")
            self._record_load_error(f"{origin} registered a backend without a name", origin, exc)
            return
        self._store(
            BackendInfo(
                name=name,
                origin=origin,
                cls=cls,
                availability=availability,
                display_name=display_name,
            )
        )

    def _store(self, info: BackendInfo) -> None:
        name, origin = info.name, info.origin
        existing = self._backends.get(name)
        if existing is None:
            self._backends[name] = info
            return
        if existing.origin == origin and (existing._ref, existing._cls) == (info._ref, info._cls):
            return
        origins = [
            *(
                existing.error.origins
                if isinstance(existing.error, PluginConflictError)
                else (existing.origin,)
            ),
            origin,
        ]
        conflict = PluginConflictError(
            f"backend {name!r} is registered by more than one plug-in: "
            + " and ".join(origins)
            + f"; remove one, or block one with {BLOCK_ENV}",
            name=name,
            origins=origins,
        )
        if not isinstance(existing.error, PluginConflictError):
            self.errors.append(conflict)
        else:
            self.errors[self.errors.index(existing.error)] = conflict
        self._backends[name] = BackendInfo(
            name=name, origin=" and ".join(origins), cls=None, error=conflict
        )

    def list_backends(self) -> list[BackendInfo]:
        """Every registered backend, by name, with its origin and availability."""
        self._collect()
        return [self._backends[n] for n in sorted(self._backends)]

    def get_backend_class(self, name: str) -> type[FarmPlugin]:
        """The class registered under ``name``.

        Raises :class:`~farm_adapters.errors.BackendNotFoundError` (unknown or blocked;
        chained to the load error when a plug-in that may have held it failed) and
        :class:`~farm_adapters.errors.PluginConflictError`.
        """
        self._collect()
        info = self._backends.get(name)
        if info is None:
            if name in self.blocked:
                raise BackendNotFoundError(
                    f"backend {name!r} is blocked ({BLOCK_ENV} or block=); unblock it to use it"
                )
            known = ", ".join(sorted(self._backends)) or "none"
            hint = ""
            cause: BaseException | None = None
            if self.errors:
                cause = self.errors[0]
                hint = (
                    f"; {len(self.errors)} plug-in(s) failed to load, see `farm-adapters backends`"
                )
            raise BackendNotFoundError(
                f"no backend named {name!r} (known: {known}){hint}"
            ) from cause
        cls = info.cls  # imports a backend registered by reference
        if info.error is not None:
            raise info.error
        assert cls is not None
        return cls

    def create_backend(
        self, name: str, settings: Mapping[str, Any] | None = None, *, target: str | None = None
    ) -> FarmPlugin:
        """An instance of backend ``name`` built from ``settings`` (validated).

        Raises :class:`~farm_adapters.errors.BackendUnavailableError` with the reason
        when the backend cannot be used here.
        """
        cls = self.get_backend_class(name)
        availability = cls.availability()
        if not availability.available:
            raise BackendUnavailableError(
                f"backend {name!r} is not available: {availability.reason}"
            )
        return cls(settings, target=target)

    # -- hooks -------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        """The pluggy hook relay (``manager.hook.farm_adapters_job_state_changed(...)``)."""
        return self.pm.hook

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of a notification hook, each in isolation.

        An implementation that raises is reported through :attr:`on_hook_error` (one
        line naming the plug-in and its origin) and the next one still runs: a broken
        notifier must not stop a wait on a job already on the farm.
        """
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):  # pluggy's order: last registered first
            if impl.hookwrapper or getattr(impl, "wrapper", False):
                continue
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames if name in kwargs})
            except Exception as exc:
                origin = self._origins.get(impl.plugin_name, impl.plugin_name)
                self.on_hook_error(
                    f"hook {hook_name} of {origin} raised {type(exc).__name__}: {exc}; "
                    f"ignored (a bug in that plug-in)"
                )

    def blame(self, exc: BaseException) -> str | None:
        """Which plug-in an unexpected exception came from, as ``"backend 'x' from
        <origin>"`` or ``"plug-in <origin>"``; None when no plug-in code is on its
        traceback (then it is farm-adapters' own bug).

        The innermost frame that belongs to a plug-in's module (or that module's
        package) decides.
        """
        backends = [info for info in self._backends.values() if info._cls is not None]
        owners: list[tuple[str, str]] = [  # (module prefix, description)
            (_owning_package(info._cls.__module__), f"backend {info.name!r} from {info.origin}")
            for info in backends
            if info._cls is not None
        ]
        for plugin in self.pm.get_plugins():
            module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
            name = self.pm.get_name(plugin) or ""
            owners.append((_owning_package(module), f"plug-in {self._origins.get(name, name)}"))
        frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
        for frame in reversed(frames):
            module = frame.f_globals.get("__name__", "")
            if not any(p and (module == p or module.startswith(p + ".")) for p, _ in owners):
                continue
            # One file may hold several backends: the instance the frame runs on decides.
            this = frame.f_locals.get("cls")  # a classmethod such as availability()
            if not isinstance(this, type):
                this = type(frame.f_locals.get("self"))
            for info in backends:
                if info._cls is this:
                    return f"backend {info.name!r} from {info.origin}"
            for prefix, who in owners:
                if prefix and (module == prefix or module.startswith(prefix + ".")):
                    return who
        return None


def _owning_package(module: str) -> str:
    """The package a plug-in module belongs to (the module itself when it is top-level
    or a package); never the core ``farm_adapters`` package itself."""
    loaded = sys.modules.get(module)
    if loaded is not None and hasattr(loaded, "__path__"):
        return module
    package = module.rpartition(".")[0]
    if not package or package == "farm_adapters":
        return module
    return package


def _split_names(value: str) -> list[str]:
    return [n.strip() for n in value.replace(os.pathsep, ",").split(",") if n.strip()]


def get_plugin_manager(
    *,
    resources: Sequence[str | os.PathLike[str]] = (),
    plugins: Sequence[object] = (),
    block: Iterable[str] = (),
    autoload: bool | None = None,
    use_env_resources: bool = True,
    env: Mapping[str, str] | None = None,
) -> FarmPluginManager:
    """Build a fresh :class:`FarmPluginManager` with every plug-in loaded.

    ``resources``: extra resource directories (a DCC passes its own), loaded after
    ``FARM_ADAPTERS_RESOURCES``. ``plugins``: plug-in objects registered last.
    ``block``: entry-point names and resource-file stems or paths to leave out (added to
    ``FARM_ADAPTERS_BLOCK``). ``autoload``: load entry points; default True unless
    ``FARM_ADAPTERS_DISABLE_AUTOLOAD`` is set.
    """
    env = os.environ if env is None else env
    blocked = {*block, *_split_names(env.get(BLOCK_ENV, ""))}
    if autoload is None:
        autoload = env.get(AUTOLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")
    manager = FarmPluginManager(blocked=blocked)
    if autoload:
        manager.load_entry_points()
    dirs: list[str | os.PathLike[str]] = []
    if use_env_resources:
        dirs.extend(resource_dirs_from_env(env))
    dirs.extend(Path(d) for d in resources)
    manager.load_resources(dirs)
    for plugin in plugins:
        manager.register(plugin)
    manager.check_pending()
    return manager
