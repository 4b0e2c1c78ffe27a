"""Every Katana name the bridge uses, in one table.

Foundry's public "Render Farm Plug-ins" page names some of Katana's API (``doc``
below); the rest is not public and is a guess (``unverified``). A studio with Katana
checks the guesses once (:func:`farm_adapters.dcc.katana.bridge.missing_names` lists
those its ``FarmAPI`` does not have) and corrects them here: nothing else in the bridge
spells a Katana name.
"""

from __future__ import annotations

from typing import NamedTuple

from ...models import JobState

__all__ = [
    "BASE_CLASS",
    "DOC",
    "INSTALLATION_METADATA",
    "INSTALLATION_METADATA_FIELDS",
    "JOB_CLASS",
    "JOB_FIELDS",
    "JOB_NOT_FOUND_EXCEPTION",
    "JOB_REQUEST_FIELDS",
    "JOB_STATES",
    "METHODS",
    "MODULE",
    "OPTIONAL_METHODS",
    "PLUGIN_EXCEPTION",
    "REGISTRY_KIND",
    "REGISTRY_VERSION",
    "STATE_ENUM",
    "UNVERIFIED",
    "Method",
    "Name",
    "unverified_names",
]

DOC = "doc"
UNVERIFIED = "unverified"


class Name(NamedTuple):
    """One Katana name and whether the public documentation shows it."""

    katana: str
    status: str


class Method(NamedTuple):
    """A ``BaseFarmPlugin`` method: its Katana name, its arguments in order as
    ``(our name, Katana's name)`` pairs, and whether the documentation shows them."""

    katana: str
    args: tuple[tuple[str, str], ...]
    status: str


MODULE = Name("FarmAPI", DOC)
BASE_CLASS = Name("BaseFarmPlugin", DOC)
#: Nested in the base class: ``FarmAPI.BaseFarmPlugin.InstallationMetadata``.
INSTALLATION_METADATA = Name("InstallationMetadata", DOC)
JOB_CLASS = Name("Job", DOC)
#: Nested in the job class: ``FarmAPI.Job.State``.
STATE_ENUM = Name("State", DOC)
PLUGIN_EXCEPTION = Name("FarmPluginException", DOC)
JOB_NOT_FOUND_EXCEPTION = Name("JobNotFoundException", DOC)
REGISTRY_KIND = Name("FarmPlugin", DOC)
#: The version in the documentation's ``PluginRegistry`` example.
REGISTRY_VERSION = 2.0

_CONTEXT = ("render_context", "renderContextName")
_JOB = ("job_id", "jobId")

#: Our operation -> Katana's method, in the order Katana's documentation gives them.
METHODS: dict[str, Method] = {
    # 1. submission, stage 1: temporary render files
    "create_temporary_folder": Method("createTemporaryFolder", (_CONTEXT,), UNVERIFIED),
    "copy_render_files": Method("copyRenderFiles", (_CONTEXT, ("paths", "filePaths")), UNVERIFIED),
    # stage 2: environment
    "get_installation_metadata": Method("getInstallationMetadata", (), UNVERIFIED),
    "get_environment_for_job": Method("getEnvironmentForJob", (_CONTEXT,), UNVERIFIED),
    # stage 3: submit (the name is public, its argument's name is not)
    "submit_job": Method("submitJob", (("job_request", "jobRequest"),), DOC),
    # 2. information
    "get_jobs": Method("getJobs", (), UNVERIFIED),
    "get_job_state": Method("getJobState", (_JOB,), UNVERIFIED),
    "get_render_log_filename": Method("getRenderLogFilename", (_JOB,), UNVERIFIED),
    # 3. control
    "stop_job": Method("stopJob", (_JOB,), UNVERIFIED),
    "restart_job": Method("restartJob", (_JOB,), UNVERIFIED),
    # 4. test
    "test": Method("test", (), UNVERIFIED),
}

#: Methods left off a target whose backend cannot do them, so Katana disables the
#: matching feature (our operation -> the capability it needs).
OPTIONAL_METHODS: dict[str, str] = {
    "get_render_log_filename": "render_log_filename",
    "stop_job": "stop",
    "restart_job": "restart",
}

#: Our job state -> the member of ``FarmAPI.Job.State`` (members are not public).
JOB_STATES: dict[JobState, str] = {
    JobState.QUEUED: "Queued",
    JobState.RUNNING: "Running",
    JobState.STOPPING: "Stopping",
    JobState.COMPLETED: "Completed",
    JobState.FAILED: "Failed",
    JobState.STOPPED: "Stopped",
    JobState.UNKNOWN: "Unknown",
}

#: Reading a ``FarmPluginManager.JobRequest`` (fields not public): our field -> the
#: attribute, getter method or mapping key tried in order.
JOB_REQUEST_FIELDS: dict[str, tuple[str, ...]] = {
    "render_context": ("renderContextName", "getRenderContextName"),
    "name": ("name", "getName", "jobName"),
    "commands": ("commands", "getCommands"),
    "environment": ("environment", "getEnvironment"),
}

#: Filling an ``InstallationMetadata`` (fields not public): ours -> Katana's attribute.
INSTALLATION_METADATA_FIELDS: dict[str, str] = {
    "root": "installationPath",
    "version": "version",
    "platform": "platform",
    "environment": "environment",
}

#: Building a ``FarmAPI.Job`` for ``getJobs`` (constructor not public): ours ->
#: Katana's keyword argument.
JOB_FIELDS: dict[str, str] = {"id": "jobId", "name": "name", "state": "state"}


def unverified_names() -> list[str]:
    """Every guessed name, for the documentation and for a studio checking them."""
    out = [m.katana for m in METHODS.values() if m.status == UNVERIFIED]
    out += [f"{m.katana}({', '.join(a for _, a in m.args)})" for m in METHODS.values() if m.args]
    out += [f"Job.State.{member}" for member in JOB_STATES.values()]
    out += [f"JobRequest.{'/'.join(names)}" for names in JOB_REQUEST_FIELDS.values()]
    out += [f"InstallationMetadata.{name}" for name in INSTALLATION_METADATA_FIELDS.values()]
    out += [f"Job({', '.join(f'{k}=' for k in JOB_FIELDS.values())})"]
    return out
