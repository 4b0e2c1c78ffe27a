"""Small previews of a job's output images, for the CLI and the web monitor.

PNG, JPEG and TIFF are read with Pillow (the ``demo`` extra installs it); OpenEXR is
tone-mapped (exposure, then sRGB) when the ``OpenEXR`` package from PyPI (with numpy)
is installed, else :class:`ThumbnailError` says what to install. A thumbnail is a PNG
at most :data:`MAX_SIZE` pixels on its longer side, cached by the source's path and
modification time: asking again for an unchanged image costs one ``stat``.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import FarmAdapterError

__all__ = ["MAX_SIZE", "ThumbnailError", "cached_thumbnail", "is_image", "make_thumbnail"]

#: The longest side of a thumbnail, in pixels.
MAX_SIZE = 256
#: The extensions previews are made for.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr"})
#: The PNG text key holding "<source path>|<mtime>", so an unchanged source is skipped.
SOURCE_KEY = "farm-adapters-source"


class ThumbnailError(FarmAdapterError):
    """No preview can be made of this file; the message says why and what to do."""


def is_image(path: str) -> bool:
    """Whether ``path`` has an extension previews are made for."""
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ThumbnailError(
            "thumbnails need Pillow: pip install 'farm-adapters[demo]' (or pillow)"
        ) from exc
    return Image


def _from_exr(data: bytes, name: str) -> Any:
    """An 8-bit sRGB Pillow image of an OpenEXR file: a simple Reinhard tone map."""
    try:
        import numpy as np  # type: ignore[import-not-found,unused-ignore]  # optional
        import OpenEXR  # type: ignore[import-not-found,unused-ignore]  # optional
    except ImportError as exc:
        raise ThumbnailError(
            f"{name}: OpenEXR previews need an EXR reader: pip install OpenEXR numpy"
        ) from exc
    Image = _pillow()
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".exr") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            with OpenEXR.File(tmp.name) as exr:
                channels = exr.channels()
                pixels = next(iter(channels.values())).pixels if len(channels) == 1 else None
                if "RGB" in channels:
                    pixels = channels["RGB"].pixels
                elif "RGBA" in channels:
                    pixels = channels["RGBA"].pixels[..., :3]
                elif all(c in channels for c in "RGB"):
                    pixels = np.stack([channels[c].pixels for c in "RGB"], axis=-1)
        except Exception as exc:  # the reader's own error types vary by version
            raise ThumbnailError(f"{name}: not a readable OpenEXR file: {exc}") from exc
    if pixels is None:
        raise ThumbnailError(f"{name}: no RGB (or single) channel to preview")
    rgb = np.nan_to_num(np.asarray(pixels, dtype="float32"), nan=0.0, posinf=1e4)
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    rgb = np.clip(rgb, 0.0, None)
    rgb = rgb / (1.0 + rgb)  # Reinhard
    srgb = np.where(rgb <= 0.0031308, rgb * 12.92, 1.055 * np.power(rgb, 1 / 2.4) - 0.055)
    return Image.fromarray((np.clip(srgb, 0, 1) * 255 + 0.5).astype("uint8"), "RGB")


def _open(data: bytes, name: str) -> Any:
    if name.lower().endswith(".exr"):
        return _from_exr(data, name)
    Image = _pillow()
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # Pillow raises several types for a bad file
        raise ThumbnailError(f"{name}: not an image Pillow can read: {exc}") from exc
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit TIFF: scale, not clip
        image = image.point(lambda v: v / 256).convert("L")
    elif image.mode == "F":
        image = image.point(lambda v: v * 255).convert("L")
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return image


def make_thumbnail(
    source: str,
    destination: str | os.PathLike[str],
    *,
    mtime: float | None = None,
    opener: Callable[[str], IO[bytes]] | None = None,
    size: int = MAX_SIZE,
) -> Path:
    """Write a PNG preview of image ``source`` to ``destination`` (at most ``size``
    pixels on its longer side) unless the file there was made from this very source
    (same path and ``mtime``). ``opener`` reads the source (a target storage's
    ``open_read``); default: this machine's filesystem. Raises
    :class:`ThumbnailError` when no preview can be made."""
    dest = Path(destination)
    if mtime is None:
        try:
            mtime = os.stat(source).st_mtime
        except OSError as exc:
            raise ThumbnailError(f"{source}: {exc.strerror or exc}") from exc
    stamp = f"{source}|{mtime!r}"
    if _stamp_of(dest) == stamp:
        return dest
    try:
        with (opener or (lambda p: open(p, "rb")))(source) as f:
            data = f.read()
    except OSError as exc:
        raise ThumbnailError(f"cannot read {source}: {exc.strerror or exc}") from exc
    image = _open(data, os.path.basename(source))
    image.thumbnail((size, size))
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(SOURCE_KEY, stamp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        image.save(partial, "PNG", pnginfo=info)
        os.replace(partial, dest)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ThumbnailError(f"cannot write {dest}: {exc.strerror or exc}") from exc
    return dest


def _stamp_of(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        Image = _pillow()
        with Image.open(path) as image:
            value = getattr(image, "text", {}).get(SOURCE_KEY)
            return str(value) if value is not None else None
    except (OSError, ThumbnailError, AttributeError):
        return None


def cached_thumbnail(
    source: str,
    *,
    mtime: float | None = None,
    opener: Callable[[str], IO[bytes]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The preview of ``source`` in the thumbnail cache (default: the data folder's
    ``thumbnails``), made on first use and again only when the source changes."""
    from ._paths import data_dir

    folder = Path(cache_dir) if cache_dir is not None else data_dir() / "thumbnails"
    key = hashlib.sha256(source.encode()).hexdigest()[:32]
    return make_thumbnail(source, folder / f"{key}.png", mtime=mtime, opener=opener)
