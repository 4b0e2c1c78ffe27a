"""The HTTP layer shared by HTTP backends: one httpx client per backend instance,
retries where they are safe, and every httpx error translated at this boundary.

- Idempotent requests are retried with exponential backoff on connection errors, 5xx,
  429 and 503 (honouring ``Retry-After``).
- A non-idempotent request (a submit) is retried only when it certainly never reached
  the server (the connection could not be opened). When it may have reached the server
  (a timeout after sending, a dropped connection, a 5xx), :class:`OutcomeUnknownError`
  tells the caller to look before trying again.
- A 429 means the request was not processed: any request, a submit included, is
  retried after ``Retry-After``; when retries run out it is a
  :class:`~farm_adapters.errors.BackendUnavailableError` (transient: try later).
- :meth:`HttpSession.json` checks an answer's shape (:func:`conforms`): a 200 whose
  JSON is ``null``, ``[]``, a string or misses a field is an ``APIError("unexpected
  answer ...")``, never a TypeError, nor read as "nothing there".
- TLS certificates are verified unless a target explicitly says otherwise.

httpx is imported when a session is created, never at module import.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import APIError, AuthenticationError, BackendUnavailableError, FarmAdapterError
from .plugin import Availability, FarmPlugin, requires

if TYPE_CHECKING:
    import httpx

    from ._keepalive import KeepAlivePool

__all__ = [
    "HttpFarmPlugin",
    "HttpSession",
    "HttpSettings",
    "MapOf",
    "OutcomeUnknownError",
    "conforms",
    "excerpt",
    "retry_after_seconds",
    "submit_each",
]

USER_AGENT = "farm-adapters/0.1"
#: Submit requests kept in flight at once: enough to hide a round trip's wait on the
#: server, few enough not to load a farm, and no more than the connections kept alive
#: (8). Measured with bench/ovfarm_submit.py: on a farm whose submit waits 10 ms,
#: 2 -> 4 -> 8 gives ~160 -> ~300 -> ~520 tasks/s; on one bound by its own CPU, the
#: same throughput for all three.
SUBMIT_CONCURRENCY = 8

T = TypeVar("T")
R = TypeVar("R")
#: Statuses worth retrying for an idempotent request.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class OutcomeUnknownError(BackendUnavailableError):
    """A non-idempotent request may or may not have been carried out by the server."""


def excerpt(text: str, limit: int = 300) -> str:
    """A short, single-line piece of a response body for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


class MapOf:
    """A shape for :func:`conforms`: a JSON object whose every value has ``shape``."""

    def __init__(self, shape: Any) -> None:
        self.shape = shape


_JSON_NAMES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (dict, list, str)):
        return _JSON_NAMES[type(value)]
    return "a value"


def conforms(value: Any, shape: Any, where: str = "the answer") -> str | None:
    """None when ``value`` has ``shape``, else what is wrong with it.

    Shapes: a type (``dict``, ``list``, ``str``, ``int``; ``float`` accepts integers);
    a tuple of shapes (any of them); ``{"key": shape, "other?": shape}`` (an object
    with those keys, ``?`` marking optional ones, other keys allowed); ``[shape]`` (a
    list of such items); :class:`MapOf` (an object whose values all have a shape).
    """
    if isinstance(shape, tuple):
        problems = [conforms(value, s, where) for s in shape]
        return None if None in problems else problems[0]
    if isinstance(shape, type):
        if shape is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif shape is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, shape)
        if ok:
            return None
        expected = _JSON_NAMES.get(shape, "a number" if shape is float else shape.__name__)
        return f"{where} is {_describe(value)}, expected {expected}"
    if isinstance(shape, MapOf):
        if not isinstance(value, dict):
            return f"{where} is {_describe(value)}, expected an object"
        for key, item in value.items():
            problem = conforms(item, shape.shape, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} is {_describe(value)}, expected a list"
        for i, item in enumerate(value):
            problem = conforms(item, shape[0], f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where} is {_describe(value)}, expected an object"
        for key, sub in shape.items():
            name, optional = (key[:-1], True) if key.endswith("?") else (key, False)
            if name not in value:
                if optional:
                    continue
                return f"{where} has no {name!r}"
            problem = conforms(value[name], sub, f"{where}.{name}")
            if problem:
                return problem
        return None
    raise TypeError(f"not a shape: {shape!r}")


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpSession:
    """A thread-safe httpx client for one farm, with retries and error mapping.

    ``name`` (the target) prefixes every error message. ``transport`` is a test seam
    (an ``httpx.MockTransport``); real tests use real servers.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        verify: bool | str = True,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.2,
        headers: Mapping[str, str] | None = None,
        transport: Any = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.verify = verify
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._transport = transport
        self._client: httpx.Client | None = None
        self._keepalive: KeepAlivePool | None = None
        self._lock = threading.Lock()
        #: Requests sent (attempts included), for benchmarks and tests.
        self.requests_sent = 0

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                self._client = httpx.Client(
                    base_url=self.base_url,
                    verify=self.verify,
                    timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
                    headers=self.headers,
                    transport=self._transport,
                    limits=httpx.Limits(max_keepalive_connections=8, max_connections=16),
                )
                from ._keepalive import KeepAlivePool, usable

                if usable(self.base_url, self._transport):
                    self._keepalive = KeepAlivePool(
                        self.base_url,
                        timeout=self.timeout,
                        connect_timeout=min(self.timeout, 10.0),
                        headers=self.headers,
                    )
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._keepalive is not None:
                self._keepalive.close()
                self._keepalive = None

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        json: Any = None,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        retry_statuses: Iterable[int] = RETRY_STATUSES,
    ) -> httpx.Response:
        """Send a request; return the response whatever its status (see
        :meth:`check`). Raises BackendUnavailableError when the farm cannot be reached
        and OutcomeUnknownError when a non-idempotent request may have been done."""
        import httpx

        client = self.client
        # A JSON request with no query: over plain keep-alive connections when the
        # farm allows it (see farm_adapters._keepalive), the same request and errors.
        lean = self._keepalive
        if lean is not None and (json is None or params or data or not lean.accepts(path)):
            lean = None
        retry_on = frozenset(retry_statuses)
        attempt = 0
        while True:
            attempt += 1
            self.requests_sent += 1
            try:
                if lean is not None:
                    response = lean.send(method, path, json, headers)
                else:
                    response = client.request(
                        method, path, json=json, params=params, headers=headers, data=data
                    )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # Never reached the server: safe to try again, whatever the request.
                if attempt <= self.retries:
                    self._sleep(attempt, None)
                    continue
                raise BackendUnavailableError(
                    f"target {self.name!r}: cannot connect to {self.base_url} "
                    f"({type(exc).__name__}: {exc}); check the url and that the farm is up"
                ) from exc
            except httpx.TransportError as exc:
                if idempotent and attempt <= self.retries:
                    self._sleep(attempt, None)
                    continue
                cls = BackendUnavailableError if idempotent else OutcomeUnknownError
                raise cls(
                    f"target {self.name!r}: {method} {path} failed "
                    f"({type(exc).__name__}: {exc or 'no answer'})"
                ) from exc
            if response.status_code == 429 and attempt <= self.retries:
                # 429: not processed (rate limited), whatever the request: try again.
                self._sleep(attempt, response)
                continue
            if response.status_code in retry_on:
                if idempotent and attempt <= self.retries:
                    self._sleep(attempt, response)
                    continue
                if not idempotent and response.status_code >= 500:
                    raise OutcomeUnknownError(
                        f"target {self.name!r}: {method} {path} answered "
                        f"{response.status_code}: {excerpt(response.text)}"
                    )
            return response

    def _sleep(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self.backoff * (2 ** (attempt - 1))
        delay = min(delay, 10.0)
        if response is not None:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            if retry_after is not None:
                delay = max(delay, min(retry_after, 30.0))
        time.sleep(delay)

    def check(self, response: httpx.Response, what: str) -> httpx.Response:
        """Raise the matching error for a non-2xx response."""
        status = response.status_code
        if status < 300:
            return response
        body = excerpt(response.text)
        if status == 429:
            raise BackendUnavailableError(
                f"target {self.name!r}: {what} was refused: the farm is busy (HTTP 429, "
                f"still after {self.retries} retries); try again later"
            )
        if status in (401, 403):
            raise AuthenticationError(
                f"target {self.name!r}: {what} was refused ({status}: {body}); check the "
                f"target's credentials"
            )
        raise APIError(
            f"target {self.name!r}: {what} failed with HTTP {status}: {body}",
            status=status,
            body=body,
        )

    def json(self, response: httpx.Response, what: str, shape: Any = None) -> Any:
        """The JSON body of a successful response; with ``shape`` (see
        :func:`conforms`), an APIError unless the body has it."""
        self.check(response, what)
        try:
            data = response.json()
        except ValueError as exc:
            raise APIError(
                f"target {self.name!r}: {what} answered with something that is not JSON: "
                f"{excerpt(response.text)}",
                status=response.status_code,
                body=excerpt(response.text),
            ) from exc
        if shape is not None:
            self.expect(data, shape, what, response)
        return data

    def expect(self, data: Any, shape: Any, what: str, response: Any = None) -> None:
        """Raise ``APIError("unexpected answer ...")`` unless ``data`` has ``shape``."""
        problem = conforms(data, shape)
        if problem is None:
            return
        import json as _json

        body = excerpt(response.text if response is not None else _json.dumps(data))
        raise APIError(
            f"target {self.name!r}: unexpected answer to {what}: {problem} ({body}); the "
            f"farm or a proxy in front of it answered something this version does not "
            f"understand",
            status=getattr(response, "status_code", None),
            body=body,
        )


class HttpSettings(BaseModel):
    """Settings every HTTP backend shares; a backend's settings model extends it."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    url: str = Field(description="the farm's base URL, http:// or https://")
    verify: bool | str = Field(default=True, description="TLS verification, or a CA bundle")
    timeout: float = Field(default=30.0, gt=0, description="seconds per request")
    retries: int = Field(default=4, ge=0, le=10, description="retries of idempotent requests")
    log_dir: str | None = Field(default=None, description="local mirror of render logs")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value.rstrip("/")


class HttpFarmPlugin(FarmPlugin):
    """Base of backends that talk to a farm over HTTP: one :class:`HttpSession` per
    instance, made on first use from the :class:`HttpSettings` fields."""

    settings_model: ClassVar[type[BaseModel]] = HttpSettings

    def __init__(self, settings: Any = None, *, target: str | None = None) -> None:
        super().__init__(settings, target=target)
        self._lock = threading.RLock()
        self._sessions: list[HttpSession] = []
        self._session: HttpSession | None = None

    @classmethod
    def availability(cls) -> Availability:
        return requires("httpx")()

    def new_session(self, base_url: str, *, retries: int | None = None) -> HttpSession:
        """Another session with this target's TLS and timeout settings (closed by
        :meth:`close`)."""
        s: HttpSettings = self.settings  # type: ignore[assignment]
        session = HttpSession(
            base_url,
            name=self.target,
            verify=s.verify,
            timeout=s.timeout,
            retries=s.retries if retries is None else retries,
        )
        with self._lock:
            self._sessions.append(session)
        return session

    @property
    def http(self) -> HttpSession:
        with self._lock:
            if self._session is None:
                self._session = self.new_session(self.settings.url)  # type: ignore[attr-defined]
            return self._session

    def log_folder(self) -> Path:
        """Where render logs are mirrored: ``log_dir``, else the user data directory."""
        from ._paths import data_dir

        s: HttpSettings = self.settings  # type: ignore[assignment]
        safe = "".join(c if c.isalnum() or c in "-." else "_" for c in self.target)
        return Path(s.log_dir) if s.log_dir else data_dir() / self.name / safe

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions, self._session = self._sessions, [], None
        for session in sessions:
            session.close()


def submit_each(
    items: Sequence[T],
    submit: Callable[[int, T], R],
    *,
    concurrency: int = SUBMIT_CONCURRENCY,
) -> tuple[list[R], tuple[int, FarmAdapterError] | None]:
    """Call ``submit(index, item)`` for every item, started in order, at most
    ``concurrency`` at once (each call must be safe to run beside the others, and do
    its own exactly-once handling: look up before a retry).

    The first item goes alone, so a request the farm refuses (bad settings, a wrong
    image) fails once, not ``concurrency`` times. After a failure no further item
    starts and those in flight finish. Returns the results in item order (as many as
    succeeded from the start, when one failed) and ``(index, error)`` of the first
    item that failed (lowest index), or None. Errors that are not FarmAdapterError
    propagate.
    """
    results: dict[int, R] = {}
    failure: tuple[int, FarmAdapterError] | None = None
    if not items:
        return [], None
    try:
        results[0] = submit(0, items[0])
    except FarmAdapterError as exc:
        return [], (0, exc)
    if len(items) > 1:
        # A few workers take the next index in turn (no future per item: with a
        # thousand chunks, the pool's bookkeeping cost as much as a request).
        lock = threading.Lock()
        following = iter(range(1, len(items)))
        errors: list[BaseException] = []

        def work() -> None:
            nonlocal failure
            while True:
                with lock:
                    if failure is not None or errors:
                        return
                    index = next(following, None)
                if index is None:
                    return
                try:
                    result = submit(index, items[index])
                except FarmAdapterError as exc:
                    with lock:
                        if failure is None or index < failure[0]:
                            failure = (index, exc)
                    continue
                except BaseException as exc:  # not ours: re-raised in the caller
                    with lock:
                        errors.append(exc)
                    return
                results[index] = result

        workers = [
            threading.Thread(target=work, name=f"submit-{n}", daemon=True)
            for n in range(min(concurrency, len(items) - 1))
        ]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        except BaseException as exc:  # interrupted: start nothing more, let those in flight end
            with lock:
                errors.append(exc)
            for worker in workers:
                worker.join()
            raise
        if errors:
            raise errors[0]
    ordered = []
    for index in range(len(items)):
        if index not in results:
            break
        ordered.append(results[index])
    return ordered, failure
