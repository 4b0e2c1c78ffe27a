"""The job's life after submit through the ``farm-adapters`` command: dependencies,
holds, priority, outputs and thumbnails, notifications, delete and clean; and the
backends that refuse what they cannot honour. Real processes throughout."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import EXE, cli

TIMEOUT = 60


def submitted_id(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def local_db(data: Path) -> Path:
    return data / "local" / "state.sqlite3"


def journal_db(data: Path) -> Path:
    return data / "journal.sqlite3"


def supervisor_done(data: Path, job_id: str) -> bool:
    from farm_adapters.plugins.local import machine

    with sqlite3.connect(local_db(data)) as conn:
        pid, start = conn.execute(
            "SELECT supervisor_pid, supervisor_start FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
    return not machine.is_alive(pid, start)


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


# -- dependencies ----------------------------------------------------------------------


def test_after_runs_the_second_job_only_once_every_frame_completed(tmp_path: Path) -> None:
    order = tmp_path / "order"
    first = submitted_id(
        cli(
            "submit", "--frames", "1-3", "--json", "--",
            "sh", "-c", f"sleep 1; echo f{{frame}} >> {order}",
        )
    )  # fmt: skip
    second = cli("submit", "--after", first, "--wait", "--", "sh", "-c", f"echo sheet >> {order}")
    assert second.returncode == 0, second.stderr
    lines = order.read_text().split()
    assert sorted(lines[:3]) == ["f1", "f2", "f3"] and lines[3:] == ["sheet"]


def test_after_a_failing_job_ends_failed_naming_it_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    first = submitted_id(cli("submit", "--json", "--", "sh", "-c", "sleep 0.5; exit 4"))
    second = cli("submit", "--after", first, "--wait", "--json", "--", "touch", str(marker))
    assert second.returncode == 1
    job = json.loads(second.stdout)
    assert job["state"] == "failed"
    assert first in job["message"]
    assert not marker.exists()


def test_after_any_and_hold_then_release(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    first = submitted_id(cli("submit", "--json", "--", "sh", "-c", "exit 4"))
    held = submitted_id(
        cli("submit", "--hold", "--after-any", first, "--json", "--", "touch", str(marker))
    )
    status = json.loads(cli("status", held, "--json").stdout)
    assert status["state"] == "queued" and "release" in status["message"]
    assert cli("release", held).returncode == 0
    done = cli("wait", held, "--json")
    assert done.returncode == 0, done.stderr
    assert marker.exists()


def test_priority_command_is_validated(tmp_path: Path) -> None:
    job = submitted_id(cli("submit", "--hold", "--json", "--", "true"))
    assert cli("priority", job, "80").returncode == 0
    bad = cli("priority", job, "101")
    assert bad.returncode == 2
    assert cli("stop", job).returncode == 0


# -- refusals --------------------------------------------------------------------------


@pytest.fixture
def farm_targets(
    tmp_path: Path, ovfarm_settings: dict[str, Any], runai_settings: dict[str, Any]
) -> dict[str, str]:
    volume = runai_settings["volume"]
    config = tmp_path / "targets.toml"
    config.write_text(
        f'[targets.ov]\nbackend = "ovfarm"\nurl = "{ovfarm_settings["url"]}"\n'
        f'api_key = {{ env = "OV_KEY" }}\nfolders = "{ovfarm_settings["folders"]}"\n'
        f'log_dir = "{ovfarm_settings["log_dir"]}"\n'
        f'[targets.ai]\nbackend = "runai"\nurl = "{runai_settings["url"]}"\n'
        f'client_id = {{ env = "AI_ID" }}\nclient_secret = {{ env = "AI_SECRET" }}\n'
        f'project = "team-a"\nimage = "registry.example/renderer:1.0"\n'
        f'log_dir = "{runai_settings["log_dir"]}"\n'
        f'volume = {{ kind = "hostPath", mount_path = "/mnt/farm", path = "{volume["path"]}",'
        f' local_path = "{volume["local_path"]}" }}\n'
    )
    return {
        "FARM_ADAPTERS_CONFIG": str(config),
        "OV_KEY": "test-key",
        "AI_ID": "render-bot",
        "AI_SECRET": "s3cret",
    }


@pytest.mark.parametrize("target", ["ov", "ai"])
@pytest.mark.parametrize(
    ("option", "capability"), [("--hold", "hold"), ("--after=abc123", "dependencies")]
)
def test_http_backends_refuse_after_and_hold_naming_the_capability(
    farm_targets: dict[str, str], target: str, option: str, capability: str
) -> None:
    def farm_jobs() -> set[str]:
        listed = json.loads(cli("jobs", "-t", target, "--json", env=farm_targets).stdout)
        return {j["id"] for j in listed["jobs"]}

    before = farm_jobs()
    result = cli("submit", "-t", target, option, "--", "true", env=farm_targets)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"capability {capability}" in result.stderr
    assert farm_jobs() == before  # nothing was sent


# -- outputs and thumbnails ------------------------------------------------------------

RENDER = (
    "import sys\n"
    "from PIL import Image\n"
    "frame = int(sys.argv[2])\n"
    "Image.radial_gradient('L').resize((400, 300)).point(lambda v: (v + 40 * frame) % 256)"
    ".convert('RGB').save(sys.argv[1])\n"
)


def render_job(tmp_path: Path) -> str:
    pytest.importorskip("PIL", reason="thumbnails need Pillow (the demo extra)")
    script = tmp_path / "render.py"
    script.write_text(RENDER)
    out = tmp_path / "out"
    out.mkdir()
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        f'name = "frames"\nframes = "1-3"\n'
        f'outputs = ["{out}/frame_{{frame:04d}}.png"]\n'
        f'commands = [["{sys.executable}", "{script}", "{out}/frame_{{frame:04d}}.png", '
        f'"{{frame}}"]]\n'
    )
    return submitted_id(cli("submit", str(job_file), "--wait", "--json"))


def test_outputs_lists_downloads_and_previews_the_frames(tmp_path: Path) -> None:
    from PIL import Image

    job = render_job(tmp_path)
    listing = cli("outputs", job, "--json")
    assert listing.returncode == 0, listing.stderr
    files = json.loads(listing.stdout)["files"]
    names = [Path(f["path"]).name for f in files]
    assert names == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    assert all(f["size"] > 0 and f["mtime"] > 0 for f in files)
    assert [f["frame"] for f in files] == [1, 2, 3]

    dest = tmp_path / "download"
    first = json.loads(cli("outputs", job, "--download", str(dest), "--json").stdout)
    assert sorted(Path(p).name for p in first["downloaded"]) == names
    for name in names:
        assert (dest / name).read_bytes() == (tmp_path / "out" / name).read_bytes()
    again = json.loads(cli("outputs", job, "--download", str(dest), "--json").stdout)
    assert again["downloaded"] == [] and len(again["skipped"]) == 3
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no partial file

    thumbs = tmp_path / "thumbs"
    made = json.loads(cli("outputs", job, "--thumbnails", str(thumbs), "--json").stdout)
    assert len(made["thumbnails"]) == 3 and made["thumbnail_problems"] == []
    for path in made["thumbnails"]:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert max(image.size) <= 256
            low, high = image.convert("L").getextrema()
            assert high > low  # not blank


def test_a_thumbnail_of_an_exr_without_a_reader_says_what_to_install(tmp_path: Path) -> None:
    from farm_adapters.thumbnails import ThumbnailError, make_thumbnail

    try:
        import OpenEXR  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("an EXR reader is installed")
    exr = tmp_path / "beauty.exr"
    exr.write_bytes(b"v/1\x01" + b"\0" * 64)
    with pytest.raises(ThumbnailError, match="pip install OpenEXR"):
        make_thumbnail(str(exr), tmp_path / "beauty.png")


# -- notifications ---------------------------------------------------------------------


def notify_config(tmp_path: Path, body: str) -> dict[str, str]:
    config = tmp_path / "targets.toml"
    config.write_text(body)
    return {"FARM_ADAPTERS_CONFIG": str(config)}


def test_a_command_notification_fires_once_with_several_observers(
    tmp_path: Path, isolated_home: Path
) -> None:
    sent = tmp_path / "sent"
    env = notify_config(
        tmp_path,
        "[[notify.commands]]\n"
        f'argv = ["sh", "-c", "echo \\"$0 $1 $2 $3\\" >> {sent}", "{{job}}", "{{name}}", '
        '"{state}", "{target}"]\n',
    )
    job = submitted_id(cli("submit", "-n", "shot", "--json", "--", "sleep", "1", env=env))
    watchers = [subprocess.Popen([*EXE, "wait", job], env={**os.environ, **env}) for _ in range(2)]
    for watcher in watchers:
        assert watcher.wait(timeout=180) == 0
    wait_until(lambda: supervisor_done(isolated_home, job), "the supervisor ended")
    assert sent.read_text().splitlines() == [f"{job} shot completed local"]


def test_no_notify_is_honoured_by_every_observer(tmp_path: Path, isolated_home: Path) -> None:
    sent = tmp_path / "sent"
    env = notify_config(
        tmp_path, f'[[notify.commands]]\nargv = ["sh", "-c", "echo $0 >> {sent}", "{{job}}"]\n'
    )
    job = submitted_id(cli("submit", "--no-notify", "--json", "--", "true", env=env))
    assert cli("wait", job, env=env).returncode == 0
    wait_until(lambda: supervisor_done(isolated_home, job), "the supervisor ended")
    assert not sent.exists()


class _Hook(BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _Hook.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.bodies
    server.shutdown()
    server.server_close()


def test_a_webhook_gets_one_slack_compatible_post(
    tmp_path: Path, isolated_home: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, bodies = webhook
    env = notify_config(tmp_path, '[[notify.webhooks]]\nurl = { env = "HOOK_URL" }\n')
    env["HOOK_URL"] = url
    result = cli("submit", "-n", "shot", "--wait", "--json", "--", "sh", "-c", "exit 3", env=env)
    job = json.loads(result.stdout)["id"]
    wait_until(lambda: supervisor_done(isolated_home, job), "the supervisor ended")
    assert len(bodies) == 1
    assert bodies[0]["state"] == "failed" and bodies[0]["job"] == job
    assert job in bodies[0]["text"] and "failed" in bodies[0]["text"]


def test_a_webhook_url_must_be_https_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    from farm_adapters.models import Job, JobState
    from farm_adapters.notify import parse_notify, send

    monkeypatch.setenv("HOOK_URL", "http://hooks.invalid/x")
    config = parse_notify({"webhooks": [{"url": {"env": "HOOK_URL"}}]})
    problems = send(config, Job(id="j1", state=JobState.COMPLETED), "local")
    assert len(problems) == 1 and "https://" in problems[0]
    assert "hooks.invalid" not in problems[0]  # the URL is a secret


def test_a_webhook_url_in_plain_text_is_refused(tmp_path: Path) -> None:
    env = notify_config(tmp_path, '[[notify.webhooks]]\nurl = "https://hooks.example/x"\n')
    result = cli("submit", "--", "true", env=env)
    assert result.returncode == 2
    assert "secret" in result.stderr and "hooks.example" not in result.stderr


# -- delete and clean ------------------------------------------------------------------


def test_delete_leaves_no_folder_state_or_journal_row(tmp_path: Path, isolated_home: Path) -> None:
    script = tmp_path / "step.sh"
    script.write_text("echo hello\n")
    job = submitted_id(cli("submit", "--file", str(script), "--wait", "--json", "--", "true"))
    with sqlite3.connect(local_db(isolated_home)) as conn:
        folder, log_dir = conn.execute(
            "SELECT folder, log_dir FROM jobs WHERE id = ?", (job,)
        ).fetchone()
    assert Path(folder, "step.sh").exists() and Path(log_dir).exists()
    result = cli("delete", job)
    assert result.returncode == 0, result.stderr
    assert not Path(folder).exists() and not Path(log_dir).exists()
    with sqlite3.connect(local_db(isolated_home)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs WHERE id = ?", (job,)).fetchone() == (0,)
        assert (
            conn.execute("SELECT COUNT(*) FROM tasks WHERE job_id = ?", (job,)).fetchone()[0] == 0
        )
    with sqlite3.connect(journal_db(isolated_home)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs WHERE job_id = ?", (job,)).fetchone() == (0,)
    assert cli("status", job).returncode == 2


def test_delete_refuses_a_running_job_unless_stop(tmp_path: Path) -> None:
    job = submitted_id(cli("submit", "--json", "--", "sleep", "60"))
    refused = cli("delete", job)
    assert refused.returncode == 2 and "--stop" in refused.stderr
    assert json.loads(cli("status", job, "--json").stdout)["state"] in ("queued", "running")
    assert cli("delete", "--stop", job).returncode == 0
    assert cli("status", job).returncode == 2


def test_clean_dry_run_lists_and_changes_nothing(tmp_path: Path, isolated_home: Path) -> None:
    jobs = [submitted_id(cli("submit", "--wait", "--json", "--", "true")) for _ in range(2)]
    # `--wait` returns at the final state; the supervisor may still write its last
    # records (peak memory, heartbeat) after it, which would change the snapshot.
    for job in jobs:
        wait_until(lambda job=job: supervisor_done(isolated_home, job), f"{job}'s supervisor")

    def snapshot() -> tuple[Any, ...]:
        with sqlite3.connect(local_db(isolated_home)) as conn:
            local = conn.execute("SELECT id FROM jobs ORDER BY id").fetchall()
        with sqlite3.connect(journal_db(isolated_home)) as conn:
            journal = conn.execute("SELECT job_id FROM jobs ORDER BY job_id").fetchall()
        return local, journal, sorted(p.name for p in (isolated_home / "local").rglob("*"))

    before = snapshot()
    dry = cli("clean", "--older-than", "0s", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert sorted(j["job"] for j in json.loads(dry.stdout)["jobs"]) == sorted(jobs)
    assert snapshot() == before
    assert json.loads(cli("clean", "--older-than", "7d", "--json").stdout)["jobs"] == []
    done = json.loads(cli("clean", "--older-than", "0s", "--json").stdout)
    assert sorted(j["job"] for j in done["jobs"]) == sorted(jobs)
    assert all(cli("status", j).returncode == 2 for j in jobs)


def test_a_restarted_job_notifies_its_new_end(tmp_path: Path, isolated_home: Path) -> None:
    sent = tmp_path / "sent"
    flag = tmp_path / "ok"
    env = notify_config(
        tmp_path,
        "[[notify.commands]]\n"
        f'argv = ["sh", "-c", "echo \\"$0 $1\\" >> {sent}", "{{job}}", "{{state}}"]\n',
    )
    first = cli("submit", "--wait", "--json", "--", "sh", "-c", f"test -e {flag}", env=env)
    assert first.returncode == 1
    job = json.loads(first.stdout)["id"]
    wait_until(lambda: supervisor_done(isolated_home, job), "the first attempt's supervisor")
    flag.touch()
    assert cli("restart", job, "--wait", env=env).returncode == 0
    wait_until(lambda: supervisor_done(isolated_home, job), "the second attempt's supervisor")
    assert sent.read_text().splitlines() == [f"{job} failed", f"{job} completed"]
