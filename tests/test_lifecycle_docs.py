"""The lifecycle pages' console examples run, with the output and exit codes shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_docs import BIN, DOCS, blocks, run_console_block

PAGES = ["dependencies.md", "holds.md", "priority.md", "cleanup.md"]


@pytest.mark.parametrize("page", PAGES)
def test_console_examples_run(page: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "COLUMNS": "200",
    }
    found = blocks((DOCS / page).read_text(), "console")
    assert found
    for block in found:
        run_console_block(block, tmp_path, env)


def test_every_lifecycle_page_is_in_the_index() -> None:
    index = (DOCS / "index.md").read_text()
    for page in [*PAGES, "outputs.md", "notifications.md"]:
        assert f"]({page})" in index, page
