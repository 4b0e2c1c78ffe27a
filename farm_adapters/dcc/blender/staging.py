"""A self-contained copy of the open .blend, ready to copy to the farm (needs ``bpy``).

Every external file the scene uses (images, movie clips, sounds, fonts, volumes, cache
files, linked libraries) is copied into ``assets/`` next to the copy and the copy
refers to it as ``//assets/...``, so the render node needs nothing from the
workstation. The open file is not changed: paths are switched only while the copy is
written, then put back. Packed data stays packed.

Not handled: image sequences and movie files are copied as the one file they name;
the external files of linked libraries themselves are not followed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TransferError

__all__ = ["StagedBlend", "stage_blend"]

# Collections of bpy.data whose items may point at a file on disk.
_COLLECTIONS = ("images", "movieclips", "sounds", "fonts", "volumes", "cache_files", "libraries")


@dataclass
class StagedBlend:
    """What :func:`stage_blend` wrote."""

    blend: Path
    assets: Path | None
    copied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        """The local paths to copy into the job's folder, in order."""
        return [str(self.blend)] + ([str(self.assets)] if self.assets else [])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "file"


def _external(block: Any) -> str | None:
    """The absolute path ``block`` reads from disk, or None (packed, generated, built in)."""
    import bpy

    path = getattr(block, "filepath", "") or ""
    if not path or path == "<builtin>" or getattr(block, "packed_file", None) is not None:
        return None
    if getattr(block, "source", "FILE") in ("GENERATED", "VIEWER"):
        return None
    library = getattr(block, "library", None)
    return os.path.normpath(str(bpy.path.abspath(path, library=library)))


def _set_path(block: Any, value: str) -> None:
    # Images have filepath_raw, which does not reload the image.
    if hasattr(block, "filepath_raw"):
        block.filepath_raw = value
    else:
        block.filepath = value


def stage_blend(directory: str | os.PathLike[str], name: str = "scene.blend") -> StagedBlend:
    """Write the open scene as ``directory/name`` plus ``directory/assets/``.

    Missing external files are listed in :attr:`StagedBlend.missing` (the copy still
    refers to them). Raises :class:`~farm_adapters.errors.TransferError` when the copy
    cannot be written.
    """
    import bpy

    directory = Path(directory)
    assets = directory / "assets"
    staged = StagedBlend(blend=directory / name, assets=None)
    restore: list[tuple[Any, str]] = []
    used: dict[str, str] = {}  # absolute source -> //assets/name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for collection in _COLLECTIONS:
            for block in getattr(bpy.data, collection, ()):
                if getattr(block, "library", None) is not None:
                    continue  # lives in a library; that library is copied instead
                source = _external(block)
                if source is None:
                    continue
                sources = [source]
                if "<UDIM>" in source:
                    sources = sorted(glob.glob(source.replace("<UDIM>", "[0-9]" * 4)))
                if not sources or not all(os.path.isfile(s) for s in sources):
                    staged.missing.append(source)
                    continue
                if source not in used:
                    prefix = f"{len(used):03d}_"
                    base = _safe(os.path.basename(source).replace("<UDIM>", "UDIMTILE"))
                    assets.mkdir(exist_ok=True)
                    for s in sources:
                        tile = ""
                        if "<UDIM>" in source:  # keep the tile number of each file
                            at = source.index("<UDIM>")
                            tile = s[at : at + 4]
                        shutil.copy2(s, assets / (prefix + base.replace("UDIMTILE", tile)))
                        staged.copied.append(s)
                    used[source] = "//assets/" + prefix + base.replace("UDIMTILE", "<UDIM>")
                restore.append((block, block.filepath))
                _set_path(block, used[source])
        if used:
            staged.assets = assets
        bpy.ops.wm.save_as_mainfile(
            filepath=str(staged.blend), copy=True, relative_remap=False, check_existing=False
        )
    except (OSError, RuntimeError) as exc:
        raise TransferError(f"cannot write a copy of the scene to {directory}: {exc}") from exc
    finally:
        for block, path in reversed(restore):
            _set_path(block, path)
    return staged
