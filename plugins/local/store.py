"""The local backend's state: one SQLite database (WAL) shared by the plug-in (any
number of readers: a DCC's UI thread, the CLI) and one supervisor per job (the writer
of that job's task states)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    render_context TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempt INTEGER NOT NULL DEFAULT 1,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    supervisor_pid INTEGER,
    supervisor_start TEXT,
    message TEXT NOT NULL DEFAULT '',
    folder TEXT,
    log_dir TEXT NOT NULL,
    environment TEXT NOT NULL,
    max_retries INTEGER NOT NULL,
    timeout REAL,
    gpus INTEGER NOT NULL DEFAULT 0,
    slots_per_task INTEGER NOT NULL DEFAULT 1,
    slots INTEGER NOT NULL,
    grace_period REAL NOT NULL,
    peak_rss_kb INTEGER,
    priority INTEGER NOT NULL DEFAULT 50,
    held INTEGER NOT NULL DEFAULT 0,
    after TEXT NOT NULL DEFAULT '[]',
    ready INTEGER NOT NULL DEFAULT 1,
    notify TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    job_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    state TEXT NOT NULL,
    frames TEXT NOT NULL,
    commands TEXT NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    retries INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    pid INTEGER,
    started_at REAL,
    finished_at REAL,
    message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (job_id, state);
"""


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents readable by the owner only (0700): the
    state and the logs hold the jobs' environments."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o700)


def private_file(path: Path) -> None:
    """Create ``path`` (empty) readable by the owner only, or make an existing one so.
    SQLite gives its -wal and -shm files the database's mode.

    An existing file is never opened: closing any descriptor of a file drops every
    POSIX lock this process holds on it, including those of a SQLite connection
    already open on it (a query's read-only one), and a checkpoint by another
    process could then lose committed writes."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)


def tighten(folder: Path) -> None:
    """Make an existing folder of ours owner-only (older versions made them 0755)."""
    with contextlib.suppress(OSError):
        st = os.stat(folder)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(folder, 0o700)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, patient with
    concurrent writers."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that never writes (reads keep working on a full disk).

    When not even the shared-memory index can be made (a full disk and no other
    process has the database open, so everything is in the main file), the file is
    read as immutable."""
    uri = f"file:{quote(str(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        conn.close()
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL")):
            raise
        conn = sqlite3.connect(
            uri + "&immutable=1",
            uri=True,
            timeout=30,
            isolation_level=None,
            check_same_thread=False,
        )
    return conn


#: Columns added to ``jobs`` after the first release, with their definitions: a
#: database made by an older version gets them on first use.
ADDED_JOB_COLUMNS = {
    "priority": "INTEGER NOT NULL DEFAULT 50",  # 0 lowest, 100 highest; changeable
    "held": "INTEGER NOT NULL DEFAULT 0",  # submitted held, not yet released
    "after": "TEXT NOT NULL DEFAULT '[]'",  # JSON [[job id, condition], ...]
    "ready": "INTEGER NOT NULL DEFAULT 1",  # 0 while held or waiting for dependencies
    "notify": "TEXT",  # JSON {target, config, wanted}: notify the job's end, or NULL
}


def init(path: Path) -> sqlite3.Connection:
    private_dir(path.parent)
    private_file(path)
    conn = connect(path)
    conn.executescript(SCHEMA)
    have = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    for name, definition in ADDED_JOB_COLUMNS.items():
        if name not in have:
            with contextlib.suppress(sqlite3.OperationalError):  # added meanwhile
                conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {definition}")
    conn.execute(
        "CREATE INDEX IF NOT EXISTS jobs_waiting ON jobs (ready, stop_requested, priority)"
    )
    return conn
