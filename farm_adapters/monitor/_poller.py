"""The monitor's one poller: every target is asked once per interval, however many
browser tabs are open; pages and the API read its last snapshot.

Each round lists this machine's journal rows exactly as ``farm-adapters jobs`` does
(:func:`farm_adapters.listing.journal_rows`: all targets at once, a dead one marked
unreachable after :data:`~farm_adapters.listing.PROBE_DEADLINE`), then reads the
details (tasks, outputs, the log from the last offset read) of the jobs whose page is
open, and notifies the end of a job it saw running (once: the journal records who sent
it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import FarmAdapterError

__all__ = ["JobDetail", "Poller", "Snapshot", "TargetStatus"]

#: A job page not asked about for this long is no longer followed.
WATCH_EXPIRY = 30.0
#: The log text kept per followed job (older pieces are dropped; the page says so).
LOG_KEEP = 1 << 20
#: Log pieces read per job per round: a huge log catches up over a few rounds.
LOG_READS = 8


@dataclass(frozen=True)
class TargetStatus:
    """One configured target as the last round saw it (never its settings: they may
    hold secrets)."""

    name: str
    backend: str
    description: str
    default: bool
    reachable: bool
    mark: str
    problem: str | None
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class Snapshot:
    """What one round saw; replaced whole, never changed, so a reader needs no lock."""

    generation: int
    taken_at: float
    rows: tuple[dict[str, Any], ...] = ()
    problems: tuple[str, ...] = ()
    targets: tuple[TargetStatus, ...] = ()


@dataclass
class JobDetail:
    """A followed job: its state, tasks, outputs and log so far."""

    target: str
    job_id: str
    asked_at: float
    generation: int = 0
    job: Any = None
    tasks: list[dict[str, Any]] | None = None
    outputs: list[Any] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    capabilities: tuple[str, ...] = ()
    #: (offset, text) pieces of the render log, in order; ``log_next`` is where the
    #: next read starts.
    log: list[tuple[int, str]] = field(default_factory=list)
    log_next: int = 0
    log_complete: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def log_since(self, offset: int) -> tuple[str, int, bool]:
        """The log text from ``offset`` (a piece boundary a previous answer gave),
        the offset to ask from next, and whether older text was dropped."""
        with self.lock:
            pieces, next_offset = self.log, self.log_next
        if offset >= next_offset:
            return "", offset, False
        dropped = bool(pieces) and offset < pieces[0][0]
        return "".join(t for o, t in pieces if o >= offset), next_offset, dropped


class Poller:
    """Polls the journal's targets every ``interval`` seconds in a daemon thread.

    ``obj`` is a :class:`~farm_adapters.cli._common.Context`; backends it builds are
    kept and reused. ``notify`` turns the notification observer on."""

    def __init__(
        self,
        obj: Any,
        *,
        interval: float = 2.0,
        limit: int = 1000,
        notify: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.obj = obj
        self.interval = interval
        self.limit = limit
        self.notify = notify
        self.clock = clock
        self.rounds = 0
        self._snapshot = Snapshot(generation=0, taken_at=0.0)
        self._details: dict[tuple[str, str], JobDetail] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_states: dict[tuple[str, str], str] = {}
        self._backends: dict[str, Any] = {}
        self.notified: list[tuple[str, str, str]] = []

    # -- reading ---------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The last round's snapshot (generation 0 before the first round)."""
        return self._snapshot

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Wait for the first round."""
        return self._ready.wait(timeout)

    def follow(self, target: str, job_id: str) -> JobDetail:
        """The followed job (followed from now on: the next round reads it)."""
        key = (target, job_id)
        with self._lock:
            detail = self._details.get(key)
            if detail is None:
                detail = self._details[key] = JobDetail(target, job_id, self.clock())
            detail.asked_at = self.clock()
            return detail

    def backend(self, target: str) -> Any:
        """The backend of ``target``, built once (FarmAdapterError if it cannot be)."""
        with self._lock:
            backend = self._backends.get(target)
        if backend is None:
            backend = self.obj.backend(target)
            with self._lock:
                backend = self._backends.setdefault(target, backend)
        return backend

    # -- the loop --------------------------------------------------------------------

    def start(self) -> Poller:
        """Start the polling thread (the first round begins at once)."""
        self._thread = threading.Thread(target=self._run, name="monitor-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            try:
                self.poll()
            except Exception:  # one bad round must not end the monitor
                import logging

                logging.getLogger(__name__).exception("monitor poll failed")
            finally:
                self._ready.set()
            self._stop.wait(max(0.0, self.interval - (self.clock() - started)))

    def poll(self) -> Snapshot:
        """One round: every target once, then the followed jobs; returns the new
        snapshot."""
        from ..listing import UNREACHABLE, journal_rows

        names, config_problem = self._target_names()
        reached: dict[str, tuple[str, str | None]] = {}
        rows, problems = journal_rows(
            self.obj, (), None, None, None, self.limit, also=names, reached=reached
        )
        if config_problem:
            problems.insert(0, config_problem)
        targets = self._statuses(names, reached)
        self._observe(rows)
        down = {t for t, (mark, why) in reached.items() if why is not None and mark == UNREACHABLE}
        generation = self._snapshot.generation + 1
        self._poll_details(generation, down)
        shown = tuple({k: v for k, v in r.items() if k != "job"} for r in rows)
        self._snapshot = Snapshot(
            generation=generation,
            taken_at=time.time(),
            rows=shown,
            problems=tuple(problems),
            targets=targets,
        )
        self.rounds += 1
        return self._snapshot

    def _target_names(self) -> tuple[list[str], str | None]:
        try:
            return [t.name for t in self.obj.targets], None
        except FarmAdapterError as exc:
            return [], f"targets file: {exc}"

    def _statuses(
        self, names: list[str], reached: dict[str, tuple[str, str | None]]
    ) -> tuple[TargetStatus, ...]:
        out = []
        try:
            config = self.obj.targets
            configured = {t.name: t for t in config}
            default = config.default_target
        except FarmAdapterError:
            configured, default = {}, None
        for name in [*names, *(n for n in reached if n not in names)]:
            target = configured.get(name)
            mark, problem = reached.get(name, ("", None))
            caps: tuple[str, ...] = ()
            if target is not None:
                try:
                    info = self.obj.manager.get_backend_class(target.backend)
                    caps = tuple(sorted(str(c) for c in info.capabilities))
                except Exception:  # a broken plug-in: its problem is already shown
                    caps = ()
            out.append(
                TargetStatus(
                    name=name,
                    backend=target.backend if target is not None else "?",
                    description=target.description if target is not None else "",
                    default=name == default,
                    reachable=problem is None,
                    mark=mark if problem is not None else "",
                    problem=problem,
                    capabilities=caps,
                )
            )
        return tuple(out)

    # -- notifications ---------------------------------------------------------------

    def _observe(self, rows: list[dict[str, Any]]) -> None:
        """Notify the end of each job seen active in an earlier round and final now."""
        for row in rows:
            job = row.get("job")
            if job is None:
                continue
            key = (row["target"], row["id"])
            before = self._last_states.get(key)
            self._last_states[key] = job.state.value
            if self.notify and before is not None and job.state.final:
                from ..models import JobState

                if not JobState(before).final:
                    self._notify(row["target"], job)

    def _notify(self, target: str, job: Any) -> None:
        def send() -> None:
            from ..submit import notify_end

            try:
                backend = self.backend(target)
            except FarmAdapterError:
                return
            if backend.notify is not None and notify_end(backend, job):
                self.notified.append((target, job.id, job.state.value))

        # A sink may take seconds (a webhook, a command): never in the polling round.
        threading.Thread(target=send, name="monitor-notify", daemon=True).start()

    # -- followed jobs ---------------------------------------------------------------

    def _poll_details(self, generation: int, down: set[str]) -> None:
        now = self.clock()
        with self._lock:
            for key in [k for k, d in self._details.items() if now - d.asked_at > WATCH_EXPIRY]:
                del self._details[key]
            followed = list(self._details.values())
        for detail in followed:
            if detail.target in down:
                detail.problems = [f"target {detail.target} is unreachable"]
                continue
            self._read_detail(detail)
            detail.generation = generation

    def _read_detail(self, detail: JobDetail) -> None:
        from ..cli._common import describe_bug

        problems: list[str] = []

        def attempt(what: str, call: Callable[[], Any]) -> Any:
            try:
                return call()
            except FarmAdapterError as exc:
                problems.append(f"{what}: {exc}")
            except Exception as exc:  # a plug-in's bug: shown, the page goes on
                problems.append(f"{what}: {describe_bug(exc, self.obj._manager)}")
            return None

        backend = attempt("target", lambda: self.backend(detail.target))
        if backend is None:
            detail.problems = problems
            return
        detail.capabilities = tuple(sorted(str(c) for c in backend.capabilities))
        job = attempt("state", lambda: backend.get_job(detail.job_id))
        if job is not None:
            detail.job = job
            if not job.state.final:  # restarted: its log grows again
                detail.log_complete = False
        if hasattr(backend, "get_task_details"):
            tasks = attempt("tasks", lambda: list(backend.get_task_details(detail.job_id)))
            if tasks is not None:
                detail.tasks = tasks
        outputs = attempt("outputs", lambda: self._outputs(backend, detail.job_id))
        if outputs is not None:
            detail.outputs = outputs
        if "render_log" in detail.capabilities and not detail.log_complete:
            attempt("log", lambda: self._read_log(backend, detail))
        detail.problems = problems

    @staticmethod
    def _outputs(backend: Any, job_id: str) -> list[Any]:
        from ..errors import JobNotFoundError

        try:
            return list(backend.list_outputs(job_id))
        except JobNotFoundError:  # a farm's job not submitted from here: none known
            return []

    @staticmethod
    def _read_log(backend: Any, detail: JobDetail) -> None:
        offset = detail.log_next
        pieces = list(detail.log)
        complete = False
        try:
            for _ in range(LOG_READS):
                chunk = backend.get_render_log(detail.job_id, offset)
                if chunk.text:
                    pieces.append((offset, chunk.text))
                offset = chunk.next_offset
                complete = chunk.complete
                if complete or not chunk.text:
                    break
        finally:  # what was read before an error is kept
            kept = sum(len(t) for _, t in pieces)
            while len(pieces) > 1 and kept > LOG_KEEP:
                kept -= len(pieces.pop(0)[1])
            with detail.lock:
                detail.log, detail.log_next, detail.log_complete = pieces, offset, complete
