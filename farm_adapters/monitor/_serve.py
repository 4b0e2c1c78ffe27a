"""Serving the monitor with uvicorn on a socket bound first, so ``--port 0`` can print
the port it got before the first request."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

__all__ = ["LOOPBACK", "bind", "missing_dependencies", "serve"]

LOOPBACK = "127.0.0.1"
INSTALL = (
    "pip install 'farm-adapters[monitor]' (from a clone of the project: pip install '.[monitor]')"
)


def missing_dependencies() -> str | None:
    """What to install when Starlette or uvicorn is missing, else None."""
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        return f"the monitor needs {' and '.join(missing)}: {INSTALL}"
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine's loopback interface (as the webhooks check)."""
    from ..notify import _loopback

    return _loopback(host)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: a free port). OSError when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(app: Any, sock: socket.socket, *, on_ready: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl-C)."""
    import threading

    import uvicorn

    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if on_ready is not None:

        def wait_then_call() -> None:
            import time

            while not server.started and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                on_ready()

        threading.Thread(target=wait_then_call, daemon=True).start()
    server.run(sockets=[sock])
