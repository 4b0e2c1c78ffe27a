"""A local record of every job submitted from this machine.

The journal lets ``farm-adapters jobs``, ``status`` and ``logs`` find a job again after
the submitting process (or the DCC) has exited: it maps the job id to the target and
backend that hold it. It lives in SQLite (WAL), safe for a DCC and the CLI at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._paths import data_dir
from .errors import ConfigurationError
from .models import JobRequest

__all__ = ["Journal", "JournalEntry", "request_hash"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT NOT NULL,
    target TEXT NOT NULL,
    backend TEXT NOT NULL,
    name TEXT NOT NULL,
    render_context TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    outputs TEXT NOT NULL DEFAULT '{}',
    notified_state TEXT,
    PRIMARY KEY (target, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_job_id ON jobs (job_id);
CREATE INDEX IF NOT EXISTS jobs_submitted ON jobs (submitted_at);
CREATE INDEX IF NOT EXISTS jobs_context ON jobs (render_context);
"""


@dataclass(frozen=True)
class JournalEntry:
    """One submitted job as recorded on this machine."""

    job_id: str
    target: str
    backend: str
    name: str
    render_context: str
    request_hash: str
    submitted_at: float
    #: What :mod:`farm_adapters.outputs` needs: outputs, frames, folder, files.
    outputs: dict[str, Any] = field(default_factory=dict)
    #: The final state a notification was sent for (None: none sent yet).
    notified_state: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> JournalEntry:
        values = list(row)
        if len(values) > 7:
            try:
                values[7] = json.loads(values[7] or "{}")
            except ValueError:
                values[7] = {}
        return cls(*values)


def request_hash(request: JobRequest) -> str:
    """A stable sha256 of the request's content (the render context excluded)."""
    body = request.model_dump(mode="json", exclude={"render_context"})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Journal:
    """The journal file; one connection per thread."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "journal.sqlite3"
        self._default = path is None
        self._local = threading.local()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that may write: the folder (0700) and the file (0600) are
        created if missing, since records name jobs and their contexts."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                _private_dir(self.path.parent)
                # Never opened when it exists: closing a descriptor of a file drops
                # this process's POSIX locks on it, a reading connection's included.
                with contextlib.suppress(FileExistsError):
                    os.close(
                        os.open(
                            self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
                        )
                    )
                if os.stat(self.path).st_mode & 0o077:  # made by an older version
                    os.chmod(self.path, 0o600)
                if self._default:  # the data folder: ours alone, whoever made it
                    _tighten(self.path.parent)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
                _add_columns(conn)
            except (OSError, sqlite3.Error) as exc:
                raise ConfigurationError(
                    f"cannot open the job journal {self.path}: {exc}; set "
                    "FARM_ADAPTERS_DATA_DIR to a writable folder"
                ) from exc
            self._local.conn = conn
        try:
            yield conn
        except sqlite3.Error as exc:
            raise ConfigurationError(f"job journal {self.path}: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection | None]:
        """A connection that never writes, so reading works on a full disk or a
        read-only folder; None when there is no journal yet (nothing is created)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = getattr(self._local, "ro", None)
        if conn is None:
            if not self.path.exists():
                yield None
                return
            try:
                conn = _connect_readonly(self.path)
            except sqlite3.Error as exc:
                if "no such table" in str(exc):
                    yield None  # created, never written
                    return
                raise ConfigurationError(
                    f"cannot read the job journal {self.path}: {exc}; check the file's "
                    "permissions, or set FARM_ADAPTERS_DATA_DIR to another folder"
                ) from exc
            self._local.ro = conn
        try:
            yield conn
        except sqlite3.Error as exc:
            raise ConfigurationError(f"job journal {self.path}: {exc}") from exc

    def record(self, *, job_id: str, target: str, backend: str, request: JobRequest) -> None:
        """Remember a submitted job (replacing an earlier record of the same id)."""
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO jobs (job_id, target, backend, name, render_context, "
                "request_hash, submitted_at, outputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    target,
                    backend,
                    request.name,
                    request.render_context,
                    request_hash(request),
                    time.time(),
                    json.dumps(
                        {
                            "outputs": request.outputs,
                            "frames": list(request.frames) if request.frames else [],
                            "folder": request.folder,
                            "files": request.files,
                        }
                    ),
                ),
            )

    def claim_notification(self, job_id: str, target: str, state: str) -> bool:
        """Record that the end of ``job_id`` (in final ``state``) is being notified;
        True for exactly one caller, however many processes ask at once (so two
        observers never notify twice). A job the journal does not know is recorded
        first."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT notified_state FROM jobs WHERE job_id = ? AND target = ?",
                    (job_id, target),
                ).fetchone()
                if row is not None and row[0] is not None:
                    conn.execute("ROLLBACK")
                    return False
                if row is None:
                    conn.execute(
                        "INSERT INTO jobs (job_id, target, backend, name, render_context, "
                        "request_hash, submitted_at, notified_state) "
                        "VALUES (?, ?, '', '', '', '', ?, ?)",
                        (job_id, target, time.time(), state),
                    )
                else:
                    conn.execute(
                        "UPDATE jobs SET notified_state = ? WHERE job_id = ? AND target = ?",
                        (state, job_id, target),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return True

    def reset_notification(self, job_id: str, target: str) -> None:
        """Forget that the job's end was notified (it was restarted: its next end is
        news again)."""
        with self._connect() as conn:
            conn.execute(
                "UPDATE jobs SET notified_state = NULL WHERE job_id = ? AND target = ?",
                (job_id, target),
            )

    def delete(self, job_id: str, target: str) -> bool:
        """Remove the record of ``job_id`` on ``target``; True if there was one."""
        with self._connect() as conn:
            cursor = conn.execute(
                "DELETE FROM jobs WHERE job_id = ? AND target = ?", (job_id, target)
            )
            return cursor.rowcount > 0

    def older_than(self, cutoff: float, target: str | None = None) -> list[JournalEntry]:
        """Records submitted before ``cutoff`` (seconds since the epoch), oldest first."""
        sql = "WHERE submitted_at < ?"
        args: tuple[object, ...] = (cutoff,)
        if target is not None:
            sql += " AND target = ?"
            args += (target,)
        with self._read() as conn:
            if conn is None:
                return []
            rows = _select(conn, sql + " ORDER BY submitted_at", args)
        return [JournalEntry.from_row(r) for r in rows]

    def get(self, job_id: str, target: str | None = None) -> JournalEntry | None:
        """The newest record of ``job_id`` (on ``target`` if given), or None."""
        sql = "WHERE job_id = ?"
        args: tuple[str, ...] = (job_id,)
        if target is not None:
            sql += " AND target = ?"
            args += (target,)
        with self._read() as conn:
            if conn is None:
                return None
            rows = _select(conn, sql + " ORDER BY submitted_at DESC LIMIT 1", args)
        return JournalEntry.from_row(rows[0]) if rows else None

    def find_by_context(self, render_context: str) -> JournalEntry | None:
        """The job submitted with this render context, if any."""
        with self._read() as conn:
            if conn is None:
                return None
            rows = _select(
                conn,
                "WHERE render_context = ? ORDER BY submitted_at DESC LIMIT 1",
                (render_context,),
            )
        return JournalEntry.from_row(rows[0]) if rows else None

    def entries(self, target: str | None = None, limit: int = 100) -> list[JournalEntry]:
        """The newest records first, optionally of one target."""
        sql = ""
        args: tuple[object, ...] = ()
        if target is not None:
            sql += "WHERE target = ?"
            args = (target,)
        with self._read() as conn:
            if conn is None:
                return []
            rows = _select(conn, sql + " ORDER BY submitted_at DESC LIMIT ?", (*args, limit))
            return [JournalEntry.from_row(r) for r in rows]


_BASE_COLUMNS = "job_id, target, backend, name, render_context, request_hash, submitted_at"
#: What a JournalEntry is read from (the file may have more columns: newer versions').
_COLUMNS = _BASE_COLUMNS + ", outputs, notified_state"
#: Columns added after the first release: an older journal gets them on first write.
_ADDED_COLUMNS = {"outputs": "TEXT NOT NULL DEFAULT '{}'", "notified_state": "TEXT"}


def _select(conn: sqlite3.Connection, tail: str, args: tuple[object, ...]) -> list[Any]:
    """Rows of JournalEntry columns; a journal from before the added columns (read
    without writing, so not yet migrated) gives the base ones."""
    try:
        return conn.execute(f"SELECT {_COLUMNS} FROM jobs {tail}", args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such column" not in str(exc):
            raise
        return conn.execute(f"SELECT {_BASE_COLUMNS} FROM jobs {tail}", args).fetchall()


def _add_columns(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    for name, definition in _ADDED_COLUMNS.items():
        if name not in have:
            with contextlib.suppress(sqlite3.OperationalError):  # added meanwhile
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")


def _private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents readable by the owner only (0700)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)


def _tighten(folder: Path) -> None:
    """Make an existing folder of ours owner-only (older versions made it 0755)."""
    with contextlib.suppress(OSError):
        st = os.stat(folder)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(folder, 0o700)


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes. When not even the shared-memory index can be
    made (a full disk, and no other process has the journal open, so all of it is in
    the main file), the file is read as immutable."""
    uri = f"file:{quote(str(path))}?mode=ro"
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30)
        conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as exc:
        if conn is not None:
            conn.close()
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL")):
            raise
    conn = sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30)
    conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchall()
    return conn
