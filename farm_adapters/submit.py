"""The orchestration every caller uses, built once on top of any backend.

:func:`submit` validates the request, creates the temporary folder, copies the files
(with progress), merges the environment, submits, records the job in the journal and
returns the job. A backend that calls :func:`announce_job_id` before sending its tasks
has the job journalled first, so a submit that fails part-way (or a process killed
mid-submit) never leaves farm work the journal does not know. :func:`wait` polls a
job to a final state and :func:`follow_log` tails its render log.
"""

from __future__ import annotations

import getpass
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .errors import FarmAdapterError, InvalidRequestError, WaitTimeoutError
from .models import Job, JobRequest, JobState, parse_request
from .plugin import FarmPlugin, ProgressCallback

if TYPE_CHECKING:
    from .journal import Journal
    from .manager import FarmPluginManager

__all__ = ["DryRun", "announce_job_id", "follow_log", "prepare_request", "submit", "wait"]

#: Set on every job's processes by :func:`submit`.
ENV_RENDER_CONTEXT = "FARM_ADAPTERS_RENDER_CONTEXT"
ENV_FOLDER = "FARM_ADAPTERS_FOLDER"

#: Set by :func:`submit` while a backend's ``submit_job`` runs.
_announced: ContextVar[tuple[FarmPlugin, Callable[[str], None]] | None] = ContextVar(
    "farm_adapters_announced", default=None
)


def announce_job_id(backend: FarmPlugin, job_id: str) -> None:
    """Called by a backend's ``submit_job`` once it has chosen the new job's id and
    before it sends anything: :func:`submit` records the job in the journal at once.
    Does nothing outside :func:`submit`."""
    current = _announced.get()
    if current is not None and current[0] is backend:
        current[1](job_id)


class DryRun(NamedTuple):
    """What :func:`submit` would send, unsent: the backend's native payloads."""

    backend: str
    target: str
    request: JobRequest
    payloads: list[dict[str, Any]]


def prepare_request(
    backend: FarmPlugin,
    request: JobRequest,
    *,
    folder: str | None,
    files: list[str] | None = None,
) -> JobRequest:
    """The request as the backend receives it: folder, remote files, merged environment
    (the backend's own variables, then the request's, then farm-adapters' own)."""
    environment = {
        **backend.get_environment_for_job(request),
        **request.environment,
        ENV_RENDER_CONTEXT: request.render_context,
    }
    if folder is not None:
        environment[ENV_FOLDER] = folder
    update: dict[str, Any] = {"environment": environment, "folder": folder}
    if files is not None:
        update["files"] = files
    return request.model_copy(update=update)


def _check_local_files(request: JobRequest) -> None:
    for i, path in enumerate(request.files):
        if not os.path.exists(path):
            raise InvalidRequestError(
                f"files[{i}]: {path!r} does not exist on this machine; check the path",
                field=f"files.{i}",
            )


def submit(
    backend: FarmPlugin,
    request: JobRequest | Mapping[str, Any],
    *,
    progress: ProgressCallback | None = None,
    dry_run: bool = False,
    journal: Journal | Literal[False] | None = None,
) -> Job | DryRun:
    """Submit ``request`` through ``backend``; the one path every caller takes.

    Returns the :class:`~farm_adapters.models.Job` as the backend sees it right after
    submission, or with ``dry_run=True`` a :class:`DryRun` holding the backend's native
    payloads: nothing is created, copied or sent (the temporary folder is not made, so
    ``{folder}`` stays unsubstituted in the payloads).

    ``journal``: where to record the job (default: the user's journal; ``False``: do
    not record).

    Raises :class:`~farm_adapters.errors.InvalidRequestError` naming the field for a bad
    request, and whatever the backend raises (always a ``FarmAdapterError``).
    """
    request = parse_request(request)
    if backend.path_mapper:
        request = parse_request(backend.path_mapper.map_request(request))
    if request.user is None:
        request = request.model_copy(update={"user": getpass.getuser()})
    _check_local_files(request)
    backend.refuse_unsupported(request)

    if dry_run:
        prepared = prepare_request(backend, request, folder=None)
        return DryRun(
            backend=backend.name,
            target=backend.target,
            request=prepared,
            payloads=backend.native_payloads(prepared),
        )

    folder = backend.create_temporary_folder(request.render_context)
    remote = backend.copy_render_files(request.files, folder, progress) if request.files else []
    prepared = prepare_request(backend, request, folder=folder, files=remote)
    recorded: list[str] = []

    def record(job_id: str) -> None:
        if journal is False or job_id in recorded:
            return
        recorded.append(job_id)
        try:
            from .journal import Journal

            (journal or Journal()).record(
                job_id=job_id, target=backend.target, backend=backend.name, request=prepared
            )
        except FarmAdapterError as exc:  # the job is (being) submitted; go on
            import logging

            logging.getLogger(__name__).warning(
                "job %s was submitted but not recorded in the journal: %s", job_id, exc
            )

    token = _announced.set((backend, record))
    try:
        job_id = backend.submit_job(prepared)
    finally:
        _announced.reset(token)
    record(job_id)
    if prepared.notify is False and journal is not False:
        try:  # --no-notify: marked as notified, so no observer sends it
            from .journal import Journal

            (journal or Journal()).claim_notification(job_id, backend.target, "off")
        except FarmAdapterError:
            pass
    try:
        return backend.get_job(job_id)
    except FarmAdapterError as exc:
        return Job(
            id=job_id,
            name=prepared.name,
            state=JobState.UNKNOWN,
            backend=backend.name,
            target=backend.target,
            render_context=prepared.render_context,
            message=f"submitted; could not read its state yet: {exc}",
        )


def wait(
    backend: FarmPlugin,
    job_id: str,
    *,
    timeout: float | None = None,
    poll_interval: float = 0.5,
    max_interval: float = 5.0,
    on_update: Callable[[Job], None] | None = None,
    manager: FarmPluginManager | None = None,
    notify: bool = True,
) -> Job:
    """Poll until the job reaches a final state; return it.

    With ``notify`` (the default) the end is notified through the target's
    ``[notify]`` sinks (:attr:`FarmPlugin.notify`) unless another observer already
    did (:func:`farm_adapters.notify.notify_job_end`); a sink's problem is logged.

    The interval starts at ``poll_interval`` and grows to ``max_interval`` while nothing
    changes. ``on_update`` sees every poll's job; ``manager``'s
    ``farm_adapters_job_state_changed`` hook is called on every state change (a hook
    that raises is reported through ``manager.on_hook_error`` and skipped). Raises
    :class:`~farm_adapters.errors.WaitTimeoutError` after ``timeout`` seconds (the job
    goes on).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = poll_interval
    previous: JobState | None = None
    last_progress = -1.0
    while True:
        job = backend.get_job(job_id)
        if on_update is not None:
            on_update(job)
        if job.state != previous:
            if manager is not None:  # each hook isolated: the job is on the farm already
                manager.notify(
                    "farm_adapters_job_state_changed", job=job, previous=previous, backend=backend
                )
            previous = job.state
            interval = poll_interval
        elif job.progress != last_progress:
            interval = poll_interval
        else:
            interval = min(max_interval, interval * 1.5)
        last_progress = job.progress
        if job.state.final:
            if notify and backend.notify is not None:
                notify_end(backend, job)
            return job
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"job {job_id} is still {job.state} after {timeout:g} s; it goes on, "
                    f"wait again or stop it"
                )
            interval = min(interval, remaining)
        time.sleep(interval)


def notify_end(backend: FarmPlugin, job: Job) -> bool:
    """Notify a final job's end through ``backend``'s target sinks, once per job (the
    journal records who sent it); True when this call sent it. Problems are logged as
    warnings: the job has ended either way."""
    import logging

    from .notify import notify_job_end

    try:
        sent, problems = notify_job_end(backend.notify, job, backend.target)
    except FarmAdapterError as exc:
        sent, problems = False, [str(exc)]
    for problem in problems:
        logging.getLogger(__name__).warning("%s", problem)
    return sent


def follow_log(
    backend: FarmPlugin,
    job_id: str,
    *,
    offset: int = 0,
    poll_interval: float = 0.5,
    timeout: float | None = None,
) -> Iterator[str]:
    """Yield the render log's text as it grows, until the job is final and all is read.

    Raises :class:`~farm_adapters.errors.WaitTimeoutError` after ``timeout`` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        chunk = backend.get_render_log(job_id, offset)
        if chunk.text:
            yield chunk.text
        offset = chunk.next_offset
        if chunk.complete:
            return
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeoutError(f"job {job_id}'s log is still growing after {timeout:g} s")
        if not chunk.text:
            time.sleep(poll_interval)
