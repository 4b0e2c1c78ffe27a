"""A DCC imports farm_adapters on its UI thread: no heavy or network library may come
with it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("httpx", "paramiko", "fastapi", "uvicorn", "asyncssh", "rich", "click", "bpy")


def test_import_and_listing_stay_light() -> None:
    code = (
        "import json, sys\n"
        "import farm_adapters\n"
        "names = [b.name for b in farm_adapters.get_plugin_manager().list_backends()]\n"
        "print(json.dumps({'names': names, 'modules': sorted(sys.modules)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    data = json.loads(out)
    assert {"local", "ovfarm", "runai"} <= set(data["names"])
    loaded = {m.split(".")[0] for m in data["modules"]}
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
