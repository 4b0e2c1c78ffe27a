"""``runai``: NVIDIA Run:ai through its control-plane REST API.

One training workload per chunk of frames, named ``<prefix>-<job>-<task>-r<attempt>-<slug>``
(k8s-safe, unique), so one paginated workloads listing (500 per page) answers for
every job. Each container runs ``/bin/sh -c`` with a script that runs the task's argv
commands exactly and, when the target has shared storage, also appends its output to
a log file there, which is read when the cluster's log endpoint cannot be reached.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import shlex
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from farm_adapters import (
    CheckResult,
    InvalidRequestError,
    Job,
    JobNotFoundError,
    JobRequest,
    JobState,
    LogChunk,
    SubmitError,
    TransferError,
)
from farm_adapters.errors import (
    APIError,
    AuthenticationError,
    BackendUnavailableError,
    ConfigurationError,
    FarmAdapterError,
)
from farm_adapters.http import (
    HttpFarmPlugin,
    HttpSettings,
    OutcomeUnknownError,
    excerpt,
    submit_each,
)
from farm_adapters.logfile import LogMirror, LogSource
from farm_adapters.plugin import ProgressCallback
from farm_adapters.shell import check_env_names, task_script
from farm_adapters.submit import announce_job_id

from . import mapping
from .times import StartBook, parse_time, start_from_history

WORKLOADS = "/api/v1/workloads"
TRAININGS = "/api/v1/workloads/trainings"
PAGE = 500
#: Refresh the token this many seconds before it expires.
TOKEN_MARGIN = 60.0
LOG_SUBDIR = ".farm-adapters/logs"
#: How long a successful cluster API check is trusted.
CLUSTER_CHECK_TTL = 30.0
NULL = type(None)
#: The shapes of the answers this backend reads (see farm_adapters.http.conforms).
TOKEN = {"accessToken": str, "expiresIn?": (float, NULL)}
PROJECTS = {"projects": [{"name": str, "id": (str, int), "clusterId": str}]}
CLUSTERS = [{"uuid": str, "name?": (str, NULL), "domain?": (str, NULL)}]
WORKLOAD = {
    "name": str,
    "id": str,
    "phase?": (str, NULL),
    "phaseMessage?": (str, NULL),
    "createdAt?": (str, NULL),
    "environmentVariables?": (dict, NULL),
}
WORKLOADS_PAGE = {"workloads": [WORKLOAD], "next?": (int, str, NULL)}
TRAINING = {"name": str, "projectId": str, "clusterId": str, "spec?": (dict, NULL)}
CREATED = {"name": str}
HISTORY_PAGE = {"records": [dict], "next?": (int, str, NULL)}
#: Phases after which a workload never runs again (a rerun is a new workload).
ENDED = frozenset({"Completed", "Failed"})


class VolumeSettings(BaseModel):
    """The volume containers mount for temporary folders and logs, and where this
    workstation sees the same files (or set the target's storage to reach them)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    kind: Literal["hostPath", "nfs", "pvc"]
    mount_path: str = Field(description="where containers see it, e.g. /mnt/farm")
    local_path: str | None = Field(
        default=None, description="where this workstation mounts the same files (if it does)"
    )
    path: str | None = Field(default=None, description="hostPath: host folder; nfs: export")
    server: str | None = Field(default=None, description="nfs: the server")
    claim_name: str | None = Field(default=None, description="pvc: an existing claim")

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("mount_path must be an absolute path in the container")
        return value.rstrip("/") or "/"


class RunAISettings(HttpSettings):
    """Settings of a ``runai`` target (plus url, verify, timeout, retries, log_dir)."""

    client_id: SecretStr = Field(description="service account / application id (reference)")
    client_secret: SecretStr = Field(description="its secret (a secret reference)")
    grant: Literal["client_credentials", "app_token"] = "client_credentials"
    project: str = Field(description="project name; its id and cluster are looked up")
    cluster: str | None = Field(default=None, description="cluster name (default: the project's)")
    image: str = Field(description="container image with the renderer")
    volume: VolumeSettings | None = None
    name_prefix: str = Field(default="fa", pattern=r"^[a-z][a-z0-9]{0,7}$")


def _message(response: Any) -> str:
    """The ``message`` of a JSON error body, else an excerpt of whatever came (an HTML
    page from a proxy...)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return excerpt(response.text) or f"HTTP {response.status_code}"


def _utc(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _jwt_claims(token: str) -> dict[str, Any]:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_lifetime(data: dict[str, Any], token: str) -> float:
    """Seconds a token lives from when it was issued: ``expiresIn`` (or ``expires_in``),
    else the JWT's ``exp - iat``, else an hour. Never compared with this machine's
    clock, which may be ahead of or behind the server's."""
    for key in ("expiresIn", "expires_in"):
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    claims = _jwt_claims(token)
    try:
        lifetime = float(claims["exp"]) - float(claims["iat"])
    except (KeyError, ValueError, TypeError):
        return 3600.0
    return lifetime if lifetime > 0 else 3600.0


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class RunAIPlugin(HttpFarmPlugin):
    """Submits trainings to Run:ai. Thread-safe."""

    name = "runai"
    display_name = "NVIDIA Run:ai"
    settings_model = RunAISettings

    def __init__(self, settings: Any = None, *, target: str | None = None) -> None:
        super().__init__(settings, target=target)
        s: RunAISettings = self.settings  # type: ignore[assignment]
        self.s = s
        self._cluster_session: Any = None
        self._token: str | None = None
        self._token_expiry = 0.0
        self._ids: tuple[str, str, str] | None = None  # project id, cluster id, project name
        self._cluster_ok: tuple[float, bool] | None = None  # (checked, reachable)
        self.log_dir = self.log_folder()
        self._starts = StartBook(self.log_dir)

    # -- HTTP and authentication -------------------------------------------------------

    def _fetch_token(self) -> None:
        body: dict[str, str] = {"grantType": self.s.grant}
        secret = self.s.client_secret.get_secret_value()
        if self.s.grant == "app_token":
            body |= {"AppId": self.s.client_id.get_secret_value(), "AppSecret": secret}
        else:
            body |= {"clientId": self.s.client_id.get_secret_value(), "clientSecret": secret}
        response = self.http.request(
            "POST", "/api/v1/token", idempotent=True, json=body, retry_statuses=(429, 502, 503, 504)
        )
        if response.status_code in (400, 401, 403):
            raise AuthenticationError(
                f"target {self.target!r}: Run:ai refused the credentials "
                f"(HTTP {response.status_code}); check the target's client_id and "
                f"client_secret, and that the service account has access to project "
                f"{self.s.project!r}"
            )
        received = time.monotonic()
        data = self.http.json(response, "requesting a token", TOKEN)
        token = data["accessToken"]
        if not token:
            raise APIError(f"target {self.target!r}: the token answer has an empty accessToken")
        lifetime = token_lifetime(data, token)
        # Expiry on this machine's monotonic clock, from when the answer came: a wall
        # clock running ahead of the server's must not make every token look expired.
        self._token = token
        margin = TOKEN_MARGIN if lifetime > TOKEN_MARGIN else lifetime / 2
        self._token_expiry = received + lifetime - margin

    def _auth(self, force: bool = False) -> dict[str, str]:
        with self._lock:
            if force or self._token is None or time.monotonic() >= self._token_expiry:
                self._fetch_token()
            return {"Authorization": f"Bearer {self._token}"}

    def api(
        self, method: str, path: str, *, idempotent: bool, session: Any = None, **kwargs: Any
    ) -> Any:
        """A request with a fresh token; after a 401 the token is renewed once."""
        session = session or self.http
        response = session.request(
            method, path, idempotent=idempotent, headers=self._auth(), **kwargs
        )
        if response.status_code == 401:
            response = session.request(
                method, path, idempotent=idempotent, headers=self._auth(force=True), **kwargs
            )
        return response

    # -- projects, clusters ------------------------------------------------------------

    def _resolve(self) -> tuple[str, str, str]:
        with self._lock:
            if self._ids is not None:
                return self._ids
        response = self.api(
            "GET",
            "/api/v1/org-unit/projects",
            idempotent=True,
            params={"filterBy": f"name=={self.s.project}", "limit": 10},
        )
        projects = self.http.json(response, "looking up the project", PROJECTS)["projects"]
        found = [p for p in projects if p.get("name") == self.s.project]
        if not found:
            raise ConfigurationError(
                f"target {self.target!r}: project {self.s.project!r} is not visible to these "
                f"credentials; check the name and the service account's access rules"
            )
        project_id, cluster_id = str(found[0]["id"]), str(found[0]["clusterId"])
        if self.s.cluster:
            clusters = self.http.json(
                self.api("GET", "/api/v1/clusters", idempotent=True), "listing clusters", CLUSTERS
            )
            named = [c for c in clusters if c.get("name") == self.s.cluster]
            if not named:
                raise ConfigurationError(
                    f"target {self.target!r}: no cluster named {self.s.cluster!r}"
                )
            if named[0]["uuid"] != cluster_id:
                raise ConfigurationError(
                    f"target {self.target!r}: project {self.s.project!r} belongs to another "
                    f"cluster than {self.s.cluster!r}"
                )
        with self._lock:
            self._ids = (project_id, cluster_id, str(found[0]["name"]))
            return self._ids

    def _cluster(self) -> Any:
        """A session for the cluster's own API (its ``domain``), or None."""
        with self._lock:
            if self._cluster_session is not None:
                return self._cluster_session
        _, cluster_id, _ = self._resolve()
        clusters = self.http.json(
            self.api("GET", "/api/v1/clusters", idempotent=True), "listing clusters", CLUSTERS
        )
        domain = next((c.get("domain") for c in clusters if c.get("uuid") == cluster_id), None)
        if not domain:
            return None
        with self._lock:
            self._cluster_session = self.new_session(domain, retries=1)
            return self._cluster_session

    def _cluster_reachable(self) -> bool:
        """Whether the cluster's own API (its log endpoint) answers. A success is
        trusted for CLUSTER_CHECK_TTL s; a failure is remembered as long only when the
        target has a volume to read logs from instead (so a single failed check never
        disables log reading), else the next read checks again."""
        cached = self._cluster_ok
        if cached is not None and time.monotonic() - cached[0] < CLUSTER_CHECK_TTL:
            return cached[1]
        try:
            session = self._cluster()
            ok = (
                session is not None
                and "OK" in session.request("GET", "/cluster-api/status", idempotent=True).text
            )
        except FarmAdapterError:
            ok = False
        if ok or self.s.volume is not None:
            self._cluster_ok = (time.monotonic(), ok)
        else:
            self._cluster_ok = None
        return ok

    # -- stage 1: files ----------------------------------------------------------------

    def _local(self, remote: str) -> Path:
        storage = self.s.volume
        if storage is None or not (remote + "/").startswith(storage.mount_path.rstrip("/") + "/"):
            raise TransferError(
                f"target {self.target!r}: {remote} is not on the target's volume; "
                f"configure `volume` to copy render files"
            )
        if storage.local_path is None:
            if self.storage is None:
                raise ConfigurationError(
                    f"target {self.target!r}: volume.local_path is not set and the target has "
                    f"no storage to reach the volume; set one of them"
                )
            return Path(self._on_storage(remote))
        return Path(storage.local_path) / remote[len(storage.mount_path) :].lstrip("/")

    def _on_storage(self, remote: str) -> str:
        """A container path under the volume, as the target's storage (SFTP, FTPS...)
        sees it: the storage ``root`` stands for the volume's mount path."""
        storage = self.s.volume
        assert storage is not None and self.storage_root
        if not (remote + "/").startswith(storage.mount_path.rstrip("/") + "/"):
            raise TransferError(f"target {self.target!r}: {remote} is not on the target's volume")
        return self.storage_root.rstrip("/") + remote[len(storage.mount_path.rstrip("/")) :]

    def create_temporary_folder(self, render_context: str) -> str:
        if self.s.volume is None:
            return f"/tmp/farm-adapters/{render_context}"  # inside the container only
        remote = f"{self.s.volume.mount_path.rstrip('/')}/{render_context}"
        if self.storage is not None:
            self.storage.makedirs(self._on_storage(remote))
            return remote
        try:
            self._local(remote).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransferError(f"cannot create {self._local(remote)}: {exc}") from exc
        return remote

    def copy_render_files(
        self, paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
    ) -> list[str]:
        if self.storage is not None:  # the volume reached over SFTP/FTPS
            self.last_transfer = self.storage.upload(paths, self._on_storage(folder), progress)
        else:
            from farm_adapters.transfer.local import LocalTransfer

            self.last_transfer = LocalTransfer().upload(paths, str(self._local(folder)), progress)
        return [f"{folder}/{Path(p).name}" for p in paths]

    # -- stage 3: submit ---------------------------------------------------------------

    def _workload_name(self, request: JobRequest, job_id: str, index: int, attempt: int) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", request.name.lower()).strip("-")[:16].strip("-")
        return mapping.workload_name(self.s.name_prefix, job_id, index, attempt, slug)

    def _log_file(self, workload_name: str) -> str | None:
        if self.s.volume is None:
            return None
        return f"{self.s.volume.mount_path.rstrip('/')}/{LOG_SUBDIR}/{workload_name}.log"

    def _storage_spec(self) -> dict[str, Any]:
        storage = self.s.volume
        if storage is None:
            return {}
        # readOnly is sent explicitly: NFS and hostPath volumes are read-only by default.
        if storage.kind == "hostPath":
            if not (storage.path or storage.local_path):
                raise ConfigurationError(f"target {self.target!r}: hostPath volume needs path")
            return {
                "hostPath": [
                    {
                        "path": storage.path or storage.local_path,
                        "mountPath": storage.mount_path,
                        "readOnly": False,
                    }
                ]
            }
        if storage.kind == "nfs":
            if not storage.server or not storage.path:
                raise ConfigurationError(
                    f"target {self.target!r}: nfs storage needs server and path"
                )
            return {
                "nfs": [
                    {
                        "server": storage.server,
                        "path": storage.path,
                        "mountPath": storage.mount_path,
                        "readOnly": False,
                    }
                ]
            }
        if not storage.claim_name:
            raise ConfigurationError(f"target {self.target!r}: pvc storage needs claim_name")
        return {
            "pvc": [
                {
                    "claimName": storage.claim_name,
                    "existingPvc": True,
                    "path": storage.mount_path,
                    "readOnly": False,
                }
            ]
        }

    def _bodies(
        self, request: JobRequest, job_id: str, attempt: int = 0, only: set[int] | None = None
    ) -> list[dict[str, Any]]:
        check_env_names(request.commands)
        spec_base = mapping.spec_for(request)
        project_id, cluster_id, _ = self._resolve()
        tasks = request.tasks()
        bodies = []
        for task in tasks:
            if only is not None and task.index not in only:
                continue
            name = self._workload_name(request, job_id, task.index, attempt)
            env = {
                **request.environment,
                mapping.ENV_JOB_NAME: request.name,
                mapping.ENV_TASKS: str(len(tasks)),
                mapping.ENV_FRAMES: ",".join(str(f) for f in task.frames),
            }
            script = task_script(task.commands, log_file=self._log_file(name))
            spec = {
                **spec_base,
                "image": self.s.image,
                "command": "/bin/sh",
                "args": shlex.join(["-c", script]),
                "environmentVariables": [{"name": k, "value": v} for k, v in env.items()],
            }
            storage = self._storage_spec()
            if storage:
                spec["storage"] = storage
            bodies.append(
                {"name": name, "projectId": project_id, "clusterId": cluster_id, "spec": spec}
            )
        return bodies

    def native_payloads(self, request: JobRequest) -> list[dict[str, Any]]:
        self.refuse_unsupported(request)  # after, hold
        return [
            {"method": "POST", "path": TRAININGS, "body": body}
            for body in self._bodies(request, "0000000000")
        ]

    def _create(self, body: dict[str, Any]) -> None:
        """Create one training exactly once: after an ambiguous failure, look it up by
        its (unique) name before trying again. A 429 is retried by the HTTP session."""
        for attempt in range(self.s.retries + 1):
            try:
                response = self.api("POST", TRAININGS, idempotent=False, json=body)
            except OutcomeUnknownError:
                try:
                    if self._find(body["name"]):
                        return
                except FarmAdapterError:
                    pass  # cannot look: try again, or give up below
                if attempt == self.s.retries:
                    raise
                time.sleep(min(0.2 * 2**attempt, 5.0))
                continue
            if response.status_code == 409 and self._find(body["name"]):
                return  # an earlier attempt did create it
            if response.status_code == 400:
                raise InvalidRequestError(
                    f"target {self.target!r}: Run:ai refused the workload {body['name']}: "
                    f"{_message(response)}"
                )
            self.http.json(response, f"creating workload {body['name']}", CREATED)
            return

    def submit_job(self, request: JobRequest) -> str:
        self.refuse_unsupported(request)  # after, hold
        job_id = uuid.uuid4().hex[:10]
        bodies = self._bodies(request, job_id)
        announce_job_id(self, job_id)  # journalled before any workload exists
        _, failure = submit_each(bodies, lambda _, body: self._create(body))
        if failure is not None:
            index, exc = failure
            error = self._abandon(job_id, index, len(bodies), exc)
            if error is exc:
                raise exc
            raise error from exc
        return job_id

    def _abandon(
        self, job_id: str, index: int, total: int, exc: FarmAdapterError
    ) -> FarmAdapterError:
        """Stop what a failed submit created (best effort); the error to raise, saying
        what became of it."""
        transient = isinstance(exc, BackendUnavailableError)  # 429, unreachable, unknown
        try:
            created = self._group(self.list_workloads(f"{self.s.name_prefix}-{job_id}-"))
            left = created.get(job_id, {})
            if left:
                self.stop_job(job_id)
        except FarmAdapterError as err:
            return SubmitError(
                f"target {self.target!r}: job {job_id}: workload {index} of {total} could not "
                f"be created ({exc}); its earlier workload(s) may be on the cluster and could "
                f"not be stopped ({err}); stop them with `farm-adapters stop {job_id} "
                f"--target {self.target}`",
                transient=transient,
            )
        if not left:
            if isinstance(exc, InvalidRequestError):
                return exc
            return SubmitError(
                f"target {self.target!r}: Run:ai did not take job {job_id}: {exc}",
                transient=transient,
            )
        return SubmitError(
            f"target {self.target!r}: job {job_id}: workload {index} of {total} could not be "
            f"created ({exc}); the {len(left)} workload(s) already created were stopped (see "
            f"`farm-adapters status {job_id} --target {self.target}`)",
            transient=transient,
        )

    # -- information -------------------------------------------------------------------

    def list_workloads(self, name_prefix: str) -> list[dict[str, Any]]:
        """Workloads whose name starts with ``name_prefix``: ceil(N/500) requests."""
        project_id, _, _ = self._resolve()
        items: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = self.api(
                "GET",
                WORKLOADS,
                idempotent=True,
                params={
                    "filterBy": f"name=^{name_prefix},projectId=={project_id}",
                    "offset": offset,
                    "limit": PAGE,
                    "sortBy": "name",
                },
            )
            data = self.http.json(response, "listing workloads", WORKLOADS_PAGE)
            page = data["workloads"]
            items.extend(page)
            if data.get("next") is None or len(page) < PAGE:
                return items
            following = _int(data["next"], -1)
            if following <= offset:
                raise APIError(
                    f"target {self.target!r}: unexpected answer to listing workloads: next "
                    f"is {data['next']!r} after offset {offset}"
                )
            offset = following

    def _find(self, name: str) -> dict[str, Any] | None:
        return next((w for w in self.list_workloads(name) if w.get("name") == name), None)

    def _group(self, workloads: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
        """job id -> task index -> the newest attempt's workload."""
        jobs: dict[str, dict[int, dict[str, Any]]] = {}
        for w in workloads:
            parsed = mapping.parse_name(self.s.name_prefix, str(w.get("name", "")))
            if parsed is None:
                continue
            job_id, index, attempt = parsed
            w["_attempt"] = attempt
            current = jobs.setdefault(job_id, {}).get(index)
            if current is None or current["_attempt"] < attempt:
                jobs[job_id][index] = w
        return jobs

    def _history(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        """The workload's history records (every page); empty once it is gone."""
        records: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = self.api(
                "GET",
                f"{WORKLOADS}/{workload['id']}/history",
                idempotent=True,
                params={"offset": offset, "limit": PAGE},
            )
            if response.status_code == 404:
                return records
            data = self.http.json(
                response, f"reading the history of {workload['name']}", HISTORY_PAGE
            )
            records.extend(data["records"])
            following = _int(data.get("next"), -1)
            if data.get("next") is None or len(data["records"]) < PAGE or following <= offset:
                return records
            offset = following

    def _start_times(
        self, job_id: str, workloads: list[dict[str, Any]], read: bool = True
    ) -> dict[str, str | None]:
        """Start time (Run:ai's ISO text) of the workloads whose start is known, by name:
        a Running one's ``phaseUpdatedAt``; an ended one's from its history, read once
        (``read``) and then kept (see :mod:`.times`)."""
        known = self._starts.get(job_id)
        starts: dict[str, str | None] = {}
        new: dict[str, str | None] = {}
        for w in workloads:
            name, phase = str(w["name"]), w.get("phase")
            if phase == "Running":
                starts[name] = w.get("phaseUpdatedAt")
            elif name in known:
                starts[name] = known[name]
            elif phase in ENDED and read:
                with contextlib.suppress(FarmAdapterError):  # read again next time
                    starts[name] = new[name] = start_from_history(self._history(w))
        if new:
            self._starts.add(job_id, new)
        return starts

    @staticmethod
    def _end_time(workload: dict[str, Any]) -> str | None:
        phase = workload.get("phase")
        if phase in ENDED:
            return workload.get("completedAt") or workload.get("phaseUpdatedAt")
        if phase == "Stopped":
            return workload.get("phaseUpdatedAt")
        return None

    def _job(self, job_id: str, tasks: dict[int, dict[str, Any]], read: bool = True) -> Job:
        ordered = [tasks[i] for i in sorted(tasks)]
        starts = [parse_time(t) for t in self._start_times(job_id, ordered, read).values()]
        ends = [parse_time(self._end_time(w)) for w in ordered]
        env = ordered[0].get("environmentVariables") or {}
        total = _int(env.get(mapping.ENV_TASKS), len(ordered))
        states = [mapping.map_phase(str(w.get("phase"))) for w in ordered]
        # Workloads never created (a submit that failed part-way stops what it made):
        # once every workload made is stopped, the missing ones count as stopped too.
        stopped = all(st in (JobState.STOPPED, JobState.STOPPING) for st in states)
        states += [JobState.STOPPED if stopped else JobState.UNKNOWN] * max(0, total - len(ordered))
        failed = [w for w in ordered if w.get("phase") == "Failed"]
        message = (
            f"{failed[0]['name']}: {failed[0].get('phaseMessage') or 'failed'}" if failed else ""
        )
        job = Job.from_task_states(
            states,
            id=job_id,
            name=str(env.get(mapping.ENV_JOB_NAME, "")),
            backend=self.name,
            target=self.target,
            native_ids=[str(w["id"]) for w in ordered],
            submitted_at=min(
                (d for d in (_utc(w.get("createdAt")) for w in ordered) if d), default=None
            ),
            render_context=env.get("FARM_ADAPTERS_RENDER_CONTEXT"),
            message=message,
        )
        started = [d for d in starts if d]
        update: dict[str, Any] = {"started_at": min(started, default=None)}
        if job.state.final and len(ordered) >= total and all(ends):
            update["finished_at"] = max(d for d in ends if d)
        return job.model_copy(update=update)

    def _job_tasks(self, job_id: str) -> dict[int, dict[str, Any]]:
        if not re.fullmatch(r"[0-9a-f]{10}", job_id):
            raise JobNotFoundError(job_id, backend=self.target)
        tasks = self._group(self.list_workloads(f"{self.s.name_prefix}-{job_id}-")).get(job_id)
        if not tasks:
            raise JobNotFoundError(job_id, backend=self.target)
        return tasks

    def get_job(self, job_id: str) -> Job:
        return self._job(job_id, self._job_tasks(job_id))

    def get_jobs(self, states: Sequence[JobState] | None = None) -> list[Job]:
        groups = self._group(self.list_workloads(f"{self.s.name_prefix}-"))
        # One listing, nothing per workload: start times only where already known.
        jobs = [self._job(job_id, tasks, read=False) for job_id, tasks in groups.items()]
        jobs.sort(
            key=lambda j: j.submitted_at or datetime.min.replace(tzinfo=timezone.utc), reverse=True
        )
        return [j for j in jobs if not states or j.state in states]

    def get_task_details(self, job_id: str) -> list[dict[str, Any]]:
        """One dict per task (its newest workload), in order: index, frames, state,
        attempt (1 + the reruns farm-adapters made), exit_code (None: the control plane
        does not report it), started_at and finished_at (POSIX times), message. Costs
        a listing plus a history read per workload whose start is not known yet.
        Read by ``farm-adapters status --tasks``."""
        tasks = self._job_tasks(job_id)
        ordered = [tasks[i] for i in sorted(tasks)]
        starts = self._start_times(job_id, ordered)
        details = []
        for index, w in zip(sorted(tasks), ordered, strict=True):
            name = str(w["name"])
            if name in starts:
                start = starts[name]
            elif mapping.map_phase(str(w.get("phase"))) is JobState.QUEUED:
                start = None  # its container has not run
            else:
                start = start_from_history(self._history(w))
            env = w.get("environmentVariables") or {}
            frames = [f for f in str(env.get(mapping.ENV_FRAMES) or "").split(",") if f]
            started, ended = parse_time(start), parse_time(self._end_time(w))
            details.append(
                {
                    "index": index,
                    "frames": "-".join(dict.fromkeys(frames[:1] + frames[-1:])),
                    "state": mapping.map_phase(str(w.get("phase"))).value,
                    "attempt": _int(w.get("_attempt"), 0) + 1,
                    "exit_code": None,
                    "started_at": started.timestamp() if started else None,
                    "finished_at": ended.timestamp() if ended else None,
                    "message": w.get("phaseMessage") or "",
                }
            )
        return details

    # -- render log --------------------------------------------------------------------

    def _log_source(self, workload: dict[str, Any], project_name: str) -> LogSource:
        name = str(workload["name"])
        phase = str(workload.get("phase"))
        use_cluster = self._cluster_reachable()

        def fetch() -> str | None:
            if use_cluster:
                response = self.api(
                    "GET",
                    f"/cluster-api/api/v1/{project_name}/workloads/training/runai/"
                    f"{name}/logs/download",
                    idempotent=True,
                    session=self._cluster(),
                )
                if response.status_code == 404:
                    return None
                self.http.check(response, f"reading the log of {name}")
                return str(response.text)
            log_file = self._log_file(name)
            if log_file is None:
                raise BackendUnavailableError(
                    f"target {self.target!r}: the cluster's log endpoint is unreachable and "
                    f"the target has no shared storage to read logs from"
                )
            if self.storage is not None:
                if not self.storage.exists(self._on_storage(log_file)):
                    return None
                with self.storage.open_read(self._on_storage(log_file)) as f:
                    return f.read().decode(errors="replace")  # type: ignore[no-any-return]
            try:
                return self._local(log_file).read_text(errors="replace")
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise TransferError(f"cannot read {log_file}: {exc}") from exc

        return LogSource(
            key=name,
            header=f"[farm-adapters] workload {name}\n",
            fetch=fetch,
            final=mapping.map_phase(phase).final,
            skip=phase in ("Creating", "Pending"),
        )

    def get_render_log(self, job_id: str, offset: int = 0) -> LogChunk:
        tasks = self._job_tasks(job_id)
        _, _, project_name = self._resolve()
        mirror = LogMirror(self.log_dir, job_id)
        sources = (self._log_source(tasks[i], project_name) for i in sorted(tasks))
        return mirror.chunk(job_id, sources, offset)

    def get_render_log_filename(self, job_id: str) -> str | None:
        self._job_tasks(job_id)
        path = LogMirror(self.log_dir, job_id).path
        return str(path) if path.exists() else None

    # -- control -----------------------------------------------------------------------

    def _action(self, workload: dict[str, Any], action: str) -> None:
        response = self.api("POST", f"{TRAININGS}/{workload['id']}/{action}", idempotent=True)
        if response.status_code == 404:
            return  # gone meanwhile
        self.http.check(response, f"{action} of {workload['name']}")

    def stop_job(self, job_id: str) -> None:
        for workload in self._job_tasks(job_id).values():
            if not mapping.map_phase(str(workload.get("phase"))).final:
                self._action(workload, "suspend")

    def restart_job(self, job_id: str) -> None:
        tasks = self._job_tasks(job_id)
        job = self._job(job_id, tasks)
        if not job.state.final:
            raise InvalidRequestError(
                f"job {job_id} is {job.state}; stop it or wait for it to end before restarting",
                field="job_id",
            )
        everything = job.state is JobState.COMPLETED
        rerun: dict[int, int] = {}
        for index, workload in tasks.items():
            phase = workload.get("phase")
            if phase == "Stopped":
                self._action(workload, "resume")  # the same workload runs again
            elif phase == "Failed" or (everything and phase == "Completed"):
                rerun[index] = int(workload["_attempt"]) + 1
        for index, attempt in rerun.items():
            self._create(self._next_attempt(tasks[index], attempt))

    def _next_attempt(self, workload: dict[str, Any], attempt: int) -> dict[str, Any]:
        """Run:ai cannot resume an ended training: the creation body of a new attempt,
        the old training's spec under the next attempt's name."""
        response = self.api("GET", f"{TRAININGS}/{workload['id']}", idempotent=True)
        old = self.http.json(response, f"reading training {workload['name']}", TRAINING)
        old_name = str(workload["name"])
        parsed = mapping.parse_name(self.s.name_prefix, old_name)
        assert parsed is not None
        job_id, index, _ = parsed
        new_name = mapping.workload_name(
            self.s.name_prefix,
            job_id,
            index,
            attempt,
            mapping.name_slug(self.s.name_prefix, old_name),
        )
        spec = dict(old.get("spec") or {})
        if isinstance(spec.get("args"), str):  # the log file is named after the workload
            spec["args"] = spec["args"].replace(old_name, new_name)
        return {
            "name": new_name,
            "projectId": old["projectId"],
            "clusterId": old["clusterId"],
            "spec": spec,
        }

    # -- test --------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        results = []
        try:
            self._auth(force=True)
            results.append(CheckResult(name="authentication", ok=True, detail=self.s.url))
        except FarmAdapterError as exc:
            return [CheckResult(name="authentication", ok=False, detail=str(exc))]
        try:
            project_id, cluster_id, _ = self._resolve()
            results.append(
                CheckResult(
                    name="project",
                    ok=True,
                    detail=f"{self.s.project} (id {project_id}, cluster {cluster_id})",
                )
            )
        except FarmAdapterError as exc:
            return [*results, CheckResult(name="project", ok=False, detail=str(exc))]
        reachable = self._cluster_reachable()
        results.append(
            CheckResult(
                name="cluster logs",
                ok=reachable or self.s.volume is not None,
                detail="cluster API reachable"
                if reachable
                else "cluster API unreachable; logs are read from shared storage"
                if self.s.volume
                else "cluster API unreachable and no shared storage: logs cannot be read",
            )
        )
        if self.s.volume is not None:
            name = "storage"
            try:
                if self.storage is not None:
                    root = self._on_storage(self.s.volume.mount_path + "/x").rsplit("/", 1)[0]
                    self.storage.makedirs(root)
                    detail = f"the volume is reachable through the target's storage ({root})"
                else:
                    probe = self._local(self.s.volume.mount_path + f"/.probe-{uuid.uuid4().hex}")
                    probe.write_bytes(b"")
                    probe.unlink()
                    detail = f"{self.s.volume.local_path} is writable"
                results.append(CheckResult(name=name, ok=True, detail=detail))
            except (OSError, FarmAdapterError) as exc:
                results.append(CheckResult(name=name, ok=False, detail=str(exc)))
        return results
