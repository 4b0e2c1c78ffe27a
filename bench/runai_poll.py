"""How many requests polling the states of N Run:ai workloads costs (target
ceil(N/500)), counted by the emulator itself, plus the time one poll takes.

    python bench/runai_poll.py [--workloads 1200]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workloads", type=int, default=1200)
    args = parser.parse_args()

    import httpx

    import farm_adapters as fa
    from farm_adapters.testing.emulators._server import BackgroundServer
    from farm_adapters.testing.emulators.runai import create_app

    app = create_app(client_id="bench", client_secret="bench", phase_delay=0.01, slots=2)
    with BackgroundServer(app) as server, tempfile.TemporaryDirectory() as tmp:
        backend = fa.get_plugin_manager().create_backend(
            "runai",
            {
                "url": server.url,
                "client_id": "bench",
                "client_secret": "bench",
                "project": "team-a",
                "image": "bench",
                "log_dir": tmp,
            },
        )
        start = time.perf_counter()
        job = fa.submit(
            backend, {"commands": [["true"]], "frames": f"1-{args.workloads}"}, journal=False
        )
        print(f"submitted {args.workloads} workloads in {time.perf_counter() - start:.1f} s")
        control = httpx.Client(base_url=server.url)
        control.delete("/_emulator/stats")
        start = time.perf_counter()
        polled = backend.get_job(job.id)
        seconds = time.perf_counter() - start
        counts = control.get("/_emulator/stats").json()["requests"]
        requests = sum(n for route, n in counts.items() if route == "GET /api/v1/workloads")
        print(
            f"one poll of {polled.total_tasks} workloads: {requests} list request(s), "
            f"{sum(counts.values())} request(s) in all, {seconds * 1000:.0f} ms"
        )
        backend.stop_job(job.id)
        backend.close()
    expected = math.ceil(args.workloads / 500)
    report(
        "runai_requests_per_poll",
        requests,
        expected,
        unit="requests",
        better="lower",
        target=f"ceil(N/500)={expected}",
    )


if __name__ == "__main__":
    main()
