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
import json, sys, uuid
from farm_adapters.testing.emulators._server import BackgroundServer
kind, options = sys.argv[1], json.loads(sys.argv[2])
if kind == "ovfarm":
    from farm_adapters.testing.emulators.ovfarm import TaskSubmissionModel, create_app
else:
    from farm_adapters.testing.emulators.runai import create_app
app = create_app(**options)
server = BackgroundServer(app).start()
print(server.url, flush=True)
for line in sys.stdin:  # until the parent closes it
    command, count, task_type = line.split()
    if command == "history":  # finished tasks of other jobs (ovfarm)
        for _ in range(int(count)):
            meta = {"job": uuid.uuid4().hex[:12], "task": 0, "tasks": 1, "name": "old"}
            app.state.farm.submit(TaskSubmissionModel(
                user="old", task_type=task_type, task_args={},
                metadata={"farm_adapters": meta}, status="finished",
            ))
    print("ok", flush=True)
server.stop()
"""


class Emulator:
    """A running emulator process: its ``url``; :meth:`history` adds finished tasks."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def history(self, count: int, task_type: str) -> None:
        """Add ``count`` finished tasks of other jobs, of ``task_type`` (ovfarm)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"history {count} {task_type}\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise SystemExit("the emulator did not take the history")


@contextmanager
def emulator_process(kind: str, **options: Any) -> Iterator[Emulator]:
    """Start the ``kind`` emulator (``ovfarm`` or ``runai``) in a child process; yield
    it; stop it at the end."""
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
        yield Emulator(proc, url)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
