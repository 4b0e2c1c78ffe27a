"""Printing lines of styled text and tables as rich prints them, without importing rich
where rich would print no style at all.

Output to a file or a pipe carries no colour, and text that fits the width needs no
wrapping: then the exact characters rich would print are written directly (rich
costs more start-up than the rest of ``status``). A terminal (colour), a line or
table too wide for the width, or text other than printable ASCII goes through rich.
tests/test_cli_startup.py checks both give the same characters.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["Column", "Output"]

#: (text, rich style or "" for none)
Cell = tuple[str, str]


class Column:
    """A table column: ``width`` fixed (text longer is cut with an ellipsis) or None
    (as wide as its widest cell); ``right`` justifies it to the right."""

    __slots__ = ("header", "right", "width")

    def __init__(self, header: str, width: int | None = None, right: bool = False) -> None:
        self.header = header
        self.width = width
        self.right = right


def _is_terminal(stream: Any) -> bool:
    """Whether rich would treat ``stream`` as a terminal (and print styles)."""
    env = os.environ
    compatible = env.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = env.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _width() -> int | None:
    """The width rich uses: ``$COLUMNS``, else the terminal of stdin, stdout or stderr,
    else 80; None when rich would compute something else."""
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns) or None
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def _fit(text: str, width: int, right: bool) -> str:
    """A cell's text in ``width`` columns, as rich's ``Text.wrap`` without wrapping
    makes it: (right-justified) trailing whitespace dropped, then an ellipsis if still
    too long, then padding."""
    if right:
        text = text.rstrip()
    if len(text) > width:
        text = text[: width - 1] + "\u2026" if width > 0 else ""
    return text.rjust(width) if right else text.ljust(width)


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable()


class Output:
    """Lines and tables on stdout (or stderr), plain where rich would print no style."""

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr
        self._stream = sys.stderr if stderr else sys.stdout
        self._plain_width = None if _is_terminal(self._stream) else _width()
        self._rich: Any = None

    @property
    def rich(self) -> Any:
        if self._rich is None:
            from ._common import console

            self._rich = console(stderr=self.stderr)
        return self._rich

    @property
    def width(self) -> int:
        return self._plain_width if self._plain_width is not None else int(self.rich.width)

    def _fits(self, text: str) -> bool:
        return self._plain_width is not None and len(text) <= self._plain_width and _plain(text)

    def line(self, *cells: Cell | str) -> None:
        """One line of text pieces, each unstyled (a str) or (text, style)."""
        parts = [(c, "") if isinstance(c, str) else c for c in cells]
        text = "".join(t for t, _ in parts)
        if self._fits(text):
            self._stream.write(text + "\n")
            return
        from rich.text import Text

        self.rich.print(Text.assemble(*parts))

    def table(
        self, columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *, left: int = 1
    ) -> None:
        """A table without borders, bold headers, each column padded with ``left``
        spaces before it and one after (none at the table's edges)."""
        widths = [
            c.width if c.width is not None else max(len(c.header), *(len(r[i][0]) for r in rows), 0)
            for i, c in enumerate(columns)
        ]
        lines = self._plain_table(columns, widths, rows, left)
        if lines is not None:
            self._stream.write("".join(line + "\n" for line in lines))
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 1, 0, left))
        for column in columns:
            justify: Literal["left", "right"] = "right" if column.right else "left"
            if column.width is None:
                table.add_column(Text(column.header), no_wrap=True, justify=justify)
                continue
            table.add_column(
                Text(column.header),
                no_wrap=True,
                overflow="ellipsis",
                min_width=column.width,
                max_width=column.width,
                justify=justify,
            )
        for row in rows:
            # The style spans the text only, not the cell's padding (as markup does).
            table.add_row(*(Text.assemble((text, style)) for text, style in row))
        self.rich.print(table)

    def _plain_table(
        self,
        columns: Sequence[Column],
        widths: list[int],
        rows: Sequence[Sequence[Cell]],
        left: int,
    ) -> list[str] | None:
        if self._plain_width is None:
            return None
        right = 1
        last = len(columns) - 1
        lines = []
        for cells in [[(c.header, "bold") for c in columns], *rows]:
            out = []
            for i, ((text, _), column) in enumerate(zip(cells, columns, strict=True)):
                if not _plain(text):
                    return None
                width = widths[i]
                if column.width is None and len(text) > width:
                    return None
                text = _fit(text, width, column.right)
                out.append(" " * (left if i else 0) + text + " " * (right if i < last else 0))
            line = "".join(out)
            if len(line) > self._plain_width:
                return None
            lines.append(line)
        return lines
