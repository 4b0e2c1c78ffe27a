"""The local web monitor: ``farm-adapters monitor``.

One page over this machine's journal and every configured target: targets (backend,
reachable, capabilities), jobs across all targets (the rows and marks of
``farm-adapters jobs``), one job (tasks, live log, outputs with thumbnails, actions
its backend allows). A single :class:`Poller` asks each target once per interval
however many tabs are open; the app (:func:`create_app`) serves its snapshot behind
an access token. Needs Starlette and uvicorn (the ``monitor`` extra).
"""

from __future__ import annotations

from ._app import MonitorApp, create_app
from ._poller import JobDetail, Poller, Snapshot, TargetStatus
from ._serve import LOOPBACK, missing_dependencies, serve

__all__ = [
    "LOOPBACK",
    "JobDetail",
    "MonitorApp",
    "Poller",
    "Snapshot",
    "TargetStatus",
    "create_app",
    "missing_dependencies",
    "serve",
]
