"""Real servers for storage tests, on 127.0.0.1, started and stopped by fixtures.

- OpenSSH ``sshd`` as described in shared/reference/test-infrastructure.md (CI installs
  openssh-server), or asyncssh's in-process server where no sshd exists;
- pyftpdlib with TLS for FTPS.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def keygen(path: Path, kind: str = "ed25519") -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)


class OpenSshServer:
    """``sshd`` on 127.0.0.1 with a host key, one authorized client key and SFTP.

    ``host_key_types``: the server's host keys; ``known_hosts`` lists only the first.
    """

    kind = "openssh"

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        *,
        host_key_types: tuple[str, ...] = ("ed25519",),
    ) -> None:
        self.dir = folder
        self.port = port or free_port()
        self.host_key = folder / "host_key"
        self.client_key = folder / "client_key"
        if not self.host_key.exists():
            keygen(self.host_key, host_key_types[0])
            keygen(self.client_key)
        self.host_keys = [self.host_key]
        for kind in host_key_types[1:]:
            self.host_keys.append(folder / f"host_key_{kind}")
            if not self.host_keys[-1].exists():
                keygen(self.host_keys[-1], kind)
        # sshd reads authorized_keys as the user logging in: keep it where any user can.
        keys_dir = Path(tempfile.gettempdir()) / f"fa-sshd-keys-{os.getpid()}"
        keys_dir.mkdir(mode=0o755, exist_ok=True)
        keys_dir.chmod(0o755)
        self.authorized_keys = keys_dir / f"authorized_keys-{self.port}"
        self.authorized_keys.write_text((folder / "client_key.pub").read_text())
        self.authorized_keys.chmod(0o644)
        self.known_hosts = folder / "known_hosts"
        host_pub = (folder / "host_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.user = getpass.getuser()

    def start(self) -> OpenSshServer:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        config = self.dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    *(f"HostKey {key}" for key in self.host_keys),
                    f"PidFile {self.dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 100",
                    "MaxSessions 100",
                    "",
                ]
            )
        )
        subprocess.run([SSHD, "-f", str(config), "-E", str(self.dir / "sshd.log")], check=True)
        wait_port(self.port)
        return self

    def kill(self) -> None:
        """Kill the daemon and every connection it serves, as a crash would."""
        pid_file = self.dir / "sshd.pid"
        if not pid_file.exists():
            return
        master = int(pid_file.read_text())
        victims = [master]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rfind(")") + 2 :].split()[1]) == master:
                    victims.append(int(entry.name))
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pid_file.unlink(missing_ok=True)
        time.sleep(0.2)

    stop = kill


class AsyncSshServer:
    """asyncssh's in-process SSH server with SFTP (no exec), where sshd is missing."""

    kind = "asyncssh"

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.dir = folder
        self.port = port or free_port()
        self.host_key = folder / "host_key"
        self.client_key = folder / "client_key"
        if not self.host_key.exists():
            keygen(self.host_key)
            keygen(self.client_key)
        host_pub = (folder / "host_key.pub").read_text().split()
        self.known_hosts = folder / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.user = "tester"
        self._thread: threading.Thread | None = None
        self._loop: Any = None
        self._server: Any = None

    def start(self) -> AsyncSshServer:
        import asyncio

        import asyncssh

        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()

            async def main() -> None:
                self._server = await asyncssh.listen(
                    "127.0.0.1",
                    self.port,
                    server_host_keys=[str(self.host_key)],
                    authorized_client_keys=str(self.dir / "client_key.pub"),
                    sftp_factory=True,
                    allow_scp=False,
                )
                ready.set()

            self._loop.run_until_complete(main())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(15)
        return self

    def kill(self) -> None:
        if self._loop is not None and self._server is not None:
            import asyncio

            async def shutdown() -> None:
                self._server.close()
                await self._server.wait_closed()
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:  # connection handlers still open
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)  # type: ignore[union-attr]
            self._server = None

    stop = kill


def ssh_server(folder: Path, port: int | None = None) -> Any:
    return (OpenSshServer if SSHD else AsyncSshServer)(folder, port)


class FtpsServer:
    """pyftpdlib with explicit TLS (control and data), one user, on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.home = folder / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.cert = folder / "cert.pem"
        self.key = folder / "key.pem"
        self._make_cert()
        self.port = free_port()
        self.user, self.password = "render", "ftp-secret"
        self._server: Any = None

    def _make_cert(self) -> None:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(self.key),
                "-out",
                str(self.cert),
            ],
            check=True,
            capture_output=True,
        )

    def start(self) -> FtpsServer:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import TLS_FTPHandler
        from pyftpdlib.servers import ThreadedFTPServer

        authorizer = DummyAuthorizer()
        authorizer.add_user(self.user, self.password, str(self.home), perm="elradfmwMT")

        class Handler(TLS_FTPHandler):
            pass

        Handler.certfile = str(self.cert)
        Handler.keyfile = str(self.key)
        Handler.authorizer = authorizer
        Handler.tls_control_required = True
        Handler.tls_data_required = True
        Handler.passive_ports = None
        self._server = ThreadedFTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"timeout": 0.5}, daemon=True
        ).start()
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close_all()
