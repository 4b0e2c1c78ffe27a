"""The slurm backend against a real single-node Slurm cluster (tests/slurm_cluster.py).

The mapping tables are checked row by row without a cluster; everything else submits
real job arrays and reads real squeue, jobcomp and scontrol answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_adapters import (
    InvalidRequestError,
    Job,
    JobRequest,
    JobState,
    get_plugin_manager,
    submit,
    wait,
)
from farm_adapters.plugins.slurm import mapping

# -- tables, without a cluster ---------------------------------------------------------

#: Every job state Slurm 22.05 reports (src/common/slurm_protocol_defs.c), and the one
#: JobState each must become.
EXPECTED = {
    "PENDING": JobState.QUEUED,
    "CONFIGURING": JobState.QUEUED,
    "REQUEUED": JobState.QUEUED,
    "REQUEUE_FED": JobState.QUEUED,
    "REQUEUE_HOLD": JobState.QUEUED,
    "RESV_DEL_HOLD": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "CANCELLED": JobState.STOPPED,
    "REVOKED": JobState.STOPPED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
}


@pytest.mark.parametrize(("native", "state"), sorted(EXPECTED.items()))
def test_state_table_row(native: str, state: JobState) -> None:
    assert mapping.map_state(native) is state
    assert mapping.STATE_TABLE[native] is state


def test_state_table_has_no_other_rows_and_never_guesses() -> None:
    assert set(mapping.STATE_TABLE) == set(EXPECTED)
    assert mapping.map_state("CANCELLED by 0") is JobState.STOPPED  # as scontrol prints it
    assert mapping.map_state("SOMETHING_NEW") is JobState.UNKNOWN


@pytest.mark.parametrize(
    ("priority", "nice"),
    [(0, 4000), (19, 4000), (20, 2000), (50, 0), (60, 0), (61, -2000), (100, -4000)],
)
def test_priority_goes_through_the_nice_table(priority: int, nice: int) -> None:
    assert mapping.nice_for(priority) == nice


def _options(**fields: Any) -> list[str]:
    return mapping.requirement_options(JobRequest(commands=[["true"]], **fields))


def test_requirements_become_sbatch_options() -> None:
    options = _options(
        requirements={
            "cpus": 2,
            "memory": "1GiB",
            "gpus": 1,
            "timeout": 3661,
            "pool": "gpu",
            "labels": ["avx2", "ssd"],
        },
        priority=10,
        max_retries=2,
    )
    assert options == [
        "--cpus-per-task=2",
        "--mem=1024M",
        "--gres=gpu:1",
        "--time=0-01:01:01",
        "--partition=gpu",
        "--constraint=avx2&ssd",
        "--nice=4000",
        "--requeue",
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"requirements": {"cpus": 1.5}}, "requirements.cpus"),
        ({"requirements": {"extra": {"bogus": 1}}}, "requirements.extra.bogus"),
        ({"requirements": {"labels": ["a|b"]}}, "requirements.labels"),
        ({"priority": 90}, "priority"),
    ],
)
def test_what_slurm_cannot_express_is_refused(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        _options(**fields)
    assert info.value.field == field


def test_array_script_keeps_argv_exact(tmp_path: Path) -> None:
    """The generated script, run by a real sh, passes every argument through untouched."""
    tricky = ["it's", "$HOME", "a b", "`id`", "*", '"q"', ";", "\\n"]
    request = JobRequest(
        commands=[
            [sys.executable, "-c", "import sys; print(repr(sys.argv[1:]))", *tricky],
            {"argv": ["sh", "-c", 'echo "$X" "$PWD"'], "env": {"X": "x y"}, "cwd": str(tmp_path)},
        ],
        frames="1-2",
    )
    script = mapping.array_script(
        [(t.index, t.commands) for t in request.tasks()], {"GLOBAL": "g $1"}
    )
    out = subprocess.run(
        ["sh", "-c", script + 'echo "$GLOBAL"'],
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert out[0] == repr(tricky)
    assert out[1] == f"x y {tmp_path}"


def test_array_script_retries_then_keeps_the_exit_code(tmp_path: Path) -> None:
    marker = tmp_path / "tries"
    script = mapping.array_script(
        [(0, JobRequest(commands=[["sh", "-c", f"echo x >> {marker}; exit 7"]]).commands)],
        {},
        max_retries=2,
    )
    run = subprocess.run(
        ["sh", "-c", script], env={**os.environ, "SLURM_ARRAY_TASK_ID": "0"}, capture_output=True
    )
    assert run.returncode == 7
    assert marker.read_text().count("x") == 3
    assert b"retry 2 of 2" in run.stderr


def test_jobcomp_lines_parse_with_arrays_and_reruns() -> None:
    lines = [
        "JobId=2 UserId=root(0) JobState=FAILED Partition=main ArrayJobId=1 ArrayTaskId=1 "
        "DerivedExitCode=0:0 ExitCode=3:0",
        "JobId=9 JobState=COMPLETED ArrayJobId=1 ArrayTaskId=1 ExitCode=0:0",
        "JobId=5 JobState=COMPLETED ExitCode=0:0",  # not an array: ignored
    ]
    records = mapping.parse_records(lines)
    assert list(records) == [("1", 1)]
    assert records[("1", 1)].state == "COMPLETED"
    failed = mapping.parse_records(lines[:1])[("1", 1)]
    assert mapping.exit_text(failed) == "exit code 3"


# -- a real cluster --------------------------------------------------------------------


@pytest.fixture
def slurm(slurm_settings: dict[str, Any]) -> Iterator[Any]:
    backend = get_plugin_manager().create_backend("slurm", slurm_settings, target="hpc")
    yield backend
    backend.close()


def _submit(backend: Any, **request: Any) -> Job:
    job = submit(backend, request, journal=False)
    assert isinstance(job, Job)
    return job


def _log(backend: Any, job_id: str) -> str:
    text, offset = "", 0
    while True:
        chunk = backend.get_render_log(job_id, offset)
        text += chunk.text
        if chunk.next_offset == offset:
            return text
        offset = chunk.next_offset


def _wait_for(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _jobcomp_tasks(cluster: Any, array: str) -> list[str]:
    """The array task ids the cluster finished for ``array`` (its jobcomp file)."""
    lines = cluster.jobcomp.read_text().splitlines() if cluster.jobcomp.exists() else []
    return [
        f["ArrayTaskId"] for f in map(mapping.parse_fields, lines) if f.get("ArrayJobId") == array
    ]


def test_cli_acceptance_one_array_of_three_tasks(slurm_cluster: Any, tmp_path: Path) -> None:
    """A targets file holding only the backend, SLURM_CONF exported: submit --wait ends
    COMPLETED, logs holds every chunk's line, and Slurm ran one array of three tasks."""
    targets = tmp_path / "targets.toml"
    targets.write_text('[targets.hpc]\nbackend = "slurm"\n')
    env = {
        **os.environ,
        "SLURM_CONF": str(slurm_cluster.conf),
        "FARM_ADAPTERS_CONFIG": str(targets),
    }
    cli = [sys.executable, "-m", "farm_adapters"]
    run = subprocess.run(
        [*cli, "submit", "-t", "hpc", "--frames", "1-6", "--chunk", "2", "--wait", "--json",
         "--", "sh", "-c", "echo frame {frame}"],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert '"completed"' in run.stdout
    import json

    job_id = json.loads(run.stdout)["id"]
    logs = subprocess.run(
        [*cli, "logs", job_id], env=env, capture_output=True, text=True, timeout=60
    )
    assert logs.returncode == 0, logs.stderr
    for frame in (1, 3, 5):
        assert f"frame {frame}" in logs.stdout
    assert sorted(_jobcomp_tasks(slurm_cluster, job_id)) == ["0", "1", "2"]


def test_failed_task_named_with_exit_code_and_restart_reruns_only_it(
    slurm: Any, slurm_cluster: Any
) -> None:
    job = _submit(
        slurm,
        commands=[
            ["sh", "-c", "echo frame {frame}; test {frame} -ne 2 || test -f {folder}/again "
             "|| { touch {folder}/again; exit 3; }"]
        ],
        frames="1-3",
    )  # fmt: skip
    done = wait(slurm, job.id, timeout=60, poll_interval=0.2)
    assert done.state is JobState.FAILED
    assert done.task_counts == {JobState.COMPLETED: 2, JobState.FAILED: 1}
    assert "task 1 (frame 2)" in done.message and "exit code 3" in done.message

    slurm.restart_job(job.id)
    again = wait(slurm, job.id, timeout=60, poll_interval=0.2)
    assert again.state is JobState.COMPLETED, again.message
    assert len(again.native_ids) == 2
    assert _jobcomp_tasks(slurm_cluster, again.native_ids[1]) == ["1"]  # only the failed one
    log = _log(slurm, job.id)
    assert log.index("attempt 1") < log.index("attempt 2")
    lines = log.splitlines()
    assert lines.count("frame 2") == 2 and lines.count("frame 1") == 1


def test_stop_leaves_nothing_running_or_pending(slurm: Any, slurm_cluster: Any) -> None:
    # Each task takes every CPU of the node: one runs, the others wait.
    job = _submit(
        slurm,
        commands=[["sh", "-c", "echo started {frame}; sleep 300"]],
        frames="1-3",
        requirements={"cpus": slurm_cluster.cpus},
    )
    _wait_for(lambda: slurm.get_job(job.id).task_counts.get(JobState.RUNNING) == 1, "a task")
    slurm.stop_job(job.id)
    assert slurm.get_job_state(job.id) in {JobState.STOPPING, JobState.STOPPED}
    done = wait(slurm, job.id, timeout=60, poll_interval=0.2)
    assert done.state is JobState.STOPPED
    assert done.task_counts == {JobState.STOPPED: 3}
    left = slurm_cluster.run("squeue", "-h", "-r", "-j", job.id)
    assert left.strip() == ""

    slurm.restart_job(job.id)  # all three were stopped: all three run again
    _wait_for(lambda: slurm.get_job(job.id).task_counts.get(JobState.RUNNING) == 1, "rerun")
    slurm.stop_job(job.id)
    assert wait(slurm, job.id, timeout=60, poll_interval=0.2).state is JobState.STOPPED


def test_requirements_reach_slurm(slurm: Any, slurm_cluster: Any) -> None:
    job = _submit(
        slurm,
        commands=[["true"]],
        requirements={"cpus": 1, "memory": "100MiB", "timeout": 120, "pool": "other"},
        priority=10,
    )
    wait(slurm, job.id, timeout=60, poll_interval=0.2)
    shown = mapping.parse_fields(slurm_cluster.run("scontrol", "-o", "show", "job", job.id))
    assert shown["Partition"] == "other"
    assert shown["Nice"] == "4000"
    assert shown["TimeLimit"] == "00:02:00"
    assert shown["MinMemoryNode"] == "100M"


def test_gpus_are_refused_on_a_cluster_without_gpu_gres(slurm: Any) -> None:
    before = {j.id for j in slurm.get_jobs()}
    with pytest.raises(InvalidRequestError) as info:
        submit(slurm, {"commands": [["true"]], "requirements": {"gpus": 1}}, journal=False)
    assert info.value.field == "requirements.gpus"
    assert "no GPU gres" in str(info.value)
    assert {j.id for j in slurm.get_jobs()} == before


def test_retries_rerun_a_failed_task(slurm: Any, tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"
    job = _submit(
        slurm,
        commands=[["sh", "-c", f"test -f {marker} || {{ touch {marker}; exit 5; }}; echo ok"]],
        max_retries=1,
    )
    done = wait(slurm, job.id, timeout=60, poll_interval=0.2)
    assert done.state is JobState.COMPLETED, done.message
    log = _log(slurm, job.id)
    assert "exit code 5; retry 1 of 1" in log and "ok" in log


def test_environment_and_working_folder(slurm: Any) -> None:
    job = _submit(
        slurm, commands=[["sh", "-c", 'echo "$SHOT" "$PWD"']], environment={"SHOT": "sq 010"}
    )
    wait(slurm, job.id, timeout=60, poll_interval=0.2)
    folder = slurm.jobs.load(job.id)["log_dir"].rsplit("/", 1)[0]
    assert f"sq 010 {folder}" in _log(slurm, job.id)


def test_after_waits_for_the_jobs_named(slurm: Any, slurm_cluster: Any, tmp_path: Path) -> None:
    first = _submit(slurm, commands=[["sh", "-c", f"sleep 2; date +%s%N > {tmp_path}/a"]])
    second = _submit(slurm, commands=[["sh", "-c", f"date +%s%N > {tmp_path}/b"]], after=[first.id])
    assert wait(slurm, second.id, timeout=60, poll_interval=0.2).state is JobState.COMPLETED
    assert int((tmp_path / "b").read_text()) > int((tmp_path / "a").read_text())

    failing = _submit(slurm, commands=[["false"]])
    blocked = _submit(slurm, commands=[["true"]], after=[failing.id])
    ended = _submit(
        slurm, commands=[["true"]], after=[{"job_id": failing.id, "condition": "ended"}]
    )
    assert wait(slurm, ended.id, timeout=60, poll_interval=0.2).state is JobState.COMPLETED
    assert wait(slurm, blocked.id, timeout=60, poll_interval=0.2).state is JobState.STOPPED


def test_after_names_an_unknown_job(slurm: Any) -> None:
    with pytest.raises(InvalidRequestError) as info:
        submit(slurm, {"commands": [["true"]], "after": ["424242"]}, journal=False)
    assert info.value.field == "after"


def test_backends_without_dependencies_refuse_after(ovfarm_settings: dict[str, Any]) -> None:
    backend = get_plugin_manager().create_backend("ovfarm", ovfarm_settings)
    before = {j.id for j in backend.get_jobs()}
    with pytest.raises(InvalidRequestError) as info:
        submit(backend, {"commands": [["true"]], "after": ["x"]}, journal=False)
    assert info.value.field == "after"
    assert "ovfarm" in str(info.value)
    assert {j.id for j in backend.get_jobs()} == before
    backend.close()


def test_polling_many_jobs_costs_one_squeue(slurm: Any) -> None:
    ids = {_submit(slurm, commands=[["true"]]).id for _ in range(20)}
    slurm.transport.calls.clear()
    jobs = slurm.get_jobs()
    assert ids <= {j.id for j in jobs}
    assert slurm.transport.calls == {"squeue": 1}


def test_unknown_ids_and_unreachable_controller(
    slurm_settings: dict[str, Any], tmp_path: Path
) -> None:
    from farm_adapters import BackendUnavailableError, JobNotFoundError, SubmitError

    conf = Path(slurm_settings["slurm_conf"]).read_text()
    broken = tmp_path / "broken.conf"
    lines = [
        f"SlurmctldPort={_free_port()}" if line.startswith("SlurmctldPort=") else line
        for line in conf.splitlines()
    ]
    broken.write_text("\n".join([*lines, "MessageTimeout=2", ""]))
    backend = get_plugin_manager().create_backend(
        "slurm", {**slurm_settings, "slurm_conf": str(broken)}
    )
    with pytest.raises(JobNotFoundError):
        backend.get_job("12345")
    with pytest.raises(SubmitError, match="slurmctld") as info:
        submit(backend, {"commands": [["true"]]}, journal=False)
    assert info.value.transient
    with pytest.raises(BackendUnavailableError, match="slurmctld"):
        backend.get_jobs()
    results = backend.check()
    assert not all(r.ok for r in results)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_cornell_demo_renders_through_a_slurm_target(slurm_cluster: Any, tmp_path: Path) -> None:
    pytest.importorskip("mitsuba", reason="the demo extra is not installed")
    targets = tmp_path / "targets.toml"
    targets.write_text(
        '[targets.hpc]\nbackend = "slurm"\n'
        f'root = "{tmp_path / "shared"}"\nstate_dir = "{tmp_path / "state"}"\n'
    )
    env = {
        **os.environ,
        "SLURM_CONF": str(slurm_cluster.conf),
        "FARM_ADAPTERS_CONFIG": str(targets),
    }
    demo = Path(__file__).resolve().parent.parent / "examples" / "cornell" / "demo.py"
    run = subprocess.run(
        [sys.executable, str(demo), "--target", "hpc", "--frames", "2", "--size", "32",
         "--spp", "2", "--out", str(tmp_path / "out"), "--wait"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "on target 'hpc'" in run.stdout
    for name in ("frames/frame_0001.png", "frames/frame_0002.png", "contact_sheet.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_docs_targets_build_slurm_backends() -> None:
    import re

    from farm_adapters._toml import tomllib
    from farm_adapters.config import parse_targets

    page = (Path(__file__).resolve().parent.parent / "docs" / "slurm.md").read_text()
    examples = re.findall(r"```toml\n(.*?)```", page, flags=re.S)
    assert len(examples) == 2
    for text in examples:
        targets = [t for t in parse_targets(tomllib.loads(text)) if t.name == "hpc"]
        assert len(targets) == 1
        for target in targets:
            backend = target.create_backend(get_plugin_manager())  # no connection yet
            assert backend.name == "slurm"
            backend.close()


def test_a_rotated_jobcomp_file_is_read_again(
    slurm_cluster: Any, slurm_settings: dict[str, Any], tmp_path: Path
) -> None:
    jobcomp = tmp_path / "jobcomp.txt"
    jobcomp.write_text("")
    backend = get_plugin_manager().create_backend(
        "slurm", {**slurm_settings, "jobcomp": str(jobcomp)}
    )
    job = _submit(backend, commands=[["true"]])
    _wait_for(lambda: _jobcomp_tasks(slurm_cluster, job.id) == ["0"], "the task to end")
    real = slurm_cluster.jobcomp.read_text()
    jobcomp.write_text("# padding\n" * 100 + real)
    assert backend.get_job(job.id).state is JobState.COMPLETED
    line = next(x for x in real.splitlines() if f"ArrayJobId={job.id} " in x)
    failed = line.replace("JobState=COMPLETED", "JobState=FAILED").replace(
        "ExitCode=0:0", "ExitCode=9:0"
    )
    jobcomp.write_text(failed + "\n")  # shorter than what was read: a new file
    done = backend.get_job(job.id)
    assert done.state is JobState.FAILED and "exit code 9" in done.message
    backend.close()


def test_a_missing_slurm_conf_is_a_configuration_error(tmp_path: Path) -> None:
    from farm_adapters import ConfigurationError

    backend = get_plugin_manager().create_backend(
        "slurm", {"slurm_conf": str(tmp_path / "nope.conf"), "state_dir": str(tmp_path)}
    )
    with pytest.raises(ConfigurationError, match="slurm_conf"):
        submit(backend, {"commands": [["true"]]}, journal=False)
    with pytest.raises(ConfigurationError, match="SLURM_CONF"):
        backend.get_jobs()
    assert not all(r.ok for r in backend.check())


def test_one_backend_polled_from_threads_while_submitting(slurm: Any) -> None:
    """A DCC polls from its UI thread while a worker submits: no error, no lost job."""
    import threading

    errors: list[BaseException] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                for job in slurm.get_jobs():
                    slurm.get_job(job.id)
            except BaseException as exc:  # collected and re-raised below
                errors.append(exc)
                return

    pollers = [threading.Thread(target=poll) for _ in range(3)]
    for t in pollers:
        t.start()
    try:
        ids = {_submit(slurm, commands=[["true"]], frames="1-2").id for _ in range(5)}
    finally:
        stop.set()
        for t in pollers:
            t.join(60)
    assert not errors, errors
    for job_id in ids:
        assert wait(slurm, job_id, timeout=60, poll_interval=0.2).state is JobState.COMPLETED
