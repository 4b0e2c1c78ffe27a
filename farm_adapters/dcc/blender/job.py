"""The job a Blender submission sends: one task per chunk of frames (no ``bpy`` here).

Each task renders its chunk with the farm's Blender::

    blender -b FILE -o PATTERN -s START -e END -a

when a ``blender`` executable is configured for the target, else with the bundled
entry point, which imports the ``bpy`` module::

    python -m farm_adapters.dcc.blender.render FILE -o PATTERN -s START -e END

A stepped frame set (``1-9x2``) lists each chunk's frames instead: ``-f 1,3,5``.

``PATTERN`` follows Blender's ``-o`` rules: ``//`` is the folder of the .blend (on the
render node: the job's temporary folder), the last run of ``#`` is the zero-padded frame
number (four digits are appended when there is none), and the format's extension is
added.
"""

from __future__ import annotations

import itertools
import posixpath
import re
from collections.abc import Iterable, Mapping

from ...errors import ConfigurationError, InvalidRequestError
from ...frames import FrameSet
from ...models import JobRequest, parse_request

__all__ = [
    "DEFAULT_OUTPUT",
    "RENDER_MODULE",
    "build_request",
    "frame_path",
    "parse_blender_executables",
]

#: Relative to the .blend copy, so frames land in the job's folder on the render node.
DEFAULT_OUTPUT = "//frames/frame_####"
RENDER_MODULE = "farm_adapters.dcc.blender.render"
_HASHES = re.compile(r"#+")


def frame_path(pattern: str, frame: int, extension: str = "") -> str:
    """The file Blender writes for ``frame`` with output ``pattern`` (as ``-o`` does)."""
    head, tail = posixpath.split(pattern)
    runs = list(_HASHES.finditer(tail))
    if runs:
        last = runs[-1]
        tail = f"{tail[: last.start()]}{frame:0{len(last.group())}d}{tail[last.end() :]}"
    else:
        tail = f"{tail}{frame:04d}"
    path = posixpath.join(head, tail) if head else tail
    if extension and not path.lower().endswith(extension.lower()):
        path += extension
    return path


def _on_node(pattern: str, folder: str) -> str:
    """``pattern`` as the render node resolves it: ``//`` is the .blend's folder."""
    pattern = pattern.replace("{folder}", folder.rstrip("/"))
    if pattern.startswith("//"):
        return f"{folder.rstrip('/')}/{pattern[2:]}"
    return pattern


def parse_blender_executables(text: str) -> dict[str, str]:
    """``"farm=/opt/blender/blender; gpu=/usr/bin/blender"`` as a mapping of target to
    executable (the add-on preference). Raises ConfigurationError naming the entry."""
    out: dict[str, str] = {}
    for raw in re.split(r"[;\n]", text):
        item = raw.strip()
        if not item:
            continue
        target, sep, path = item.partition("=")
        if not sep or not target.strip() or not path.strip():
            raise ConfigurationError(
                f"farm Blender executables: {item!r} is not TARGET=PATH; write e.g. "
                f"studio-farm=/opt/blender/blender"
            )
        out[target.strip()] = path.strip()
    return out


def build_request(
    *,
    blend: str,
    files: Iterable[str],
    frames: str | FrameSet,
    chunk_size: int = 1,
    priority: int = 50,
    output: str = DEFAULT_OUTPUT,
    extension: str = ".png",
    folder: str,
    render_context: str,
    blender: str | None = None,
    python: str | None = None,
    name: str = "",
    environment: Mapping[str, str] | None = None,
) -> JobRequest:
    """The request for rendering ``frames`` of ``blend`` (a file name inside the job's
    folder) with one task per ``chunk_size`` frames.

    ``folder`` is the job's temporary folder as the render node sees it: the declared
    ``outputs`` (every frame's file) are resolved against it. Raises
    InvalidRequestError naming the field.
    """
    if not output:
        raise InvalidRequestError("output: give an output path, e.g. //frames/frame_####")
    try:
        frame_set = FrameSet(frames)
    except ValueError as exc:
        raise InvalidRequestError(f"frames: {exc}", field="frames") from None
    file_arg = "{folder}/" + blend
    pattern = output  # {folder} and {context} in it are substituted by the core
    # A chunk of consecutive frames is a range; a stepped set lists its frames.
    consecutive = all(b - a == 1 for a, b in itertools.pairwise(frame_set))
    which = ["-s", "{start}", "-e", "{end}"] if consecutive else ["-f", "{frames}"]
    if blender:
        argv = [blender, "-b", file_arg, "-o", pattern, *which]
        if consecutive:
            argv.append("-a")
    else:
        argv = [python or "python3", "-m", RENDER_MODULE, file_arg, "-o", pattern, *which]
    outputs = [frame_path(_on_node(output, folder), f, extension) for f in frame_set]
    return parse_request(
        {
            "name": name or f"blender: {blend}",
            "render_context": render_context,
            "commands": [{"argv": argv}],
            "frames": frame_set,
            "chunk_size": chunk_size,
            "files": list(files),
            "outputs": outputs,
            "priority": priority,
            "environment": dict(environment or {}),
            "metadata": {"dcc": "blender", "blend": blend, "output": output},
        }
    )
