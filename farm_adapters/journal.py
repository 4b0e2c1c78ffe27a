"""A local record of every job submitted from this machine.

The journal lets ``farm-adapters jobs``, ``status`` and ``logs`` find a job again after
the submitting process (or the DCC) has exited: it maps the job id to the target and
backend that hold it. It lives in SQLite (WAL), safe for a DCC and the CLI at once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._paths import data_dir
from ._private import connect_readonly, private_dir, private_file, tighten
from .errors import ConfigurationError

if TYPE_CHECKING:
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
    user TEXT,
    state TEXT,
    finished_tasks INTEGER,
    total_tasks INTEGER,
    state_at REAL,
    outputs TEXT NOT NULL DEFAULT '{}',
    notified_state TEXT,
    PRIMARY KEY (target, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_job_id ON jobs (job_id);
CREATE INDEX IF NOT EXISTS jobs_context ON jobs (render_context);
CREATE INDEX IF NOT EXISTS jobs_submitted ON jobs (submitted_at);
"""
#: Columns added after the first release, with their types (older files gain them on
#: the first write; reads of an older file see them as empty).
_ADDED = (
    ("user", "TEXT"),
    ("state", "TEXT"),
    ("finished_tasks", "INTEGER"),
    ("total_tasks", "INTEGER"),
    ("state_at", "REAL"),
    ("outputs", "TEXT NOT NULL DEFAULT '{}'"),
    ("notified_state", "TEXT"),
)
_FINAL = ("completed", "failed", "stopped")


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
    user: str | None = None
    #: The last state seen by ``jobs`` or ``status`` (None before the first look).
    state: str | None = None
    finished_tasks: int | None = None
    total_tasks: int | None = None
    state_at: float | None = None
    #: What :mod:`farm_adapters.outputs` needs: outputs, frames, folder, files.
    outputs: dict[str, Any] = field(default_factory=dict)
    #: The final state a notification was sent for (None: none sent yet; "off" for a
    #: job submitted with --no-notify).
    notified_state: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JournalEntry:
        """An entry from a row read by column name (a file may lack newer columns, or
        have columns of a newer version)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        raw = values.get("outputs")
        if isinstance(raw, str):
            import json

            try:
                values["outputs"] = json.loads(raw or "{}")
            except ValueError:
                values["outputs"] = {}
        elif raw is None:
            values.pop("outputs", None)
        return cls(**values)


def request_hash(request: JobRequest) -> str:
    """A stable sha256 of the request's content (the render context excluded)."""
    import hashlib
    import json

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
                private_dir(self.path.parent)
                private_file(self.path)
                if self._default:  # the data folder: ours alone, whoever made it
                    tighten(self.path.parent)
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                _migrate(conn)
                conn.executescript(_SCHEMA)
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
                conn = connect_readonly(self.path, probe="SELECT 1 FROM jobs LIMIT 1")
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
        import json

        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO jobs (job_id, target, backend, name, render_context, "
                "request_hash, submitted_at, user, outputs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    target,
                    backend,
                    request.name,
                    request.render_context,
                    request_hash(request),
                    time.time(),
                    request.user,
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

    def update_states(self, rows: Iterable[tuple[str, str, str, int, int]]) -> None:
        """Remember the last state seen of jobs: (target, job_id, state, finished
        tasks, total tasks) each. Best effort: a read-only journal is left as it is.
        A final state already recorded as it is is not written again (reading a
        finished job's status writes nothing)."""
        rows = self._news(rows)
        if not rows:
            return
        now = time.time()
        with contextlib.suppress(ConfigurationError), self._connect() as conn:
            conn.executemany(
                "UPDATE jobs SET state = ?, finished_tasks = ?, total_tasks = ?, state_at = ? "
                "WHERE target = ? AND job_id = ?",
                [(st, done, total, now, t, j) for t, j, st, done, total in rows],
            )

    def _news(
        self, rows: Iterable[tuple[str, str, str, int, int]]
    ) -> list[tuple[str, str, str, int, int]]:
        """The rows that change what the journal holds (a final state can only
        change again through a restart, which is seen as a new state)."""
        rows = list(rows)
        final = [r for r in rows if r[2] in _FINAL]
        if not final:
            return rows
        with contextlib.suppress(ConfigurationError), self._read() as conn:
            if conn is None:
                return rows
            known: set[tuple[Any, ...]] = set()
            ids = sorted({r[1] for r in final})
            for start in range(0, len(ids), 500):  # one query per 500 ids, not one per row
                part = ids[start : start + 500]
                known.update(
                    conn.execute(
                        "SELECT target, job_id, state, finished_tasks, total_tasks FROM jobs "
                        f"WHERE job_id IN ({', '.join('?' * len(part))})",
                        part,
                    )
                )
            return [r for r in rows if r not in known]
        return rows

    def query(
        self,
        *,
        targets: Sequence[str] = (),
        name_glob: str | None = None,
        user: str | None = None,
        since: float | None = None,
        states: Sequence[str] = (),
        limit: int | None = 50,
    ) -> list[JournalEntry]:
        """The newest records first, filtered and limited in SQL. ``states`` keeps the
        rows whose last known state is one of them, and the rows whose state may have
        changed since (not final, or never seen): the caller filters those on the live
        state."""
        where: list[str] = []
        args: list[object] = []
        if targets:
            where.append(f"target IN ({', '.join('?' * len(targets))})")
            args += list(targets)
        if name_glob:
            where.append("name GLOB ?")
            args.append(name_glob)
        if since is not None:
            where.append("submitted_at >= ?")
            args.append(since)
        with self._read() as conn:
            if conn is None:
                return []
            columns = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
            if user and "user" in columns:
                where.append("user = ?")
                args.append(user)
            elif user:
                return []  # an older journal recorded no users
            if states and "state" in columns:
                wanted = ", ".join("?" * len(states))
                final = ", ".join("?" * len(_FINAL))
                where.append(f"(state IN ({wanted}) OR state IS NULL OR state NOT IN ({final}))")
                args += [*states, *_FINAL]
            sql = "SELECT * FROM jobs"
            if where:
                sql += " WHERE " + " AND ".join(where)
            sql += " ORDER BY submitted_at DESC"
            if limit is not None:
                sql += " LIMIT ?"
                args.append(limit)
            sql = sql.replace("SELECT *", f"SELECT {_columns(conn)}", 1)
            return [JournalEntry.from_row(r) for r in _rows(conn, sql, args)]

    def complete(self, prefix: str, limit: int = 50) -> list[tuple[str, str, str]]:
        """(job id, name, target) of the newest jobs whose id starts with ``prefix``."""
        with self._read() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                "SELECT job_id, name, target FROM jobs WHERE substr(job_id, 1, ?) = ? "
                "ORDER BY submitted_at DESC LIMIT ?",
                (len(prefix), prefix, limit),
            )
            return [(str(a), str(b), str(c)) for a, b, c in rows.fetchall()]

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

    def target_of(self, job_id: str) -> str | None:
        """The target of :meth:`get`'s record of ``job_id``, or None; without building
        the entry (a command that only needs to know where the job is)."""
        with self._read() as conn:
            if conn is None:
                return None
            row = conn.execute(
                "SELECT target FROM jobs WHERE job_id = ? ORDER BY submitted_at DESC LIMIT 1",
                (job_id,),
            ).fetchone()
        return str(row[0]) if row else None

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


def _columns(conn: sqlite3.Connection) -> str:
    """The JournalEntry columns this file has (an older one, read without writing,
    lacks the newer ones; a newer one may have more), comma-separated."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
    return ", ".join(f.name for f in fields(JournalEntry) if f.name in have)


def _rows(conn: sqlite3.Connection, sql: str, args: Sequence[object]) -> list[Any]:
    cursor = conn.execute(sql, tuple(args))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _select(conn: sqlite3.Connection, tail: str, args: Sequence[object]) -> list[Any]:
    """Rows (as dicts by column name) of ``SELECT <entry columns> FROM jobs <tail>``."""
    return _rows(conn, f"SELECT {_columns(conn)} FROM jobs {tail}", args)


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns newer versions keep to a journal an older version made."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
    if not columns:
        return  # a new file: the schema creates every column
    for name, kind in _ADDED:
        if name not in columns:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
