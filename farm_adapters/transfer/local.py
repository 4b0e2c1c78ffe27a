"""Copying render files over a shared filesystem (or on one machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..errors import TransferError
from ..plugin import ProgressCallback
from . import (
    PlannedFile,
    ProgressTracker,
    TransferReport,
    check_inside,
    plan_upload,
    remote_join,
    sha256_file,
)

__all__ = ["LocalTransfer", "copy_into"]

_CHUNK = 1 << 20


class LocalTransfer:
    """:class:`~farm_adapters.transfer.FileTransfer` on a filesystem this machine
    mounts. ``root`` (optional) confines every remote path to one folder."""

    def __init__(self, root: str | None = None) -> None:
        self.root = root

    def _path(self, remote: str) -> Path:
        return Path(check_inside(self.root, remote))

    def upload(
        self,
        paths: Sequence[str],
        remote_folder: str,
        progress: ProgressCallback | None = None,
        *,
        checksum: bool = False,
        verify: bool = False,
    ) -> TransferReport:
        folder = str(self._path(remote_folder))
        plan = plan_upload(paths)
        tracker = ProgressTracker(progress, sum(p.size for p in plan), len(plan))
        sent = skipped = nbytes = 0
        for item in plan:
            dest = Path(remote_join(folder, item.relative))
            if _unchanged(item, dest, checksum):
                skipped += 1
                tracker.add(item.size, 1, str(item.local))
                continue
            try:
                _copy_file(item, dest, tracker)
            except OSError as exc:
                raise TransferError(f"cannot copy {item.local} to {dest}: {exc}") from exc
            if verify and sha256_file(dest) != sha256_file(item.local):
                raise TransferError(f"{dest} differs from {item.local} after the copy")
            sent += 1
            nbytes += item.size
            tracker.add(0, 1, str(item.local))
        return TransferReport(
            [str(Path(folder) / Path(p).name) for p in paths], sent, skipped, nbytes
        )

    def download(
        self,
        remote_paths: Sequence[str],
        local_folder: str,
        progress: ProgressCallback | None = None,
    ) -> list[str]:
        sources = [str(self._path(p)) for p in remote_paths]
        return self.upload(sources, local_folder, progress).remote_paths

    def makedirs(self, remote: str) -> None:
        try:
            self._path(remote).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransferError(f"cannot create folder {remote}: {exc}") from exc

    def exists(self, remote: str) -> bool:
        return self._path(remote).exists()

    def remove(self, remote: str) -> None:
        path = self._path(remote)
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise TransferError(f"cannot remove {remote}: {exc}") from exc

    def open_read(self, remote: str, offset: int = 0) -> IO[bytes]:
        try:
            f = open(self._path(remote), "rb")  # noqa: SIM115 - returned to the caller
        except OSError as exc:
            raise TransferError(f"cannot open {remote}: {exc}") from exc
        f.seek(offset)
        return f

    def close(self) -> None:
        pass


def _unchanged(item: PlannedFile, dest: Path, checksum: bool) -> bool:
    try:
        st = dest.stat()
    except OSError:
        return False
    if st.st_size != item.size:
        return False
    if checksum:
        return sha256_file(dest) == sha256_file(item.local)
    return int(st.st_mtime) == item.mtime


def _copy_file(item: PlannedFile, dest: Path, tracker: ProgressTracker) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with open(item.local, "rb") as fin, os.fdopen(fd, "wb") as fout:
            for block in iter(lambda: fin.read(_CHUNK), b""):
                fout.write(block)
                tracker.add(len(block), 0, str(item.local))
        shutil.copystat(item.local, tmp)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def copy_into(
    paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
) -> list[str]:
    """Copy files and folders into ``folder`` (by base name) on this machine's
    filesystem; return the destination paths in order."""
    return LocalTransfer().upload(paths, folder, progress).remote_paths
