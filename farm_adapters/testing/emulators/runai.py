"""An emulator of the NVIDIA Run:ai control plane (trainings), with a one-node
"cluster" that really runs each training's command.

Built from ``shared/reference/runai-api.md``, warts included: ``spec.command`` and
``spec.args`` are single strings (the args string is split shell-like), environment
variables are a list of ``{name, value}``, NFS and hostPath volumes are read-only unless
``readOnly: false`` is sent, creates and suspend/resume/delete answer 202, lists page
with ``offset``/``limit`` (default 50, at most 500) and an integer ``next``, the
clusters list is a bare array, errors are ``{code, message}``, and a failing container
is re-run up to ``backoffLimit`` times (default 6) before the workload fails.

Tokens come from ``POST /api/v1/token`` (JSON; grant and key spellings as the reference
lists, matched case-insensitively) or ``POST /api/v2/token`` (form); they are JWTs with
``exp``, signed by the emulator, and every other route needs ``Authorization: Bearer``.

Mounts: a hostPath volume's ``path`` is a folder on this machine; an NFS volume's
``server:path`` maps to ``<nfs_root>/<server>/<path>``. The "container" sees a volume
through its ``mountPath``: the emulator substitutes that prefix in the command, args,
working directory and environment values. A read-only volume is a throwaway copy, so
writes to it never reach the real folder (as on a real read-only mount, the outputs
are lost).

Logs come from a Cluster API on the cluster's ``domain`` (this same server):
``GET /cluster-api/status`` and
``GET /cluster-api/api/v1/{project}/workloads/training/runai/{name}/logs/download``.

Test controls live under ``/_emulator``: faults (errors before or after the work,
429 with Retry-After, latency, lost answers), token expiry, request counters.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import traceback
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._faults import FaultGate, Faults, InFlight

__all__ = ["RunAIEmulator", "create_app"]

PHASES = (
    "Creating",
    "Initializing",
    "Resuming",
    "Pending",
    "Deleting",
    "Running",
    "Updating",
    "Stopped",
    "Stopping",
    "Degraded",
    "Failed",
    "Completed",
    "Terminating",
    "Unknown",
)
ACCEPTED = {"code": 202, "message": "Request has been accepted."}
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
DEFAULT_BACKOFF_LIMIT = 6


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class ApiError(Exception):
    def __init__(self, code: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


# -- request models: only what the emulator checks; unknown keys are ignored ----------


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class EnvVar(_Loose):
    name: StrictStr
    value: StrictStr | None = None


class NfsVolume(_Loose):
    server: StrictStr
    path: StrictStr
    mountPath: StrictStr
    readOnly: bool = True


class HostPathVolume(_Loose):
    path: StrictStr
    mountPath: StrictStr
    readOnly: bool = True


class PvcVolume(_Loose):
    path: StrictStr
    claimName: StrictStr | None = None
    existingPvc: bool = False
    readOnly: bool = False


class Storage(_Loose):
    nfs: list[NfsVolume] = Field(default_factory=list)
    hostPath: list[HostPathVolume] = Field(default_factory=list)
    pvc: list[PvcVolume] = Field(default_factory=list)


class Compute(_Loose):
    gpuDevicesRequest: int | None = Field(default=None, ge=0)
    gpuRequestType: str | None = None
    gpuPortionRequest: float | None = Field(default=None, ge=0, le=1)
    cpuCoreRequest: float | None = Field(default=None, ge=0)
    cpuMemoryRequest: StrictStr | None = None


class TrainingSpec(_Loose):
    image: StrictStr | None = Field(default=None, min_length=1)
    command: StrictStr | None = Field(default=None, min_length=1)
    args: StrictStr | None = Field(default=None, min_length=1)
    workingDir: StrictStr | None = None
    environmentVariables: list[EnvVar] = Field(default_factory=list)
    compute: Compute | None = None
    storage: Storage | None = None
    backoffLimit: int | None = None
    priorityClass: StrictStr | None = None
    nodePools: list[StrictStr] | None = None
    autoDeletionTimeAfterCompletionSeconds: int | None = Field(default=None, ge=0)
    completions: int | None = Field(default=None, ge=1)
    parallelism: int | None = Field(default=None, ge=1)


class TrainingCreationRequest(_Loose):
    name: StrictStr = Field(min_length=1)
    useGivenNameAsPrefix: bool = False
    projectId: StrictStr
    clusterId: StrictStr
    spec: TrainingSpec | None = None


class WorkspaceSpec(TrainingSpec):
    """A workspace's spec: a training's, minus ``completions`` and ``parallelism``."""


class WorkspaceCreationRequest(TrainingCreationRequest):
    spec: WorkspaceSpec | None = None


class WorkloadBatch(_Loose):
    ids: list[StrictStr] = Field(max_length=100)
    action: Literal["delete", "suspend", "resume"]


# -- the control plane ------------------------------------------------------------------


class _Later:
    """Calls made at a time, in due order, on one thread (started on first use): the
    phase steps of every workload wait here, instead of in a sleeping thread per
    workload (a thread started per create cost the event loop more than the create)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Any, tuple[Any, ...]]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def call(self, delay: float, function: Any, *args: Any) -> None:
        with self._wake:
            order = next(self._order)
            heapq.heappush(self._due, (time.monotonic() + delay, order, function, args))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="runai-phases")
                self._thread.daemon = True
                self._thread.start()
            if self._due[0][1] == order:  # now the first due: the timer waits less
                self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(self._due[0][0] - time.monotonic() if self._due else None)
                _, _, function, args = heapq.heappop(self._due)
            try:
                function(*args)
            except Exception:  # one workload's step failing must not stop the others
                traceback.print_exc()


class RunAIEmulator:
    """State of the control plane and its one-node cluster. Thread-safe."""

    def __init__(
        self,
        *,
        client_id: str = "farm-adapters",
        client_secret: str = "change-me",
        users: dict[str, str] | None = None,
        projects: list[str] | None = None,
        cluster_name: str = "emulated-cluster",
        token_lifetime: float = 3600.0,
        nfs_root: str | os.PathLike[str] | None = None,
        phase_delay: float = 0.05,
        slots: int = 4,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.users = dict(users or {})
        self.token_lifetime = token_lifetime
        self.phase_delay = phase_delay
        self.nfs_root = Path(nfs_root) if nfs_root else Path(tempfile.mkdtemp(prefix="runai-nfs-"))
        self.signing_key = os.urandom(32)
        self.lock = threading.RLock()
        self.cluster = {
            "uuid": str(uuid.uuid4()),
            "tenantId": 1,
            "name": cluster_name,
            "createdAt": _now(),
            "domain": "",
            "version": "2.24.0",
            "status": {"state": "Connected"},
            "updatedAt": _now(),
            "deletedAt": None,
            "lastLiveness": _now(),
        }
        self.projects: list[dict[str, Any]] = []
        for i, name in enumerate(projects or ["team-a"], start=1):
            self.projects.append(
                {
                    "id": str(i),
                    "name": name,
                    "clusterId": self.cluster["uuid"],
                    "parentId": "1",
                    "createdAt": _now(),
                    "updatedAt": _now(),
                    "totalResources": {},
                    "effective": {},
                    "status": {"namespace": f"runai-{name}", "phase": "Ready"},
                    "description": "",
                    "enforceRunaiScheduler": True,
                    "resources": [],
                }
            )
        self.workloads: dict[str, dict[str, Any]] = {}
        # (project name, workload name) -> id of the live (not deleted) workload: a
        # create checks the name in O(1), so 10k submits stay linear.
        self.by_name: dict[tuple[str, str], str] = {}
        self.faults = Faults()
        self.token_generation = 0
        self.counters: dict[str, int] = {}
        self.slots = threading.Semaphore(slots)
        self._stop = threading.Event()
        self._later = _Later()

    # tokens

    def issue_token(self, subject: str) -> tuple[str, int]:
        now = int(time.time())
        exp = now + int(self.token_lifetime)
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(
            json.dumps(
                {
                    "sub": subject,
                    "iat": now,
                    "exp": exp,
                    "iss": "runai-emulator",
                    "gen": self.token_generation,
                }
            ).encode()
        )
        signature = _b64(
            hmac.new(self.signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        )
        return f"{header}.{payload}.{signature}", int(self.token_lifetime)

    def check_token(self, authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "Unauthorized: missing bearer token")
        token = authorization[len("Bearer ") :].strip()
        try:
            header, payload, signature = token.split(".")
            expected = _b64(
                hmac.new(self.signing_key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            )
            if not hmac.compare_digest(signature, expected):
                raise ValueError("bad signature")
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError) as exc:
            raise ApiError(401, "Unauthorized: invalid token") from exc
        if claims["exp"] <= time.time() or claims.get("gen") != self.token_generation:
            raise ApiError(401, "Unauthorized: token expired")
        return str(claims["sub"])

    def grant(self, fields: dict[str, Any]) -> str | None:
        """The subject for valid credentials, else None. Keys match case-insensitively."""
        lower = {k.lower().replace("_", ""): v for k, v in fields.items()}
        grant = lower.get("granttype")
        if grant == "client_credentials":
            ok = (
                lower.get("clientid") == self.client_id
                and lower.get("clientsecret") == self.client_secret
            )
            return self.client_id if ok else None
        if grant == "app_token":
            ok = (
                lower.get("appid") == self.client_id
                and lower.get("appsecret") == self.client_secret
            )
            return self.client_id if ok else None
        if grant == "password":
            user = lower.get("username")
            return (
                str(user)
                if user in self.users and self.users[user] == lower.get("password")
                else None
            )
        raise ApiError(400, f"Bad request - unsupported grant type {grant!r}")

    # projects, and the one department they belong to

    def department(self) -> dict[str, Any]:
        return {
            "id": "1",
            "name": "default",
            "clusterId": self.cluster["uuid"],
            "createdAt": self.cluster["createdAt"],
            "updatedAt": self.cluster["createdAt"],
            "description": "",
            "totalResources": {},
            "resources": [],
            "children": [{"id": p["id"], "name": p["name"]} for p in self.projects],
        }

    def project(self, project_id: str) -> dict[str, Any]:
        for project in self.projects:
            if project["id"] == project_id:
                return project
        raise ApiError(400, f"Bad request - project {project_id} does not exist")

    # workloads

    def create(
        self, body: TrainingCreationRequest, subject: str, kind: str = "Training"
    ) -> dict[str, Any]:
        project = self.project(body.projectId)
        if body.clusterId != self.cluster["uuid"]:
            raise ApiError(400, f"Bad request - cluster {body.clusterId} does not exist")
        spec = body.spec or TrainingSpec()
        if not spec.image:
            raise ApiError(400, "Bad request - spec.image is mandatory for creating a workload")
        name = body.name
        if body.useGivenNameAsPrefix:
            name = f"{name}-{uuid.uuid4().hex[:5]}"
        with self.lock:
            if (project["name"], name) in self.by_name:
                raise ApiError(
                    409,
                    f"Conflict - a workload named {name!r} already exists "
                    f"in project {project['name']!r}",
                )
            workload_id = str(uuid.uuid4())
            spec_dump = spec.model_dump(exclude_none=True)
            spec_dump.setdefault("backoffLimit", DEFAULT_BACKOFF_LIMIT)
            workload = {
                "id": workload_id,
                "type": kind,
                "name": name,
                "requestedName": body.name,
                "projectId": body.projectId,
                "projectName": project["name"],
                "clusterId": body.clusterId,
                "createdBy": subject,
                "createdAt": _now(),
                "desiredPhase": "Running",
                "phase": "Creating",
                "phaseMessage": "",
                "spec": spec_dump,
                "deletedAt": None,
                "completedAt": None,
                "phaseUpdatedAt": _now(),
                "runs": 0,
                "log": "",
                "events": [],
                "history": [],
                "namespace": project["status"]["namespace"],
                "pid": None,
            }
            self.workloads[workload_id] = workload
            self.by_name[(project["name"], name)] = workload_id
            self._history(workload, "PhaseUpdate", {"phaseUpdate": _phase_update(workload)})
            self._event(workload, "Normal", "Created", f"workload {name} created")
        self._start(workload_id)
        return workload

    def _event(self, workload: dict[str, Any], kind: str, reason: str, message: str) -> None:
        event = {
            "createdAt": _now(),
            "type": kind,
            "reason": reason,
            "message": message,
            "clusterId": workload["clusterId"],
            "id": str(uuid.uuid4()),
            "source": "emulator",
        }
        workload["events"].append(event)
        self._history(workload, "Event", {"event": event})

    @staticmethod
    def _history(workload: dict[str, Any], kind: str, spec: dict[str, Any]) -> None:
        workload["history"].append(
            {"meta": {"creationTimestamp": _now(), "type": kind}, "spec": spec}
        )

    def _phase(self, workload: dict[str, Any], phase: str, message: str = "") -> None:
        workload["phase"] = phase
        workload["phaseMessage"] = message
        workload["phaseUpdatedAt"] = _now()
        self._history(workload, "PhaseUpdate", {"phaseUpdate": _phase_update(workload)})
        if phase in ("Completed", "Failed"):
            workload["completedAt"] = _now()
            after = workload["spec"].get("autoDeletionTimeAfterCompletionSeconds")
            if after is not None:
                timer = threading.Timer(after, self._auto_delete, args=(workload["id"],))
                timer.daemon = True
                timer.start()

    def _auto_delete(self, workload_id: str) -> None:
        with self.lock, contextlib.suppress(ApiError):
            workload = self.get(workload_id)
            if workload["phase"] in ("Completed", "Failed"):
                self.delete(workload_id)

    def get(self, workload_id: str, kind: str | None = None) -> dict[str, Any]:
        """The live workload with this id (of this type when ``kind`` is given)."""
        try:
            uuid.UUID(workload_id)
        except ValueError:
            raise ApiError(
                400, f"Bad request - {workload_id!r} is not a valid workload id"
            ) from None
        with self.lock:
            workload = self.workloads.get(workload_id)
            if (
                workload is None
                or workload["deletedAt"] is not None
                or (kind is not None and workload["type"] != kind)
            ):
                raise ApiError(404, f"Workload {workload_id} not found")
            return workload

    def suspend(self, workload_id: str, kind: str | None = None) -> None:
        with self.lock:
            workload = self.get(workload_id, kind)
            workload["desiredPhase"] = "Stopped"
            if workload["phase"] not in ("Completed", "Failed", "Stopped"):
                self._phase(workload, "Stopping")
                self._kill(workload)

    def resume(self, workload_id: str, kind: str | None = None) -> None:
        with self.lock:
            workload = self.get(workload_id, kind)
            if workload["phase"] != "Stopped":
                return  # accepted, nothing to do (resume of a running or ended workload)
            workload["desiredPhase"] = "Running"
            self._phase(workload, "Resuming")
        self._start(workload_id)

    def delete(self, workload_id: str, kind: str | None = None) -> None:
        with self.lock:
            workload = self.get(workload_id, kind)
            workload["desiredPhase"] = "Deleted"
            self._phase(workload, "Deleting")
            self._kill(workload)
            workload["deletedAt"] = _now()
            self.by_name.pop((workload["projectName"], workload["name"]), None)

    def batch(self, body: WorkloadBatch) -> dict[str, Any]:
        """``POST /workloads/batch``: the action on each id; failures listed per id."""
        succeeded: list[str] = []
        failed: list[dict[str, Any]] = []
        for workload_id in body.ids:
            try:
                getattr(self, body.action)(workload_id)
            except ApiError as exc:
                failed.append({"id": workload_id, "code": exc.code, "message": exc.message})
            else:
                succeeded.append(workload_id)
        return {"id": str(uuid.uuid4()), "succeeded": succeeded, "failed": failed}

    def _kill(self, workload: dict[str, Any]) -> None:
        pid = workload.get("pid")
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)

    # the cluster: runs the container's command as a local process

    def _mounts(self, spec: dict[str, Any], scratch: Path) -> list[tuple[str, str]]:
        """(mountPath, local folder) pairs, longest mount path first."""
        storage = spec.get("storage") or {}
        pairs: list[tuple[str, str]] = []
        volumes = [
            (v["mountPath"], Path(v["path"]), v.get("readOnly", True))
            for v in storage.get("hostPath", [])
        ]
        volumes += [
            (
                v["mountPath"],
                self.nfs_root / v["server"] / v["path"].lstrip("/"),
                v.get("readOnly", True),
            )
            for v in storage.get("nfs", [])
        ]
        volumes += [
            (
                v["path"],
                self.nfs_root / "pvc" / (v.get("claimName") or "pvc"),
                v.get("readOnly", False),
            )
            for v in storage.get("pvc", [])
        ]
        for mount_path, local, read_only in volumes:
            local.mkdir(parents=True, exist_ok=True)
            if read_only:  # a throwaway copy: writes never reach the real folder
                copy = scratch / f"ro-{len(pairs)}"
                shutil.copytree(local, copy, symlinks=True)
                local = copy
            pairs.append((mount_path.rstrip("/") or "/", str(local)))
        return sorted(pairs, key=lambda p: len(p[0]), reverse=True)

    @staticmethod
    def _map(text: str, mounts: list[tuple[str, str]]) -> str:
        for mount_path, local in mounts:
            text = text.replace(mount_path, local)
        return text

    def _start(self, workload_id: str) -> None:
        """Bring a created (or resumed) workload up: a phase each ``phase_delay``
        (Pending, Initializing; a resumed one Initializing only), then its container."""
        with self.lock:
            created = self.workloads[workload_id]["phase"] == "Creating"
        steps = ("Pending", "Initializing") if created else ("Initializing",)
        self._later.call(self.phase_delay, self._step, workload_id, steps)

    def _step(self, workload_id: str, steps: tuple[str, ...]) -> None:
        with self.lock:
            workload = self.workloads[workload_id]
            if workload["desiredPhase"] != "Running":
                self._settle_suspended(workload)
                return
            self._phase(workload, steps[0])
        if steps[1:]:
            self._later.call(self.phase_delay, self._step, workload_id, steps[1:])
        else:
            threading.Thread(target=self._run, args=(workload_id,), daemon=True).start()

    def _run(self, workload_id: str) -> None:
        with self.lock:
            workload = self.workloads[workload_id]
            spec = dict(workload["spec"])
        self.slots.acquire()
        scratch = Path(tempfile.mkdtemp(prefix="runai-pod-"))
        try:
            mounts = self._mounts(spec, scratch)
            command = spec.get("command")
            argv = ([command] if command else []) + shlex.split(spec.get("args") or "")
            argv = [self._map(a, mounts) for a in argv]
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": "/root",
                "RUNAI_PROJECT": workload["projectName"],
                "RUNAI_JOB_NAME": workload["name"],
            }
            env.update(
                {
                    v["name"]: self._map(v.get("value") or "", mounts)
                    for v in spec.get("environmentVariables", [])
                }
            )
            cwd = self._map(spec["workingDir"], mounts) if spec.get("workingDir") else None
            backoff = int(spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
            failures = 0
            while True:
                with self.lock:
                    if workload["desiredPhase"] != "Running":
                        self._settle_suspended(workload)
                        return
                    workload["runs"] += 1
                    if not argv:
                        self._phase(workload, "Failed", "the container has no command")
                        return
                code = self._run_once(workload, argv, env, cwd)
                with self.lock:
                    if workload["desiredPhase"] != "Running":
                        self._settle_suspended(workload)
                        return
                    if code == 0:
                        self._phase(workload, "Completed")
                        return
                    failures += 1
                    self._event(
                        workload, "Warning", "BackOff", f"container exited with code {code}"
                    )
                    if failures > backoff:
                        self._phase(
                            workload,
                            "Failed",
                            f"container exited with code {code} (backoff limit {backoff} reached)",
                        )
                        return
        finally:
            self.slots.release()
            shutil.rmtree(scratch, ignore_errors=True)

    def _settle_suspended(self, workload: dict[str, Any]) -> None:
        """A suspend reached the pod (or the pod never started): the workload is Stopped.

        Called under the lock, wherever the runner sees the desired phase leave Running,
        so a workload suspended while Pending or Initializing ends Stopped, as the real
        cluster's does, instead of staying Stopping.
        """
        if workload["desiredPhase"] == "Stopped" and workload["phase"] == "Stopping":
            self._phase(workload, "Stopped")
            self._event(workload, "Normal", "Stopped", "pods deleted")

    def _run_once(
        self, workload: dict[str, Any], argv: list[str], env: dict[str, str], cwd: str | None
    ) -> int:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            with self.lock:
                workload["log"] += f"failed to start container: {exc}\n"
            return 128
        with self.lock:
            workload["pid"] = proc.pid
            if workload["desiredPhase"] == "Running":
                self._phase(workload, "Running")
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        for chunk in iter(lambda: os.read(fd, 65536), b""):
            with self.lock:
                workload["log"] += chunk.decode(errors="replace")
        code = proc.wait()
        with self.lock:
            workload["pid"] = None
        return code

    # views

    def workload_view(self, w: dict[str, Any]) -> dict[str, Any]:
        spec = w["spec"]
        running = 1 if w["phase"] == "Running" else 0
        requested: dict[str, int] = {"number": 1}
        if w["type"] == "Training":  # workspaces have no completions/parallelism
            requested["completions"] = int(spec.get("completions", 1))
            requested["parallelism"] = int(spec.get("parallelism", 1))
        return {
            "type": w["type"],
            "name": w["name"],
            "id": w["id"],
            "source": "Control-plane",
            "priority": 50,
            "priorityClassName": spec.get("priorityClass") or "train",
            "clusterId": w["clusterId"],
            "projectName": w["projectName"],
            "projectId": w["projectId"],
            "departmentName": "default",
            "departmentId": "1",
            "namespace": w["namespace"],
            "createdAt": w["createdAt"],
            "phase": w["phase"],
            "phaseMessage": w["phaseMessage"],
            "conditions": [],
            "k8sPhase": (
                "Running"
                if running
                else "Succeeded"
                if w["phase"] == "Completed"
                else "Failed"
                if w["phase"] == "Failed"
                else "Pending"
            ),
            "tenantId": 1,
            "runningPods": running,
            "requestedPods": requested,
            "phaseUpdatedAt": w["phaseUpdatedAt"],
            "k8sPhaseUpdatedAt": w["phaseUpdatedAt"],
            "updatedAt": w["phaseUpdatedAt"],
            "deletedAt": w["deletedAt"],
            "completedAt": w["completedAt"],
            "category": "Train" if w["type"] == "Training" else "Build",
            "images": [spec.get("image")],
            "command": spec.get("command"),
            "arguments": spec.get("args"),
            "environmentVariables": {
                v["name"]: v.get("value") for v in spec.get("environmentVariables", [])
            },
            "actionsSupport": {"delete": True, "suspend": True},
        }

    def workload_detailed_view(self, w: dict[str, Any]) -> dict[str, Any]:
        """``GET /workloads/{id}``: a list item plus ``pendingSchedulingMessages``."""
        return {**self.workload_view(w), "pendingSchedulingMessages": []}

    def pod_view(self, w: dict[str, Any]) -> dict[str, Any] | None:
        """The workload's one pod, or None while it has none (not scheduled, stopped)."""
        if w["phase"] in ("Stopped", "Creating", "Pending"):
            return None
        return {
            "name": f"{w['name']}-0-0",
            "priorityClassName": w["spec"].get("priorityClass") or "train",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, w["id"])),
            "workloadId": w["id"],
            "clusterId": w["clusterId"],
            "createdAt": w["createdAt"],
            "containers": [{"name": w["name"], "image": w["spec"].get("image")}],
            "k8sPhase": self.workload_view(w)["k8sPhase"],
            "tenantId": 1,
            "k8sPhaseUpdatedAt": w["phaseUpdatedAt"],
            "updatedAt": w["phaseUpdatedAt"],
            "nodeName": "emulated-node",
            "projectName": w["projectName"],
            "workloadName": w["name"],
            "completedAt": w["completedAt"],
            "deletedAt": w["deletedAt"],
        }

    def training_view(self, w: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": w["name"],
            "requestedName": w["requestedName"],
            "workloadId": w["id"],
            "projectId": w["projectId"],
            "clusterId": w["clusterId"],
            "createdBy": w["createdBy"],
            "createdAt": w["createdAt"],
            "desiredPhase": w["desiredPhase"],
            "actualPhase": w["phase"],
            "departmentId": "1",
            "deletedAt": w["deletedAt"],
            "spec": w["spec"],
        }


def _phase_update(workload: dict[str, Any]) -> dict[str, str]:
    return {"phase": workload["phase"], "phaseMessage": workload["phaseMessage"]}


def _match(item: dict[str, Any], expression: str) -> bool:
    for op in ("==", "!=", "<=", ">=", "=@", "!@", "=^", "=$"):
        if op in expression:
            field, value = expression.split(op, 1)
            actual = str(item.get(field, ""))
            return {
                "==": actual == value,
                "!=": actual != value,
                "<=": actual <= value,
                ">=": actual >= value,
                "=@": value in actual,
                "!@": value not in actual,
                "=^": actual.startswith(value),
                "=$": actual.endswith(value),
            }[op]
    raise ApiError(400, f"Bad request - invalid filter {expression!r}")


def _page(request: Request, items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    params = request.query_params
    filters = [f for value in params.getlist("filterBy") for f in value.split(",") if f]
    for expression in filters:
        items = [i for i in items if _match(i, expression)]
    search = params.get("search")
    if search:  # free text; matched against names (INFERRED)
        items = [i for i in items if search.lower() in str(i.get("name", "")).lower()]
    sort_by = params.get("sortBy")
    if sort_by:
        items = sorted(
            items, key=lambda i: str(i.get(sort_by, "")), reverse=params.get("sortOrder") == "desc"
        )
    try:
        offset = int(params.get("offset", 0))
        limit = int(params.get("limit", DEFAULT_LIMIT))
    except ValueError:
        raise ApiError(400, "Bad request - offset and limit must be integers") from None
    if limit < 1 or limit > MAX_LIMIT or offset < 0:
        raise ApiError(400, f"Bad request - limit must be between 1 and {MAX_LIMIT}")
    page = items[offset : offset + limit]
    result: dict[str, Any] = {key: page}
    if offset + limit < len(items):
        result["next"] = offset + limit
    return result


def create_app(emulator: RunAIEmulator | None = None, **options: Any) -> FastAPI:
    """The FastAPI app of the emulator."""
    state = emulator or RunAIEmulator(**options)
    app = FastAPI(title="NVIDIA Run:ai", version="latest")
    app.state.runai = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.code, content={"code": exc.code, "message": exc.message, **exc.extra}
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown routes and methods answer in Run:ai's {code, message} shape too.
        message = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, exc.detail)
        return JSONResponse(
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
            content={
                "code": exc.status_code,
                "message": f"{message} - {request.method} {request.url.path}",
            },
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        return JSONResponse(
            status_code=400,
            content={
                "code": 400,
                "message": f"Bad request - {where}: {first.get('msg', 'invalid')}",
            },
        )

    def seen(request: Request) -> None:
        if not state.cluster["domain"]:
            state.cluster["domain"] = f"{request.url.scheme}://{request.url.netloc}"
        with state.lock:
            key = f"{request.method} {request.url.path}"
            state.counters[key] = state.counters.get(key, 0) + 1

    def error(fault: dict[str, Any], phase: str) -> JSONResponse:
        retry = phase == "before" and fault["status"] == 429
        return JSONResponse(
            status_code=fault["status"],
            headers={"Retry-After": str(fault["retry_after"])} if retry else {},
            content={"code": fault["status"], "message": "injected fault"},
        )

    def admit(request: Request) -> JSONResponse | None:
        path = request.url.path
        if path.startswith(("/api/v1/token", "/api/v2/token")) or path == "/cluster-api/status":
            return None
        try:
            request.state.subject = state.check_token(request.headers.get("Authorization"))
        except ApiError as exc:
            return JSONResponse(
                status_code=exc.code, content={"code": exc.code, "message": exc.message}
            )
        return None

    app.add_middleware(FaultGate, faults=state.faults, seen=seen, error=error, admit=admit)

    # Installed last, so outermost: a request waiting in an injected latency counts.
    gauge = InFlight()
    gauge.install(app)

    @app.post("/api/v1/token")
    async def token_v1(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "Bad request - body must be JSON") from None
        subject = state.grant(body if isinstance(body, dict) else {})
        if subject is None:
            raise ApiError(401, "Unauthorized - invalid credentials")
        token, lifetime = state.issue_token(subject)
        return {"accessToken": token, "idToken": token, "expiresIn": lifetime}

    @app.post("/api/v2/token")
    async def token_v2(request: Request) -> Any:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if "grant_type" not in form:
            return JSONResponse(
                status_code=400,
                content={"error": "invalid_request", "error_description": "grant_type is required"},
            )
        try:
            subject = state.grant(form)
        except ApiError:
            return JSONResponse(
                status_code=400,
                content={
                    "error": "unsupported_grant_type",
                    "error_description": form["grant_type"],
                },
            )
        if subject is None:
            return JSONResponse(
                status_code=401,
                content={
                    "error": "invalid_client",
                    "error_description": "invalid client credentials",
                },
            )
        token, lifetime = state.issue_token(subject)
        return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}

    @app.get("/api/v1/org-unit/projects")
    def projects(request: Request) -> Any:
        return _page(request, list(state.projects), "projects")

    @app.get("/api/v1/org-unit/departments")
    def departments(request: Request) -> Any:
        return _page(request, [state.department()], "departments")

    @app.get("/api/v1/org-unit/departments/{department_id}")
    def department(department_id: str) -> Any:
        if department_id != "1":
            raise ApiError(404, f"Department {department_id} not found")
        return state.department()

    @app.get("/api/v1/org-unit/projects/{project_id}")
    def project(project_id: str) -> Any:
        for item in state.projects:
            if item["id"] == project_id:
                return item
        raise ApiError(404, f"Project {project_id} not found")

    @app.get("/api/v1/clusters")
    def clusters() -> Any:
        return [dict(state.cluster)]  # a bare array, unlike every other list

    @app.get("/api/v1/clusters/{cluster_uuid}")
    def cluster(cluster_uuid: str) -> Any:
        if cluster_uuid != state.cluster["uuid"]:
            raise ApiError(404, f"Cluster {cluster_uuid} not found")
        return dict(state.cluster)

    for plural, kind, model in (
        ("trainings", "Training", TrainingCreationRequest),
        ("workspaces", "Workspace", WorkspaceCreationRequest),
    ):
        add_workload_routes(app, state, plural, kind, model)

    @app.post("/api/v1/workloads/batch")
    def batch(body: WorkloadBatch) -> Any:
        return state.batch(body)

    def visible(request: Request) -> list[dict[str, Any]]:
        deleted = request.query_params.get("deleted") == "true"
        with state.lock:
            return [
                state.workload_view(w)
                for w in state.workloads.values()
                if (w["deletedAt"] is not None) == deleted
            ]

    @app.get("/api/v1/workloads")
    def list_workloads(request: Request) -> Any:
        return _page(request, visible(request), "workloads")

    @app.get("/api/v1/workloads/count")
    def count_workloads(request: Request) -> Any:
        items = visible(request)
        for value in request.query_params.getlist("filterBy"):
            for expression in value.split(","):
                items = [i for i in items if _match(i, expression)]
        return {"count": len(items)}

    def all_pods(request: Request) -> list[dict[str, Any]]:
        completed = request.query_params.get("completed", "all")
        if completed not in ("all", "true", "false"):
            raise ApiError(400, "Bad request - completed must be one of all, true, false")
        with state.lock:
            deleted = request.query_params.get("deleted") == "true"
            pods = [
                pod
                for w in state.workloads.values()
                if (w["deletedAt"] is not None) == deleted
                for pod in [state.pod_view(w)]
                if pod is not None
            ]
        if completed != "all":
            done = completed == "true"
            pods = [p for p in pods if (p["k8sPhase"] in ("Succeeded", "Failed")) == done]
        return pods

    # registered before /workloads/{workload_id}, which would take "pods" for an id
    @app.get("/api/v1/workloads/pods")
    def list_pods(request: Request) -> Any:
        return _page(request, all_pods(request), "pods")

    @app.get("/api/v1/workloads/pods/count")
    def count_pods(request: Request) -> Any:
        items = all_pods(request)
        for value in request.query_params.getlist("filterBy"):
            for expression in value.split(","):
                items = [i for i in items if _match(i, expression)]
        return {"count": len(items)}

    @app.get("/api/v1/workloads/{workload_id}")
    def get_workload(workload_id: str) -> Any:
        with state.lock:
            return state.workload_detailed_view(state.get(workload_id))

    @app.get("/api/v1/workloads/{workload_id}/pods")
    def pods(workload_id: str, request: Request) -> Any:
        with state.lock:
            pod = state.pod_view(state.get(workload_id))
        return _page(request, [] if pod is None else [pod], "pods")

    @app.get("/api/v1/workloads/{workload_id}/events")
    def events(workload_id: str, request: Request) -> Any:
        with state.lock:
            items = list(state.get(workload_id)["events"])
        if request.query_params.get("sortOrder", "desc") == "desc":  # newest first by default
            items.reverse()
        return _page(request, items, "events")

    @app.get("/api/v1/workloads/{workload_id}/history")
    def history(workload_id: str, request: Request) -> Any:
        with state.lock:
            items = list(state.get(workload_id)["history"])  # oldest first
        return _page(request, items, "records")

    # the Cluster API, on the cluster's domain (this server)
    @app.get("/cluster-api/status")
    def cluster_status() -> PlainTextResponse:
        return PlainTextResponse("OK")

    @app.get("/cluster-api/api/v1/{project}/workloads/training/runai/{name}/logs/download")
    def download_logs(project: str, name: str) -> PlainTextResponse:
        with state.lock:
            workload_id = state.by_name.get((project, name))
            if workload_id is not None:
                return PlainTextResponse(state.workloads[workload_id]["log"])
        raise ApiError(404, f"Workload {name} not found in project {project}")

    # emulator controls
    @app.post("/_emulator/faults", include_in_schema=False)
    def add_fault(fault: dict[str, Any]) -> Any:
        return state.faults.add(fault)

    @app.delete("/_emulator/faults", include_in_schema=False)
    def clear_faults() -> None:
        state.faults.clear()

    @app.post("/_emulator/expire-tokens", include_in_schema=False)
    def expire_tokens() -> None:
        with state.lock:
            state.token_generation += 1  # every token issued so far is now expired

    @app.get("/_emulator/stats", include_in_schema=False)
    def stats() -> Any:
        with state.lock:
            return {"requests": dict(state.counters), "peak_in_flight": gauge.peaks()}

    @app.delete("/_emulator/stats", include_in_schema=False)
    def reset_stats() -> None:
        with state.lock:
            state.counters.clear()
            gauge.reset()

    return app


def add_workload_routes(
    app: FastAPI,
    state: RunAIEmulator,
    plural: str,
    kind: str,
    model: type[TrainingCreationRequest],
) -> None:
    """Create, get, suspend, resume and delete for one workload type
    (``/api/v1/workloads/trainings``, ``/api/v1/workloads/workspaces``)."""
    base = f"/api/v1/workloads/{plural}"

    async def create(request: Request) -> Any:
        try:
            raw = await request.json()
        except ValueError:
            raise ApiError(400, "Bad request - body must be JSON") from None
        try:
            body = model.model_validate(raw)
        except ValidationError as exc:
            errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
            raise RequestValidationError(errors) from None
        workload = state.create(body, request.state.subject, kind)
        with state.lock:
            return JSONResponse(status_code=202, content=state.training_view(workload))

    def get(workload_id: str) -> Any:
        with state.lock:
            return state.training_view(state.get(workload_id, kind))

    def action(name: str) -> Any:
        def handler(workload_id: str) -> Any:
            getattr(state, name)(workload_id, kind)
            return JSONResponse(status_code=202, content=ACCEPTED)

        return handler

    app.add_api_route(base, create, methods=["POST"], status_code=202)
    app.add_api_route(f"{base}/{{workload_id}}", get, methods=["GET"])
    app.add_api_route(f"{base}/{{workload_id}}", action("delete"), methods=["DELETE"])
    for name in ("suspend", "resume"):
        app.add_api_route(f"{base}/{{workload_id}}/{name}", action(name), methods=["POST"])
