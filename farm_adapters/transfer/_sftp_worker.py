"""A worker process that sends pieces of files over its own SFTP connection.

Started by :class:`~farm_adapters.transfer.sftp.SftpTransfer` for big files, so that
several connections encrypt in parallel without sharing one interpreter lock. Two JSON
lines arrive on stdin (never on the command line: they may hold a password): first the
connection, so the worker imports and connects while the caller is still planning;
then the pieces to send (none: it just exits). Progress goes to stdout as lines
``+<bytes>`` and ``done <file> <piece>``; a failure is one line ``error <message>`` and
exit status 1.

    python -m farm_adapters.transfer._sftp_worker
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _send(transfer: Any, file: dict[str, Any], piece: int, piece_size: int) -> None:
    from .sftp import RECONNECTS, WRITE_REQUEST

    offset = piece * piece_size
    length = max(0, min(piece_size, int(file["size"]) - offset))
    report_every = 4 << 20
    for attempt in range(RECONNECTS + 1):
        sent = 0
        try:
            with (
                transfer._conn() as conn,
                conn.sftp.open(file["part"], "r+b", bufsize=0) as remote,
                open(file["local"], "rb") as local,
            ):
                remote.set_pipelined(True)
                remote.MAX_REQUEST_SIZE = WRITE_REQUEST
                remote.seek(offset)
                local.seek(offset)
                pending = 0
                while sent < length:
                    block = local.read(min(1 << 20, length - sent))
                    if not block:
                        raise OSError(f"{file['local']} shrank during the upload")
                    remote.write(block)
                    sent += len(block)
                    pending += len(block)
                    if pending >= report_every:
                        print(f"+{pending}", flush=True)
                        pending = 0
                if pending:
                    print(f"+{pending}", flush=True)
            return  # closing the handle waited for every write's acknowledgement
        except Exception:
            print(f"+{-sent}", flush=True)  # this attempt's bytes go again
            if attempt == RECONNECTS:
                raise


def main() -> int:
    connection: dict[str, Any] = json.loads(sys.stdin.readline())
    from .sftp import SftpTransfer

    transfer = SftpTransfer(**connection)
    try:
        with transfer._conn():  # connect now, while the caller is still planning
            pass
        print("ready", flush=True)
        for line in sys.stdin:
            if not line.strip():
                break
            job = json.loads(line)
            _send(transfer, job["file"], int(job["piece"]), int(job["piece_size"]))
            print(f"done {job['key']}", flush=True)
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        return 1
    finally:
        transfer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
