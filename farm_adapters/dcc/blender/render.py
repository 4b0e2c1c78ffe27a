"""Render frames of a .blend with the ``bpy`` module: the farm side of the add-on.

Run on a render node that has farm-adapters with the ``blender`` extra but no
``blender`` executable::

    python -m farm_adapters.dcc.blender.render FILE -o PATTERN -s START -e END
    python -m farm_adapters.dcc.blender.render FILE -o PATTERN -f 1,5,9

The arguments mean what they mean to ``blender -b FILE -o PATTERN -s START -e END -a``:
``//`` in PATTERN is the .blend's folder, the last run of ``#`` is the frame number.
Exit status: 0 when every frame's file was written, 1 when a frame failed, 2 for bad
arguments or a missing ``bpy``. One line per rendered frame on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _frames(text: str) -> list[int]:
    from ...frames import FrameSet

    return list(FrameSet(text))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m farm_adapters.dcc.blender.render",
        description="Render frames of a .blend with the bpy module, as blender -b does.",
    )
    parser.add_argument("file", help="the .blend to render")
    parser.add_argument("-o", "--output", help="output pattern (default: the scene's)")
    parser.add_argument("-s", "--start", type=int, help="first frame")
    parser.add_argument("-e", "--end", type=int, help="last frame")
    parser.add_argument("-f", "--frames", help="frames to render, e.g. 1,5,9-12")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Render; return the exit status (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not os.path.isfile(args.file):
        print(f"error: {args.file} does not exist on this render node", file=sys.stderr)
        return 2
    try:
        frames = _frames(args.frames) if args.frames else None
    except ValueError as exc:
        print(f"error: --frames: {exc}", file=sys.stderr)
        return 2
    try:
        import bpy
    except ImportError:
        print(
            "error: the bpy module is not installed on this render node: "
            "pip install 'farm-adapters[blender]', or configure a blender executable "
            "for the target",
            file=sys.stderr,
        )
        return 2

    try:
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(args.file))
    except RuntimeError as exc:
        print(f"error: cannot open {args.file}: {exc}", file=sys.stderr)
        return 1
    scene = bpy.context.scene
    if args.output:
        scene.render.filepath = args.output
    if frames is None:
        start = scene.frame_start if args.start is None else args.start
        end = scene.frame_end if args.end is None else args.end
        if end < start:
            print(f"error: end frame {end} is before start frame {start}", file=sys.stderr)
            return 2
        frames = list(range(start, end + 1, max(1, scene.frame_step)))
    failed = []
    for frame in frames:
        # One frame at a time, as an animation render, so the pattern's # are expanded
        # exactly as blender -a expands them.
        scene.frame_start = scene.frame_end = frame
        try:
            bpy.ops.render.render(animation=True, scene=scene.name)
        except RuntimeError as exc:
            print(f"error: frame {frame}: {exc}", file=sys.stderr)
            failed.append(frame)
            continue
        path = bpy.path.abspath(scene.render.frame_path(frame=frame))
        if not os.path.isfile(path):
            print(f"error: frame {frame}: {path} was not written", file=sys.stderr)
            failed.append(frame)
            continue
        print(f"farm-adapters: frame {frame} -> {path}", flush=True)
    if failed:
        print(f"error: {len(failed)} frame(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
