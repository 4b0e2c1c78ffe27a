"""A 200-task job through the slurm backend, from submit to all-complete, against plain
``sbatch --array`` of the same commands polled with ``squeue`` at the same interval
(target: ours/baseline >= 0.8 in tasks per second), and the Slurm commands one poll
costs.

    python bench/slurm_array.py [--tasks 200] [--runs 2] [--poll-jobs 200] [--slurm-conf PATH]

``--poll-jobs N`` also submits N one-task jobs and counts what one poll of all of them
costs (one ``squeue``; the jobcomp file is read, not run).

Without ``--slurm-conf`` (or ``$SLURM_CONF``) it starts the tests' private single-node
cluster (root and Debian's slurmctld, slurmd and munge needed) and stops it after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _common import median, report

POLL = 0.5


def plain_sbatch(tasks: int, folder: Path, env: dict[str, str]) -> float:
    """Seconds from ``sbatch --array`` to ``squeue`` showing none of its tasks."""
    start = time.perf_counter()
    array = subprocess.run(
        ["sbatch", "--parsable", f"--array=1-{tasks}", f"--output={folder}/%A_%a.out",
         "--wrap", "echo frame $SLURM_ARRAY_TASK_ID"],
        env=env, check=True, capture_output=True, text=True,
    ).stdout.strip().split(";")[0]  # fmt: skip
    while subprocess.run(
        ["squeue", "-h", "-r", "-j", array], env=env, check=True, capture_output=True, text=True
    ).stdout.strip():
        time.sleep(POLL)
    return time.perf_counter() - start


def ours(tasks: int, folder: Path, conf: str) -> tuple[float, dict[str, int], dict[str, int]]:
    """Seconds from submit() to COMPLETED; the commands of the whole wait and of one poll."""
    import farm_adapters as fa

    backend = fa.get_plugin_manager().create_backend(
        "slurm", {"slurm_conf": conf, "root": str(folder), "state_dir": str(folder / "state")}
    )
    start = time.perf_counter()
    job = fa.submit(
        backend, {"commands": [["sh", "-c", "echo frame {frame}"]], "frames": f"1-{tasks}"},
        journal=False,
    )  # fmt: skip
    done = fa.wait(backend, job.id, poll_interval=POLL, max_interval=POLL, timeout=1800)
    seconds = time.perf_counter() - start
    if done.state is not fa.JobState.COMPLETED:
        raise SystemExit(f"the job ended {done.state}: {done.message}")
    during = dict(backend.transport.calls)
    backend.transport.calls.clear()
    backend.get_jobs()
    one_poll = dict(backend.transport.calls)
    backend.close()
    return seconds, during, one_poll


def poll_many(jobs: int, folder: Path, conf: str) -> None:
    import farm_adapters as fa

    backend = fa.get_plugin_manager().create_backend(
        "slurm", {"slurm_conf": conf, "root": str(folder), "state_dir": str(folder / "state")}
    )
    for _ in range(jobs):
        backend.submit_job(fa.parse_request({"commands": [["true"]]}))
    for which in ("first (finds the jobcomp file once)", "next"):
        backend.transport.calls.clear()
        start = time.perf_counter()
        listed = backend.get_jobs()
        seconds = time.perf_counter() - start
        print(
            f"{which} poll of {len(listed)} jobs: {backend.transport.calls} "
            f"(plus one jobcomp read), {seconds * 1000:.0f} ms",
            flush=True,
        )
    backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--poll-jobs", type=int, default=200)
    parser.add_argument("--slurm-conf", default=os.environ.get("SLURM_CONF"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cluster = None
        conf = args.slurm_conf
        if not conf:
            from slurm_cluster import SlurmCluster, unavailable_reason

            reason = unavailable_reason()
            if reason:
                raise SystemExit(f"cannot start a Slurm cluster: {reason}")
            cluster = SlurmCluster(Path(tmp) / "cluster").start()
            conf = str(cluster.conf)
        env = {**os.environ, "SLURM_CONF": conf}
        try:
            base_times, our_times = [], []
            for run in range(args.runs):  # alternate, so load drifts hit both alike
                folder = Path(tmp) / f"run{run}"
                folder.mkdir()
                base_times.append(plain_sbatch(args.tasks, folder, env))
                seconds, during, one_poll = ours(args.tasks, folder, conf)
                our_times.append(seconds)
                print(
                    f"run {run + 1}: sbatch --array {base_times[-1]:.1f} s, farm-adapters "
                    f"{seconds:.1f} s; commands during the wait {during}",
                    flush=True,
                )
            print(f"one poll of every job costs {one_poll} (plus one jobcomp read)")
            if args.poll_jobs:
                poll_many(args.poll_jobs, Path(tmp) / "many", conf)
            report(
                f"slurm_array_{args.tasks}",
                args.tasks / median(our_times),
                args.tasks / median(base_times),
                unit="tasks/s",
                better="higher",
                target=">=0.8",
            )
        finally:
            if cluster is not None:
                cluster.stop()


if __name__ == "__main__":
    main()
