"""Reading a growing render-log file in byte ranges, for backends that keep one."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .models import LogChunk

__all__ = ["LOG_CHUNK_LIMIT", "LogMirror", "LogSource", "complete_utf8", "read_chunk"]

#: Most bytes one get_render_log() call returns.
LOG_CHUNK_LIMIT = 1 << 20
#: A growing remote log that can only be read whole is read again no sooner than its
#: size divided by this rate (chars per second): 2 MB every second, 20 MB every ten.
#: Following it then costs O(size) in all, not O(size^2).
REFETCH_RATE = 2_000_000


def _now() -> float:
    """Wall-clock seconds (the mirror's state is shared by processes); a seam for tests."""
    return time.time()


def complete_utf8(data: bytes) -> bytes:
    """Drop a trailing, incomplete UTF-8 sequence (the rest is read next time)."""
    for cut in range(1, min(4, len(data)) + 1):
        byte = data[-cut]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a lead byte: is its sequence complete?
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if cut >= need else data[:-cut]
    return data


def read_chunk(path: Path, offset: int, limit: int = LOG_CHUNK_LIMIT) -> tuple[str, int, int]:
    """Text of ``path`` from byte ``offset`` (at most ``limit`` bytes, never splitting a
    character), the offset after it, and the file's size. A missing file reads as
    empty. Raises InvalidRequestError for a negative offset, OSError for other
    failures."""
    if offset < 0:
        from .errors import InvalidRequestError

        raise InvalidRequestError("offset must be 0 or more", field="offset")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset >= size:  # nothing to read; seeking that far may be EINVAL
                return "", offset, size
            f.seek(offset)
            data = f.read(limit)
    except FileNotFoundError:
        return "", offset, 0
    data = complete_utf8(data)
    return data.decode("utf-8", errors="replace"), offset + len(data), size


class LogSource(NamedTuple):
    """One growing remote log (a farm task's, a workload's) for :class:`LogMirror`.

    ``fetch`` returns the whole remote text so far, or None when there is none yet;
    ``final`` says the remote log will not grow any more (its task has ended);
    ``header`` is written once before the first text of this source. While the source
    is not final, it is fetched again no sooner than its size / REFETCH_RATE seconds
    after the last fetch (its final text is always fetched).
    """

    key: str
    header: str
    fetch: Callable[[], str | None]
    final: bool
    skip: bool = False  # nothing to fetch yet (the task has not started)


class LogMirror:
    """An append-only local file that gathers several remote logs, so that byte
    offsets into one job's log stay valid while its tasks' logs grow in parallel.

    Each sync appends only what every source gained since the last sync, in source
    order; a state file beside it remembers how much of each source was copied, and is
    saved after every source, so a source whose read fails (or a process killed
    mid-sync) never makes the next sync copy text again. The state also holds the
    mirror's size: bytes appended after the last save (a kill between the write and
    the save) are cut off before the next sync appends. A file lock makes concurrent
    syncs (a DCC and the CLI) safe.
    """

    #: State key of the mirror's size when the state was last saved.
    SIZE = "\u0000size"

    def __init__(self, folder: Path, name: str) -> None:
        self.folder = folder
        self.path = folder / f"{name}.log"
        self._state = folder / f"{name}.json"
        self._lock = folder / f"{name}.lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self._lock, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            import json

            try:
                state = json.loads(self._state.read_text()) if self._state.exists() else {}
            except ValueError:
                state = {}
            if not isinstance(state, dict):
                state = {}
            yield state

    def _save(self, state: dict[str, Any]) -> None:
        import json

        tmp = self._state.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self._state)

    def chunk(self, job_id: str, sources: Iterable[LogSource], offset: int) -> LogChunk:
        """Sync, then the mirror's text from ``offset``, as a backend answers
        ``get_render_log``; ``complete`` once every source is final and all is read."""
        from .errors import TransferError
        from .models import LogChunk

        complete = self.sync(sources)
        try:
            text, next_offset, size = read_chunk(self.path, offset)
        except OSError as exc:
            raise TransferError(f"cannot read the local log mirror {self.path}: {exc}") from exc
        return LogChunk(
            job_id=job_id,
            text=text,
            offset=offset,
            next_offset=next_offset,
            complete=complete and next_offset >= size,
        )

    def sync(self, sources: Iterable[LogSource]) -> bool:
        """Append what each source gained; True when every source is final and its
        final text has been copied."""
        complete = True
        with self._locked() as state, open(self.path, "ab") as out:
            saved = state.get(self.SIZE)
            if isinstance(saved, int) and out.tell() > saved:
                out.truncate(saved)  # appended, but never recorded as copied
                out.seek(0, os.SEEK_END)
            for source in sources:
                seen = state.setdefault(source.key, {"chars": 0, "done": False})
                if not source.final:
                    complete = False
                    seen["done"] = False
                    seen.pop("reopened", None)  # the new attempt is seen running
                if seen["done"] or source.skip:
                    continue
                now = _now()
                last = seen.get("at")
                if (
                    not source.final
                    and isinstance(last, (int, float))
                    and 0 <= now - last < seen["chars"] / REFETCH_RATE
                ):
                    continue  # read whole: re-read a large log less often
                text = source.fetch()
                # A reopened source (its task was restarted) is read again on every
                # sync until it is seen running: a quick rerun may end between syncs.
                done = source.final and not seen.get("reopened")
                seen["at"] = now
                if text is None:
                    seen["done"] = done
                    continue
                if len(text) < seen["chars"]:  # the farm dropped old chunks
                    out.write(b"[farm-adapters] the farm trimmed this log; reading it again\n")
                    seen["chars"] = 0
                if seen["chars"] == 0 and text:
                    out.write(source.header.encode())
                out.write(text[seen["chars"] :].encode())
                out.flush()
                seen["chars"] = len(text)
                seen["done"] = done
                state[self.SIZE] = out.tell()
                self._save(state)
            state[self.SIZE] = out.tell()
            self._save(state)
        return complete

    def reopen(self, keys: Iterable[str]) -> None:
        """Read these sources again: their tasks were restarted, so their remote logs
        grow again even where the farm still lists them as ended."""
        with self._locked() as state:
            for key in keys:
                seen = state.setdefault(key, {"chars": 0, "done": False})
                seen.update(done=False, reopened=True)
            self._save(state)
