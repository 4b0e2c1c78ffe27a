"""ovfarm and runai submit throughput against a sequential raw httpx keep-alive loop
posting the same bodies, in one run.

Each emulator runs in a process of its own, as a farm does (in-process, client and
server would share one GIL and nothing could overlap). Each round submits a
``--chunks``-chunk job with ``submit_job`` and posts the same bodies with the raw
loop, alternately; medians. ``--latency`` lists fixed waits on the server added to
every submit, one figure each: 0 is the bare emulator (its own CPU time is then the
bound, on a loaded 2-core machine too), 10 ms a farm whose answer waits on its
database, which is where real submits spend their time. Also prints how many HTTP
requests one poll of the ovfarm job costs, counted by the emulator itself.

    python bench/ovfarm_submit.py [--chunks 1000] [--repeat 3] [--latency 0,0.01]
        [--backend ovfarm|runai|both]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, report
from _emulator import emulator_process

REQUEST = {
    "name": "bench",
    "commands": [["render", "--start", "{start}", "--end", "{end}"]],
    "user": "bench",
}


def latency_fault(client: Any, path: str, seconds: float) -> None:
    if seconds > 0:
        client.post(
            "/_emulator/faults",
            json={"path": path, "kind": "latency", "seconds": seconds, "count": -1},
        ).raise_for_status()


def bench_ovfarm(chunks: int, repeat: int, latency: float) -> None:
    import httpx

    import farm_adapters as fa
    from farm_adapters.models import parse_request

    submit_path = "/queue/management/tasks/submit"
    with (
        emulator_process("ovfarm", api_key="bench", agents=0) as emulator,
        tempfile.TemporaryDirectory() as tmp,
    ):
        url = emulator.url
        control = httpx.Client(base_url=url)
        backend = fa.get_plugin_manager().create_backend(
            "ovfarm", {"url": url, "api_key": "bench", "log_dir": tmp, "folders": tmp}
        )
        request = parse_request({**REQUEST, "frames": f"1-{chunks}"})
        backend.get_jobs()  # connection warm, runner definition checked
        definition = backend._job_definition()
        latency_fault(control, submit_path, latency)
        ours, baseline = [], []
        job_id = ""
        for i in range(repeat):
            start = time.perf_counter()
            job_id = backend.submit_job(request)
            ours.append(chunks / (time.perf_counter() - start))

            bodies = backend._bodies(request, f"raw{i:09d}", definition)
            with httpx.Client(base_url=url) as client:
                client.get("/queue/management/tasks/status")
                start = time.perf_counter()
                for body in bodies:
                    client.post(submit_path, json=body).raise_for_status()
                baseline.append(chunks / (time.perf_counter() - start))
            print(
                f"ovfarm run {i}: ours {ours[-1]:.0f} tasks/s, raw httpx {baseline[-1]:.0f} "
                f"tasks/s",
                flush=True,
            )
        control.delete("/_emulator/faults")
        control.delete("/_emulator/stats")
        job = backend.get_job(job_id)
        counted = sum(control.get("/_emulator/stats").json()["requests"].values())
        assert job.total_tasks == chunks, job.total_tasks
        print(f"one poll of a {chunks}-task job: {counted} HTTP request(s), state {job.state}")
        backend.close()
    suffix = f"_{latency * 1000:g}ms" if latency else ""
    report(
        f"ovfarm_submit_throughput{suffix}",
        median(ours),
        median(baseline),
        unit="tasks/s",
        better="higher",
        target=">=1.5",
    )
    report("ovfarm_requests_per_poll", counted, 1, unit="requests", better="lower", target="1")


def bench_runai(chunks: int, repeat: int, latency: float) -> None:
    import httpx

    import farm_adapters as fa
    from farm_adapters.models import parse_request

    create_path = "/api/v1/workloads/trainings"
    with (
        emulator_process(
            "runai", client_id="bench", client_secret="bench", phase_delay=3600, slots=0
        ) as emulator,
        tempfile.TemporaryDirectory() as tmp,
    ):
        url = emulator.url
        control = httpx.Client(base_url=url)
        backend = fa.get_plugin_manager().create_backend(
            "runai",
            {
                "url": url,
                "client_id": "bench",
                "client_secret": "bench",
                "project": "team-a",
                "image": "bench",
                "log_dir": tmp,
            },
        )
        request = parse_request({**REQUEST, "frames": f"1-{chunks}"})
        backend.get_jobs()  # token, project and cluster resolved, connection warm
        latency_fault(control, create_path, latency)
        ours, baseline = [], []
        for i in range(repeat):
            start = time.perf_counter()
            job_id = backend.submit_job(request)
            ours.append(chunks / (time.perf_counter() - start))

            bodies = backend._bodies(request, f"raw{i:07d}")
            headers = backend._auth()
            with httpx.Client(base_url=url, headers=headers) as client:
                client.get("/api/v1/org-unit/projects")
                start = time.perf_counter()
                for body in bodies:
                    client.post(create_path, json=body).raise_for_status()
                baseline.append(chunks / (time.perf_counter() - start))
            print(
                f"runai run {i}: ours {ours[-1]:.0f} workloads/s, raw httpx "
                f"{baseline[-1]:.0f} workloads/s",
                flush=True,
            )
            assert backend.get_job(job_id).total_tasks == chunks
        control.delete("/_emulator/faults")
        backend.close()
    suffix = f"_{latency * 1000:g}ms" if latency else ""
    report(
        f"runai_submit_throughput{suffix}",
        median(ours),
        median(baseline),
        unit="workloads/s",
        better="higher",
        target=">=1.5",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", default="0,0.01", help="seconds per submit, a list")
    parser.add_argument("--backend", choices=["ovfarm", "runai", "both"], default="both")
    args = parser.parse_args()
    for latency in (float(x) for x in args.latency.split(",")):
        if args.backend in ("ovfarm", "both"):
            bench_ovfarm(args.chunks, args.repeat, latency)
        if args.backend in ("runai", "both"):
            bench_runai(args.chunks, args.repeat, latency)


if __name__ == "__main__":
    main()
