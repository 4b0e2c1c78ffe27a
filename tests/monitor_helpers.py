"""What the monitor's tests share: a real monitor (uvicorn on 127.0.0.1) over a real
poller, the command line for submitting, and waiting for a state."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cli_helpers import cli

TIMEOUT = 60.0


def submit(*args: str, env: dict[str, str] | None = None) -> str:
    """Submit through the command line; the job id."""
    result = cli("submit", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Monitor:
    """A running monitor: its URL, app (token, CSRF value), poller and server."""

    def __init__(self, server: Any, app: Any, poller: Any) -> None:
        self.server, self.app, self.poller = server, app, poller
        self.url = server.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/?token={self.app.token}"

    def client(self, **kwargs: Any) -> httpx.Client:
        """An HTTP client holding the token (as a script would send it)."""
        headers = {"Authorization": f"Bearer {self.app.token}", **kwargs.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def anonymous(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def rows(self) -> list[dict[str, Any]]:
        with self.client() as c:
            return list(c.get("/api/jobs").json()["jobs"])

    def row(self, job_id: str) -> dict[str, Any] | None:
        return next((r for r in self.rows() if r["id"] == job_id), None)

    def close(self) -> None:
        self.poller.stop()
        self.server.stop()


def start_monitor(
    config: Path | None = None,
    *,
    interval: float = 3600.0,
    start: bool = False,
    notify: bool = False,
    thumbnails: Path | None = None,
) -> Monitor:
    """A monitor on a free port. With ``start`` its poller polls every ``interval``
    seconds; without, the test calls ``monitor.poller.poll()`` itself."""
    from farm_adapters.cli._common import Context
    from farm_adapters.monitor import Poller, create_app
    from farm_adapters.testing.emulators._server import BackgroundServer

    obj = Context(str(config) if config else None, False)
    poller = Poller(obj, interval=interval, notify=notify)
    app = create_app(poller, thumbnails=thumbnails)
    server = BackgroundServer(app).start()
    if start:
        poller.start()
        assert poller.wait_ready(TIMEOUT)
    return Monitor(server, app, poller)


def ovfarm_config(path: Path, settings: dict[str, Any], extra: str = "") -> Path:
    """A targets file with ``local`` and ``ov`` (the ovfarm emulator; its key from the
    OV_KEY variable)."""
    path.write_text(
        'default_target = "local"\n[targets.local]\nbackend = "local"\n'
        f'[targets.ov]\nbackend = "ovfarm"\nurl = "{settings["url"]}"\n'
        f'api_key = {{ env = "OV_KEY" }}\nfolders = "{settings["folders"]}"\n'
        f'log_dir = "{settings["log_dir"]}"\nretries = 0\n' + extra
    )
    return path
