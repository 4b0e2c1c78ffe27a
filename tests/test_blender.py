"""The Blender integration without Blender: the job the add-on sends, the output
names it declares, and the install commands' files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from farm_adapters.dcc.blender.job import build_request, frame_path, parse_blender_executables
from farm_adapters.errors import ConfigurationError, InvalidRequestError

BIN = Path(sys.executable).parent


def request(**overrides: object) -> object:
    args: dict[str, object] = {
        "blend": "shot.blend",
        "files": ["/ws/stage/shot.blend"],
        "frames": "1-5",
        "chunk_size": 2,
        "folder": "/farm/tmp/ctx",
        "render_context": "ctx",
    }
    args.update(overrides)
    return build_request(**args)  # type: ignore[arg-type]


def test_farm_blender_renders_each_chunk_as_a_range() -> None:
    req = request(blender="/opt/blender/blender", priority=80)
    tasks = req.tasks()  # type: ignore[attr-defined]
    assert [t.frames for t in tasks] == [(1, 2), (3, 4), (5,)]
    assert tasks[1].commands[0].argv == [
        "/opt/blender/blender",
        "-b",
        "{folder}/shot.blend",
        "-o",
        "//frames/frame_####",
        "-s",
        "3",
        "-e",
        "4",
        "-a",
    ]
    assert req.priority == 80  # type: ignore[attr-defined]


def test_without_blender_the_bundled_bpy_entry_point_renders() -> None:
    req = request(python="/usr/bin/python3")
    argv = req.tasks()[0].commands[0].argv  # type: ignore[attr-defined]
    assert argv[:4] == [
        "/usr/bin/python3",
        "-m",
        "farm_adapters.dcc.blender.render",
        "{folder}/shot.blend",
    ]
    assert argv[4:] == ["-o", "//frames/frame_####", "-s", "1", "-e", "2"]


def test_a_stepped_frame_set_lists_each_chunks_frames() -> None:
    req = request(frames="1-9x2", chunk_size=3, blender="blender")
    argv = req.tasks()[0].commands[0].argv  # type: ignore[attr-defined]
    assert argv[-2:] == ["-f", "1,3,5"] and "-a" not in argv


def test_outputs_are_declared_as_the_render_node_sees_them() -> None:
    req = request(frames="1-2", extension=".png")
    assert req.outputs == [  # type: ignore[attr-defined]
        "/farm/tmp/ctx/frames/frame_0001.png",
        "/farm/tmp/ctx/frames/frame_0002.png",
    ]
    absolute = request(frames="9", output="/renders/sh010/beauty.##", extension=".exr")
    assert absolute.outputs == ["/renders/sh010/beauty.09.exr"]  # type: ignore[attr-defined]


def test_frame_path_follows_blenders_output_rules() -> None:
    assert frame_path("//out/f_####", 7, ".png") == "//out/f_0007.png"
    assert frame_path("/r/a_##_b_###", 12, "") == "/r/a_##_b_012"
    assert frame_path("/r/shot_", 3, ".png") == "/r/shot_0003.png"


def test_bad_input_names_the_field() -> None:
    with pytest.raises(InvalidRequestError, match="frames"):
        request(frames="5-1x0")
    with pytest.raises(InvalidRequestError, match="chunk_size"):
        request(chunk_size=0)
    assert parse_blender_executables("farm=/opt/b/blender; gpu = /usr/bin/blender\n") == {
        "farm": "/opt/b/blender",
        "gpu": "/usr/bin/blender",
    }
    with pytest.raises(ConfigurationError, match="TARGET=PATH"):
        parse_blender_executables("/opt/blender")


def test_install_and_zip_write_the_addon(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    done = subprocess.run(
        [str(BIN / "farm-adapters"), "blender", "install", "--dir", str(scripts)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    init = scripts / "addons" / "farm_adapters_blender" / "__init__.py"
    assert str(init.parent) in done.stdout
    source = init.read_text()
    assert "bl_info" in source and "def register" in source
    compile(source, str(init), "exec")

    made = subprocess.run(
        [str(BIN / "farm-adapters"), "blender", "zip", "-o", str(tmp_path / "a.zip")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert zf.namelist() == ["farm_adapters_blender/__init__.py"]
        assert zf.read("farm_adapters_blender/__init__.py").decode() == source


def test_install_into_an_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = subprocess.run(
        [str(BIN / "farm-adapters"), "blender", "install", "--dir", str(blocker / "scripts")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot write the add-on") and "--dir" in done.stderr
    assert "Traceback" not in done.stderr


def test_katana_path_is_a_resources_folder_holding_the_plugin_file() -> None:
    out = subprocess.run(
        [str(BIN / "farm-adapters"), "katana", "path"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    assert (Path(out) / "Plugins" / "farm_adapters_farm.py").is_file()


@pytest.mark.parametrize("page", ["blender.md", "katana.md"])
def test_console_examples_in_the_dcc_pages_run(page: str, tmp_path: Path) -> None:
    import os

    from test_docs import blocks, run_console_block

    text = (Path(__file__).resolve().parent.parent / "docs" / page).read_text()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path)}
    examples = blocks(text, "console")
    assert examples
    for block in examples:
        run_console_block(block, tmp_path, env)
    if page == "blender.md":
        assert (tmp_path / "blender-scripts/addons/farm_adapters_blender/__init__.py").is_file()
        assert zipfile.is_zipfile(tmp_path / "dist" / "farm_adapters_blender.zip")


def test_job_list_refreshes_on_a_worker_and_never_waits_on_the_farm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The panel's timer calls refresh(): it returns while a farm does not answer, and
    the rows then say what each job is doing and what can be done to it."""
    import socket

    import farm_adapters as fa
    from farm_adapters.dcc.blender.submission import JobList
    from farm_adapters.journal import Journal

    stuck = socket.socket()
    stuck.bind(("127.0.0.1", 0))
    stuck.listen(8)  # accepts connections into the backlog, never answers
    config = tmp_path / "farm-adapters.toml"
    config.write_text(
        f'[targets.stuck]\nbackend = "ovfarm"\nurl = "http://127.0.0.1:{stuck.getsockname()[1]}"\n'
        f"timeout = 120\nretries = 0\n"
    )
    monkeypatch.setenv("FARM_ADAPTERS_CONFIG", str(config))

    backend = fa.get_plugin_manager().create_backend("local")
    try:
        job = fa.submit(backend, {"name": "blender: quick", "commands": [["true"]]})
        assert isinstance(job, fa.Job)
        fa.wait(backend, job.id, timeout=60)
    finally:
        backend.close()
    Journal().record(
        job_id="stuck-1",
        target="stuck",
        backend="ovfarm",
        request=fa.parse_request({"name": "blender: stuck", "commands": [["true"]]}),
    )

    jobs = JobList()
    try:
        assert jobs.refresh()
        # refresh() has returned while the farm has not answered: the worker is still on it
        assert jobs._thread is not None and jobs._thread.is_alive()
        assert jobs.rows == [] and not jobs.refresh()
    finally:
        stuck.close()  # the farm goes away: the worker gets an error, not a hang
    jobs.join(timeout=120)
    rows = {r.id: r for r in jobs.rows}
    assert rows["stuck-1"].state is fa.JobState.UNKNOWN and rows["stuck-1"].message
    assert not rows["stuck-1"].can_stop and not rows["stuck-1"].can_restart
    done = rows[job.id]
    assert done.state is fa.JobState.COMPLETED and done.progress == 1.0
    assert done.can_restart and not done.can_stop
    assert jobs.version == 1


def test_farm_side_renderer_fails_in_one_line_on_a_missing_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "farm_adapters.dcc.blender.render", str(tmp_path / "no.blend")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip() == f"error: {tmp_path / 'no.blend'} does not exist on this render node"
    )
