"""ovfarm submit throughput against a raw httpx keep-alive loop, in one run.

Both post the same 1000 task bodies to the same Omniverse Farm emulator (agents off,
so nothing else loads the machine). Also prints how many HTTP requests one poll of
all 1000 tasks costs, counted by the emulator itself.

    python bench/ovfarm_submit.py [--chunks 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import httpx

    import farm_adapters as fa
    from farm_adapters.models import parse_request
    from farm_adapters.testing.emulators._server import BackgroundServer
    from farm_adapters.testing.emulators.ovfarm import create_app

    app = create_app(api_key="bench", agents=0)
    with BackgroundServer(app) as server, tempfile.TemporaryDirectory() as tmp:
        backend = fa.get_plugin_manager().create_backend(
            "ovfarm", {"url": server.url, "api_key": "bench", "log_dir": tmp, "folders": tmp}
        )
        request = parse_request(
            {
                "name": "bench",
                "commands": [["render", "--start", "{start}", "--end", "{end}"]],
                "frames": f"1-{args.chunks}",
                "user": "bench",
            }
        )
        backend.get_jobs()  # connection warm, runner definition checked
        backend._job_definition()
        ours, baseline = [], []
        job_id = ""
        for i in range(args.repeat):
            start = time.perf_counter()
            job_id = backend.submit_job(request)
            ours.append(args.chunks / (time.perf_counter() - start))

            bodies = backend._bodies(request, f"raw-{i}", backend._job_definition())
            with httpx.Client(base_url=server.url) as client:
                client.get("/queue/management/tasks/status")
                start = time.perf_counter()
                for body in bodies:
                    client.post("/queue/management/tasks/submit", json=body).raise_for_status()
                baseline.append(args.chunks / (time.perf_counter() - start))
            print(
                f"run {i}: ours {ours[-1]:.0f} tasks/s, raw httpx {baseline[-1]:.0f} tasks/s",
                flush=True,
            )

        stats = httpx.Client(base_url=server.url)
        stats.delete("/_emulator/stats")
        job = backend.get_job(job_id)
        counted = sum(stats.get("/_emulator/stats").json()["requests"].values())
        assert job.total_tasks == args.chunks, job.total_tasks
        print(f"one poll of a {args.chunks}-task job: {counted} HTTP request(s), state {job.state}")
        backend.close()
    report(
        "ovfarm_submit_throughput",
        median(ours),
        median(baseline),
        unit="tasks/s",
        better="higher",
        target=">=0.8",
    )
    report("ovfarm_requests_per_poll", counted, 1, unit="requests", better="lower", target="1")


if __name__ == "__main__":
    main()
