"""Submitting the open scene, and the job list the panel shows.

:func:`submit_scene` drives the stages in Katana's order through the core: a copy of
the .blend with its external files (:mod:`.staging`), the target's temporary folder,
the copy through the target's storage, the environment, then one task per chunk
(:mod:`.job`) via :func:`farm_adapters.submit`, which also records the job in the
journal. :class:`JobList` refreshes job states on a worker thread so a UI timer never
waits on a farm.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...config import TargetConfig, load_targets
from ...errors import FarmAdapterError, InvalidRequestError
from ...models import Job, JobState
from .job import DEFAULT_OUTPUT, build_request, parse_blender_executables

__all__ = ["JobList", "JobRow", "SubmitResult", "blender_for_target", "submit_scene"]

#: Jobs whose name starts with this are the add-on's (see :func:`build_request`).
JOB_PREFIX = "blender: "


@dataclass
class SubmitResult:
    """A submitted job, and the scene's external files that could not be copied."""

    job: Job
    tasks: int
    outputs: list[str]
    missing: list[str]


def blender_for_target(
    target: str, backend_name: str, explicit: str = "", preference: str = ""
) -> str | None:
    """The farm's ``blender`` executable for ``target``, or None to use the bundled
    ``bpy`` entry point.

    In order: ``explicit`` (the operator's argument); the add-on preference
    ``TARGET=PATH; ...``; for a ``local`` target, the Blender running this add-on
    (when it is a real Blender, not the ``bpy`` module).
    """
    if explicit:
        return explicit
    configured = parse_blender_executables(preference).get(target)
    if configured:
        return configured
    if backend_name == "local":
        try:
            import bpy

            binary = str(bpy.app.binary_path or "")
        except ImportError:
            binary = ""
        if binary and Path(binary).name.lower().startswith("blender"):
            return binary
    return None


def submit_scene(
    *,
    target: str,
    frames: str,
    chunk_size: int = 1,
    priority: int = 50,
    output: str = DEFAULT_OUTPUT,
    blender: str = "",
    blender_preference: str = "",
    targets: TargetConfig | None = None,
    progress: Callable[[Any], None] | None = None,
) -> SubmitResult:
    """Submit the open scene's ``frames`` to ``target``. Needs ``bpy``.

    Raises a :class:`~farm_adapters.errors.FarmAdapterError` whose message is one line
    naming the field or the fix.
    """
    import bpy

    from ... import get_plugin_manager, submit
    from .staging import stage_blend

    if chunk_size < 1:
        raise InvalidRequestError("chunk size: must be at least 1", field="chunk_size")
    config = targets if targets is not None else load_targets()
    backend = config.get(target).create_backend(get_plugin_manager())
    scene = bpy.context.scene
    source = Path(bpy.data.filepath).stem if bpy.data.filepath else "untitled"
    blend_name = f"{source}.blend"
    context = str(uuid.uuid4())
    try:
        with tempfile.TemporaryDirectory(prefix="farm-adapters-blender-") as tmp:
            staged = stage_blend(tmp, blend_name)
            # Stage 1 in Katana's order: the folder first (submit() asks for the same
            # context again and gets the same folder), so outputs can name it.
            folder = backend.create_temporary_folder(context)
            executable = blender_for_target(target, backend.name, blender, blender_preference)
            python = None
            if executable is None:
                python = backend.get_installation_metadata().executable
            extension = scene.render.file_extension if scene.render.use_file_extension else ""
            request = build_request(
                blend=blend_name,
                files=staged.files,
                frames=frames,
                chunk_size=chunk_size,
                priority=priority,
                output=output,
                extension=extension,
                folder=folder,
                render_context=context,
                blender=executable,
                python=python,
                name=f"{JOB_PREFIX}{source}",
            )
            job = submit(backend, request, progress=progress)
            assert isinstance(job, Job)
            return SubmitResult(
                job=job, tasks=request.task_count, outputs=request.outputs, missing=staged.missing
            )
    finally:
        backend.close()


@dataclass(frozen=True)
class JobRow:
    """One line of the panel's job list."""

    id: str
    name: str
    target: str
    state: JobState
    progress: float
    can_stop: bool
    can_restart: bool
    message: str = ""


class JobList:
    """The add-on's recent jobs (from the journal), refreshed on a worker thread.

    :meth:`refresh` returns at once; :attr:`rows` is what the last refresh found and
    :attr:`version` grows each time it changes, so a UI timer redraws only then.
    """

    def __init__(self, limit: int = 8) -> None:
        self.limit = limit
        self.rows: list[JobRow] = []
        self.error = ""
        self.version = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Start a refresh unless one is running; True if one was started."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return False
            self._thread = threading.Thread(
                target=self._run, name="farm-adapters-blender-jobs", daemon=True
            )
            self._thread.start()
            return True

    def join(self, timeout: float | None = None) -> None:
        """Wait for a running refresh (for tests and scripts)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        from ... import get_plugin_manager
        from ...journal import Journal
        from ...plugin import Capability

        rows: list[JobRow] = []
        error = ""
        try:
            config = load_targets()
            manager = get_plugin_manager()
            entries = [e for e in Journal().entries(limit=200) if e.name.startswith(JOB_PREFIX)][
                : self.limit
            ]
            backends: dict[str, Any] = {}
            try:
                for entry in entries:
                    try:
                        if entry.target not in backends:
                            backends[entry.target] = config.get(entry.target).create_backend(
                                manager
                            )
                        backend = backends[entry.target]
                        job = backend.get_job(entry.job_id)
                        caps = backend.capabilities
                        rows.append(
                            JobRow(
                                id=job.id,
                                name=job.name or entry.name,
                                target=entry.target,
                                state=job.state,
                                progress=job.progress,
                                can_stop=Capability.STOP in caps and not job.state.final,
                                can_restart=Capability.RESTART in caps and job.state.final,
                                message=job.message,
                            )
                        )
                    except FarmAdapterError as exc:
                        rows.append(
                            JobRow(
                                id=entry.job_id,
                                name=entry.name,
                                target=entry.target,
                                state=JobState.UNKNOWN,
                                progress=0.0,
                                can_stop=False,
                                can_restart=False,
                                message=str(exc).splitlines()[0],
                            )
                        )
            finally:
                for backend in backends.values():
                    backend.close()
        except FarmAdapterError as exc:
            error = str(exc).splitlines()[0]
        except Exception as exc:  # a UI timer must never die; show what went wrong
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            if rows != self.rows or error != self.error:
                self.rows, self.error = rows, error
                self.version += 1
