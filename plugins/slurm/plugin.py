"""``slurm``: a Slurm cluster through its command-line tools, here or on a login node.

One job is one ``sbatch --parsable --array=0-N`` (one array task per chunk of frames);
the job id is the array job id. A restart resubmits only the tasks that did not
complete, as a new array (an attempt) recorded under the same job id, so its output
follows the earlier attempt's in the same log.

State costs one ``squeue`` call per poll for all the user's jobs, plus one incremental
read of the jobcomp file for the final states (``scontrol -o show job`` where the
cluster keeps no jobcomp file). A task that vanished from both (cancelled while
pending) is STOPPED.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from farm_adapters import (
    CheckResult,
    FarmPlugin,
    InstallationMetadata,
    InvalidRequestError,
    Job,
    JobNotFoundError,
    JobRequest,
    JobState,
    LogChunk,
    SubmitError,
)
from farm_adapters.errors import (
    BackendUnavailableError,
    ConfigurationError,
    FarmAdapterError,
    TransferError,
)
from farm_adapters.logfile import LogMirror, LogSource
from farm_adapters.models import Dependency
from farm_adapters.plugin import ProgressCallback
from farm_adapters.shell import check_env_names

from . import mapping
from .records import JobStore, current_attempts

__all__ = ["SlurmPlugin", "SlurmSettings"]
from .transport import LocalTransport, Result, SshTransport, Transport

#: Subfolder of a job's temporary folder holding one output file per array task.
LOG_SUBDIR = "slurm-logs"
SQUEUE_FORMAT = "%F|%K|%T|%r"
#: Seconds the jobcomp file's location (from ``scontrol show config``) is remembered.
JOBCOMP_CACHE = 3600.0
#: sbatch errors that mean the request, not the cluster, is at fault.
_REFUSALS = (
    "invalid",
    "requested node configuration is not available",
    "unrecognized option",
    "unable to allocate resources",
    "access/permission denied",
    "exceeds",
)
_TRANSIENT = ("timed out", "unable to contact", "connection refused", "try again", "busy")
#: Client errors that mean the Slurm configuration is wrong.
_CONFIG = ("configuration file", "s_p_parse_file", "clustername")


class SlurmSettings(BaseModel):
    """Settings of a ``slurm`` target. Every key is optional: with ``SLURM_CONF`` exported
    and the client tools installed, ``backend = "slurm"`` alone works."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    slurm_conf: str | None = Field(
        default=None, description="slurm.conf path (default: $SLURM_CONF, then Slurm's own)"
    )
    bin_dir: str | None = Field(default=None, description="folder of sbatch/squeue/...")
    host: str | None = Field(default=None, description="login node to run the tools on (SSH)")
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = Field(default=None, description="SSH user (default: this user)")
    key_file: str | None = None
    password: SecretStr | None = Field(default=None, description="a secret reference")
    known_hosts: str = "~/.ssh/known_hosts"
    accept_new_host_key: bool = False
    use_agent: bool = True
    root: str | None = Field(
        default=None,
        description="folder on the cluster's shared filesystem for temporary folders "
        "(default: the data dir here, ~/farm-adapters on a login node)",
    )
    partition: str | None = Field(default=None, description="default partition (-p)")
    account: str | None = Field(default=None, description="-A")
    qos: str | None = Field(default=None, description="--qos")
    allow_negative_nice: bool = Field(
        default=False, description="priorities above 60 need a negative --nice (operators)"
    )
    jobcomp: str | None = Field(
        default=None, description="the jobcomp file (default: JobCompLoc of the cluster)"
    )
    state_dir: str | None = Field(
        default=None, description="where this workstation records its jobs and log mirrors"
    )
    python: str | None = Field(
        default=None,
        description="the nodes' Python with farm-adapters installed, for farm-side scripts "
        "such as the Blender renderer (default: this interpreter when Slurm runs here, "
        "else `python3`)",
    )


def _utc(text: str) -> datetime | None:
    if not text or text in ("Unknown", "None", "N/A"):
        return None
    try:
        return datetime.fromisoformat(text).astimezone(timezone.utc)
    except ValueError:
        return None


class SlurmPlugin(FarmPlugin):
    """Submits job arrays to Slurm. Thread-safe."""

    name = "slurm"
    display_name = "Slurm"
    settings_model = SlurmSettings

    def __init__(self, settings: Any = None, *, target: str | None = None) -> None:
        super().__init__(settings, target=target)
        s: SlurmSettings = self.settings  # type: ignore[assignment]
        self.s = s
        from farm_adapters._paths import data_dir

        safe = "".join(c if c.isalnum() or c in "-." else "_" for c in self.target)
        self.state_dir = (
            Path(s.state_dir).expanduser() if s.state_dir else data_dir() / "slurm" / safe
        )
        self._lock = threading.RLock()
        self.jobs = JobStore(self.state_dir, self.target)
        self._transport: Transport | None = None
        self._jobcomp: tuple[bool, str | None] | None = None  # (looked up, path)
        self._jobcomp_offset = 0
        self._jobcomp_partial = b""
        self._final: dict[tuple[str, int], mapping.TaskRecord] = {}
        self._gres: str | None = None
        self._home: str | None = None

    # -- plumbing ----------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        with self._lock:
            if self._transport is None:
                conf = self.s.slurm_conf
                if self.s.host:
                    self._transport = SshTransport(
                        conf,
                        self.s.bin_dir,
                        host=self.s.host,
                        port=self.s.port,
                        user=self.s.user,
                        key_file=self.s.key_file,
                        password=self.s.password.get_secret_value() if self.s.password else None,
                        known_hosts=self.s.known_hosts,
                        accept_new_host_key=self.s.accept_new_host_key,
                        use_agent=self.s.use_agent,
                    )
                else:
                    self._transport = LocalTransport(
                        conf or os.environ.get("SLURM_CONF"), self.s.bin_dir
                    )
            return self._transport

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def _run(self, *argv: str, stdin: str | None = None, what: str = "") -> Result:
        result = self.transport.run(argv, stdin)
        if result.returncode != 0 and what:
            raise self._error(argv[0], result, what)
        return result

    def _error(self, program: str, result: Result, what: str) -> FarmAdapterError:
        text = (result.stderr or result.stdout).strip().splitlines()
        detail = text[-1] if text else f"exit code {result.returncode}"
        where = f"target {self.target!r} ({self.transport.where})"
        lowered = (result.stderr or result.stdout).lower()
        if any(c in lowered for c in _CONFIG):
            return ConfigurationError(
                f"{where}: {program} cannot read its configuration ({detail}); fix SLURM_CONF "
                f"or the target's slurm_conf"
            )
        if any(t in lowered for t in _TRANSIENT) or "slurm_load" in lowered:
            return BackendUnavailableError(
                f"{where}: {program} could not reach slurmctld while {what}: {detail}; check "
                f"that the controller runs and that SLURM_CONF (or slurm_conf) is right"
            )
        from farm_adapters.errors import APIError

        return APIError(f"{where}: {program} failed while {what}: {detail}", body=detail)

    @property
    def root(self) -> str:
        if self.s.root:
            return self.s.root.rstrip("/") or "/"
        if self.s.host:
            with self._lock:
                if self._home is None:
                    self._home = self.transport.home()
            return f"{self._home}/farm-adapters"
        from farm_adapters._paths import data_dir

        return str(data_dir() / "slurm" / "folders")

    # -- stage 1: files ----------------------------------------------------------------

    def create_temporary_folder(self, render_context: str) -> str:
        remote = self.storage_folder(render_context)
        if remote is not None:
            return remote
        folder = f"{self.root}/{render_context}"
        self.transport.makedirs(folder)
        return folder

    def copy_render_files(
        self, paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
    ) -> list[str]:
        copied = self.storage_copy(paths, folder, progress)
        if copied is not None:
            return copied
        self.last_transfer = self.transport.upload(paths, folder, progress)
        return list(self.last_transfer.remote_paths)

    # -- stage 3: submit ---------------------------------------------------------------

    def _gpu_gres(self) -> str:
        with self._lock:
            if self._gres is None:
                self._gres = self._run(
                    "sinfo", "-h", "-o", "%G", what="reading the cluster's gres"
                ).stdout
            return self._gres

    def native_dependencies(self, after: Sequence[Dependency]) -> list[str]:
        """``afterok:``/``afterany:`` with every array task of the jobs' current
        attempts (``ID_INDEX``), so a restarted job counts by its latest run."""
        groups: dict[str, list[str]] = {"afterok": [], "afterany": []}
        for dep in after:
            kind = "afterok" if dep.condition == "succeeded" else "afterany"
            try:
                record = self.jobs.load(dep.job_id)
            except JobNotFoundError:
                raise InvalidRequestError(
                    f"after: job {dep.job_id!r} is not a job of target {self.target!r}; "
                    f"list them with `farm-adapters jobs -t {self.target}`",
                    field="after",
                ) from None
            for index, attempt in sorted(current_attempts(record).items()):
                groups[kind].append(f"{attempt['array']}_{index}")
        return [f"{kind}:{':'.join(ids)}" for kind, ids in groups.items() if ids]

    def _sbatch_options(self, request: JobRequest, log_dir: str) -> list[str]:
        if request.requirements.gpus and "gpu" not in self._gpu_gres():
            raise InvalidRequestError(
                f"requirements.gpus: target {self.target!r} has no GPU gres (sinfo shows "
                f"{self._gpu_gres().strip() or '(null)'}); remove gpus or use a GPU cluster",
                field="requirements.gpus",
            )
        options = [
            f"--job-name={request.name}",
            f"--output={log_dir}/%A_%a.out",
            "--open-mode=append",
        ]
        if request.folder:
            options.append(f"--chdir={request.folder}")
        options += mapping.requirement_options(
            request, allow_negative_nice=self.s.allow_negative_nice, partition=self.s.partition
        )
        if self.s.account:
            options.append(f"--account={self.s.account}")
        if self.s.qos:
            options.append(f"--qos={self.s.qos}")
        if request.comment:
            options.append(f"--comment={request.comment[:200]}")
        return options

    def _plan(self, request: JobRequest) -> tuple[list[str], str, str, list[Any]]:
        """(sbatch options without --array, the script, the log folder, the tasks)."""
        check_env_names(request.commands)
        for key in request.environment:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise InvalidRequestError(
                    f"environment: {key!r} cannot be exported by sh; use letters, digits, '_'",
                    field="environment",
                )
        folder = request.folder or f"{self.root}/{request.render_context}"
        log_dir = f"{folder.rstrip('/')}/{LOG_SUBDIR}"
        tasks = request.tasks()
        script = mapping.array_script(
            [(t.index, t.commands) for t in tasks],
            request.environment,
            max_retries=request.max_retries,
        )
        return self._sbatch_options(request, log_dir), script, log_dir, tasks

    def native_payloads(self, request: JobRequest) -> list[dict[str, Any]]:
        options, script, _, tasks = self._plan(request)
        if request.after:
            options.append(f"--dependency={','.join(self.native_dependencies(request.after))}")
        if request.hold:
            options.append("--hold")
        argv = ["sbatch", "--parsable", f"--array=0-{len(tasks) - 1}", *options]
        return [{"argv": argv, "script": script}]

    def _sbatch(self, argv: list[str], script: str) -> str:
        result = self._run(*argv, stdin=script)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            detail = next((x for x in lines if "fatal" in x), lines[-1] if lines else "")
            lowered = detail.lower()
            if any(c in "\n".join(lines).lower() for c in _CONFIG):
                raise self._error("sbatch", result, "submitting")
            if any(r in lowered for r in _REFUSALS) and not any(t in lowered for t in _TRANSIENT):
                raise InvalidRequestError(
                    f"target {self.target!r}: Slurm refused the job: {detail}", field="requirements"
                )
            transient = any(t in lowered for t in _TRANSIENT)
            hint = (
                "; check that slurmctld runs and that SLURM_CONF (or slurm_conf) is right"
                if transient
                else ""
            )
            raise SubmitError(
                f"target {self.target!r}: sbatch failed: {detail or result.returncode}{hint}",
                transient=transient,
            )
        array = result.stdout.strip().split(";")[0]
        if not array.isdigit():
            raise SubmitError(f"target {self.target!r}: sbatch answered {result.stdout!r}")
        return array

    def submit_job(self, request: JobRequest) -> str:
        options, script, log_dir, tasks = self._plan(request)
        if request.after:
            options.append(f"--dependency={','.join(self.native_dependencies(request.after))}")
            options.append("--kill-on-invalid-dep=yes")
        if request.hold:
            options.append("--hold")
        self.transport.makedirs(log_dir)
        indices = [t.index for t in tasks]
        array = self._sbatch(
            ["sbatch", "--parsable", f"--array=0-{len(tasks) - 1}", *options], script
        )
        record = {
            "id": array,
            "name": request.name,
            "render_context": request.render_context,
            "submitted_at": datetime.now(timezone.utc).isoformat(),
            "labels": [t.label for t in tasks],
            "log_dir": log_dir,
            "options": [
                o for o in options if not o.startswith(("--dependency", "--kill-on", "--hold"))
            ],
            "script": script,
            "attempts": [{"array": array, "indices": indices, "stopped": False}],
        }
        self.jobs.save(record)
        return array

    # -- state -------------------------------------------------------------------------

    def _jobcomp_path(self) -> str | None:
        """The cluster's jobcomp file (None without ``jobcomp/filetxt``): the setting,
        else ``scontrol show config`` once, remembered in ``state_dir`` for an hour so a
        poll from a fresh process (the CLI) costs no extra command."""
        with self._lock:
            if self._jobcomp is None:
                path = self.s.jobcomp
                if path is None:
                    path = self._cached_jobcomp()
                self._jobcomp = (True, path)
            return self._jobcomp[1]

    def _cached_jobcomp(self) -> str | None:
        cache = self.state_dir / "cluster.json"
        key = f"{self.s.host or ''}:{self.s.port}:{self.transport.slurm_conf or ''}"
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            data = json.loads(cache.read_text())
            if data["key"] == key and time.time() - float(data["at"]) < JOBCOMP_CACHE:
                found: str | None = data["jobcomp"]
                return found
        config = self._run("scontrol", "show", "config", what="reading the config")
        fields = {}
        for line in config.stdout.splitlines():
            name, _, value = line.partition("=")
            fields[name.strip()] = value.strip()
        path = None
        if fields.get("JobCompType") == "jobcomp/filetxt":
            path = fields.get("JobCompLoc") or None
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{threading.get_ident()}")
            tmp.write_text(json.dumps({"key": key, "at": time.time(), "jobcomp": path}))
            os.replace(tmp, cache)
        return path

    def _read_jobcomp(self) -> None:
        """Add the jobcomp file's new lines to the final states seen (one read)."""
        path = self._jobcomp_path()
        if path is None:
            return
        with self._lock:
            read = self.transport.read(path, self._jobcomp_offset)
            if read is None:
                return
            start, data = read
            if start != self._jobcomp_offset:  # rotated: read it again from the start
                self._jobcomp_offset, self._jobcomp_partial = start, b""
            text = self._jobcomp_partial + data
            cut = text.rfind(b"\n") + 1
            self._jobcomp_partial = text[cut:]
            self._jobcomp_offset += len(data)
            lines = text[:cut].decode(errors="replace").splitlines()
            self._final.update(mapping.parse_records(lines))

    def _snapshot(self, records: list[dict[str, Any]]) -> dict[tuple[str, int], Any]:
        """Every task of ``records``: one squeue call, then one jobcomp read (in this
        order, so a task ending in between is in the second); scontrol only for
        tasks in neither, on a cluster without a jobcomp file."""
        active = mapping.parse_squeue(
            self._run("squeue", "-r", "-h", "--me", "-o", SQUEUE_FORMAT, what="listing jobs").stdout
        )
        self._read_jobcomp()
        found: dict[tuple[str, int], Any] = {}
        missing_arrays: set[str] = set()
        for record in records:
            for index, attempt in current_attempts(record).items():
                key = (attempt["array"], index)
                if key in active:
                    found[key] = active[key]
                elif key in self._final:
                    found[key] = self._final[key]
                else:
                    missing_arrays.add(attempt["array"])
        if missing_arrays and self._jobcomp_path() is None:
            for array in sorted(missing_arrays):
                shown = self._run("scontrol", "-o", "show", "job", array)
                if shown.returncode == 0:
                    for key, rec in mapping.parse_records(shown.stdout.splitlines()).items():
                        if mapping.map_state(rec.state).final:
                            self._final[key] = rec
                        found.setdefault(key, rec)
        return found

    def _job(self, record: dict[str, Any], snapshot: dict[tuple[str, int], Any]) -> Job:
        states: list[JobState] = []
        problems: list[str] = []
        labels = record["labels"]
        for index, attempt in sorted(current_attempts(record).items()):
            key = (attempt["array"], index)
            task = snapshot.get(key)
            label = labels[index] if index < len(labels) else f"task {index}"
            if task is None:
                # Gone from squeue, jobcomp and scontrol: cancelled while pending.
                state = JobState.STOPPED
                if not attempt.get("stopped"):
                    problems.append(f"{label} (Slurm {key[0]}_{index}) was cancelled")
            else:
                state = mapping.map_state(task.state)
                if attempt.get("stopped") and not state.final:
                    state = JobState.STOPPING
                if state is JobState.FAILED:
                    problems.append(
                        f"{label} (Slurm {key[0]}_{index}) failed: {mapping.exit_text(task)}"
                    )
                elif state is JobState.QUEUED and "Dependency" in task.reason:
                    problems.append(f"{label} waits: {task.reason}")
            states.append(state)
        return Job.from_task_states(
            states,
            id=record["id"],
            name=record["name"],
            backend=self.name,
            target=self.target,
            native_ids=[a["array"] for a in record["attempts"]],
            submitted_at=_utc(record.get("submitted_at", "")),
            render_context=record.get("render_context"),
            message="; ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""),
        )

    def get_job(self, job_id: str) -> Job:
        record = self.jobs.load(job_id)
        return self._job(record, self._snapshot([record]))

    def get_jobs(self, states: Sequence[JobState] | None = None) -> list[Job]:
        records = self.jobs.all()
        snapshot = self._snapshot(records)
        jobs = [self._job(r, snapshot) for r in records]
        jobs.sort(key=lambda j: int(j.id), reverse=True)
        return [j for j in jobs if not states or j.state in states]

    # -- render log --------------------------------------------------------------------

    def _read_cluster_file(self, path: str) -> bytes | None:
        if self.storage is not None:
            if not self.storage.exists(path):
                return None
            with self.storage.open_read(path) as f:
                data: bytes = f.read()
                return data
        read = self.transport.read(path)
        return None if read is None else read[1]

    def _fetcher(self, path: str) -> Callable[[], str | None]:
        def fetch() -> str | None:
            return _text(self._read_cluster_file(path))

        return fetch

    def _sources(self, record: dict[str, Any]) -> list[LogSource]:
        snapshot = self._snapshot([record])
        job = record
        sources = []
        for number, attempt in enumerate(job["attempts"], start=1):
            for index in attempt["indices"]:
                key = (attempt["array"], index)
                task = snapshot.get(key)
                current = current_attempts(record).get(index) is attempt
                final = (not current) or task is None or mapping.map_state(task.state).final
                path = f"{record['log_dir']}/{attempt['array']}_{index}.out"
                label = record["labels"][index] if index < len(record["labels"]) else ""
                sources.append(
                    LogSource(
                        key=f"{attempt['array']}_{index}",
                        header=f"[farm-adapters] {label}, attempt {number} "
                        f"(Slurm {attempt['array']}_{index})\n",
                        fetch=self._fetcher(path),
                        final=final,
                        skip=task is not None and mapping.map_state(task.state) is JobState.QUEUED,
                    )
                )
        return sources

    def get_render_log(self, job_id: str, offset: int = 0) -> LogChunk:
        record = self.jobs.load(job_id)
        try:
            return LogMirror(self.state_dir / "logs", job_id).chunk(
                job_id, self._sources(record), offset
            )
        except OSError as exc:
            raise TransferError(f"cannot read the log of job {job_id}: {exc}") from exc

    def get_render_log_filename(self, job_id: str) -> str | None:
        self.jobs.load(job_id)
        path = LogMirror(self.state_dir / "logs", job_id).path
        return str(path) if path.exists() else None

    # -- control -----------------------------------------------------------------------

    def stop_job(self, job_id: str) -> None:
        with self.jobs.locked(job_id) as record:
            job = self._job(record, self._snapshot([record]))
            if job.state.final:
                return
            arrays = sorted({a["array"] for a in current_attempts(record).values()})
            for attempt in record["attempts"]:
                if attempt["array"] in arrays:
                    attempt["stopped"] = True
            self.jobs.save(record)
            result = self._run("scancel", *arrays)
            if result.returncode != 0 and "already completed" not in result.stderr.lower():
                raise self._error("scancel", result, f"stopping job {job_id}")

    def _scontrol_pending(self, job_id: str, what: str, *args: str) -> None:
        """Run ``scontrol ARGS... ARRAY`` for each array of the job's current attempt;
        an array with nothing pending left (ended meanwhile) is not an error."""
        record = self.jobs.load(job_id)
        arrays = sorted({a["array"] for a in current_attempts(record).values()})
        for array in arrays:
            argv = [a.replace("{array}", array) for a in args]
            result = self._run("scontrol", *argv)
            text = (result.stderr + result.stdout).lower()
            if result.returncode != 0 and not any(
                ok in text for ok in ("no longer pending", "already completed", "invalid job id")
            ):
                raise self._error("scontrol", result, f"{what} job {job_id}")

    def release_job(self, job_id: str) -> None:
        """``scontrol release`` the job's array (submitted with ``sbatch --hold``)."""
        self._scontrol_pending(job_id, "releasing", "release", "{array}")

    def set_priority(self, job_id: str, priority: int) -> None:
        """``scontrol update JobId=ARRAY Nice=N``: the nice value :data:`NICE_TABLE
        <.mapping.NICE_TABLE>` maps the priority to, as at submit."""
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
            raise InvalidRequestError(
                f"priority: {priority!r} is not a whole number from 0 (lowest) to 100 (highest)",
                field="priority",
            )
        nice = mapping.nice_for(priority)
        if nice < 0 and not self.s.allow_negative_nice:
            raise InvalidRequestError(
                f"priority: {priority} asks Slurm for a higher priority (Nice={nice}), which "
                f"only Slurm operators may do; use 60 or less, or set allow_negative_nice = "
                f"true in the target if you are an operator",
                field="priority",
            )
        self._scontrol_pending(
            job_id, "changing the priority of", "update", "JobId={array}", f"Nice={nice}"
        )

    def restart_job(self, job_id: str) -> None:
        with self.jobs.locked(job_id) as record:
            snapshot = self._snapshot([record])
            job = self._job(record, snapshot)
            if not job.state.final:
                raise InvalidRequestError(
                    f"job {job_id} is {job.state}; stop it or wait for it to end before restarting",
                    field="job_id",
                )
            current = current_attempts(record)
            rerun = [
                index
                for index, attempt in sorted(current.items())
                if job.state is JobState.COMPLETED
                or (
                    snapshot.get((attempt["array"], index)) is None
                    or mapping.map_state(snapshot[(attempt["array"], index)].state)
                    is not JobState.COMPLETED
                )
            ]
            array = self._sbatch(
                [
                    "sbatch",
                    "--parsable",
                    f"--array={','.join(str(i) for i in rerun)}",
                    *record["options"],
                ],
                record["script"],
            )
            record["attempts"].append({"array": array, "indices": rerun, "stopped": False})
            self.jobs.save(record)

    def get_installation_metadata(self) -> InstallationMetadata:
        """The Python the nodes run farm-side scripts with (the ``python`` setting). With
        the tools on this machine, the nodes share its filesystem, so this interpreter
        (with farm-adapters in it) is the default; on a login node, ``python3``."""
        python = self.s.python or (sys.executable if self.s.host is None else "python3")
        return InstallationMetadata(executable=python, platform="linux")

    # -- test --------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        results = []
        try:
            version = self._run("sbatch", "--version", what="reading the version").stdout
            results.append(
                CheckResult(
                    name="slurm tools",
                    ok=True,
                    detail=f"{version.strip()} ({self.transport.where})",
                )
            )
            info = self._run("sinfo", "-h", "-o", "%P %a %D %T", what="reading partitions")
            partitions = [line.split()[0].rstrip("*") for line in info.stdout.splitlines() if line]
            wanted = self.s.partition
            ok = bool(partitions) and (wanted is None or wanted in partitions)
            results.append(
                CheckResult(
                    name="controller",
                    ok=ok,
                    detail=f"partitions {', '.join(sorted(set(partitions)))}"
                    if ok
                    else f"partition {wanted!r} not among {sorted(set(partitions))}; fix "
                    f"partition in the target",
                )
            )
        except FarmAdapterError as exc:
            return [*results, CheckResult(name="controller", ok=False, detail=str(exc))]
        try:
            jobcomp = self._jobcomp_path()
            results.append(
                CheckResult(
                    name="final states",
                    ok=True,
                    detail=f"jobcomp file {jobcomp}"
                    if jobcomp
                    else "no jobcomp file: final states come from scontrol while Slurm "
                    "keeps the job (MinJobAge)",
                )
            )
        except FarmAdapterError as exc:
            results.append(CheckResult(name="final states", ok=False, detail=str(exc)))
        if self.storage is not None:
            results += self.check_storage()
        else:
            try:
                self.transport.makedirs(self.root)
                results.append(CheckResult(name="storage", ok=True, detail=f"{self.root}"))
            except FarmAdapterError as exc:
                results.append(CheckResult(name="storage", ok=False, detail=str(exc)))
        return results


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode(errors="replace")
