"""Render one frame of a camera orbiting Mitsuba's built-in Cornell box.

    python render_frame.py --frame 3 --frames 8 --out frames/frame_0003.png

The camera sweeps an arc of --sweep degrees in front of the open side of the box,
looking at its centre. The image is written under a temporary name and renamed when
complete, so a killed render never leaves a half-written frame.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frame", type=int, required=True)
    parser.add_argument("--frames", type=int, required=True, help="frames in the orbit")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--spp", type=int, default=16)
    parser.add_argument("--sweep", type=float, default=60.0, help="orbit arc in degrees")
    args = parser.parse_args()

    import mitsuba as mi

    mi.set_variant("scalar_rgb")
    scene = mi.cornell_box()
    t = (args.frame - 1) / max(1, args.frames - 1)
    angle = math.radians((t - 0.5) * args.sweep)
    radius = 3.9
    origin = [radius * math.sin(angle), 0.25 * math.sin(2 * angle), radius * math.cos(angle)]
    scene["sensor"]["to_world"] = mi.ScalarTransform4f().look_at(
        origin=origin, target=[0, 0, 0], up=[0, 1, 0]
    )
    scene["sensor"]["film"]["width"] = args.size
    scene["sensor"]["film"]["height"] = args.size
    scene["sensor"]["sampler"]["sample_count"] = args.spp

    started = time.perf_counter()
    image = mi.render(mi.load_dict(scene), spp=args.spp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(f".{args.out.stem}.partial{args.out.suffix}")
    mi.util.write_bitmap(str(partial), image, write_async=False)
    os.replace(partial, args.out)
    print(
        f"frame {args.frame}: camera at ({origin[0]:+.2f}, {origin[1]:+.2f}, {origin[2]:+.2f}), "
        f"{args.size}x{args.size} at {args.spp} spp in {time.perf_counter() - started:.2f} s "
        f"-> {args.out}",
        flush=True,
    )


if __name__ == "__main__":
    main()
