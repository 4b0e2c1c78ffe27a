"""The ``farm-adapters`` command line.

Exit codes: 0 success; 1 the job failed (or was stopped) while waiting on it;
2 usage or invalid input (bad request, unknown target or job, bad configuration);
3 target unreachable or authentication failed; 4 a plug-in (or farm-adapters itself)
raised an unexpected exception, a bug. Errors are one line on stderr; ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from .config import TargetConfig, load_targets
from .dcc._cli import blender, katana
from .errors import (
    BackendError,
    ConfigurationError,
    FarmAdapterError,
    InvalidRequestError,
    JobNotFoundError,
    PluginError,
    SubmitError,
    TransferError,
    UnsupportedOperationError,
)
from .manager import FarmPluginManager, get_plugin_manager
from .models import Job, JobState

__all__ = [
    "EXIT_BUG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "cli",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
#: A plug-in (named in the message) or farm-adapters itself raised an exception outside
#: the FarmAdapterError tree: a bug, not a problem with the input or the farm.
EXIT_BUG = 4
#: The largest byte offset `logs --offset` takes (a signed 64-bit file offset).
MAX_LOG_OFFSET = 2**63 - 1

_STATE_STYLE = {
    JobState.QUEUED: "cyan",
    JobState.RUNNING: "blue",
    JobState.STOPPING: "yellow",
    JobState.COMPLETED: "green",
    JobState.FAILED: "red",
    JobState.STOPPED: "yellow",
    JobState.UNKNOWN: "magenta",
}


def exit_code_for(exc: FarmAdapterError) -> int:
    """The documented exit code of an error."""
    if isinstance(exc, SubmitError):
        return EXIT_UNREACHABLE if exc.transient else EXIT_FAILED
    if isinstance(exc, UnsupportedOperationError):
        return EXIT_USAGE
    if isinstance(exc, (BackendError, TransferError)):
        return EXIT_UNREACHABLE
    if isinstance(exc, (ConfigurationError, InvalidRequestError, JobNotFoundError, PluginError)):
        return EXIT_USAGE
    return EXIT_FAILED


class Context:
    """What every command shares: options, targets, plug-ins, output."""

    def __init__(self, config: str | None, debug: bool) -> None:
        self.config_path = config
        self.debug = debug
        self._targets: TargetConfig | None = None
        self._manager: FarmPluginManager | None = None

    @property
    def targets(self) -> TargetConfig:
        if self._targets is None:
            self._targets = load_targets(self.config_path)
        return self._targets

    @property
    def manager(self) -> FarmPluginManager:
        if self._manager is None:
            manager = get_plugin_manager()
            manager.on_hook_error = _warn
            self._manager = manager
        return self._manager

    def backend(self, target: str | None) -> Any:
        return self.targets.get(target).create_backend(self.manager)

    def backend_for_job(self, job_id: str, target: str | None) -> Any:
        """The backend holding ``job_id``: the given target, else the journal's record,
        else the default target."""
        if target is None:
            from .journal import Journal

            entry = Journal().get(job_id)
            if entry is not None:
                target = entry.target
        return self.backend(target)


pass_ctx = click.make_pass_decorator(Context)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def describe_bug(exc: BaseException, manager: FarmPluginManager | None) -> str:
    """One line for an exception outside the FarmAdapterError tree, naming the plug-in
    (and where it was loaded from) whose code raised it."""
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    who = manager.blame(exc) if manager is not None else None
    if who is not None:
        return (
            f"{who} raised {what}; this is a bug in that plug-in: run with --debug for "
            f"the traceback and tell its author, or block it with FARM_ADAPTERS_BLOCK"
        )
    return (
        f"unexpected {what}; this is a bug in farm-adapters: run with --debug and report "
        f"the traceback"
    )


def _current_manager() -> FarmPluginManager | None:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Context) if ctx is not None else None
    return obj._manager if obj is not None else None


@contextmanager
def handle_errors(debug: bool) -> Iterator[None]:
    """One readable line per error, the documented exit code, the traceback with
    --debug. An exception outside the FarmAdapterError tree (a plug-in's bug) is one
    line too, naming the plug-in, with exit code 4."""
    try:
        yield
    except FarmAdapterError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        fail(str(exc), exit_code_for(exc))
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise  # click's own ways to end a command: usage errors, ctx.exit()
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        fail(describe_bug(exc, _current_manager()), EXIT_BUG)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _job_json(job: Job) -> dict[str, Any]:
    data = job.model_dump(mode="json")
    data["task_counts"] = {str(k): v for k, v in job.task_counts.items()}
    return data


def _fmt_time(value: Any) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _state_text(state: JobState) -> str:
    return f"[{_STATE_STYLE[state]}]{state.value}[/]"


# -- the group -------------------------------------------------------------------------


class _Group(click.Group):
    """Keeps the order commands were added in `--help`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    envvar="FARM_ADAPTERS_CONFIG",
    help="Targets file (default: ./farm-adapters.toml, then the user config directory).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="farm-adapters")
@click.pass_context
def cli(ctx: click.Context, config: str | None, debug: bool) -> None:
    """Send render jobs to any render farm, and follow them."""
    ctx.obj = Context(config, debug)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def backends(obj: Context, as_json: bool) -> None:
    """List the backends, where each comes from, and whether it can be used."""
    with handle_errors(obj.debug):
        infos = obj.manager.list_backends()
        errors = obj.manager.errors
        if as_json:
            _dump(
                {
                    "backends": [
                        {
                            "name": b.name,
                            "display_name": b.display_name,
                            "origin": b.origin,
                            "available": b.available,
                            "reason": b.reason,
                            "capabilities": sorted(str(c) for c in b.cls.capabilities)
                            if b.cls
                            else [],
                        }
                        for b in infos
                    ],
                    "errors": [
                        {"origin": getattr(e, "origin", ""), "message": str(e)} for e in errors
                    ],
                }
            )
            return
        from rich.table import Table

        table = Table(title="backends", title_justify="left")
        for column in ("name", "available", "origin", "notes"):
            table.add_column(column, overflow="fold")
        for b in infos:
            table.add_row(
                b.name,
                "[green]yes[/]" if b.available else "[red]no[/]",
                b.origin,
                b.reason if not b.available else b.display_name,
            )
        console = _console()
        console.print(table)
        for error in errors:
            console.print(f"[red]plug-in error:[/] {error}")


@cli.command()
@click.option("--check", "run_check", is_flag=True, help="Run each target's self-test.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def targets(obj: Context, run_check: bool, as_json: bool) -> None:
    """List the configured render targets (secrets are shown as references)."""
    with handle_errors(obj.debug):
        config = obj.targets
        rows = []
        worst = EXIT_OK
        for target in config:
            row: dict[str, Any] = {
                "name": target.name,
                "backend": target.backend,
                "description": target.description,
                "default": target.name == config.default_target,
                "settings": target.public_settings(),
                "storage": target.public_storage(),
                "path_mappings": [m.model_dump(exclude_none=True) for m in target.path_mappings],
                "source": str(target.source) if target.source else None,
            }
            if run_check:
                ok, detail, code = _check_target(obj, target.name)
                row["check"] = {"ok": ok, "detail": detail}
                worst = max(worst, code)
            rows.append(row)
        if as_json:
            _dump({"source": str(config.source) if config.source else None, "targets": rows})
        else:
            from rich.table import Table

            table = Table(
                title=f"targets ({config.source or 'no targets file; built-in local only'})",
                title_justify="left",
            )
            for column in ("name", "backend", "description", *(["check"] if run_check else [])):
                table.add_column(column, overflow="fold")
            for row in rows:
                name = row["name"] + (" (default)" if row["default"] else "")
                cells = [name, row["backend"], row["description"]]
                if run_check:
                    check = row["check"]
                    cells.append(
                        ("[green]ok[/] " if check["ok"] else "[red]failed[/] ") + check["detail"]
                    )
                table.add_row(*cells)
            _console().print(table)
        sys.exit(worst)


def _check_target(obj: Context, name: str) -> tuple[bool, str, int]:
    """(ok, detail, exit code) of one target's self-test."""
    try:
        backend = obj.backend(name)
        results = backend.check() + backend.check_storage()
    except FarmAdapterError as exc:
        return False, str(exc), EXIT_UNREACHABLE
    except Exception as exc:  # a plug-in's bug: say whose, go on with the other targets
        return False, describe_bug(exc, obj._manager), EXIT_BUG
    bad = [r for r in results if not r.ok]
    if bad:
        return False, "; ".join(f"{r.name}: {r.detail}" for r in bad), EXIT_UNREACHABLE
    return True, "; ".join(f"{r.name}: {r.detail}" for r in results), EXIT_OK


@cli.command()
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def check(obj: Context, target: str | None, as_json: bool) -> None:
    """Run a target's self-test: reachability, authentication, storage."""
    with handle_errors(obj.debug):
        backend = obj.backend(target)
        results = backend.check() + backend.check_storage()
        if as_json:
            _dump({"target": backend.target, "results": [r.model_dump() for r in results]})
        else:
            console = _console()
            for r in results:
                mark = "[green]ok[/]    " if r.ok else "[red]FAILED[/]"
                console.print(f"{mark} {r.name}: {r.detail}")
        sys.exit(EXIT_OK if all(r.ok for r in results) else EXIT_UNREACHABLE)


# -- submit ----------------------------------------------------------------------------


def _lifecycle_submit_options(f: Any) -> Any:
    from .cli_lifecycle import submit_options

    return submit_options(f)


def _apply_lifecycle_options(data: dict[str, Any], options: dict[str, Any]) -> None:
    from .cli_lifecycle import apply_submit_options

    apply_submit_options(data, options)


def _read_job_file(path: str) -> dict[str, Any]:
    from ._toml import TOMLDecodeError, TOMLEncodingError, read_toml

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


@cli.command()
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("-t", "--target", help="Render target (default: the file's default_target).")
@click.option("-f", "--frames", help="Frames, e.g. 1-100, 1-100x5, 1,5,9-12.")
@click.option("-c", "--chunk", type=int, help="Frames per task.")
@click.option("-n", "--name", help="Job name.")
@click.option("-e", "--env", "env", multiple=True, help="NAME=VALUE for the job (repeatable).")
@click.option("--file", "files", multiple=True, help="A file to copy to the job folder.")
@click.option("--priority", type=int, help="0 (lowest) to 100 (highest).")
@click.option("--retries", type=int, help="Re-run failed tasks this many times.")
@click.option("--shell", is_flag=True, help="Run COMMAND as one /bin/sh script, on purpose.")
@click.option("--dry-run", is_flag=True, help="Print exactly what would be sent; send nothing.")
@click.option("--wait", "wait_", is_flag=True, help="Show progress until the job ends.")
@click.option("--follow", is_flag=True, help="Stream the render log until the job ends.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
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

    \b
      farm-adapters submit job.toml --target studio-farm
      farm-adapters submit --frames 1-100 --chunk 10 -- mitsuba scene.xml -o out_{frame}.exr

    Options given here override the job file's.
    """
    from .models import parse_request
    from .submit import DryRun, follow_log
    from .submit import submit as submit_request

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
        with _transfer_progress(enabled=not as_json and bool(request.files)) as progress_cb:
            result = submit_request(backend, request, dry_run=dry_run, progress=progress_cb)
        if backend.last_transfer is not None and not as_json:
            _console(stderr=True).print(f"files: {backend.last_transfer.summary}")
        if isinstance(result, DryRun):
            _dump(
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
            _dump(_job_json(job))
            return
        if not as_json:
            _console(stderr=True).print(
                f"submitted job [bold]{job.id}[/] to {backend.target} "
                f"({job.total_tasks} task(s)); follow it with "
                f"`farm-adapters status {job.id}` and `farm-adapters logs {job.id}`"
            )
        if follow:
            for text in follow_log(backend, job.id):
                click.echo(text, nl=False)
            job = backend.get_job(job.id)
        elif wait_:
            job = _wait_with_progress(obj, backend, job)
        if as_json:
            _dump(_job_json(job))
        elif follow or wait_:
            _console(stderr=True).print(
                f"job {job.id} {_state_text(job.state)}"
                + (f": {job.message}" if job.message else "")
            )
        if (follow or wait_) and job.state is not JobState.COMPLETED:
            sys.exit(EXIT_FAILED)


@contextmanager
def _transfer_progress(enabled: bool) -> Iterator[Callable[[Any], None] | None]:
    """Two rich progress bars (bytes, files) while render files are copied."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("[bold]copying"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"),
        console=_console(stderr=True),
        transient=True,
    ) as progress:
        bar = progress.add_task("copying", total=None, files="")

        def show(p: Any) -> None:
            progress.update(
                bar,
                completed=p.bytes_done,
                total=p.bytes_total,
                files=f"{p.files_done}/{p.files_total} files",
            )

        yield show


def _wait_with_progress(obj: Context, backend: Any, job: Job) -> Job:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .submit import wait

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=False,
    ) as progress:
        bar = progress.add_task(
            job.name or job.id, total=job.total_tasks or None, state=job.state.value
        )

        def update(current: Job) -> None:
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


# -- jobs ------------------------------------------------------------------------------


@cli.command()
@click.option("-t", "--target", help="List the jobs on this farm instead of the journal's.")
@click.option(
    "-s",
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in JobState]),
    help="Only these states.",
)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def jobs(
    obj: Context, target: str | None, states: tuple[str, ...], limit: int, as_json: bool
) -> None:
    """List jobs: those submitted from this machine (the journal), or one farm's."""
    with handle_errors(obj.debug):
        wanted = [JobState(s) for s in states] or None
        found: list[Job] = []
        problems: list[str] = []
        if target is not None:
            found = obj.backend(target).get_jobs(wanted)[:limit]
        else:
            from .journal import Journal

            by_target: dict[str, list[str]] = {}
            order: list[tuple[str, str]] = []
            for entry in Journal().entries(limit=limit):
                by_target.setdefault(entry.target, []).append(entry.job_id)
                order.append((entry.target, entry.job_id))
            known: dict[tuple[str, str], Job] = {}
            for name, ids in by_target.items():
                try:
                    backend = obj.backend(name)
                    wanted_ids = set(ids)
                    for job in backend.get_jobs():
                        if job.id in wanted_ids:
                            known[(name, job.id)] = job
                except FarmAdapterError as exc:
                    problems.append(f"target {name}: {exc}")
                except Exception as exc:  # a plug-in's bug must not hide the other targets
                    problems.append(f"target {name}: {describe_bug(exc, obj._manager)}")
            found = [known[k] for k in order if k in known]
            if wanted:
                found = [j for j in found if j.state in wanted]
        if as_json:
            _dump({"jobs": [_job_json(j) for j in found], "errors": problems})
            return
        from rich.table import Table

        table = Table(title="jobs", title_justify="left")
        for column in ("id", "name", "target", "state", "tasks", "submitted"):
            table.add_column(column, overflow="fold")
        for j in found:
            table.add_row(
                j.id,
                j.name,
                j.target or "",
                _state_text(j.state),
                f"{j.finished_tasks}/{j.total_tasks}",
                _fmt_time(j.submitted_at),
            )
        console = _console()
        console.print(table)
        for problem in problems:
            _console(stderr=True).print(f"[yellow]warning:[/] {problem}")


@cli.command()
@click.argument("job_id")
@click.option("-t", "--target", help="Target holding the job (default: from the journal).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def status(obj: Context, job_id: str, target: str | None, as_json: bool) -> None:
    """Show one job's state and task counts."""
    with handle_errors(obj.debug):
        job = obj.backend_for_job(job_id, target).get_job(job_id)
        if as_json:
            _dump(_job_json(job))
            return
        console = _console()
        console.print(
            f"[bold]{job.id}[/] {job.name}  {_state_text(job.state)}  "
            f"{job.finished_tasks}/{job.total_tasks} tasks  target {job.target}"
        )
        counts = ", ".join(
            f"{s.value} {n}"
            for s, n in sorted(job.task_counts.items(), key=lambda kv: list(JobState).index(kv[0]))
        )
        console.print(f"tasks: {counts}")
        for label, value in (
            ("submitted", job.submitted_at),
            ("started", job.started_at),
            ("finished", job.finished_at),
        ):
            if value:
                console.print(f"{label}: {_fmt_time(value)}")
        if job.message:
            console.print(f"message: {job.message}")


@cli.command()
@click.argument("job_id")
@click.option("-t", "--target", help="Target holding the job (default: from the journal).")
@click.option("--follow", is_flag=True, help="Keep printing until the job ends.")
@click.option(
    "--offset",
    type=click.IntRange(0, MAX_LOG_OFFSET),
    default=0,
    help="Start at this byte offset.",
)
@pass_ctx
def logs(obj: Context, job_id: str, target: str | None, follow: bool, offset: int) -> None:
    """Print a job's render log."""
    from .submit import follow_log

    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        # Render-node paths are shown as this workstation's (the target's path_mappings).
        mapper = backend.path_mapper
        show = mapper.text_to_local if mapper else (lambda text: text)
        if follow:
            for text in follow_log(backend, job_id, offset=offset):
                click.echo(show(text), nl=False)
            return
        while True:
            chunk = backend.get_render_log(job_id, offset)
            click.echo(show(chunk.text), nl=False)
            if chunk.next_offset == offset or not chunk.text:
                break
            offset = chunk.next_offset


@cli.command()
@click.argument("job_id")
@click.option("-t", "--target", help="Target holding the job (default: from the journal).")
@click.option("--wait", "wait_", is_flag=True, help="Wait until the job has stopped.")
@pass_ctx
def stop(obj: Context, job_id: str, target: str | None, wait_: bool) -> None:
    """Stop a job (its running tasks get SIGTERM, then SIGKILL)."""
    from .submit import wait

    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        backend.stop_job(job_id)
        job = wait(backend, job_id, poll_interval=0.2) if wait_ else backend.get_job(job_id)
        _console(stderr=True).print(f"job {job_id} {_state_text(job.state)}")


@cli.command()
@click.argument("job_id")
@click.option("-t", "--target", help="Target holding the job (default: from the journal).")
@click.option("--wait", "wait_", is_flag=True, help="Show progress until the job ends.")
@pass_ctx
def restart(obj: Context, job_id: str, target: str | None, wait_: bool) -> None:
    """Run a finished, failed or stopped job again (a new attempt)."""
    with handle_errors(obj.debug):
        backend = obj.backend_for_job(job_id, target)
        backend.restart_job(job_id)
        job = backend.get_job(job_id)
        if wait_:
            job = _wait_with_progress(obj, backend, job)
        _console(stderr=True).print(f"job {job_id} {_state_text(job.state)}")
        if wait_ and job.state is not JobState.COMPLETED:
            sys.exit(EXIT_FAILED)


@cli.group()
def emulate() -> None:
    """Run a farm emulator on this machine (needs the `emulators` extra)."""


@emulate.command("ovfarm")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8222, show_default=True)
@click.option(
    "--api-key",
    envvar="FARM_ADAPTERS_EMULATOR_API_KEY",
    default="change-me",
    show_default=True,
    help="The X-API-KEY jobs/save and jobs/remove expect.",
)
@click.option(
    "--job-dir",
    type=click.Path(file_okay=False),
    help="Keep job definitions as .kit files here (survive a restart).",
)
@click.option("--agents", type=int, default=2, show_default=True, help="Built-in agents.")
@click.option("--labels", default="", help="Comma-separated labels of the built-in agents.")
@click.option(
    "--cancel-delay",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds before the queue forces a cancelling task to cancelled.",
)
@click.option(
    "--propagation-delay",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds before agents see a saved job definition.",
)
@click.option(
    "--log-interval",
    type=float,
    default=0.5,
    show_default=True,
    help="Seconds between an agent's log uploads.",
)
def emulate_ovfarm(
    host: str,
    port: int,
    api_key: str,
    job_dir: str | None,
    agents: int,
    labels: str,
    cancel_delay: float,
    propagation_delay: float,
    log_interval: float,
) -> None:
    """An Omniverse Farm queue (2.0.42) with agents that really run tasks."""
    try:
        from .testing.emulators._server import serve
        from .testing.emulators.ovfarm import create_app
    except ImportError as exc:
        fail(
            f"the emulator needs the emulators extra: pip install "
            f"'farm-adapters[emulators]' ({exc})",
            EXIT_USAGE,
        )
    app = create_app(
        api_key=api_key,
        job_dir=job_dir,
        agents=agents,
        agent_labels=[x for x in labels.split(",") if x],
        cancel_delay=cancel_delay,
        propagation_delay=propagation_delay,
        log_interval=log_interval,
    )
    click.echo(f"Omniverse Farm emulator on http://{host}:{port} (Ctrl-C to stop)", err=True)
    serve(app, host=host, port=port)


@emulate.command("runai")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8333, show_default=True)
@click.option("--client-id", default="farm-adapters", show_default=True)
@click.option(
    "--client-secret",
    envvar="FARM_ADAPTERS_EMULATOR_CLIENT_SECRET",
    default="change-me",
    show_default=True,
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    default=["team-a"],
    show_default=True,
    help="Project names (repeatable).",
)
@click.option("--token-lifetime", type=float, default=3600.0, show_default=True)
@click.option(
    "--nfs-root",
    type=click.Path(file_okay=False),
    help="Local folder standing in for NFS servers (server/path below it).",
)
def emulate_runai(
    host: str,
    port: int,
    client_id: str,
    client_secret: str,
    projects: tuple[str, ...],
    token_lifetime: float,
    nfs_root: str | None,
) -> None:
    """A Run:ai control plane with a one-node cluster that really runs trainings."""
    try:
        from .testing.emulators._server import serve
        from .testing.emulators.runai import create_app
    except ImportError as exc:
        fail(
            f"the emulator needs the emulators extra: pip install "
            f"'farm-adapters[emulators]' ({exc})",
            EXIT_USAGE,
        )
    app = create_app(
        client_id=client_id,
        client_secret=client_secret,
        projects=list(projects),
        token_lifetime=token_lifetime,
        nfs_root=nfs_root,
    )
    click.echo(f"Run:ai emulator on http://{host}:{port} (Ctrl-C to stop)", err=True)
    serve(app, host=host, port=port)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(farm-adapters completion bash)"."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    comp = cls(cli, {}, "farm-adapters", "_FARM_ADAPTERS_COMPLETE")
    click.echo(comp.source())


cli.add_command(blender)
cli.add_command(katana)

from .cli_lifecycle import commands as _lifecycle_commands  # noqa: E402 - needs cli above

for _command in _lifecycle_commands:
    cli.add_command(_command)


def _add_plugin_commands() -> None:
    if os.environ.get("_FARM_ADAPTERS_NO_PLUGIN_COMMANDS"):
        return
    try:
        manager = get_plugin_manager()
        manager.hook.farm_adapters_register_commands(cli=cli)
    except Exception as exc:  # a plug-in's bug must not take the command line down
        click.echo(f"warning: a plug-in failed to add commands: {exc}", err=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``farm-adapters`` console script."""
    _add_plugin_commands()
    cli.main(args=list(argv) if argv is not None else None, prog_name="farm-adapters")


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module, not this __main__ copy: plug-in commands refer to
    # farm_adapters.cli's classes.
    from farm_adapters.cli import main as _main

    _main()
