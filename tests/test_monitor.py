"""The web monitor's routes over HTTP, against a real monitor (uvicorn on 127.0.0.1),
real local jobs and the Omniverse Farm emulator: the token guard on every route, the
CSRF check on actions, no secret in any answer, escaped job text, jobs of two targets,
a dead target, one shared poll, notifications, the live log and thumbnails, and the
command itself."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import EXE
from monitor_helpers import (
    TIMEOUT,
    Monitor,
    ovfarm_config,
    start_monitor,
    submit,
    wait_until,
)

pytest.importorskip("starlette", reason="the monitor extra is not installed")
pytest.importorskip("uvicorn", reason="the monitor extra is not installed")


@pytest.fixture
def monitors() -> Iterator[list[Monitor]]:
    started: list[Monitor] = []
    yield started
    for monitor in started:
        monitor.close()


def running(job_id: str) -> None:
    """Stop a job a test left running."""
    from monitor_helpers import cli

    cli("stop", job_id)


# -- the guard ------------------------------------------------------------------------

ROUTES = [
    ("GET", "/"),
    ("GET", "/targets"),
    ("GET", "/job/local/abc"),
    ("GET", "/api/jobs"),
    ("GET", "/api/targets"),
    ("GET", "/api/job/local/abc"),
    ("GET", "/api/log/local/abc?offset=0"),
    ("GET", "/thumb/local/abc?n=0"),
    ("GET", "/frame/local/abc?n=0"),
    ("GET", "/static/monitor.js"),
    ("GET", "/static/monitor.css"),
    ("GET", "/no/such/page"),
    ("POST", "/api/action/stop/local/abc"),
    ("POST", "/api/action/delete/local/abc"),
]


def test_every_route_refuses_a_request_without_the_token(monitors: list[Monitor]) -> None:
    monitor = start_monitor()
    monitors.append(monitor)
    monitor.poller.poll()
    wrong = {"Authorization": "Bearer not-the-token"}
    with monitor.anonymous() as c:
        for method, path in ROUTES:
            for headers in ({}, wrong, {"Cookie": f"{monitor.app.cookie}=guess"}):
                answer = c.request(method, path, headers=headers)
                assert answer.status_code == 403, (method, path, headers)
                assert "token" in answer.text
            # the CSRF value alone is not a key
            answer = c.request(method, path, headers={"X-CSRF-Token": monitor.app.csrf})
            assert answer.status_code == 403
        wrong_query = c.get("/?token=" + monitor.app.token[:-2] + "xx")
        assert wrong_query.status_code == 403
    with monitor.client() as c:  # the same routes answer with it
        for method, path in ROUTES:
            if method == "GET":
                assert c.get(path).status_code != 403, path


def test_the_token_in_the_url_becomes_a_strict_cookie(monitors: list[Monitor]) -> None:
    import httpx

    monitor = start_monitor()
    monitors.append(monitor)
    with monitor.anonymous() as c:
        first = c.get(f"/targets?token={monitor.app.token}&x=1")
        assert first.status_code == 303
        assert first.headers["location"] == "/targets?x=1"  # the token leaves the URL
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert first.headers["referrer-policy"] == "no-referrer"
        page = c.get("/targets")  # the cookie jar now holds it
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
    with httpx.Client(base_url=monitor.url, follow_redirects=True) as browser:
        assert browser.get(f"/?token={monitor.app.token}").status_code == 200


def test_an_action_without_the_csrf_value_is_refused(monitors: list[Monitor]) -> None:
    job = submit("--", "sleep", "60")
    monitor = start_monitor()
    monitors.append(monitor)
    try:
        wait_until(lambda: monitor.poller.poll() and monitor.row(job)["state"] == "running", "run")
        with monitor.client() as c:
            path = f"/api/action/stop/local/{job}"
            assert c.post(path).status_code == 403
            assert c.post(path, headers={"X-CSRF-Token": "wrong"}).status_code == 403
            assert c.get(path).status_code == 405  # never a GET
            monitor.poller.poll()
            assert monitor.row(job)["state"] == "running"  # nothing was done
            done = c.post(path, headers={"X-CSRF-Token": monitor.app.csrf}, json={})
            assert done.status_code == 200, done.text
            assert done.json()["ok"] is True
        wait_until(
            lambda: monitor.poller.poll() and monitor.row(job)["state"] == "stopped", "stopped"
        )
    finally:
        running(job)


# -- what the pages show --------------------------------------------------------------


def _every_answer(monitor: Monitor, jobs: list[tuple[str, str]]) -> str:
    paths = ["/", "/targets", "/api/jobs", "/api/targets", "/static/monitor.js"]
    for target, job in jobs:
        paths += [f"/job/{target}/{job}", f"/api/job/{target}/{job}", f"/api/log/{target}/{job}"]
    with monitor.client() as c:
        return "\n".join(c.get(p).text for p in paths)


def test_no_secret_reaches_a_page(
    monitors: list[Monitor], tmp_path: Path, ovfarm_settings: dict[str, Any]
) -> None:
    env = {"OV_KEY": "test-key", "HOOK_URL": "https://hooks.example/T000/very-secret-hook"}
    config = ovfarm_config(
        tmp_path / "targets.toml",
        ovfarm_settings,
        '[[notify.webhooks]]\nurl = { env = "HOOK_URL" }\n',
    )
    os.environ.update(env)
    try:
        where = {"FARM_ADAPTERS_CONFIG": str(config)}
        job = submit("-t", "ov", "--no-notify", "--", "true", env=where)
        monitor = start_monitor(config)
        monitors.append(monitor)
        monitor.poller.poll()
        monitor.poller.follow("ov", job)
        monitor.poller.poll()
        text = _every_answer(monitor, [("ov", job)])
        assert job in text and "ovfarm" in text  # the pages did show the target's job
        for secret in env.values():
            assert secret not in text
        assert "very-secret" not in text
    finally:
        for name in env:
            os.environ.pop(name, None)


def test_job_text_is_escaped(monitors: list[Monitor]) -> None:
    name = "<script>alert('x')</script>"
    job = submit("--name", name, "--", "sh", "-c", "echo '<b>bold</b> & <img src=x>'")
    monitor = start_monitor()
    monitors.append(monitor)
    monitor.poller.follow("local", job)
    wait_until(lambda: monitor.poller.poll() and monitor.row(job)["state"] == "completed", "end")
    monitor.poller.poll()
    with monitor.client() as c:
        pages = [c.get(p).text for p in ("/", f"/job/local/{job}")]
        # the JSON carries HTML fragments for the page to swap in: escaped too
        fragments = [c.get("/api/jobs").json()["rows"], c.get(f"/api/job/local/{job}").json()]
        for text in [*pages, *(str(f) for f in fragments)]:
            assert "<script>alert" not in text
            assert "&lt;script&gt;alert" in text
        assert c.get("/api/jobs").headers["content-type"] == "application/json"
        # the log goes to the page as text (the script adds it as a text node)
        log = c.get(f"/api/log/local/{job}?offset=0").json()
        assert "<b>bold</b> & <img src=x>" in log["text"]


def test_jobs_of_two_targets_side_by_side(
    monitors: list[Monitor], tmp_path: Path, ovfarm_settings: dict[str, Any]
) -> None:
    config = ovfarm_config(tmp_path / "targets.toml", ovfarm_settings)
    env = {"FARM_ADAPTERS_CONFIG": str(config), "OV_KEY": "test-key"}
    os.environ["OV_KEY"] = "test-key"
    try:
        local_job = submit("--name", "here", "--", "true", env=env)
        ov_job = submit("-t", "ov", "--name", "there", "--", "true", env=env)
        monitor = start_monitor(config)
        monitors.append(monitor)

        def both_done() -> bool:
            monitor.poller.poll()
            states = {(r["target"], r["id"]): r["state"] for r in monitor.rows()}
            return states.get(("local", local_job)) == states.get(("ov", ov_job)) == "completed"

        wait_until(both_done, "both jobs completed")
        with monitor.client() as c:
            only_ov = c.get("/api/jobs", params={"target": "ov"}).json()["jobs"]
            assert [r["id"] for r in only_ov] == [ov_job]
            named = c.get("/api/jobs", params={"name": "her*"}).json()["jobs"]
            assert [r["id"] for r in named] == [local_job]
            targets = {t["name"]: t for t in c.get("/api/targets").json()["targets"]}
            assert targets["ov"]["reachable"] and targets["local"]["reachable"]
            assert "priority" not in targets["ov"]["capabilities"]
            # actions follow the capabilities: ovfarm cannot change a priority
            page = c.get(f"/api/job/ov/{ov_job}").json()
            assert 'data-action="priority"' not in page["actions"]
            refused = c.post(
                f"/api/action/priority/ov/{ov_job}",
                headers={"X-CSRF-Token": monitor.app.csrf},
                json={"value": 10},
            )
            assert refused.status_code == 409 and "capability priority" in refused.text
    finally:
        os.environ.pop("OV_KEY", None)


class HangingServer:
    """Accepts connections and never answers: a farm that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_dead_target_shows_unreachable_and_never_blocks_the_page(
    monitors: list[Monitor], tmp_path: Path
) -> None:
    from farm_adapters.journal import Journal
    from farm_adapters.models import parse_request

    dead = HangingServer()
    config = tmp_path / "targets.toml"
    config.write_text(
        f'[targets.dead]\nbackend = "ovfarm"\nurl = "http://127.0.0.1:{dead.port}"\n'
        f'folders = "{tmp_path}/f"\nlog_dir = "{tmp_path}/l"\n'
    )
    Journal().record(
        job_id="lost1",
        target="dead",
        backend="ovfarm",
        request=parse_request({"commands": [["x"]]}),
    )
    job = submit("--", "true", env={"FARM_ADAPTERS_CONFIG": str(config)})
    monitor = start_monitor(config)
    monitors.append(monitor)
    try:
        round_done = threading.Event()
        threading.Thread(target=lambda: (monitor.poller.poll(), round_done.set())).start()
        with monitor.client() as c:
            # while the round waits on the dead farm, every page answers
            for path in ("/", "/targets", "/api/jobs", "/job/dead/lost1"):
                assert c.get(path).status_code == 200
        assert round_done.wait(TIMEOUT)
        with monitor.client() as c:
            targets = {t["name"]: t for t in c.get("/api/targets").json()["targets"]}
            assert targets["dead"]["reachable"] is False
            assert targets["local"]["reachable"] is True
            jobs = {r["id"]: r for r in c.get("/api/jobs").json()["jobs"]}
            assert jobs["lost1"]["mark"] == "unreachable"
            assert jobs[job]["mark"] == ""
            assert "unreachable" in c.get("/targets").text
    finally:
        dead.close()


def test_one_poll_serves_every_client(monitors: list[Monitor]) -> None:
    submit("--", "true")
    monitor = start_monitor(start=True)  # the interval (an hour) never comes round
    monitors.append(monitor)
    rounds = monitor.poller.rounds
    generations = set()
    results: list[int] = []

    def browse() -> None:
        with monitor.client() as c:
            for _ in range(5):
                assert c.get("/").status_code == 200
                results.append(c.get("/api/jobs").json()["generation"])
                c.get("/api/targets")

    clients = [threading.Thread(target=browse) for _ in range(3)]
    for t in clients:
        t.start()
    for t in clients:
        t.join(TIMEOUT)
    generations = set(results)
    assert len(results) == 15
    assert generations == {monitor.poller.snapshot.generation}  # one snapshot for all
    assert monitor.poller.rounds == rounds  # page loads never poll a farm


def test_log_tails_by_offset_and_thumbnails_are_served(
    monitors: list[Monitor], tmp_path: Path
) -> None:
    pytest.importorskip("PIL", reason="thumbnails need Pillow (the demo extra)")
    from PIL import Image

    script = tmp_path / "render.py"
    script.write_text(
        "import sys\nfrom PIL import Image\n"
        "Image.new('RGB', (320, 200), (40 * int(sys.argv[2]), 90, 160)).save(sys.argv[1])\n"
        "print('rendered', sys.argv[1])\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        f'name = "frames"\nframes = "1-3"\noutputs = ["{out}/f_{{frame:04d}}.png"]\n'
        f'commands = [["{sys.executable}", "{script}", "{out}/f_{{frame:04d}}.png", "{{frame}}"]]\n'
    )
    job = submit(str(job_file))
    monitor = start_monitor(thumbnails=tmp_path / "thumbs")
    monitors.append(monitor)
    monitor.poller.follow("local", job)
    wait_until(lambda: monitor.poller.poll() and monitor.row(job)["state"] == "completed", "end")
    wait_until(lambda: monitor.poller.poll().generation and _log_complete(monitor, job), "log")
    with monitor.client() as c:
        first = c.get(f"/api/log/local/{job}", params={"offset": 0}).json()
        assert first["text"].count("rendered") == 3
        again = c.get(f"/api/log/local/{job}", params={"offset": first["next"]}).json()
        assert again["text"] == "" and again["next"] == first["next"]
        parts = c.get(f"/api/job/local/{job}").json()
        assert parts["tasks"].count('data-state="completed"') == 3
        assert parts["outputs"].count('class="thumb"') == 3
        assert 'id="last-frame"' in parts["outputs"]
        for kind in ("thumb", "frame"):
            image = c.get(f"/{kind}/local/{job}", params={"n": 2})
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            path = tmp_path / f"{kind}.png"
            path.write_bytes(image.content)
            with Image.open(path) as im:
                assert im.size[0] <= 1280 and im.getpixel((5, 5))[:3] == (120, 90, 160)
        assert c.get(f"/thumb/local/{job}", params={"n": 9}).status_code == 404
        assert c.get(f"/thumb/local/{job}", params={"n": "../x"}).status_code == 404


def _log_complete(monitor: Monitor, job: str) -> bool:
    with monitor.client() as c:
        return bool(c.get(f"/api/log/local/{job}", params={"offset": 0}).json()["complete"])


def test_a_job_ending_while_watched_is_notified_once(
    monitors: list[Monitor], tmp_path: Path, ovfarm_settings: dict[str, Any]
) -> None:
    sent = tmp_path / "sent.txt"
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import sys\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(' '.join(sys.argv[2:]) + '\\n')\n"
    )
    config = ovfarm_config(
        tmp_path / "targets.toml",
        ovfarm_settings,
        f'[[notify.commands]]\nargv = ["{sys.executable}", "{hook}", "{sent}", "{{job}}", '
        f'"{{state}}", "{{target}}"]\n',
    )
    os.environ["OV_KEY"] = "test-key"
    try:
        env = {"FARM_ADAPTERS_CONFIG": str(config)}
        job = submit("-t", "ov", "--", "sleep", "3", env=env)
        monitor = start_monitor(config, interval=0.5, start=True, notify=True)
        monitors.append(monitor)
        wait_until(lambda: sent.exists() and sent.read_text(), "the notification")
        round_now = monitor.poller.rounds
        wait_until(lambda: monitor.poller.rounds >= round_now + 3, "three more rounds")
        assert sent.read_text().splitlines() == [f"{job} completed ov"]
        assert monitor.poller.notified == [("ov", job, "completed")]
    finally:
        os.environ.pop("OV_KEY", None)


# -- the command ----------------------------------------------------------------------


def _start_command(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [*EXE, "monitor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    return proc, line


def _end(proc: subprocess.Popen[str]) -> str:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return err


def test_the_command_prints_a_url_with_a_token_on_loopback() -> None:
    import httpx

    proc, url = _start_command("--port", "0")
    try:
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]{32,})", url)
        assert match, url
        base = f"http://127.0.0.1:{match.group(1)}"
        assert httpx.get(base + "/").status_code == 403
        with httpx.Client(follow_redirects=True) as c:
            page = c.get(url)
            assert page.status_code == 200 and "farm-adapters" in page.text
    finally:
        err = _end(proc)
    assert "Traceback" not in err


def test_binding_another_address_warns(tmp_path: Path) -> None:
    proc, url = _start_command("--port", "0", "--bind", "0.0.0.0")
    err = _end(proc)
    assert url.startswith("http://0.0.0.0:")
    assert "warning: listening on 0.0.0.0" in err and "token" in err


def test_without_the_monitor_extra_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from click.testing import CliRunner

    from farm_adapters.cli import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "starlette" else real(name)
    )
    result = CliRunner().invoke(cli, ["monitor", "--port", "0"])
    assert result.exit_code == 2
    assert "pip install '.[monitor]'" in result.output and "starlette" in result.output
