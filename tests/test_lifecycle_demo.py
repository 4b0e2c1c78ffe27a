"""The Cornell demo hands its contact sheet to the farm (``after``) and returns at
once; the frames it wrote are listed, downloaded and previewed by ``outputs``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "farm_adapters"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_demo_returns_at_once_and_the_farm_runs_the_sheet_after_the_frames(
    tmp_path: Path,
) -> None:
    pytest.importorskip("mitsuba", reason="the demo extra is not installed: pip install .[demo]")
    image_lib = pytest.importorskip("PIL.Image", reason="the demo extra is not installed")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "cornell" / "demo.py"),
            *("--frames", "3", "--size", "32", "--spp", "2", "--out", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    render = re.search(r"render job:\s+(\w+)", result.stdout)
    sheet = re.search(r"contact sheet: job (\w+)", result.stdout)
    assert render and sheet, result.stdout
    render_id, sheet_id = render.group(1), sheet.group(1)
    # The demo did not wait: the sheet job is the farm's to start, after the frames.
    status = json.loads(cli("status", sheet_id, "--json").stdout)
    assert status["state"] in ("queued", "running", "completed")

    done = cli("wait", sheet_id, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "contact_sheet.png").is_file()
    listing = cli("outputs", render_id, "--json")
    assert listing.returncode == 0, listing.stderr
    names = [Path(f["path"]).name for f in json.loads(listing.stdout)["files"]]
    assert names == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]

    dest = tmp_path / "copies"
    assert cli("outputs", render_id, "--download", str(dest)).returncode == 0
    assert sorted(p.name for p in dest.iterdir()) == names
    thumbs = tmp_path / "thumbs"
    assert cli("outputs", render_id, "--thumbnails", str(thumbs)).returncode == 0
    for name in names:
        with image_lib.open(thumbs / name) as image:
            assert max(image.size) <= 256
            low, high = image.convert("L").getextrema()
            assert high > low, "the preview is not blank"
