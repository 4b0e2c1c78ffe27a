"""Fault injection shared by the emulators (test controls, not part of any real API).

A fault matches requests by method and a regular expression on the path, acts
``before`` the route runs (the work is not done) or ``after`` it (the work is done),
lets the first ``skip`` matching requests through untouched, then fires ``count``
times (-1: forever). Kinds:

- ``error``: answer ``status`` (the emulator's own error body);
- ``latency``: sleep ``seconds`` first;
- ``hang``: after the work, never answer within ``seconds`` (the client's answer is lost);
- ``answer``: answer ``status`` (default 200) with ``body`` verbatim as ``content_type``
  (default ``application/json``), e.g. an HTML error page from a proxy, or a 200 whose
  JSON is ``null``, ``[]``, ``{}`` or a string; a 429 or 503 carries ``Retry-After:
  retry_after``.

Both pieces are plain ASGI middleware (no ``BaseHTTPMiddleware``, which spawns a task
group and a memory stream per request and was most of an emulator's CPU per submit):
the bench runs an emulator beside the client on a small machine, and an emulator that
burns CPU per request only measures itself.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["FaultGate", "Faults", "InFlight", "answer"]

#: Paths of the test controls: never counted, never faulted, never in flight.
CONTROLS = "/_emulator"


class InFlight:
    """Requests being served at once, per route (``METHOD /path``); ``peak`` is a
    test's evidence that a client keeps several in flight, and how many at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def install(self, app: Any) -> None:
        """Add the gauge to ``app`` as its outermost middleware so far: a request
        waiting in an injected latency counts."""
        app.add_middleware(_Gauge, gauge=self)

    def enter(self, key: str) -> None:
        with self._lock:
            count = self._now[key] = self._now.get(key, 0) + 1
            self.peak[key] = max(self.peak.get(key, 0), count)

    def leave(self, key: str) -> None:
        with self._lock:
            self._now[key] -= 1

    def peaks(self) -> dict[str, int]:
        with self._lock:
            return dict(self.peak)

    def reset(self) -> None:
        with self._lock:
            self.peak = {key: count for key, count in self._now.items() if count}


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        kind = str(spec.get("kind", "error"))
        entry = {
            "path": str(spec.get("path", ".*")),
            "method": str(spec.get("method", "*")),
            "phase": str(spec.get("phase", "before")),
            "kind": kind,
            "status": int(spec.get("status", 200 if kind == "answer" else 500)),
            "seconds": float(spec.get("seconds", 0)),
            "retry_after": spec.get("retry_after", 1),
            "body": str(spec.get("body", "")),
            "content_type": str(spec.get("content_type", "application/json")),
            "skip": int(spec.get("skip", 0)),
            "remaining": int(spec.get("count", 1)),
        }
        with self._lock:
            self._items.append(entry)
        return entry

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def take(self, method: str, path: str, phase: str) -> dict[str, Any] | None:
        """The first matching fault with firings left (one firing is used), or None."""
        with self._lock:
            for fault in self._items:
                if fault["phase"] != phase or fault["remaining"] == 0:
                    continue
                if fault["method"] not in ("*", method) or not re.search(fault["path"], path):
                    continue
                if fault["skip"] > 0:
                    fault["skip"] -= 1
                    return None
                if fault["remaining"] > 0:
                    fault["remaining"] -= 1
                return dict(fault)
        return None


def answer(fault: dict[str, Any] | None) -> Any:
    """The response an ``answer`` fault gives, or None for any other fault."""
    if fault is None or fault["kind"] != "answer":
        return None
    from starlette.responses import Response

    headers = {}
    if fault["status"] in (429, 503) and fault["retry_after"] is not None:
        headers["Retry-After"] = str(fault["retry_after"])
    return Response(
        fault["body"],
        status_code=fault["status"],
        media_type=fault["content_type"],
        headers=headers,
    )


def _untouched(scope: Any) -> bool:
    """Not an HTTP request, or a test control: passed on as it is."""
    return bool(scope["type"] != "http" or scope["path"].startswith(CONTROLS))


class _Gauge:
    """ASGI middleware of :class:`InFlight`: a request is in flight from its arrival
    until its answer starts (or the app gives up without one)."""

    def __init__(self, app: Any, gauge: InFlight) -> None:
        self.app = app
        self.gauge = gauge

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if _untouched(scope):
            await self.app(scope, receive, send)
            return
        key = f"{scope['method']} {scope['path']}"
        self.gauge.enter(key)
        inside = True

        async def started(message: Any) -> None:
            nonlocal inside
            if inside and message["type"] == "http.response.start":
                inside = False
                self.gauge.leave(key)
            await send(message)

        try:
            await self.app(scope, receive, started)
        finally:
            if inside:
                self.gauge.leave(key)


class FaultGate:
    """ASGI middleware of an emulator: counts each request (``seen``), applies the
    :class:`Faults` due before the route (answer, latency, error), lets ``admit`` refuse
    it (authentication), runs the route, then applies the faults due after it, when the
    route's answer starts: the work is done, and the answer is replaced (answer, error)
    or held back ``seconds`` (hang). ``error(fault, phase)`` is the emulator's own
    error response. Test controls (``/_emulator``) pass untouched."""

    def __init__(
        self,
        app: Any,
        *,
        faults: Faults,
        seen: Callable[[Any], None],
        error: Callable[[dict[str, Any], str], Any],
        admit: Callable[[Any], Any] | None = None,
    ) -> None:
        self.app = app
        self.faults = faults
        self.seen = seen
        self.error = error
        self.admit = admit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if _untouched(scope):
            await self.app(scope, receive, send)
            return
        from starlette.requests import Request

        request = Request(scope, receive)
        method, path = scope["method"], scope["path"]
        self.seen(request)
        fault = self.faults.take(method, path, "before")
        if (reply := answer(fault)) is not None:  # fault kind 'answer'
            await reply(scope, receive, send)
            return
        if fault is not None:
            if fault["kind"] == "latency":
                await asyncio.sleep(fault["seconds"])
            elif fault["kind"] == "error":
                await self.error(fault, "before")(scope, receive, send)
                return
        if self.admit is not None and (refusal := self.admit(request)) is not None:
            await refusal(scope, receive, send)
            return
        replaced = False

        async def after(message: Any) -> None:
            nonlocal replaced
            if replaced:
                return  # the route's own answer, after a replacement: dropped
            if message["type"] == "http.response.start":
                late = self.faults.take(method, path, "after")
                reply = answer(late)
                if reply is None and late is not None and late["kind"] == "error":
                    reply = self.error(late, "after")
                if reply is not None:
                    replaced = True
                    await reply(scope, receive, send)
                    return
                if late is not None and late["kind"] == "hang":
                    await asyncio.sleep(late["seconds"])
            await send(message)

        await self.app(scope, receive, after)
