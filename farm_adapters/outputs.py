"""A job's outputs: listing the files it wrote, and downloading them.

The files come from the request's ``outputs`` (``{frame}`` and the other frame tokens
substituted for every frame; a folder stands for the files in it) and the job's
render-context folder, as the journal recorded them at submit. They are read where the
workstation sees them: through the target's storage when it has one, else on this
machine's (shared) filesystem, render-node paths mapped back through the target's
``path_mappings``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import JobNotFoundError, TransferError
from .models import OutputFile

if TYPE_CHECKING:
    from .journal import Journal
    from .plugin import FarmPlugin, ProgressCallback

__all__ = ["DownloadReport", "download_outputs", "expand_patterns", "list_outputs"]

#: Files of a farm-adapters job folder that are inputs, not outputs.
_SKIP_NAMES = frozenset({".farm-adapters", "__pycache__"})


class DownloadReport(NamedTuple):
    """What :func:`download_outputs` did."""

    copied: list[str]
    skipped: list[str]
    bytes_copied: int


def expand_patterns(
    patterns: Sequence[str], frames: Sequence[int], folder: str | None, context: str
) -> list[tuple[str, int | None]]:
    """Each output pattern with its tokens substituted: once per frame when it has a
    frame token, else once. Returns (path, frame or None) pairs, in order."""
    from .models import _TOKEN_RE, _replace

    base: dict[str, Any] = {"context": context}
    if folder is not None:
        base["folder"] = folder
    out: list[tuple[str, int | None]] = []
    seen: set[str] = set()
    for pattern in patterns:
        tokens = {m.group(3) for m in _TOKEN_RE.finditer(pattern) if m.group(3)}
        if tokens & {"frame", "start", "end", "frames"} and frames:
            for frame in frames:
                values = {**base, "frame": frame, "start": frame, "end": frame, "frames": frame}
                path = _replace(pattern, values)
                if path not in seen:
                    seen.add(path)
                    out.append((path, frame))
        else:
            path = _replace(pattern, base)
            if path not in seen:
                seen.add(path)
                out.append((path, None))
    return out


def _local_files(path: str, frame: int | None, *, skip: set[str]) -> Iterable[OutputFile]:
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_NAMES)
            for name in sorted(files):
                full = os.path.join(root, name)
                if full in skip:
                    continue
                try:
                    fst = os.stat(full)
                except OSError:
                    continue
                yield OutputFile(path=full, size=fst.st_size, mtime=fst.st_mtime, frame=frame)
    elif stat.S_ISREG(st.st_mode):
        yield OutputFile(path=path, size=st.st_size, mtime=st.st_mtime, frame=frame)


def _storage_files(storage: Any, path: str, frame: int | None) -> Iterable[OutputFile]:
    """Files at ``path`` on a storage: through its optional ``list_files`` (path ->
    [(path, size, mtime)]) when it has one, else the one file at ``path`` if it is a
    file (size and mtime from the opened file)."""
    lister = getattr(storage, "list_files", None)
    if lister is not None:
        for remote, size, mtime in lister(path):
            yield OutputFile(path=remote, size=size, mtime=mtime, frame=frame, storage=True)
        return
    if not storage.exists(path):
        return
    try:
        with storage.open_read(path) as f:
            st = f.stat() if hasattr(f, "stat") else os.fstat(f.fileno())
    except (OSError, TransferError):
        return  # a folder: this storage cannot list one (name the files in outputs)
    if stat.S_ISDIR(getattr(st, "st_mode", 0) or 0):
        return
    yield OutputFile(
        path=path, size=st.st_size or 0, mtime=st.st_mtime or 0.0, frame=frame, storage=True
    )


def list_outputs(
    backend: FarmPlugin, job_id: str, *, journal: Journal | None = None
) -> list[OutputFile]:
    """The files job ``job_id`` of ``backend``'s target wrote (see the module doc).

    Raises :class:`~farm_adapters.errors.JobNotFoundError` when this machine's journal
    has no record of the job on that target."""
    from .journal import Journal

    entry = (journal or Journal()).get(job_id, backend.target)
    if entry is None:
        raise JobNotFoundError(job_id, backend=backend.name)
    spec = entry.outputs
    paths = expand_patterns(
        spec.get("outputs", []), spec.get("frames", []), spec.get("folder"), entry.render_context
    )
    mapper = backend.path_mapper
    storage = backend.storage
    found: list[OutputFile] = []
    seen: set[str] = set()
    inputs = set(spec.get("files", []))
    for path, frame in paths:
        if storage is not None:
            items = list(_storage_files(storage, path, frame))
        else:
            local = mapper.to_local(path) if mapper else path
            items = list(_local_files(local, frame, skip=inputs))
        for item in items:
            if item.path not in seen:
                seen.add(item.path)
                found.append(item)
    folder = spec.get("folder")
    if folder and storage is None:
        local = mapper.to_local(folder) if mapper else folder
        skip = {mapper.to_local(f) if mapper else f for f in inputs}
        for item in _local_files(local, None, skip=skip):
            if item.path not in seen:
                seen.add(item.path)
                found.append(item)
    return found


def download_outputs(
    files: Sequence[OutputFile],
    destination: str | os.PathLike[str],
    *,
    storage: Any = None,
    progress: ProgressCallback | None = None,
    on_skip: Callable[[OutputFile], None] | None = None,
) -> DownloadReport:
    """Copy ``files`` into ``destination`` (flat, by file name; a second file of the
    same name gets its parent folder's name in front). A file whose copy there already
    has its size and mtime is skipped; each copy is written under a temporary name and
    renamed, so an interrupted download never leaves a partial file under a final name.
    Files on the target's storage are read through ``storage.open_read``."""
    from .plugin import TransferProgress

    dest = Path(destination)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TransferError(f"cannot create {dest}: {exc}") from exc
    names: dict[str, str] = {}
    total = sum(f.size for f in files)
    done_bytes = bytes_copied = 0
    copied: list[str] = []
    skipped: list[str] = []
    for index, item in enumerate(files):
        name = os.path.basename(item.path.rstrip("/\\"))
        if name in names and names[name] != item.path:
            name = f"{os.path.basename(os.path.dirname(item.path))}_{name}"
        names[name] = item.path
        target = dest / name
        try:
            st = target.stat()
            unchanged = st.st_size == item.size and int(st.st_mtime) == int(item.mtime)
        except OSError:
            unchanged = False
        if unchanged:
            skipped.append(str(target))
            done_bytes += item.size
            if on_skip is not None:
                on_skip(item)
            continue
        partial = target.with_name(f".{target.name}.part-{os.getpid()}")
        try:
            if item.storage:
                if storage is None:
                    raise TransferError(f"{item.path} is on the target's storage; none given")
                source = storage.open_read(item.path)
            else:
                source = open(item.path, "rb")  # noqa: SIM115 - closed below
            with source, open(partial, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
                    done_bytes += len(chunk)
                    if progress is not None:
                        progress(TransferProgress(done_bytes, total, index, len(files), item.path))
            os.utime(partial, (item.mtime, item.mtime))
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TransferError(f"cannot download {item.path} to {target}: {exc}") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        copied.append(str(target))
        bytes_copied += item.size
    if progress is not None:
        progress(TransferProgress(done_bytes, total, len(files), len(files), ""))
    return DownloadReport(copied, skipped, bytes_copied)
