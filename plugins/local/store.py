"""The local backend's state: one SQLite database (WAL) shared by the plug-in (any
number of readers: a DCC's UI thread, the CLI) and one supervisor per job (the writer
of that job's task states)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from farm_adapters._private import connect_readonly, private_dir, private_file, tighten

__all__ = ["connect", "connect_readonly", "init", "private_dir", "private_file", "tighten"]

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


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, patient with
    concurrent writers."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
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
