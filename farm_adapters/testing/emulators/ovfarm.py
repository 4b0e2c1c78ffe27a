"""An emulator of the NVIDIA Omniverse Farm queue (nv.svc.farm 2.0.42).

Built from ``shared/reference/omniverse-farm-api.md`` and the real OpenAPI spec, warts
included: ``tasks/list`` returns only ``submitted`` tasks unless asked, keys its answer
by a Python tuple repr string and answers 400 on an unknown ``field``; cancel and retry
answer HTTP 500 on an unknown id or a forbidden transition; only ``jobs/save`` and
``jobs/remove`` check ``X-API-KEY`` (403); logs are 404 until an agent uploaded some;
cancel is two-phase (``cancelling``, then ``cancelled`` when the agent has killed the
process or after ``cancel_delay`` seconds); errored tasks are retried automatically
unless ``metadata._retry.is_retryable`` is false.

Built-in agents really run each task's argv, built from the job definition's
``command``, ``args`` and ``allowed_args`` (an argument not in ``allowed_args`` errors
the task), with the agent's own environment not forwarded (as on Linux), labels matched
exactly, and logs uploaded in the Farm format (``#### Agent ID:`` header, ``Process
exited with return code: N`` footer). A saved job definition reaches the agents only
after ``propagation_delay`` seconds, as agents re-poll ``jobs/load``.

Test controls live under ``/_emulator`` (never part of the real API): fault injection
(errors before or after processing, hangs, latency), stuck agents, request counters.

    farm-adapters emulate ovfarm --port 8222 --api-key KEY [--job-dir DIR]
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..._toml import read_toml
from ._faults import FaultGate, Faults, InFlight

__all__ = ["FarmEmulator", "create_app"]

FARM_VERSION = "2.0.42"
STATUSES = (
    "submitted",
    "waiting",
    "starting",
    "running",
    "errored",
    "finished",
    "paused",
    "cancelled",
    "archived",
    "cancelling",
    "pausing",
    "pending",
)
# Allowed next states (reference §4, the rows that exist in 2.0.42); staying put is
# always allowed.
TRANSITIONS: dict[str, frozenset[str]] = {
    "submitted": frozenset(
        {"pending", "starting", "running", "cancelling", "pausing", "cancelled", "paused"}
    ),
    "waiting": frozenset(
        {
            "submitted",
            "starting",
            "running",
            "cancelling",
            "pausing",
            "cancelled",
            "paused",
            "finished",
            "errored",
        }
    ),
    "pending": frozenset(
        {
            "submitted",
            "starting",
            "running",
            "cancelling",
            "pausing",
            "cancelled",
            "paused",
            "finished",
            "errored",
        }
    ),
    "starting": frozenset(
        {"running", "cancelling", "pausing", "cancelled", "paused", "finished", "errored"}
    ),
    "running": frozenset(
        {"starting", "cancelling", "pausing", "cancelled", "paused", "finished", "errored"}
    ),
    "pausing": frozenset({"paused", "finished", "errored"}),
    "cancelling": frozenset({"cancelled", "finished", "errored"}),
    "cancelled": frozenset({"archived", "finished", "errored", "submitted"}),
    "paused": frozenset({"starting", "cancelling", "cancelled", "finished", "errored"}),
    "finished": frozenset({"archived", "submitted"}),
    "errored": frozenset({"archived", "submitted"}),
    "archived": frozenset(),
}
RETRY_FROM = frozenset({"finished", "errored", "cancelled", "pending", "waiting"})
ARCHIVE_FROM = frozenset({"finished", "errored", "cancelled"})
# tasks/list projection: database column -> key in the task dict.
COLUMNS = {
    "task_id": "task_id",
    "task_type": "task_type",
    "task_args": "task_args",
    "task_function": "task_function",
    "task_function_args": "task_function_args",
    "task_requirements": "task_requirements",
    "task_status": "status",
    "user_id": "userid",
    "task_comment": "task_comment",
    "task_details": "task_details",
    "task_metrics": "metrics",
    "task_progress": "progress",
    "task_submission_time": "task_submission_time",
    "priority": "priority",
    "metadata": "metadata",
    "labels": "labels",
}
ALWAYS_LISTED = (
    "task_id",
    "task_type",
    "task_function",
    "task_status",
    "task_submission_time",
    "priority",
)
RETRY_LIMIT = 3
RETRY_MAX_AGE = 259200.0

# -- request models (names, fields and constraints as in the 2.0.42 OpenAPI spec) -----
#
# A field the spec types without ``null`` but does not require (``metadata``,
# ``labels``, ``job_spec_path``...) may be omitted, yet an explicit ``null`` is a 422,
# as with the real service's pydantic models: hence ``_omissible()`` on a non-optional
# type (the default is not validated, a sent value is). Untyped array items and
# object values (``args``, ``env``...) accept any JSON value.

# The default of a query parameter that may be omitted but has no ``null`` in the spec.
OMITTED: Any = None


def _omissible() -> Any:
    """The default of a field that may be omitted but not sent as ``null``: None, never
    validated (the spec's type has no ``null``, so a sent ``null`` is a 422)."""
    return Field(default=None)


Status = enum.Enum("Status", {s: s for s in STATUSES}, type=str)  # type: ignore[misc]
AgentStatus = enum.Enum(  # type: ignore[misc]
    "AgentStatus", {s: s for s in ("active", "idle", "lost", "evicted")}, type=str
)


class TaskSubmissionModel(BaseModel):
    user: str = Field(max_length=2048)
    task_type: str = Field(max_length=512)
    task_args: dict[str, Any]
    task_function: str = Field(default="", max_length=128)
    task_function_args: dict[str, Any] = Field(default_factory=dict)
    task_requirements: dict[str, Any] = Field(default_factory=dict)
    task_comment: str = ""
    priority: int = 65535
    metadata: dict[str, Any] = _omissible()
    status: Status | None = None
    labels: list[str] = _omissible()


class TaskProgressModel(BaseModel):
    current_step_index: int | None = Field(default=None, ge=0)
    total_step_count: int | None = Field(default=None, ge=0)
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    status_message: str | None = None
    time_remaining: float | None = None


class TaskUpdateModel(BaseModel):
    task_id: str = Field(max_length=36)
    task_type: str = Field(max_length=512)
    task_function: str = Field(default="", max_length=128)
    task_function_args: dict[str, Any] = Field(default_factory=dict)
    status: Status
    agent_id: str | None = Field(default=None, max_length=2048)
    task_comment: str = ""
    metrics: str = ""
    priority: int = _omissible()
    metadata: dict[str, Any] = _omissible()
    labels: list[str] | None = None
    progress: TaskProgressModel | None = None
    userid: str | None = Field(default=None, max_length=2048)
    details: str | None = None


class TaskArchiveRequestModel(BaseModel):
    task_ids: list[str] = Field(default_factory=list)


class TaskRequestModel(BaseModel):
    task_types: list[Any]
    capacity: dict[str, Any] = Field(default_factory=dict)
    agent_id: bytes | str
    labels: list[str] = Field(default_factory=list)


class TaskChangeRequestModel(BaseModel):
    after: int = _omissible()
    ending_with: int = _omissible()


class JobDefinitionModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = "job-name"
    job_type: str = "base,kit,kit-service"  # the 2.0.42 default, verbatim
    command: str = "command"
    args: list[Any] = Field(default_factory=list)
    task_function: str = ""
    env: dict[str, Any] = Field(default_factory=dict)
    log_to_stdout: bool = True
    extension_paths: list[Any] = Field(default_factory=list)
    allowed_args: dict[str, Any] = Field(default_factory=dict)
    job_spec_path: str = _omissible()
    headless: bool = True
    active: bool = True
    unresolved_command_path: str = _omissible()
    success_return_codes: list[Any] = Field(default_factory=lambda: [0])
    capacity_requirements: dict[str, Any] = Field(default_factory=dict)
    working_directory: str = _omissible()
    container: str = ""

    @field_validator("name")
    @classmethod
    def _name_rules(cls, value: str) -> str:
        if "_" in value:
            raise ValueError("Job definition names cannot contain underscores")
        if len(value) > 32:
            raise ValueError("Job definition names cannot be longer than 32 characters")
        return value


class JobDefinitionRemoveModel(BaseModel):
    job_definition_name: str


class AgentModel(BaseModel):
    agent_id: str
    task_types: list[Any] = Field(default_factory=list)
    active_tasks: list[Any] = Field(default_factory=list)
    resources: dict[str, Any] = Field(default_factory=dict)
    errored_task_count: int = _omissible()
    labels: list[Any] = Field(default_factory=list)


class AgentTaskLog(BaseModel):
    agent_id: str
    task_id: str
    logs: str


class InvalidTransition(Exception):
    """A forbidden status change; the real service lets it escape as HTTP 500."""


# -- the queue ------------------------------------------------------------------------


class FarmEmulator:
    """The queue's state plus its built-in agents. Thread-safe."""

    def __init__(
        self,
        *,
        api_key: str = "change-me",
        job_dir: str | os.PathLike[str] | None = None,
        agents: int = 2,
        agent_labels: list[str] | None = None,
        cancel_delay: float = 30.0,
        propagation_delay: float = 30.0,
        log_interval: float = 0.5,
        agent_poll: float = 0.1,
        work_dir: str | os.PathLike[str] | None = None,
        lost_timeout: float = 300.0,
        agent_capacity: dict[str, Any] | None = None,
    ) -> None:
        self.api_key = api_key
        self.job_dir = Path(job_dir) if job_dir else None
        self.cancel_delay = cancel_delay
        self.propagation_delay = propagation_delay
        self.log_interval = log_interval
        self.agent_poll = agent_poll
        self.work_dir = Path(work_dir) if work_dir else None
        self.lost_timeout = lost_timeout
        self.agent_capacity = dict(agent_capacity or {})
        self.lock = threading.RLock()
        self.tasks: dict[str, dict[str, Any]] = {}
        #: Task ids by status (insertion-ordered sets), as the real store's status
        #: column is indexed: listing the queued tasks does not scan the history.
        self.by_status: dict[str, dict[str, None]] = {}
        self.sequence: dict[str, int] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.changed: dict[str, int] = {}
        self.revision = 0
        self.logs: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.job_times: dict[str, float] = {}
        self.removed: dict[str, float] = {}
        self.faults = Faults()
        self.stuck: str | None = None
        self.counters: dict[str, int] = {}
        self.tasks_listed = 0  # tasks returned by tasks/list, for tests of polling cost
        self.log_chars_served = 0  # log text returned, for tests of log following cost
        self.external_agents: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._timers: list[threading.Timer] = []
        if self.job_dir is not None:
            self._load_job_dir()
        self.agents = [
            _Agent(self, f"emulator-agent-{i}", list(agent_labels or [])) for i in range(agents)
        ]

    # lifecycle

    def start(self) -> None:
        for agent in self.agents:
            agent.start()
        threading.Thread(target=self._watch_agents, name="agents-service", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for timer in self._timers:
            timer.cancel()
        for agent in self.agents:
            agent.join(timeout=10)

    # agents (the agents service): built-in agents check in all the time; an external
    # one (a test playing agent over HTTP) is lost after ``lost_timeout`` s of silence.

    def checkin(self, body: AgentModel) -> dict[str, Any]:
        with self.lock:
            old = self.external_agents.get(body.agent_id)
            status = "active" if body.active_tasks else "idle"
            if old is not None and old["status"] == "evicted":
                status = "evicted"  # an evicted agent stays evicted until enabled
            self.external_agents[body.agent_id] = {
                "active_tasks": list(body.active_tasks),
                "task_types": list(body.task_types),
                "checkin_time": time.time(),
                "status": status,
                "resources": dict(body.resources),
                "errored_task_count": body.errored_task_count or 0,
                "labels": list(body.labels),
            }
            return {"agent_id": body.agent_id, "status": status}

    def _builtin(self, agent_id: str) -> _Agent | None:
        return next((a for a in self.agents if a.agent_id == agent_id), None)

    def set_agent_status(self, agent_id: str, status: str) -> None:
        with self.lock:
            agent = self._builtin(agent_id)
            if agent is not None:
                agent.evicted = status == "evicted"
            elif agent_id in self.external_agents:
                self.external_agents[agent_id]["status"] = status

    def remove_agent(self, agent_id: str) -> bool:
        """Forget an agent and error its active tasks; False if it is unknown. A
        built-in agent checks in again right away, as a real one would at its next
        check-in."""
        with self.lock:
            agent = self._builtin(agent_id)
            if agent is not None:
                active = list(agent.active)
            elif agent_id in self.external_agents:
                active = list(self.external_agents.pop(agent_id)["active_tasks"])
            else:
                return False
        self._fail_tasks(active, agent_id, f"agent {agent_id} was shutdown. Failing task.")
        return True

    def check_agents(self) -> None:
        """Mark external agents silent for ``lost_timeout`` s as lost and error their
        active tasks (which the retries service may then re-queue)."""
        now = time.time()
        with self.lock:
            lost = []
            for agent_id, data in self.external_agents.items():
                if data["status"] != "lost" and data["checkin_time"] + self.lost_timeout < now:
                    data["status"] = "lost"
                    lost.append((agent_id, data["active_tasks"]))
                    data["active_tasks"] = []
        for agent_id, active in lost:
            self._fail_tasks(active, agent_id, f"agent {agent_id} was lost. Failing task.")

    def _fail_tasks(self, task_ids: list[Any], agent_id: str, reason: str) -> None:
        for task_id in task_ids:
            # as the agents service does, through tasks/update: errors are swallowed
            with contextlib.suppress(KeyError, InvalidTransition):
                self.set_status(str(task_id), "errored", agent_id=agent_id, details=reason)

    def _watch_agents(self) -> None:
        while not self._stop.wait(min(self.lost_timeout / 4, 10.0)):
            self.check_agents()

    # job definitions

    def _load_job_dir(self) -> None:
        assert self.job_dir is not None
        self.job_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.job_dir.glob("*.kit")):
            data = read_toml(path)
            for name, table in (data.get("job") or {}).items():
                definition = JobDefinitionModel.model_validate({**table, "name": name})
                self.jobs[name] = definition.model_dump()
                self.job_times[name] = 0.0  # known to agents from the start

    def save_job(self, definition: JobDefinitionModel) -> None:
        data = definition.model_dump()
        with self.lock:
            self.jobs[definition.name] = data
            self.job_times[definition.name] = time.time()
            self.removed.pop(definition.name, None)
        if self.job_dir is not None:
            import tomli_w

            table = {k: v for k, v in data.items() if v is not None}
            path = self.job_dir / f"{definition.name}.kit"
            tmp = path.with_suffix(".kit.tmp")
            tmp.write_text(tomli_w.dumps({"job": {definition.name: table}}))
            os.replace(tmp, path)

    def remove_job(self, name: str) -> None:
        with self.lock:
            if self.jobs.pop(name, None) is not None:
                self.removed[name] = time.time()
            self.job_times.pop(name, None)
        if self.job_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.job_dir / f"{name}.kit").unlink()

    def agent_view_of_jobs(self) -> dict[str, dict[str, Any]]:
        """What agents know: definitions older than the propagation delay, plus removed
        ones they have not noticed yet."""
        now = time.time()
        with self.lock:
            view = {
                n: d
                for n, d in self.jobs.items()
                if now - self.job_times.get(n, 0.0) >= self.propagation_delay
            }
            return view

    # tasks

    def _bump(self, task_id: str) -> None:
        self.revision += 1
        self.changed[task_id] = self.revision

    def _record(
        self, task: dict[str, Any], user: str | None, agent_id: str | None, details: str | None
    ) -> None:
        rows = self.history.setdefault(task["task_id"], [])
        row = {
            "task_id": task["task_id"],
            "status": task["status"],
            "user_id": user if user is not None else "unknown",
            "agent_id": agent_id,
            "details": details,
            "progress": task["progress"] or None,
            "time": time.time(),
        }
        last = rows[-1] if rows else None
        if last and (last["status"], last["agent_id"], last["user_id"]) == (
            row["status"],
            row["agent_id"],
            row["user_id"],
        ):
            rows[-1] = row
        else:
            rows.append(row)

    def submit(self, body: TaskSubmissionModel) -> str:
        task_id = str(uuid.uuid4())
        metadata = dict(body.metadata or {})
        metadata["original_submitter"] = body.user
        task = {
            "task_id": task_id,
            "task_type": body.task_type,
            "task_args": body.task_args,
            "task_function": body.task_function,
            "task_function_args": body.task_function_args,
            "task_requirements": body.task_requirements,
            "status": body.status.value if body.status else "submitted",
            "userid": body.user,
            "task_comment": body.task_comment,
            "task_details": "",
            "metrics": "",
            "progress": {},
            "task_submission_time": time.time(),
            "priority": body.priority,
            "metadata": metadata,
            "labels": body.labels or [],
        }
        with self.lock:
            self.tasks[task_id] = task
            self.by_status.setdefault(str(task["status"]), {})[task_id] = None
            self.sequence[task_id] = len(self.sequence)
            self._record(task, body.user, None, None)
            self._bump(task_id)
        return task_id

    def get(self, task_id: str) -> dict[str, Any]:
        with self.lock:
            task = self.tasks.get(task_id)
            if task is None:
                raise KeyError(task_id)
            return _copy(task)

    def set_status(
        self,
        task_id: str,
        status: str,
        *,
        user: str | None = None,
        agent_id: str | None = None,
        details: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            task = self.tasks[task_id]  # KeyError escapes as HTTP 500, as in the real service
            old = task["status"]
            if status != old and status not in TRANSITIONS[old]:
                raise InvalidTransition(f"{old} -> {status}")
            self._status(task, status)
            if details is not None:
                task["task_details"] = details
            self._record(task, user, agent_id, details)
            self._bump(task_id)
            if status == "errored" and old != "errored":
                self._maybe_retry(task)
            return _copy(task)

    def _status(self, task: dict[str, Any], status: str) -> None:
        """Set a task's status, keeping the index by status."""
        self.by_status.get(task["status"], {}).pop(task["task_id"], None)
        task["status"] = status
        self.by_status.setdefault(status, {})[task["task_id"]] = None

    def _with_status(self, statuses: set[str]) -> list[dict[str, Any]]:
        return [self.tasks[i] for s in statuses for i in self.by_status.get(s, ())]

    def _maybe_retry(self, task: dict[str, Any]) -> None:
        retry = dict(task["metadata"].get("_retry") or {})
        if retry.get("is_retryable") is False:
            return
        limit = int(retry.get("limit", RETRY_LIMIT))
        count = int(retry.get("count", 0))
        too_old = time.time() - task["task_submission_time"] > RETRY_MAX_AGE
        if count >= limit or too_old:
            retry["is_done"] = True
            task["metadata"]["_retry"] = retry
            return
        retry["count"] = count + 1
        task["metadata"]["_retry"] = retry
        details = f"Task errored. Retry attempt {count + 1} of {limit}"
        self._status(task, "submitted")
        task["task_details"] = details
        self._record(task, "Retries", None, details)

    def cancel(self, body: TaskUpdateModel) -> None:
        self.set_status(
            body.task_id, "cancelling", user=body.userid, details="cancelling at user's request"
        )

        def force() -> None:
            with self.lock:
                task = self.tasks.get(body.task_id)
                if task is not None and task["status"] == "cancelling":
                    self.set_status(
                        body.task_id, "cancelled", user="Queue", details="cancelled by the queue"
                    )

        timer = threading.Timer(self.cancel_delay, force)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def retry(self, body: TaskUpdateModel) -> None:
        with self.lock:
            task = self.tasks[body.task_id]
            if task["status"] not in RETRY_FROM:
                raise InvalidTransition(f"cannot retry a {task['status']} task")
            if body.metadata is not None:
                task["metadata"] = body.metadata
            if body.labels is not None:
                task["labels"] = body.labels
            self.set_status(
                body.task_id,
                "submitted",
                user=body.userid,
                details=body.details or "restarting at user's request",
            )

    def fetch(
        self,
        task_types: list[tuple[str, str]],
        labels: list[str],
        agent_id: str,
        capacity: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """The next task for an agent: a wanted type, exactly its labels, and every
        ``task_requirements`` key but ``env`` present in its capacity (values are not
        compared, as in the real store)."""
        wanted = {tuple(t) for t in task_types}
        key = ",".join(labels)
        have = set(capacity or {})
        with self.lock:
            candidates = [
                t
                for t in self._with_status({"submitted"})
                if (t["task_type"], t["task_function"]) in wanted
                and ",".join(t["labels"]) == key
                and set(t["task_requirements"]) - {"env"} <= have
            ]
            if not candidates:
                return None
            task = min(
                candidates,
                key=lambda t: (
                    t["priority"],
                    t["task_submission_time"],
                    self.sequence[t["task_id"]],
                ),
            )
            return self.set_status(task["task_id"], "starting", agent_id=agent_id)

    def append_log(self, task_id: str, text: str) -> None:
        now = time.time()
        with self.lock:
            entry = self.logs.setdefault(
                task_id, {"created_at": now, "updated_at": now, "logs": ""}
            )
            entry["logs"] += text
            entry["updated_at"] = now

    def listing(
        self,
        task_type: str | None,
        task_function: str | None,
        statuses: list[str] | None,
        fields: list[str] | None,
    ) -> dict[str, list[Any]]:
        wanted = set(statuses or ["submitted"])
        keys = None
        if fields:
            keys = {COLUMNS[c] for c in (*ALWAYS_LISTED, *fields)}
        with self.lock:
            tasks = sorted(
                (
                    t
                    for t in self._with_status(wanted)
                    if (task_type is None or t["task_type"] == task_type)
                    and (task_function is None or t["task_function"] == task_function)
                ),
                key=lambda t: (
                    t["priority"],
                    t["task_submission_time"],
                    self.sequence[t["task_id"]],
                ),
            )
            result: dict[str, list[Any]] = {}
            self.tasks_listed += len(tasks)
            for task in tasks:
                item = _copy(task)
                if keys is not None:
                    item = {k: (v if k in keys else None) for k, v in item.items()}
                result.setdefault(repr((task["task_type"], task["task_function"])), []).append(item)
            return result


def _copy(task: dict[str, Any]) -> dict[str, Any]:
    import copy

    return copy.deepcopy(task)


def build_argv(definition: dict[str, Any], task_args: dict[str, Any]) -> list[Any]:
    """argv from a job definition and a task's arguments (reference §6).

    Raises KeyError for an argument the definition does not allow."""
    argv: list[Any] = [definition["command"]]
    for arg in definition.get("args", []):
        argv.extend(arg.split(" ") if arg.startswith("--enable") else [arg])
    for folder in definition.get("extension_paths", []):
        argv.extend(["--ext-folder", folder])
    processed: list[Any] = []
    positional: list[tuple[int, Any]] = []
    allowed = definition.get("allowed_args", {})
    for key, value in task_args.items():
        spec = allowed[key]  # KeyError: the task errors, as in the 2.x agent
        arg = spec.get("arg", "")
        if isinstance(arg, int) or (isinstance(arg, str) and arg.isdigit()):
            positional.append((int(arg), value))
            continue
        separator = spec.get("separator", "=")
        if separator == " ":
            processed.extend([arg, value])
        else:
            processed.append(f"{arg}{separator}{value}")
    for index, value in sorted(positional, key=lambda p: p[0]):
        processed.insert(index, value)
    return argv + processed


def _env_list(value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    out = {}
    for item in value or []:
        if isinstance(item, dict) and "name" in item:
            out[str(item["name"])] = str(item.get("value", ""))
    return out


class _Agent(threading.Thread):
    """A built-in agent: fetches tasks it has a definition for and really runs them."""

    def __init__(self, farm: FarmEmulator, agent_id: str, labels: list[str]) -> None:
        super().__init__(name=agent_id, daemon=True)
        self.farm = farm
        self.agent_id = agent_id
        self.labels = labels
        self.active: list[str] = []
        self.errored = 0
        self.checkin = time.time()
        self.evicted = False

    @property
    def status(self) -> str:
        return "evicted" if self.evicted else "active" if self.active else "idle"

    def run(self) -> None:
        while not self.farm._stop.is_set():
            self.checkin = time.time()
            task = None
            if self.farm.stuck != "submitted" and not self.evicted:
                definitions = self.farm.agent_view_of_jobs()
                types = [
                    (n, d.get("task_function", ""))
                    for n, d in definitions.items()
                    if d.get("active", True)
                ]
                if types:
                    task = self.farm.fetch(
                        types, self.labels, self.agent_id, self.farm.agent_capacity
                    )
            if task is None:
                self.farm._stop.wait(self.farm.agent_poll)
                continue
            definition = definitions[task["task_type"]]
            self.active = [task["task_id"]]
            try:
                self.execute(task, definition)
            except Exception as exc:  # an agent bug must not kill the agent
                with contextlib.suppress(Exception):
                    self.farm.set_status(
                        task["task_id"],
                        "errored",
                        agent_id=self.agent_id,
                        details=f"agent error: {exc}",
                    )
            finally:
                self.active = []

    def execute(self, task: dict[str, Any], definition: dict[str, Any]) -> None:
        farm, task_id = self.farm, task["task_id"]
        try:
            argv = build_argv(definition, task["task_args"])
        except KeyError as exc:
            self.errored += 1
            farm.set_status(task_id, "errored", agent_id=self.agent_id, details=str(exc))
            return
        env = {
            **_env_list(definition.get("env")),
            **_env_list(definition.get("capacity_requirements", {}).get("env")),
            **_env_list(task["task_requirements"].get("env")),
            "HOME": os.environ.get("HOME", "/"),
            "OV_FARM_VERSION": FARM_VERSION,
            "OV_FARM_TASK_ID": task_id,
        }
        farm.append_log(task_id, f"#### Agent ID: {self.agent_id}\n")
        cwd = definition.get("working_directory") or (str(farm.work_dir) if farm.work_dir else None)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except (OSError, TypeError, ValueError) as exc:
            self.errored += 1
            farm.append_log(task_id, f"Failed to start process: {exc}\n")
            farm.set_status(
                task_id,
                "errored",
                agent_id=self.agent_id,
                details=f"Failed to start process: {exc}",
            )
            return
        try:
            farm.set_status(task_id, "running", agent_id=self.agent_id)
        except InvalidTransition:
            # Cancelled between fetch and start: the real agent's report answers
            # should_cancel, and it kills what it just started.
            _kill_tree(proc)
            if farm.get(task_id)["status"] == "cancelling":
                farm.set_status(
                    task_id, "cancelled", agent_id=self.agent_id, details="cancelled by the agent"
                )
            return
        buffer: list[bytes] = []
        buffer_lock = threading.Lock()

        def pump() -> None:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            for chunk in iter(lambda: os.read(fd, 65536), b""):
                with buffer_lock:
                    buffer.append(chunk)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()

        def upload() -> None:
            with buffer_lock:
                data = b"".join(buffer)
                buffer.clear()
            if data:
                farm.append_log(task_id, data.decode(errors="replace"))

        cancelled = False
        last_upload = time.monotonic()
        while proc.poll() is None:
            time.sleep(min(farm.agent_poll, 0.2))
            status = farm.get(task_id)["status"]
            if status in ("cancelling", "cancelled") and not cancelled:
                cancelled = True
                _kill_tree(proc)
            if time.monotonic() - last_upload >= farm.log_interval:
                upload()
                last_upload = time.monotonic()
        reader.join(timeout=5)
        code = proc.returncode
        upload()
        farm.append_log(task_id, f"Process exited with return code: {code}\n")
        current = farm.get(task_id)["status"]
        if cancelled or current in ("cancelling", "cancelled"):
            if current != "cancelled":
                farm.set_status(
                    task_id, "cancelled", agent_id=self.agent_id, details="cancelled by the agent"
                )
            return
        if code in definition.get("success_return_codes", [0]):
            farm.set_status(
                task_id,
                "finished",
                agent_id=self.agent_id,
                details="Process finished successfully.",
            )
        else:
            self.errored += 1
            farm.set_status(
                task_id,
                "errored",
                agent_id=self.agent_id,
                details="Process finished without a successful exit code.",
            )


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


# -- the HTTP API ---------------------------------------------------------------------


def create_app(farm: FarmEmulator | None = None, **options: Any) -> FastAPI:
    """The FastAPI app of the emulator (a new :class:`FarmEmulator` from ``options``
    unless one is given). Agents start with the app and stop with it."""
    farm = farm or FarmEmulator(**options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        farm.start()
        yield
        farm.stop()

    app = FastAPI(
        title="nv.svc.farm", description="Farm Services.", version=FARM_VERSION, lifespan=lifespan
    )
    app.state.farm = farm

    def seen(request: Request) -> None:
        with farm.lock:
            key = f"{request.method} {request.url.path}"
            farm.counters[key] = farm.counters.get(key, 0) + 1

    def error(fault: dict[str, Any], phase: str) -> Response:
        return PlainTextResponse("Internal Server Error", status_code=fault["status"])

    app.add_middleware(FaultGate, faults=farm.faults, seen=seen, error=error)

    # Installed last, so outermost: a request waiting in an injected latency counts.
    gauge = InFlight()
    gauge.install(app)

    def check_key(key: str | None) -> None:
        if key != farm.api_key:
            raise HTTPException(status_code=403, detail="Not authenticated")

    # service status endpoints
    for prefix in (
        "",
        "/queue/management/agents",
        "/queue/management/jobs",
        "/queue/management/logs",
        "/queue/management/retries",
        "/queue/management/tasks",
    ):
        app.add_api_route(f"{prefix}/status", lambda: "OK", methods=["GET"])
    for probe in ("/health", "/ready", "/startup"):
        app.add_api_route(probe, lambda: "OK", methods=["GET"])

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        with farm.lock:
            lines = [f'http_requests_total{{route="{k}"}} {v}' for k, v in farm.counters.items()]
        return PlainTextResponse("\n".join(lines) + "\n")

    @app.get("/queue/settings")
    def settings() -> dict[str, Any]:
        return {"settings": {"version": FARM_VERSION}}

    @app.get("/queue/management/dashboard/config")
    def dashboard_config() -> dict[str, Any]:
        return {}

    @app.get("/queue/management/dashboard/version")
    def dashboard_version() -> dict[str, Any]:
        return {"version": FARM_VERSION}

    # tasks
    tasks = "/queue/management/tasks"

    @app.post(f"{tasks}/submit")
    async def submit(body: TaskSubmissionModel) -> dict[str, str]:
        # On the event loop: a submit holds the farm's lock for microseconds, and a
        # hop to the thread pool cost more than the submit.
        return {"task_id": farm.submit(body)}

    @app.get(f"{tasks}/list")
    def list_tasks(
        task_type: str | None = None,
        task_function: str | None = None,
        status: Annotated[list[Status], Query()] = OMITTED,
        field: Annotated[list[str] | None, Query()] = None,
    ) -> Any:
        bad = sorted(set(field or []) - set(COLUMNS))
        if bad:
            raise HTTPException(status_code=400, detail=f"Invalid fields {set(bad)}")
        statuses = [s.value for s in status] if status else None
        return farm.listing(task_type, task_function, statuses, field)

    @app.get(f"{tasks}/info/{{task_id}}")
    def info(task_id: str) -> Any:
        try:
            return farm.get(task_id)
        except KeyError:
            raise HTTPException(status_code=404, detail="Task does not exist.") from None

    @app.get(f"{tasks}/revision-history/{{task_id}}")
    def revision_history(task_id: str) -> Any:
        with farm.lock:
            return list(farm.history.get(task_id, []))

    @app.post(f"{tasks}/cancel")
    def cancel(body: TaskUpdateModel) -> None:
        farm.cancel(body)  # KeyError / InvalidTransition -> 500, like the real service

    @app.post(f"{tasks}/retry")
    def retry(body: TaskUpdateModel) -> None:
        farm.retry(body)

    @app.post(f"{tasks}/archive")
    def archive(body: TaskArchiveRequestModel) -> dict[str, Any]:
        count, errors = 0, []
        for task_id in body.task_ids:
            try:
                with farm.lock:
                    status = farm.tasks[task_id]["status"]
                    if status not in ARCHIVE_FROM:
                        raise InvalidTransition(f"Task {task_id} is {status}")
                    farm.set_status(task_id, "archived")
                count += 1
            except (KeyError, InvalidTransition) as exc:
                errors.append(f"{task_id}: {exc}")
        return {"archived_tasks_count": count, "error_count": len(errors), "error_details": errors}

    @app.post(f"{tasks}/update")
    def update(body: TaskUpdateModel) -> dict[str, bool]:
        with farm.lock:
            task = farm.tasks.get(body.task_id)
            if task is None:
                return {"should_cancel": False}
            current = task["status"]
            should_cancel = current in (
                "cancelling",
                "pausing",
                "cancelled",
            ) and body.status.value in ("running", "starting")
            if body.progress is not None:
                task["progress"] = body.progress.model_dump(exclude_none=True)
            if body.metrics:
                task["metrics"] = body.metrics
            with contextlib.suppress(InvalidTransition):  # logged and swallowed upstream
                farm.set_status(
                    body.task_id,
                    body.status.value,
                    user=body.userid,
                    agent_id=body.agent_id,
                    details=body.details,
                )
        return {"should_cancel": should_cancel}

    @app.post(f"{tasks}/fetch")
    def fetch(body: TaskRequestModel) -> Any:
        types = [
            (str(t[0]), str(t[1]) if len(t) > 1 else "")
            for t in body.task_types
            if isinstance(t, list) and t
        ]
        agent_id = body.agent_id
        if isinstance(agent_id, bytes):
            agent_id = agent_id.decode(errors="replace")
        return farm.fetch(types, body.labels, agent_id, body.capacity)

    @app.get(f"{tasks}/revision-highest")
    def revision_highest() -> dict[str, Any]:
        with farm.lock:
            return {"revision_id": farm.revision or None}

    @app.post(f"{tasks}/changed-between-revisions")
    def changed(body: TaskChangeRequestModel) -> dict[str, Any]:
        lo = body.after or 0
        hi = body.ending_with if body.ending_with is not None else farm.revision
        with farm.lock:
            return {"task_ids": [t for t, r in farm.changed.items() if lo < r <= hi]}

    # jobs
    jobs = "/queue/management/jobs"

    @app.get(f"{jobs}/load")
    def load(filter: str = ".*") -> dict[str, Any]:  # the API's parameter name
        pattern = re.sub(r"[^A-Za-z0-9.*]", "", filter) or ".*"
        try:
            regex = re.compile(pattern)
        except re.error:
            regex = re.compile(re.escape(pattern))
        with farm.lock:
            return {n: dict(d) for n, d in farm.jobs.items() if regex.search(n)}

    @app.post(f"{jobs}/save")
    def save(
        body: JobDefinitionModel, x_api_key: str | None = Header(None, alias="X-API-KEY")
    ) -> dict[str, Any]:
        check_key(x_api_key)
        farm.save_job(body)
        return {"job-name": body.name, "success": True}

    @app.post(f"{jobs}/remove")
    def remove(
        body: JobDefinitionRemoveModel, x_api_key: str | None = Header(None, alias="X-API-KEY")
    ) -> dict[str, Any]:
        check_key(x_api_key)
        farm.remove_job(body.job_definition_name)
        return {"job-name": body.job_definition_name, "success": True}

    # logs
    logs = "/queue/management/logs"

    def _logs(task_id: str, agent_id: str | None) -> dict[str, Any]:
        with farm.lock:
            entry = farm.logs.get(task_id)
            if entry is None:
                raise HTTPException(
                    status_code=404,
                    detail=f"No logs found for task {task_id} on agent {agent_id}: "
                    f"no log entries were uploaded",
                )
            farm.log_chars_served += len(entry["logs"])
            return dict(entry)

    @app.get(f"{logs}/download/{{task_id}}")
    def download(task_id: str, agent_id: str | None = None) -> Response:
        entry = _logs(task_id, agent_id)
        return PlainTextResponse(
            entry["logs"], headers={"Content-Disposition": f"attachment; filename={task_id}.txt"}
        )

    @app.get(f"{logs}/{{task_id}}")
    def get_logs(task_id: str, agent_id: str = OMITTED, latest_only: bool = True) -> Any:
        return _logs(task_id, agent_id)  # the memory store ignores agent_id and latest_only

    @app.post(f"{logs}/upload")
    def upload(body: AgentTaskLog) -> None:
        farm.append_log(body.task_id, body.logs)

    # agents
    agents = "/queue/management/agents"

    @app.get(f"{agents}/list")
    def list_agents(status: AgentStatus | None = None) -> dict[str, Any]:
        farm.check_agents()
        result = {}
        for agent in farm.agents:
            data = {
                "active_tasks": list(agent.active),
                "task_types": [
                    [n, d.get("task_function", "")] for n, d in farm.agent_view_of_jobs().items()
                ],
                "checkin_time": agent.checkin,
                "status": agent.status,
                "resources": dict(farm.agent_capacity),
                "errored_task_count": agent.errored,
                "labels": agent.labels,
            }
            if status is None or status.value == data["status"]:
                result[agent.agent_id] = data
        with farm.lock:
            for agent_id, data in farm.external_agents.items():
                if status is None or status.value == data["status"]:
                    result[agent_id] = dict(data)
        return result

    @app.post(f"{agents}/checkin")
    def checkin(body: AgentModel) -> dict[str, Any]:
        return farm.checkin(body)

    @app.post(f"{agents}/remove")
    def remove_agent(body: AgentModel) -> None:
        if not farm.remove_agent(body.agent_id):
            raise HTTPException(status_code=404, detail="Agent does not exist.")

    @app.post(f"{agents}/evict")
    def evict_agent(body: AgentModel) -> None:
        farm.set_agent_status(body.agent_id, "evicted")  # unknown agent: 200, nothing done

    @app.post(f"{agents}/enable")
    def enable_agent(body: AgentModel) -> None:
        farm.set_agent_status(body.agent_id, "idle")

    @app.post("/queue/management/retries/submit")
    def retries_submit(body: dict[str, Any] | None = None) -> None:
        return None

    # -- emulator controls (not part of the Farm API) -----------------------------------

    @app.post("/_emulator/faults", include_in_schema=False)
    def add_fault(fault: dict[str, Any]) -> dict[str, Any]:
        return farm.faults.add(fault)

    @app.delete("/_emulator/faults", include_in_schema=False)
    def clear_faults() -> None:
        farm.faults.clear()

    @app.post("/_emulator/stuck", include_in_schema=False)
    def set_stuck(body: dict[str, Any]) -> dict[str, Any]:
        farm.stuck = body.get("mode")
        return {"mode": farm.stuck}

    @app.get("/_emulator/stats", include_in_schema=False)
    def stats() -> dict[str, Any]:
        with farm.lock:
            return {
                "requests": dict(farm.counters),
                "tasks_listed": farm.tasks_listed,
                "log_chars_served": farm.log_chars_served,
                "peak_in_flight": gauge.peaks(),
            }

    @app.delete("/_emulator/stats", include_in_schema=False)
    def reset_stats() -> None:
        with farm.lock:
            farm.counters.clear()
            farm.tasks_listed = 0
            gauge.reset()
            farm.log_chars_served = 0

    return app
