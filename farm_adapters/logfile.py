"""Reading a growing render-log file in byte ranges, for backends that keep one."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LOG_CHUNK_LIMIT", "complete_utf8", "read_chunk"]

#: Most bytes one get_render_log() call returns.
LOG_CHUNK_LIMIT = 1 << 20


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
    empty. Raises OSError for other failures."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError:
        return "", offset, 0
    data = complete_utf8(data)
    return data.decode("utf-8", errors="replace"), offset + len(data), size
