"""Printing lines of styled text and tables exactly as rich prints them, without
importing rich for the common cases (rich costs more start-up than the rest of
``status``).

To a file or a pipe rich writes no style; on a terminal it writes each styled piece as
an SGR code, text and reset. Where the text is printable ASCII and fits the width (no
wrapping), those characters are written directly. Anything else goes through rich: a
line or table too wide, other text, a dumb terminal, ``NO_COLOR``, Windows.
tests/test_cli_startup.py checks both ways give the same bytes, on each kind of output.
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


#: The SGR codes rich writes for the styles used here, on any colour system (these
#: are the standard colours, which no system changes).
_SGR = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "white": "37",
}


def _is_terminal(stream: Any) -> bool:
    """Whether rich would treat ``stream`` as a terminal (and print styles)."""
    if getattr(sys.stdin, "__module__", "").startswith("idlelib"):
        return False
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


def _simple_terminal() -> bool:
    """Whether rich, on a terminal, would write the styles here as plain SGR codes:
    not on Windows, a dumb terminal (``TERM=dumb``) or with ``NO_COLOR``."""
    term = os.environ.get("TERM", "").lower()
    return (
        sys.platform != "win32"
        and term not in ("dumb", "unknown")
        and not os.environ.get("NO_COLOR")
    )


def _fit(text: str, width: int, right: bool) -> tuple[str, str]:
    """A cell's text in ``width`` columns, as rich's ``Text.wrap`` without wrapping
    makes it: (right-justified) trailing whitespace dropped, then an ellipsis if still
    too long; and the padding that fills the width."""
    if right:
        text = text.rstrip()
    if len(text) > width:
        text = text[: width - 1] + "\u2026" if width > 0 else ""
    return text, " " * (width - len(text))


def _plain(text: str) -> bool:
    return text.isascii() and text.isprintable()


class Output:
    """Lines and tables on stdout (or stderr), plain where rich would print no style."""

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr
        self._stream = sys.stderr if stderr else sys.stdout
        #: Styles are written as SGR codes (a terminal), else dropped.
        self._sgr = _is_terminal(self._stream)
        self._plain_width = _width() if not self._sgr or _simple_terminal() else None
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

    def _styled(self, text: str, style: str) -> str | None:
        """``text`` as rich writes it in ``style``; None for a style not known here."""
        if not self._sgr or not style or not text:
            return text
        code = _SGR.get(style)
        return None if code is None else f"\x1b[{code}m{text}\x1b[0m"

    def line(self, *cells: Cell | str) -> None:
        """One line of text pieces, each unstyled (a str) or (text, style)."""
        parts = [(c, "") if isinstance(c, str) else c for c in cells]
        styled = [self._styled(t, s) for t, s in parts]
        if self._fits("".join(t for t, _ in parts)) and None not in styled:
            self._stream.write("".join(t for t in styled if t is not None) + "\n")
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
        last = len(columns) - 1
        lines = []
        header = [(c.header, "") for c in columns]
        for number, cells in enumerate([header, *rows]):
            # The header's style (bold) covers its padding; a cell's own style, its text.
            row_style = "bold" if number == 0 else ""
            out: list[str | None] = []
            length = 0
            for i, ((text, style), column) in enumerate(zip(cells, columns, strict=True)):
                width = widths[i]
                if not _plain(text) or (column.width is None and len(text) > width):
                    return None
                text, pad = _fit(text, width, column.right)
                if i and left:
                    out.append(self._styled(" " * left, row_style))
                if row_style:
                    out.append(self._styled(pad + text if column.right else text + pad, row_style))
                else:
                    cell = self._styled(text, style)
                    out += [pad, cell] if column.right else [cell, pad]
                if i < last:
                    out.append(self._styled(" ", row_style))
                length += (left if i else 0) + width + (i < last)
            if length > self._plain_width or None in out:
                return None
            lines.append("".join(t for t in out if t is not None))
        return lines
