"""Path mapping between the workstation and the render nodes.

A target lists prefix pairs; the longest matching prefix wins, a prefix matches only at
a path boundary (``/proj`` never matches ``/project``), and each side keeps its own
operating system's rules: a Windows side (a drive letter or backslashes) compares case
insensitively and writes backslashes, a POSIX side is case sensitive with slashes.

.. code-block:: toml

    [[targets.studio-farm.path_mappings]]
    local = 'P:\\projects'
    remote = "/mnt/projects"

:meth:`PathMapper.map_request` rewrites a request's commands (arguments, ``cwd``,
``env``), environment and outputs before submission; :meth:`PathMapper.text_to_local`
turns render-node paths in a log back into workstation paths.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .models import Command, JobRequest

__all__ = ["PathMapper", "PathMapping", "path_style"]

Style = Literal["posix", "windows"]
_DRIVE = re.compile(r"^[A-Za-z]:([\\/]|$)")


def path_style(path: str) -> Style:
    """``windows`` for a drive-letter or UNC path, else ``posix``."""
    return "windows" if _DRIVE.match(path) or path.startswith("\\\\") else "posix"


class PathMapping(BaseModel):
    """One workstation prefix and the render-node prefix it stands for."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    local: str = Field(min_length=1)
    remote: str = Field(min_length=1)
    local_style: Style | None = None
    remote_style: Style | None = None

    @field_validator("local", "remote")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not (value.startswith("/") or _DRIVE.match(value) or value.startswith("\\\\")):
            raise ValueError(f"{value!r} must be an absolute path (/..., C:\\..., \\\\server\\...)")
        return value


class _Side:
    def __init__(self, prefix: str, style: Style) -> None:
        self.style = style
        self.sep = "\\" if style == "windows" else "/"
        self.prefix = self._clean(prefix)

    def _clean(self, path: str) -> str:
        if self.style == "windows":
            path = path.replace("/", "\\")
            return path if re.fullmatch(r"[A-Za-z]:\\", path) else path.rstrip("\\")
        return path if path == "/" else path.rstrip("/")

    def _key(self, path: str) -> str:
        return path.replace("/", "\\").lower() if self.style == "windows" else path

    def rest(self, path: str) -> list[str] | None:
        """The path's components below this prefix, or None if it is not below it."""
        key, prefix = self._key(path), self._key(self.prefix)
        if key == prefix:
            return []
        boundary = prefix if prefix.endswith(self._key(self.sep)) else prefix + self._key(self.sep)
        if not key.startswith(boundary):
            return None
        tail = path[len(boundary) :]
        return [p for p in re.split(r"[\\/]" if self.style == "windows" else "/", tail) if p]

    def join(self, parts: list[str]) -> str:
        if not parts:
            return self.prefix
        base = self.prefix if self.prefix.endswith(self.sep) else self.prefix + self.sep
        return base + self.sep.join(parts)


class PathMapper:
    """Maps paths both ways through a list of :class:`PathMapping`."""

    def __init__(self, mappings: Sequence[PathMapping]) -> None:
        self.pairs = [
            (
                _Side(m.local, m.local_style or path_style(m.local)),
                _Side(m.remote, m.remote_style or path_style(m.remote)),
            )
            for m in mappings
        ]

    def __bool__(self) -> bool:
        return bool(self.pairs)

    @staticmethod
    def _map(path: str, pairs: list[tuple[_Side, _Side]]) -> str | None:
        best: tuple[int, _Side, list[str]] | None = None
        for source, dest in pairs:
            rest = source.rest(path)
            if rest is not None and (best is None or len(source.prefix) > best[0]):
                best = (len(source.prefix), dest, rest)
        return None if best is None else best[1].join(best[2])

    def to_remote(self, path: str) -> str:
        """The render node's path for a workstation path (unchanged if unmapped)."""
        mapped = self._map(path, self.pairs)
        return path if mapped is None else mapped

    def to_local(self, path: str) -> str:
        """The workstation's path for a render-node path (unchanged if unmapped)."""
        mapped = self._map(path, [(d, s) for s, d in self.pairs])
        return path if mapped is None else mapped

    def argument_to_remote(self, argument: str) -> str:
        """A command argument: a path, or ``--option=path`` / ``NAME=path``."""
        mapped = self.to_remote(argument)
        if mapped != argument or "=" not in argument:
            return mapped
        key, _, value = argument.partition("=")
        return f"{key}={self.to_remote(value)}"

    def map_request(self, request: JobRequest) -> JobRequest:
        """The request with workstation paths in commands, environment and outputs
        replaced by the render node's."""
        if not self.pairs:
            return request
        commands = [
            Command.model_construct(
                argv=[self.argument_to_remote(a) for a in c.argv],
                cwd=self.to_remote(c.cwd) if c.cwd else c.cwd,
                env={k: self.argument_to_remote(v) for k, v in c.env.items()},
                shell=c.shell,
            )
            for c in request.commands
        ]
        return request.model_copy(
            update={
                "commands": commands,
                "environment": {
                    k: self.argument_to_remote(v) for k, v in request.environment.items()
                },
                "outputs": [self.to_remote(o) for o in request.outputs],
            }
        )

    def text_to_local(self, text: str) -> str:
        """Render-node paths inside free text (a log) turned into workstation paths."""
        for source, dest in sorted(self.pairs, key=lambda p: len(p[1].prefix), reverse=True):
            pattern = re.escape(dest.prefix) + r"(?=[/\\]|$|\s|['\"])((?:[/\\][^\s'\"]*)?)"

            def swap(match: re.Match[str], _source: _Side = source, _dest: _Side = dest) -> str:
                parts = [p for p in re.split(r"[\\/]", match.group(1)) if p]
                return _source.join(parts)

            text = re.sub(pattern, swap, text)
        return text
