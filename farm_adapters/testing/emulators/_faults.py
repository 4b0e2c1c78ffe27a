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
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["Faults", "InFlight", "answer"]


class InFlight:
    """Requests being served at once, per route (``METHOD /path``); ``peak`` is a
    test's evidence that a client keeps several in flight, and how many at most."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def install(self, app: Any) -> None:
        async def in_flight(request: Any, call_next: Any) -> Any:
            key = f"{request.method} {request.url.path}"
            if request.url.path.startswith("/_emulator"):
                return await call_next(request)
            with self._lock:
                count = self._now[key] = self._now.get(key, 0) + 1
                self.peak[key] = max(self.peak.get(key, 0), count)
            try:
                return await call_next(request)
            finally:
                with self._lock:
                    self._now[key] -= 1

        app.middleware("http")(in_flight)

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
