"""When each workload of a ``runai`` job started and ended, from Run:ai's own timestamps.

A workload listing carries ``createdAt``, ``phaseUpdatedAt`` and ``completedAt`` but no
start time: a workload seen ``Running`` started at its ``phaseUpdatedAt``; one that is
already over is read once from its history (the ``Running`` phase update after the last
wait). Ended workloads never change (a rerun is a new workload), so their start is kept
in memory and in ``<log_dir>/<job>.times.json``: a later poll, or the next process,
asks the farm nothing more.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

#: Phases before a container runs: a Running update after one of them is a start.
WAITING = frozenset({"Creating", "Pending", "Initializing", "Resuming"})


def parse_time(text: Any) -> datetime | None:
    """An ISO date-time as Run:ai writes it (``...Z``), else None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def start_from_history(records: list[dict[str, Any]]) -> str | None:
    """The ``creationTimestamp`` of the latest run's ``Running`` phase update."""
    updates = []
    for record in records:
        meta = record.get("meta") or {}
        update = (record.get("spec") or {}).get("phaseUpdate") or {}
        when = parse_time(meta.get("creationTimestamp"))
        if meta.get("type") == "PhaseUpdate" and when is not None:
            updates.append((when, str(meta["creationTimestamp"]), update.get("phase")))
    updates.sort(key=lambda u: u[0])
    start: str | None = None
    for _, text, phase in updates:
        if phase in WAITING:
            start = None
        elif phase == "Running" and start is None:
            start = text
    return start


class StartBook:
    """Start times of ended workloads, by workload name, per job. Thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._jobs: dict[str, dict[str, str | None]] = {}
        self._lock = threading.Lock()

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.times.json"

    def get(self, job_id: str) -> dict[str, str | None]:
        with self._lock:
            known = self._jobs.get(job_id)
        if known is None:
            try:
                data = json.loads(self._path(job_id).read_text())
            except (OSError, ValueError):
                data = {}
            if not isinstance(data, dict):
                data = {}
            known = {str(k): v for k, v in data.items() if v is None or isinstance(v, str)}
            with self._lock:
                known = self._jobs.setdefault(job_id, known)
        with self._lock:
            return dict(known)

    def add(self, job_id: str, starts: dict[str, str | None]) -> None:
        with self._lock:
            known = self._jobs.setdefault(job_id, {})
            known.update(starts)
            data = dict(known)
        path = self._path(job_id)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with contextlib.suppress(OSError):  # only an optimisation: memory still has it
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with open(fd, "w") as f:
                f.write(json.dumps(data))
            os.replace(tmp, path)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
