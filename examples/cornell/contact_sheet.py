"""Assemble rendered frames into one labelled contact sheet.

python contact_sheet.py --out contact_sheet.png frames/frame_*.png
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--columns", type=int, default=4)
    parser.add_argument("frames", nargs="+", type=Path)
    args = parser.parse_args()

    from PIL import Image, ImageDraw

    frames = sorted(args.frames)
    missing = [f for f in frames if not f.is_file()]
    if missing:
        raise SystemExit(f"missing frames: {', '.join(map(str, missing))}")
    images = [Image.open(f).convert("RGB") for f in frames]
    width, height = images[0].size
    columns = min(args.columns, len(images))
    rows = math.ceil(len(images) / columns)
    pad, label = 8, 18
    sheet = Image.new(
        "RGB",
        (columns * (width + pad) + pad, rows * (height + pad + label) + pad),
        (24, 24, 24),
    )
    draw = ImageDraw.Draw(sheet)
    for i, (path, image) in enumerate(zip(frames, images, strict=True)):
        x = pad + (i % columns) * (width + pad)
        y = pad + (i // columns) * (height + pad + label)
        sheet.paste(image, (x, y))
        draw.text((x + 2, y + height + 3), path.stem, fill=(230, 230, 230))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(f".{args.out.stem}.partial.png")
    sheet.save(partial)
    os.replace(partial, args.out)
    print(f"contact sheet of {len(images)} frames ({sheet.size[0]}x{sheet.size[1]}) -> {args.out}")


if __name__ == "__main__":
    main()
