"""SFTP storage through paramiko (imported when a connection is made).

Security: the server's host key must be in ``known_hosts`` (OpenSSH format). As OpenSSH
does, only the key types known for the host are asked for, so a host known by its RSA
key is checked against that key. A host with no known key is refused unless the target
sets ``accept_new_host_key`` (then its key is recorded); a changed key, or a new key type
for a host already known, is always refused. Authentication by key file, SSH agent or password (a
secret reference).

Speed (see ``shared/reference/test-infrastructure.md`` for the measurements behind it):
AES-GCM is preferred when the server offers it; writes are pipelined in 255 KiB SFTP
requests; files are sent in 32 MiB pieces spread over ``connections`` connections (so a
big file uses several at once, and many files are shared out); connections are reused;
a file of one piece goes in one pass (4 round trips); a small upload uses only the
connection already open (a new one costs ~0.1 s); many small files (TAR_MIN_FILES)
go as one tar stream in one remote command when the server lets us run ``tar``,
falling back to per-file SFTP.

Safety: each file is written as ``.<name>.fa-part`` and renamed when complete. The
pieces already written are remembered in a small local state file, so after a dropped
connection, a rerun (or the automatic reconnect) sends only what is missing.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import posixpath
import queue
import shlex
import socket
import stat
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from ..errors import AuthenticationError, ConfigurationError, TransferError
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

__all__ = ["SftpTransfer"]

PIECE = 32 << 20
WRITE_REQUEST = 255 << 10
PART_SUFFIX = ".fa-part"
TAR_MIN_FILES = 300  # below, per-file SFTP beats the cost of a remote exec
#: Work worth opening more connections for (each costs about a tenth of a second).
MORE_CONNECTIONS_FILES = 100
MORE_CONNECTIONS_BYTES = 16 << 20
TAR_MAX_AVERAGE = 1 << 20
#: The tar stream's one remote command: its answer once tar is known to be there, its
#: exit code when it is not, and the move script's name inside the archive.
READY = b"fa-ready\n"
NO_TAR = 97
MOVE_SCRIPT = ".fa-move.sh"
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
RECONNECTS = 3
#: Host key algorithms whose keys known_hosts lists under another name.
_HOST_KEY_FAMILY = {"rsa-sha2-512": "ssh-rsa", "rsa-sha2-256": "ssh-rsa"}


class _Conn:
    def __init__(self, transport: Any, sftp: Any) -> None:
        self.transport = transport
        self.sftp = sftp

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sftp.close()
        with contextlib.suppress(Exception):
            self.transport.close()


class SftpTransfer:
    """:class:`~farm_adapters.transfer.FileTransfer` over SFTP."""

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        user: str | None = None,
        key_file: str | None = None,
        password: str | SecretStr | None = None,
        known_hosts: str = "~/.ssh/known_hosts",
        accept_new_host_key: bool = False,
        use_agent: bool = True,
        connections: int = 2,
        root: str | None = None,
        use_tar: bool = True,
        processes: bool | None = None,
        timeout: float = 30.0,
    ) -> None:
        import getpass

        if connections < 1:
            raise ConfigurationError("storage: connections must be 1 or more")
        self.host = host
        self.port = int(port)
        self.user = user or getpass.getuser()
        self.key_file = os.path.expanduser(key_file) if key_file else None
        #: Kept secret until :meth:`_authenticate` sends it.
        self.password = as_secret(password) or None
        self.known_hosts = os.path.expanduser(known_hosts)
        self.accept_new_host_key = accept_new_host_key
        self.use_agent = use_agent
        self.connections = connections
        self.root = root
        self.use_tar = use_tar
        # Worker processes for big files: each connection encrypts on its own core.
        # Off where sys.executable is not a plain Python (inside some DCCs).
        self.processes = (
            os.path.basename(sys.executable).startswith("python")
            if processes is None
            else processes
        )
        self.timeout = timeout
        self._idle: queue.LifoQueue[_Conn] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._tar_ok: bool | None = None
        self._made: set[str] = set()

    # -- connections -------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def _connect(self) -> _Conn:
        import paramiko

        hosts = self._known_hosts()
        known = hosts.lookup(self.where)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise TransferError(
                f"storage {self.where}: cannot connect ({exc}); check host and port"
            ) from exc
        transport = paramiko.Transport(sock)
        try:
            options = transport.get_security_options()
            preferred = [c for c in PREFERRED_CIPHERS if c in options.ciphers]
            options.ciphers = tuple(preferred + [c for c in options.ciphers if c not in preferred])
            if known is not None:
                # As OpenSSH does: ask only for the key types known_hosts holds for this
                # host, so a host known by its RSA key is not asked for its ed25519 one
                # (which could not be checked, and must not be added behind our back).
                options.key_types = self._known_key_types(options.key_types, set(known.keys()))
            try:
                transport.start_client(timeout=self.timeout)
            except paramiko.SSHException as exc:
                if known is not None and "host key" in str(exc).lower():
                    raise TransferError(
                        f"storage {self.where}: the server offers none of the host key "
                        f"types {self.known_hosts} holds for it ({', '.join(sorted(known))}); "
                        f"the host key may have CHANGED, which may be an attack. If the "
                        f"server was reinstalled, remove the old key with `ssh-keygen -R "
                        f"'{self.where}' -f {self.known_hosts}`, then add the new one"
                    ) from exc
                raise
            self._check_host_key(transport.get_remote_server_key(), hosts, known)
            self._authenticate(transport)
            sftp = paramiko.SFTPClient.from_transport(transport)
            if sftp is None:
                raise TransferError(f"storage {self.where}: the server refused the sftp subsystem")
            return _Conn(transport, sftp)
        except (TransferError, AuthenticationError, ConfigurationError):
            transport.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise TransferError(f"storage {self.where}: SSH failed: {exc}") from exc

    def _known_hosts(self) -> Any:
        import paramiko

        hosts = paramiko.HostKeys()
        if os.path.exists(self.known_hosts):
            try:
                hosts.load(self.known_hosts)
            except (OSError, paramiko.SSHException, ValueError) as exc:
                raise ConfigurationError(
                    f"cannot read known_hosts {self.known_hosts}: {exc}"
                ) from exc
        return hosts

    def _known_key_types(self, offered: Sequence[str], known: set[str]) -> tuple[str, ...]:
        """The host key algorithms to offer for a host whose known keys are ``known``
        (known_hosts key types: ``ssh-rsa`` stands for the rsa-sha2 signatures too)."""
        keep = tuple(t for t in offered if _HOST_KEY_FAMILY.get(t, t) in known)
        if not keep:
            raise TransferError(
                f"storage {self.where}: {self.known_hosts} holds only "
                f"{', '.join(sorted(known))} key(s) for this host, which this client cannot "
                f"check; add the host's ed25519, ecdsa or rsa key with `ssh-keyscan -p "
                f"{self.port} {self.host} >> {self.known_hosts}` after verifying it"
            )
        return keep

    def _check_host_key(self, key: Any, hosts: Any, known: Any) -> None:
        fingerprint = "SHA256:" + base64.b64encode(
            hashlib.sha256(key.asbytes()).digest()
        ).decode().rstrip("=")
        if known is not None:
            if key.get_name() in known and known[key.get_name()] == key:
                return
            # A host with a known key only ever matches it: accept_new_host_key is for
            # hosts with no known key at all, never a second key type.
            raise TransferError(
                f"storage {self.where}: the host key CHANGED (now {key.get_name()} "
                f"{fingerprint}); this may be an attack. If the server was reinstalled, remove "
                f"the old key with `ssh-keygen -R '{self.where}' -f {self.known_hosts}`, then "
                f"connect again"
            )
        if not self.accept_new_host_key:
            raise TransferError(
                f"storage {self.where}: unknown host key ({key.get_name()} {fingerprint}); "
                f"verify it, then add it with `ssh-keyscan -p {self.port} {self.host} >> "
                f"{self.known_hosts}`, or set accept_new_host_key = true in the target's "
                f"storage to record it on first use"
            )
        with self._lock:
            hosts.add(self.where, key.get_name(), key)
            Path(self.known_hosts).parent.mkdir(parents=True, exist_ok=True)
            hosts.save(self.known_hosts)

    def _authenticate(self, transport: Any) -> None:
        import paramiko

        tried = []
        if self.key_file:
            tried.append(f"key {self.key_file}")
            try:
                key = paramiko.PKey.from_path(self.key_file)
            except (OSError, paramiko.SSHException) as exc:
                raise ConfigurationError(
                    f"storage {self.where}: cannot read key_file {self.key_file}: {exc}"
                ) from exc
            with contextlib.suppress(paramiko.AuthenticationException):
                transport.auth_publickey(self.user, key)
        if not transport.is_authenticated() and self.use_agent:
            for agent_key in paramiko.Agent().get_keys():
                tried.append("an agent key")
                with contextlib.suppress(paramiko.AuthenticationException):
                    transport.auth_publickey(self.user, agent_key)
                    break
        if not transport.is_authenticated() and self.password:
            tried.append("a password")
            with contextlib.suppress(paramiko.AuthenticationException):
                transport.auth_password(self.user, self.password.get_secret_value())
        if not transport.is_authenticated():
            raise AuthenticationError(
                f"storage {self.where}: authentication failed for user {self.user!r} "
                f"(tried {', '.join(tried) or 'nothing: set key_file, an agent or password'}); "
                f"check the key and the server's authorized_keys"
            )

    @contextlib.contextmanager
    def _conn(self) -> Iterator[_Conn]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
        ok = False
        try:
            yield conn
            ok = True
        finally:
            if ok and conn.transport.is_active():
                self._idle.put(conn)
            else:
                conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return

    # -- small operations --------------------------------------------------------------

    def _errors(self, what: str, exc: BaseException) -> TransferError:
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
            return TransferError(
                f"storage {self.where}: permission denied {what}; check the "
                f"remote folder's owner and mode"
            )
        return TransferError(f"storage {self.where}: {what} failed: {exc}")

    def _mkdirs(self, conn: _Conn, remote: str) -> None:
        parts = []
        path = remote
        while path not in ("", "/") and path not in self._made:
            parts.append(path)
            path = posixpath.dirname(path)
        for path in reversed(parts):
            try:
                conn.sftp.mkdir(path)
            except OSError:
                try:
                    if not stat.S_ISDIR(conn.sftp.stat(path).st_mode or 0):
                        raise TransferError(
                            f"storage {self.where}: {path} is a file, not a folder"
                        ) from None
                except OSError as exc:
                    raise self._errors(f"creating {path}", exc) from exc
            self._made.add(path)

    def makedirs(self, remote: str) -> None:
        remote = check_inside(self.root, remote)
        with self._conn() as conn:
            self._mkdirs(conn, remote)

    def exists(self, remote: str) -> bool:
        remote = check_inside(self.root, remote)
        with self._conn() as conn:
            try:
                conn.sftp.stat(remote)
            except OSError:
                return False
            return True

    def remove(self, remote: str) -> None:
        remote = check_inside(self.root, remote)
        with self._conn() as conn:
            self._remove(conn, remote)
        self._made = {p for p in self._made if not (p == remote or p.startswith(remote + "/"))}

    def _remove(self, conn: _Conn, remote: str) -> None:
        try:
            mode = conn.sftp.lstat(remote).st_mode or 0
        except OSError:
            return
        try:
            if stat.S_ISDIR(mode):
                for entry in conn.sftp.listdir_attr(remote):
                    self._remove(conn, posixpath.join(remote, entry.filename))
                conn.sftp.rmdir(remote)
            else:
                conn.sftp.remove(remote)
        except OSError as exc:
            raise self._errors(f"removing {remote}", exc) from exc

    def open_read(self, remote: str, offset: int = 0) -> IO[bytes]:
        remote = check_inside(self.root, remote)
        conn = self._connect()  # held by the file until it is closed
        try:
            f = conn.sftp.open(remote, "rb")
            f.seek(offset)
        except OSError as exc:
            conn.close()
            raise self._errors(f"opening {remote}", exc) from exc
        original_close = f.close

        def close() -> None:
            original_close()
            conn.close()

        f.close = close
        return f  # type: ignore[no-any-return]

    def _remote_sha256(self, conn: _Conn, remote: str) -> str:
        digest = hashlib.sha256()
        with conn.sftp.open(remote, "rb") as f:
            f.prefetch()
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    # -- upload ------------------------------------------------------------------------

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
        workers: list[subprocess.Popen[str]] = []
        if self.processes and self.connections > 1 and any(p.size > PIECE for p in plan):
            workers = self._start_workers()
        try:
            return self._upload(paths, folder, plan, progress, checksum, verify, workers)
        finally:
            self._stop_workers(workers)

    def _upload(
        self,
        paths: Sequence[str],
        folder: str,
        plan: list[PlannedFile],
        progress: ProgressCallback | None,
        checksum: bool,
        verify: bool,
        workers: list[subprocess.Popen[str]],
    ) -> TransferReport:
        tracker = ProgressTracker(progress, sum(p.size for p in plan), len(plan))
        with self._conn() as conn:
            self._mkdirs(conn, folder)
            pending = self._changed(conn, folder, plan, checksum)
        skipped = len(plan) - len(pending)
        if skipped:
            waiting = {id(p) for p in pending}
            tracker.add(sum(p.size for p in plan if id(p) not in waiting), skipped)
        sent_by_tar: list[PlannedFile] = []
        if (
            self.use_tar
            and len(pending) >= TAR_MIN_FILES
            and sum(p.size for p in pending) / len(pending) <= TAR_MAX_AVERAGE
            and self._tar_ok is not False
        ):
            sent_by_tar = self._send_tar(folder, pending, tracker)
        by_tar = {id(p) for p in sent_by_tar}
        rest = [p for p in pending if id(p) not in by_tar]
        if rest:
            self._send_files(folder, rest, tracker, verify, workers)
        if verify and sent_by_tar:
            with self._conn() as conn:
                for item in sent_by_tar:
                    self._verify(conn, item, remote_join(folder, item.relative))
        remote_paths = [remote_join(folder, Path(p).name) for p in paths]
        return TransferReport(remote_paths, len(pending), skipped, sum(p.size for p in pending))

    def _changed(
        self, conn: _Conn, folder: str, plan: list[PlannedFile], checksum: bool
    ) -> list[PlannedFile]:
        """The planned files that differ from what is there: one listing per folder."""
        listings: dict[str, dict[str, Any]] = {}
        changed = []
        for item in plan:
            dest = remote_join(folder, item.relative)
            directory = posixpath.dirname(dest)
            if directory not in listings:
                try:
                    listings[directory] = {a.filename: a for a in conn.sftp.listdir_attr(directory)}
                except OSError:
                    listings[directory] = {}
            attrs = listings[directory].get(posixpath.basename(dest))
            same = (
                attrs is not None
                and attrs.st_size == item.size
                and (
                    self._remote_sha256(conn, dest) == sha256_file(item.local)
                    if checksum
                    else int(attrs.st_mtime or 0) == item.mtime
                )
            )
            if not same:
                changed.append(item)
        return changed

    def _send_files(
        self,
        folder: str,
        items: list[PlannedFile],
        tracker: ProgressTracker,
        verify: bool,
        workers: list[subprocess.Popen[str]],
    ) -> None:
        """Every piece of every file, shared out over the connections."""
        with self._conn() as conn:
            for item in items:
                self._mkdirs(conn, posixpath.dirname(remote_join(folder, item.relative)))
        uploads = [_FileUpload(self, item, remote_join(folder, item.relative)) for item in items]
        work: queue.Queue[tuple[_FileUpload, int | None]] = queue.Queue()
        big: list[_FileUpload] = []
        for upload in uploads:
            if upload.pieces == 1:  # sent whole, finished by the thread that sends it
                work.put((upload, None))
                continue
            upload.start(tracker)
            if workers and len(upload.missing) > 1:
                big.append(upload)
                continue
            for piece in upload.missing:
                work.put((upload, piece))
        if big:
            self._send_in_processes(big, tracker, workers)
        errors: list[BaseException] = []

        def worker() -> None:
            while not errors:
                try:
                    upload, piece = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    if piece is None:
                        upload.send_whole(tracker, verify)
                    else:
                        upload.send_piece(piece, tracker)
                except BaseException as exc:
                    errors.append(exc)
                    return

        count = min(self.connections, work.qsize()) or 1
        left = sum(u.item.size for u in uploads if u not in big)
        if work.qsize() < MORE_CONNECTIONS_FILES and left < MORE_CONNECTIONS_BYTES:
            # Little to send: a new connection (a tenth of a second) would cost more
            # than it saves; use the ones already open.
            count = max(1, min(count, self._idle.qsize()))
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            exc = errors[0]
            if isinstance(exc, (TransferError, AuthenticationError)):
                raise exc
            raise self._errors("uploading", exc) from exc
        with self._conn() as conn:
            for upload in uploads:
                if upload.pieces > 1:
                    upload.finish(conn, verify)
                    tracker.add(0, 1, str(upload.item.local))

    def _start_workers(self) -> list[subprocess.Popen[str]]:
        """Worker processes (see :mod:`._sftp_worker`), given the connection at once so
        they import and connect while this process plans the upload."""
        connection = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": self.key_file,
            "password": self.password.get_secret_value() if self.password else None,
            "known_hosts": self.known_hosts,
            "use_agent": self.use_agent,
            "connections": 1,
            "root": self.root,
            "use_tar": False,
            "processes": False,
            "timeout": self.timeout,
        }
        workers = []
        for _ in range(self.connections):
            proc = subprocess.Popen(
                [sys.executable, "-m", "farm_adapters.transfer._sftp_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(connection) + "\n")  # a password stays off argv
            proc.stdin.flush()
            workers.append(proc)
        return workers

    @staticmethod
    def _stop_workers(workers: list[subprocess.Popen[str]]) -> None:
        for proc in workers:
            if proc.stdin is not None and not proc.stdin.closed:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # no job: the worker exits
        for proc in workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _send_in_processes(
        self,
        uploads: list[_FileUpload],
        tracker: ProgressTracker,
        workers: list[subprocess.Popen[str]],
    ) -> None:
        """The missing pieces of big files, handed out one at a time to the worker
        processes as they finish; until the first worker is ready, this process's own
        (already open) connection sends pieces too."""
        work: queue.Queue[tuple[int, int]] = queue.Queue()
        for index, upload in enumerate(uploads):
            for piece in upload.missing:
                work.put((index, piece))
        ready = threading.Event()
        failures: list[str] = []

        def feed(proc: subprocess.Popen[str]) -> None:
            assert proc.stdin is not None
            try:
                index, piece = work.get_nowait()
            except queue.Empty:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                return
            upload = uploads[index]
            job = {
                "key": f"{index}:{piece}",
                "piece": piece,
                "piece_size": PIECE,
                "file": {
                    "part": upload.part,
                    "local": str(upload.item.local),
                    "size": upload.item.size,
                },
            }
            try:
                proc.stdin.write(json.dumps(job) + "\n")
                proc.stdin.flush()
            except OSError:
                work.put((index, piece))  # it died: someone else sends this piece

        def follow(proc: subprocess.Popen[str]) -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("+"):
                    tracker.add(int(line[1:]))
                elif line.startswith("done "):
                    index, piece = map(int, line.split()[1].split(":"))
                    uploads[index].mark_done(piece)
                    feed(proc)
                elif line == "ready\n":
                    ready.set()
                    feed(proc)
                elif line.startswith("error "):
                    failures.append(line[6:].strip())
            proc.wait()

        readers = [threading.Thread(target=follow, args=(w,), daemon=True) for w in workers]
        for reader in readers:
            reader.start()
        while not ready.is_set():  # workers still starting: use the warm connection
            try:
                index, piece = work.get_nowait()
            except queue.Empty:
                break
            uploads[index].send_piece(piece, tracker)
        for reader in readers:
            reader.join()
        while True:  # pieces no worker could send (all of them failed to start)
            try:
                index, piece = work.get_nowait()
            except queue.Empty:
                break
            uploads[index].send_piece(piece, tracker)
        if any(u.missing_now() for u in uploads):
            raise TransferError(
                f"storage {self.where}: sending {uploads[0].item.local} failed "
                f"({failures[0] if failures else 'a worker stopped'}); run the upload "
                f"again to resume it"
            )

    def _verify(self, conn: _Conn, item: PlannedFile, dest: str) -> None:
        if self._remote_sha256(conn, dest) != sha256_file(item.local):
            raise TransferError(
                f"storage {self.where}: {dest} differs from {item.local} after the upload (sha256)"
            )

    # -- tar stream for many small files -----------------------------------------------

    def _run(self, conn: _Conn, command: str, stdin: bytes | None = None) -> tuple[int, str]:
        channel = conn.transport.open_session(timeout=self.timeout)
        try:
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            err = channel.makefile_stderr("rb").read().decode(errors="replace")
            return channel.recv_exit_status(), err
        finally:
            channel.close()

    def _send_tar(
        self, folder: str, items: list[PlannedFile], tracker: ProgressTracker
    ) -> list[PlannedFile]:
        """Send ``items`` as one tar stream into a hidden staging folder beside their
        destination, then move them into place with one ``mv`` per folder (each file
        is renamed whole, so none is ever partial under its final name). Returns the
        files sent, or none if the server refused (per-file SFTP takes over, and is
        used from then on).

        One remote command does it all (an exec costs a session on the server, a
        tenth of a second or more): it says ``fa-ready`` once ``tar`` and ``mv`` are
        known to be there, and only then is the stream sent; the move script travels
        in the archive."""
        import uuid

        import paramiko

        staging = posixpath.join(folder, f".fa-incoming-{uuid.uuid4().hex[:12]}")
        quoted = shlex.quote(staging)
        script = self._move_script(folder, staging, items)
        command = (
            f"command -v tar >/dev/null && command -v mv >/dev/null || exit {NO_TAR}; "
            f"echo {READY.decode().strip()} && mkdir -p {quoted} && "
            f"tar -x -f - -C {quoted} && sh {quoted}/{MOVE_SCRIPT}"
        )
        try:
            with self._conn() as conn:
                channel = conn.transport.open_session(timeout=self.timeout)
                channel.settimeout(self.timeout)
                channel.exec_command(command)
                said = b""
                while not said.endswith(READY) and len(said) < 4096:
                    data = channel.recv(64)
                    if not data:
                        break
                    said += data
                if not said.endswith(READY):  # no tar there (or no shell): use SFTP
                    channel.close()
                    self._tar_ok = False
                    return []
                writer = _ChannelWriter(channel)
                _write_tar(writer, script, items, tracker)
                writer.flush()
                channel.shutdown_write()
                err = channel.makefile_stderr("rb").read().decode(errors="replace")
                code = channel.recv_exit_status()
                channel.close()
                if code != 0:
                    raise TransferError(f"remote tar failed ({code}): {err.strip()}")
        except (paramiko.SSHException, OSError, EOFError, TransferError):
            self._tar_ok = False
            with contextlib.suppress(Exception), self._conn() as conn:
                self._remove(conn, staging)
            return []
        self._tar_ok = True
        for item in items:
            tracker.add(0, 1, str(item.local))
        return items

    @staticmethod
    def _move_script(folder: str, staging: str, items: list[PlannedFile]) -> bytes:
        """One ``mv -t`` per destination folder (500 names a line), then clean up."""
        by_dir: dict[str, list[str]] = {}
        for item in items:
            by_dir.setdefault(posixpath.dirname(item.relative), []).append(item.relative)
        lines = ["set -e", f"cd {shlex.quote(folder)}"]
        for directory, names in sorted(by_dir.items()):
            target = shlex.quote(directory or ".")
            lines.append(f"mkdir -p -- {target}")
            for i in range(0, len(names), 500):
                sources = " ".join(
                    shlex.quote(posixpath.join(staging, n)) for n in names[i : i + 500]
                )
                lines.append(f"mv -f -t {target} -- {sources}")
        lines.append(f"rm -rf -- {shlex.quote(staging)}")
        return ("\n".join(lines) + "\n").encode()

    # -- download ----------------------------------------------------------------------

    def download(
        self,
        remote_paths: Sequence[str],
        local_folder: str,
        progress: ProgressCallback | None = None,
    ) -> list[str]:
        out = Path(local_folder)
        out.mkdir(parents=True, exist_ok=True)
        results = []
        with self._conn() as conn:
            sizes = {}
            for remote in remote_paths:
                remote = check_inside(self.root, remote)
                try:
                    sizes[remote] = conn.sftp.stat(remote).st_size or 0
                except OSError as exc:
                    raise self._errors(f"reading {remote}", exc) from exc
            tracker = ProgressTracker(progress, sum(sizes.values()), len(sizes))
            for remote in sizes:
                dest = out / posixpath.basename(remote)
                tmp = dest.with_name(f".{dest.name}{PART_SUFFIX}")
                seen = [0]

                def step(done: int, total: int, _seen: list[int] = seen) -> None:
                    tracker.add(done - _seen[0])
                    _seen[0] = done

                try:
                    conn.sftp.get(remote, str(tmp), callback=step)
                    os.replace(tmp, dest)
                except OSError as exc:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                    raise self._errors(f"downloading {remote}", exc) from exc
                tracker.add(0, 1, remote)
                results.append(str(dest))
        return results


class _FileUpload:
    """One file's upload in pieces, resumable through a small local state file."""

    def __init__(self, owner: SftpTransfer, item: PlannedFile, dest: str) -> None:
        self.owner = owner
        self.item = item
        self.dest = dest
        directory, name = posixpath.split(dest)
        self.part = posixpath.join(directory, f".{name}{PART_SUFFIX}")
        self.pieces = max(1, -(-item.size // PIECE))
        key = f"{owner.host}:{owner.port}:{dest}:{item.local.resolve()}:{item.size}:{item.mtime}"
        self.state_file = _state_dir() / (hashlib.sha1(key.encode()).hexdigest() + ".json")
        self.done: set[int] = set()
        self.missing: list[int] = []
        self._lock = threading.Lock()

    def start(self, tracker: ProgressTracker) -> None:
        """Decide what is left to send: all pieces, or the ones a previous run did not
        finish (when its part file is still there)."""
        done: set[int] = set()
        with contextlib.suppress(OSError, ValueError):
            done = set(json.loads(self.state_file.read_text())["done"])
        with self.owner._conn() as conn:
            try:
                size = conn.sftp.stat(self.part).st_size or 0
            except OSError:
                size = -1
            if size < 0 or not done or size > self.item.size:
                done = set()
                with conn.sftp.open(self.part, "wb"):
                    pass
        self.done = done
        self.missing = [p for p in range(self.pieces) if p not in done]
        tracker.add(sum(self._length(p) for p in done))

    def _length(self, piece: int) -> int:
        return max(0, min(PIECE, self.item.size - piece * PIECE))

    def send_piece(self, piece: int, tracker: ProgressTracker) -> None:
        self._send(tracker, piece * PIECE, self._length(piece), "r+b")
        self.mark_done(piece)

    def send_whole(self, tracker: ProgressTracker, verify: bool) -> None:
        """A file of one piece: written to its part file, then finished, in one go over
        one connection (4 round trips: open, close, utime, rename; the writes are
        pipelined). Nothing to resume, so no state file."""
        # Finished once the handle is closed: every write acknowledged, the size is the file's.
        self._send(
            tracker,
            0,
            self.item.size,
            "wb",
            then=lambda conn: self.finish(conn, verify, sized=True),
        )
        tracker.add(0, 1, str(self.item.local))

    def _send(
        self,
        tracker: ProgressTracker,
        offset: int,
        length: int,
        mode: str,
        then: Callable[[_Conn], None] | None = None,
    ) -> None:
        """Write ``length`` bytes of the file from ``offset`` into its part file over one
        pooled connection, pipelined; ``then`` runs on that connection once the handle
        is closed. A dropped connection is retried on a new one (``RECONNECTS`` times),
        its bytes counted again."""
        import paramiko

        for attempt in range(RECONNECTS + 1):
            sent = 0
            try:
                with self.owner._conn() as conn:
                    with (
                        conn.sftp.open(self.part, mode, bufsize=0) as remote,
                        open(self.item.local, "rb") as local,
                    ):
                        remote.set_pipelined(True)
                        remote.MAX_REQUEST_SIZE = WRITE_REQUEST
                        remote.seek(offset)
                        local.seek(offset)
                        left = length
                        while left:
                            block = local.read(min(1 << 20, left))
                            if not block:
                                raise TransferError(f"{self.item.local} shrank during the upload")
                            remote.write(block)
                            left -= len(block)
                            sent += len(block)
                            tracker.add(len(block), 0, str(self.item.local))
                    # Closing the handle waited for every write's acknowledgement.
                    if then is not None:
                        then(conn)
                return
            except (OSError, paramiko.SSHException, EOFError) as exc:
                tracker.add(-sent)  # this attempt's bytes are sent again
                if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
                    raise self.owner._errors(f"writing {self.part}", exc) from exc
                if attempt == RECONNECTS:
                    raise TransferError(
                        f"storage {self.owner.where}: the connection dropped while sending "
                        f"{self.item.local} ({exc}); run the upload again to resume it"
                    ) from exc

    def missing_now(self) -> list[int]:
        with self._lock:
            return [p for p in range(self.pieces) if p not in self.done]

    def mark_done(self, piece: int) -> None:
        """Remember a piece as written (its handle closed: every write acknowledged)."""
        with self._lock:
            self.done.add(piece)
            self.state_file.write_text(json.dumps({"done": sorted(self.done)}))

    def finish(self, conn: _Conn, verify: bool, *, sized: bool = False) -> None:
        """Set the part file's mtime, check it (``verify``), and rename it into place;
        its size is checked first unless the caller knows it (``sized``)."""
        try:
            size = self.item.size if sized else conn.sftp.stat(self.part).st_size
            if size != self.item.size:
                raise TransferError(
                    f"storage {self.owner.where}: {self.part} has {size} "
                    f"bytes, expected {self.item.size}; upload again"
                )
            conn.sftp.utime(self.part, (self.item.mtime, self.item.mtime))
            if verify:
                self.owner._verify(conn, self.item, self.part)
            try:
                conn.sftp.posix_rename(self.part, self.dest)
            except OSError:  # a server without the posix-rename extension
                with contextlib.suppress(OSError):
                    conn.sftp.remove(self.dest)
                conn.sftp.rename(self.part, self.dest)
        except OSError as exc:
            raise self.owner._errors(f"finishing {self.dest}", exc) from exc
        if not sized:
            with contextlib.suppress(OSError):
                self.state_file.unlink()


def _state_dir() -> Path:
    from .._paths import data_dir

    path = data_dir() / "transfers"
    path.mkdir(parents=True, exist_ok=True)
    return path


class _ChannelWriter:
    """A buffered, file-like writer over an SSH channel, for tarfile's stream mode
    (tarfile writes 512-byte headers; one SSH packet each would be slow)."""

    def __init__(self, channel: Any, size: int = 1 << 20) -> None:
        self.channel = channel
        self.size = size
        self.buffer = bytearray()
        self.written = 0

    def write(self, data: bytes) -> int:
        self.buffer += data
        self.written += len(data)
        if len(self.buffer) >= self.size:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.channel.sendall(bytes(self.buffer))
            self.buffer.clear()


def _tar_header(name: str, size: int, mtime: int, mode: int) -> bytes:
    """A tar header: ustar when the name and size fit (most files: a tenth of the
    CPU of a pax header), pax otherwise (long or non-ASCII names, huge sizes)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    if name.isascii():
        with contextlib.suppress(ValueError):
            return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _write_tar(
    out: _ChannelWriter, script: bytes, items: list[PlannedFile], tracker: ProgressTracker
) -> None:
    """The archive the remote ``tar -x`` reads: the move script, then ``items`` with
    their planned size (a file that shrank since is an OSError), then the end blocks.
    Written directly rather than through tarfile, whose per-member copies and pax
    headers were most of the CPU of a 2000-file upload."""
    block = tarfile.BLOCKSIZE
    out.write(_tar_header(MOVE_SCRIPT, len(script), 0, 0o600))
    out.write(script + bytes(-len(script) % block))
    chunk = 1 << 20
    for item in items:
        out.write(_tar_header(item.relative, item.size, item.mtime, 0o644))
        with open(item.local, "rb") as f:
            left = item.size
            while left:
                data = f.read(min(chunk, left))
                if not data:
                    raise OSError(f"{item.local} shrank during the upload")
                out.write(data)
                left -= len(data)
                tracker.add(len(data), 0, str(item.local))
        out.write(bytes(-item.size % block))
    end = 2 * block
    out.write(bytes(end + (-(out.written + end) % tarfile.RECORDSIZE)))
