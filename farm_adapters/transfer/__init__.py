"""Moving render files to farm storage and results back.

:class:`FileTransfer` is the protocol every storage implements; three ship:

- :class:`~farm_adapters.transfer.local.LocalTransfer`: a shared (or local) filesystem;
- :class:`~farm_adapters.transfer.sftp.SftpTransfer`: SFTP through paramiko (imported
  lazily), for storage nodes reached over SSH;
- :class:`~farm_adapters.transfer.ftps.FtpTransfer`: FTPS through the standard library,
  for storage nodes that offer FTPS and no shell.

All of them: write each file under a temporary name and rename it when complete (no
partial file under a final name), skip files whose size and modification time (or
sha256, when asked) already match, report progress in bytes and files, refuse remote
names that would leave the folder they are aimed at, and raise only
:class:`~farm_adapters.errors.FarmAdapterError` subclasses.

:func:`make_transfer` builds one from a target's ``storage`` table.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol, runtime_checkable

from pydantic import SecretStr

from ..errors import ConfigurationError, InvalidRequestError
from ..plugin import ProgressCallback, TransferProgress

__all__ = [
    "FileTransfer",
    "PlannedFile",
    "ProgressTracker",
    "TransferReport",
    "as_secret",
    "make_transfer",
    "plan_upload",
    "remote_join",
    "sha256_file",
]


class TransferReport(NamedTuple):
    """What an upload did."""

    remote_paths: list[str]
    files_sent: int
    files_skipped: int
    bytes_sent: int

    @property
    def summary(self) -> str:
        if self.files_sent == 0:
            return f"nothing to transfer: {self.files_skipped} file(s) already up to date"
        return (
            f"sent {self.files_sent} file(s), {self.bytes_sent / 1e6:.1f} MB; "
            f"{self.files_skipped} already up to date"
        )


@runtime_checkable
class FileTransfer(Protocol):
    """Storage the render nodes read from. Remote paths are POSIX paths as the storage
    sees them; implementations are thread-safe and reuse their connections."""

    def upload(
        self,
        paths: Sequence[str],
        remote_folder: str,
        progress: ProgressCallback | None = None,
        *,
        checksum: bool = False,
        verify: bool = False,
    ) -> TransferReport:
        """Copy local files and folders into ``remote_folder`` (kept by base name);
        skip what is already there unchanged (size and mtime, or sha256 with
        ``checksum``); with ``verify``, check each sent file afterwards."""

    def download(
        self,
        remote_paths: Sequence[str],
        local_folder: str,
        progress: ProgressCallback | None = None,
    ) -> list[str]:
        """Copy remote files into ``local_folder``; return the local paths."""

    def makedirs(self, remote: str) -> None:
        """Create a remote folder and its parents (no error if it exists)."""

    def exists(self, remote: str) -> bool:
        """Whether a remote file or folder exists."""

    def remove(self, remote: str) -> None:
        """Remove a remote file or folder tree (no error if it is gone)."""

    def open_read(self, remote: str, offset: int = 0) -> IO[bytes]:
        """A remote file opened for reading from ``offset``, to tail logs."""

    def close(self) -> None:
        """Close connections. Safe to call twice."""


class PlannedFile(NamedTuple):
    """One local file and where it goes, relative to the remote folder."""

    local: Path
    relative: str
    size: int
    mtime: int


def remote_join(folder: str, relative: str) -> str:
    """``folder/relative``, refusing anything that would leave ``folder`` (``..``,
    absolute names)."""
    if not relative or relative.startswith("/") or "\\" in relative:
        raise InvalidRequestError(
            f"remote name {relative!r} must be a relative POSIX path", field="files"
        )
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidRequestError(
            f"remote name {relative!r} must stay inside {folder!r}: no '..', '.' or empty parts",
            field="files",
        )
    return posixpath.join(folder, relative)


def check_inside(root: str | None, remote: str) -> str:
    """``remote`` normalised, refusing paths outside ``root`` (when one is set)."""
    normal = posixpath.normpath(remote)
    if root is not None:
        base = posixpath.normpath(root)
        if normal != base and not normal.startswith(base.rstrip("/") + "/"):
            raise InvalidRequestError(
                f"remote path {remote!r} is outside the storage root {root!r}", field="files"
            )
    return normal


def plan_upload(paths: Sequence[str]) -> list[PlannedFile]:
    """Every file to send, with its name relative to the destination folder. Refuses
    missing files and two sources with one base name."""
    planned: list[PlannedFile] = []
    names: dict[str, str] = {}
    for i, raw in enumerate(paths):
        src = Path(raw)
        if not src.exists():
            raise InvalidRequestError(
                f"files[{i}]: {raw!r} does not exist on this machine", field=f"files.{i}"
            )
        if src.name in names:
            raise InvalidRequestError(
                f"files[{i}]: {raw!r} and {names[src.name]!r} have the same name and would "
                f"land on one path in the job folder; rename one",
                field=f"files.{i}",
            )
        names[src.name] = raw
        if src.is_dir():
            planned.extend(_files_under(src, src.name))
        else:
            st = src.stat()
            planned.append(PlannedFile(src, src.name, st.st_size, int(st.st_mtime)))
    for item in planned:
        remote_join("/", item.relative)  # every name is safe before anything is sent
    return planned


def _files_under(folder: Path, relative: str) -> Iterator[PlannedFile]:
    """The files under ``folder`` (symbolic links to files included, linked folders
    not entered), in path order: one ``scandir`` per folder and one ``stat`` per file
    (``rglob`` and ``is_file`` cost three times that on a folder of 2000 files)."""
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _files_under(Path(entry.path), f"{relative}/{entry.name}")
        elif entry.is_file():
            st = entry.stat()
            name = f"{relative}/{entry.name}"
            yield PlannedFile(Path(entry.path), name, st.st_size, int(st.st_mtime))


def as_secret(value: str | SecretStr | None) -> SecretStr | None:
    """A password kept as :class:`~pydantic.SecretStr` (shown as ``'**********'`` by
    ``repr``, logs and tracebacks with locals) until the moment it is sent."""
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class ProgressTracker:
    """Adds up bytes and files from several threads and reports them."""

    def __init__(self, callback: ProgressCallback | None, bytes_total: int, files_total: int):
        import threading

        self.callback = callback
        self.bytes_total = bytes_total
        self.files_total = files_total
        self.bytes_done = 0
        self.files_done = 0
        self._lock = threading.Lock()

    def add(self, nbytes: int = 0, files: int = 0, current: str = "") -> None:
        with self._lock:
            self.bytes_done += nbytes
            self.files_done += files
            report = TransferProgress(
                self.bytes_done, self.bytes_total, self.files_done, self.files_total, current
            )
        if self.callback is not None:
            self.callback(report)


def make_transfer(storage: Mapping[str, Any], *, target: str = "") -> FileTransfer:
    """A transfer from a target's ``storage`` table: ``kind`` is ``local``, ``sftp`` or
    ``ftps``; the other keys are that kind's settings (secrets already resolved)."""
    options = dict(storage)
    kind = options.pop("kind", None)
    where = f"target {target!r}: storage" if target else "storage"
    try:
        if kind == "local":
            from .local import LocalTransfer

            return LocalTransfer(**options)
        if kind == "sftp":
            from .sftp import SftpTransfer

            return SftpTransfer(**options)
        if kind == "ftps":
            from .ftps import FtpTransfer

            return FtpTransfer(**options)
    except TypeError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    raise ConfigurationError(f"{where}: kind must be 'local', 'sftp' or 'ftps', not {kind!r}")
