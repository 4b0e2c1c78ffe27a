"""An emulator in a process of its own, as a real farm is: the client under test does
not share its interpreter (and GIL) with the server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

CHILD = """
import json, sys, threading
from farm_adapters.testing.emulators._server import BackgroundServer
kind, options = sys.argv[1], json.loads(sys.argv[2])
if kind == "ovfarm":
    from farm_adapters.testing.emulators.ovfarm import create_app
else:
    from farm_adapters.testing.emulators.runai import create_app
server = BackgroundServer(create_app(**options)).start()
print(server.url, flush=True)
sys.stdin.read()  # until the parent closes it
server.stop()
"""


@contextmanager
def emulator_process(kind: str, **options: Any) -> Iterator[str]:
    """Start the ``kind`` emulator (``ovfarm`` or ``runai``) in a child process; yield
    its URL; stop it at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url:
            raise SystemExit(f"the {kind} emulator did not start")
        yield url
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
