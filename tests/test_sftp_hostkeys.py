"""SFTP host keys against a real OpenSSH sshd with an RSA and an ed25519 host key, and
storage passwords kept secret until they are sent (FTPS and SFTP against real servers).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import SSHD, FtpsServer, OpenSshServer

from farm_adapters import AuthenticationError, TransferError, get_plugin_manager
from farm_adapters.config import parse_targets
from farm_adapters.transfer.sftp import SftpTransfer

pytest.importorskip("paramiko", reason="the ssh extra is not installed")
needs_sshd = pytest.mark.skipif(
    SSHD is None, reason="needs OpenSSH sshd (apt-get install openssh-server)"
)


@pytest.fixture(scope="module")
def rsa_known_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenSshServer]:
    """sshd offering an RSA and an ed25519 host key; its known_hosts lists only RSA,
    as for a host first met by an older client."""
    if SSHD is None:
        pytest.skip("needs OpenSSH sshd (apt-get install openssh-server)")
    folder = tmp_path_factory.mktemp("sshd-rsa")
    server = OpenSshServer(folder, host_key_types=("rsa", "ed25519")).start()
    yield server
    server.kill()


def _transfer(server: OpenSshServer, known: Path, **options: Any) -> SftpTransfer:
    return SftpTransfer(
        "127.0.0.1",
        port=server.port,
        user=server.user,
        key_file=str(server.client_key),
        known_hosts=str(known),
        use_agent=False,
        **options,
    )


def _known_only_rsa(server: OpenSshServer, tmp_path: Path) -> Path:
    known = tmp_path / "known_hosts"
    known.write_text(server.known_hosts.read_text())
    assert known.read_text().split()[1] == "ssh-rsa"
    return known


@needs_sshd
def test_a_host_known_by_its_rsa_key_is_accepted(
    rsa_known_sshd: OpenSshServer, tmp_path: Path
) -> None:
    known = _known_only_rsa(rsa_known_sshd, tmp_path)
    transfer = _transfer(rsa_known_sshd, known)
    try:
        assert transfer.exists("/")
        (tmp_path / "scene.xml").write_text("<scene/>\n")
        report = transfer.upload([str(tmp_path / "scene.xml")], str(tmp_path / "remote"))
        assert report.files_sent == 1
        assert (tmp_path / "remote" / "scene.xml").read_text() == "<scene/>\n"
    finally:
        transfer.close()


@needs_sshd
def test_a_server_with_only_an_rsa_host_key_is_accepted(tmp_path: Path) -> None:
    """The plain case (passes before the fix too): guards the rsa-sha2 signatures being
    offered for a known `ssh-rsa` key."""
    (tmp_path / "sshd").mkdir()
    server = OpenSshServer(tmp_path / "sshd", host_key_types=("rsa",)).start()
    try:
        known = _known_only_rsa(server, tmp_path)
        transfer = _transfer(server, known, accept_new_host_key=True)
        try:
            assert transfer.exists("/")
        finally:
            transfer.close()
        assert known.read_text() == server.known_hosts.read_text()
    finally:
        server.kill()


@needs_sshd
def test_accept_new_never_adds_a_second_key_type_for_a_known_host(
    rsa_known_sshd: OpenSshServer, tmp_path: Path
) -> None:
    known = _known_only_rsa(rsa_known_sshd, tmp_path)
    before = known.read_text()
    transfer = _transfer(rsa_known_sshd, known, accept_new_host_key=True)
    try:
        assert transfer.exists("/")
    finally:
        transfer.close()
    assert known.read_text() == before  # no ed25519 line slipped in


@needs_sshd
def test_a_host_known_only_by_a_key_type_it_no_longer_offers_is_refused(
    rsa_known_sshd: OpenSshServer, tmp_path: Path
) -> None:
    """known_hosts holds an ecdsa key; the server offers rsa and ed25519: that is a
    changed host key, and accept_new_host_key must not paper over it."""
    other = tmp_path / "ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(other)], check=True)
    kind, key = (tmp_path / "ecdsa.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{rsa_known_sshd.port} {kind} {key}\n")
    before = known.read_text()
    for accept in (False, True):
        with pytest.raises(TransferError, match="CHANGED") as info:
            _transfer(rsa_known_sshd, known, accept_new_host_key=accept).exists("/")
        assert "ssh-keygen -R" in str(info.value) and kind in str(info.value)
    assert known.read_text() == before


@needs_sshd
def test_accept_new_still_records_a_host_with_no_known_key(
    rsa_known_sshd: OpenSshServer, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(TransferError, match="unknown host key"):
        _transfer(rsa_known_sshd, known).exists("/")
    transfer = _transfer(rsa_known_sshd, known, accept_new_host_key=True)
    try:
        assert transfer.exists("/")
    finally:
        transfer.close()
    lines = known.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[127.0.0.1]:{rsa_known_sshd.port} ")
    again = _transfer(rsa_known_sshd, known)
    try:
        assert again.exists("/")
    finally:
        again.close()


# -- item 26: passwords stay SecretStr until they are sent --------------------------------

SECRET = "pa55-word-that-must-not-leak"


def _no_plain_secret(obj: object, secret: str, seen: set[int] | None = None) -> None:
    """Walk an object's attributes (and containers) and fail on the plain secret."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        assert secret not in obj
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _no_plain_secret(k, secret, seen)
            _no_plain_secret(v, secret, seen)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _no_plain_secret(v, secret, seen)
        return
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict) and type(obj).__module__.startswith("farm_adapters"):
        _no_plain_secret(attrs, secret, seen)


@pytest.fixture
def ftps_server(tmp_path: Path) -> Iterator[FtpsServer]:
    pytest.importorskip("pyftpdlib", reason="pyftpdlib (test-only) is not installed")
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make the test certificate")
    server = FtpsServer(tmp_path / "ftps").start()
    yield server
    server.stop()


def test_ftps_password_is_secret_until_login_and_still_works(
    ftps_server: FtpsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    monkeypatch.setenv("FTPS_PASSWORD", ftps_server.password)
    config = parse_targets(
        {
            "targets": {
                "shared": {
                    "backend": "local",
                    "root": str(tmp_path / "local"),
                    "storage": {
                        "kind": "ftps",
                        "host": "127.0.0.1",
                        "port": ftps_server.port,
                        "user": ftps_server.user,
                        "password": {"env": "FTPS_PASSWORD"},
                        "ca_file": str(ftps_server.cert),
                        "root": "/",
                    },
                }
            }
        }
    )
    backend = config.get("shared").create_backend(get_plugin_manager())
    try:
        storage = backend.storage
        assert isinstance(storage.password, SecretStr)
        _no_plain_secret(storage, ftps_server.password)
        assert ftps_server.password not in repr(vars(storage))
        (tmp_path / "scene.xml").write_text("<scene/>\n")
        report = storage.upload([str(tmp_path / "scene.xml")], "/ctx")
        assert report.files_sent == 1
        assert (ftps_server.home / "ctx" / "scene.xml").read_text() == "<scene/>\n"
    finally:
        backend.close()


@needs_sshd
def test_sftp_password_is_secret_until_sent(rsa_known_sshd: OpenSshServer, tmp_path: Path) -> None:
    from pydantic import SecretStr

    known = _known_only_rsa(rsa_known_sshd, tmp_path)
    transfer = SftpTransfer(
        "127.0.0.1",
        port=rsa_known_sshd.port,
        user=rsa_known_sshd.user,
        password=SECRET,
        known_hosts=str(known),
        use_agent=False,
    )
    assert isinstance(transfer.password, SecretStr)
    _no_plain_secret(transfer, SECRET)
    assert SECRET not in repr(vars(transfer))
    # The password really is sent (this sshd takes keys only, so it is refused), and
    # the refusal does not echo it.
    with pytest.raises(AuthenticationError, match="tried a password") as info:
        transfer.exists("/")
    assert SECRET not in str(info.value)
