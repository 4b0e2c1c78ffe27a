"""Reading TOML files (targets files, job files) on every supported Python."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

__all__ = ["TOMLDecodeError", "TOMLEncodingError", "read_toml", "tomllib"]

TOMLDecodeError = tomllib.TOMLDecodeError


class TOMLEncodingError(tomllib.TOMLDecodeError):  # type: ignore[misc]  # tomli is Any on 3.10
    """The file is not UTF-8, which TOML requires. The message names the file, the
    first offending byte with its line and column, and the fix."""

    def __init__(self, message: str) -> None:
        # ValueError's constructor on purpose: TOMLDecodeError's own signature changed
        # in Python 3.14 (msg, doc, pos) and warns on a bare message.
        ValueError.__init__(self, message)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file. Raises OSError, :class:`TOMLEncodingError` for a file that
    is not UTF-8, and :data:`TOMLDecodeError` for invalid TOML."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        byte = raw[exc.start]
        raise TOMLEncodingError(
            f"{path} is not UTF-8: byte 0x{byte:02x} at line {line}, column {column} "
            f"cannot be read; TOML files must be UTF-8: re-save the file as UTF-8 "
            f"(e.g. `iconv -f latin1 -t utf-8 {path}`)"
        ) from None
    data: dict[str, Any] = tomllib.loads(text)
    return data
