"""The value types every backend and caller shares.

- :class:`JobRequest` describes what to run: ordered argv :class:`Command` s, an
  optional :class:`~farm_adapters.frames.FrameSet` with a chunk size, files to copy,
  environment, :class:`Requirements`, priority and retries. :meth:`JobRequest.tasks`
  expands it into :class:`Task` s by substituting ``{frame}``, ``{start}``, ``{end}``,
  ``{frames}``, ``{folder}`` and ``{context}`` in every argument.
- :class:`JobState` is the one state vocabulary; :func:`derive_job_state` is the one rule
  that turns task states into a job state.
- :class:`Job`, :class:`LogChunk`, :class:`CheckResult` and
  :class:`InstallationMetadata` are what backends answer with.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ._records import JobState, TaskCounts, derive_job_state, task_count_fields
from .errors import InvalidRequestError
from .frames import FrameSet, chunk_frames

__all__ = [
    "FRAME_TOKENS",
    "CheckResult",
    "Command",
    "Dependency",
    "FrameSet",
    "InstallationMetadata",
    "Job",
    "JobRequest",
    "JobState",
    "LogChunk",
    "OutputFile",
    "Requirements",
    "Task",
    "derive_job_state",
    "parse_request",
    "validation_problems",
]

_STRICT = ConfigDict(extra="forbid", defer_build=True)


# -- states ----------------------------------------------------------------------------


# -- requests --------------------------------------------------------------------------


class Command(BaseModel):
    """One process to run: an argv list, never a shell string unless ``shell`` is True.

    With ``shell=True`` the argv holds exactly one string, a script run by ``/bin/sh -c``.
    """

    model_config = _STRICT

    argv: list[str] = Field(min_length=1)
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    shell: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(
                "a command is a list of arguments, not a string: write "
                f"{value.split()!r}, or {{argv = [{value!r}], shell = true}} "
                "to run it through a shell on purpose"
            )
        if isinstance(value, (list, tuple)):
            return {"argv": list(value)}
        return value

    @field_validator("argv", mode="before")
    @classmethod
    def _numbers_are_arguments(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"argv is a list of arguments, not a string: write {value.split()!r}")
        if isinstance(value, (list, tuple)):
            return [
                str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                for v in value
            ]
        return value

    @field_validator("argv")
    @classmethod
    def _argv_has_no_nul(cls, value: list[str]) -> list[str]:
        for i, arg in enumerate(value):
            if "\0" in arg:
                raise ValueError(
                    f"argument {i} holds a NUL byte, which no process can receive; remove it"
                )
        return value

    @field_validator("cwd")
    @classmethod
    def _cwd_has_no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\0" in value:
            raise ValueError("cwd holds a NUL byte, which no path can contain; remove it")
        return value

    @field_validator("env")
    @classmethod
    def _env_is_portable(cls, value: dict[str, str]) -> dict[str, str]:
        return check_environment(value)

    @model_validator(mode="after")
    def _shell_script_is_one_string(self) -> Command:
        if self.shell and len(self.argv) != 1:
            raise ValueError("with shell = true, argv holds exactly one string: the script to run")
        return self

    @model_validator(mode="after")
    def _format_widths_are_bounded(self) -> Command:
        for text in _command_texts(self):
            for match in _TOKEN_RE.finditer(text):
                if match.group(4):
                    _check_format_spec(match.group(3), match.group(4))
        return self

    def resolved_argv(self) -> list[str]:
        """The argv to execute: the script wrapped in ``/bin/sh -c`` when ``shell``."""
        if self.shell:
            return ["/bin/sh", "-c", self.argv[0]]
        return list(self.argv)


class Requirements(BaseModel):
    """What one task needs from the render node. Backends map these through one table
    and raise :class:`~farm_adapters.errors.InvalidRequestError` for what they cannot
    express; ``extra`` carries backend-specific settings explicitly."""

    model_config = _STRICT

    gpus: int | None = Field(default=None, ge=0, description="GPU devices per task")
    cpus: float | None = Field(default=None, gt=0, description="CPU cores per task")
    memory: ByteSize | None = Field(default=None, description="memory per task, e.g. '8GiB'")
    labels: list[str] = Field(default_factory=list, description="node labels to match")
    pool: str | None = Field(default=None, description="node pool or partition")
    timeout: float | None = Field(default=None, gt=0, description="seconds per task")
    extra: dict[str, Any] = Field(default_factory=dict, description="backend-specific")


#: What an environment variable name may be: POSIX shells refuse anything else
#: (``sh -c 'export É=1'`` fails), and ``=`` or NUL cannot be passed at all.
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` unchanged if every name matches :data:`ENV_NAME_RE` and no value holds
    a NUL byte; else ValueError naming the variable and the fix."""
    for name, value in env.items():
        if not ENV_NAME_RE.fullmatch(name):
            raise ValueError(
                f"{name!r} is not a valid environment variable name: use ASCII letters, "
                f"digits and '_', not starting with a digit (e.g. RENDER_QUALITY)"
            )
        if "\0" in value:
            raise ValueError(f"the value of {name} holds a NUL byte, which no process can receive")
    return dict(env)


class Dependency(BaseModel):
    """A job this one waits for: ``condition`` "succeeded" (the default) starts this job
    only when that one completed; "ended" starts it however that one ended. Backends that
    cannot honour dependencies refuse a request that has any (field ``after``)."""

    model_config = _STRICT

    job_id: str = Field(min_length=1, description="the id submit returned for that job")
    condition: Literal["succeeded", "ended"] = "succeeded"

    @model_validator(mode="before")
    @classmethod
    def _from_id(cls, value: Any) -> Any:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return {"job_id": str(value)}
        return value


_CONTEXT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: The tokens substituted in argv, cwd and env by :meth:`JobRequest.tasks`.
FRAME_TOKENS = ("frame", "start", "end", "frames")
#: The widest field a token's format spec may ask for (``{frame:04d}`` asks for 4): a
#: typo such as ``{frame:0999999999d}`` must not build gigabyte arguments.
MAX_FORMAT_WIDTH = 64
_SPEC_NUMBER_RE = re.compile(r"\d+")
_TOKEN_RE = re.compile(
    r"\{\{(frame|start|end|frames|folder|context)((?::[^{}]*)?)\}\}"
    r"|\{(frame|start|end|frames|folder|context)(?::([^{}]*))?\}"
)


class JobRequest(BaseModel):
    """Everything a backend needs to run one job.

    ``commands`` run in order on the render node, once per task. With ``frames``, the
    frames are split into chunks of ``chunk_size`` and each chunk becomes a task whose
    arguments have ``{frame}`` (first frame of the chunk), ``{start}``, ``{end}`` and
    ``{frames}`` (comma list) substituted; a format spec works too (``{frame:04d}``).
    ``{folder}`` is the temporary folder on the render node and ``{context}`` the render
    context. Write ``{{frame}}`` for a literal ``{frame}``.
    """

    model_config = _STRICT

    name: str = Field(default="", max_length=200)
    render_context: str = Field(default_factory=lambda: str(uuid.uuid4()))
    commands: list[Command] = Field(min_length=1)
    frames: FrameSet | None = None
    chunk_size: int = Field(default=1, ge=1)
    files: list[str] = Field(default_factory=list, description="local files to copy")
    outputs: list[str] = Field(default_factory=list, description="paths the job writes")
    environment: dict[str, str] = Field(default_factory=dict)
    requirements: Requirements = Field(default_factory=Requirements)
    priority: int = Field(default=50, ge=0, le=100, description="0 lowest, 100 highest")
    max_retries: int = Field(default=0, ge=0, le=100)
    after: list[Dependency] = Field(
        default_factory=list, description="jobs this one waits for (job ids or tables)"
    )
    hold: bool = Field(
        default=False, description="submit held: nothing runs until the job is released"
    )
    notify: bool | None = Field(
        default=None,
        description="notify the job's end: None as the targets file's [notify] says, "
        "True or False to override it",
    )
    user: str | None = None
    comment: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)
    folder: str | None = Field(
        default=None, description="the temporary folder on the render node; set by submit()"
    )

    @field_validator("render_context")
    @classmethod
    def _context_is_path_safe(cls, value: str) -> str:
        if not _CONTEXT_RE.match(value):
            raise ValueError(
                "the render context is used in paths: letters, digits, '.', '_' and '-' "
                "only, at most 128 characters (a UUID4 is the usual choice)"
            )
        return value

    @field_validator("environment")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        return check_environment(value)

    @model_validator(mode="after")
    def _check_tokens(self) -> JobRequest:
        if not self.name:
            self.name = os.path.basename(self.commands[0].argv[0]) or "job"
        if self.frames is None:
            for i, command in enumerate(self.commands):
                for text in _command_texts(command):
                    for match in _TOKEN_RE.finditer(text):
                        token = match.group(3)
                        if token in FRAME_TOKENS:
                            raise ValueError(
                                f"commands[{i}] uses {{{token}}} but the request has no "
                                f"frames; add frames, e.g. frames = '1-10'"
                            )
        return self

    @property
    def task_count(self) -> int:
        """How many tasks :meth:`tasks` yields, without building them."""
        if self.frames is None:
            return 1
        return -(-len(self.frames) // self.chunk_size)

    def tasks(self) -> list[Task]:
        """Expand the request into tasks, one per chunk of frames (or one in all)."""
        values_base = {
            "folder": self.folder if self.folder is not None else "{folder}",
            "context": self.render_context,
        }
        if self.frames is None:
            return [Task(0, (), tuple(_substitute(c, values_base) for c in self.commands))]
        tasks = []
        for index, chunk in enumerate(chunk_frames(list(self.frames), self.chunk_size)):
            values: dict[str, Any] = {
                **values_base,
                "frame": chunk[0],
                "start": chunk[0],
                "end": chunk[-1],
                "frames": ",".join(str(f) for f in chunk),
            }
            tasks.append(Task(index, chunk, tuple(_substitute(c, values) for c in self.commands)))
        return tasks


class Task:
    """One unit of work on the farm: the commands of a request for one chunk of frames."""

    __slots__ = ("commands", "frames", "index")

    def __init__(self, index: int, frames: tuple[int, ...], commands: tuple[Command, ...]):
        self.index = index
        self.frames = frames
        self.commands = commands

    def __repr__(self) -> str:
        return f"Task(index={self.index}, frames={self.frames!r}, commands={self.commands!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Task):
            return NotImplemented
        return (self.index, self.frames, self.commands) == (
            other.index,
            other.frames,
            other.commands,
        )

    __hash__ = None  # type: ignore[assignment]  # holds mutable pydantic models

    @property
    def label(self) -> str:
        """A short human label: 'task 3 (frames 31-40)'."""
        if not self.frames:
            return f"task {self.index}"
        if len(self.frames) == 1:
            return f"task {self.index} (frame {self.frames[0]})"
        return f"task {self.index} (frames {self.frames[0]}-{self.frames[-1]})"


def _check_format_spec(token: str, spec: str) -> None:
    """Refuse a format spec asking for a field wider (or a precision longer) than
    :data:`MAX_FORMAT_WIDTH`; the digits in a spec are its fill, width and precision."""
    for number in _SPEC_NUMBER_RE.findall(spec):
        if len(number) > 3 or int(number) > MAX_FORMAT_WIDTH:
            raise ValueError(
                f"{{{token}:{spec[:40]}}} asks for {number.lstrip('0')[:20]} characters; "
                f"at most {MAX_FORMAT_WIDTH}: write e.g. {{{token}:04d}}"
            )


def _command_texts(command: Command) -> Iterable[str]:
    yield from command.argv
    if command.cwd:
        yield command.cwd
    yield from command.env.values()


def _replace(text: str, values: Mapping[str, Any]) -> str:
    if "{" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        if match.group(1) is not None:  # {{token}} -> literal {token}
            return "{" + match.group(1) + match.group(2) + "}"
        token, spec = match.group(3), match.group(4)
        if token not in values:
            return match.group(0)
        value = values[token]
        if spec:
            try:
                _check_format_spec(token, spec)
                return format(value, spec)
            except (ValueError, TypeError) as exc:
                raise InvalidRequestError(
                    f"cannot format {{{token}:{spec}}} with {value!r}: {exc}", field="commands"
                ) from exc
        return str(value)

    return _TOKEN_RE.sub(one, text)


#: The longest single argument or environment value a task may get after substitution:
#: Linux's MAX_ARG_STRLEN (32 pages), beyond which the program cannot even be started.
MAX_ARGUMENT_LENGTH = 128 * 1024


def _bounded(text: str) -> str:
    if len(text) > MAX_ARGUMENT_LENGTH:
        raise InvalidRequestError(
            f"invalid job request: commands: an argument grows to {len(text):,} "
            f"characters once {{frames}} and the other tokens are substituted; at most "
            f"{MAX_ARGUMENT_LENGTH:,} can be passed to a program: use a smaller "
            f"chunk_size, or {{start}} and {{end}} instead of {{frames}}",
            field="commands",
        )
    return text


def _substitute(command: Command, values: Mapping[str, Any]) -> Command:
    return Command.model_construct(
        argv=[_bounded(_replace(a, values)) for a in command.argv],
        cwd=_bounded(_replace(command.cwd, values)) if command.cwd else command.cwd,
        env={k: _bounded(_replace(v, values)) for k, v in command.env.items()},
        shell=command.shell,
    )


def validation_problems(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted field, message) pairs from a pydantic error, friendliest wording first."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in error["loc"] if p not in ("function-plain",))
        field = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "request")
        message = str(error["msg"])
        for lead in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(lead)
        if error["type"] == "extra_forbidden":
            message = "unknown key; check its spelling against the documented fields"
        elif error["type"] == "missing":
            message = "this field is required"
        problems.append((field, message))
    return problems


def parse_request(data: JobRequest | Mapping[str, Any]) -> JobRequest:
    """Validate ``data`` into a :class:`JobRequest`.

    Raises :class:`~farm_adapters.errors.InvalidRequestError` naming every offending
    field (``frames``, ``chunk_size``, ``commands.0``, ...).
    """
    if isinstance(data, JobRequest):
        # Re-validate: a model built with model_construct() or mutated after creation
        # must not reach a backend unchecked.
        data = data.model_dump()
    try:
        return JobRequest.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        lines = "; ".join(f"{f}: {m}" for f, m in problems)
        raise InvalidRequestError(
            f"invalid job request: {lines}", field=problems[0][0], problems=problems
        ) from None


# -- answers ---------------------------------------------------------------------------


class InstallationMetadata(BaseModel):
    """What the render node has installed: Katana's ``InstallationMetadata``, generalised."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    root: str | None = Field(default=None, description="installation folder on the node")
    executable: str | None = None
    version: str | None = None
    platform: str | None = Field(default=None, description="'linux', 'windows', 'darwin'")
    environment: dict[str, str] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)


class Job(BaseModel, TaskCounts):
    """What a backend knows of one job."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: str
    name: str = ""
    state: JobState
    task_counts: dict[JobState, int] = Field(default_factory=dict)
    progress: float = Field(default=0.0, ge=0.0, le=1.0, description="finished tasks / all")
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    native_ids: list[str] = Field(default_factory=list)
    backend: str = ""
    target: str | None = None
    render_context: str | None = None
    message: str = ""

    @classmethod
    def from_task_states(
        cls, states: Iterable[JobState] | Mapping[JobState, int], **fields: Any
    ) -> Job:
        """Build a job whose state, counts and progress come from its tasks' states,
        through :func:`derive_job_state`."""
        return cls(**task_count_fields(states), **fields)


class LogChunk(BaseModel):
    """A piece of a render log, from ``offset`` (bytes) to ``next_offset``.

    Pass ``next_offset`` back to read only what was added since. ``complete`` is True
    when the job is final and everything has been read.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    job_id: str
    text: str
    offset: int = Field(ge=0)
    next_offset: int = Field(ge=0)
    complete: bool = False


class CheckResult(BaseModel):
    """One line of a backend self-test (:meth:`FarmPlugin.check`)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str
    ok: bool
    detail: str = ""


class OutputFile(BaseModel):
    """One file a job wrote (:meth:`FarmPlugin.list_outputs`)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    path: str = Field(description="where it is, as this workstation or the storage sees it")
    size: int = Field(ge=0)
    mtime: float = Field(description="modification time, seconds since the epoch")
    frame: int | None = Field(default=None, description="the frame it belongs to, if known")
    storage: bool = Field(
        default=False, description="True when path is on the target's storage, not local"
    )
