"""farm-adapters' own files that hold job environments (the journal, the local
backend's state and logs): folders and files readable by their owner only, and SQLite
reads that never write. Standard library only: the local supervisor imports this
without the package's ``__init__``."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

__all__ = ["connect_readonly", "private_dir", "private_file", "tighten"]


def private_dir(path: Path) -> None:
    """Create ``path`` and its missing parents readable by the owner only (0700)."""
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
    if os.stat(path).st_mode & 0o077:  # made by an older version
        os.chmod(path, 0o600)


def tighten(folder: Path) -> None:
    """Make an existing folder of ours owner-only (older versions made them 0755)."""
    with contextlib.suppress(OSError):
        st = os.stat(folder)
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            os.chmod(folder, 0o700)


def connect_readonly(
    path: Path, probe: str = "SELECT COUNT(*) FROM sqlite_master"
) -> sqlite3.Connection:
    """A connection that never writes (reads keep working on a full disk), checked by
    running ``probe``.

    When not even the shared-memory index can be made (a full disk and no other
    process has the database open, so everything is in the main file), the file is
    read as immutable."""
    from urllib.parse import quote

    uri = f"file:{quote(str(path))}?mode=ro"

    def connect(uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute(probe).fetchall()
        except BaseException:
            conn.close()
            raise
        return conn

    try:
        return connect(uri)
    except sqlite3.OperationalError as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if not name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_FULL")):
            raise
    return connect(uri + "&immutable=1")
