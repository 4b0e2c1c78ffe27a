"""Translations between farm-adapters and Slurm: states, requirements, priority, the
array script, and the parsers of ``squeue``, the jobcomp file and ``scontrol``."""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from farm_adapters import Command, InvalidRequestError, JobRequest, JobState
from farm_adapters.shell import command_line

#: Every Slurm job state (``squeue %T``, jobcomp ``JobState``, scontrol ``JobState``)
#: mapped to one JobState. Anything else is UNKNOWN, never guessed.
STATE_TABLE: dict[str, JobState] = {
    "PENDING": JobState.QUEUED,
    "CONFIGURING": JobState.QUEUED,  # nodes booting for the job; nothing runs yet
    "REQUEUED": JobState.QUEUED,
    "REQUEUE_FED": JobState.QUEUED,
    "REQUEUE_HOLD": JobState.QUEUED,
    "RESV_DEL_HOLD": JobState.QUEUED,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,  # the batch script ended; epilog still running
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,  # paused by an admin; keeps its allocation
    "STOPPED": JobState.RUNNING,  # Slurm's STOPPED is SIGSTOP: still allocated
    "COMPLETED": JobState.COMPLETED,
    "CANCELLED": JobState.STOPPED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "REVOKED": JobState.STOPPED,  # a federation sibling runs it instead
}

#: Why a final native state is not plain success, for the job's message.
STATE_REASONS = {
    "TIMEOUT": "hit its time limit (requirements.timeout)",
    "OUT_OF_MEMORY": "ran out of memory (requirements.memory)",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "missed its deadline",
    "PREEMPTED": "was preempted",
}

#: farm-adapters priority (0-100, 50 neutral) -> ``--nice``: (lowest priority of the
#: band, nice). Slurm lets only operators set a negative nice (a higher priority).
NICE_TABLE: tuple[tuple[int, int], ...] = (
    (0, 4000),
    (20, 2000),
    (40, 0),
    (61, -2000),
    (81, -4000),
)

#: Backend extras a request may set (requirements.extra).
EXTRAS = {"reservation", "exclusive", "licenses", "constraint_any"}

ENV_TASK = "SLURM_ARRAY_TASK_ID"


def map_state(native: str) -> JobState:
    """The JobState of a Slurm state (``CANCELLED by 0`` reads as ``CANCELLED``)."""
    return STATE_TABLE.get(native.split(" ")[0].rstrip("+").upper(), JobState.UNKNOWN)


def nice_for(priority: int) -> int:
    """The ``--nice`` value of a farm-adapters priority, through :data:`NICE_TABLE`."""
    nice = NICE_TABLE[0][1]
    for lowest, value in NICE_TABLE:
        if priority >= lowest:
            nice = value
    return nice


def slurm_time(seconds: float) -> str:
    """Seconds as a Slurm time limit ``D-HH:MM:SS`` (Slurm rounds up to minutes)."""
    total = math.ceil(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def requirement_options(
    request: JobRequest, *, allow_negative_nice: bool = False, partition: str | None = None
) -> list[str]:
    """The sbatch options of a request's requirements, priority and retries; raises
    InvalidRequestError naming the field for what Slurm cannot express here."""
    req = request.requirements
    unknown = sorted(set(req.extra) - EXTRAS)
    if unknown:
        raise InvalidRequestError(
            f"requirements.extra.{unknown[0]}: slurm knows {', '.join(sorted(EXTRAS))}",
            field=f"requirements.extra.{unknown[0]}",
        )
    options: list[str] = []
    if req.cpus is not None:
        if req.cpus != int(req.cpus):
            raise InvalidRequestError(
                f"requirements.cpus: Slurm allocates whole CPUs; ask for {math.ceil(req.cpus)}",
                field="requirements.cpus",
            )
        options.append(f"--cpus-per-task={int(req.cpus)}")
    if req.memory is not None:
        options.append(f"--mem={max(1, math.ceil(int(req.memory) / 2**20))}M")
    if req.gpus:
        options.append(f"--gres=gpu:{req.gpus}")
    if req.timeout is not None:
        options.append(f"--time={slurm_time(req.timeout)}")
    pool = req.pool or partition
    if pool:
        options.append(f"--partition={pool}")
    if req.labels:
        for label in req.labels:
            if not label or any(c in label for c in "&|[]*,:"):
                raise InvalidRequestError(
                    f"requirements.labels: {label!r} is not a Slurm node feature name",
                    field="requirements.labels",
                )
        joiner = "|" if req.extra.get("constraint_any") else "&"
        options.append(f"--constraint={joiner.join(req.labels)}")
    nice = nice_for(request.priority)
    if nice < 0 and not allow_negative_nice:
        raise InvalidRequestError(
            f"priority: {request.priority} asks Slurm for a higher priority (--nice={nice}), "
            f"which only Slurm operators may do; use 60 or less, or set "
            f"allow_negative_nice = true in the target if you are an operator",
            field="priority",
        )
    if nice:
        options.append(f"--nice={nice}")
    if req.extra.get("reservation"):
        options.append(f"--reservation={req.extra['reservation']}")
    if req.extra.get("licenses"):
        options.append(f"--licenses={req.extra['licenses']}")
    if req.extra.get("exclusive"):
        options.append("--exclusive")
    if request.max_retries:
        options.append("--requeue")  # a node failure requeues; exit codes retry in the script
    return options


def _line(command: Command) -> str:
    """The command's sh line; a failure returns its code from the task's function."""
    return command_line(command) + ' || return "$?"'


def array_script(
    tasks: Sequence[tuple[int, Sequence[Command]]],
    environment: dict[str, str],
    *,
    max_retries: int = 0,
) -> str:
    """The one batch script every array task runs: it picks its commands by
    ``$SLURM_ARRAY_TASK_ID`` and runs them in order (each argv ``shlex``-quoted, so
    nothing is re-interpreted by the shell), retrying a failed task ``max_retries``
    times before exiting with its exit code."""
    lines = ["#!/bin/sh", ': "${PATH:=/usr/local/bin:/usr/bin:/bin}"; export PATH']
    for key, value in environment.items():
        lines.append(f"{key}={shlex.quote(value)}; export {key}")
    lines.append("fa_task() {")
    lines.append(f'  case "${ENV_TASK}" in')
    for index, commands in tasks:
        lines.append(f"  {index})")
        lines.extend(f"    {_line(c)}" for c in commands)
        lines.append("    ;;")
    lines.append(f'  *) echo "farm-adapters: no task ${ENV_TASK} in this job" >&2; return 90 ;;')
    lines.append("  esac")
    lines.append("}")
    lines.append("fa_try=0")
    lines.append("while :; do")
    lines.append("  fa_task && exit 0")
    lines.append('  fa_rc="$?"')
    lines.append(f'  [ "$fa_try" -ge {max_retries} ] && exit "$fa_rc"')
    lines.append("  fa_try=$((fa_try + 1))")
    lines.append(f'  echo "[farm-adapters] exit code $fa_rc; retry $fa_try of {max_retries}" >&2')
    lines.append("done")
    return "\n".join(lines) + "\n"


class TaskRecord(NamedTuple):
    """What Slurm says about one array task."""

    state: str  # the native state
    exit_code: str = ""  # "code:signal"
    reason: str = ""
    start: str = ""
    end: str = ""


def parse_squeue(text: str) -> dict[tuple[str, int], TaskRecord]:
    """Lines of ``squeue -r -h -o '%F|%K|%T|%r'``: (array job id, task index) -> record."""
    found: dict[tuple[str, int], TaskRecord] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        found[(parts[0], int(parts[1]))] = TaskRecord(
            state=parts[2], reason=parts[3] if len(parts) > 3 else ""
        )
    return found


def parse_fields(line: str) -> dict[str, str]:
    """``Key=Value Key=Value`` (jobcomp, ``scontrol -o``) into a dict; values have no
    spaces except the last field's, which is kept whole."""
    fields: dict[str, str] = {}
    key = None
    for word in line.strip().split(" "):
        name, sep, value = word.partition("=")
        if sep and name and name[0].isalpha():
            key = name
            fields[key] = value
        elif key is not None:
            fields[key] += " " + word
    return fields


def task_from_fields(fields: dict[str, str]) -> tuple[tuple[str, int], TaskRecord] | None:
    array, index = fields.get("ArrayJobId", ""), fields.get("ArrayTaskId", "")
    if not array.isdigit() or not index.isdigit():
        return None
    return (array, int(index)), TaskRecord(
        state=fields.get("JobState", ""),
        exit_code=fields.get("ExitCode", ""),
        reason=fields.get("Reason", ""),
        start=fields.get("StartTime", ""),
        end=fields.get("EndTime", ""),
    )


def parse_records(lines: Iterable[str]) -> dict[tuple[str, int], TaskRecord]:
    """jobcomp or ``scontrol -o show job`` lines; a later line wins (a rerun task)."""
    found: dict[tuple[str, int], TaskRecord] = {}
    for line in lines:
        parsed = task_from_fields(parse_fields(line))
        if parsed is not None:
            found[parsed[0]] = parsed[1]
    return found


def exit_text(record: TaskRecord) -> str:
    """'exit code 3', 'killed by signal 9' or the native state's reason."""
    native = record.state.split(" ")[0]
    if native in STATE_REASONS:
        return STATE_REASONS[native]
    code, _, signal = record.exit_code.partition(":")
    if signal and signal not in ("0", ""):
        return f"killed by signal {signal}"
    if code and code != "0":
        return f"exit code {code}"
    return native.lower() or "failed"


def as_dict(record: TaskRecord) -> dict[str, Any]:
    return record._asdict()
