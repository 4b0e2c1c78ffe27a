"""Targets files: search order, validation errors, secret references."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm_adapters import (
    ConfigurationError,
    FarmPlugin,
    SecretNotFoundError,
    TargetNotFoundError,
    get_plugin_manager,
)
from farm_adapters.config import load_targets


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_local_exists_with_no_file() -> None:
    config = load_targets()
    assert config.source is None and [t.name for t in config] == ["local"]
    assert config.get().backend == "local"


def test_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "farm-adapters.toml", '[targets.cwd]\nbackend = "local"\n')
    assert "cwd" in load_targets().targets
    env_file = write(tmp_path / "env.toml", '[targets.env]\nbackend = "local"\n')
    monkeypatch.setenv("FARM_ADAPTERS_CONFIG", str(env_file))
    assert "env" in load_targets().targets
    explicit = write(tmp_path / "explicit.toml", '[targets.explicit]\nbackend = "local"\n')
    assert "explicit" in load_targets(explicit).targets
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_targets(tmp_path / "missing.toml")


def test_user_config_dir_is_last(tmp_path: Path) -> None:
    user = tmp_path / "xdg-config" / "farm-adapters"
    user.mkdir(parents=True)
    write(user / "farm-adapters.toml", '[targets.user]\nbackend = "local"\n')
    assert "user" in load_targets().targets


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[targets.a]\nslots = 2\n", "target 'a': key 'backend' is required"),
        ("[target.a]\nbackend = 'local'\n", "unknown top-level key 'target'"),
        ("default_target = 'zz'\n", "default_target 'zz' is not defined"),
        ("[targets.a\n", "not valid TOML"),
    ],
)
def test_errors_name_file_target_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "t.toml", text)
    with pytest.raises(ConfigurationError) as info:
        load_targets(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_bad_backend_settings_name_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "t.toml", '[targets.box]\nbackend = "local"\nslotz = 4\n')
    with pytest.raises(ConfigurationError) as info:
        load_targets(path).get("box").create_backend(get_plugin_manager())
    message = str(info.value)
    assert str(path) in message and "'box'" in message and "slotz" in message


def test_unknown_target_lists_the_known(tmp_path: Path) -> None:
    with pytest.raises(TargetNotFoundError, match="known targets: local"):
        load_targets().get("nope")


def _secret_backend() -> type[FarmPlugin]:
    from pydantic import BaseModel, ConfigDict, SecretStr

    from plugin_helpers import BACKEND_CLASS

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        url: str
        api_key: SecretStr

    namespace: dict[str, object] = {}
    exec(BACKEND_CLASS.format(name="vault", cls="Vault"), namespace)
    cls = namespace["Vault"]
    cls.settings_model = Settings  # type: ignore[attr-defined]
    return cls  # type: ignore[return-value]


def _manager_with(cls: type[FarmPlugin]) -> object:
    from farm_adapters import hookimpl

    class Hooks:
        @hookimpl
        def farm_adapters_register_backends(self, register):  # type: ignore[no-untyped-def]
            register(cls)

    return get_plugin_manager(plugins=[Hooks()])


def test_secrets_come_from_references_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = _manager_with(_secret_backend())
    path = write(
        tmp_path / "t.toml",
        (
            '[targets.vault]\nbackend = "vault"\nurl = "https://farm"\n'
            'api_key = { env = "VAULT_KEY" }\n'
            '[targets.plain]\nbackend = "vault"\nurl = "https://farm"\napi_key = "hunter2"\n'
        ),
    )
    config = load_targets(path)
    # Resolved when the backend first uses it (a read-only call may never need it).
    unresolved = config.get("vault").create_backend(manager)  # type: ignore[arg-type]
    with pytest.raises(SecretNotFoundError) as info:
        unresolved.settings.api_key.get_secret_value()  # type: ignore[attr-defined]
    assert "VAULT_KEY" in str(info.value) and "'api_key'" in str(info.value)
    monkeypatch.setenv("VAULT_KEY", "s3cret-value")
    backend = config.get("vault").create_backend(manager)  # type: ignore[arg-type]
    assert backend.settings.api_key.get_secret_value() == "s3cret-value"  # type: ignore[attr-defined]
    assert "s3cret-value" not in repr(backend.settings)
    assert config.get("vault").public_settings()["api_key"] == {"env": "VAULT_KEY"}
    with pytest.raises(ConfigurationError, match="is a secret"):
        config.get("plain").create_backend(manager)  # type: ignore[arg-type]
