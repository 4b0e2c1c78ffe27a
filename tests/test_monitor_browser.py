"""The web monitor in a real browser: Playwright driving Debian's chromium against a
real monitor, real local jobs (frames written as PNG files by Pillow) and the Omniverse
Farm emulator. The page shows the jobs of both targets, follows them to completion,
shows the task grid, the live log and the thumbnails, and stops a running job; a
request without the token gets 403.

With FARM_ADAPTERS_SCREENSHOTS=docs/img the test saves docs/img/monitor-jobs.png and
docs/img/monitor-job.png (1280x800, palette PNG) for docs/monitor.md.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from monitor_helpers import Monitor, ovfarm_config, start_monitor, submit

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
WAIT_MS = 60_000

RENDER = """\
import sys, time
from PIL import Image, ImageOps
frame = int(sys.argv[2])
time.sleep(1.5)
shade = Image.radial_gradient("L").resize((480, 270))
hue = [(230, 90, 60), (240, 170, 60), (90, 180, 90), (60, 150, 220), (140, 90, 220), (220, 80, 160)]
image = ImageOps.colorize(shade, hue[frame % len(hue)], (15, 18, 30))
image.save(sys.argv[1])
print(f"frame {frame}: rendered {sys.argv[1]}", flush=True)
"""


def _chromium() -> str:
    given = os.environ.get("FARM_ADAPTERS_CHROMIUM")
    for candidate in (given, "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(
        "no Chromium for the browser tests: apt-get install chromium fonts-dejavu-core "
        "(or set FARM_ADAPTERS_CHROMIUM to a Chromium binary)"
    )


@pytest.fixture
def browser() -> Iterator[Any]:
    pytest.importorskip(
        "playwright", reason="the browser tests need playwright: pip install playwright"
    )
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("FARM_ADAPTERS_SCREENSHOTS")
    if not folder:
        return
    from PIL import Image

    target = Path(folder) if os.path.isabs(folder) else REPO / folder
    target.mkdir(parents=True, exist_ok=True)
    with Image.open(io.BytesIO(page.screenshot())) as shot:
        small = shot.convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT)
        small.save(target / name, optimize=True)


def test_the_monitor_in_a_browser(
    browser: Any, tmp_path: Path, ovfarm_settings: dict[str, Any], monkeypatch: Any
) -> None:
    pytest.importorskip("PIL", reason="the frames are written with Pillow (the demo extra)")
    monkeypatch.setenv("OV_KEY", "test-key")
    config = ovfarm_config(tmp_path / "targets.toml", ovfarm_settings)
    monkeypatch.setenv("FARM_ADAPTERS_CONFIG", str(config))
    monkeypatch.setenv("USER", "ana")
    script = tmp_path / "render.py"
    script.write_text(RENDER)
    out = tmp_path / "renders"
    out.mkdir()
    job_file = tmp_path / "shot010.toml"
    job_file.write_text(
        f'name = "shot010_lighting"\nframes = "1-6"\n'
        f'outputs = ["{out}/shot010.{{frame:04d}}.png"]\n'
        f'commands = [["{sys.executable}", "{script}", "{out}/shot010.{{frame:04d}}.png", '
        f'"{{frame}}"]]\n'
    )
    monitor = start_monitor(config, interval=1.0, start=True, thumbnails=tmp_path / "thumbs")
    try:
        _drive(browser, monitor, job_file)
    finally:
        monitor.close()


def _drive(browser: Any, monitor: Monitor, job_file: Path) -> None:
    failed = submit("--name", "shot020_fx_sim", "--", "sh", "-c", "echo simulating; exit 3")
    ov_job = submit(
        "-t",
        "ov",
        "--name",
        "shot030_comp",
        "--frames",
        "1-4",
        "--",
        "sh",
        "-c",
        "echo comp frame {frame}; sleep 1",
    )
    render = submit(str(job_file))
    long_job = submit("--name", "shot040_hair_sim", "--", "sleep", "300")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    try:
        refused = page.goto(monitor.url + "/")
        assert refused is not None and refused.status == 403
        assert "token" in page.content()

        page.goto(monitor.token_url)
        assert page.url == monitor.url + "/"  # the token left the address bar
        for job in (failed, ov_job, render, long_job):
            page.wait_for_selector(f'#rows tr[data-id="{job}"]', timeout=WAIT_MS)
        assert page.locator(f'#rows tr[data-id="{ov_job}"]').get_attribute("data-target") == "ov"
        # the page follows the jobs without a reload
        for job, state in ((render, "completed"), (ov_job, "completed"), (failed, "failed")):
            page.wait_for_selector(
                f'#rows tr[data-id="{job}"][data-state="{state}"]', timeout=WAIT_MS
            )
        page.wait_for_selector(f'#rows tr[data-id="{long_job}"][data-state="running"]')
        _screenshot(page, "monitor-jobs.png")

        page.click(f'#rows tr[data-id="{render}"] a')
        page.wait_for_selector("#tasks .task.s-completed", timeout=WAIT_MS)
        assert page.locator("#tasks .task.s-completed").count() == 6
        page.wait_for_function(
            "() => document.querySelectorAll('#outputs .thumb img').length === 6 && "
            "[...document.querySelectorAll('#outputs img')]"
            ".every(i => i.complete && i.naturalWidth > 0)",
            timeout=WAIT_MS,
        )
        assert page.locator("#last-frame").evaluate("i => i.naturalWidth") >= 256
        page.wait_for_function(
            "() => document.getElementById('log').textContent.includes('frame 6: rendered')",
            timeout=WAIT_MS,
        )
        assert page.locator('#actions button[data-action="restart"]').count() == 1
        assert page.locator('#actions button[data-action="stop"]').count() == 0
        _screenshot(page, "monitor-job.png")

        page.goto(f"{monitor.url}/job/local/{long_job}")
        stop = page.wait_for_selector('#actions button[data-action="stop"]', timeout=WAIT_MS)
        assert stop is not None
        stop.click()
        page.wait_for_selector("#action-result.ok", timeout=WAIT_MS)
        page.wait_for_selector('#job-state[data-state="stopped"]', timeout=WAIT_MS)

        page.goto(f"{monitor.url}/job/ov/{ov_job}")
        page.wait_for_selector('#job-state[data-state="completed"]', timeout=WAIT_MS)
        page.wait_for_function(
            "() => document.getElementById('log').textContent.includes('comp frame')",
            timeout=WAIT_MS,
        )
        # ovfarm cannot change priorities nor delete: no such buttons
        assert page.locator('#actions button[data-action="priority"]').count() == 0
    finally:
        page.close()
        from monitor_helpers import cli

        cli("stop", long_job)
