"""The documentation cannot rot: hooks are all documented, examples are the tested
files, and console examples run with the output and exit code they show."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from farm_adapters import hookspecs
from farm_adapters.config import parse_targets

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
BIN = Path(sys.executable).parent


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def hook_names() -> list[str]:
    return [
        n
        for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if n.startswith("farm_adapters_")
    ]


def test_every_hook_is_documented_with_its_signature() -> None:
    text = (DOCS / "hooks.md").read_text()
    names = hook_names()
    assert len(names) == 3
    for name in names:
        section = re.search(rf"### {name}\n+```python\n(def .*?)\n```", text)
        assert section, f"docs/hooks.md has no section with a signature for {name}"
        documented = re.findall(r"(\w+):", section.group(1).split("(", 1)[1].split(")")[0])
        params = list(inspect.signature(getattr(hookspecs, name)).parameters)
        assert documented == params, name
    documented_names = re.findall(r"^### (\w+)$", text, flags=re.M)
    assert sorted(documented_names) == sorted(names), "a documented hook does not exist"


def test_writing_a_backend_shows_the_tested_file() -> None:
    text = (DOCS / "writing-a-backend.md").read_text()
    source = (REPO / "examples" / "resources" / "Plugins" / "studio_farm.py").read_text()
    assert source.rstrip("\n") in [b.rstrip("\n") for b in blocks(text, "python")]


def test_the_tutorial_backend_passes_the_conformance_suite(tmp_path: Path) -> None:
    env = {**os.environ, "FARM_ADAPTERS_RESOURCES": str(REPO / "examples" / "resources")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--farm-backend",
            "studio_farm",
            "--farm-settings",
            f'{{"root": "{tmp_path / "farm"}"}}',
            "--farm-timeout",
            "60",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    from farm_adapters.testing import conformance

    checks = [name for name in conformance.__all__ if name.startswith("test_")]
    assert re.search(rf"\b{len(checks)} passed\b", result.stdout), result.stdout[-2000:]


def test_package_entry_point_example_is_valid_toml() -> None:
    from farm_adapters._toml import tomllib

    text = (DOCS / "writing-a-backend.md").read_text()
    (project,) = [b for b in blocks(text, "toml") if "[project]" in b]
    data = tomllib.loads(project)
    assert data["project"]["entry-points"]["farm_adapters"] == {"studio_farm": "studio_farm"}


def test_targets_examples_are_valid() -> None:
    from farm_adapters import get_plugin_manager

    text = (DOCS / "targets.md").read_text()
    from farm_adapters._toml import tomllib

    examples = blocks(text, "toml")
    assert len(examples) == 2
    first = parse_targets(tomllib.loads(examples[0]))
    assert first.default_target == "workstation"
    for target in first:
        assert target.create_backend(get_plugin_manager()).name == "local"
    second = parse_targets(tomllib.loads(examples[1]))
    assert second.get("studio-farm").public_settings()["api_key"] == {"env": "STUDIO_FARM_API_KEY"}


def run_console_block(block: str, cwd: Path, env: dict[str, str]) -> None:
    """Run every `$ command`; the lines after it must appear in its output, and
    `[exit N]` is its expected exit code (0 when not shown)."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps and line.strip():
            steps[-1][1].append(line.strip())
    assert steps
    for command, expected in steps:
        code = 0
        lines = []
        for line in expected:
            match = re.fullmatch(r"\[exit (\d+)\]", line)
            if match:
                code = int(match.group(1))
            else:
                lines.append(line)
        result = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
        )
        output = result.stdout + result.stderr
        assert result.returncode == code, f"{command}\n{output}"
        for line in lines:
            assert line in output, f"{command}: {line!r} not in\n{output}"


@pytest.mark.parametrize("page", ["cli.md", "writing-a-backend.md", "targets.md"])
def test_console_examples_run(page: str, tmp_path: Path) -> None:
    text = (DOCS / page).read_text()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "COLUMNS": "200",
    }
    cwd = tmp_path
    if page == "cli.md":
        job_file = next(b for b in blocks(text, "toml") if "[[commands]]" in b)
        (tmp_path / "job.toml").write_text(job_file)
    else:
        cwd = REPO
    for block in blocks(text, "console"):
        run_console_block(block, cwd, env)


def test_readme_commands_exist() -> None:
    text = (REPO / "README.md").read_text()
    assert "bash examples/cornell/demo.sh" in text and "bash .ci/run" in text
    assert (REPO / "examples" / "cornell" / "demo.sh").is_file()
    assert "-m pytest" in (REPO / ".ci" / "run").read_text()
