"""Notifications when a job ends: sinks configured in the targets file's ``[notify]``.

Three kinds of sink::

    [notify]
    desktop = true                      # notify-send, where it exists
    on = ["completed", "failed", "stopped"]   # which final states (default: all)

    [[notify.commands]]
    argv = ["/studio/bin/job-ended", "{job}", "{name}", "{state}", "{target}"]

    [[notify.webhooks]]
    url = { env = "SLACK_WEBHOOK_URL" }     # a secret reference, never the URL itself
    # ca = "/etc/ssl/studio-ca.pem"        # a private CA; TLS is always verified

A command gets an argv list (never a shell string) with ``{job}``, ``{name}``,
``{state}``, ``{target}`` substituted. A webhook gets a JSON POST whose ``text`` is
Slack-compatible; it must be ``https://`` except on the loopback interface.

:func:`notify_job_end` fires once per job: the journal records which observer sent
it (the local supervisor, ``submit --wait``, ``farm-adapters wait``, the monitor), so
two observers never notify twice.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigurationError
from .models import Job, JobState

if TYPE_CHECKING:
    from .journal import Journal

__all__ = [
    "CommandSink",
    "NotifyConfig",
    "WebhookSink",
    "notify_job_end",
    "parse_notify",
    "send",
]

_STRICT = ConfigDict(extra="forbid")
FinalState = Literal["completed", "failed", "stopped"]
#: Seconds a command sink may run, and a webhook may take, before it is given up.
SINK_TIMEOUT = 30.0


class CommandSink(BaseModel):
    """Run a program: ``argv`` with ``{job}``, ``{name}``, ``{state}``, ``{target}``."""

    model_config = _STRICT

    argv: list[str] = Field(min_length=1)


class WebhookSink(BaseModel):
    """POST JSON (``text`` plus the job's fields) to a URL given as a secret reference."""

    model_config = _STRICT

    url: dict[str, str] = Field(description='a secret reference: { env = "VAR" }')
    ca: str | None = Field(default=None, description="CA bundle for a private CA")
    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url", mode="before")
    @classmethod
    def _reference(cls, value: Any) -> Any:
        from .config import is_secret_reference

        if not is_secret_reference(value):
            raise ValueError(
                'a webhook URL is a secret: write url = { env = "VAR" } (or a keyring '
                "reference), not the URL itself"
            )
        return value


def _all_final() -> list[FinalState]:
    return ["completed", "failed", "stopped"]


class NotifyConfig(BaseModel):
    """The ``[notify]`` table."""

    model_config = _STRICT

    on: list[FinalState] = Field(default_factory=lambda: _all_final())
    desktop: bool = False
    commands: list[CommandSink] = Field(default_factory=list)
    webhooks: list[WebhookSink] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.desktop or self.commands or self.webhooks)


def parse_notify(raw: Any, where: str = "notify") -> NotifyConfig:
    """Validate a ``[notify]`` table; ConfigurationError naming each bad key."""
    from .models import validation_problems

    if isinstance(raw, NotifyConfig):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{where}: [notify] must be a table")
    try:
        return NotifyConfig.model_validate(dict(raw))
    except ValidationError as exc:
        lines = "; ".join(f"{f}: {m}" for f, m in validation_problems(exc, "notify"))
        raise ConfigurationError(f"{where}: {lines}") from None


def _text(job: Job, target: str) -> str:
    text = f"farm-adapters: job {job.name or job.id} ({job.id}) on {target} {job.state.value}"
    return text + (f": {job.message}" if job.message else "")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _post(sink: WebhookSink, job: Job, target: str) -> None:
    import httpx

    from .config import resolve_secret

    url = resolve_secret(sink.url, where="[notify] webhook url")
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname or "")):
        # The URL is a secret: its text is never shown, only what is wrong with it.
        raise ConfigurationError(
            "[notify] webhook url: must start with https:// (plain http is allowed only "
            "on the loopback interface)"
        )
    body = {
        "text": _text(job, target),
        "job": job.id,
        "name": job.name,
        "state": job.state.value,
        "target": target,
        "message": job.message,
    }
    verify: bool | str = sink.ca if sink.ca else True
    try:
        response = httpx.post(url, json=body, timeout=sink.timeout, verify=verify)
    except httpx.HTTPError as exc:
        from .errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"[notify] webhook to {parts.hostname}: {type(exc).__name__}: {exc}"
        ) from exc
    if response.status_code >= 300:
        from .errors import APIError

        raise APIError(
            f"[notify] webhook to {parts.hostname} answered {response.status_code}",
            status=response.status_code,
            body=response.text[:200],
        )


def send(config: NotifyConfig, job: Job, target: str) -> list[str]:
    """Fire every sink for ``job`` now; the problems, one line each (never raises for
    a sink that fails: the job has ended either way)."""
    from .errors import FarmAdapterError

    values = {"job": job.id, "name": job.name, "state": job.state.value, "target": target}
    problems: list[str] = []
    for sink in config.commands:
        argv = [arg.format_map(_Values(values)) for arg in sink.argv]
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=SINK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            problems.append(f"[notify] command {argv[0]!r}: {exc}")
            continue
        if result.returncode != 0:
            err = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            problems.append(
                f"[notify] command {argv[0]!r} exited with code {result.returncode} {err[0]}"
            )
    for hook in config.webhooks:
        try:
            _post(hook, job, target)
        except FarmAdapterError as exc:
            problems.append(str(exc))
    if config.desktop:
        program = shutil.which("notify-send")
        if program is not None:
            urgency = "critical" if job.state is JobState.FAILED else "normal"
            try:
                subprocess.run(
                    [program, "-u", urgency, "farm-adapters", _text(job, target)],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=SINK_TIMEOUT,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                problems.append(f"[notify] notify-send: {exc}")
    return problems


class _Values(dict[str, str]):
    """Leaves unknown ``{tokens}`` as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def notify_job_end(
    config: NotifyConfig | Mapping[str, Any] | None,
    job: Job,
    target: str,
    *,
    journal: Journal | None = None,
    wanted: bool | None = None,
) -> tuple[bool, list[str]]:
    """Notify the end of ``job`` once: (sent by this call, problems).

    Nothing is sent while the job is not final, when ``config`` has no sink, when
    ``wanted`` is False (``--no-notify``) or the state is not in ``on``, or when
    another observer already sent it (recorded in the journal)."""
    if wanted is False or not job.state.final:
        return False, []
    config = parse_notify(config) if config is not None else NotifyConfig()
    if config.empty and wanted:  # --notify with nothing configured: the desktop
        config = NotifyConfig(desktop=True)
    if config.empty or job.state.value not in config.on:
        return False, []
    from .journal import Journal

    if not (journal or Journal()).claim_notification(job.id, target, job.state.value):
        return False, []
    return True, send(config, job, target)


def spec_json(config: NotifyConfig, target: str) -> str:
    """What a backend that observes its own jobs (``local``) keeps to notify later."""
    return json.dumps({"target": target, "config": config.model_dump(mode="json")})
