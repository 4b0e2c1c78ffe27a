"""How the backend reaches Slurm: the client tools on this machine, or the same tools on
a login node over SSH. Both take argv lists, never shell strings built from input, and
both read files of the cluster's shared filesystem (logs, the jobcomp file)."""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from farm_adapters.errors import (
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    TransferError,
)

#: How long one Slurm command may take before the cluster counts as unreachable.
COMMAND_TIMEOUT = 60.0


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class Transport:
    """Runs Slurm commands and reads cluster files. Thread-safe."""

    where = ""

    def __init__(self, slurm_conf: str | None, bin_dir: str | None) -> None:
        self.slurm_conf = slurm_conf
        self.bin_dir = bin_dir
        #: Slurm commands run so far, by program name (for benchmarks and tests).
        self.calls: dict[str, int] = {}
        self._count_lock = threading.Lock()

    def _program(self, name: str) -> str:
        return f"{self.bin_dir.rstrip('/')}/{name}" if self.bin_dir else name

    def _count(self, name: str) -> None:
        with self._count_lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def run(self, argv: Sequence[str], stdin: str | None = None) -> Result:
        """Run one Slurm command (``argv[0]`` is the program name, e.g. ``sbatch``)."""
        raise NotImplementedError

    def read(self, path: str, offset: int = 0) -> tuple[int, bytes] | None:
        """(start, bytes) of a cluster file from ``offset``, or from ``start`` 0 when
        the file is now shorter than ``offset`` (rotated); None when it does not exist."""
        raise NotImplementedError

    def makedirs(self, path: str) -> None:
        raise NotImplementedError

    def home(self) -> str:
        """The user's home folder where the commands run."""
        return os.path.expanduser("~")

    def upload(self, paths: Sequence[str], folder: str, progress: Any = None) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; safe to call twice."""


class LocalTransport(Transport):
    """The Slurm client tools on this machine; cluster files on its filesystem."""

    where = "this machine"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.slurm_conf:
            env["SLURM_CONF"] = self.slurm_conf
        return env

    def run(self, argv: Sequence[str], stdin: str | None = None) -> Result:
        if self.slurm_conf and not os.path.exists(self.slurm_conf):
            raise ConfigurationError(
                f"the Slurm configuration {self.slurm_conf} does not exist here; fix "
                f"SLURM_CONF or the target's slurm_conf (or set host to use a login node)"
            )
        self._count(argv[0])
        program = [self._program(argv[0]), *argv[1:]]
        try:
            done = subprocess.run(
                program,
                input=stdin,
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except FileNotFoundError as exc:
            raise BackendUnavailableError(
                f"{argv[0]} is not installed here: install the Slurm client tools "
                f"(apt-get install slurm-client), set bin_dir, or set host to submit "
                f"through a login node"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise BackendUnavailableError(
                f"{argv[0]} did not answer in {COMMAND_TIMEOUT:.0f} s; is slurmctld up?"
            ) from exc
        except OSError as exc:
            raise BackendUnavailableError(f"cannot run {argv[0]}: {exc}") from exc
        return Result(done.returncode, done.stdout, done.stderr)

    def read(self, path: str, offset: int = 0) -> tuple[int, bytes] | None:
        try:
            with open(path, "rb") as f:
                start = offset if os.fstat(f.fileno()).st_size >= offset else 0
                f.seek(start)
                return start, f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransferError(f"cannot read {path}: {exc}") from exc

    def makedirs(self, path: str) -> None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransferError(f"cannot create folder {path}: {exc}") from exc

    def upload(self, paths: Sequence[str], folder: str, progress: Any = None) -> Any:
        from farm_adapters.transfer.local import LocalTransfer

        return LocalTransfer().upload(paths, folder, progress)


class SshTransport(Transport):
    """The Slurm client tools on a login node, over SSH (paramiko, imported on first
    use), with the host-key rules of SFTP storage: a known host key is required unless
    ``accept_new_host_key``, a changed one is always refused. Commands are sent as
    ``shlex``-quoted argv; cluster files are read over SFTP on the same connections."""

    def __init__(
        self, slurm_conf: str | None, bin_dir: str | None, *, host: str, **ssh: Any
    ) -> None:
        super().__init__(slurm_conf, bin_dir)
        from farm_adapters.transfer.sftp import SftpTransfer

        self.sftp = SftpTransfer(host, connections=1, use_tar=False, processes=False, **ssh)
        self.where = f"login node {self.sftp.where}"

    def _command(self, argv: Sequence[str]) -> str:
        program = [self._program(argv[0]), *argv[1:]]
        if self.slurm_conf:
            program = ["env", f"SLURM_CONF={self.slurm_conf}", *program]
        return shlex.join(program)

    def run(self, argv: Sequence[str], stdin: str | None = None) -> Result:
        import paramiko

        self._count(argv[0])
        command = self._command(argv)
        try:
            with self.sftp._conn() as conn:
                channel = conn.transport.open_session(timeout=self.sftp.timeout)
                try:
                    channel.settimeout(COMMAND_TIMEOUT)
                    channel.exec_command(command)
                    if stdin is not None:
                        channel.sendall(stdin.encode())
                    channel.shutdown_write()
                    out = channel.makefile("rb").read().decode(errors="replace")
                    err = channel.makefile_stderr("rb").read().decode(errors="replace")
                    code = channel.recv_exit_status()
                finally:
                    channel.close()
        except (AuthenticationError, ConfigurationError):
            raise
        except TransferError as exc:
            raise BackendUnavailableError(str(exc).replace("storage ", "", 1)) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise BackendUnavailableError(
                f"{self.where}: running {argv[0]} over SSH failed: {exc}"
            ) from exc
        if code == 127:
            raise BackendUnavailableError(
                f"{self.where}: {argv[0]} is not installed there ({err.strip()}); set "
                f"bin_dir to the folder holding the Slurm tools"
            )
        return Result(code, out, err)

    def read(self, path: str, offset: int = 0) -> tuple[int, bytes] | None:
        import errno

        import paramiko

        try:
            with self.sftp._conn() as conn:
                try:
                    f = conn.sftp.open(path, "rb")
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        return None
                    raise
                with f:
                    start = offset if f.stat().st_size >= offset else 0
                    f.seek(start)
                    data: bytes = f.read()
                    return start, data
        except TransferError as exc:
            raise BackendUnavailableError(str(exc).replace("storage ", "", 1)) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransferError(f"{self.where}: cannot read {path}: {exc}") from exc

    def makedirs(self, path: str) -> None:
        self.sftp.makedirs(path)

    def home(self) -> str:
        import paramiko

        try:
            with self.sftp._conn() as conn:
                home: str = conn.sftp.normalize(".")
                return home.rstrip("/")
        except TransferError as exc:
            raise BackendUnavailableError(str(exc).replace("storage ", "", 1)) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise BackendUnavailableError(f"{self.where}: SSH failed: {exc}") from exc

    def upload(self, paths: Sequence[str], folder: str, progress: Any = None) -> Any:
        return self.sftp.upload(paths, folder, progress)

    def close(self) -> None:
        self.sftp.close()
