"""The Blender add-on in real Blender (the `bpy` module of the `blender` extra):
installed by the command line, enabled by Blender, and its operator rendering two
real frames on the local target, and on a real single-node Slurm cluster."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("bpy") is None,
        reason="bpy is not installed: pip install -e '.[blender]' (Python 3.11 or 3.13)",
    ),
]

BIN = Path(sys.executable).parent

ENABLE = """
import json, sys
import bpy
import addon_utils
bpy.ops.wm.read_factory_settings(use_empty=False)
addon_utils.enable("farm_adapters_blender", default_set=True, handle_error=None)
"""

DRIVER = (
    ENABLE
    + r"""
ws, target = sys.argv[-2:]
scene = bpy.context.scene
scene.render.engine = "CYCLES"
scene.cycles.device = "CPU"
scene.cycles.samples = 8
scene.cycles.use_denoising = False
scene.render.resolution_x, scene.render.resolution_y = 96, 64
scene.render.resolution_percentage = 100
scene.render.image_settings.file_format = "PNG"
scene.frame_start, scene.frame_end = 1, 5

# An external texture on the cube: the farm must get it from the job's folder.
image = bpy.data.images.new("checker", 32, 32)
image.generated_type = "COLOR_GRID"
image.filepath_raw = ws + "/textures/checker.png"
image.file_format = "PNG"
import os
os.makedirs(ws + "/textures", exist_ok=True)
image.save()
image.source = "FILE"
material = bpy.data.materials.new("checker")
material.use_nodes = True
tex = material.node_tree.nodes.new("ShaderNodeTexImage")
tex.image = image
bsdf = material.node_tree.nodes["Principled BSDF"]
material.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
bpy.data.objects["Cube"].data.materials[0] = material
bpy.ops.wm.save_as_mainfile(filepath=ws + "/shot.blend")

out = {"texture_path_before": image.filepath}
try:
    bpy.ops.farm_adapters.submit(target="no-such-target")
except RuntimeError as exc:
    out["error"] = str(exc)
out["result"] = sorted(
    bpy.ops.farm_adapters.submit(target=target, frame_start=1, frame_end=2, chunk_size=1)
)
settings = scene.farm_adapters
out["job_id"] = settings.last_job_id
out["outputs"] = settings.last_outputs.splitlines()
out["texture_path_after"] = image.filepath
print("DRIVER " + json.dumps(out))
"""
)


def run_bpy(
    code: str, scripts: Path, *args: str, timeout: float = 600, env: dict[str, str] | None = None
) -> str:
    env = {**os.environ, **(env or {}), "BLENDER_USER_SCRIPTS": str(scripts)}
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def install(scripts: Path) -> None:
    done = subprocess.run(
        [str(BIN / "farm-adapters"), "blender", "install", "--dir", str(scripts)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_installed_addon_is_found_and_enabled_by_blender(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    install(scripts)
    out = run_bpy(
        ENABLE + "print('FOUND', json.dumps({"
        "'submit': hasattr(bpy.types, 'FARM_ADAPTERS_OT_submit'),"
        "'panel': hasattr(bpy.types, 'FARM_ADAPTERS_PT_render'),"
        "'settings': hasattr(bpy.context.scene, 'farm_adapters'),"
        "'enabled': 'farm_adapters_blender' in bpy.context.preferences.addons}))",
        scripts,
    )
    line = next(x for x in out.splitlines() if x.startswith("FOUND "))
    assert json.loads(line[6:]) == {
        "submit": True,
        "panel": True,
        "settings": True,
        "enabled": True,
    }


def test_the_zip_installs_through_blenders_addon_installer(tmp_path: Path) -> None:
    archive = tmp_path / "farm_adapters_blender.zip"
    subprocess.run(
        [str(BIN / "farm-adapters"), "blender", "zip", "-o", str(archive)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    scripts = tmp_path / "user-scripts"
    scripts.mkdir()
    code = (
        "import bpy, addon_utils, sys\n"
        "bpy.ops.preferences.addon_install(filepath=sys.argv[-1], overwrite=True)\n"
        "addon_utils.enable('farm_adapters_blender', default_set=True, handle_error=None)\n"
        "print('ENABLED', hasattr(bpy.types, 'FARM_ADAPTERS_OT_submit'))\n"
    )
    out = run_bpy(code, scripts, str(archive))
    assert "ENABLED True" in out
    assert (scripts / "addons" / "farm_adapters_blender" / "__init__.py").is_file()


def _not_blank(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        extrema: Any = image.convert("RGB").getextrema()
    return any(low != high for low, high in extrema)


def test_operator_renders_two_frames_on_local(tmp_path: Path) -> None:
    import farm_adapters as fa

    backend = fa.get_plugin_manager().create_backend("local")
    try:
        check_two_frames_rendered(tmp_path, "local", backend, {})
    finally:
        backend.close()


def test_operator_renders_two_frames_on_slurm(
    slurm_cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through a Slurm target: the array's tasks run the farm-side renderer."""
    import farm_adapters as fa

    settings = {"root": str(tmp_path / "shared"), "state_dir": str(tmp_path / "state")}
    targets = tmp_path / "targets.toml"
    targets.write_text(
        '[targets.hpc]\nbackend = "slurm"\n'
        + "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    )
    env = {"SLURM_CONF": str(slurm_cluster.conf), "FARM_ADAPTERS_CONFIG": str(targets)}
    for name, value in env.items():  # the backend below reads them too
        monkeypatch.setenv(name, value)
    backend = fa.get_plugin_manager().create_backend("slurm", settings, target="hpc")
    try:
        check_two_frames_rendered(tmp_path, "hpc", backend, env)
    finally:
        backend.close()


def check_two_frames_rendered(
    tmp_path: Path, target: str, backend: Any, env: dict[str, str]
) -> None:
    import farm_adapters as fa

    scripts = tmp_path / "scripts"
    install(scripts)
    workstation = tmp_path / "workstation"
    workstation.mkdir()
    out = run_bpy(DRIVER, scripts, str(workstation), target, env=env)
    line = next(x for x in out.splitlines() if x.startswith("DRIVER "))
    driver = json.loads(line[len("DRIVER ") :])

    # an unknown target is one line naming it and the fix, not a traceback
    assert "no target named 'no-such-target'" in driver["error"]
    assert "Traceback" not in driver["error"] and len(driver["error"].splitlines()) == 1
    assert driver["result"] == ["FINISHED"]
    # the open file still points at the workstation's texture
    assert driver["texture_path_after"] == driver["texture_path_before"] == "//textures/checker.png"

    job = fa.wait(backend, driver["job_id"], timeout=900)
    log = "".join(fa.follow_log(backend, driver["job_id"], timeout=60))
    assert job.state is fa.JobState.COMPLETED, log[-3000:]
    assert job.total_tasks == 2

    outputs = [Path(p) for p in driver["outputs"]]
    assert [p.name for p in outputs] == ["frame_0001.png", "frame_0002.png"]
    for path in outputs:
        assert path.is_file(), log[-3000:]
        assert _not_blank(path)
    folder = outputs[0].parent.parent
    assert (folder / "shot.blend").is_file()
    assert [p.name for p in (folder / "assets").iterdir()] == ["000_checker.png"]
    # the farm's copy reads the texture from the job's folder, not the workstation
    farm_copy = run_bpy(
        "import bpy, sys\n"
        "bpy.ops.wm.open_mainfile(filepath=sys.argv[-1])\n"
        "image = bpy.data.images['checker']\n"
        "print('IMAGE', image.filepath, bpy.path.abspath(image.filepath))\n",
        scripts,
        str(folder / "shot.blend"),
    )
    line = next(x for x in farm_copy.splitlines() if x.startswith("IMAGE "))
    assert line.split()[1:] == [
        "//assets/000_checker.png",
        str(folder / "assets" / "000_checker.png"),
    ]
    assert "Traceback" not in log
