"""studio_farm: a whole farm-adapters backend in one file: a spool-folder farm.

Every job is a folder, <root>/jobs/<id>/, holding job.json (its tasks and their states)
and job.log (its render log, append-only). A detached worker process (this file run as
a script: `python studio_farm.py <root>`) runs queued tasks one at a time, highest
priority first, and exits when none is left. Every instance of the backend, in every
process, reads the same folder, so a job submitted from the CLI is found, polled,
stopped and restarted from anywhere, and outlives the process that submitted it.

It honours max_retries, requirements.timeout, priority and the target's storage, and
refuses what it cannot do (GPUs, memory, labels, pools, extras) naming the field.
POSIX only (fcntl, process groups). Drop this file in <dir>/Plugins/ and put <dir> on
FARM_ADAPTERS_RESOURCES.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from farm_adapters import (
    BackendUnavailableError,
    CheckResult,
    FarmPlugin,
    InvalidRequestError,
    Job,
    JobNotFoundError,
    JobState,
    LogChunk,
    hookimpl,
)
from farm_adapters.logfile import read_chunk

QUEUED, RUNNING, COMPLETED, FAILED, STOPPED = "queued", "running", "completed", "failed", "stopped"
JOB_ID = re.compile(r"^[0-9a-f]{12}$")


class StudioFarmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error
    root: str = "/tmp/studio-farm"


class Spool:
    """The farm's folder; shared by every backend instance and the worker."""

    def __init__(self, root: Path) -> None:
        self.root, self.jobs = root, root / "jobs"

    @contextlib.contextmanager
    def locked(self):
        """One writer at a time, across threads and processes."""
        self.jobs.mkdir(parents=True, exist_ok=True)
        with open(self.root / "spool.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def read(self, job_id: str) -> dict:
        if not JOB_ID.match(job_id):
            raise JobNotFoundError(job_id, backend="studio_farm")
        try:
            return json.loads((self.jobs / job_id / "job.json").read_text())
        except FileNotFoundError:
            raise JobNotFoundError(job_id, backend="studio_farm") from None

    def write(self, job: dict) -> None:
        path = self.jobs / job["id"] / "job.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(job))
        os.replace(path.with_suffix(".tmp"), path)  # readers never see half a file

    def all_jobs(self) -> list[dict]:
        found = (self.read(p.parent.name) for p in self.jobs.glob("*/job.json"))
        return sorted(found, key=lambda j: j["submitted"], reverse=True)

    def log(self, job_id: str, text: str) -> None:
        with open(self.jobs / job_id / "job.log", "a") as log:
            log.write(text)


# -- the worker: `python studio_farm.py <root>` ----------------------------------------


def work(root: Path) -> None:
    spool = Spool(root)
    spool.jobs.mkdir(parents=True, exist_ok=True)
    with open(root / "worker.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker per farm; later ones wait their turn
        lock.write(f"{os.getpid()}\n")  # who the worker is, for a TD to look at
        lock.flush()
        with spool.locked():  # a task left RUNNING belonged to a worker that died
            for job in spool.all_jobs():
                for task in job["tasks"]:
                    if task["state"] == RUNNING:
                        if task["pid"]:  # its processes outlived their worker: end them
                            with contextlib.suppress(ProcessLookupError):
                                os.killpg(task["pid"], signal.SIGKILL)
                        task.update(state=STOPPED if job["stop"] else FAILED, pid=None)
                        spool.log(job["id"], f"[studio_farm] {task['label']}: worker died\n")
                        spool.write(job)
        while (picked := next_task(spool)) is not None:
            run_task(spool, *picked)


def next_task(spool: Spool) -> tuple[str, int] | None:
    with spool.locked():
        queue = [j for j in spool.all_jobs() if not j["stop"]]
        for job in sorted(queue, key=lambda j: (-j["priority"], j["submitted"])):
            for index, task in enumerate(job["tasks"]):
                if task["state"] == QUEUED:
                    task["state"] = RUNNING
                    spool.write(job)
                    return job["id"], index
    return None


def run_task(spool: Spool, job_id: str, index: int) -> None:
    job = spool.read(job_id)
    task, code, why = job["tasks"][index], 0, ""
    with open(spool.jobs / job_id / "job.log", "ab") as log:
        for command in task["commands"]:
            try:
                process = subprocess.Popen(
                    command["argv"],
                    cwd=command["cwd"],
                    env={**os.environ, **job["environment"], **command["env"]},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, for stop_job to end
                )
            except OSError as exc:
                code, why = 127, f" (cannot start it: {exc})"
                break
            with spool.locked():  # record the pid so any process can stop the task
                job = spool.read(job_id)
                job["tasks"][index]["pid"] = process.pid
                spool.write(job)
                if job["stop"]:
                    os.killpg(process.pid, signal.SIGTERM)
            try:
                code = process.wait(timeout=job["timeout"])
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                code, why = process.wait(), f" (exceeded its timeout, {job['timeout']:g} s)"
            if code != 0:
                break
    with spool.locked():
        job = spool.read(job_id)
        task = job["tasks"][index]
        task["pid"] = None
        if job["stop"]:
            task["state"] = STOPPED
        elif code == 0:
            task["state"] = COMPLETED
        elif not why and task["attempts"] < job["max_retries"]:
            task.update(state=QUEUED, attempts=task["attempts"] + 1)
            why = " (will be retried)"
        else:
            task["state"] = FAILED
        spool.write(job)
    spool.log(job_id, f"[studio_farm] {task['label']} exited with code {code}{why}\n")


# -- the backend -----------------------------------------------------------------------


class StudioFarmPlugin(FarmPlugin):
    name = "studio_farm"
    display_name = "Studio farm (example)"
    settings_model = StudioFarmSettings

    def __init__(self, settings=None, *, target=None) -> None:
        super().__init__(settings, target=target)
        self.root = Path(self.settings.root).expanduser().absolute()
        self.spool = Spool(self.root)

    # -- stage 1: files, on the target's storage when it has one
    def create_temporary_folder(self, render_context):
        return self.make_temporary_folder(render_context, self.root / "folders")

    def copy_render_files(self, paths, folder, progress=None):
        return self.copy_files(paths, folder, progress)

    # -- stage 3: submit
    def submit_job(self, request):
        req = request.requirements
        for key in req.extra:
            raise InvalidRequestError(
                f"requirements.extra.{key}: studio_farm takes no extras",
                field=f"requirements.extra.{key}",
            )
        for key in ("gpus", "cpus", "memory", "labels", "pool"):
            if getattr(req, key):
                raise InvalidRequestError(
                    f"requirements.{key}: studio_farm runs one task at a time on this "
                    f"machine and cannot reserve or select {key}; remove it",
                    field=f"requirements.{key}",
                )
        job_id = uuid.uuid4().hex[:12]  # unique across instances and processes
        tasks = [
            {
                "label": task.label,
                "commands": [
                    {"argv": c.resolved_argv(), "cwd": c.cwd, "env": c.env} for c in task.commands
                ],
                "state": QUEUED,
                "attempts": 0,
                "pid": None,
            }
            for task in request.tasks()
        ]
        job = {
            "id": job_id,
            "name": request.name,
            "render_context": request.render_context,
            "submitted": time.time(),
            "priority": request.priority,
            "max_retries": request.max_retries,
            "timeout": req.timeout,
            "environment": request.environment,
            "stop": False,
            "tasks": tasks,
        }
        with self._errors(), self.spool.locked():
            self.spool.write(job)
            self.spool.log(job_id, "")
        self._start_worker()
        return job_id

    def _start_worker(self):
        with self._errors(), open(self.root / "worker.err", "ab") as err:
            subprocess.Popen(
                [sys.executable, __file__, str(self.root)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,  # detached: it outlives this process
            )

    @contextlib.contextmanager
    def _errors(self):
        try:
            yield
        except OSError as exc:
            raise BackendUnavailableError(f"studio_farm spool {self.root}: {exc}") from exc

    # -- information
    def _view(self, job):
        states = [JobState(t["state"]) for t in job["tasks"]]
        view = Job.from_task_states(
            states,
            id=job["id"],
            name=job["name"],
            backend=self.name,
            target=self.target,
            render_context=job["render_context"],
            submitted_at=datetime.fromtimestamp(job["submitted"], timezone.utc),
        )
        if job["stop"] and not view.state.final:
            view.state = JobState.STOPPING  # the contract: stop_job() -> STOPPING -> STOPPED
        return view

    def get_job(self, job_id):
        with self._errors():
            return self._view(self.spool.read(job_id))

    def get_jobs(self, states=None):
        with self._errors():
            jobs = [self._view(job) for job in self.spool.all_jobs()]
        return [j for j in jobs if not states or j.state in states]

    def get_render_log(self, job_id, offset=0):
        final = self.get_job(job_id).state.final
        with self._errors():
            text, next_offset, size = read_chunk(self.spool.jobs / job_id / "job.log", offset)
        return LogChunk(
            job_id=job_id,
            text=text,
            offset=offset,
            next_offset=next_offset,
            complete=final and next_offset >= size,
        )

    # -- control
    def stop_job(self, job_id):
        with self._errors(), self.spool.locked():
            job = self.spool.read(job_id)
            if self._view(job).state.final:
                return  # stopping a final job does nothing
            job["stop"] = True
            for task in job["tasks"]:
                if task["state"] == QUEUED:
                    task["state"] = STOPPED
                if task["pid"]:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(task["pid"], signal.SIGTERM)
            self.spool.write(job)

    def restart_job(self, job_id):
        with self._errors(), self.spool.locked():
            job = self.spool.read(job_id)
            state = self._view(job).state
            if not state.final:
                raise InvalidRequestError(f"job {job_id} is {state}; stop it first", field="job_id")
            for task in job["tasks"]:  # a completed job runs again; else what did not complete
                if state is JobState.COMPLETED or task["state"] != COMPLETED:
                    task.update(state=QUEUED, attempts=0)
            job["stop"] = False
            self.spool.write(job)
            self.spool.log(job_id, "[studio_farm] restarted\n")
        self._start_worker()

    # -- test
    def check(self):
        try:
            with self.spool.locked():
                pass
        except OSError as exc:
            return [CheckResult(name="root", ok=False, detail=f"{self.root}: {exc}")]
        ok = CheckResult(name="root", ok=True, detail=f"{self.root} is writable")
        return [ok, *self.check_storage()]


@hookimpl
def farm_adapters_register_backends(register):
    register(StudioFarmPlugin)


if __name__ == "__main__":
    work(Path(sys.argv[1]))
