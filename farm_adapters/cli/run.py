"""``submit``: send a job, optionally wait for it or follow its log."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import InvalidRequestError
from ._common import (
    EXIT_FAILED,
    TARGET_HELP,
    Context,
    cli,
    complete_target,
    console,
    dump,
    esc,
    handle_errors,
    hint,
    job_json,
    pass_ctx,
    state_text,
    still_running,
    transfer_progress,
)


def _read_job_file(path: str) -> dict[str, Any]:
    from .._toml import TOMLDecodeError, TOMLEncodingError, read_toml

    try:
        return read_toml(path)
    except OSError as exc:
        raise InvalidRequestError(f"cannot read job file {path}: {exc.strerror}") from exc
    except TOMLEncodingError as exc:
        raise InvalidRequestError(f"job file {exc}") from exc
    except TOMLDecodeError as exc:
        raise InvalidRequestError(f"job file {path} is not valid TOML: {exc}") from exc


def _parse_env(pairs: Sequence[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"--env {pair!r}: write NAME=VALUE", field="environment")
        env[key] = value
    return env


def _refuse_one_string_command(command: Sequence[str]) -> None:
    """`submit "echo hi {frame}"` (a forgotten `--` and quotes) would run a program
    named "echo hi 1": refuse it and show the command to type."""
    first = command[0]
    if any(c.isspace() for c in first) and not os.path.exists(first):
        words = " ".join([*first.split(), *command[1:]])
        raise InvalidRequestError(
            f"{first!r} is one argument with spaces, not a program or a job file: put the "
            f"command after `--`, one word per argument (farm-adapters submit -- {words}), "
            f"or add --shell to run it as a /bin/sh script",
            field="commands",
        )


def _check_programs_exist(request: Any) -> None:
    """On the local backend the program must exist here: say so now rather than fail
    on the node with exit code 127."""
    import shutil

    for command in request.commands:
        if getattr(command, "shell", False) or not command.argv:
            continue
        program = command.argv[0]
        if "{" in program:
            continue  # substituted per task
        if os.sep in program or (os.altsep and os.altsep in program):
            base = command.cwd or os.getcwd()
            if os.path.exists(os.path.join(base, program)):
                continue
        elif shutil.which(program, path=(command.env or {}).get("PATH")) is not None:
            continue
        raise InvalidRequestError(
            f"program {program!r} not found on this machine (the local target runs it "
            f"here): check the spelling or give its full path",
            field="commands",
        )


def _lifecycle_submit_options(f: Any) -> Any:
    from .lifecycle import submit_options

    return submit_options(f)


def _apply_lifecycle_options(data: dict[str, Any], options: dict[str, Any]) -> None:
    from .lifecycle import apply_submit_options

    apply_submit_options(data, options)


@cli.command(
    epilog="""\b
Examples:
  farm-adapters submit job.toml --target studio-farm
  farm-adapters submit --frames 1-100 --chunk 10 -- mitsuba s.xml -o {frame}.exr
  farm-adapters submit --frames 1-4 --wait -- sh -c 'echo frame {frame}'
  farm-adapters submit --shell --frames 1-2 -- 'echo hi {frame} > out_{frame}.txt'"""
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[JOB.toml] [-- COMMAND...]")
@click.option("-t", "--target", help=TARGET_HELP, shell_complete=complete_target)
@click.option("-f", "--frames", help="Frames, e.g. 1-100, 1-100x5, 1,5,9-12.")
@click.option("-c", "--chunk", type=int, help="Frames per task (default: 1).")
@click.option("-n", "--name", help="Job name (default: the job file's, else the program's).")
@click.option("-e", "--env", "env", multiple=True, help="NAME=VALUE for the job (repeatable).")
@click.option(
    "--file",
    "files",
    multiple=True,
    help="A file or folder to copy to the job's folder on the farm (repeatable).",
)
@click.option("--priority", type=int, help="0 (lowest) to 100 (highest).")
@click.option("--retries", type=int, help="Re-run failed tasks this many times (default: 0).")
@click.option("--shell", is_flag=True, help="Run COMMAND as one /bin/sh script, on purpose.")
@click.option("--dry-run", is_flag=True, help="Print exactly what would be sent; send nothing.")
@click.option("--wait", "wait_", is_flag=True, help="Show progress until the job ends.")
@click.option("--follow", is_flag=True, help="Stream the render log until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
@pass_ctx
@_lifecycle_submit_options
def submit(
    obj: Context,
    args: tuple[str, ...],
    target: str | None,
    frames: str | None,
    chunk: int | None,
    name: str | None,
    env: tuple[str, ...],
    files: tuple[str, ...],
    priority: int | None,
    retries: int | None,
    shell: bool,
    dry_run: bool,
    wait_: bool,
    follow: bool,
    as_json: bool,
    **lifecycle: Any,
) -> None:
    """Submit a job: a job file (TOML), or a command after `--`.

    {frame}, {start} and {end} in the command are replaced per task. Options given
    here override the job file's.
    """
    from ..models import parse_request
    from ..submit import DryRun, follow_log
    from ..submit import submit as submit_request

    with handle_errors(obj.debug):
        data: dict[str, Any] = {}
        job_file: str | None = None
        command = args
        if args and args[0].endswith(".toml"):
            job_file, command = args[0], args[1:]
        if job_file is not None:
            data = _read_job_file(job_file)
            file_target = data.pop("target", None)
            target = target or file_target
        if command:
            if "commands" in data:
                raise InvalidRequestError(
                    "give the command either in the job file or after `--`, not both",
                    field="commands",
                )
            if not shell:
                _refuse_one_string_command(command)
            data["commands"] = [
                {"argv": [" ".join(command)], "shell": True} if shell else list(command)
            ]
        if "commands" not in data:
            raise InvalidRequestError(
                "nothing to run: give a job file or a command after `--`, e.g. "
                "farm-adapters submit --frames 1-4 -- echo {frame}",
                field="commands",
            )
        for key, value in (
            ("frames", frames),
            ("chunk_size", chunk),
            ("name", name),
            ("priority", priority),
            ("max_retries", retries),
        ):
            if value is not None:
                data[key] = value
        if env:
            data["environment"] = {**data.get("environment", {}), **_parse_env(env)}
        if files:
            data["files"] = [*data.get("files", []), *files]
        _apply_lifecycle_options(data, lifecycle)
        try:
            request = parse_request(data)
        except InvalidRequestError as exc:
            if job_file is not None:
                raise InvalidRequestError(
                    f"{job_file}: {exc}", field=exc.field, problems=exc.problems
                ) from None
            raise
        backend = obj.backend(target)
        if backend.name == "local" and not dry_run:
            _check_programs_exist(request)
        with transfer_progress(enabled=not as_json and bool(request.files)) as progress_cb:
            result = submit_request(backend, request, dry_run=dry_run, progress=progress_cb)
        if backend.last_transfer is not None and not as_json:
            console(stderr=True).print(f"files: {esc(backend.last_transfer.summary)}")
        if isinstance(result, DryRun):
            dump(
                {
                    "target": result.target,
                    "backend": result.backend,
                    "tasks": result.request.task_count,
                    "payloads": result.payloads,
                }
            )
            return
        job = result
        if as_json and not (wait_ or follow):
            dump(job_json(job))
            return
        if not as_json:
            console(stderr=True).print(
                f"submitted job [bold]{esc(job.id)}[/] to {esc(backend.target)} "
                f"({job.total_tasks} task{'s' if job.total_tasks != 1 else ''})"
            )
            if not (wait_ or follow):
                hint(f"  status: farm-adapters status {job.id}")
                hint(f"  log:    farm-adapters logs {job.id}")
    if not (follow or wait_):
        return
    with handle_errors(obj.debug, interrupted=still_running(job.id)):
        if follow:
            for text in follow_log(backend, job.id):
                click.echo(text, nl=False)
            job = backend.get_job(job.id)
        else:
            job = wait_with_progress(obj, backend, job)
        if as_json:
            dump(job_json(job))
        else:
            console(stderr=True).print(
                f"job {esc(job.id)} {state_text(job.state)}"
                + (f": {esc(job.message)}" if job.message else "")
            )
        if job.state.value != "completed":
            sys.exit(EXIT_FAILED)


def wait_with_progress(obj: Context, backend: Any, job: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..submit import wait

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console(stderr=True),
        transient=False,
    ) as progress:
        bar = progress.add_task(
            esc(job.name or job.id), total=job.total_tasks or None, state=job.state.value
        )

        def update(current: Any) -> None:
            progress.update(
                bar,
                completed=current.finished_tasks,
                total=current.total_tasks or None,
                state=current.state.value,
            )

        return wait(
            backend,
            job.id,
            on_update=update,
            poll_interval=0.25,
            max_interval=2.0,
            manager=obj.manager,
        )
