"""Hostile input reaching the command line: files that are not UTF-8, format widths and
frame lists without bound, environment names and NUL bytes no process can take.

Every case runs the real ``farm-adapters`` command in a subprocess, as a user would, and
expects one line on stderr naming the problem and the fix, exit 2, and nothing sent.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_helpers import cli

from farm_adapters.errors import InvalidRequestError
from farm_adapters.frames import MAX_FRAMES
from farm_adapters.models import parse_request


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def journal_is_empty() -> None:
    result = cli("jobs", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["jobs"] == []


# -- item 21: files that are not UTF-8 ---------------------------------------------------


def test_latin1_job_file_is_one_line_naming_file_byte_and_fix(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_bytes('# café\n[[commands]]\nargv = ["true"]\n'.encode("latin-1"))
    result = cli("submit", str(job))
    assert result.returncode == 2
    line = one_line_error(result)
    assert str(job) in line
    assert "0xe9" in line and "line 1, column 6" in line
    assert "UTF-8" in line and "iconv" in line
    journal_is_empty()


@pytest.mark.parametrize(
    "command", [["targets"], ["submit", "--", "true"], ["status", "x"], ["check"]]
)
def test_latin1_targets_file_is_one_line_for_every_command(
    tmp_path: Path, command: list[str]
) -> None:
    targets = tmp_path / "farm-adapters.toml"
    targets.write_bytes('# café\n[targets.here]\nbackend = "local"\n'.encode("latin-1"))
    result = cli("--config", str(targets), *command)
    assert result.returncode == 2
    line = one_line_error(result)
    assert str(targets) in line and "0xe9" in line and "UTF-8" in line


# -- item 22: format widths and frame lists -----------------------------------------------


def test_huge_format_width_is_refused_before_anything_is_built() -> None:
    # Wide enough to show the bug (an argument of 100 000 characters was sent), narrow
    # enough not to eat the machine when it is there.
    result = cli("submit", "--frames", "1-2", "--", "echo", "out_{frame:0100000d}.exr")
    assert result.returncode == 2, result.stderr[-500:]
    line = one_line_error(result)
    assert "commands.0" in line and "{frame:0100000d}" in line and "at most 64" in line
    journal_is_empty()


def test_huge_format_width_in_env_or_cwd_is_refused_too(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(
        'frames = "1"\n[[commands]]\nargv = ["true"]\ncwd = "/tmp/{frame:>9999}"\n'
        '[[commands]]\nargv = ["true"]\nenv = { PAD = "{frames:.5000}" }\n'
    )
    result = cli("submit", str(job), "--dry-run")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "commands.0" in line and "commands.1" in line


def test_a_frames_list_longer_than_any_argument_is_refused() -> None:
    """One chunk of 100 000 frames makes a ~600 KB `{frames}` argument, which no program
    can be started with (Linux refuses arguments over 128 KiB)."""
    result = cli(
        "submit", "--frames", "1-100000", "--chunk", "100000", "--dry-run", "--",
        "render", "--frames", "{frames}",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-300:]
    line = one_line_error(result)
    assert "commands" in line and "chunk_size" in line and "{start}" in line


def test_ordinary_format_specs_still_work() -> None:
    result = cli("submit", "--frames", "7", "--dry-run", "--", "echo", "f{frame:04d}", "{end:>6}")
    assert result.returncode == 0, result.stderr
    assert "f0007" in result.stdout and "     7" in result.stdout


def test_frame_list_is_capped_like_a_spec_string() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request({"frames": list(range(MAX_FRAMES + 1)), "commands": [["echo"]]})
    assert info.value.field == "frames"
    assert f"{MAX_FRAMES:,}" in str(info.value)
    with pytest.raises(InvalidRequestError) as info:
        parse_request({"frames": f"1-{MAX_FRAMES + 1}", "commands": [["echo"]]})
    assert info.value.field == "frames"


def test_frame_numbers_beyond_32_bits_are_refused() -> None:
    for frames in ("1-99999999999999999999", "99999999999", "-3000000000"):
        result = cli("submit", "--frames", frames, "--dry-run", "--", "echo", "{frame}")
        assert result.returncode == 2, (frames, result.stderr)
        assert "out of range" in one_line_error(result)


# -- item 23: environment names and NUL bytes ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('[[commands]]\nargv = ["true"]\nenv = { "A=B" = "1" }\n', "commands.0.env"),
        ('[[commands]]\nargv = ["true"]\nenv = { "É" = "1" }\n', "commands.0.env"),
        ('[[commands]]\nargv = ["true"]\nenv = { "1ST" = "1" }\n', "commands.0.env"),
        ('[[commands]]\nargv = ["true"]\nenv = { OK = "a\\u0000b" }\n', "commands.0.env"),
        ('[[commands]]\nargv = ["echo", "a\\u0000b"]\n', "commands.0.argv"),
        ('[[commands]]\nargv = ["true"]\ncwd = "/tmp/a\\u0000b"\n', "commands.0.cwd"),
        ('environment = { "A=B" = "1" }\n[[commands]]\nargv = ["true"]\n', "environment"),
        ('environment = { "X-Y" = "1" }\n[[commands]]\nargv = ["true"]\n', "environment"),
        ('environment = { OK = "a\\u0000b" }\n[[commands]]\nargv = ["true"]\n', "environment"),
    ],
)
def test_unpassable_env_and_nul_bytes_are_refused_at_submit(
    tmp_path: Path, body: str, field: str
) -> None:
    """Before, these passed validation and killed the local supervisor (or failed in
    the farm's shell); now nothing reaches a backend."""
    job = tmp_path / "job.toml"
    job.write_text(body, encoding="utf-8")
    result = cli("submit", str(job), "--wait")
    assert result.returncode == 2, result.stderr
    line = one_line_error(result)
    assert field in line
    journal_is_empty()


def test_env_option_with_a_non_ascii_name_is_refused() -> None:
    result = cli("submit", "-e", "É=1", "--", "true")
    assert result.returncode == 2
    line = one_line_error(result)
    assert "environment" in line and "'É'" in line and "RENDER_QUALITY" in line
    journal_is_empty()


def test_ordinary_env_names_still_reach_the_job() -> None:
    result = cli(
        "submit", "--wait", "--json", "-e", "_RENDER_Q2=high", "--", "sh", "-c",
        "echo q=$_RENDER_Q2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["id"]
    assert "q=high" in cli("logs", job_id).stdout
