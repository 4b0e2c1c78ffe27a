"""JSON requests to a plain-HTTP farm go over keep-alive connections of the standard
library (issue 17, item 6: a big submit's CPU), with the same retry and error rules as
every other request: a request that never reached the server is sent again, one that
may have reached it is an OutcomeUnknownError (the caller looks before trying again),
and an idle connection the server closed never costs a submit. A real HTTP/1.1 server
on 127.0.0.1 answers, counting connections and requests."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from farm_adapters.errors import BackendUnavailableError
from farm_adapters.http import HttpSession, OutcomeUnknownError

pytest.importorskip("httpx")


class Farm(ThreadingHTTPServer):
    """Echoes each JSON body back; ``mode`` decides how: ``ok``, ``close`` (answers
    with ``Connection: close``), ``idle-close`` (answers as keep-alive, then closes the
    connection, as a server's keep-alive timeout does), ``silent`` (reads the request,
    never answers), ``drop`` (reads the request, closes without an answer)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "ok"
        self.connections = 0
        self.bodies: list[Any] = []
        self.headers_seen: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.closed = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Farm

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def finish(self) -> None:
        super().finish()
        self.connection.close()
        self.server.closed.set()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.bodies.append(body)
            self.server.headers_seen.append(dict(self.headers))
            mode = self.server.mode
        if mode == "silent":
            threading.Event().wait(5)
            self.close_connection = True
            return
        if mode == "drop":
            self.close_connection = True
            return
        answer = json.dumps({"echo": body, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if mode == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer)
        if mode == "idle-close":
            self.close_connection = True


@pytest.fixture
def farm() -> Iterator[Farm]:
    server = Farm()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def session(url: str, **kwargs: Any) -> HttpSession:
    return HttpSession(url, name="t", retries=2, backoff=0.01, **kwargs)


def test_json_requests_share_one_connection_and_arrive_whole(farm: Farm) -> None:
    http = session(farm.url + "/base", headers={"X-Key": "k"})
    bodies = [{"task": i, "name": "ünïcode", "args": ["a b", "$x"]} for i in range(50)]
    try:
        for body in bodies:
            response = http.request(
                "POST", "/tasks/submit", idempotent=False, json=body, headers={"X-Extra": "1"}
            )
            assert http.json(response, "submitting") == {"echo": body, "path": "/base/tasks/submit"}
    finally:
        http.close()
    assert farm.bodies == bodies
    assert farm.connections == 1
    seen = farm.headers_seen[-1]
    assert seen["X-Key"] == "k" and seen["X-Extra"] == "1"
    assert seen["Content-Type"] == "application/json"
    assert seen["User-Agent"].startswith("farm-adapters/")


def test_threads_submit_beside_each_other(farm: Farm) -> None:
    http = session(farm.url)
    errors: list[BaseException] = []

    def post(first: int) -> None:
        try:
            for i in range(first, first + 25):
                response = http.request("POST", "/submit", idempotent=False, json={"i": i})
                assert http.json(response, "submitting")["echo"] == {"i": i}
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    http.close()
    assert not errors
    assert sorted(b["i"] for b in farm.bodies) == [n * 100 + i for n in range(4) for i in range(25)]
    assert farm.connections <= 4


@pytest.mark.parametrize("mode", ["close", "idle-close"])
def test_a_connection_the_server_closed_is_not_reused(farm: Farm, mode: str) -> None:
    http = session(farm.url)
    farm.mode = mode
    try:
        for i in range(5):
            farm.closed.clear()
            response = http.request("POST", "/submit", idempotent=False, json={"i": i})
            assert http.json(response, "submitting")["echo"] == {"i": i}
            assert farm.closed.wait(60)  # the server has closed this connection
    finally:
        http.close()
    assert farm.bodies == [{"i": i} for i in range(5)]  # each sent once, none lost
    assert farm.connections == 5


@pytest.mark.parametrize("mode", ["silent", "drop"])
def test_a_lost_answer_is_an_outcome_unknown_and_never_resent(farm: Farm, mode: str) -> None:
    http = session(farm.url, timeout=1.0)
    farm.mode = mode
    try:
        with pytest.raises(OutcomeUnknownError, match="POST /submit"):
            http.request("POST", "/submit", idempotent=False, json={"once": True})
    finally:
        http.close()
    assert farm.bodies == [{"once": True}]


def test_an_unreachable_farm_is_unavailable_after_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    http = session(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(BackendUnavailableError, match="cannot connect") as info:
            http.request("POST", "/submit", idempotent=False, json={})
    finally:
        http.close()
    assert not isinstance(info.value, OutcomeUnknownError)
    assert http.requests_sent == 3  # the first try and two retries


def test_a_proxy_in_the_environment_is_honoured_by_httpx(
    farm: Farm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keep-alive path knows no proxies: with one set, requests go through httpx,
    # which sends them to the proxy (here nothing listens: unreachable, not the farm).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    http = session(farm.url.replace("127.0.0.1", "localhost"))
    try:
        with pytest.raises(BackendUnavailableError):
            http.request("POST", "/submit", idempotent=False, json={"i": 1})
    finally:
        http.close()
    assert farm.bodies == []
