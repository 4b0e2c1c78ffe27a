"""The web monitor's jobs page with 1,000 jobs in the journal, against
``farm-adapters jobs --json --limit 1000`` on the same journal (median wall time;
the page is a GET over HTTP to a real monitor on 127.0.0.1, the baseline a whole
process). The page is rendered from the poller's last snapshot, so a second line
times one polling round (journal read, every target asked, rows built) the same way.
The rows name jobs the local farm does not know (marked "unknown to the farm"), so
the figures are the monitor's and the journal's, not a backend's.

    python bench/monitor_jobs.py [--runs 9]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PYTHON, median, report, time_command
from jobs_scale import _journal

ROWS = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fa-bench-monitor-"))
    os.environ["XDG_CONFIG_HOME"] = str(root / "config")  # no user targets file
    try:
        _journal(root / "data", ROWS)  # sets FARM_ADAPTERS_DATA_DIR
        import httpx

        from farm_adapters.cli._common import Context
        from farm_adapters.monitor import Poller, create_app
        from farm_adapters.testing.emulators._server import BackgroundServer

        poller = Poller(Context(None, False), interval=3600, limit=ROWS, notify=False)
        rounds = []
        for _ in range(args.runs):
            start = time.perf_counter()
            snapshot = poller.poll()
            rounds.append(time.perf_counter() - start)
        assert len(snapshot.rows) == ROWS, len(snapshot.rows)
        app = create_app(poller)
        pages = []
        with (
            BackgroundServer(app) as server,
            httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {app.token}"}
            ) as client,
        ):
            client.get("/").raise_for_status()  # warm: imports, templates
            for _ in range(args.runs):
                start = time.perf_counter()
                page = client.get("/")
                pages.append(time.perf_counter() - start)
                page.raise_for_status()
            assert page.text.count("<tr data-id=") == ROWS
        argv = [PYTHON, "-m", "farm_adapters", "jobs", "--json", "--limit", str(ROWS)]
        base = time_command(argv, args.runs)
        report(
            "monitor_jobs_page_1000",
            median(pages),
            median(base),
            unit="s",
            better="lower",
            target="<1",
        )
        report(
            "monitor_poll_round_1000",
            median(rounds),
            median(base),
            unit="s",
            better="lower",
            target="<1",
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
