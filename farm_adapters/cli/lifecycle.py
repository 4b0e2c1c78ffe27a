"""``farm-adapters`` commands for a job's life after submit: release, priority, wait,
outputs (listing, download, thumbnails), delete and clean; and submit's options
``--after``, ``--after-any``, ``--hold``, ``--notify/--no-notify``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    handle_errors,
    pass_ctx,
    transfer_progress,
)
from ._common import console as _console
from ._common import dump as _dump
from ._common import job_json as _job_json
from ._common import state_text as _state_text

__all__ = ["apply_submit_options", "commands", "submit_options"]

F = TypeVar("F", bound=Callable[..., Any])

_TARGET = click.option("-t", "--target", help="Target holding the job (default: from the journal).")


def submit_options(f: F) -> F:
    """Submit's options for dependencies, holds and notifications."""
    for option in reversed(
        [
            click.option(
                "--after",
                "after_ok",
                multiple=True,
                metavar="ID",
                help="Run only once job ID succeeded (repeatable).",
            ),
            click.option(
                "--after-any",
                "after_any",
                multiple=True,
                metavar="ID",
                help="Run once job ID ended, however it ended (repeatable).",
            ),
            click.option(
                "--hold", is_flag=True, default=None, help="Submit held: `release` runs it."
            ),
            click.option(
                "--notify/--no-notify",
                default=None,
                help="Notify the job's end (default: as the targets file's [notify] says).",
            ),
        ]
    ):
        f = option(f)
    return f


def apply_submit_options(data: dict[str, Any], options: dict[str, Any]) -> None:
    """Put submit's lifecycle options into the request data (over a job file's)."""
    after = [{"job_id": i, "condition": "succeeded"} for i in options.get("after_ok") or ()]
    after += [{"job_id": i, "condition": "ended"} for i in options.get("after_any") or ()]
    if after:
        data["after"] = [*data.get("after", []), *after]
    if options.get("hold"):
        data["hold"] = True
    if options.get("notify") is not None:
        data["notify"] = options["notify"]


@click.command()
@click.argument("job_id")
@_TARGET
@pass_ctx
def release(obj: Context, job_id: str, target: str | None) -> None:
    """Let a job submitted with --hold run."""
    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        backend.release_job(job_id)
        job = backend.get_job(job_id)
        _console(stderr=True).print(f"job {job_id} released; {_state_text(job.state)}")


@click.command()
@click.argument("job_id")
@click.argument("value", type=click.IntRange(0, 100), metavar="N")
@_TARGET
@pass_ctx
def priority(obj: Context, job_id: str, value: int, target: str | None) -> None:
    """Change a job's priority: N from 0 (lowest) to 100 (highest)."""
    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        backend.set_priority(job_id, value)
        _console(stderr=True).print(f"job {job_id}: priority {value}")


@click.command("wait")
@click.argument("job_id")
@_TARGET
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def wait_command(
    obj: Context, job_id: str, target: str | None, timeout: float | None, as_json: bool
) -> None:
    """Wait until a job ends (and notify its end, once); exit 1 unless it completed."""
    from ..models import JobState
    from ..submit import wait

    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        job = wait(backend, job_id, timeout=timeout, manager=obj.manager)
        if as_json:
            _dump(_job_json(job))
        else:
            _console(stderr=True).print(
                f"job {job_id} {_state_text(job.state)}"
                + (f": {job.message}" if job.message else "")
            )
        sys.exit(EXIT_OK if job.state is JobState.COMPLETED else EXIT_FAILED)


@click.command()
@click.argument("job_id")
@_TARGET
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--download",
    "download_dir",
    type=click.Path(file_okay=False),
    help="Copy the files here (unchanged ones are skipped).",
)
@click.option(
    "--thumbnails",
    "thumbs_dir",
    type=click.Path(file_okay=False),
    help="Write a small PNG preview of each image here.",
)
@pass_ctx
def outputs(
    obj: Context,
    job_id: str,
    target: str | None,
    as_json: bool,
    download_dir: str | None,
    thumbs_dir: str | None,
) -> None:
    """List the files a job wrote; download them or make thumbnails."""
    import os

    from ..outputs import download_outputs
    from ..thumbnails import ThumbnailError, is_image, make_thumbnail

    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        files = backend.list_outputs(job_id)
        data: dict[str, Any] = {
            "job": job_id,
            "target": backend.target,
            "files": [f.model_dump(mode="json") for f in files],
        }
        if download_dir is not None:
            with transfer_progress(not as_json, "downloading") as progress:
                report = download_outputs(
                    files, download_dir, storage=backend.storage, progress=progress
                )
            data["downloaded"] = report.copied
            data["skipped"] = report.skipped
        if thumbs_dir is not None:
            made, problems = [], []
            opener = backend.storage.open_read if backend.storage is not None else None
            for f in files:
                if not is_image(f.path):
                    continue
                stem = os.path.splitext(os.path.basename(f.path))[0]
                try:
                    made.append(
                        str(
                            make_thumbnail(
                                f.path,
                                os.path.join(thumbs_dir, f"{stem}.png"),
                                mtime=f.mtime,
                                opener=opener if f.storage else None,
                            )
                        )
                    )
                except ThumbnailError as exc:
                    problems.append(str(exc))
            data["thumbnails"] = made
            data["thumbnail_problems"] = problems
        if as_json:
            _dump(data)
            return
        from rich.table import Table

        table = Table(title=f"outputs of {job_id}", title_justify="left")
        for column in ("path", "size", "modified"):
            table.add_column(column, overflow="fold")
        import datetime

        for f in files:
            when = datetime.datetime.fromtimestamp(f.mtime).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(f.path, f"{f.size:,}", when)
        _console().print(table)
        err = _console(stderr=True)
        if download_dir is not None:
            err.print(
                f"downloaded {len(data['downloaded'])} file(s) to {download_dir}, "
                f"{len(data['skipped'])} unchanged"
            )
        if thumbs_dir is not None:
            err.print(f"{len(data['thumbnails'])} thumbnail(s) in {thumbs_dir}")
            for problem in data["thumbnail_problems"]:
                err.print(f"[yellow]warning:[/] {problem}")


@click.command()
@click.argument("job_ids", nargs=-1, required=True, metavar="ID...")
@_TARGET
@click.option("--stop", is_flag=True, help="Stop a job still active first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def delete(
    obj: Context, job_ids: tuple[str, ...], target: str | None, stop: bool, as_json: bool
) -> None:
    """Delete jobs: their folder, state, logs and journal record."""
    from ..cleanup import delete as delete_job

    with handle_errors(obj.debug):
        reports = []
        for job_id in job_ids:
            backend = obj.backend_for_job(job_id, target)
            reports.append(delete_job(backend, job_id, stop=stop))
        if as_json:
            _dump({"deleted": [vars(r) for r in reports]})
            return
        err = _console(stderr=True)
        for r in reports:
            err.print(f"deleted job {r.job_id} ({r.target})")
            for note in r.notes:
                err.print(f"  note: {note}")


@click.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    help="Age, e.g. 7d, 12h, 30m: jobs submitted longer ago are deleted.",
)
@click.option("-t", "--target", help="Only jobs of this target.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def clean(obj: Context, older_than: str, target: str | None, dry_run: bool, as_json: bool) -> None:
    """Delete the finished jobs of this machine's journal older than an age."""
    from ..cleanup import clean_candidates, is_final, parse_age
    from ..cleanup import delete as delete_job
    from ..errors import FarmAdapterError

    with handle_errors(obj.debug):
        candidates = clean_candidates(parse_age(older_than), target=target)
        chosen: list[dict[str, Any]] = []
        skipped: list[dict[str, str]] = []
        for entry in candidates:
            try:
                backend = obj.backend(entry.target)
                final = is_final(backend, entry.job_id)
            except FarmAdapterError as exc:
                skipped.append({"job": entry.job_id, "target": entry.target, "why": str(exc)})
                continue
            if final is False:
                skipped.append({"job": entry.job_id, "target": entry.target, "why": "still active"})
                continue
            item: dict[str, Any] = {
                "job": entry.job_id,
                "target": entry.target,
                "name": entry.name,
            }
            if not dry_run:
                try:
                    item["removed"] = delete_job(backend, entry.job_id).removed
                except FarmAdapterError as exc:
                    skipped.append({"job": entry.job_id, "target": entry.target, "why": str(exc)})
                    continue
            chosen.append(item)
        if as_json:
            _dump({"dry_run": dry_run, "jobs": chosen, "skipped": skipped})
            return
        console = _console()
        verb = "would delete" if dry_run else "deleted"
        for item in chosen:
            console.print(f"{verb} {item['job']} ({item['target']}) {item['name']}")
        for s in skipped:
            console.print(f"kept {s['job']} ({s['target']}): {s['why']}")
        if not chosen and not skipped:
            console.print(f"no job older than {older_than}")


#: What cli.py adds to the ``farm-adapters`` group.
commands = [release, priority, wait_command, outputs, delete, clean]
