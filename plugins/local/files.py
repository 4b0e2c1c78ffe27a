"""The files a local job's supervisor writes in the job's log folder, as the supervisor
writes them and the read-only view (and the plug-in) reads them. The standard library
only, and nothing else: the supervisor and the command line's light path both import
it on their start-up paths."""

from __future__ import annotations

import struct

__all__ = ["HEARTBEAT_FILE", "SEGMENT", "TIMES_FILE", "TIME_RECORD"]

#: Touched about every STOP_POLL_INTERVAL while the supervisor runs; a stale one means
#: the supervisor is stopped (SIGSTOP) or starved, and the job's status says so.
HEARTBEAT_FILE = "supervisor.heartbeat"
#: A task's index file ``task-NNNNN.idx``: records of (offset, length) in the job's
#: log, little-endian.
SEGMENT = struct.Struct("<QQ")
#: When each piece of a job's log was written: ``job.times`` beside ``job.log`` holds
#: records of (offset in the log, POSIX time), one per write, little-endian; a line's
#: time is that of the last record at or before its offset. Read by ``logs
#: --timestamps``; a log without the file has no per-line times.
TIMES_FILE = "job.times"
TIME_RECORD = struct.Struct("<Qd")
