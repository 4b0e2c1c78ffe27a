"""The farm-adapters demo: a real render job through any render target (default local).

Renders N frames of a camera orbiting Mitsuba's Cornell box, one frame per task, and
submits a second job that assembles a contact sheet *after* the frames (a dependency
the farm keeps: closing this terminal loses nothing), prints the jobs and where the
images will be, and returns at once. ``--wait`` shows progress until both have ended.
Run it through ``bash examples/cornell/demo.sh``, which installs what it needs first.

    python examples/cornell/demo.py [--frames 8] [--size 256] [--spp 16] [--out DIR]
                                    [--target NAME] [--wait]   # e.g. a slurm target
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import farm_adapters as fa
from farm_adapters.config import load_targets

HERE = Path(__file__).resolve().parent


def submit(backend: fa.FarmPlugin, request: dict[str, object]) -> fa.Job:
    job = fa.submit(backend, request)
    assert isinstance(job, fa.Job)
    return job


def watch(backend: fa.FarmPlugin, job: fa.Job, label: str) -> fa.Job:
    """Show a progress bar until ``job`` ends; exit with its log's tail unless it
    completed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]{label}[/] {job.id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    ) as progress:
        bar = progress.add_task(label, total=job.total_tasks, state=job.state.value)

        def update(current: fa.Job) -> None:
            progress.update(bar, completed=current.finished_tasks, state=current.state.value)

        done = fa.wait(backend, job.id, on_update=update, poll_interval=0.2, max_interval=1.0)
    if done.state is not fa.JobState.COMPLETED:
        log = backend.get_render_log(job.id).text
        print("\n".join(log.splitlines()[-20:]), file=sys.stderr)
        raise SystemExit(f"{label} job {job.id} ended {done.state}: {done.message}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--spp", type=int, default=16)
    parser.add_argument("--out", type=Path, default=HERE / "output")
    parser.add_argument("--target", default="local")
    parser.add_argument("--wait", action="store_true", help="show progress until both end")
    args = parser.parse_args()
    if args.frames < 1:
        parser.error("--frames must be 1 or more")

    out = args.out.resolve()
    frames_dir = out / "frames"
    # Frames of an earlier, longer run would sit beside this run's and the listing
    # would lie: this run's output folder holds this run's images only.
    for stale in [*frames_dir.glob("frame_*.png"), out / "contact_sheet.png"]:
        stale.unlink(missing_ok=True)
    backend = load_targets().get(args.target).create_backend(fa.get_plugin_manager())
    print(f"rendering {args.frames} frame(s) of the Cornell box on target {backend.target!r}")
    render = submit(
        backend,
        {
            "name": "cornell-orbit",
            "files": [str(HERE / "render_frame.py")],
            "commands": [
                [
                    sys.executable,
                    "{folder}/render_frame.py",
                    "--frame",
                    "{frame}",
                    "--frames",
                    str(args.frames),
                    "--size",
                    str(args.size),
                    "--spp",
                    str(args.spp),
                    "--out",
                    f"{frames_dir}/frame_{{frame:04d}}.png",
                ]
            ],
            "frames": f"1-{args.frames}",
            "outputs": [f"{frames_dir}/frame_{{frame:04d}}.png"],
        },
    )
    frames = [frames_dir / f"frame_{i:04d}.png" for i in range(1, args.frames + 1)]
    sheet = out / "contact_sheet.png"
    contact = submit(
        backend,
        {
            "name": "cornell-contact-sheet",
            "files": [str(HERE / "contact_sheet.py")],
            "commands": [
                [
                    sys.executable,
                    "{folder}/contact_sheet.py",
                    "--out",
                    str(sheet),
                    *map(str, frames),
                ]
            ],
            "outputs": [str(sheet)],
            "after": [render.id],  # the farm waits, not this script
        },
    )
    cli = Path(sys.executable).parent / "farm-adapters"
    fa_cli = cli if cli.exists() else "farm-adapters"
    print(f"render job:    {render.id} ({render.total_tasks} task(s))")
    print(f"contact sheet: job {contact.id}, runs once every frame has rendered")
    if args.wait:
        watch(backend, render, "render")
        watch(backend, contact, "contact sheet")
        made = sorted(p.name for p in frames_dir.glob("frame_*.png"))
        print(f"frames:        {frames_dir}/ ({len(made)}: {made[0]} ... {made[-1]})")
    else:
        print(f"follow:        {fa_cli} wait {contact.id}")
        print(f"frames:        {frames_dir}/frame_0001.png ... frame_{args.frames:04d}.png")
    print(f"               {fa_cli} outputs {render.id} --thumbnails {out / 'thumbnails'}")
    print(f"contact sheet: {sheet}")
    print(f"render log:    {fa_cli} logs {render.id}")


if __name__ == "__main__":
    try:
        main()
    except fa.FarmAdapterError as exc:
        raise SystemExit(f"error: {exc}") from None
