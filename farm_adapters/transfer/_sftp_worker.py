"""A worker process that sends pieces of one file over its own SFTP connection.

Started by :class:`~farm_adapters.transfer.sftp.SftpTransfer` for big files, so that
several connections encrypt in parallel without sharing one interpreter lock. The job
arrives as JSON on stdin (never on the command line: it may hold a password); progress
goes to stdout as lines ``+<bytes>`` and ``done <file> <piece>``; a failure is one line
``error <message>`` and exit status 1.

    python -m farm_adapters.transfer._sftp_worker < job.json
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main() -> int:
    job: dict[str, Any] = json.load(sys.stdin)
    from .sftp import RECONNECTS, WRITE_REQUEST, SftpTransfer

    transfer = SftpTransfer(**job["connection"])
    piece_size, report_every = int(job["piece_size"]), 4 << 20
    work = [(i, f, piece) for i, f in enumerate(job["files"]) for piece in f["pieces"]]
    try:
        for index, file, piece in work:
            offset = piece * piece_size
            length = max(0, min(piece_size, int(file["size"]) - offset))
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
                    break
                except Exception:
                    print(f"+{-sent}", flush=True)  # this attempt's bytes go again
                    if attempt == RECONNECTS:
                        raise
            print(f"done {index} {piece}", flush=True)
    except Exception as exc:
        print(f"error {type(exc).__name__}: {exc}", flush=True)
        return 1
    finally:
        transfer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
