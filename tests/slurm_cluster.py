"""A real single-node Slurm cluster (munged, slurmctld, slurmd) in a private folder.

Follows shared/reference/slurm.md: Debian's packages (``.ci/run`` installs them when
root), one node named after ``hostname -s``, ``batch_sched_delay=0`` so arrays start at
once, ``jobcomp/filetxt`` for final states. Everything lives in one folder: a private
munge key and socket, the state, spool, pid and log files, free ports, so a test run
never touches a system Slurm. Daemons are stopped by the pids in their pid files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")
FIX = (
    "install Slurm as root: apt-get install -y --no-install-recommends slurmctld slurmd "
    "munge (or run .ci/run as root, which does it)"
)


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/usr/bin") if os.path.exists(f"{d}/{name}")), None
    )


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here (with the fix), or None."""
    missing = [d for d in DAEMONS if _which(d) is None]
    if missing:
        return f"Slurm is not installed here ({', '.join(missing)} missing): {FIX}"
    if os.geteuid() != 0:
        return (
            "the single-node Slurm test cluster runs slurmd as root (SlurmdUser=root): run "
            "the Slurm tests as root, e.g. through .ci/run in a root container"
        )
    host = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(host)
    except OSError:
        return f"the host name {host!r} does not resolve: add `127.0.0.1 {host}` to /etc/hosts"
    return None


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class SlurmCluster:
    """One controller and one node on this machine, configured in ``folder``."""

    def __init__(self, folder: Path, *, cpus: int | None = None) -> None:
        self.dir = folder.absolute()
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or max(2, os.cpu_count() or 2)
        self.conf = self.dir / "slurm.conf"
        self.jobcomp = self.dir / "jobcomp.txt"
        self.munge_socket = self.dir / "munge" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_config(self) -> None:
        ctld_port, slurmd_port = _free_ports(2)
        for sub in ("state", "spool", "munge", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        d = self.dir
        lines = [
            "ClusterName=fatest",
            f"SlurmctldHost={self.host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            f"SlurmdPort={slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}",
            f"SlurmctldLogFile={d / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
            "ReturnToService=2",
            "MpiDefault=none",
            "MinJobAge=600",
            "KillWait=2",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp}",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=1000 "
            "State=UNKNOWN",
            "PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "PartitionName=other Nodes=ALL MaxTime=INFINITE State=UP",
            "",
        ]
        self.conf.write_text("\n".join(lines))

    def _start_munge(self) -> None:
        key = self.dir / "munge" / "munge.key"
        subprocess.run([_which("mungekey"), "-c", "-f", "-k", str(key)], check=True)
        key.chmod(0o400)
        subprocess.run(
            [
                _which("munged"),
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.dir / 'munge' / 'munged.pid'}",
                f"--log-file={self.dir / 'munge' / 'munged.log'}",
                f"--seed-file={self.dir / 'munge' / 'munged.seed'}",
            ],
            check=True,
            capture_output=True,
        )

    def start(self, timeout: float = 60.0) -> SlurmCluster:
        self._write_config()
        self._start_munge()
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run(
                [_which(daemon), "-f", str(self.conf)],
                check=True,
                env=self.env,
                capture_output=True,
            )
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            run = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True
            )
            state = run.stdout.strip()
            if run.returncode == 0 and state.split("\n")[0].rstrip("*") in ("idle", "mixed"):
                return self
            time.sleep(0.2)
        logs = (self.dir / "slurmctld.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"the Slurm node never became idle (state {state!r}); log:\n{logs}")

    def _pids(self) -> list[tuple[Path, int]]:
        found = []
        for pid_file in (
            self.dir / "slurmd.pid",
            self.dir / "slurmctld.pid",
            self.dir / "munge" / "munged.pid",
        ):
            with contextlib.suppress(OSError, ValueError):
                found.append((pid_file, int(pid_file.read_text().split()[0])))
        return found

    def stop(self) -> None:
        """Cancel what is left, then stop the daemons by their pid files."""
        with contextlib.suppress(OSError):
            subprocess.run(["scancel", "--user", str(os.geteuid())], env=self.env, timeout=10)
        for pid_file, pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pid_file.unlink(missing_ok=True)

    def run(self, *argv: str) -> str:
        """A Slurm client command against this cluster; its stdout."""
        return subprocess.run(
            list(argv), env=self.env, check=True, capture_output=True, text=True
        ).stdout
