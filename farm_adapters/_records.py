"""Job states and plain job records: the standard library only.

:class:`JobState` and :func:`derive_job_state` are re-exported by
:mod:`farm_adapters.models` (their public home). :class:`JobRecord` and
:class:`LogPiece` are what read-only light paths answer with instead of the pydantic
:class:`~farm_adapters.models.Job` and :class:`~farm_adapters.models.LogChunk`: the same
fields, built from trusted stored data with no validation, so the command line can
show a local job without importing pydantic.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

__all__ = [
    "JobRecord",
    "JobState",
    "LogPiece",
    "TaskCounts",
    "derive_job_state",
    "task_count_fields",
    "utc",
]


class JobState(str, enum.Enum):
    """The state of a job or of one of its tasks, whatever the farm calls it."""

    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    UNKNOWN = "unknown"

    @property
    def final(self) -> bool:
        """True when the state can no longer change without a restart."""
        return self in _FINAL

    def __str__(self) -> str:
        return self.value


_FINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.STOPPED})


def derive_job_state(states: Iterable[JobState] | Mapping[JobState, int]) -> JobState:
    """The one rule that turns the states of a job's tasks into the job's state.

    Accepts the task states themselves or a mapping of state to count. In order:

    1. no tasks: UNKNOWN;
    2. every task final: FAILED if any failed, else STOPPED if any stopped, else
       COMPLETED;
    3. any task STOPPING: STOPPING;
    4. any task RUNNING: RUNNING;
    5. any task UNKNOWN: UNKNOWN (the farm lost track; do not pretend);
    6. some tasks final and the rest QUEUED: RUNNING (the job is under way);
    7. otherwise every task is QUEUED: QUEUED.
    """
    if isinstance(states, Mapping):
        counts = {s: n for s, n in states.items() if n}
    else:
        counts = {}
        for state in states:
            counts[state] = counts.get(state, 0) + 1
    if not counts:
        return JobState.UNKNOWN
    present = counts.keys()
    if all(s.final for s in present):
        if JobState.FAILED in present:
            return JobState.FAILED
        if JobState.STOPPED in present:
            return JobState.STOPPED
        return JobState.COMPLETED
    for state in (JobState.STOPPING, JobState.RUNNING, JobState.UNKNOWN):
        if state in present:
            return state
    if any(s.final for s in present):
        return JobState.RUNNING
    return JobState.QUEUED


def utc(ts: float | None) -> datetime | None:
    """A POSIX time as an aware UTC datetime (None stays None)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc) if ts is not None else None


def _json_time(value: datetime | None) -> str | None:
    """A datetime as pydantic writes it in JSON mode (``...Z`` for UTC)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def task_count_fields(states: Iterable[JobState] | Mapping[JobState, int]) -> dict[str, Any]:
    """A job's ``state``, ``task_counts`` and ``progress`` from its tasks' states (or a
    mapping of state to count), through :func:`derive_job_state`."""
    if isinstance(states, Mapping):
        counts = {JobState(s): int(n) for s, n in states.items() if n}
    else:
        counts = {}
        for s in states:
            counts[s] = counts.get(s, 0) + 1
    total = sum(counts.values())
    done = sum(n for s, n in counts.items() if s.final)
    return {
        "state": derive_job_state(counts),
        "task_counts": counts,
        "progress": (done / total) if total else 0.0,
    }


class TaskCounts:
    """``total_tasks`` and ``finished_tasks`` of a job with ``task_counts``."""

    __slots__ = ()

    if TYPE_CHECKING:
        task_counts: dict[JobState, int]

    @property
    def total_tasks(self) -> int:
        return sum(self.task_counts.values())

    @property
    def finished_tasks(self) -> int:
        return sum(n for s, n in self.task_counts.items() if s.final)


class JobRecord(TaskCounts):
    """The fields of :class:`~farm_adapters.models.Job`, as a plain object (see the
    module docstring); ``Job(**record.fields())`` builds the validated model."""

    __slots__ = (
        "backend",
        "finished_at",
        "id",
        "message",
        "name",
        "native_ids",
        "progress",
        "render_context",
        "started_at",
        "state",
        "submitted_at",
        "target",
        "task_counts",
    )

    def __init__(
        self,
        *,
        id: str,
        state: JobState,
        name: str = "",
        task_counts: dict[JobState, int] | None = None,
        progress: float = 0.0,
        submitted_at: datetime | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        native_ids: list[str] | None = None,
        backend: str = "",
        target: str | None = None,
        render_context: str | None = None,
        message: str = "",
    ) -> None:
        self.id = id
        self.name = name
        self.state = state
        self.task_counts = task_counts or {}
        self.progress = progress
        self.submitted_at = submitted_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.native_ids = native_ids or []
        self.backend = backend
        self.target = target
        self.render_context = render_context
        self.message = message

    @classmethod
    def from_task_states(cls, counts: Mapping[JobState, int], **fields: Any) -> JobRecord:
        """As :meth:`farm_adapters.models.Job.from_task_states`, from counts."""
        return cls(**task_count_fields(counts), **fields)

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}

    def to_json(self) -> dict[str, Any]:
        """What ``Job.model_dump(mode="json")`` gives for the same fields."""
        data = self.fields()
        data["state"] = self.state.value
        data["task_counts"] = {s.value: n for s, n in self.task_counts.items()}
        for key in ("submitted_at", "started_at", "finished_at"):
            data[key] = _json_time(data[key])
        data["native_ids"] = list(self.native_ids)
        return data


class LogPiece:
    """The fields of :class:`~farm_adapters.models.LogChunk`, as a plain object."""

    __slots__ = ("complete", "job_id", "next_offset", "offset", "text")

    def __init__(
        self, *, job_id: str, text: str, offset: int, next_offset: int, complete: bool = False
    ) -> None:
        self.job_id = job_id
        self.text = text
        self.offset = offset
        self.next_offset = next_offset
        self.complete = complete

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}
