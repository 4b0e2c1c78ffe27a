"""Storage transfers against real servers: OpenSSH sshd (or asyncssh's) and
pyftpdlib FTPS, all on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from servers import SSHD, FtpsServer, OpenSshServer

from farm_adapters import (
    AuthenticationError,
    InvalidRequestError,
    Job,
    JobState,
    TransferError,
    TransferProgress,
    submit,
    wait,
)
from farm_adapters.config import parse_targets
from farm_adapters.transfer import remote_join
from farm_adapters.transfer.local import LocalTransfer
from farm_adapters.transfer.sftp import PIECE, SftpTransfer

pytest.importorskip("paramiko", reason="the ssh extra is not installed")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_tree(root: Path) -> list[str]:
    (root / "textures" / "wood").mkdir(parents=True)
    (root / "scene.xml").write_text("<scene/>\n" * 100)
    (root / "textures" / "wood" / "albedo.png").write_bytes(os.urandom(300_000))
    (root / "textures" / "notes.txt").write_text("n")
    return [str(root / "scene.xml"), str(root / "textures")]


def test_upload_then_nothing_to_do_the_second_time(sftp: Any, tmp_path: Path) -> None:
    paths = make_tree(tmp_path / "src")
    seen: list[TransferProgress] = []
    dest = str(tmp_path / "remote" / "ctx")
    report = sftp.upload(paths, dest, seen.append)
    assert report.files_sent == 3 and report.files_skipped == 0
    assert report.remote_paths == [f"{dest}/scene.xml", f"{dest}/textures"]
    assert seen[-1].files_done == seen[-1].files_total == 3
    assert seen[-1].bytes_done == seen[-1].bytes_total == report.bytes_sent
    assert sha(Path(dest) / "textures/wood/albedo.png") == sha(
        tmp_path / "src/textures/wood/albedo.png"
    )
    again = sftp.upload(paths, dest)
    assert (again.files_sent, again.files_skipped, again.bytes_sent) == (0, 3, 0)
    assert again.summary == "nothing to transfer: 3 file(s) already up to date"
    assert not [p for p in Path(dest).rglob(".*")]  # no temporary names left


def test_checksum_catches_what_size_and_mtime_miss(sftp: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    f = src / "a.bin"
    f.write_bytes(b"A" * 1000)
    dest = str(tmp_path / "remote" / "c")
    sftp.upload([str(f)], dest)
    stat = f.stat()
    f.write_bytes(b"B" * 1000)
    os.utime(f, (stat.st_atime, stat.st_mtime))  # same size, same mtime, new content
    assert sftp.upload([str(f)], dest).files_sent == 0
    assert sftp.upload([str(f)], dest, checksum=True, verify=True).files_sent == 1
    assert (Path(dest) / "a.bin").read_bytes() == b"B" * 1000


def test_many_small_files(sftp: Any, tmp_path: Path, sshd: Any) -> None:
    folder = tmp_path / "src" / "cache"
    folder.mkdir(parents=True)
    for i in range(320):  # enough to be worth a remote command (TAR_MIN_FILES)
        (folder / f"tile_{i:03d}.bin").write_bytes(os.urandom(4096))
    dest = tmp_path / "remote" / "many"
    report = sftp.upload([str(folder)], str(dest))
    assert report.files_sent == 320
    assert sorted(p.name for p in (dest / "cache").iterdir()) == sorted(
        p.name for p in folder.iterdir()
    )
    assert [p.name for p in dest.iterdir()] == ["cache"]  # no staging, no move script left
    assert sha(dest / "cache" / "tile_007.bin") == sha(folder / "tile_007.bin")
    if sshd.kind == "openssh":
        assert sftp._tar_ok is True  # one tar stream, not 320 x 4 round trips
    assert sftp.upload([str(folder)], str(dest)).files_sent == 0


def test_a_tar_stream_keeps_every_name_size_and_time(sftp: Any, tmp_path: Path, sshd: Any) -> None:
    """Long, nested and non-ASCII names, empty files and sizes on a tar block
    boundary all land byte-identical with their times, in one stream."""
    folder = tmp_path / "src" / "cache"
    deep = folder / ("d" * 90) / "é"
    deep.mkdir(parents=True)
    files = {}
    for i in range(310):  # enough for a tar stream (TAR_MIN_FILES)
        size = (0, 1, 511, 512, 513, 1024, 5000)[i % 7]
        name = f"{'n' * 120}_{i}.bin" if i % 5 == 0 else f"tile_{i:03d}.bin"
        where = deep if i % 3 == 0 else folder
        if i % 11 == 0:
            name = f"ünï_{i}.bin"
        path = where / name
        path.write_bytes(os.urandom(size))
        os.utime(path, (1_600_000_000 + i, 1_600_000_000 + i))
        files[path.relative_to(folder)] = path
    dest = tmp_path / "remote" / "tarred"
    assert sftp.upload([str(folder)], str(dest)).files_sent == len(files)
    if sshd.kind == "openssh":
        assert sftp._tar_ok is True
    landed = {p.relative_to(dest / "cache") for p in (dest / "cache").rglob("*") if p.is_file()}
    assert landed == set(files)
    for relative, local in files.items():
        remote = dest / "cache" / relative
        assert remote.read_bytes() == local.read_bytes(), relative
        assert int(remote.stat().st_mtime) == int(local.stat().st_mtime), relative
    assert sftp.upload([str(folder)], str(dest)).files_sent == 0  # sizes and times kept


def test_download_and_tail(sftp: Any, tmp_path: Path) -> None:
    remote = tmp_path / "remote" / "logs"
    remote.mkdir(parents=True)
    (remote / "job.log").write_text("line 1\nline 2\n")
    (local,) = sftp.download([str(remote / "job.log")], str(tmp_path / "back"))
    assert Path(local).read_text() == "line 1\nline 2\n"
    with sftp.open_read(str(remote / "job.log"), offset=7) as f:
        assert f.read() == b"line 2\n"
    assert sftp.exists(str(remote / "job.log"))
    sftp.remove(str(remote))
    assert not sftp.exists(str(remote))


def test_names_outside_the_folder_are_refused(sftp: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="inside"):
        remote_join("/farm/tmp/ctx", "../../etc/passwd")
    with pytest.raises(InvalidRequestError, match="relative"):
        remote_join("/farm/tmp/ctx", "/etc/passwd")
    (tmp_path / "f").write_text("x")
    for outside in ("/etc", str(tmp_path / "remote" / ".." / "escape")):
        with pytest.raises(InvalidRequestError, match="outside the storage root"):
            sftp.upload([str(tmp_path / "f")], outside)
    with pytest.raises(InvalidRequestError, match="outside"):
        sftp.remove("/")


def _transfer(server: Any, known_hosts: Path, **options: Any) -> SftpTransfer:
    return SftpTransfer(
        "127.0.0.1",
        port=server.port,
        user=server.user,
        key_file=str(server.client_key),
        known_hosts=str(known_hosts),
        use_agent=False,
        **options,
    )


def test_unknown_host_key_is_refused_unless_accepted(sshd: Any, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(TransferError, match="unknown host key") as info:
        _transfer(sshd, known).exists("/")
    assert "ssh-keyscan" in str(info.value) and "accept_new_host_key" in str(info.value)
    accepting = _transfer(sshd, known, accept_new_host_key=True)
    assert accepting.exists("/")
    assert f"[127.0.0.1]:{sshd.port}" in known.read_text()
    assert _transfer(sshd, known).exists("/")  # now known


def test_changed_host_key_is_refused_with_the_fix(sshd: Any, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    for accept in (False, True):  # even accept_new_host_key never accepts a changed key
        with pytest.raises(TransferError, match="CHANGED") as info:
            _transfer(sshd, known, accept_new_host_key=accept).exists("/")
        assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in str(info.value)


def test_wrong_credentials_are_an_authentication_error(sshd: Any, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    transfer = SftpTransfer(
        "127.0.0.1",
        port=sshd.port,
        user=sshd.user,
        key_file=str(stranger),
        known_hosts=str(sshd.known_hosts),
        use_agent=False,
    )
    with pytest.raises(AuthenticationError, match="authentication failed"):
        transfer.exists("/")


@pytest.mark.skipif(SSHD is None, reason="needs OpenSSH sshd (apt-get install openssh-server)")
def test_permission_denied_gets_its_own_error(sshd: Any, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    user = sshd.user
    if os.geteuid() == 0:  # root writes anywhere: log in as an ordinary user instead
        user = "fa-sftp-test"
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-M", "-s", "/bin/sh", user], check=True)
            subprocess.run(["usermod", "-p", "*", user], check=True)
        os.chmod(tmp_path, 0o755)
    locked.chmod(0o555)
    (tmp_path / "f").write_text("x")
    transfer = SftpTransfer(
        "127.0.0.1",
        port=sshd.port,
        user=user,
        key_file=str(sshd.client_key),
        known_hosts=str(sshd.known_hosts),
        use_agent=False,
    )
    with pytest.raises(TransferError, match="permission denied"):
        transfer.upload([str(tmp_path / "f")], str(locked / "sub"))
    transfer.close()


@pytest.mark.skipif(SSHD is None, reason="needs OpenSSH sshd to kill mid-upload")
def test_killed_server_mid_upload_then_resume_byte_identical(tmp_path: Path) -> None:
    (tmp_path / "sshd").mkdir()
    server = OpenSshServer(tmp_path / "sshd").start()
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(6):
            f.write(os.urandom(PIECE))  # 192 MiB: six pieces
    dest = tmp_path / "remote" / "ctx"
    transfer = _transfer(server, server.known_hosts, connections=2)
    killed = threading.Event()

    def progress(p: TransferProgress) -> None:
        if p.bytes_done > 2.5 * PIECE and not killed.is_set():
            killed.set()
            server.kill()

    with pytest.raises(TransferError):
        transfer.upload([str(big)], str(dest), progress)
    transfer.close()
    assert killed.is_set()
    assert not (dest / "big.bin").exists()  # nothing under the final name
    assert (dest / ".big.bin.fa-part").exists()

    server = OpenSshServer(tmp_path / "sshd", port=server.port).start()
    try:
        first: list[TransferProgress] = []
        resumed = _transfer(server, server.known_hosts)
        report = resumed.upload([str(big)], str(dest), first.append)
        resumed.close()
    finally:
        server.stop()
    assert report.files_sent == 1
    assert first[0].bytes_done >= PIECE  # pieces already sent were not sent again
    assert sha(dest / "big.bin") == sha(big)
    assert not (dest / ".big.bin.fa-part").exists()


def test_local_transfer_has_the_same_contract(tmp_path: Path) -> None:
    paths = make_tree(tmp_path / "src")
    transfer = LocalTransfer(root=str(tmp_path / "remote"))
    dest = str(tmp_path / "remote" / "ctx")
    assert transfer.upload(paths, dest).files_sent == 3
    assert transfer.upload(paths, dest).summary.startswith("nothing to transfer")
    with pytest.raises(InvalidRequestError):
        transfer.upload(paths, "/etc/ctx")


def test_target_storage_reaches_the_backend(sshd: Any, tmp_path: Path) -> None:
    """A local target whose render files travel over SFTP to a storage root."""
    from farm_adapters import get_plugin_manager

    config = parse_targets(
        {
            "targets": {
                "box": {
                    "backend": "local",
                    "root": str(tmp_path / "state"),
                    "storage": {
                        "kind": "sftp",
                        "host": "127.0.0.1",
                        "port": sshd.port,
                        "user": sshd.user,
                        "key_file": str(sshd.client_key),
                        "known_hosts": str(sshd.known_hosts),
                        "use_agent": False,
                        "root": str(tmp_path / "farm-tmp"),
                    },
                }
            }
        }
    )
    backend = config.get("box").create_backend(get_plugin_manager())
    scene = tmp_path / "scene.txt"
    scene.write_text("payload-over-sftp\n")
    job = submit(
        backend, {"commands": [["cat", "{folder}/scene.txt"]], "files": [str(scene)]}, journal=False
    )
    assert isinstance(job, Job)
    assert backend.last_transfer.files_sent == 1
    assert wait(backend, job.id, timeout=60, poll_interval=0.1).state is JobState.COMPLETED
    assert "payload-over-sftp" in backend.get_render_log(job.id).text
    assert (
        str(tmp_path / "farm-tmp") in job.render_context
        or (tmp_path / "farm-tmp" / str(job.render_context) / "scene.txt").exists()
    )
    backend.storage.close()


# -- FTPS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("pyftpdlib", reason="pyftpdlib (test-only) is not installed")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    server = FtpsServer(tmp_path_factory.mktemp("ftps")).start()
    yield server
    server.stop()


def _ftps(server: Any, **options: Any) -> Any:
    from farm_adapters.transfer.ftps import FtpTransfer

    settings = {
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "ca_file": str(server.cert),
        **options,
    }
    return FtpTransfer("127.0.0.1", **settings)


def test_ftps_upload_skip_download_remove(ftps_server: Any, tmp_path: Path) -> None:
    transfer = _ftps(ftps_server)
    paths = make_tree(tmp_path / "src")
    dest = "/ctx"  # the server's virtual path (below the user's home)
    report = transfer.upload(paths, dest)
    assert report.files_sent == 3
    assert sha(ftps_server.home / "ctx/textures/wood/albedo.png") == sha(
        tmp_path / "src/textures/wood/albedo.png"
    )
    assert transfer.upload(paths, dest).summary.startswith("nothing to transfer")
    (local,) = transfer.download([f"{dest}/scene.xml"], str(tmp_path / "back"))
    assert Path(local).read_text() == (tmp_path / "src/scene.xml").read_text()
    with transfer.open_read(f"{dest}/scene.xml", offset=9) as f:
        assert f.read().startswith(b"<scene/>")
    assert transfer.exists(dest)
    transfer.remove(dest)
    assert not transfer.exists(dest)
    transfer.close()


def test_ftps_refuses_bad_password_and_untrusted_certificates(ftps_server: Any) -> None:
    with pytest.raises(AuthenticationError, match="login refused"):
        _ftps(ftps_server, password="wrong").exists("/")
    with pytest.raises(TransferError, match="ca_file"):
        _ftps(ftps_server, ca_file=None).exists("/")


def test_the_asyncssh_fallback_server_serves_the_same_contract(tmp_path: Path) -> None:
    """Where no sshd is installed the storage tests run against asyncssh's server; this
    keeps that path working even on machines that have sshd."""
    pytest.importorskip("asyncssh", reason="asyncssh (test-only) is not installed")
    from servers import AsyncSshServer

    (tmp_path / "server").mkdir()
    server = AsyncSshServer(tmp_path / "server").start()
    try:
        transfer = _transfer(server, server.known_hosts, root=str(tmp_path / "remote"))
        paths = make_tree(tmp_path / "src")
        dest = str(tmp_path / "remote" / "ctx")
        assert transfer.upload(paths, dest).files_sent == 3
        assert transfer.upload(paths, dest).files_sent == 0
        many = tmp_path / "many"
        many.mkdir()
        for i in range(320):  # enough to try a tar stream (TAR_MIN_FILES)
            (many / f"t{i}.bin").write_bytes(os.urandom(1000))
        assert transfer.upload([str(many)], dest).files_sent == 320  # no exec: per-file SFTP
        assert transfer._tar_ok is False
        assert sha(Path(dest) / "many" / "t7.bin") == sha(many / "t7.bin")
        transfer.close()
    finally:
        server.stop()


def test_a_few_small_files_cost_one_connection_and_no_remote_command(
    sftp: Any, tmp_path: Path
) -> None:
    """The fixed cost of a small upload: no remote command (an exec session costs the
    server a tenth of a second), no second connection; files still land whole, with
    their modification times."""
    folder = tmp_path / "src" / "few"
    folder.mkdir(parents=True)
    for i in range(50):
        (folder / f"f{i:02d}.bin").write_bytes(os.urandom(16384))
    os.utime(folder / "f07.bin", (1_600_000_000, 1_600_000_000))
    dest = tmp_path / "remote" / "few"
    assert sftp.upload([str(folder)], str(dest)).files_sent == 50
    assert sorted(p.name for p in (dest / "few").iterdir()) == sorted(
        p.name for p in folder.iterdir()
    )  # no part file left
    assert sha(dest / "few" / "f07.bin") == sha(folder / "f07.bin")
    assert int((dest / "few" / "f07.bin").stat().st_mtime) == 1_600_000_000
    assert sftp._tar_ok is None  # never asked the server to run anything
    assert sftp._idle.qsize() == 1  # one connection, reused
    assert sftp.upload([str(folder)], str(dest)).files_sent == 0  # unchanged: skipped
