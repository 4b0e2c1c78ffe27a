"""JSON requests to a plain-HTTP farm over the standard library's keep-alive
connections: the hot path of a big submit.

httpx spends about 0.5 ms of CPU per request in its client layer (URL and header
merging, cookies, auth and redirect flows, two writes per request); ``http.client``
sends the same request in one write for about a third of that. On a small machine
beside a busy farm, that CPU is the submit's throughput. :class:`HttpSession` uses
this path only where it changes nothing a user sees: a request with a JSON body and
no query, to an ``http://`` farm, with no proxy in the environment and no test
transport. Everything else goes through httpx.

Errors are raised as the httpx exceptions :meth:`HttpSession.request` already maps:
``ConnectError``/``ConnectTimeout`` when the server was never reached (safe to send
again), ``ReadTimeout``/``ReadError``/``RemoteProtocolError`` once the request may
have reached it. An idle connection the server has closed is noticed before it is
reused (as httpcore does), so a keep-alive timeout on the server never turns a submit
into an ambiguous one.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import socket
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

__all__ = ["KeepAlivePool", "usable"]

#: A path http.client sends as it is (httpx would percent-encode anything else).
PLAIN_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@/%-]*")
PROXY_VARIABLES = ("http_proxy", "all_proxy", "HTTP_PROXY", "ALL_PROXY")
#: Idle connections kept, as the httpx client's own pool keeps.
KEPT = 8


def usable(base_url: str, transport: Any) -> bool:
    """Whether JSON requests to ``base_url`` may take this path: plain HTTP, no test
    transport, no proxy in the environment (httpx would honour it; this path would not)."""
    if transport is not None or not base_url.startswith("http://"):
        return False
    return not any(os.environ.get(name) for name in PROXY_VARIABLES)


class KeepAlivePool:
    """Keep-alive connections to one ``http://`` server, shared by threads: each
    request takes an idle connection (or opens one), is written in one ``sendall``
    (head and body: the server reads it in one go), and gives the connection back after
    the answer, which :class:`http.client.HTTPResponse` reads."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float,
        connect_timeout: float,
        headers: Mapping[str, str],
    ) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        host = self.host if parts.port is None else f"{self.host}:{self.port}"
        self.headers = {
            "Host": host,
            **headers,
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
        }
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()

    def accepts(self, path: str) -> bool:
        """Whether ``path`` can be sent as it is."""
        return PLAIN_PATH.fullmatch(path) is not None

    def send(
        self, method: str, path: str, body: Any, headers: Mapping[str, str] | None
    ) -> httpx.Response:
        """One request with ``body`` as JSON; the whole answer, as an httpx Response."""
        content = json.dumps(
            body, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()
        merged = self.headers
        if headers:  # the request's own win, names compared as HTTP does (any case)
            own = {name.lower() for name in headers}
            merged = {k: v for k, v in merged.items() if k.lower() not in own}
            merged.update(headers)
        lines = [f"{method} {self.prefix}{path} HTTP/1.1"]
        for name, value in merged.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r}: a line break has no place in a header")
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(content)}\r\n\r\n")
        request = "\r\n".join(lines).encode("latin-1") + content
        sock = self._take()
        answer = None
        try:
            sock.sendall(request)
            answer = http.client.HTTPResponse(sock, method=method)
            answer.begin()
            data = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            if answer is not None:
                answer.close()
            sock.close()
            if isinstance(exc, TimeoutError):
                raise httpx.ReadTimeout(f"no answer within {self.timeout:g} s") from exc
            raise httpx.RemoteProtocolError(
                f"the connection failed during the request ({type(exc).__name__}: {exc})"
            ) from exc
        if answer.will_close:
            sock.close()
        else:
            self._give(sock)
        return httpx.Response(answer.status, headers=answer.getheaders(), content=data)

    def _take(self) -> socket.socket:
        while True:
            with self._lock:
                sock = self._idle.pop() if self._idle else None
            if sock is None:
                break
            if _alive(sock):
                return sock
            sock.close()  # closed by the server while idle (its keep-alive timeout)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection within {self.connect_timeout:g} s") from exc
        except OSError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        sock.settimeout(self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _give(self, sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < KEPT:
                self._idle.append(sock)
                return
        sock.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


def _alive(sock: socket.socket) -> bool:
    """An idle connection is fit for a request unless its socket is readable: the
    server closed it (or sent something unasked, which spoils it as well)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable
