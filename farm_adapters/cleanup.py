"""Deleting finished jobs: the render-context folder, the farm's record, the journal's.

:func:`delete` removes one job; :func:`clean` every job of the journal older than a
given age. A job still active is refused unless ``stop`` asks to stop it first.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import FarmAdapterError, InvalidRequestError, JobNotFoundError, TransferError
from .plugin import Capability

if TYPE_CHECKING:
    from .journal import Journal, JournalEntry
    from .plugin import FarmPlugin

__all__ = ["DeleteReport", "clean_candidates", "delete", "parse_age"]


@dataclass
class DeleteReport:
    """What :func:`delete` removed, and what it could not."""

    job_id: str
    target: str
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_age(text: str) -> float:
    """Seconds in an age such as ``7d``, ``12h``, ``30m``, ``90s`` or ``2w``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    value = text.strip().lower()
    try:
        if value and value[-1] in units:
            seconds = float(value[:-1]) * units[value[-1]]
        else:
            seconds = float(value) * 86400
    except ValueError:
        raise InvalidRequestError(
            f"--older-than {text!r}: write a number and a unit, e.g. 7d, 12h, 30m",
            field="older_than",
        ) from None
    if seconds < 0:
        raise InvalidRequestError("--older-than must not be negative", field="older_than")
    return seconds


def _remove_folder(backend: FarmPlugin, folder: str, context: str) -> str | None:
    """Remove the job's render-context folder (only a folder named after the render
    context: never anything else); what was removed, or None."""
    if not folder or os.path.basename(folder.rstrip("/\\")) != context:
        return None
    if backend.storage is not None:
        if backend.storage.exists(folder):
            backend.storage.remove(folder)
            return folder
        return None
    local = backend.path_mapper.to_local(folder) if backend.path_mapper else folder
    if not os.path.isdir(local):
        return None
    try:
        shutil.rmtree(local)
    except OSError as exc:
        raise TransferError(f"cannot remove the job's folder {local}: {exc}") from exc
    return local


def delete(
    backend: FarmPlugin,
    job_id: str,
    *,
    stop: bool = False,
    journal: Journal | None = None,
    timeout: float = 120.0,
) -> DeleteReport:
    """Delete job ``job_id``: its render-context folder (through the target's storage),
    the farm's record of it (state and logs; where the backend has
    :attr:`Capability.DELETE`) and the journal's.

    Raises :class:`~farm_adapters.errors.InvalidRequestError` for a job still active
    unless ``stop`` (then it is stopped and waited for, up to ``timeout`` seconds)."""
    from .journal import Journal
    from .submit import wait

    journal = journal or Journal()
    entry = journal.get(job_id, backend.target)
    report = DeleteReport(job_id, backend.target)
    try:
        job = backend.get_job(job_id)
    except JobNotFoundError:
        if entry is None:
            raise
        job = None
        report.notes.append(f"the farm no longer knows job {job_id}")
    if job is not None and not job.state.final:
        if not stop:
            raise InvalidRequestError(
                f"job {job_id} is {job.state}; stop it first, or delete it with --stop",
                field="job_id",
            )
        backend.stop_job(job_id)
        wait(backend, job_id, timeout=timeout, poll_interval=0.2, notify=False)
    if entry is not None:
        removed = _remove_folder(backend, entry.outputs.get("folder") or "", entry.render_context)
        if removed:
            report.removed.append(removed)
    if job is not None:
        if Capability.DELETE in backend.capabilities:
            backend.delete_job(job_id)
            report.removed.append(f"job {job_id} on {backend.target}")
        else:
            report.notes.append(
                f"backend {backend.name!r} cannot delete jobs (capability "
                f"{Capability.DELETE}); the farm keeps its record"
            )
    if journal.delete(job_id, backend.target):
        report.removed.append("journal record")
    return report


def clean_candidates(
    older_than: float, *, journal: Journal | None = None, target: str | None = None
) -> list[JournalEntry]:
    """The journal's jobs submitted more than ``older_than`` seconds ago, oldest first."""
    from .journal import Journal

    return (journal or Journal()).older_than(time.time() - older_than, target)


def is_final(backend: FarmPlugin, job_id: str) -> bool | None:
    """Whether the job is final; None when the farm no longer knows it."""
    try:
        return backend.get_job(job_id).state.final
    except JobNotFoundError:
        return None
    except FarmAdapterError:
        raise
