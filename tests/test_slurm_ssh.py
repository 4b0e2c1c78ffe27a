"""The slurm backend through a login node: the real OpenSSH sshd on 127.0.0.1 in front
of the real single-node Slurm cluster. The whole conformance suite runs through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import BackendUnavailableError, Job, JobState, get_plugin_manager, submit, wait
from farm_adapters.plugins.slurm import mapping
from farm_adapters.testing.conformance import *  # noqa: F403


@pytest.fixture
def ssh_settings(sshd: Any, slurm_settings: dict[str, Any]) -> dict[str, Any]:
    if getattr(sshd, "kind", "") != "openssh":
        pytest.skip("the SSH transport runs commands: it needs OpenSSH sshd (apt-get install "
                    "openssh-server, as .ci/run does when root)")  # fmt: skip
    return {
        **slurm_settings,
        "host": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "key_file": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
        "use_agent": False,
    }


@pytest.fixture
def farm_backend(ssh_settings: dict[str, Any]) -> Iterator[Any]:
    backend = get_plugin_manager().create_backend("slurm", ssh_settings, target="login")
    yield backend
    backend.close()


@pytest.fixture
def farm_timeout() -> float:
    return 60.0


def test_array_through_the_login_node(farm_backend: Any, slurm_cluster: Any) -> None:
    job = submit(
        farm_backend,
        {"commands": [["sh", "-c", "echo frame {frame} on $(hostname)"]], "frames": "1-6",
         "chunk_size": 2},
        journal=False,
    )  # fmt: skip
    assert isinstance(job, Job)
    done = wait(farm_backend, job.id, timeout=60, poll_interval=0.2)
    assert done.state is JobState.COMPLETED, done.message
    assert farm_backend.transport.where.startswith("login node")
    log, offset = "", 0
    while True:
        chunk = farm_backend.get_render_log(job.id, offset)
        log += chunk.text
        if chunk.next_offset == offset:
            break
        offset = chunk.next_offset
    for frame in (1, 3, 5):
        assert f"frame {frame} on" in log
    lines = slurm_cluster.jobcomp.read_text().splitlines()
    tasks = [f for f in map(mapping.parse_fields, lines) if f.get("ArrayJobId") == job.id]
    assert sorted(f["ArrayTaskId"] for f in tasks) == ["0", "1", "2"]


def test_unknown_login_node_key_is_refused(ssh_settings: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    backend = get_plugin_manager().create_backend(
        "slurm", {**ssh_settings, "known_hosts": str(empty)}
    )
    with pytest.raises(BackendUnavailableError, match="unknown host key") as info:
        backend.get_jobs()
    assert "ssh-keyscan" in str(info.value)
    assert empty.read_text() == ""  # nothing recorded without accept_new_host_key
    backend.close()


def test_failed_task_and_restart_through_the_login_node(
    ssh_settings: dict[str, Any], slurm_cluster: Any
) -> None:
    """Default root (the login user's home), a failing task named with its exit code,
    and a restart that reruns only that task."""
    settings = {k: v for k, v in ssh_settings.items() if k != "root"}
    backend = get_plugin_manager().create_backend("slurm", settings, target="login")
    job = submit(
        backend,
        {"commands": [["sh", "-c", "test {frame} -ne 2 || test -f {folder}/again || "
                       "{ touch {folder}/again; exit 4; }"]], "frames": "1-3"},
        journal=False,
    )  # fmt: skip
    assert isinstance(job, Job)
    done = wait(backend, job.id, timeout=60, poll_interval=0.2)
    assert done.state is JobState.FAILED
    assert "task 1 (frame 2)" in done.message and "exit code 4" in done.message
    assert backend.root == f"{Path.home()}/farm-adapters"  # sshd logs in as this user
    backend.restart_job(job.id)
    again = wait(backend, job.id, timeout=60, poll_interval=0.2)
    assert again.state is JobState.COMPLETED, again.message
    lines = slurm_cluster.jobcomp.read_text().splitlines()
    rerun = [
        f for f in map(mapping.parse_fields, lines) if f.get("ArrayJobId") == again.native_ids[1]
    ]
    assert [f["ArrayTaskId"] for f in rerun] == ["1"]
    backend.close()
    import contextlib
    import shutil

    shutil.rmtree(Path(backend.root) / str(job.render_context))
    with contextlib.suppress(OSError):  # other runs may use it at the same time
        Path(backend.root).rmdir()


def test_target_storage_carries_folders_files_and_logs(
    slurm_settings: dict[str, Any], sftp: Any, tmp_path: Path
) -> None:
    """With a target storage (SFTP on the login node), the temporary folder, the render
    files and the output files all go through it."""
    backend = get_plugin_manager().create_backend("slurm", slurm_settings, target="hpc")
    backend.storage, backend.storage_root = sftp, sftp.root
    scene = tmp_path / "scene.txt"
    scene.write_text("the scene\n")
    job = submit(
        backend,
        {"commands": [["sh", "-c", "cat {folder}/scene.txt; pwd"]], "files": [str(scene)]},
        journal=False,
    )
    assert isinstance(job, Job)
    done = wait(backend, job.id, timeout=60, poll_interval=0.2)
    assert done.state is JobState.COMPLETED, done.message
    folder = f"{sftp.root}/{job.render_context}"
    log = backend.get_render_log(job.id).text
    assert "the scene" in log and folder in log
    watched = backend.get_render_log_filename(job.id)
    assert watched is not None and "the scene" in Path(watched).read_text()
    backend.close()
