from __future__ import annotations

from pathlib import Path

import pytest

from farm_adapters import (
    BackendNotFoundError,
    BackendUnavailableError,
    PluginConflictError,
    PluginLoadError,
    get_plugin_manager,
    hookimpl,
)
from plugin_helpers import BACKEND_CLASS, hook_file, registry_file, write_plugin


def names(manager: object) -> list[str]:
    return [b.name for b in manager.list_backends()]  # type: ignore[attr-defined]


def test_builtins_come_from_entry_points() -> None:
    manager = get_plugin_manager()
    infos = {b.name: b for b in manager.list_backends()}
    assert {"local", "ovfarm", "runai"} <= set(infos)
    assert infos["local"].available and infos["local"].origin.startswith("entry point local")
    assert infos["ovfarm"].available and infos["runai"].available
    assert manager.errors == []


def test_unavailable_backend_cannot_be_created(tmp_path: Path) -> None:
    res = tmp_path / "res"
    text = hook_file("needs_licence").replace(
        "class StudioPlugin(FarmPlugin):",
        "class StudioPlugin(FarmPlugin):\n    @classmethod\n    def availability(cls):\n"
        "        from farm_adapters import Availability\n"
        "        return Availability(False, 'no licence server')\n",
    )
    write_plugin(res, "licence.py", text)
    manager = get_plugin_manager(resources=[res])
    info = {b.name: b for b in manager.list_backends()}["needs_licence"]
    assert not info.available and info.reason == "no licence server"
    with pytest.raises(BackendUnavailableError, match="no licence server"):
        manager.create_backend("needs_licence")


def test_unknown_backend_lists_known_ones() -> None:
    with pytest.raises(BackendNotFoundError, match="known: local, ovfarm, runai, slurm"):
        get_plugin_manager().get_backend_class("nope")


def test_resources_hook_file_is_listed_and_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = tmp_path / "res"
    path = write_plugin(res, "studio_farm.py", hook_file("studio_farm"))
    monkeypatch.setenv("FARM_ADAPTERS_RESOURCES", f"/does/not/exist:{res}")
    manager = get_plugin_manager()
    info = {b.name: b for b in manager.list_backends()}["studio_farm"]
    assert info.origin == str(path) and info.available
    backend = manager.create_backend("studio_farm")
    assert backend.check()[0].detail == "from StudioPlugin"
    assert backend.submit_job(None) == "job-1"  # type: ignore[arg-type]


def test_katana_style_plugin_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = tmp_path / "res"
    write_plugin(res, "katana_farm.py", registry_file("katana_farm"))
    monkeypatch.setenv("FARM_ADAPTERS_RESOURCES", str(res))
    manager = get_plugin_manager()
    assert "katana_farm" in names(manager) and "not-ours" not in names(manager)
    assert manager.create_backend("katana_farm").check()[0].ok
    assert manager.errors == []


def test_broken_file_is_reported_and_others_still_load(tmp_path: Path) -> None:
    res = tmp_path / "res"
    broken = write_plugin(res, "a_broken.py", "def oops(:\n")
    write_plugin(res, "b_good.py", hook_file("good_farm"))
    manager = get_plugin_manager(resources=[res])
    assert "good_farm" in names(manager)
    (error,) = manager.errors
    assert isinstance(error, PluginLoadError)
    assert error.origin == str(broken)
    assert "SyntaxError" in error.details and "a_broken.py" in error.details
    assert isinstance(error.__cause__, SyntaxError)


def test_file_raising_at_import_is_recorded(tmp_path: Path) -> None:
    res = tmp_path / "res"
    write_plugin(res, "explodes.py", "raise RuntimeError('no licence server')\n")
    manager = get_plugin_manager(resources=[res])
    assert "no licence server" in str(manager.errors[0])
    assert "local" in names(manager)


def test_two_plugins_claiming_one_name_name_both_files(tmp_path: Path) -> None:
    res = tmp_path / "res"
    first = write_plugin(res, "one.py", hook_file("studio_farm", "One"))
    second = write_plugin(res, "two.py", registry_file("studio_farm", "Two"))
    manager = get_plugin_manager(resources=[res])
    with pytest.raises(PluginConflictError) as info:
        manager.get_backend_class("studio_farm")
    message = str(info.value)
    assert str(first) in message and str(second) in message
    assert info.value.origins == (str(first), str(second))
    assert any(isinstance(e, PluginConflictError) for e in manager.errors)


def test_studio_plugin_cannot_silently_replace_a_builtin(tmp_path: Path) -> None:
    res = tmp_path / "res"
    write_plugin(res, "studio_local.py", hook_file("local", "MyLocal"))
    manager = get_plugin_manager(resources=[res])
    with pytest.raises(PluginConflictError, match="entry point local"):
        manager.get_backend_class("local")
    # Blocking the built-in lets the studio's take the name.
    manager = get_plugin_manager(resources=[res], block=["local"])
    assert manager.get_backend_class("local").__name__ == "MyLocal"


def test_block_list_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_ADAPTERS_BLOCK", "ovfarm,runai,slurm")
    manager = get_plugin_manager()
    assert names(manager) == ["local"]
    with pytest.raises(BackendNotFoundError, match="blocked"):
        manager.get_backend_class("runai")


def test_disable_autoload_skips_builtins_but_not_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    res = tmp_path / "res"
    write_plugin(res, "studio.py", hook_file("studio_farm"))
    monkeypatch.setenv("FARM_ADAPTERS_DISABLE_AUTOLOAD", "1")
    manager = get_plugin_manager(resources=[res])
    assert names(manager) == ["studio_farm"]


def test_misspelt_hook_is_reported(tmp_path: Path) -> None:
    res = tmp_path / "res"
    text = (
        "from farm_adapters import hookimpl\n\n@hookimpl\n"
        "def farm_adapters_register_backend(register):\n    pass\n"
    )
    path = write_plugin(res, "typo.py", text)
    manager = get_plugin_manager(resources=[res])
    (error,) = manager.errors
    assert "farm_adapters_register_backend" in str(error) and error.origin == str(path)
    assert "farm_adapters_register_backends" in error.details


def test_registering_a_non_plugin_is_reported(tmp_path: Path) -> None:
    res = tmp_path / "res"
    write_plugin(res, "bad.py", 'PluginRegistry = [("FarmPlugin", 1, "bad", dict)]\n')
    manager = get_plugin_manager(resources=[res])
    assert "bad" not in names(manager)
    assert "not a farm_adapters.FarmPlugin subclass" in str(manager.errors[0])


def test_plugins_passed_in_code(tmp_path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(BACKEND_CLASS.format(name="in_code", cls="InCode"), namespace)

    class Hooks:
        @hookimpl
        def farm_adapters_register_backends(self, register):  # type: ignore[no-untyped-def]
            register(namespace["InCode"], name="renamed")

    manager = get_plugin_manager(plugins=[Hooks()])
    assert "renamed" in names(manager)


def test_entry_points_of_other_distributions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    (site / "studio_pkg").mkdir(parents=True)
    (site / "studio_pkg" / "__init__.py").write_text(hook_file("studio_ep"))
    (site / "broken_pkg.py").write_text("import does_not_exist_anywhere\n")
    dist = site / "studio_farm_pkg-1.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: studio-farm-pkg\nVersion: 1.2\n")
    (dist / "entry_points.txt").write_text(
        "[farm_adapters]\nstudio_ep = studio_pkg\nbroken = broken_pkg\n"
    )
    monkeypatch.syspath_prepend(str(site))
    manager = get_plugin_manager()
    info = {b.name: b for b in manager.list_backends()}["studio_ep"]
    assert "studio-farm-pkg 1.2" in info.origin
    (error,) = manager.errors
    assert "does_not_exist_anywhere" in str(error) and "broken = broken_pkg" in error.origin
    # The same entry point blocked by name is not even imported.
    blocked = get_plugin_manager(block=["broken"])
    assert blocked.errors == []


def test_each_manager_is_fresh() -> None:
    a, b = get_plugin_manager(), get_plugin_manager()
    assert a is not b and a.pm is not b.pm


def test_listing_does_not_import_backends_registered_by_reference() -> None:
    import ast
    import subprocess
    import sys

    code = (
        "import sys, farm_adapters\n"
        "m = farm_adapters.get_plugin_manager()\n"
        "print([b.available for b in m.list_backends()])\n"
        "print(sorted(k for k in sys.modules if k.startswith('farm_adapters.plugins.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    available = ast.literal_eval(out[0])
    assert len(available) >= 4 and all(available)
    assert not [m for m in ast.literal_eval(out[1]) if m.endswith(".plugin")]


def test_a_broken_reference_fails_on_use_with_its_origin(tmp_path: Path) -> None:
    res = tmp_path / "res"
    path = write_plugin(
        res,
        "lazy.py",
        (
            "from farm_adapters import hookimpl, Availability\n\n@hookimpl\n"
            "def farm_adapters_register_backends(register):\n"
            "    register('no_such_module_xyz:Plugin', name='lazy_farm',\n"
            "             availability=lambda: Availability(True))\n"
            "    register('no_colon', name='bad_ref')\n"
        ),
    )
    manager = get_plugin_manager(resources=[res])
    assert "lazy_farm" in names(manager)  # listed without importing it
    assert "needs the form 'package.module:Class'" in str(manager.errors[0])
    with pytest.raises(PluginLoadError, match="no_such_module_xyz") as info:
        manager.get_backend_class("lazy_farm")
    assert info.value.origin == str(path)
