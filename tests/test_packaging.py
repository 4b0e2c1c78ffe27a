"""The wheel a user installs: layout, entry points, and a fresh-venv smoke test."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "output",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO, src, ignore=IGNORE)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(work / "dist"),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = (work / "dist").glob("farm_adapters-*.whl")
    yield built


def plugin_folders() -> list[str]:
    return sorted(p.parent.name for p in (REPO / "plugins").glob("*/__init__.py"))


def test_wheel_has_no_top_level_plugins(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "plugins" not in tops
    assert {t for t in tops if not t.endswith(".dist-info")} == {"farm_adapters"}
    assert "farm_adapters/py.typed" in names


def test_every_plugin_folder_is_packaged_and_an_entry_point(wheel: Path) -> None:
    folders = plugin_folders()
    assert {"local", "ovfarm", "runai"} <= set(folders)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (ep_name,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.read_string(zf.read(ep_name).decode())
    for folder in folders:
        sources = sorted(
            p.relative_to(REPO / "plugins").as_posix()
            for p in (REPO / "plugins" / folder).rglob("*.py")
        )
        for source in sources:
            assert f"farm_adapters/plugins/{source}" in names, source
        assert parser["farm_adapters"][folder] == f"farm_adapters.plugins.{folder}"
    assert set(parser["farm_adapters"]) == set(folders)
    assert parser["pytest11"]["farm_adapters"] == "farm_adapters.testing.pytest_plugin"
    assert parser["console_scripts"]["farm-adapters"] == "farm_adapters.cli:main"


@pytest.mark.slow
def test_fresh_virtualenv_install_lists_the_backends(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run(
        [str(venv / "bin" / "farm-adapters"), "backends", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    backends = {b["name"]: b for b in json.loads(listed.stdout)["backends"]}
    assert set(backends) == {"local", "ovfarm", "runai", "slurm"}
    assert backends["local"]["available"] is True
    assert "farm-adapters 0.1.0" in backends["local"]["origin"]
    assert backends["runai"]["available"] is True and backends["ovfarm"]["available"] is True
    no_plugins = subprocess.run(
        [str(py), "-c", "import plugins"], capture_output=True, cwd=tmp_path, timeout=60
    )
    assert no_plugins.returncode != 0


def test_wheel_ships_the_dcc_integrations_but_not_the_katana_standin(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "farm_adapters/dcc/katana/Resources/Plugins/farm_adapters_farm.py" in names
    for module in ("blender/addon.py", "blender/render.py", "katana/bridge.py", "katana/names.py"):
        assert f"farm_adapters/dcc/{module}" in names, module
    assert not [n for n in names if "katana_standin" in n or "FarmAPI" in n]


def test_wheel_ships_the_monitor_pages_and_assets(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = sorted(
        str(p.relative_to(REPO))
        for folder in ("templates", "static")
        for p in (REPO / "farm_adapters" / "monitor" / folder).iterdir()
    )
    assert shipped  # the pages a wheel install serves
    for name in shipped:
        assert name in names, name
