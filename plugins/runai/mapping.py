"""Translations between farm-adapters and Run:ai: phases, requirements, names."""

from __future__ import annotations

import re
from typing import Any

from farm_adapters import InvalidRequestError, JobRequest, JobState

#: Every Run:ai phase (the 14 of the reference) mapped to one JobState.
PHASE_TABLE: dict[str, JobState] = {
    "Creating": JobState.QUEUED,
    "Pending": JobState.QUEUED,
    "Resuming": JobState.QUEUED,
    "Initializing": JobState.QUEUED,  # pulling the image; the renderer has not started
    "Running": JobState.RUNNING,
    "Updating": JobState.RUNNING,
    "Degraded": JobState.RUNNING,
    "Completed": JobState.COMPLETED,
    "Failed": JobState.FAILED,
    "Stopping": JobState.STOPPING,
    "Stopped": JobState.STOPPED,
    "Deleting": JobState.STOPPING,
    "Terminating": JobState.STOPPING,
    "Unknown": JobState.UNKNOWN,
}

#: Priority classes from lowest to highest; farm-adapters' 0-100 is split evenly.
PRIORITY_CLASSES = ("very-low", "low", "medium-low", "medium", "medium-high", "high", "very-high")
#: Backend extras a request may set (requirements.extra).
EXTRAS = {"gpu_portion", "node_type", "large_shm", "preemptibility"}

ENV_JOB_NAME = "FARM_ADAPTERS_JOB_NAME"
ENV_TASKS = "FARM_ADAPTERS_TASKS"
ENV_FRAMES = "FARM_ADAPTERS_FRAMES"


def map_phase(phase: str) -> JobState:
    """The JobState of a Run:ai phase; anything else is UNKNOWN, never guessed."""
    return PHASE_TABLE.get(phase, JobState.UNKNOWN)


def priority_class(priority: int) -> str:
    return PRIORITY_CLASSES[min(len(PRIORITY_CLASSES) - 1, priority * len(PRIORITY_CLASSES) // 101)]


def _quantity(value: int) -> str:
    """Bytes as a Kubernetes quantity."""
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return str(value)


def spec_for(request: JobRequest) -> dict[str, Any]:
    """The spec fields a request's requirements, priority and retries become; raises
    InvalidRequestError for what a training cannot express."""
    req = request.requirements
    if req.labels:
        raise InvalidRequestError(
            "requirements.labels: Run:ai places workloads by node pool; use "
            "requirements.pool (or extra.node_type for a node label)",
            field="requirements.labels",
        )
    if req.timeout:
        raise InvalidRequestError(
            "requirements.timeout: a Run:ai training has no run-time limit; remove it or "
            "bound the command itself (e.g. `timeout 3600 render ...`)",
            field="requirements.timeout",
        )
    unknown = sorted(set(req.extra) - EXTRAS)
    if unknown:
        raise InvalidRequestError(
            f"requirements.extra.{unknown[0]}: runai knows {', '.join(sorted(EXTRAS))}",
            field=f"requirements.extra.{unknown[0]}",
        )
    compute: dict[str, Any] = {}
    portion = req.extra.get("gpu_portion")
    if portion is not None:
        if not isinstance(portion, (int, float)) or not 0 < portion <= 1:
            raise InvalidRequestError(
                "requirements.extra.gpu_portion must be in (0, 1]",
                field="requirements.extra.gpu_portion",
            )
        if req.gpus and req.gpus > 1:
            raise InvalidRequestError(
                "requirements.gpus: a GPU portion and several GPUs cannot be combined",
                field="requirements.gpus",
            )
        compute |= {"gpuRequestType": "portion", "gpuPortionRequest": float(portion)}
    elif req.gpus is not None:
        compute["gpuDevicesRequest"] = req.gpus
    if req.cpus is not None:
        compute["cpuCoreRequest"] = req.cpus
    if req.memory is not None:
        compute["cpuMemoryRequest"] = _quantity(int(req.memory))
    if req.extra.get("large_shm"):
        compute["largeShmRequest"] = True
    spec: dict[str, Any] = {
        "backoffLimit": request.max_retries,
        "priorityClass": priority_class(request.priority),
    }
    if compute:
        spec["compute"] = compute
    if req.pool:
        spec["nodePools"] = [req.pool]
    if req.extra.get("node_type"):
        spec["nodeType"] = str(req.extra["node_type"])
    if req.extra.get("preemptibility"):
        spec["preemptibility"] = str(req.extra["preemptibility"])
    return spec


def workload_name(prefix: str, job_id: str, index: int, attempt: int, slug: str = "") -> str:
    """``<prefix>-<job>-<task>-r<attempt>[-<slug>]``: k8s-safe and unique per attempt."""
    name = f"{prefix}-{job_id}-{index}-r{attempt}"
    return f"{name}-{slug}" if slug else name


def _pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}-([0-9a-f]{{10}})-(\d+)-r(\d+)(?:-([a-z0-9-]+))?$")


def parse_name(prefix: str, name: str) -> tuple[str, int, int] | None:
    """(job id, task index, attempt) of a workload name this backend made, else None."""
    match = _pattern(prefix).match(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3))


def name_slug(prefix: str, name: str) -> str:
    match = _pattern(prefix).match(name)
    return (match.group(4) or "") if match else ""
