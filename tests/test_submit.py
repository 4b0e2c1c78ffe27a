"""submit(), wait() and follow_log(): the orchestration every caller shares."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import (
    DryRun,
    InvalidRequestError,
    Job,
    JobState,
    TransferError,
    TransferProgress,
    WaitTimeoutError,
    follow_log,
    submit,
    wait,
)
from farm_adapters.journal import Journal
from farm_adapters.transfer.local import copy_into


def test_files_are_copied_into_the_job_folder_with_progress(
    local_backend: Any, tmp_path: Path
) -> None:
    scene = tmp_path / "scene.xml"
    scene.write_bytes(b"<scene/>" * 1000)
    textures = tmp_path / "textures"
    (textures / "wood").mkdir(parents=True)
    (textures / "wood" / "albedo.png").write_bytes(b"png" * 10)
    seen: list[TransferProgress] = []
    job = submit(
        local_backend,
        {
            "commands": [["sh", "-c", "cat {folder}/scene.xml | wc -c; ls {folder}/textures/wood"]],
            "files": [str(scene), str(textures)],
        },
        progress=seen.append,
        journal=False,
    )
    assert isinstance(job, Job)
    done = wait(local_backend, job.id, timeout=60, poll_interval=0.1)
    assert done.state is JobState.COMPLETED
    log = local_backend.get_render_log(job.id).text
    assert "8000\n" in log and "albedo.png\n" in log
    assert seen[-1].files_done == seen[-1].files_total == 2
    assert seen[-1].bytes_done == seen[-1].bytes_total == 8030


def test_environment_layers(local_backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        type(local_backend),
        "get_environment_for_job",
        lambda self, request: {"RENDERER_ROOT": "/opt/r", "OVERRIDE": "backend"},
    )
    result = submit(
        local_backend,
        {"commands": [["true"]], "environment": {"OVERRIDE": "request"}, "render_context": "ctx-1"},
        dry_run=True,
    )
    assert isinstance(result, DryRun)
    env = result.request.environment
    assert env["RENDERER_ROOT"] == "/opt/r" and env["OVERRIDE"] == "request"
    assert env["FARM_ADAPTERS_RENDER_CONTEXT"] == "ctx-1"


def test_dry_run_sends_nothing(local_backend: Any) -> None:
    result = submit(
        local_backend, {"commands": [["render", "{frame}"]], "frames": "1-3"}, dry_run=True
    )
    assert isinstance(result, DryRun)
    assert [p["commands"][0]["argv"] for p in result.payloads] == [
        ["render", "1"],
        ["render", "2"],
        ["render", "3"],
    ]
    assert local_backend.get_jobs() == []
    assert not local_backend.folders.exists()


def test_missing_local_file_is_an_invalid_request(local_backend: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        submit(local_backend, {"commands": [["true"]], "files": ["/no/such/scene.xml"]})
    assert info.value.field == "files.0"
    assert local_backend.get_jobs() == []


def test_submissions_are_journaled(local_backend: Any) -> None:
    job = submit(local_backend, {"commands": [["true"]], "name": "journaled"})
    assert isinstance(job, Job)
    entry = Journal().get(job.id)
    assert entry is not None and entry.target == "local" and entry.name == "journaled"
    assert Journal().find_by_context(job.render_context or "") == entry


def test_wait_times_out_and_the_job_goes_on(local_backend: Any) -> None:
    job = submit(local_backend, {"commands": [["sleep", "300"]]}, journal=False)
    # However slow the machine, the job is running before the short wait starts.
    deadline = time.monotonic() + 60
    while local_backend.get_job_state(job.id) is not JobState.RUNNING:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    with pytest.raises(WaitTimeoutError, match="still running"):
        wait(local_backend, job.id, timeout=0.3, poll_interval=0.05)
    assert local_backend.get_job_state(job.id) is JobState.RUNNING
    local_backend.stop_job(job.id)
    assert wait(local_backend, job.id, timeout=60).state is JobState.STOPPED


def test_wait_announces_state_changes_through_the_hook(local_backend: Any) -> None:
    from farm_adapters import get_plugin_manager, hookimpl

    seen: list[tuple[JobState | None, JobState]] = []

    class Listener:
        @hookimpl
        def farm_adapters_job_state_changed(self, job: Job, previous: JobState | None) -> None:
            seen.append((previous, job.state))

    manager = get_plugin_manager(plugins=[Listener()])
    job = submit(local_backend, {"commands": [["sh", "-c", "sleep 0.5"]]}, journal=False)
    wait(local_backend, job.id, timeout=60, poll_interval=0.05, manager=manager)
    assert seen[0][0] is None
    assert seen[-1][1] is JobState.COMPLETED
    assert all(a != b for a, b in seen)


def test_follow_log_streams_until_the_end(local_backend: Any) -> None:
    job = submit(
        local_backend, {"commands": [["sh", "-c", "echo a; sleep 0.3; echo b"]]}, journal=False
    )
    text = "".join(follow_log(local_backend, job.id, poll_interval=0.05, timeout=60))
    assert text.index("a\n") < text.index("b\n")
    assert text == local_backend.get_render_log(job.id).text


def test_copy_never_leaves_a_partial_file_under_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    dest = tmp_path / "dest"
    calls = {"n": 0}

    def broken(progress: TransferProgress) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")

    with pytest.raises(TransferError, match="No space left"):
        copy_into([str(src)], str(dest), broken)
    assert not (dest / "big.bin").exists()
    assert list(dest.iterdir()) == []  # the temporary file is gone too
    copy_into([str(src)], str(dest))
    assert (dest / "big.bin").read_bytes() == src.read_bytes()


def test_copy_refuses_two_files_with_one_name(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "scene.xml").write_text("1")
    (tmp_path / "b" / "scene.xml").write_text("2")
    with pytest.raises(InvalidRequestError, match="same name"):
        copy_into(
            [str(tmp_path / "a" / "scene.xml"), str(tmp_path / "b" / "scene.xml")],
            str(tmp_path / "dest"),
        )
