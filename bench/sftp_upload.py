"""SFTP upload speed: SftpTransfer against OpenSSH's own client, in one run, through
the same local sshd (started here on 127.0.0.1, stopped at the end).

1. one 1 GiB file: SftpTransfer vs ``sftp put``;
2. 50 files of 16 KiB: SftpTransfer vs ``sftp put -r`` (the fixed cost of an upload);
3. 2000 files of 16 KiB: SftpTransfer vs ``sftp put -r`` and vs ``rsync -e ssh``.

Destinations are on tmpfs (/dev/shm) when it has room, so the disk does not decide.

    python bench/sftp_upload.py [--size-mib 1024] [--few 50] [--files 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _common import median, report


def ssh_options(server: object) -> list[str]:
    return [
        "-i",
        str(server.client_key),
        "-o",
        f"UserKnownHostsFile={server.known_hosts}",  # type: ignore[attr-defined]
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]


def openssh_put(server: object, source: Path, dest: Path, recursive: bool) -> float:
    batch = f"put {'-r ' if recursive else ''}{source} {dest}\n"
    start = time.perf_counter()
    subprocess.run(
        [
            "sftp",
            "-q",
            "-b",
            "-",
            "-P",
            str(server.port),
            *ssh_options(server),  # type: ignore[attr-defined]
            f"{server.user}@127.0.0.1",
        ],
        input=batch.encode(),
        check=True,  # type: ignore[attr-defined]
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def rsync_put(server: object, source: Path, dest: Path) -> float:
    ssh = " ".join(["ssh", "-p", str(server.port), *ssh_options(server)])  # type: ignore[attr-defined]
    start = time.perf_counter()
    subprocess.run(
        ["rsync", "-a", "-e", ssh, f"{source}/", f"{server.user}@127.0.0.1:{dest}/"], check=True
    )  # type: ignore[attr-defined]
    return time.perf_counter() - start


def ours_put(server: object, source: Path, dest: Path) -> float:
    from farm_adapters.transfer.sftp import SftpTransfer

    transfer = SftpTransfer(
        "127.0.0.1",
        port=server.port,
        user=server.user,  # type: ignore[attr-defined]
        key_file=str(server.client_key),  # type: ignore[attr-defined]
        known_hosts=str(server.known_hosts),
        use_agent=False,
    )  # type: ignore[attr-defined]
    start = time.perf_counter()  # connection set-up counts, as it does for OpenSSH
    report_ = transfer.upload([str(source)], str(dest))
    elapsed = time.perf_counter() - start
    transfer.close()
    assert report_.files_sent > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--few", type=int, default=50)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from servers import SSHD, OpenSshServer

    if SSHD is None or shutil.which("sftp") is None:
        raise SystemExit("needs OpenSSH (sshd and sftp): apt-get install openssh-server")
    work = Path(tempfile.mkdtemp(prefix="fa-bench-sftp-"))
    shm = Path("/dev/shm")
    need = args.size_mib * 2**20 * 2 + args.files * 16384 * 3
    target_root = (
        Path(tempfile.mkdtemp(prefix="fa-bench-dest-", dir=shm))
        if shm.is_dir() and shutil.disk_usage(shm).free > need * 1.2
        else work / "dest"
    )
    os.environ.setdefault("FARM_ADAPTERS_DATA_DIR", str(work / "data"))
    (work / "sshd").mkdir()
    server = OpenSshServer(work / "sshd").start()
    try:
        big = work / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(2**20))
        small = work / "small"
        small.mkdir()
        for i in range(args.files):
            (small / f"f{i:05d}.bin").write_bytes(os.urandom(16384))
        few = work / "few"
        few.mkdir()
        for i in range(args.few):
            (few / f"f{i:05d}.bin").write_bytes(os.urandom(16384))

        big_ours, big_theirs = [], []
        small_ours, small_theirs, small_rsync = [], [], []
        few_ours, few_theirs = [], []
        mb = args.size_mib * 2**20 / 1e6
        for i in range(args.repeat):
            for name in ("ours", "sftp"):
                dest = target_root / f"big-{name}-{i}"
                dest.mkdir(parents=True)
                if name == "ours":
                    big_ours.append(mb / ours_put(server, big, dest))
                else:
                    big_theirs.append(mb / openssh_put(server, big, dest / "big.bin", False))
                shutil.rmtree(dest)
            for name in ("ours", "sftp"):
                dest = target_root / f"few-{name}-{i}"
                dest.mkdir(parents=True)
                if name == "ours":
                    few_ours.append(args.few / ours_put(server, few, dest))
                else:
                    few_theirs.append(args.few / openssh_put(server, few, dest, True))
                shutil.rmtree(dest)
            for name in ("ours", "sftp", "rsync"):
                dest = target_root / f"small-{name}-{i}"
                dest.mkdir(parents=True)
                if name == "ours":
                    small_ours.append(args.files / ours_put(server, small, dest))
                elif name == "sftp":
                    small_theirs.append(args.files / openssh_put(server, small, dest, True))
                elif shutil.which("rsync"):
                    small_rsync.append(args.files / rsync_put(server, small, dest / "small"))
                shutil.rmtree(dest)
            print(
                f"run {i}: 1 file: ours {big_ours[-1]:.0f} MB/s, sftp {big_theirs[-1]:.0f} MB/s;"
                f" {args.few} files: ours {few_ours[-1]:.0f}/s, sftp -r {few_theirs[-1]:.0f}/s;"
                f" {args.files} files: ours {small_ours[-1]:.0f}/s, sftp -r "
                f"{small_theirs[-1]:.0f}/s"
                + (f", rsync {small_rsync[-1]:.0f}/s" if small_rsync else ""),
                flush=True,
            )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(target_root, ignore_errors=True)
    if small_rsync:
        print(
            f"rsync -e ssh: {median(small_rsync):.0f} files/s "
            f"(ratio ours/rsync {median(small_ours) / median(small_rsync):.2f})"
        )
    report(
        f"sftp_upload_{args.size_mib}mib",
        median(big_ours),
        median(big_theirs),
        unit="MB/s",
        better="higher",
        target=">=1.0",
    )
    report(
        f"sftp_upload_{args.few}_small_files",
        median(few_ours),
        median(few_theirs),
        unit="files/s",
        better="higher",
        target=">=1.0",
    )
    report(
        f"sftp_upload_{args.files}_small_files",
        median(small_ours),
        median(small_theirs),
        unit="files/s",
        better="higher",
        target=">=1.0",
    )
    if small_rsync:
        report(
            f"sftp_upload_{args.files}_small_files_vs_rsync",
            median(small_ours),
            median(small_rsync),
            unit="files/s",
            better="higher",
            target=">=0.9",
        )


if __name__ == "__main__":
    main()
