"""``ovfarm``: NVIDIA Omniverse Farm through its queue REST API (2.0.42).

One Farm task per chunk of frames. A job is the set of tasks whose metadata carries
its id (``metadata.farm_adapters.job``), so one ``tasks/list`` request, with explicit
statuses and a field projection, answers for every job at once. Commands run through a
generic runner job definition this backend publishes (``/bin/sh -c`` with a quoted
script, one per task), or through a definition the TD names, whose ``allowed_args``
are filled from the request's command line.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import re
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from pydantic import Field, SecretStr

from farm_adapters import (
    CheckResult,
    InvalidRequestError,
    Job,
    JobNotFoundError,
    JobRequest,
    JobState,
    LogChunk,
    SubmitError,
)
from farm_adapters._paths import data_dir
from farm_adapters.errors import (
    APIError,
    BackendUnavailableError,
    ConfigurationError,
    FarmAdapterError,
)
from farm_adapters.http import (
    HttpFarmPlugin,
    HttpSettings,
    MapOf,
    OutcomeUnknownError,
    submit_each,
)
from farm_adapters.logfile import LogMirror, LogSource
from farm_adapters.plugin import ProgressCallback
from farm_adapters.shell import check_env_names, task_script
from farm_adapters.submit import announce_job_id

from . import mapping
from .book import JobBook, TaskBook, settled

TASKS = "/queue/management/tasks"
JOBS = "/queue/management/jobs"
LOGS = "/queue/management/logs"
#: The fields a listing asks for (database column names, as the API wants them).
LIST_FIELDS = ("metadata", "task_details", "labels")
#: The fields of a task a listing returns (the projection, plus those always listed).
KEPT_FIELDS = frozenset(
    {"task_id", "task_type", "task_function", "status", "task_submission_time", "priority"}
    | {"metadata", "task_details", "labels"}
)
META = "farm_adapters"
#: The job ids this backend creates (uuid4 hex, 12 digits); tasks carrying any other
#: id in their metadata are not ours (and their id never reaches a file path).
JOB_ID = re.compile(r"[0-9a-f]{12}")
#: The shapes of the answers this backend reads (see farm_adapters.http.conforms).
TASK = {
    "task_id": str,
    "status": str,
    "task_type": str,
    "metadata?": (dict, type(None)),
    "task_submission_time?": (float, type(None)),
}
TASK_LIST = MapOf([TASK])
DEFINITIONS = MapOf(dict)
SUBMITTED = {"task_id": str}
HISTORY = [{"status": str}]
TIMED_HISTORY = [{"status": str, "time?": (float, int, type(None))}]
#: The key under which a settled task in the book keeps its run times (read once).
TIMES = "fa_times"
#: Statuses of a task whose process is being started or runs.
RUN_STATUSES = frozenset({"starting", "running"})
#: Statuses of a task waiting for an agent (again, after a retry).
QUEUED_STATUSES = frozenset({"submitted", "waiting", "pending", "unscheduled"})
LOG = {"logs": (str, type(None))}


class OmniverseFarmSettings(HttpSettings):
    """Settings of an ``ovfarm`` target (plus url, verify, timeout, retries, log_dir)."""

    api_key: SecretStr | None = Field(
        default=None, description="X-API-KEY for jobs/save and jobs/remove (a secret reference)"
    )
    user: str | None = Field(default=None, description="submitting user (default: login)")
    labels: list[str] = Field(
        default_factory=list, description="agent labels; the Farm matches them exactly, in order"
    )
    job_definition: str | None = Field(
        default=None, description="run through this job definition instead of the runner"
    )
    folders: str | None = Field(
        default=None,
        description="temporary folders: a path both this machine and the agents reach",
    )
    propagation_timeout: float = Field(
        default=90.0, ge=0, description="seconds to wait for a saved definition to load"
    )


def _utc(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, tz=timezone.utc) if ts else None


def _meta(task: dict[str, Any]) -> dict[str, Any]:
    meta = (task.get("metadata") or {}).get(META)
    return meta if isinstance(meta, dict) else {}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def run_times(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A task's latest run from its revision history (oldest first): when it started
    and ended (POSIX times, None when unknown) and how many times it ran."""
    runs, start, end, previous = 0, None, None, None
    for row in rows:
        status, when = row.get("status"), row.get("time")
        when = float(when) if isinstance(when, (int, float)) else None
        if status in RUN_STATUSES and previous not in RUN_STATUSES:
            runs, start, end = runs + 1, when, None
        elif status in QUEUED_STATUSES:
            start, end = None, None
        elif status in ("finished", "errored", "cancelled"):
            end = when
        previous = status
    return {"started_at": start, "finished_at": end, "runs": runs}


def _frames_label(frames: Any) -> str:
    listed = [f for f in str(frames or "").split(",") if f]
    return listed[0] if len(listed) == 1 else f"{listed[0]}-{listed[-1]}" if listed else ""


class OmniverseFarmPlugin(HttpFarmPlugin):
    """Submits to an Omniverse Farm queue. Thread-safe."""

    name = "ovfarm"
    display_name = "NVIDIA Omniverse Farm"
    settings_model = OmniverseFarmSettings
    #: Seconds a stop may take: the queue forces a cancelling task to cancelled after
    #: its cancel delay (30 s by default); `farm-adapters stop --wait` says so.
    stop_delay_hint = 30.0

    def __init__(self, settings: Any = None, *, target: str | None = None) -> None:
        super().__init__(settings, target=target)
        s: OmniverseFarmSettings = self.settings  # type: ignore[assignment]
        self.s = s
        self.user = s.user or getpass.getuser()
        self._definition: dict[str, Any] | None = None
        self._archived: dict[str, str] = {}
        self.log_dir = self.log_folder()
        self._book = TaskBook(self.log_dir)

    def _key_headers(self) -> dict[str, str]:
        if self.s.api_key is None:
            raise ConfigurationError(
                f"target {self.target!r}: publishing job definitions needs api_key; set "
                f'api_key = {{ env = "FARM_API_KEY" }} in the target'
            )
        return {"X-API-KEY": self.s.api_key.get_secret_value()}

    def list_tasks(
        self, statuses: Sequence[str] = mapping.ALL_STATUSES_2_0_42, task_type: str | None = None
    ) -> list[dict[str, Any]]:
        """Every task in ``statuses`` in one request; flattens the tuple-keyed answer."""
        params: list[tuple[str, str]] = [("status", s) for s in statuses]
        params += [("field", f) for f in LIST_FIELDS]
        if task_type:
            params.append(("task_type", task_type))
        response = self.http.request("GET", f"{TASKS}/list", idempotent=True, params=params)
        data = self.http.json(response, "listing tasks", TASK_LIST)
        return [task for group in data.values() for task in group]

    def _task_info(self, task_id: str) -> dict[str, Any] | None:
        response = self.http.request("GET", f"{TASKS}/info/{task_id}", idempotent=True)
        if response.status_code == 404:
            return None
        result: dict[str, Any] = self.http.json(response, f"reading task {task_id}", TASK)
        return result

    # -- job definitions ---------------------------------------------------------------

    def load_definitions(self, name: str | None = None) -> dict[str, dict[str, Any]]:
        """Job definitions on the farm: all, or the one called ``name`` (if present)."""
        params = {}
        if name is not None:
            # The service strips every filter character but letters, digits, '.' and
            # '*' (so "fa-runner" would become "farunner" and match nothing): send each
            # other character as the regex '.', then keep only the exact name.
            params["filter"] = "".join(c if c.isalnum() or c in ".*" else "." for c in name)
        response = self.http.request("GET", f"{JOBS}/load", idempotent=True, params=params)
        data: dict[str, dict[str, Any]] = self.http.json(
            response, "loading job definitions", DEFINITIONS
        )
        if name is not None:
            return {n: d for n, d in data.items() if n == name}
        return data

    def save_definition(self, definition: dict[str, Any]) -> None:
        response = self.http.request(
            "POST", f"{JOBS}/save", idempotent=True, json=definition, headers=self._key_headers()
        )
        self.http.check(response, f"saving job definition {definition.get('name')!r}")

    def remove_definition(self, name: str) -> None:
        response = self.http.request(
            "POST",
            f"{JOBS}/remove",
            idempotent=True,
            json={"job_definition_name": name},
            headers=self._key_headers(),
        )
        self.http.check(response, f"removing job definition {name!r}")

    def publish_definition(self, definition: dict[str, Any]) -> None:
        """Save a definition, then wait until ``jobs/load`` shows it (the jobs service
        and the agents learn of it with a delay on some deployments)."""
        self.save_definition(definition)
        # Said aloud (the CLI prints the farm_adapters.notice logger): agents learn of a
        # new definition with a delay, so the first tasks may sit queued that long.
        logging.getLogger("farm_adapters.notice").info(
            "published job definition %r on target %r; the farm's agents may take up to "
            "~30 s to see a new definition, so the first tasks can wait queued that long",
            definition.get("name"),
            self.target,
        )
        deadline = time.monotonic() + self.s.propagation_timeout
        name = definition["name"]
        while name not in self.load_definitions(name):
            if time.monotonic() > deadline:
                raise APIError(
                    f"target {self.target!r}: job definition {name!r} was saved but "
                    f"jobs/load still does not show it after {self.s.propagation_timeout:g} s"
                )
            time.sleep(0.5)

    def _job_definition(self) -> dict[str, Any]:
        with self._lock:
            cached = self._definition
        if cached is not None:
            return cached
        if self.s.job_definition:
            found = self.load_definitions(self.s.job_definition).get(self.s.job_definition)
            if found is None:
                raise ConfigurationError(
                    f"target {self.target!r}: job definition {self.s.job_definition!r} is not "
                    f"on the farm; push it with `farm-adapters jobdefs push FILE --target "
                    f"{self.target}`"
                )
            definition = {"name": self.s.job_definition, **found}
        else:
            definition = mapping.runner_definition()
            existing = self.load_definitions(definition["name"]).get(definition["name"])
            if existing is None or any(existing.get(k) != v for k, v in definition.items()):
                self.publish_definition(definition)
        with self._lock:
            self._definition = definition
        return definition

    # -- stage 1: files ----------------------------------------------------------------

    def create_temporary_folder(self, render_context: str) -> str:
        root = self.s.folders or data_dir() / "ovfarm-folders"
        return self.make_temporary_folder(render_context, root)

    def copy_render_files(
        self, paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
    ) -> list[str]:
        return self.copy_files(paths, folder, progress)

    # -- stage 3: submit ---------------------------------------------------------------

    def _labels(self, request: JobRequest) -> list[str]:
        return list(dict.fromkeys([*self.s.labels, *request.requirements.labels]))

    def _check_requirements(self, request: JobRequest) -> dict[str, Any]:
        req = request.requirements
        unsupported = {
            "gpus": "set GPUs in the job definition's capacity_requirements",
            "cpus": "set CPUs in the job definition's capacity_requirements",
            "memory": "set memory in the job definition's capacity_requirements",
            "timeout": "set active_deadline_seconds in the job definition",
            "pool": "route tasks with labels instead",
        }
        for key, fix in unsupported.items():
            if getattr(req, key):
                raise InvalidRequestError(
                    f"requirements.{key}: Omniverse Farm tasks cannot ask for this; {fix}",
                    field=f"requirements.{key}",
                )
        extra = dict(req.extra)
        task_requirements = extra.pop("task_requirements", {})
        for key in extra:
            raise InvalidRequestError(
                f"requirements.extra.{key}: ovfarm knows only 'task_requirements'",
                field=f"requirements.extra.{key}",
            )
        if not isinstance(task_requirements, dict):
            raise InvalidRequestError(
                "requirements.extra.task_requirements must be a table",
                field="requirements.extra.task_requirements",
            )
        check_env_names(request.commands)
        return task_requirements

    def _bodies(
        self, request: JobRequest, job_id: str, definition: dict[str, Any]
    ) -> list[dict[str, Any]]:
        task_requirements = self._check_requirements(request)
        env = [{"name": k, "value": v} for k, v in request.environment.items()]
        tasks = request.tasks()
        runner = not self.s.job_definition
        bodies = []
        for task in tasks:
            if runner:
                task_args = {mapping.RUNNER_ARG: task_script(task.commands)}
            else:
                if len(task.commands) != 1:
                    raise InvalidRequestError(
                        "commands: a named Farm job definition runs one command per task; "
                        "give exactly one",
                        field="commands",
                    )
                command = task.commands[0]
                if command.cwd or command.env or command.shell:
                    raise InvalidRequestError(
                        "commands[0]: with a named job definition, cwd, env and shell come "
                        "from the definition; use the request's environment instead",
                        field="commands.0",
                    )
                task_args = mapping.task_args_for_definition(definition, command.argv)
            retry: dict[str, Any] = {"is_retryable": request.max_retries > 0}
            if request.max_retries:
                retry["limit"] = request.max_retries
            bodies.append(
                {
                    # The target's user wins: cancel and retry act as it too.
                    "user": self.s.user or request.user or self.user,
                    "task_type": definition["name"],
                    "task_args": task_args,
                    "task_function": definition.get("task_function", ""),
                    "task_requirements": {
                        **task_requirements,
                        "env": [*task_requirements.get("env", []), *env],
                    },
                    "task_comment": f"{request.name} {task.label}",
                    "priority": mapping.farm_priority(request.priority),
                    "metadata": {
                        META: {
                            "job": job_id,
                            "task": task.index,
                            "tasks": len(tasks),
                            "name": request.name,
                            "render_context": request.render_context,
                            "frames": ",".join(str(f) for f in task.frames),
                        },
                        "_retry": retry,
                    },
                    "labels": self._labels(request),
                }
            )
        return bodies

    def native_payloads(self, request: JobRequest) -> list[dict[str, Any]]:
        self.refuse_unsupported(request)  # after, hold
        if self.s.job_definition:
            definition = self._job_definition()
            payloads = []
        else:
            definition = mapping.runner_definition()
            payloads = [{"method": "POST", "path": f"{JOBS}/save", "body": definition}]
        job_id = "<job id>"
        return payloads + [
            {"method": "POST", "path": f"{TASKS}/submit", "body": body}
            for body in self._bodies(request, job_id, definition)
        ]

    def submit_job(self, request: JobRequest) -> str:
        self.refuse_unsupported(request)  # after, hold
        definition = self._job_definition()
        job_id = uuid.uuid4().hex[:12]
        bodies = self._bodies(request, job_id, definition)
        announce_job_id(self, job_id)  # journalled before any task exists
        task_type = definition["name"]
        task_ids, failure = submit_each(
            bodies, lambda index, body: self._submit_task(job_id, index, body, task_type)
        )
        if failure is not None:
            index, exc = failure
            raise self._abandon(job_id, index, len(bodies), exc) from exc
        # Every task is known: polls list the live ones only, with no look at history.
        book = JobBook(
            task_type=definition["name"], total=len(bodies), watch=set(task_ids), complete=True
        )
        self._book.save(job_id, book)
        return job_id

    def _submit_task(self, job_id: str, index: int, body: dict[str, Any], task_type: str) -> str:
        """Submit one task exactly once: after an ambiguous failure, look for it (by its
        metadata) before trying again. The farm's id of the task."""
        for attempt in range(self.s.retries + 1):
            try:
                response = self.http.request("POST", f"{TASKS}/submit", idempotent=False, json=body)
                answer = self.http.json(response, f"submitting task {index}", SUBMITTED)
                return str(answer["task_id"])
            except OutcomeUnknownError:
                try:
                    if (found := self._find_task(job_id, index, task_type)) is not None:
                        return str(found["task_id"])
                except FarmAdapterError:
                    pass  # cannot look: try again, or give up below
                if attempt == self.s.retries:
                    raise
                time.sleep(min(0.2 * 2**attempt, 5.0))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _abandon(self, job_id: str, index: int, total: int, exc: FarmAdapterError) -> SubmitError:
        """Cancel what a failed submit left on the farm (best effort); the error to
        raise, saying what became of it."""
        transient = isinstance(exc, BackendUnavailableError)  # 429, unreachable, unknown
        try:
            left = self._group(self.list_tasks()).get(job_id, [])
            if left:
                self.stop_job(job_id)
        except FarmAdapterError as err:
            return SubmitError(
                f"target {self.target!r}: job {job_id}: task {index} of {total} could not be "
                f"submitted ({exc}); its earlier task(s) may be on the farm and could not be "
                f"cancelled ({err}); stop them with `farm-adapters stop {job_id} --target "
                f"{self.target}`",
                transient=transient,
            )
        if not left:
            return SubmitError(
                f"target {self.target!r}: the farm did not take job {job_id}: {exc}",
                transient=transient,
            )
        return SubmitError(
            f"target {self.target!r}: job {job_id}: task {index} of {total} could not be "
            f"submitted ({exc}); the {len(left)} task(s) already on the farm were cancelled "
            f"(see `farm-adapters status {job_id} --target {self.target}`)",
            transient=transient,
        )

    def _find_task(self, job_id: str, index: int, task_type: str) -> dict[str, Any] | None:
        """The task ``index`` of a job being submitted, if the farm has it: among the
        live tasks first (where a task just sent is), the farm's history only if not."""
        final = tuple(s for s in mapping.ALL_STATUSES_2_0_42 if s not in mapping.LIVE_STATUSES)
        for statuses in (mapping.LIVE_STATUSES, final):
            for task in self.list_tasks(statuses, task_type=task_type):
                meta = (task.get("metadata") or {}).get(META) or {}
                if meta.get("job") == job_id and meta.get("task") == index:
                    return task
        return None

    # -- information -------------------------------------------------------------------

    def _history(self, task_id: str) -> list[dict[str, Any]]:
        response = self.http.request("GET", f"{TASKS}/revision-history/{task_id}", idempotent=True)
        rows: list[dict[str, Any]] = self.http.json(
            response, f"reading history of task {task_id}", TIMED_HISTORY
        )
        return rows

    def _status(self, task: dict[str, Any]) -> str:
        status = str(task.get("status"))
        if status != "archived":
            return status
        task_id = task["task_id"]
        if task_id not in self._archived:
            response = self.http.request(
                "GET", f"{TASKS}/revision-history/{task_id}", idempotent=True
            )
            rows = self.http.json(response, f"reading history of task {task_id}", HISTORY)
            before = [r["status"] for r in rows if r.get("status") != "archived"]
            self._archived[task_id] = before[-1] if before else "archived"
        return self._archived[task_id]

    def _group(self, tasks: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        jobs: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            meta = (task.get("metadata") or {}).get(META)
            if isinstance(meta, dict) and JOB_ID.fullmatch(str(meta.get("job"))):
                jobs.setdefault(str(meta["job"]), []).append(task)
        for group in jobs.values():
            group.sort(key=lambda t: _int(t["metadata"][META].get("task"), 0))
        return jobs

    def _job(self, job_id: str, tasks: list[dict[str, Any]]) -> Job:
        meta = tasks[0]["metadata"][META]
        statuses = [self._status(t) for t in tasks]
        states = [mapping.map_state(s) for s in statuses]
        missing = _int(meta.get("tasks"), len(tasks)) - len(tasks)
        # Tasks never submitted (a submit that failed part-way cancels what it sent):
        # once every task sent is stopped, the missing ones count as stopped too.
        stopped = all(st in (JobState.STOPPED, JobState.STOPPING) for st in states)
        states += [JobState.STOPPED if stopped else JobState.UNKNOWN] * max(0, missing)
        failed = [t for t, s in zip(tasks, statuses, strict=False) if s == "errored"]
        message = ""
        if failed:
            message = f"task {failed[0]['metadata'][META].get('task')}: " + (
                failed[0].get("task_details") or "errored"
            )
        elif missing > 0:
            message = f"{missing} task(s) missing from the farm (never submitted?)"
        submitted = min((t.get("task_submission_time") or 0) for t in tasks)
        # Times of the settled tasks, read once from the farm's revision history.
        times = [t[TIMES] for t in tasks if isinstance(t.get(TIMES), dict)]
        starts = [x["started_at"] for x in times if x.get("started_at")]
        ends = [x["finished_at"] for x in times if x.get("finished_at")]
        job = Job.from_task_states(
            states,
            id=job_id,
            name=str(meta.get("name", "")),
            backend=self.name,
            target=self.target,
            render_context=meta.get("render_context"),
            native_ids=[t["task_id"] for t in tasks],
            submitted_at=_utc(submitted),
            started_at=_utc(min(starts, default=None)),
            message=message,
        )
        if job.state.final and len(times) == len(tasks) and ends:
            job = job.model_copy(update={"finished_at": _utc(max(ends))})
        return job

    def _job_tasks(self, job_id: str) -> list[dict[str, Any]]:
        """Every task of the job, at the cost of the farm's live tasks: one listing of
        the non-final statuses, plus one ``tasks/info`` per task of the job that left
        it since the last poll; the farm's history is listed only for a job this
        backend has never seen (see :mod:`.book`)."""
        if not JOB_ID.fullmatch(job_id):  # not an id this backend makes
            raise JobNotFoundError(job_id, backend=self.target)
        book = self._book.get(job_id)
        before = book.to_json()
        listed = self.list_tasks(mapping.LIVE_STATUSES, task_type=book.task_type)
        live = self._group(listed).get(job_id, [])
        live_ids = {t["task_id"] for t in live}
        for task_id in live_ids & book.final.keys():  # retried: live again
            del book.final[task_id]
        left = []  # tasks that left the live listing and are not settled yet
        for task_id in sorted(book.watch - live_ids - book.final.keys()):
            info = self._task_info(task_id)
            if info is None:  # gone from the farm
                continue
            # What a listing shows, no more: the book is a file, and a task's
            # requirements may carry the job's environment.
            info = {k: v for k, v in info.items() if k in KEPT_FIELDS}
            if settled(info):
                book.final[task_id] = info
            else:
                left.append(info)
        tasks = live + left + [t for i, t in book.final.items() if i not in live_ids]
        total = max((_int(_meta(t).get("tasks"), 0) for t in tasks), default=0)
        if not book.complete and (not tasks or len(tasks) < total):
            # Never seen whole: read the job from the farm's history, once.
            tasks = self._group(self.list_tasks(task_type=book.task_type)).get(job_id, [])
            book.final = {t["task_id"]: t for t in tasks if settled(t)}
            total = max((_int(_meta(t).get("tasks"), 0) for t in tasks), default=0)
            book.complete = len(tasks) >= total or len(book.final) == len(tasks)
        elif tasks and len(tasks) >= total:
            book.complete = True
        if not tasks:
            raise JobNotFoundError(job_id, backend=self.target)
        book.watch = {t["task_id"] for t in tasks} - book.final.keys()
        timed = False
        for task_id, task in list(book.final.items()):
            if TIMES not in task:  # settled since the last poll: its times, once
                with contextlib.suppress(FarmAdapterError):  # read again next poll
                    book.final[task_id] = {**task, TIMES: run_times(self._history(task_id))}
                    timed = True
        if timed:
            tasks = [book.final.get(t["task_id"], t) for t in tasks]
        book.task_type = book.task_type or str(tasks[0]["task_type"])
        book.total = total
        if timed or book.to_json() != before:
            self._book.save(job_id, book)
        tasks.sort(key=lambda t: _int(_meta(t).get("task"), 0))
        return tasks

    def get_job(self, job_id: str) -> Job:
        return self._job(job_id, self._job_tasks(job_id))

    def get_task_details(self, job_id: str) -> list[dict[str, Any]]:
        """One dict per task, in order: index, frames, state, attempt (runs so far),
        exit_code (None: the Farm does not report it), started_at and finished_at of
        the latest run (POSIX times), message. Costs a poll plus one revision-history
        read per task not yet settled. Read by ``farm-adapters status --tasks``."""
        details = []
        for task in self._job_tasks(job_id):
            times = task.get(TIMES)
            if not isinstance(times, dict):
                times = run_times(self._history(task["task_id"]))
            meta = _meta(task)
            details.append(
                {
                    "index": _int(meta.get("task"), 0),
                    "frames": _frames_label(meta.get("frames")),
                    "state": mapping.map_state(self._status(task)).value,
                    "attempt": times.get("runs", 0),
                    "exit_code": None,
                    "started_at": times.get("started_at"),
                    "finished_at": times.get("finished_at"),
                    "message": task.get("task_details") or "",
                }
            )
        return details

    def get_jobs(self, states: Sequence[JobState] | None = None) -> list[Job]:
        groups = self._group(self.list_tasks())
        jobs = [self._job(job_id, tasks) for job_id, tasks in groups.items()]
        jobs.sort(
            key=lambda j: j.submitted_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True
        )
        return [j for j in jobs if not states or j.state in states]

    # -- render log: a local, append-only mirror of the tasks' logs --------------------

    def _log_source(self, task: dict[str, Any]) -> LogSource:
        task_id = task["task_id"]
        status = self._status(task)
        meta = task["metadata"][META]

        def fetch() -> str | None:
            response = self.http.request("GET", f"{LOGS}/{task_id}", idempotent=True)
            if response.status_code == 404:  # nothing uploaded yet
                return None
            data = self.http.json(response, f"reading log of task {task_id}", LOG)
            return str(data["logs"] or "")

        return LogSource(
            key=task_id,
            header=f"[farm-adapters] task {meta.get('task')} (frames "
            f"{meta.get('frames') or '-'}) farm task {task_id}\n",
            fetch=fetch,
            final=status in mapping.FINAL_STATUSES,
            skip=status in mapping.NO_LOG_STATUSES,
        )

    def get_render_log(self, job_id: str, offset: int = 0) -> LogChunk:
        tasks = self._job_tasks(job_id)
        mirror = LogMirror(self.log_dir, job_id)
        return mirror.chunk(job_id, (self._log_source(t) for t in tasks), offset)

    def get_render_log_filename(self, job_id: str) -> str | None:
        self._job_tasks(job_id)
        path = LogMirror(self.log_dir, job_id).path
        return str(path) if path.exists() else None

    # -- control -----------------------------------------------------------------------

    def _update_body(self, task: dict[str, Any], status: str) -> dict[str, Any]:
        # 2.0.42 requires task_id, task_type and status; newer servers need only task_id.
        return {
            "task_id": task["task_id"],
            "task_type": task["task_type"],
            "task_function": task.get("task_function") or "",
            "status": status,
            "userid": self.user,
        }

    def stop_job(self, job_id: str) -> None:
        for task in self._job_tasks(job_id):
            status = str(task.get("status"))
            if status in mapping.FINAL_STATUSES or status == "cancelling":
                continue
            response = self.http.request(
                "POST",
                f"{TASKS}/cancel",
                idempotent=True,
                json=self._update_body(task, status),
                retry_statuses=(429, 502, 503, 504),
            )
            if response.status_code >= 500:
                # The Farm answers 500 when the task ended meanwhile: check, do not fail.
                info = self._task_info(task["task_id"])
                if info is not None and (
                    info["status"] in mapping.FINAL_STATUSES or info["status"] == "cancelling"
                ):
                    continue
            self.http.check(response, f"cancelling task {task['task_id']}")

    def restart_job(self, job_id: str) -> None:
        tasks = self._job_tasks(job_id)
        job = self._job(job_id, tasks)
        if not job.state.final:
            raise InvalidRequestError(
                f"job {job_id} is {job.state}; stop it or wait for it to end before restarting",
                field="job_id",
            )
        everything = job.state is JobState.COMPLETED
        # A quick rerun may end between two log reads: read these tasks' logs again.
        LogMirror(self.log_dir, job_id).reopen(
            t["task_id"] for t in tasks if everything or self._status(t) != "finished"
        )
        retried: list[str] = []  # asked to retry, even if the answer was lost
        try:
            for task in tasks:
                self._retry_task(job_id, task, everything, retried)
        finally:
            # Watched again: a retried task that ends before the next poll is read back.
            book = self._book.get(job_id)
            for task_id in retried:
                book.final.pop(task_id, None)
                book.watch.add(task_id)
            self._book.save(job_id, book)

    def _retry_task(
        self, job_id: str, task: dict[str, Any], everything: bool, retried: list[str]
    ) -> None:
        """Queue one task of a final job again (a finished one only if ``everything``)."""
        status = self._status(task)
        if status == "finished" and not everything:
            return
        if task.get("status") == "archived":
            raise InvalidRequestError(
                f"job {job_id}: task {task['task_id']} is archived and cannot be retried; "
                f"submit the job again",
                field="job_id",
            )
        metadata = dict(task.get("metadata") or {})
        retry = dict(metadata.get("_retry") or {})
        retry.pop("count", None)
        retry.pop("is_done", None)
        metadata["_retry"] = retry
        body = {
            **self._update_body(task, status),
            "metadata": metadata,
            "details": "restarted by farm-adapters",
        }
        retried.append(task["task_id"])
        response = self.http.request(
            "POST",
            f"{TASKS}/retry",
            idempotent=True,
            json=body,
            retry_statuses=(429, 502, 503, 504),
        )
        if response.status_code >= 500:
            info = self._task_info(task["task_id"])
            if info is not None and info["status"] not in mapping.FINAL_STATUSES:
                return  # already queued again
        self.http.check(response, f"retrying task {task['task_id']}")

    # -- test --------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        results = []
        try:
            response = self.http.request("GET", f"{TASKS}/status", idempotent=True)
            self.http.check(response, "the tasks service")
            results.append(CheckResult(name="reachable", ok=True, detail=self.s.url))
        except FarmAdapterError as exc:
            return [CheckResult(name="reachable", ok=False, detail=str(exc))]
        try:
            definitions = self.load_definitions()
            detail = f"{len(definitions)} job definition(s)"
            ok = True
            if self.s.job_definition and self.s.job_definition not in definitions:
                ok, detail = False, f"job definition {self.s.job_definition!r} is missing"
            results.append(CheckResult(name="job store", ok=ok, detail=detail))
        except FarmAdapterError as exc:
            results.append(CheckResult(name="job store", ok=False, detail=str(exc)))
        if self.s.api_key is None:
            needed = not self.s.job_definition
            results.append(
                CheckResult(
                    name="api key",
                    ok=not needed,
                    detail="not set; needed to publish the runner job definition"
                    if needed
                    else "not set (not needed with a named job definition)",
                )
            )
        else:
            try:
                # Removing a definition that does not exist changes nothing and always
                # succeeds with the right key.
                self.remove_definition("fa-key-probe-nonexistent")
                results.append(CheckResult(name="api key", ok=True, detail="accepted"))
            except FarmAdapterError as exc:
                results.append(CheckResult(name="api key", ok=False, detail=str(exc)))
        return results
