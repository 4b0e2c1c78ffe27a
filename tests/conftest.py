"""Shared fixtures: every test gets its own data directory and no user config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keep tests away from the user's journal, state and targets file."""
    data = tmp_path / "data"
    monkeypatch.setenv("FARM_ADAPTERS_DATA_DIR", str(data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    for var in (
        "FARM_ADAPTERS_CONFIG",
        "FARM_ADAPTERS_RESOURCES",
        "FARM_ADAPTERS_BLOCK",
        "FARM_ADAPTERS_DISABLE_AUTOLOAD",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield data


@pytest.fixture
def local_backend(tmp_path: Path) -> Iterator[object]:
    """A local backend whose state, logs and folders live in the test's tmp dir."""
    from farm_adapters import get_plugin_manager

    backend = get_plugin_manager().create_backend(
        "local", {"root": str(tmp_path / "local"), "slots": 2, "grace_period": 2}
    )
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def ovfarm_emulator() -> Iterator[object]:
    """A real Omniverse Farm emulator on 127.0.0.1 with two agents, fast timings."""
    pytest.importorskip("fastapi", reason="the emulators extra is not installed")
    from farm_adapters.testing.emulators._server import BackgroundServer
    from farm_adapters.testing.emulators.ovfarm import create_app

    app = create_app(
        api_key="test-key",
        agents=2,
        cancel_delay=3.0,
        propagation_delay=0.3,
        log_interval=0.1,
        agent_poll=0.05,
    )
    with BackgroundServer(app) as server:
        server.farm = app.state.farm  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def ovfarm_settings(ovfarm_emulator: object, tmp_path: Path) -> dict[str, object]:
    return {
        "url": ovfarm_emulator.url,
        "api_key": "test-key",  # type: ignore[attr-defined]
        "log_dir": str(tmp_path / "ovfarm-logs"),
        "folders": str(tmp_path / "ovfarm-folders"),
        "retries": 3,
    }


@pytest.fixture(scope="session")
def runai_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real Run:ai control-plane emulator on 127.0.0.1, fast phase changes."""
    pytest.importorskip("fastapi", reason="the emulators extra is not installed")
    from farm_adapters.testing.emulators._server import BackgroundServer
    from farm_adapters.testing.emulators.runai import create_app

    app = create_app(
        client_id="render-bot",
        client_secret="s3cret",
        projects=["team-a"],
        phase_delay=0.02,
        nfs_root=tmp_path_factory.mktemp("nfs"),
    )
    with BackgroundServer(app) as server:
        server.state = app.state.runai  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def runai_settings(runai_emulator: object, tmp_path: Path) -> dict[str, object]:
    shared = tmp_path / "shared"
    shared.mkdir()
    return {
        "url": runai_emulator.url,  # type: ignore[attr-defined]
        "client_id": "render-bot",
        "client_secret": "s3cret",
        "project": "team-a",
        "image": "registry.example/renderer:1.0",
        "volume": {
            "kind": "hostPath",
            "mount_path": "/mnt/farm",
            "path": str(shared),
            "local_path": str(shared),
        },
        "log_dir": str(tmp_path / "runai-logs"),
        "retries": 3,
    }


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """OpenSSH sshd on 127.0.0.1 (asyncssh's server where sshd is not installed)."""
    from servers import ssh_server

    server = ssh_server(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture
def sftp(sshd: object, tmp_path: Path) -> Iterator[object]:
    from farm_adapters.transfer.sftp import SftpTransfer

    transfer = SftpTransfer(
        "127.0.0.1",
        port=sshd.port,
        user=sshd.user,  # type: ignore[attr-defined]
        key_file=str(sshd.client_key),
        known_hosts=str(sshd.known_hosts),  # type: ignore[attr-defined]
        use_agent=False,
        root=str(tmp_path / "remote"),
    )
    yield transfer
    transfer.close()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real single-node Slurm cluster (munged, slurmctld, slurmd) in a private folder,
    stopped by pid at the end; skipped with the fix where Slurm or root is missing."""
    from slurm_cluster import SlurmCluster, unavailable_reason

    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm_settings(slurm_cluster: object, tmp_path: Path) -> dict[str, object]:
    return {
        "slurm_conf": str(slurm_cluster.conf),  # type: ignore[attr-defined]
        "root": str(tmp_path / "slurm-shared"),
        "state_dir": str(tmp_path / "slurm-state"),
    }
