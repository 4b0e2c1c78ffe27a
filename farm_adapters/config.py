"""Render targets: named backends with their settings, from a TOML file.

The file is the first that exists of: the ``--config`` path, ``$FARM_ADAPTERS_CONFIG``,
``./farm-adapters.toml``, then ``farm-adapters.toml`` in the user config directory
(platformdirs). With no file at all, the target ``local`` still exists.

.. code-block:: toml

    default_target = "studio-farm"

    [targets.studio-farm]
    backend = "ovfarm"
    description = "OVX render nodes"
    url = "https://farm.studio.example:8222"
    api_key = { env = "STUDIO_FARM_API_KEY" }

Every key of a target other than ``backend`` and ``description`` is a setting of the
backend, validated by its ``settings_model``. Secrets are references, never values:
``{ env = "VAR" }`` or ``{ keyring = "service", username = "user" }``; a backend's
secret settings (pydantic ``SecretStr`` fields) refuse a plain string. References are
resolved only when the target is used, and resolved values are never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, SecretNotFoundError, TargetNotFoundError

if TYPE_CHECKING:
    from .manager import FarmPluginManager
    from .plugin import FarmPlugin

__all__ = [
    "CONFIG_ENV",
    "Target",
    "TargetConfig",
    "config_search_path",
    "load_targets",
]

CONFIG_ENV = "FARM_ADAPTERS_CONFIG"
FILE_NAME = "farm-adapters.toml"
_TARGET_KEYS = ("backend", "description", "storage", "path_mappings")
_TOP_KEYS = ("default_target", "targets", "notify")


def _user_config_file() -> Path:
    from ._paths import user_dir

    return user_dir("config") / FILE_NAME


def config_search_path(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where a targets file is looked for, in order."""
    paths: list[Path] = []
    if explicit:
        paths.append(Path(explicit))
    if os.environ.get(CONFIG_ENV):
        paths.append(Path(os.environ[CONFIG_ENV]))
    paths.append(Path.cwd() / FILE_NAME)
    paths.append(_user_config_file())
    return paths


def _read_toml(path: Path) -> dict[str, Any]:
    from ._toml import TOMLDecodeError, TOMLEncodingError, read_toml

    try:
        return read_toml(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot read targets file {path}: {exc.strerror}") from exc
    except TOMLEncodingError as exc:
        raise ConfigurationError(f"targets file {exc}") from exc
    except TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc


def is_secret_reference(value: object) -> bool:
    return isinstance(value, Mapping) and ("env" in value or "keyring" in value)


def resolve_secret(value: Mapping[str, Any], *, where: str) -> str:
    """The value a secret reference points at. Raises SecretNotFoundError naming
    ``where`` (file, target, key) and the fix; never includes the value."""
    if "env" in value:
        var = value["env"]
        if not isinstance(var, str) or not var:
            raise ConfigurationError(f"{where}: env must name an environment variable")
        secret = os.environ.get(var)
        if not secret:
            raise SecretNotFoundError(
                f"{where} refers to environment variable {var}, which is not set; "
                f"export {var} before running"
            )
        return secret
    service = value.get("keyring")
    username = value.get("username", "")
    if not isinstance(service, str) or not service:
        raise ConfigurationError(f"{where}: keyring must name a keyring service")
    try:
        import keyring
    except ImportError as exc:
        raise SecretNotFoundError(
            f"{where} refers to keyring service {service!r} but the keyring package is "
            f'not installed; pip install keyring, or use {{ env = "VAR" }}'
        ) from exc
    secret = keyring.get_password(service, username)
    if not secret:
        raise SecretNotFoundError(
            f"{where} refers to keyring service {service!r} (user {username!r}), which "
            f"holds no password; store it with `keyring set {service} {username}`"
        )
    return str(secret)


def _lazy_secret(value: Mapping[str, Any], where: str) -> Any:
    """A pydantic ``SecretStr`` that resolves its reference only when the backend asks
    for the value, so commands that never need the secret (listing jobs, reading a log
    on a farm whose key is only needed to publish definitions) work without it."""
    from pydantic import SecretStr

    class LazySecret(SecretStr):
        def __init__(self) -> None:
            super().__init__("")
            self._resolved: str | None = None

        def get_secret_value(self) -> str:
            if self._resolved is None:
                self._resolved = resolve_secret(value, where=where)
            return self._resolved

        def __repr__(self) -> str:
            return "SecretStr('**********')"

        def __str__(self) -> str:
            return "**********"

    return LazySecret()


class Target:
    """One render target: a name, a backend and that backend's settings (secret
    references unresolved)."""

    __slots__ = (
        "backend",
        "description",
        "name",
        "notify",
        "path_mappings",
        "settings",
        "source",
        "storage",
    )

    def __init__(
        self,
        name: str,
        backend: str,
        settings: Mapping[str, Any] | None = None,
        *,
        description: str = "",
        source: Path | None = None,
        storage: Mapping[str, Any] | None = None,
        path_mappings: Sequence[Any] = (),
        notify: Any = None,
    ) -> None:
        self.name = name
        #: The file's [notify] sinks (a farm_adapters.notify.NotifyConfig), or None.
        self.notify = notify
        self.backend = backend
        self.settings = dict(settings or {})
        self.description = description
        self.source = source
        self.storage = dict(storage) if storage else None
        self.path_mappings = list(path_mappings)

    def __repr__(self) -> str:
        return f"Target({self.name!r}, backend={self.backend!r})"

    @property
    def where(self) -> str:
        return f"{self.source}: target {self.name!r}" if self.source else f"target {self.name!r}"

    def public_settings(self) -> dict[str, Any]:
        """The settings as written, safe to print: references stay references."""
        return {k: (dict(v) if is_secret_reference(v) else v) for k, v in self.settings.items()}

    def public_storage(self) -> dict[str, Any] | None:
        if self.storage is None:
            return None
        return {k: (dict(v) if is_secret_reference(v) else v) for k, v in self.storage.items()}

    def resolved_settings(
        self,
        secret_keys: frozenset[str] = frozenset(),
        table: Mapping[str, Any] | None = None,
        section: str = "",
        *,
        lazy: bool = False,
    ) -> dict[str, Any]:
        """Settings (or another ``table`` of the target) with every secret reference
        resolved. ``secret_keys`` must be references, never plain values. With ``lazy``,
        references of ``secret_keys`` become secrets resolved on first use."""
        out: dict[str, Any] = {}
        items = self.settings if table is None else table
        for key, value in items.items():
            where = f"{self.where}, key {section}{key!r}"
            if is_secret_reference(value):
                if lazy and key in secret_keys:
                    out[key] = _lazy_secret(value, where)
                else:
                    out[key] = resolve_secret(value, where=where)
            elif key in secret_keys and value is not None:
                raise ConfigurationError(
                    f'{where} is a secret: write {{ env = "VAR" }} (or a keyring '
                    f"reference) instead of the value itself"
                )
            else:
                out[key] = value
        return out

    def create_backend(self, manager: FarmPluginManager, **overrides: Any) -> FarmPlugin:
        """Build the backend for this target, settings validated. Secret settings
        (``SecretStr`` fields) are resolved when the backend first uses them, so a
        read-only call works without a secret only writes need. ``overrides`` replace
        settings the backend has (e.g. ``timeout=1, retries=0`` for a quick probe);
        those it does not have are ignored.

        Raises ConfigurationError (naming file, target and key), BackendNotFoundError,
        BackendUnavailableError, SecretNotFoundError.
        """
        from .errors import BackendNotFoundError, BackendUnavailableError

        try:
            cls = manager.get_backend_class(self.backend)
        except BackendNotFoundError as exc:
            raise BackendNotFoundError(f"{self.where}: {exc}") from exc.__cause__
        availability = cls.availability()
        if not availability.available:
            raise BackendUnavailableError(
                f"{self.where}: backend {self.backend!r} is not available: {availability.reason}"
            )
        settings = self.resolved_settings(_secret_fields(cls.settings_model), lazy=True)
        fields = getattr(cls.settings_model, "model_fields", {})
        settings.update({k: v for k, v in overrides.items() if k in fields})
        try:
            backend = cls(settings, target=self.name)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{self.source}: {exc}" if self.source else str(exc)) from None
        if self.storage is not None:
            from .transfer import make_transfer

            storage = self.resolved_settings(frozenset({"password"}), self.storage, "storage.")
            root = storage.pop("root", None)
            if storage.get("kind") != "local" and root is not None:
                storage["root"] = root  # remote transfers confine every path to it
            backend.storage = make_transfer(storage, target=self.name)
            backend.storage_root = root
        if self.path_mappings:
            from .pathmap import PathMapper

            backend.path_mapper = PathMapper(self.path_mappings)
        backend.notify = self.notify
        return backend


def _secret_fields(model: Any) -> frozenset[str]:
    from pydantic import SecretBytes, SecretStr

    names = set()
    for name, info in model.model_fields.items():
        annotation = info.annotation
        args = getattr(annotation, "__args__", ()) or ()
        if annotation in (SecretStr, SecretBytes) or any(
            a in (SecretStr, SecretBytes) for a in args
        ):
            names.add(name)
    return frozenset(names)


class TargetConfig:
    """The targets of one file (or none), ``local`` always included."""

    def __init__(
        self,
        targets: Mapping[str, Target],
        *,
        source: Path | None = None,
        default_target: str = "local",
    ) -> None:
        self.targets = dict(targets)
        self.source = source
        self.default_target = default_target
        self.targets.setdefault("local", Target("local", "local"))
        #: The file's [notify] sinks (a farm_adapters.notify.NotifyConfig), or None.
        self.notify: Any = None

    def get(self, name: str | None = None) -> Target:
        """The target ``name`` (default: ``default_target``)."""
        name = name or self.default_target
        try:
            return self.targets[name]
        except KeyError:
            where = f" in {self.source}" if self.source else " (no targets file found)"
            raise TargetNotFoundError(
                f"no target named {name!r}{where}; known targets: "
                f"{', '.join(sorted(self.targets))}. Add [targets.{name}] to the file "
                f"or pick one with --target"
            ) from None

    def __iter__(self) -> Any:
        return iter(self.targets[n] for n in sorted(self.targets))


def _path_mappings(raw: Any, where: str) -> list[Any]:
    from pydantic import ValidationError

    from .models import validation_problems
    from .pathmap import PathMapping

    if not isinstance(raw, list):
        raise ConfigurationError(
            f"{where}: path_mappings must be a list of {{ local = ..., remote = ... }} tables"
        )
    mappings = []
    for i, item in enumerate(raw):
        try:
            mappings.append(PathMapping.model_validate(item))
        except ValidationError as exc:
            lines = "; ".join(f"{f}: {m}" for f, m in validation_problems(exc))
            raise ConfigurationError(f"{where}: key 'path_mappings[{i}]': {lines}") from None
    return mappings


def parse_targets(data: Mapping[str, Any], source: Path | None = None) -> TargetConfig:
    """Validate a parsed targets file; errors name the file, the target and the key."""
    where = str(source) if source else "targets"
    for key in data:
        if key not in _TOP_KEYS:
            raise ConfigurationError(
                f"{where}: unknown top-level key {key!r}; expected {', '.join(_TOP_KEYS)} "
                f"(targets go in [targets.NAME] tables)"
            )
    raw_targets = data.get("targets", {})
    if not isinstance(raw_targets, Mapping):
        raise ConfigurationError(f"{where}: 'targets' must be a table of [targets.NAME]")
    notify = None
    if "notify" in data:
        from .notify import parse_notify

        notify = parse_notify(data["notify"], where)
    targets: dict[str, Target] = {}
    for name, table in raw_targets.items():
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{where}: target {name!r} must be a table")
        backend = table.get("backend")
        if not isinstance(backend, str) or not backend:
            raise ConfigurationError(
                f"{where}: target {name!r}: key 'backend' is required, e.g. backend = \"local\""
            )
        description = table.get("description", "")
        if not isinstance(description, str):
            raise ConfigurationError(f"{where}: target {name!r}: 'description' must be a string")
        settings = {k: v for k, v in table.items() if k not in _TARGET_KEYS}
        storage = table.get("storage")
        if storage is not None and (not isinstance(storage, Mapping) or "kind" not in storage):
            raise ConfigurationError(
                f"{where}: target {name!r}: key 'storage' must be a table with a kind, e.g. "
                f'storage = {{ kind = "sftp", host = "storage01", root = "/farm/tmp" }}'
            )
        mappings = _path_mappings(table.get("path_mappings", []), f"{where}: target {name!r}")
        targets[name] = Target(
            name,
            backend,
            settings,
            description=description,
            source=source,
            storage=storage,
            path_mappings=mappings,
            notify=notify,
        )
    default = data.get("default_target", "local")
    if not isinstance(default, str):
        raise ConfigurationError(f"{where}: default_target must be a target name")
    config = TargetConfig(targets, source=source, default_target=default)
    config.notify = notify
    if "local" not in targets:
        config.targets["local"].notify = notify
    if default not in config.targets:
        raise ConfigurationError(
            f"{where}: default_target {default!r} is not defined; known targets: "
            f"{', '.join(sorted(config.targets))}"
        )
    return config


def load_targets(path: str | os.PathLike[str] | None = None) -> TargetConfig:
    """Load the first targets file of :func:`config_search_path`.

    An explicit ``path`` (or ``$FARM_ADAPTERS_CONFIG``) that does not exist is an
    error; the default locations may be absent, leaving only ``local``.
    """
    for index, candidate in enumerate(config_search_path(path)):
        explicit = index == 0 and (path is not None or bool(os.environ.get(CONFIG_ENV)))
        if candidate.is_file():
            return parse_targets(_read_toml(candidate), source=candidate)
        if explicit:
            raise ConfigurationError(
                f"targets file {candidate} does not exist; check --config or ${CONFIG_ENV}"
            )
    return TargetConfig({})
