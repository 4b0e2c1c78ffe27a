"""The monitor's web application (Starlette): pages, the JSON the page's script
polls, thumbnails, and the actions, behind one guard.

The guard refuses (403) every request without the access token: pages, API, static
files and actions alike. The token comes once in the URL the command prints; the
answer sets it as an HttpOnly, SameSite=Strict cookie and redirects to the same URL
without it (so it leaves the address bar and the history). A script may send it as
``Authorization: Bearer TOKEN`` instead. State-changing requests are POSTs that must
also carry the page's CSRF value in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..errors import FarmAdapterError
from . import _render as render
from ._poller import Poller

__all__ = ["MonitorApp", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Sent with every answer: no inline script or style, nothing from elsewhere, never in
#: a frame, no referrer (the first URL carries the token).
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
STATIC = {"monitor.js": "text/javascript", "monitor.css": "text/css"}
REFUSED = (
    b"403 Forbidden: this monitor needs its access token; open the URL "
    b"`farm-adapters monitor` printed (it ends in ?token=...)\n"
)


class MonitorApp:
    """The ASGI application: the guard around the routes."""

    def __init__(
        self,
        poller: Poller,
        *,
        token: str | None = None,
        csrf: str | None = None,
        thumbnails: str | Path | None = None,
    ) -> None:
        self.poller = poller
        self.token = token or secrets.token_urlsafe(32)
        self.csrf = csrf or secrets.token_urlsafe(32)
        # One cookie per monitor (cookies ignore the port): named after the token.
        self.cookie = "farm_adapters_monitor_" + hashlib.sha256(self.token.encode()).hexdigest()[:8]
        self.thumbnails = Path(thumbnails) if thumbnails is not None else None
        self.routes = _routes(self)

    # -- the guard -------------------------------------------------------------------

    def _authorised(self, scope: Scope, query: dict[str, str]) -> tuple[bool, bool]:
        """(allowed, came in the query string)."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = []
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is just no cookie
            cookie = SimpleCookie()
        if self.cookie in cookie:
            given.append(cookie[self.cookie].value)
        if any(secrets.compare_digest(g.encode(), self.token.encode()) for g in given):
            return True, False
        if "token" in query and secrets.compare_digest(
            query["token"].encode(), self.token.encode()
        ):
            return True, True
        return False, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.routes(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets here
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        allowed, in_query = self._authorised(scope, query)
        if not allowed:
            await _plain(send, 403, REFUSED)
            return
        method = scope["method"]
        if in_query and method in ("GET", "HEAD"):
            rest = urlencode({k: v for k, v in query.items() if k != "token"})
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            cookie = (
                f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000"
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [
                        (b"location", location.encode("latin-1")),
                        (b"set-cookie", cookie.encode("latin-1")),
                        *SECURITY_HEADERS,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if method not in ("GET", "HEAD"):
            headers = {k.decode("latin-1").lower(): v for k, v in scope["headers"]}
            given = headers.get("x-csrf-token", b"")
            if method != "POST" or not secrets.compare_digest(given, self.csrf.encode()):
                await _plain(
                    send,
                    403,
                    b"403 Forbidden: actions are POSTs from the monitor's own page "
                    b"(the X-CSRF-Token header is missing or wrong); reload the page\n",
                )
                return

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message["headers"] = kept + SECURITY_HEADERS
            await send(message)

        await self.routes(scope, receive, guarded_send)

    # -- helpers the routes share ----------------------------------------------------

    def row(self, target: str, job_id: str) -> dict[str, Any] | None:
        for row in self.poller.snapshot.rows:
            if row["target"] == target and row["id"] == job_id:
                return row
        return None

    def page(self, **kwargs: Any) -> str:
        return render.page(
            csrf=self.csrf, interval=self.poller.interval, snapshot=self.poller.snapshot, **kwargs
        )


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _filters(request: Any) -> dict[str, str]:
    return {k: request.query_params.get(k, "") for k in ("target", "state", "name", "user")}


def _routes(app: MonitorApp) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    poller = app.poller

    def jobs_page(request: Request) -> Response:
        snapshot = poller.snapshot
        body = render.jobs_body(snapshot, _filters(request))
        return HTMLResponse(app.page(title="Jobs", page_name="jobs", body=body))

    def jobs_api(request: Request) -> Response:
        snapshot = poller.snapshot
        rows = render.filter_rows(snapshot.rows, _filters(request))
        return JSONResponse(
            {
                "generation": snapshot.generation,
                "updated": render.updated_text(snapshot),
                "rows": render.job_rows(rows),
                "marks": render.marks(rows),
                "problems": render.problems(snapshot.problems),
                "jobs": [r["json"] for r in rows],
            }
        )

    def targets_page(request: Request) -> Response:
        body = render.template("targets.html").substitute(
            rows=render.target_rows(poller.snapshot.targets)
        )
        return HTMLResponse(app.page(title="Targets", page_name="targets", body=body))

    def targets_api(request: Request) -> Response:
        snapshot = poller.snapshot
        return JSONResponse(
            {
                "generation": snapshot.generation,
                "updated": render.updated_text(snapshot),
                "rows": render.target_rows(snapshot.targets),
                "targets": [
                    {
                        "name": t.name,
                        "backend": t.backend,
                        "reachable": t.reachable,
                        "mark": t.mark,
                        "problem": t.problem,
                        "capabilities": list(t.capabilities),
                    }
                    for t in snapshot.targets
                ],
            }
        )

    def _job_parts(target: str, job_id: str) -> dict[str, Any]:
        detail = poller.follow(target, job_id)
        row = app.row(target, job_id)
        if detail.job is not None:
            state: str | None = detail.job.state.value
        elif row is not None and not row.get("mark"):
            state = str(row["state"])
        else:
            state = None
        return {
            "generation": detail.generation,
            "state": state,
            "summary": render.summary(detail, row),
            "actions": render.actions(detail, state),
            "tasks": render.tasks(detail),
            "outputs": render.outputs(detail),
            "problems": render.problems(detail.problems),
        }

    def job_page(request: Request) -> Response:
        target, job_id = request.path_params["target"], request.path_params["job_id"]
        parts = _job_parts(target, job_id)
        body = render.template("job.html").substitute(
            summary=parts["summary"],
            actions=parts["actions"],
            problems=parts["problems"],
            tasks=parts["tasks"],
            outputs=parts["outputs"],
        )
        html = app.page(
            title=job_id,
            page_name="job",
            body=body,
            data={"target": target, "job": job_id},
        )
        return HTMLResponse(html)

    def job_api(request: Request) -> Response:
        return JSONResponse(
            _job_parts(request.path_params["target"], request.path_params["job_id"])
        )

    def log_api(request: Request) -> Response:
        detail = poller.follow(request.path_params["target"], request.path_params["job_id"])
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            return JSONResponse({"error": "offset: a whole number of bytes, 0 or more"}, 400)
        text, next_offset, dropped = detail.log_since(offset)
        return JSONResponse(
            {
                "text": text,
                "next": next_offset,
                "dropped": dropped,
                "complete": detail.log_complete,
                "generation": detail.generation,
            }
        )

    def _image(request: Request, size: int | None) -> Response:
        from ..thumbnails import ThumbnailError, cached_thumbnail, is_image, make_thumbnail

        target, job_id = request.path_params["target"], request.path_params["job_id"]
        detail = poller.follow(target, job_id)
        try:
            index = int(request.query_params.get("n", ""))
            item = detail.outputs[index]
        except (ValueError, IndexError):
            return Response("no such output of this job\n", 404, media_type="text/plain")
        if not is_image(item.path):
            return Response("not an image\n", 404, media_type="text/plain")
        opener = None
        try:
            if item.storage:
                opener = poller.backend(target).storage.open_read
            if size is None:
                path = cached_thumbnail(
                    item.path, mtime=item.mtime, opener=opener, cache_dir=app.thumbnails
                )
            else:
                from .._paths import data_dir

                folder = app.thumbnails or data_dir() / "thumbnails"
                key = hashlib.sha256(f"{size}|{item.path}".encode()).hexdigest()[:32]
                path = make_thumbnail(
                    item.path, folder / f"{key}.png", mtime=item.mtime, opener=opener, size=size
                )
        except (ThumbnailError, FarmAdapterError) as exc:
            return Response(f"{exc}\n", 404, media_type="text/plain")
        return FileResponse(path, media_type="image/png")

    def thumb(request: Request) -> Response:
        return _image(request, None)

    def frame(request: Request) -> Response:
        return _image(request, 1280)

    async def action(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        name = request.path_params["action"]
        target, job_id = request.path_params["target"], request.path_params["job_id"]
        body = await request.body()
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, 400)
        return await run_in_threadpool(_act, name, target, job_id, data)

    def _act(name: str, target: str, job_id: str, data: dict[str, Any]) -> Response:
        if name not in render.ACTIONS:
            return JSONResponse({"error": f"no action {name!r}"}, 404)
        try:
            backend = poller.backend(target)
            if name not in {str(c) for c in backend.capabilities}:
                return JSONResponse(
                    {
                        "error": f"backend {backend.name!r} (target {target}) cannot {name} "
                        f"jobs (capability {name})"
                    },
                    409,
                )
            if name == "stop":
                backend.stop_job(job_id)
                message = "stop requested"
            elif name == "restart":
                backend.restart_job(job_id)
                message = "restarted"
            elif name == "priority":
                value = data.get("value")
                if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
                    return JSONResponse(
                        {"error": "priority: a whole number from 0 (lowest) to 100 (highest)"},
                        400,
                    )
                backend.set_priority(job_id, value)
                message = f"priority {value}"
            else:
                from ..cleanup import delete

                delete(backend, job_id)
                message = "deleted"
        except FarmAdapterError as exc:
            return JSONResponse({"error": str(exc)}, 409)
        return JSONResponse({"ok": True, "message": message})

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found\n", 404, media_type="text/plain")
        data = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
        return Response(data, media_type=STATIC[name])

    job = "{target}/{job_id:path}"
    return Starlette(
        routes=[
            Route("/", jobs_page),
            Route("/targets", targets_page),
            Route(f"/job/{job}", job_page),
            Route("/api/jobs", jobs_api),
            Route("/api/targets", targets_api),
            Route(f"/api/job/{job}", job_api),
            Route(f"/api/log/{job}", log_api),
            Route(f"/thumb/{job}", thumb),
            Route(f"/frame/{job}", frame),
            Route(f"/api/action/{{action}}/{job}", action, methods=["POST"]),
            Route("/static/{name}", static),
        ]
    )


def create_app(
    poller: Poller,
    *,
    token: str | None = None,
    csrf: str | None = None,
    thumbnails: str | Path | None = None,
) -> MonitorApp:
    """The monitor's ASGI app over ``poller`` (started by the caller)."""
    return MonitorApp(poller, token=token, csrf=csrf, thumbnails=thumbnails)
