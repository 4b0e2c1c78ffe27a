"""Path mappings: longest prefix, boundaries, OS rules, round trips."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from farm_adapters import ConfigurationError, parse_request
from farm_adapters.config import load_targets
from farm_adapters.pathmap import PathMapper, PathMapping, path_style

WIN = PathMapping(local="P:\\projects", remote="/mnt/projects")
NESTED = PathMapping(local="P:\\projects\\cache", remote="/fast/cache")
MAC = PathMapping(local="/Volumes/proj", remote="/mnt/proj")


def test_styles() -> None:
    assert path_style("C:\\x") == "windows" and path_style("\\\\server\\share") == "windows"
    assert path_style("/mnt/x") == "posix"


@pytest.mark.parametrize(
    ("local", "remote"),
    [
        ("P:\\projects\\shot\\a.exr", "/mnt/projects/shot/a.exr"),
        ("p:/PROJECTS/shot/b.exr", "/mnt/projects/shot/b.exr"),  # Windows is case-insensitive
        ("P:\\projects", "/mnt/projects"),
        ("P:\\projects\\cache\\t.tx", "/fast/cache/t.tx"),  # the longest prefix wins
        ("/Volumes/proj/s/1.exr", "/mnt/proj/s/1.exr"),
        ("P:\\projectsX\\y", "P:\\projectsX\\y"),  # only at a boundary
        ("/Volumes/project/no", "/Volumes/project/no"),
        ("/Volumes/Proj/x", "/Volumes/Proj/x"),  # POSIX is case-sensitive
    ],
)
def test_to_remote(local: str, remote: str) -> None:
    assert PathMapper([WIN, NESTED, MAC]).to_remote(local) == remote


def test_to_local_uses_the_workstation_style() -> None:
    mapper = PathMapper([WIN, NESTED, MAC])
    assert mapper.to_local("/mnt/projects/shot/a.exr") == "P:\\projects\\shot\\a.exr"
    assert mapper.to_local("/fast/cache/t.tx") == "P:\\projects\\cache\\t.tx"
    assert mapper.to_local("/elsewhere/x") == "/elsewhere/x"


def test_request_commands_environment_outputs() -> None:
    mapper = PathMapper([MAC])
    request = mapper.map_request(
        parse_request(
            {
                "commands": [
                    {
                        "argv": [
                            "render",
                            "/Volumes/proj/a.usd",
                            "--out=/Volumes/proj/o.exr",
                            "/Volumes/project/keep",
                        ],
                        "cwd": "/Volumes/proj",
                        "env": {"TEX": "/Volumes/proj/tex"},
                    }
                ],
                "environment": {"SHOT": "/Volumes/proj/sh010"},
                "outputs": ["/Volumes/proj/out"],
            }
        )
    )
    command = request.commands[0]
    assert command.argv == [
        "render",
        "/mnt/proj/a.usd",
        "--out=/mnt/proj/o.exr",
        "/Volumes/project/keep",
    ]
    assert command.cwd == "/mnt/proj" and command.env == {"TEX": "/mnt/proj/tex"}
    assert request.environment == {"SHOT": "/mnt/proj/sh010"}
    assert request.outputs == ["/mnt/proj/out"]


def test_logs_come_back_with_workstation_paths() -> None:
    mapper = PathMapper([WIN, NESTED])
    text = "wrote /mnt/projects/sh/a.exr\nread '/fast/cache/t.tx'\n/mnt/projectsX stays"
    assert mapper.text_to_local(text) == (
        "wrote P:\\projects\\sh\\a.exr\nread 'P:\\projects\\cache\\t.tx'\n/mnt/projectsX stays"
    )


segment = st.text(
    alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=12
).filter(lambda s: s not in (".", ".."))


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(segment, max_size=6))
def test_round_trip_posix_to_posix(parts: list[str]) -> None:
    mapper = PathMapper([MAC, PathMapping(local="/Volumes/proj/deep", remote="/deep")])
    local = "/".join(["/Volumes/proj", *parts])
    assert mapper.to_local(mapper.to_remote(local)) == local


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(segment, max_size=6), drive=st.sampled_from(["P", "p"]))
def test_round_trip_windows_to_posix(parts: list[str], drive: str) -> None:
    mapper = PathMapper([WIN])
    local = "\\".join([f"{drive}:\\projects", *parts])
    back = mapper.to_local(mapper.to_remote(local))
    # Windows compares case-insensitively; the prefix comes back as configured.
    assert back.lower() == local.lower()
    assert back == "\\".join(["P:\\projects", *parts])


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(segment, min_size=1, max_size=5))
def test_unmapped_paths_are_untouched(parts: list[str]) -> None:
    path = "/" + "/".join(["other", *parts])
    mapper = PathMapper([WIN, MAC])
    assert mapper.to_remote(path) == path and mapper.to_local(path) == path


def test_targets_file_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(
        '[targets.a]\nbackend = "local"\n'
        '[[targets.a.path_mappings]]\nlocal = "relative/path"\nremote = "/x"\n'
    )
    with pytest.raises(ConfigurationError) as info:
        load_targets(path)
    assert str(path) in str(info.value) and "path_mappings[0]" in str(info.value)
    path.write_text('[targets.a]\nbackend = "local"\nstorage = "sftp://x"\n')
    with pytest.raises(ConfigurationError, match="key 'storage' must be a table"):
        load_targets(path)
