"""The conformance suite tells a TD the truth: it fails a toy backend with the fix named,
passes the documented example, runs only itself, and fails a stuck check in its step.

Each run is a real ``pytest --farm-backend/--farm-target`` process, as a TD starts it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from farm_adapters.testing import conformance

REPO = Path(__file__).resolve().parent.parent
CHECKS = sorted(n for n in conformance.__all__ if n.startswith("test_"))
SUITE_ID = "farm_adapters/testing/conformance.py::"


def resources(tmp_path: Path, *plugins: Path | tuple[str, str]) -> Path:
    folder = tmp_path / "resources" / "Plugins"
    folder.mkdir(parents=True, exist_ok=True)
    for plugin in plugins:
        if isinstance(plugin, Path):
            shutil.copy(plugin, folder / plugin.name)
        else:
            (folder / plugin[0]).write_text(plugin[1])
    return folder.parent


def targets(tmp_path: Path, backend: str, storage: bool) -> Path:
    text = f'[targets.under-test]\nbackend = "{backend}"\n'
    text += f'root = "{tmp_path / "farm"}"\n'
    if storage:
        text += f'[targets.under-test.storage]\nkind = "local"\nroot = "{tmp_path / "storage"}"\n'
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


def run_suite(
    tmp_path: Path, res: Path, args: list[str], config: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, str | None]]:
    """Run the suite; return the process and, per check, its failure message (None if
    it passed)."""
    report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}.xml"
    env = {**os.environ, "FARM_ADAPTERS_RESOURCES": str(res)}
    if config is not None:
        env["FARM_ADAPTERS_CONFIG"] = str(config)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, f"--junitxml={report}", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    outcome: dict[str, str | None] = {}
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            failure = case.find("failure")
            if failure is None:
                failure = case.find("error")
            outcome[case.get("name", "")] = (
                None if failure is None else f"{failure.get('message')}\n{failure.text}"
            )
    return result, outcome


def kill_leftovers(tmp_path: Path) -> None:
    """The toy's stop ends `sh` but not its `sleep`: end what still runs in tmp_path."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if int(proc.name) != os.getpid() and str(tmp_path) in os.readlink(proc / "cwd"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def test_suite_fails_the_old_example_and_names_the_fix(tmp_path: Path) -> None:
    res = resources(tmp_path, REPO / "tests" / "data" / "toy_farm.py")
    config = targets(tmp_path, "toy_farm", storage=True)
    try:
        result, outcome = run_suite(
            tmp_path, res, ["--farm-target", "under-test", "--farm-timeout", "15"], config
        )
    finally:
        kill_leftovers(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    failed = {name: message for name, message in outcome.items() if message}
    expected = {
        # files: the target's storage is ignored
        "test_files_folder_and_copies_reach_the_task": "make_temporary_folder",
        # persistence: ids and jobs live in one instance's memory and threads
        "test_persistence_ids_are_unique_across_instances": "ids must be unique",
        "test_persistence_second_instance_and_process_drive_the_job": "not in the instance's",
        "test_persistence_job_outlives_the_submitting_process": "a process that has exited",
        # honesty: accepted and ignored
        "test_honesty_retries_rerun_or_are_refused": "InvalidRequestError(field='max_retries')",
        "test_honesty_timeout_stops_the_task_or_is_refused": "requirements.timeout",
        "test_honesty_unmet_requirements_are_refused_or_mapped": "requirements.gpus",
        # states: restart of a completed job runs nothing
        "test_states_restart_of_completed_job_runs_every_task_again": "run every task again",
    }
    for check, fix in expected.items():
        assert check in failed, f"{check} passed the toy backend:\n{result.stdout[-3000:]}"
        assert fix in (failed[check] or ""), f"{check}: {failed[check]}"


def test_suite_names_the_fix_for_a_folder_the_toy_cannot_copy(tmp_path: Path) -> None:
    res = resources(tmp_path, REPO / "tests" / "data" / "toy_farm.py")
    settings = f'{{"root": "{tmp_path / "farm"}"}}'
    result, outcome = run_suite(
        tmp_path,
        res,
        ["--farm-backend", "toy_farm", "--farm-settings", settings, "-k", "test_files_"],
    )
    message = outcome["test_files_folder_and_copies_reach_the_task"] or ""
    assert "IsADirectoryError" in message and "self.copy_files" in message, result.stdout[-3000:]


def test_suite_passes_the_example_with_a_target_storage(tmp_path: Path) -> None:
    res = REPO / "examples" / "resources"
    config = targets(tmp_path, "studio_farm", storage=True)
    result, outcome = run_suite(
        tmp_path, res, ["--farm-target", "under-test", "--farm-timeout", "60"], config
    )
    failed = {n: m for n, m in outcome.items() if m}
    assert result.returncode == 0 and not failed, f"{failed}\n{result.stdout[-3000:]}"
    assert sorted(outcome) == CHECKS
    assert (tmp_path / "storage").is_dir()  # the temporary folders went to the storage


def test_farm_backend_collects_only_the_suite_wherever_it_starts(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    (project / "tests" / "test_project.py").write_text("def test_project():\n    assert False\n")
    (project / "pyproject.toml").write_text('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    for cwd in (REPO, project, tmp_path):
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "--farm-backend", "local"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        ids = [line for line in result.stdout.splitlines() if "::" in line]
        assert sorted(ids) == sorted(SUITE_ID + c for c in CHECKS), (cwd, result.stdout[-2000:])


STUCK = '''
import time
from farm_adapters import FarmPlugin, Job, JobNotFoundError, JobState, hookimpl


class StuckFarm(FarmPlugin):
    """Jobs never leave the queue; looking up an unknown id hangs."""

    name = "stuck_farm"

    def create_temporary_folder(self, render_context):
        return "/tmp"

    def copy_render_files(self, paths, folder, progress=None):
        return []

    def submit_job(self, request):
        return "stuck-1"

    def get_job(self, job_id):
        if job_id != "stuck-1":
            time.sleep(3600)
            raise JobNotFoundError(job_id)
        return Job.from_task_states([JobState.QUEUED], id=job_id)

    def get_jobs(self, states=None):
        return [self.get_job("stuck-1")]

    def check(self):
        return []


@hookimpl
def farm_adapters_register_backends(register):
    register(StuckFarm)
'''


def test_a_stuck_check_fails_in_its_step_with_the_state(tmp_path: Path) -> None:
    res = resources(tmp_path, ("stuck_farm.py", STUCK))
    only = "test_submit_runs_to_completion or test_unknown_job_is_not_found"
    _, outcome = run_suite(
        tmp_path, res, ["--farm-backend", "stuck_farm", "--farm-timeout", "2", "-k", only]
    )
    waited = outcome["test_submit_runs_to_completion"] or ""
    assert re.search(r"stuck in queued after 2 s \(states seen: queued\)", waited), waited
    # A call that never returns is ended by the watchdog, which names the step.
    hung = outcome["test_unknown_job_is_not_found"] or ""
    assert "did not finish in" in hung and "--farm-timeout" in hung, hung
