"""Fault injection shared by the emulators (test controls, not part of any real API).

A fault matches requests by method and a regular expression on the path, acts
``before`` the route runs (the work is not done) or ``after`` it (the work is done),
and fires ``count`` times (-1: forever). Kinds: ``error`` (answer ``status``),
``latency`` (sleep ``seconds`` first), ``hang`` (after the work, never answer within
``seconds``: the client's answer is lost).
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["Faults"]


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []

    def add(self, spec: dict[str, Any]) -> dict[str, Any]:
        entry = {
            "path": str(spec.get("path", ".*")),
            "method": str(spec.get("method", "*")),
            "phase": str(spec.get("phase", "before")),
            "kind": str(spec.get("kind", "error")),
            "status": int(spec.get("status", 500)),
            "seconds": float(spec.get("seconds", 0)),
            "retry_after": spec.get("retry_after", 1),
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
                if fault["remaining"] > 0:
                    fault["remaining"] -= 1
                return dict(fault)
        return None
