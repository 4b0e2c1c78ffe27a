"""The README's demo renders real frames and a contact sheet through `local`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_renders_frames_and_a_contact_sheet(tmp_path: Path) -> None:
    pytest.importorskip("mitsuba", reason="the demo extra is not installed: pip install .[demo]")
    image_lib = pytest.importorskip("PIL.Image", reason="the demo extra is not installed")
    out = tmp_path / "out"

    def demo(frames: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                str(REPO / "examples" / "cornell" / "demo.py"),
                "--frames",
                str(frames),
                "--size",
                "48",
                "--spp",
                "4",
                "--out",
                str(out),
                "--wait",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )

    # A longer run first: its frames 4-5 must not linger beside the next run's.
    assert demo(5).returncode == 0
    result = demo(3)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "(3: frame_0001.png ... frame_0003.png)" in result.stdout
    frames = sorted((out / "frames").glob("*.png"))
    assert [f.name for f in frames] == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    pixels = []
    for frame in frames:
        with image_lib.open(frame) as image:
            assert image.size == (48, 48)
            pixels.append(image.convert("RGB").tobytes())
    assert len(set(pixels)) == 3, "the camera moves: every frame differs"
    assert max(pixels[0]) > 64, "the frame is not black: something was lit and rendered"
    with image_lib.open(out / "contact_sheet.png") as sheet:
        assert sheet.size[0] > 3 * 48
    assert str(out / "contact_sheet.png") in result.stdout
