"""toy_farm: the example backend the documentation used to show, kept as it was.

It passed the nine checks of the first conformance suite, yet from the CLI it loses
every job (tasks run in threads of the submitting process; every process hands out the
id ``studio-1`` again), accepts ``max_retries``, ``requirements.timeout``, ``gpus``,
``memory`` and ``labels`` it never honours, fails with IsADirectoryError on a folder
and ignores the target's storage. tests/test_conformance_kit.py proves the suite now
fails it with messages that name the fix. Do not improve it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from farm_adapters import (
    CheckResult,
    FarmPlugin,
    InvalidRequestError,
    Job,
    JobNotFoundError,
    JobState,
    LogChunk,
    hookimpl,
)


class ToyFarmSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error
    root: str = "/tmp/studio-farm"


class _Job:
    def __init__(self, job_id: str, request, log: Path) -> None:
        self.id, self.name, self.log = job_id, request.name, log
        self.tasks, self.environment = request.tasks(), request.environment
        self.states = [JobState.QUEUED] * len(self.tasks)
        self.process: subprocess.Popen | None = None
        self.stop = threading.Event()


class ToyFarmPlugin(FarmPlugin):
    name = "toy_farm"
    display_name = "Toy farm (old example)"
    settings_model = ToyFarmSettings

    def __init__(self, settings=None, *, target=None) -> None:
        super().__init__(settings, target=target)
        self.root = Path(self.settings.root)
        self.jobs: dict[str, _Job] = {}
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    # -- stage 1: files
    def create_temporary_folder(self, render_context):
        folder = self.root / "jobs" / render_context
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)

    def copy_render_files(self, paths, folder, progress=None):
        return [shutil.copy2(path, folder) for path in paths]

    # -- stage 3: submit
    def submit_job(self, request):
        if request.requirements.extra:
            key = next(iter(request.requirements.extra))
            raise InvalidRequestError(
                f"requirements.extra.{key}: studio_farm takes no extras",
                field=f"requirements.extra.{key}",
            )
        with self.lock:
            job_id = f"studio-{next(self.ids)}"
            log = self.root / "logs" / f"{job_id}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.touch()
            job = self.jobs[job_id] = _Job(job_id, request, log)
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return job_id

    def _run(self, job):
        with open(job.log, "ab") as log:
            for index, task in enumerate(job.tasks):
                if job.states[index] is JobState.COMPLETED:
                    continue  # a restart re-runs only what did not complete
                if job.stop.is_set():
                    job.states[index] = JobState.STOPPED
                    continue
                job.states[index] = JobState.RUNNING
                code = 0
                for command in task.commands:
                    job.process = subprocess.Popen(
                        command.resolved_argv(),
                        stdout=log,
                        stderr=log,
                        env={**os.environ, **job.environment, **command.env},
                    )
                    code = job.process.wait()
                    if code != 0:
                        break
                if job.stop.is_set():
                    job.states[index] = JobState.STOPPED
                else:
                    job.states[index] = JobState.COMPLETED if code == 0 else JobState.FAILED
                    log.write(f"[studio_farm] {task.label} exited with code {code}\n".encode())
                    log.flush()

    def _job(self, job_id):
        try:
            return self.jobs[job_id]
        except KeyError:
            raise JobNotFoundError(job_id, backend=self.name) from None

    # -- information
    def get_job(self, job_id):
        job = self._job(job_id)
        view = Job.from_task_states(
            list(job.states), id=job.id, name=job.name, backend=self.name, target=self.target
        )
        if job.stop.is_set() and not view.state.final:
            view.state = JobState.STOPPING  # the contract: stop_job() -> STOPPING -> STOPPED
        return view

    def get_jobs(self, states=None):
        jobs = [self.get_job(job_id) for job_id in reversed(list(self.jobs))]
        return [j for j in jobs if not states or j.state in states]

    def get_render_log(self, job_id, offset=0):
        job = self._job(job_id)
        final = self.get_job(job_id).state.final
        with open(job.log, "rb") as f:
            f.seek(offset)
            data = f.read()
        return LogChunk(
            job_id=job_id,
            text=data.decode(errors="replace"),
            offset=offset,
            next_offset=offset + len(data),
            complete=final,
        )

    # -- control
    def stop_job(self, job_id):
        job = self._job(job_id)
        job.stop.set()
        if job.process is not None and job.process.poll() is None:
            job.process.terminate()

    def restart_job(self, job_id):
        job = self._job(job_id)
        if not self.get_job(job_id).state.final:
            raise InvalidRequestError(f"job {job_id} is still running", field="job_id")
        job.stop.clear()
        job.states = [s if s is JobState.COMPLETED else JobState.QUEUED for s in job.states]
        threading.Thread(target=self._run, args=(job,), daemon=True).start()

    # -- test
    def check(self):
        self.root.mkdir(parents=True, exist_ok=True)
        return [CheckResult(name="root", ok=True, detail=f"{self.root} is writable")]


@hookimpl
def farm_adapters_register_backends(register):
    register(ToyFarmPlugin)
