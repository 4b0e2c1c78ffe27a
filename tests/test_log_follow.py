"""Following a growing remote log costs O(size) in all, not O(size^2) (issue 17,
item 5). The Omniverse Farm's log endpoint returns the whole log on every read (its
memory store ignores ``latest_only``; the answer is JSON, so no ranged read), so the
mirror reads a large growing log less often."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from farm_adapters import JobState, get_plugin_manager, logfile, submit, wait

pytest.importorskip("fastapi", reason="the emulators extra is not installed")
httpx = pytest.importorskip("httpx")

TIMEOUT = 60
STEP = 256 * 1024  # chars the log grows by between two reads
STEPS = 80  # 20 MiB in all


@pytest.fixture
def backend(ovfarm_settings: dict[str, Any]) -> Iterator[Any]:
    b = get_plugin_manager().create_backend("ovfarm", ovfarm_settings, target="studio-farm")
    yield b
    b.close()


def test_following_a_20_mb_growing_log_reads_it_a_few_times_not_once_per_poll(
    backend: Any, ovfarm_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    farm = ovfarm_emulator.farm
    job = submit(backend, {"commands": [["sleep", "120"]]}, journal=False)
    deadline = time.monotonic() + TIMEOUT
    while backend.get_job_state(job.id) is not JobState.RUNNING:
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    with farm.lock:
        (task_id,) = [
            t["task_id"]
            for t in farm.tasks.values()
            if (t["metadata"].get("farm_adapters") or {}).get("job") == job.id
        ]
    # The follower polls every 0.1 s (a clock of its own, so how fast this machine is
    # does not matter) while the log grows by 256 KiB per poll: 2.5 MB/s.
    clock = [time.time()]
    monkeypatch.setattr(logfile, "_now", lambda: clock[0])
    control = httpx.Client(base_url=ovfarm_emulator.url)
    control.delete("/_emulator/stats").raise_for_status()
    received: list[str] = []
    offset = 0

    def poll() -> bool:
        nonlocal offset
        clock[0] += 0.1
        chunk = backend.get_render_log(job.id, offset)
        received.append(chunk.text)
        offset = chunk.next_offset
        return chunk.complete

    for step in range(STEPS):
        line = f"step {step:05d} " + "x" * 64 + "\n"
        farm.append_log(task_id, line * (STEP // len(line)))
        poll()
    backend.stop_job(job.id)
    assert wait(backend, job.id, timeout=TIMEOUT, poll_interval=0.1).state is JobState.STOPPED
    while not poll():
        pass
    with farm.lock:
        size = len(farm.logs[task_id]["logs"])
    served = control.get("/_emulator/stats").json()["log_chars_served"]
    text = "".join(received)
    for step in range(STEPS):  # every line arrived, once
        assert text.count(f"step {step:05d} ") == STEP // (len(f"step {step:05d} ") + 65)
    # Read whole on each of ~80 polls would be ~40 times the final size.
    assert served <= 4 * size, f"{served / size:.1f} times the log's size was read"


def test_the_mirror_reads_a_growing_log_less_often_as_it_grows(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The mechanism every backend that reads logs whole shares (runai's cluster API
    # download too): the text a source returned, summed over a follow.
    clock = [1000.0]
    monkeypatch.setattr(logfile, "_now", lambda: clock[0])
    remote = {"text": "", "served": 0, "final": False}

    def fetch() -> str:
        remote["served"] += len(remote["text"])
        return str(remote["text"])

    mirror = logfile.LogMirror(tmp_path, "job")

    def sync() -> bool:
        source = logfile.LogSource("w", "", fetch, final=bool(remote["final"]))
        return mirror.sync([source])

    for step in range(STEPS):
        remote["text"] += f"{step:05d}".ljust(STEP - 1, ".") + "\n"
        clock[0] += 0.1
        sync()
    remote["final"] = True
    assert sync()
    size = len(remote["text"])
    assert mirror.path.read_text() == remote["text"]
    assert remote["served"] <= 4 * size
