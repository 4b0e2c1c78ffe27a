"""Copying render files over a shared filesystem (or on one machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import InvalidRequestError, TransferError
from ..plugin import ProgressCallback, TransferProgress

__all__ = ["copy_into"]

_CHUNK = 1 << 20


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def copy_into(
    paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
) -> list[str]:
    """Copy files and folders into ``folder``, keeping their base names; return the
    destination paths in order.

    Each file is written under a temporary name in its destination folder and renamed
    when complete, so a failed copy never leaves a partial file under its final name.
    Two sources with the same base name are refused (one would overwrite the other).
    """
    sources = [Path(p) for p in paths]
    names: dict[str, Path] = {}
    for i, src in enumerate(sources):
        if not src.exists():
            raise InvalidRequestError(
                f"files[{i}]: {str(src)!r} does not exist on this machine", field=f"files.{i}"
            )
        other = names.get(src.name)
        if other is not None:
            raise InvalidRequestError(
                f"files[{i}]: {str(src)!r} and {str(other)!r} have the same name and would "
                f"land on one path in the job folder; rename one",
                field=f"files.{i}",
            )
        names[src.name] = src
    dest_root = Path(folder)
    plan: list[tuple[Path, Path]] = []
    for src in sources:
        if src.is_dir():
            for p in sorted(src.rglob("*")):
                if p.is_file():
                    plan.append((p, dest_root / src.name / p.relative_to(src)))
        else:
            plan.append((src, dest_root / src.name))
    total = sum(s.stat().st_size for s, _ in plan)
    done = 0
    for index, (src, dst) in enumerate(plan):
        try:
            done = _copy_file(src, dst, done, total, index, len(plan), progress)
        except OSError as exc:
            raise TransferError(f"cannot copy {src} to {dst}: {exc}") from exc
        if progress is not None:
            progress(TransferProgress(done, total, index + 1, len(plan), str(src)))
    return [str(dest_root / s.name) for s in sources]


def _copy_file(
    src: Path,
    dst: Path,
    done: int,
    total: int,
    index: int,
    count: int,
    progress: ProgressCallback | None,
) -> int:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    try:
        with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
            while True:
                block = fin.read(_CHUNK)
                if not block:
                    break
                fout.write(block)
                done += len(block)
                if progress is not None:
                    progress(TransferProgress(done, total, index, count, str(src)))
        shutil.copystat(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return done
