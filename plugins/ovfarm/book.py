"""What the ``ovfarm`` backend keeps of a job's tasks between polls, so that a poll
lists only the farm's live tasks, never its whole finished history (which grows
without bound: ``tasks/list`` has no pagination).

A task in a settled final state (finished, cancelled, archived, or errored with no
automatic retry left) changes only when someone retries it, and a retried task is
live again: the live listing always wins over the book. Tasks seen live are watched:
when one leaves the live listing it is read once (``tasks/info``) and, once settled,
kept. The book is kept in memory and in ``<log_dir>/<job>.tasks.json``, so the next
process (the CLI after a DCC) starts from it too; losing the file costs one listing of
the history, never a wrong state.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

#: Automatic retries the Farm's retries service grants when ``_retry.limit`` is unset.
DEFAULT_RETRY_LIMIT = 3


def settled(task: dict[str, Any]) -> bool:
    """True when the task's status is final and will not change by itself: not
    errored while the retries service may still queue it again."""
    status = task.get("status")
    if status in ("finished", "cancelled", "archived"):
        return True
    if status != "errored":
        return False
    retry = (task.get("metadata") or {}).get("_retry") or {}
    if not isinstance(retry, dict) or retry.get("is_retryable") is False or retry.get("is_done"):
        return True
    limit, count = retry.get("limit", DEFAULT_RETRY_LIMIT), retry.get("count", 0)
    return isinstance(limit, int) and isinstance(count, int) and count >= limit


class JobBook:
    """One job's book: its settled tasks, the ids to watch, what is known of it."""

    __slots__ = ("complete", "final", "task_type", "total", "watch")

    def __init__(
        self,
        *,
        task_type: str | None = None,
        total: int | None = None,
        final: dict[str, dict[str, Any]] | None = None,
        watch: set[str] | None = None,
        complete: bool = False,
    ) -> None:
        self.task_type = task_type  # the job's task type: the live listing's filter
        self.total = total  # how many tasks the job has
        self.final = dict(final or {})  # task id -> the task, settled
        self.watch = set(watch or ())  # task ids last seen not settled
        self.complete = complete  # every task of the job is in final or watch

    def copy(self) -> JobBook:
        return JobBook(
            task_type=self.task_type,
            total=self.total,
            final=self.final,
            watch=self.watch,
            complete=self.complete,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "total": self.total,
            "final": self.final,
            "watch": sorted(self.watch),
            "complete": self.complete,
        }

    @classmethod
    def from_json(cls, data: Any) -> JobBook:
        """A book from its file; an empty book for anything malformed."""
        if not isinstance(data, dict):
            return cls()
        final = data.get("final")
        watch = data.get("watch")
        task_type = data.get("task_type")
        total = data.get("total")
        if not (
            isinstance(final, dict)
            and all(isinstance(t, dict) and t.get("task_id") == k for k, t in final.items())
            and isinstance(watch, list)
            and all(isinstance(w, str) for w in watch)
            and (task_type is None or isinstance(task_type, str))
            and (total is None or (isinstance(total, int) and not isinstance(total, bool)))
        ):
            return cls()
        return cls(
            task_type=task_type,
            total=total,
            final=final,
            watch=set(watch),
            complete=data.get("complete") is True,
        )


class TaskBook:
    """The books of every job this backend has polled. Thread-safe: readers get a
    copy; a racing writer costs a lookup, never a wrong state (the live listing wins)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # job id -> (the file's identity when read or written, the book)
        self._books: dict[str, tuple[tuple[int, int] | None, JobBook]] = {}
        self._lock = threading.Lock()

    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.tasks.json"

    def _identity(self, job_id: str) -> tuple[int, int] | None:
        """The book file's inode and mtime (a save replaces the file), or None."""
        try:
            st = os.stat(self._path(job_id))
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def get(self, job_id: str) -> JobBook:
        """The job's book: from memory, unless another instance or process saved the
        file since (a restart there watches its tasks again), then from the file."""
        identity = self._identity(job_id)
        with self._lock:
            cached = self._books.get(job_id)
        if cached is not None and (identity is None or cached[0] == identity):
            return cached[1].copy()
        book = JobBook()
        if identity is not None:
            try:
                book = JobBook.from_json(json.loads(self._path(job_id).read_text()))
            except (OSError, ValueError):
                book = JobBook()
        with self._lock:
            self._books[job_id] = (identity, book)
        return book.copy()

    def save(self, job_id: str, book: JobBook) -> None:
        path = self._path(job_id)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with contextlib.suppress(OSError):  # only an optimisation: memory still has it
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with open(fd, "w") as f:
                f.write(json.dumps(book.to_json()))
            os.replace(tmp, path)
        with self._lock:
            self._books[job_id] = (self._identity(job_id), book.copy())
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
