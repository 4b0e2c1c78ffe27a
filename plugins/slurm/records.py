"""This workstation's record of the Slurm jobs it submitted: one JSON file per job
(the array id of every attempt, the task labels, the script and options to rerun),
written atomically; a file lock serialises stop and restart across processes (a DCC
and the CLI)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from farm_adapters import JobNotFoundError
from farm_adapters.errors import BackendUnavailableError

__all__ = ["JobStore", "current_attempts"]


class JobStore:
    """Job records under ``folder/jobs``."""

    def __init__(self, folder: Path, target: str) -> None:
        self.folder = folder / "jobs"
        self.target = target
        self._lock = threading.Lock()

    def path(self, job_id: str) -> Path:
        if not re.fullmatch(r"\d{1,20}", job_id):
            raise JobNotFoundError(job_id, backend=self.target)
        return self.folder / f"{job_id}.json"

    def load(self, job_id: str) -> dict[str, Any]:
        """The record; JobNotFoundError for a job this workstation did not submit."""
        path = self.path(job_id)
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except FileNotFoundError:
            raise JobNotFoundError(job_id, backend=self.target) from None
        except (OSError, ValueError) as exc:
            raise BackendUnavailableError(f"cannot read the job record {path}: {exc}") from exc

    def save(self, record: dict[str, Any]) -> None:
        path = self.path(record["id"])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
            tmp.write_text(json.dumps(record))
            os.replace(tmp, path)
        except OSError as exc:
            raise BackendUnavailableError(
                f"cannot write the job record {path}: {exc}; set state_dir in the target"
            ) from exc

    def all(self) -> list[dict[str, Any]]:
        records = []
        with contextlib.suppress(FileNotFoundError):
            for path in self.folder.glob("*.json"):
                with contextlib.suppress(OSError, ValueError):
                    records.append(json.loads(path.read_text()))
        return records

    @contextlib.contextmanager
    def locked(self, job_id: str) -> Iterator[dict[str, Any]]:
        """The record, held under a lock (threads and processes) while it is changed."""
        import fcntl

        path = self.path(job_id)
        with self._lock:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                handle = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 - held below
            except OSError as exc:
                raise BackendUnavailableError(f"cannot lock {path}: {exc}") from exc
            with handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield self.load(job_id)


def current_attempts(record: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Task index -> the latest attempt that ran it."""
    current: dict[int, dict[str, Any]] = {}
    for attempt in record["attempts"]:
        for index in attempt["indices"]:
            current[int(index)] = attempt
    return current
