"""Plug-ins that raise exceptions outside the FarmAdapterError tree, run through the real
command line: one line naming the plug-in and where it was loaded from, exit code 4,
the traceback only with --debug; a raising state-change hook is reported and isolated.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import cli

from plugin_helpers import write_plugin

EXIT_BUG = 4

BOOM = '''
from farm_adapters import FarmPlugin, hookimpl


class Boom(FarmPlugin):
    """Every method raises what a careless plug-in raises: not a FarmAdapterError."""
    name = "boom"

    def _explode(self, *args, **kwargs):
        raise RuntimeError("method exploded")

    create_temporary_folder = _explode
    copy_render_files = _explode
    submit_job = _explode
    get_job = _explode
    get_jobs = _explode
    get_render_log = _explode
    stop_job = _explode
    restart_job = _explode
    check = _explode


class BoomInit(Boom):
    name = "boominit"

    def __init__(self, settings=None, *, target=None):
        raise KeyError("init exploded")


class BoomAvailability(Boom):
    name = "boomavail"

    @classmethod
    def availability(cls):
        raise OSError("availability exploded")


@hookimpl
def farm_adapters_register_backends(register):
    register(Boom)
    register(BoomInit)
    register(BoomAvailability)
'''

TARGETS = """
[targets.boom]
backend = "boom"

[targets.init]
backend = "boominit"

[targets.avail]
backend = "boomavail"
"""


@pytest.fixture
def boom_env(tmp_path: Path) -> dict[str, str]:
    plugin = write_plugin(tmp_path / "res", "boom.py", BOOM)
    config = tmp_path / "targets.toml"
    config.write_text(TARGETS)
    return {
        "FARM_ADAPTERS_RESOURCES": str(tmp_path / "res"),
        "FARM_ADAPTERS_CONFIG": str(config),
        "PLUGIN_FILE": str(plugin),
    }


COMMANDS = [
    ["check", "{t}"],
    ["submit", "-t", "{t}", "--", "true"],
    ["jobs", "-t", "{t}"],
    ["status", "-t", "{t}", "job-1"],
    ["logs", "-t", "{t}", "job-1"],
    ["stop", "-t", "{t}", "job-1"],
    ["restart", "-t", "{t}", "job-1"],
]


@pytest.mark.parametrize("target", ["boom", "init"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_plugin_bug_is_one_line_naming_the_plugin_exit_4(
    boom_env: dict[str, str], command: list[str], target: str
) -> None:
    result = cli(*(part.format(t=target) for part in command), env=boom_env)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert result.returncode == EXIT_BUG, result.stderr
    backend = "boom" if target == "boom" else "boominit"
    assert line.startswith(f"error: backend '{backend}' from {boom_env['PLUGIN_FILE']} raised ")
    if target == "boom":
        assert "RuntimeError: method exploded" in line
    else:
        assert "KeyError: 'init exploded'" in line
    assert "--debug" in line


def test_a_raising_availability_names_its_backend(boom_env: dict[str, str]) -> None:
    result = cli("status", "-t", "avail", "job-1", env=boom_env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_BUG
    assert result.stderr.startswith(
        f"error: backend 'boomavail' from {boom_env['PLUGIN_FILE']} raised OSError"
    )
    listed = cli("backends", "--json", env=boom_env)
    assert listed.returncode == 0, listed.stderr
    (info,) = [b for b in json.loads(listed.stdout)["backends"] if b["name"] == "boomavail"]
    assert info["available"] is False and "availability exploded" in info["reason"]


def test_debug_adds_the_plugins_traceback(boom_env: dict[str, str]) -> None:
    result = cli("--debug", "status", "-t", "boom", "job-1", env=boom_env)
    assert result.returncode == EXIT_BUG
    assert "Traceback" in result.stderr and "boom.py" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: backend 'boom'")


def test_targets_check_reports_the_bug_per_target_and_goes_on(boom_env: dict[str, str]) -> None:
    result = cli("targets", "--check", "--json", env=boom_env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == EXIT_BUG
    rows = {row["name"]: row for row in json.loads(result.stdout)["targets"]}
    assert {"boom", "init", "avail"} <= set(rows)
    for name in ("boom", "init", "avail"):
        assert rows[name]["check"]["ok"] is False
        assert boom_env["PLUGIN_FILE"] in rows[name]["check"]["detail"]


def test_backends_still_lists_a_buggy_plugin(boom_env: dict[str, str]) -> None:
    result = cli("backends", "--json", env=boom_env)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    names = {b["name"] for b in json.loads(result.stdout)["backends"]}
    assert {"boom", "boominit", "local"} <= names


def test_jobs_from_the_journal_survive_a_buggy_target(boom_env: dict[str, str]) -> None:
    from farm_adapters.journal import Journal
    from farm_adapters.models import parse_request

    done = cli("submit", "--wait", "--json", "--", "true", env=boom_env)
    assert done.returncode == 0, done.stderr
    # A job recorded on the buggy target earlier (its plug-in worked then).
    request = parse_request({"commands": [["true"]]})
    Journal().record(job_id="job-1", target="boom", backend="boom", request=request)
    result = cli("jobs", "--json", env=boom_env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # Every journal row is listed; the buggy target's is marked, not hidden.
    rows = {j["id"]: j for j in data["jobs"]}
    assert set(rows) == {json.loads(done.stdout)["id"], "job-1"}
    assert rows["job-1"]["mark"] == "plug-in error" and rows["job-1"]["last_known"] is True
    (problem,) = data["errors"]
    assert problem.startswith(f"target boom: backend 'boom' from {boom_env['PLUGIN_FILE']}")
    assert "RuntimeError: method exploded" in problem


RECORDS = """
from farm_adapters import hookimpl


@hookimpl
def farm_adapters_job_state_changed(job, previous):
    with open({path!r}, "a") as f:
        f.write(job.state.value + "\\n")
"""

RAISES = """
from farm_adapters import hookimpl


@hookimpl
def farm_adapters_job_state_changed(job, previous, backend):
    raise ValueError("hook exploded")
"""


def test_a_raising_state_hook_is_reported_and_isolated_during_submit_wait(
    tmp_path: Path,
) -> None:
    seen = tmp_path / "seen.txt"
    # Loaded in name order; pluggy calls the last registered first, so the raising hook
    # runs before the recording one and, unisolated, would stop it.
    write_plugin(tmp_path / "res", "a_records.py", RECORDS.format(path=str(seen)))
    raises = write_plugin(tmp_path / "res", "z_raises.py", RAISES)
    env = {"FARM_ADAPTERS_RESOURCES": str(tmp_path / "res")}
    result = cli("submit", "--wait", "--json", "--", "sh", "-c", "echo rendered", env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert job["state"] == "completed"
    warning = (
        f"warning: hook farm_adapters_job_state_changed of {raises} raised "
        f"ValueError: hook exploded; ignored"
    )
    assert warning in result.stderr
    assert seen.read_text().splitlines()[-1] == "completed"
    assert "rendered" in cli("logs", job["id"]).stdout


def test_logs_offset_beyond_any_file_is_a_usage_error() -> None:
    done = cli("submit", "--wait", "--json", "--", "echo", "hello")
    assert done.returncode == 0, done.stderr
    job_id = json.loads(done.stdout)["id"]
    result = cli("logs", job_id, "--offset", "99999999999999999999")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2 and "--offset" in result.stderr
    far = cli("logs", job_id, "--offset", str(2**63 - 1))
    assert far.returncode == 0 and "Traceback" not in far.stderr, far.stderr
    assert far.stdout == ""
    whole = cli("logs", job_id).stdout
    assert "hello" in whole
    assert cli("logs", job_id, "--offset", "2").stdout == whole[2:]
