"""Translations between farm-adapters and the Omniverse Farm queue: states, priority,
the generic runner job definition, and argv <-> a TD's ``allowed_args``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from farm_adapters import InvalidRequestError, JobState

#: Every Farm task status (2.0.42, plus the two of the open-source release) mapped to
#: one JobState. ``archived`` has no state of its own: the backend reads the status
#: the task had before it was archived from its revision history.
STATE_TABLE: dict[str, JobState | None] = {
    "submitted": JobState.QUEUED,
    "waiting": JobState.QUEUED,
    "pending": JobState.QUEUED,
    "unscheduled": JobState.QUEUED,
    "starting": JobState.RUNNING,
    "running": JobState.RUNNING,
    "finished": JobState.COMPLETED,
    "errored": JobState.FAILED,
    "unschedulable": JobState.FAILED,
    "cancelling": JobState.STOPPING,
    "pausing": JobState.STOPPING,
    "cancelled": JobState.STOPPED,
    "paused": JobState.STOPPED,
    "archived": None,
}
ALL_STATUSES_2_0_42 = (
    "submitted",
    "waiting",
    "starting",
    "running",
    "errored",
    "finished",
    "paused",
    "cancelled",
    "archived",
    "cancelling",
    "pausing",
    "pending",
)
FINAL_STATUSES = frozenset({"finished", "errored", "cancelled", "archived"})
#: What a poll lists: every status a task can leave by itself (2.0.42 names only: it
#: answers 422 to others).
LIVE_STATUSES = tuple(s for s in ALL_STATUSES_2_0_42 if s not in FINAL_STATUSES)
#: Statuses whose tasks have not produced a log yet.
NO_LOG_STATUSES = frozenset({"submitted", "waiting", "pending", "unscheduled"})

RUNNER_PREFIX = "fa-runner-"
RUNNER_ARG = "script"


def map_state(status: str) -> JobState:
    """The JobState of a Farm status; unknown statuses are UNKNOWN, never guessed."""
    return STATE_TABLE.get(status) or JobState.UNKNOWN


def farm_priority(priority: int) -> int:
    """0-100 (higher first) to the Farm's 0-65535 (lower picked first; default 65535)."""
    return round((100 - priority) / 100 * 65535)


def runner_definition() -> dict[str, Any]:
    """The generic runner: ``/bin/sh -c <script>``, the script passed as one task
    argument with an empty ``arg`` and ``separator`` so it arrives as a single token.
    Its name carries a hash of its content, so a changed runner never races agents
    that still hold an older definition."""
    body: dict[str, Any] = {
        "job_type": "base",
        "command": "/bin/sh",
        "args": ["-c"],
        "allowed_args": {RUNNER_ARG: {"arg": "", "separator": ""}},
        "success_return_codes": [0],
        "log_to_stdout": True,
        "headless": True,
        "active": True,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]
    return {"name": f"{RUNNER_PREFIX}{digest}", **body}


def task_args_for_definition(definition: dict[str, Any], argv: Sequence[str]) -> dict[str, str]:
    """Map a command line onto a TD-named job definition's ``allowed_args``.

    ``argv[0]`` is the definition's command (or its base name); the definition's static
    ``args`` may be repeated after it. Each remaining token must match an allowed
    argument: ``--scene VALUE`` (separator " "), ``--start=1`` (any other separator),
    or a positional argument (numeric ``arg``), filled in order by tokens that do not
    start with ``-``. Raises
    InvalidRequestError naming the token and the arguments the definition allows.
    """
    name = definition.get("name", "?")
    command = str(definition.get("command", ""))
    if argv[0] not in (command, command.rsplit("/", 1)[-1]):
        raise InvalidRequestError(
            f"commands[0]: job definition {name!r} runs {command!r}, not {argv[0]!r}; "
            f"start the command with {command!r}",
            field="commands.0",
        )
    tokens = list(argv[1:])
    static = list(definition.get("args", []))
    if static and tokens[: len(static)] == static:
        tokens = tokens[len(static) :]
    allowed: dict[str, dict[str, Any]] = definition.get("allowed_args", {})
    positional = sorted(
        (
            (int(spec["arg"]), key)
            for key, spec in allowed.items()
            if str(spec.get("arg", "")).isdigit()
        ),
    )
    spaced = {
        spec["arg"]: key
        for key, spec in allowed.items()
        if spec.get("separator", "=") == " " and not str(spec.get("arg", "")).isdigit()
    }
    joined = {
        key: spec
        for key, spec in allowed.items()
        if spec.get("separator", "=") != " " and not str(spec.get("arg", "")).isdigit()
    }
    result: dict[str, str] = {}
    free = [key for _, key in positional]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in spaced and i + 1 < len(tokens):
            result[spaced[token]] = tokens[i + 1]
            i += 2
            continue
        for key, spec in joined.items():
            prefix = f"{spec.get('arg', '')}{spec.get('separator', '=')}"
            if prefix and token.startswith(prefix) and key not in result:
                result[key] = token[len(prefix) :]
                break
        else:
            if free and not token.startswith("-"):  # an unknown option never fills a slot
                result[free.pop(0)] = token
            else:
                options = ", ".join(
                    f"{spec.get('arg', '')}{spec.get('separator', '=')}<{key}>"
                    if str(spec.get("arg", ""))
                    else f"<{key}>"
                    for key, spec in allowed.items()
                )
                raise InvalidRequestError(
                    f"commands[0]: {token!r} is not an argument job definition {name!r} "
                    f"allows (it allows: {options or 'none'})",
                    field="commands.0",
                )
        i += 1
    return result
