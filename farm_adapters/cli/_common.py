"""What every command shares: exit codes, the context (targets, plug-ins), one way of
printing tables, JSON, errors and hints, and resolving which target holds a job.

Nothing heavy is imported here: pydantic models, rich and the backends are imported
inside the functions that need them, so ``--help`` and completion stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ..errors import (
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

if TYPE_CHECKING:
    from datetime import datetime

    from .._records import JobRecord
    from ..config import TargetConfig
    from ..manager import FarmPluginManager
    from ..models import Job

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
#: A plug-in (named in the message) or farm-adapters itself raised an exception outside
#: the FarmAdapterError tree: a bug, not a problem with the input or the farm.
EXIT_BUG = 4
#: The largest byte offset `logs --offset` takes (a signed 64-bit file offset).
MAX_LOG_OFFSET = 2**63 - 1

#: JobState values, in the model's order (kept here so option parsing needs no pydantic;
#: tests/test_cli_layout.py checks they match).
STATES = ("queued", "running", "stopping", "completed", "failed", "stopped", "unknown")
FINAL_STATES = ("completed", "failed", "stopped")

STATE_STYLE = {
    "queued": "cyan",
    "running": "blue",
    "stopping": "yellow",
    "completed": "green",
    "failed": "red",
    "stopped": "yellow",
    "unknown": "magenta",
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
        #: Set by the read-only commands (jobs, status, logs): then jobs of the built-in
        #: ``local`` target may be read through its light view (see ._light).
        self.read_only = False
        self._readers: dict[str, Any] = {}

    @property
    def targets(self) -> TargetConfig:
        if self._targets is None:
            from ..config import load_targets

            self._targets = load_targets(self.config_path)
        return self._targets

    @property
    def manager(self) -> FarmPluginManager:
        if self._manager is None:
            from ..manager import get_plugin_manager

            manager = get_plugin_manager()
            manager.on_hook_error = warn
            self._manager = manager
        return self._manager

    def backend(self, target: str | None, **overrides: Any) -> Any:
        reader = self._reader(target) if self.read_only else None
        if reader is not None:
            return reader
        return self._full_backend(target, **overrides)

    def _full_backend(self, target: str | None, **overrides: Any) -> Any:
        show_notices()
        return self.targets.get(target).create_backend(self.manager, **overrides)

    def _reader(self, target: str | None) -> Any:
        """The light view of ``local`` when it may answer for ``target`` (with no
        targets file, the default target is ``local``); else None."""
        from . import _light

        name = target or "local"
        if name != "local" or not _light.usable(self.config_path):
            return None
        if name not in self._readers:
            self._readers[name] = _light.local_reader(lambda: self._full_backend(name))
        return self._readers[name]

    def prepare_backends(self, targets: Mapping[str, Iterable[str]]) -> None:
        """Build what threads reading ``targets`` (name -> the job ids wanted) at once
        share (the plug-in manager, the targets file) before they start, so they do not
        race to build it; nothing when every one is read through the light view, which
        is told the ids so it reads only those."""
        readers = {t: self._reader(t) if self.read_only else None for t in targets}
        for name, reader in readers.items():
            if reader is not None:
                reader.wanted = frozenset(targets[name])
        if all(reader is not None for reader in readers.values()):
            return
        self.manager  # noqa: B018
        with suppress(FarmAdapterError):
            self.targets  # noqa: B018 - a bad file marks every row, in the probes

    def backend_for_job(self, job_id: str, target: str | None) -> Any:
        """The backend holding ``job_id``: the given target; else the journal's record;
        else the first configured target whose farm knows the id (the default first);
        else an error suggesting --target."""
        if target is not None:
            return self.backend(target)
        from ..journal import Journal

        recorded = Journal().target_of(job_id)
        if recorded is not None:
            return self.backend(recorded)
        return self._search_targets(job_id)

    def _search_targets(self, job_id: str) -> Any:
        config = self.targets
        names = [config.default_target] + [
            t.name for t in config if t.name != config.default_target
        ]
        for name in names:
            try:
                backend = self.backend(name, timeout=2.0, retries=0)
                backend.get_job_state(job_id)
            except FarmAdapterError:
                continue
            return self.backend(name)
        error = JobNotFoundError(job_id)
        error.args = (
            f"no job {job_id!r} in this machine's journal nor on the target(s) "
            f"{', '.join(names)}; list them with `farm-adapters jobs`, or if the job is "
            f"on another farm, name its target with --target NAME",
        )
        raise error


pass_ctx = click.make_pass_decorator(Context)


def show_notices() -> None:
    """Print what backends say they are waiting for (the ``farm_adapters.notice``
    logger) on stderr, so no wait is silent."""
    import logging

    logger = logging.getLogger("farm_adapters.notice")
    if not any(getattr(h, "_farm_adapters_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("note: %(message)s"))
        handler._farm_adapters_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


# -- output ----------------------------------------------------------------------------


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def esc(text: object) -> str:
    """User, farm and configuration text made safe for rich markup ("[targets.gpu]"
    stays as written)."""
    from rich.markup import escape

    return escape(str(text))


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    click.echo(f"warning: {message}", err=True)


def hint(message: str) -> None:
    """A next step, on its own line(s) so a command to copy is never broken."""
    click.echo(message, err=True)


def dump(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def job_json(job: Job | JobRecord) -> dict[str, Any]:
    from .._records import JobRecord

    data = job.to_json() if isinstance(job, JobRecord) else job.model_dump(mode="json")
    data["task_counts"] = {str(k): v for k, v in job.task_counts.items()}
    return data


def fmt_time(value: datetime | float | None, now: datetime | None = None) -> str:
    """Compact local time: ``09:40`` today, ``11-22 09:40`` this year, else the date."""
    from datetime import datetime

    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value).astimezone()
    local = value.astimezone()
    now = now or datetime.now().astimezone()
    if local.date() == now.date():
        return local.strftime("%H:%M")
    if local.year == now.year:
        return local.strftime("%m-%d %H:%M")
    return local.strftime("%Y-%m-%d")


def fmt_full_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def state_text(state: object) -> str:
    value = getattr(state, "value", state)
    return f"[{STATE_STYLE.get(str(value), 'white')}]{value}[/]"


# -- errors ----------------------------------------------------------------------------


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


def current_manager() -> FarmPluginManager | None:
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_object(Context) if ctx is not None else None
    return obj._manager if obj is not None else None


@contextmanager
def handle_errors(debug: bool, interrupted: str = "interrupted") -> Iterator[None]:
    """One readable line per error, the documented exit code, the traceback with
    --debug. An exception outside the FarmAdapterError tree (a plug-in's bug) is one
    line too, naming the plug-in, with exit code 4. ``interrupted`` is what Ctrl-C
    prints (a command that waits says the job goes on)."""
    try:
        yield
    except FarmAdapterError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        fail(str(exc), exit_code_for(exc))
    except KeyboardInterrupt:
        click.echo(interrupted, err=True)
        sys.exit(130)
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise  # click's own ways to end a command: usage errors, ctx.exit()
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        fail(describe_bug(exc, current_manager()), EXIT_BUG)


def still_running(job_id: str) -> str:
    """What Ctrl-C while waiting on a job prints: the job goes on, and how to stop it."""
    return (
        f"stopped waiting; job {job_id} goes on running on the farm.\n"
        f"  follow it: farm-adapters status {job_id}\n"
        f"  stop it:   farm-adapters stop {job_id}"
    )


# -- the group -------------------------------------------------------------------------


class Group(click.Group):
    """The main command: built-in commands are imported on first use.

    :attr:`lazy` names each built-in command's module and attribute and keeps its short
    help, so ``--help`` and completing a command name import no command module; running
    a command imports only its own. ``--help`` lists the built-ins in :attr:`lazy`'s
    order, then commands added by plug-ins.
    """

    #: name -> (module under farm_adapters, attribute, short help); filled in by
    #: :mod:`farm_adapters.cli`, checked against the commands by the tests.
    lazy: dict[str, tuple[str, str, str]] = {}

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return [*self.lazy, *(name for name in self.commands if name not in self.lazy)]

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            from importlib import import_module

            module, attr, _ = self.lazy[cmd_name]
            command = getattr(import_module(module, "farm_adapters"), attr)
            self.commands.setdefault(cmd_name, command)
        return self.commands.get(cmd_name)

    def command_help(self, name: str, limit: int = 45) -> str:
        """A command's line in ``--help``, without importing it."""
        command = self.commands.get(name)
        if command is None:
            command = click.Command(name, help=self.lazy[name][2])
        return command.get_short_help_str(limit)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = [
            n for n in self.list_commands(ctx) if n in self.lazy or not self.commands[n].hidden
        ]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        with formatter.section("Commands"):
            formatter.write_dl([(n, self.command_help(n, limit)) for n in names])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        names = [n for n in self.list_commands(ctx) if n.startswith(incomplete)]
        results = [
            CompletionItem(n, help=self.command_help(n))
            for n in names
            if n in self.lazy or not self.commands[n].hidden
        ]
        # Options of the group itself (click's own completion of them, not of commands).
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  farm-adapters submit --frames 1-100 -- blender -b s.blend -f {frame}
  farm-adapters jobs --state running --since 2d
  farm-adapters status JOB_ID --tasks
  farm-adapters logs JOB_ID --task 3 --tail 50

Plug-ins add commands of their own (the ovfarm backend adds `jobdefs`): run
`farm-adapters COMMAND --help` for one.""",
)
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


TARGET_HELP = (
    "Render target, a [targets.NAME] of the targets file (default: its default_target; "
    "see `farm-adapters targets`)."
)
JOB_TARGET_HELP = (
    "Target holding the job (default: the one recorded in this machine's journal, "
    "else the first configured target that knows the id)."
)


# -- completion (journal and targets file only: fast, no network) ------------------------


def complete_job_id(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        from ..journal import Journal

        rows = Journal().complete(incomplete)
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [CompletionItem(job_id, help=f"{name} on {target}") for job_id, name, target in rows]


def complete_target(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        from ..config import load_targets

        root = ctx.find_root().params.get("config")
        names = [t.name for t in load_targets(root)]
    except Exception:
        return []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


@contextmanager
def transfer_progress(
    enabled: bool, verb: str = "copying"
) -> Iterator[Callable[[Any], None] | None]:
    """A rich progress bar (bytes, speed, files) while files are copied through a
    storage (render files at submit, outputs at download); None when not ``enabled``."""
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
        TextColumn(f"[bold]{verb}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[files]}"),
        console=console(stderr=True),
        transient=True,
    ) as progress:
        bar = progress.add_task(verb, total=None, files="")

        def show(p: Any) -> None:
            progress.update(
                bar,
                completed=p.bytes_done,
                total=p.bytes_total,
                files=f"{p.files_done}/{p.files_total} files",
            )

        yield show
