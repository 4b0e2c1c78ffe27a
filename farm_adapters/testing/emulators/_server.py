"""Running an emulator's ASGI app with uvicorn: in the foreground (the CLI) or in a
background thread (tests and benchmarks), on 127.0.0.1 by default."""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["BackgroundServer", "serve"]


def serve(app: Any, *, host: str = "127.0.0.1", port: int = 8222, log_level: str = "info") -> None:
    """Serve until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")


class BackgroundServer:
    """uvicorn in a daemon thread; ``port=0`` picks a free port. Use as a context
    manager or call :meth:`start`/:meth:`stop`."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "critical"
    ) -> None:
        import uvicorn

        self.app = app
        # "critical" by default: the emulators answer 500 on purpose (as the real
        # servers do), and uvicorn would print a traceback for each.
        config = uvicorn.Config(
            app, host=host, port=port, log_level=log_level, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="emulator", daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the emulator failed to start; see the log above")
            if time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start in time")
            time.sleep(0.01)
        sockets = self.server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
