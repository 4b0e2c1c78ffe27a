"""FTPS storage through the standard library's :mod:`ftplib`, for storage nodes that
offer FTPS and no shell (as some Run:ai sites run them).

TLS on both the control and the data connection (``PROT P``), certificates verified
(``ca_file`` for a private CA; ``verify = false`` only when a target says so). Files go
up as ``.<name>.fa-part`` and are renamed (``RNFR``/``RNTO``) when complete; the
modification time is set with ``MFMT`` where the server supports it, so unchanged
files (same ``SIZE`` and ``MDTM``) are skipped next time.
"""

from __future__ import annotations

import contextlib
import ftplib
import io
import posixpath
import queue
import ssl
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from pydantic import SecretStr

from ..errors import AuthenticationError, TransferError
from ..plugin import ProgressCallback
from . import (
    PlannedFile,
    ProgressTracker,
    TransferReport,
    as_secret,
    check_inside,
    plan_upload,
    remote_join,
    sha256_file,
)

__all__ = ["FtpTransfer"]

PART_SUFFIX = ".fa-part"


class FtpTransfer:
    """:class:`~farm_adapters.transfer.FileTransfer` over FTPS (explicit TLS)."""

    def __init__(
        self,
        host: str,
        *,
        port: int = 21,
        user: str = "anonymous",
        password: str | SecretStr = "",
        ca_file: str | None = None,
        verify: bool = True,
        root: str | None = None,
        connections: int = 1,
        timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.user = user
        #: Kept secret until the login sends it.
        self.password: SecretStr = as_secret(password) or SecretStr("")
        self.ca_file = ca_file
        self.verify = verify
        self.root = root
        self.connections = max(1, connections)
        self.timeout = timeout
        self._idle: queue.LifoQueue[ftplib.FTP_TLS] = queue.LifoQueue()
        self._made: set[str] = set()
        self._mfmt = True

    @property
    def where(self) -> str:
        return f"ftps://{self.host}:{self.port}"

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> ftplib.FTP_TLS:
        ftp = ftplib.FTP_TLS(context=self._context(), timeout=self.timeout)
        try:
            ftp.connect(self.host, self.port)
            ftp.login(
                self.user, self.password.get_secret_value()
            )  # AUTH TLS comes first: login is encrypted
            ftp.prot_p()
        except ftplib.error_perm as exc:
            with contextlib.suppress(Exception):
                ftp.close()
            if str(exc).startswith("530"):
                raise AuthenticationError(
                    f"storage {self.where}: login refused for user {self.user!r} ({exc}); "
                    f"check the user and password"
                ) from exc
            raise TransferError(f"storage {self.where}: {exc}") from exc
        except ssl.SSLError as exc:
            with contextlib.suppress(Exception):
                ftp.close()
            raise TransferError(
                f"storage {self.where}: TLS failed ({exc}); if the server uses a private CA "
                f"set ca_file in the target's storage"
            ) from exc
        except (OSError, EOFError, ftplib.Error) as exc:
            with contextlib.suppress(Exception):
                ftp.close()
            raise TransferError(f"storage {self.where}: cannot connect: {exc}") from exc
        return ftp

    @contextlib.contextmanager
    def _ftp(self) -> Iterator[ftplib.FTP_TLS]:
        try:
            ftp = self._idle.get_nowait()
        except queue.Empty:
            ftp = self._connect()
        ok = False
        try:
            yield ftp
            ok = True
        except ftplib.error_perm as exc:
            ok = True  # the session is fine; the command was refused
            if str(exc).startswith(("550", "553")):
                raise TransferError(
                    f"storage {self.where}: permission denied or no such file: {exc}"
                ) from exc
            raise TransferError(f"storage {self.where}: {exc}") from exc
        except (OSError, EOFError, ftplib.Error) as exc:
            raise TransferError(f"storage {self.where}: {exc}") from exc
        finally:
            if ok:
                self._idle.put(ftp)
            else:
                with contextlib.suppress(Exception):
                    ftp.close()

    def close(self) -> None:
        while True:
            try:
                ftp = self._idle.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                ftp.quit()

    # -- small operations --------------------------------------------------------------

    def _mkdirs(self, ftp: ftplib.FTP_TLS, remote: str) -> None:
        parts = []
        path = remote
        while path not in ("", "/") and path not in self._made:
            parts.append(path)
            path = posixpath.dirname(path)
        for path in reversed(parts):
            try:
                ftp.mkd(path)
            except ftplib.error_perm:
                try:
                    ftp.cwd(path)  # it exists (as a folder)
                except ftplib.error_perm as exc:
                    raise TransferError(
                        f"storage {self.where}: cannot create {path}: {exc}"
                    ) from exc
            self._made.add(path)

    def makedirs(self, remote: str) -> None:
        remote = check_inside(self.root, remote)
        with self._ftp() as ftp:
            self._mkdirs(ftp, remote)

    def _size(self, ftp: ftplib.FTP_TLS, remote: str) -> int | None:
        try:
            ftp.voidcmd("TYPE I")
            size = ftp.size(remote)
        except ftplib.error_perm:
            return None
        return size

    def exists(self, remote: str) -> bool:
        remote = check_inside(self.root, remote)
        with self._ftp() as ftp:
            if self._size(ftp, remote) is not None:
                return True
            try:
                ftp.cwd(remote)
            except ftplib.error_perm:
                return False
            return True

    def remove(self, remote: str) -> None:
        remote = check_inside(self.root, remote)
        with self._ftp() as ftp:
            self._remove(ftp, remote)
        self._made = {p for p in self._made if not (p == remote or p.startswith(remote + "/"))}

    def _remove(self, ftp: ftplib.FTP_TLS, remote: str) -> None:
        try:
            ftp.delete(remote)
            return
        except ftplib.error_perm:
            pass
        try:
            entries = list(ftp.mlsd(remote))
        except ftplib.error_perm:
            return  # gone
        for name, facts in entries:
            if name in (".", ".."):
                continue
            child = posixpath.join(remote, name)
            if facts.get("type") == "dir":
                self._remove(ftp, child)
            else:
                ftp.delete(child)
        ftp.rmd(remote)

    def open_read(self, remote: str, offset: int = 0) -> IO[bytes]:
        remote = check_inside(self.root, remote)
        buffer = io.BytesIO()
        with self._ftp() as ftp:
            ftp.retrbinary(f"RETR {remote}", buffer.write, rest=offset or None)
        buffer.seek(0)
        return buffer

    # -- upload / download -------------------------------------------------------------

    def _mdtm(self, ftp: ftplib.FTP_TLS, remote: str) -> int | None:
        try:
            answer = ftp.voidcmd(f"MDTM {remote}").split()[-1]
        except ftplib.error_perm:
            return None
        stamp = datetime.strptime(answer[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        return int(stamp.timestamp())

    def _unchanged(self, ftp: ftplib.FTP_TLS, item: PlannedFile, dest: str, checksum: bool) -> bool:
        if self._size(ftp, dest) != item.size:
            return False
        if checksum:
            remote = io.BytesIO()
            ftp.retrbinary(f"RETR {dest}", remote.write)
            import hashlib

            return hashlib.sha256(remote.getvalue()).hexdigest() == sha256_file(item.local)
        return self._mdtm(ftp, dest) == item.mtime

    def upload(
        self,
        paths: Sequence[str],
        remote_folder: str,
        progress: ProgressCallback | None = None,
        *,
        checksum: bool = False,
        verify: bool = False,
    ) -> TransferReport:
        folder = check_inside(self.root, remote_folder)
        plan = plan_upload(paths)
        tracker = ProgressTracker(progress, sum(p.size for p in plan), len(plan))
        sent = skipped = nbytes = 0
        with self._ftp() as ftp:
            self._mkdirs(ftp, folder)
            for item in plan:
                dest = remote_join(folder, item.relative)
                self._mkdirs(ftp, posixpath.dirname(dest))
                if self._unchanged(ftp, item, dest, checksum):
                    skipped += 1
                    tracker.add(item.size, 1, str(item.local))
                    continue
                self._put(ftp, item, dest, tracker, verify)
                sent += 1
                nbytes += item.size
                tracker.add(0, 1, str(item.local))
        return TransferReport(
            [remote_join(folder, Path(p).name) for p in paths], sent, skipped, nbytes
        )

    def _put(
        self,
        ftp: ftplib.FTP_TLS,
        item: PlannedFile,
        dest: str,
        tracker: ProgressTracker,
        verify: bool,
    ) -> None:
        directory, name = posixpath.split(dest)
        part = posixpath.join(directory, f".{name}{PART_SUFFIX}")
        with open(item.local, "rb") as f:
            ftp.storbinary(
                f"STOR {part}",
                f,
                blocksize=1 << 20,
                callback=lambda block: tracker.add(len(block), 0, str(item.local)),
            )
        if self._size(ftp, part) != item.size:
            raise TransferError(f"storage {self.where}: {part} is incomplete; upload again")
        if verify:
            remote = io.BytesIO()
            ftp.retrbinary(f"RETR {part}", remote.write)
            import hashlib

            if hashlib.sha256(remote.getvalue()).hexdigest() != sha256_file(item.local):
                raise TransferError(f"storage {self.where}: {part} differs from {item.local}")
        if self._mfmt:
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(item.mtime))
            try:
                ftp.voidcmd(f"MFMT {stamp} {part}")
            except ftplib.error_perm:
                self._mfmt = False  # the server cannot set times: skip by size only
        with contextlib.suppress(ftplib.error_perm):
            ftp.delete(dest)  # RNTO does not replace on every server
        ftp.rename(part, dest)

    def download(
        self,
        remote_paths: Sequence[str],
        local_folder: str,
        progress: ProgressCallback | None = None,
    ) -> list[str]:
        out = Path(local_folder)
        out.mkdir(parents=True, exist_ok=True)
        results = []
        with self._ftp() as ftp:
            remotes = [check_inside(self.root, r) for r in remote_paths]
            sizes = {r: self._size(ftp, r) or 0 for r in remotes}
            tracker = ProgressTracker(progress, sum(sizes.values()), len(remotes))
            for remote in remotes:
                dest = out / posixpath.basename(remote)
                tmp = dest.with_name(f".{dest.name}{PART_SUFFIX}")
                with open(tmp, "wb") as f:

                    def write(block: bytes, _f: IO[bytes] = f) -> None:
                        _f.write(block)
                        tracker.add(len(block))

                    ftp.retrbinary(f"RETR {remote}", write)
                tmp.replace(dest)
                tracker.add(0, 1, remote)
                results.append(str(dest))
        return results
