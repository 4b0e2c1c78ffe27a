"""The Katana bridge, against a stand-in FarmAPI written from Katana's documentation
(tests/katana_standin): Katana-style discovery from KATANA_RESOURCES, then the stages,
information and control a Katana artist drives, on real local jobs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

STANDIN = Path(__file__).resolve().parent / "katana_standin"
BIN = Path(sys.executable).parent


@pytest.fixture
def farm_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The stand-in FarmAPI package, importable as Katana's is."""
    monkeypatch.syspath_prepend(str(STANDIN))
    for name in [m for m in sys.modules if m == "FarmAPI" or m.startswith("FarmAPI.")]:
        monkeypatch.delitem(sys.modules, name)
    import FarmAPI
    import FarmAPI.FarmPluginManager

    yield FarmAPI
    for name in [m for m in sys.modules if m == "FarmAPI" or m.startswith("FarmAPI.")]:
        sys.modules.pop(name, None)


@pytest.fixture
def katana_plugins(
    farm_api: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """What Katana finds with `farm-adapters katana path` on KATANA_RESOURCES and a
    targets file of two targets."""
    config = tmp_path / "farm-adapters.toml"
    config.write_text(
        f'[targets.studio]\nbackend = "local"\ndescription = "the studio box"\n'
        f'root = "{tmp_path / "studio"}"\nslots = 2\ngrace_period = 2\n'
    )
    monkeypatch.setenv("FARM_ADAPTERS_CONFIG", str(config))
    printed = subprocess.run(
        [str(BIN / "farm-adapters"), "katana", "path"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    monkeypatch.setenv("KATANA_RESOURCES", printed)
    return dict(farm_api.FarmPluginManager.LoadPlugins())


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_katana_discovers_one_plugin_per_target(
    katana_plugins: dict[str, Any], farm_api: ModuleType
) -> None:
    assert set(katana_plugins) == {"farm-adapters: local", "farm-adapters: studio"}
    for cls in katana_plugins.values():
        assert issubclass(cls, farm_api.BaseFarmPlugin)
        assert cls.stopJob is not farm_api.BaseFarmPlugin.stopJob
    assert "the studio box" in (katana_plugins["farm-adapters: studio"].__doc__ or "")


def test_every_name_the_bridge_uses_exists_in_the_standin(farm_api: ModuleType) -> None:
    from farm_adapters.dcc.katana.bridge import missing_names

    assert missing_names(farm_api) == []
    assert missing_names(ModuleType("FarmAPI")) == ["FarmAPI.BaseFarmPlugin"]


def test_submit_poll_log_through_katanas_stages(
    katana_plugins: dict[str, Any], farm_api: ModuleType, tmp_path: Path
) -> None:
    plugin = katana_plugins["farm-adapters: studio"]()
    manager = farm_api.FarmPluginManager
    context = manager.NewRenderContextName()
    scene = tmp_path / "workstation" / "shot.katana"
    scene.parent.mkdir()
    scene.write_text("katana scene 42\n")

    # 1. temporary render files
    folder = plugin.createTemporaryFolder(context)
    assert context in folder and os.path.isdir(folder)
    (remote,) = plugin.copyRenderFiles(context, [str(scene)])
    assert Path(remote).read_text() == "katana scene 42\n"
    assert Path(remote).parent == Path(folder)
    # 2. environment
    metadata = plugin.getInstallationMetadata()
    assert isinstance(metadata, farm_api.BaseFarmPlugin.InstallationMetadata)
    assert metadata.installationPath
    assert isinstance(plugin.getEnvironmentForJob(context), dict)
    # 3. submit: ordered commands, one a string split like argv (no shell)
    request = manager.JobRequest(
        renderContextName=context,
        name="katana disk render",
        commands=[
            [sys.executable, "-c", f"print(open({remote!r}).read().strip(), 'rendered')"],
            "echo 'second command'",
        ],
        environment={"SHOT": "sh010"},
    )
    job_id = plugin.submitJob(request)
    assert isinstance(job_id, str) and job_id

    state = farm_api.Job.State
    wait_for(lambda: plugin.getJobState(job_id) is state.Completed, "the job to complete")
    log = Path(plugin.getRenderLogFilename(job_id)).read_text()
    assert log.index("katana scene 42 rendered") < log.index("second command")
    listed = {j.jobId: j for j in plugin.getJobs()}
    assert listed[job_id].state is state.Completed
    assert listed[job_id].name == "katana disk render"


def test_stop_restart_and_unknown_job(katana_plugins: dict[str, Any], farm_api: ModuleType) -> None:
    plugin = katana_plugins["farm-adapters: local"]()
    manager = farm_api.FarmPluginManager
    state = farm_api.Job.State
    context = manager.NewRenderContextName()
    plugin.createTemporaryFolder(context)
    request = manager.JobRequest(
        renderContextName=context, commands=[[sys.executable, "-c", "import time; time.sleep(600)"]]
    )
    job_id = plugin.submitJob(request)
    wait_for(lambda: plugin.getJobState(job_id) is state.Running, "the job to run")
    plugin.stopJob(job_id)
    wait_for(lambda: plugin.getJobState(job_id) is state.Stopped, "the job to stop")
    plugin.restartJob(job_id)
    wait_for(
        lambda: plugin.getJobState(job_id) in (state.Queued, state.Running),
        "the restarted job to run again",
    )
    plugin.stopJob(job_id)
    wait_for(lambda: plugin.getJobState(job_id) is state.Stopped, "the job to stop again")

    with pytest.raises(farm_api.JobNotFoundException):
        plugin.getJobState("no-such-job")
    with pytest.raises(farm_api.FarmPluginException, match="commands"):
        plugin.submitJob(manager.JobRequest(renderContextName=str(uuid.uuid4()), commands=[]))


def test_optional_methods_follow_the_backend_capabilities(farm_api: ModuleType) -> None:
    from farm_adapters.dcc.katana.bridge import make_plugin_class

    cls = make_plugin_class("local", farm_api, capabilities=frozenset({"render_log_filename"}))
    assert "getRenderLogFilename" in cls.__dict__
    assert "stopJob" not in cls.__dict__ and "restartJob" not in cls.__dict__


def test_check_says_whether_the_catalog_server_is_reachable(
    katana_plugins: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = katana_plugins["farm-adapters: local"]()
    ok, text = plugin.test()
    assert ok
    assert "catalog server: not tested" in text and "FARM_ADAPTERS_KATANA_CATALOG" in text

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("FARM_ADAPTERS_KATANA_CATALOG", f"127.0.0.1:{port}")
        ok, text = plugin.test()
        assert ok and f"127.0.0.1:{port} is reachable" in text
    # the port is closed now: a Preview render would not reach the workstation
    ok, text = plugin.test()
    assert not ok
    assert "FAILED: catalog server" in text and "not reachable" in text


def test_remote_targets_say_plainly_the_catalog_server_was_not_tested() -> None:
    from farm_adapters.dcc.katana.bridge import catalog_server_check

    result = catalog_server_check("ovfarm", "workstation01:9000")
    assert result.ok and result.detail.startswith("not tested")
    assert "workstation01:9000" in result.detail
    assert not catalog_server_check("local", "no-port").ok


def test_the_docs_list_every_katana_name_the_bridge_uses() -> None:
    from farm_adapters.dcc.katana import names

    text = (Path(__file__).resolve().parent.parent / "docs" / "katana.md").read_text()
    spelt = [m.katana for m in names.METHODS.values()]
    spelt += [katana for method in names.METHODS.values() for _, katana in method.args]
    spelt += list(names.JOB_STATES.values())
    spelt += [n for group in names.JOB_REQUEST_FIELDS.values() for n in group]
    spelt += list(names.INSTALLATION_METADATA_FIELDS.values()) + list(names.JOB_FIELDS.values())
    missing = sorted({n for n in spelt if not re.search(rf"\b{re.escape(n)}\b", text)})
    assert missing == [], f"docs/katana.md does not list {missing}"
    for method in names.METHODS.values():
        row = next(line for line in text.splitlines() if f"`{method.katana}(" in line)
        assert ("unverified" in row) == (method.status == names.UNVERIFIED), row
