"""Frame sets: "1-100", "1-100x5", "1,5,9-12", "-5--1".

A frame set is an ordered list of distinct integer frames written as comma-separated
items; each item is a frame (``7``), an inclusive range (``1-100``) or a range with a
step (``1-100x5``). Negative frames are allowed (``-5--1``). Duplicates are dropped,
keeping the first occurrence, so ``"1-10,5"`` is ten frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["MAX_FRAMES", "MAX_FRAME_NUMBER", "FrameSet", "chunk_frames"]

#: A sanity bound: a typo such as "1-10000000" must not eat the machine's memory. It
#: applies to a spec string and to a list of frames alike.
MAX_FRAMES = 1_000_000
#: The largest frame number (in absolute value): a signed 32-bit integer, what farms and
#: DCCs store a frame in.
MAX_FRAME_NUMBER = 2**31 - 1

_ITEM = re.compile(r"^(-?\d+)(?:-(-?\d+)(?:x(-?\d+))?)?$")


class FrameSet(Sequence[int]):
    """An immutable, ordered set of frames parsed from a spec string.

    >>> list(FrameSet("1-10x3,20"))
    [1, 4, 7, 10, 20]
    """

    __slots__ = ("_frames", "_spec")

    def __init__(self, spec: str | int | Sequence[int] | FrameSet) -> None:
        if isinstance(spec, FrameSet):
            self._frames: tuple[int, ...] = spec._frames
            self._spec: str = spec._spec
            return
        if isinstance(spec, bool):
            raise ValueError("frames must be a spec such as '1-100' or a list of integers")
        if isinstance(spec, int):
            spec = str(spec)
        if isinstance(spec, str):
            self._frames = _parse(spec)
            self._spec = ",".join(part.strip() for part in spec.split(","))
        else:
            frames: list[int] = []
            for value in spec:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"frame {value!r} is not an integer")
                _check_number(value)
                frames.append(value)
                if len(frames) > MAX_FRAMES:
                    raise ValueError(
                        f"the frame list holds more than {MAX_FRAMES:,} frames; "
                        f"split it into several jobs"
                    )
            self._frames = _dedupe(frames)
            self._spec = ",".join(str(f) for f in self._frames)
        if not self._frames:
            raise ValueError("the frame set is empty; give at least one frame, e.g. '1-10'")

    @property
    def spec(self) -> str:
        """The spec as given (whitespace removed)."""
        return self._spec

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: Any) -> Any:
        return self._frames[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._frames)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrameSet):
            return self._frames == other._frames
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._frames)

    def __str__(self) -> str:
        return self._spec

    def __repr__(self) -> str:
        return f"FrameSet({self._spec!r})"

    # pydantic v2 integration: accept a spec string, an int or a list of ints;
    # serialise back to the spec string.
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
            json_schema_input_schema=core_schema.union_schema(
                [core_schema.str_schema(), core_schema.list_schema(core_schema.int_schema())]
            ),
        )

    @classmethod
    def _validate(cls, value: Any) -> FrameSet:
        if isinstance(value, (str, int, FrameSet)) or (
            isinstance(value, (list, tuple)) and not isinstance(value, str)
        ):
            return cls(value)
        raise ValueError(
            f"frames must be a spec such as '1-100', '1-100x5' or '1,5,9-12', "
            f"not {type(value).__name__}"
        )


def _check_number(frame: int) -> None:
    if abs(frame) > MAX_FRAME_NUMBER:
        raise ValueError(
            f"frame {str(frame)[:24]} is out of range; frames go from {-MAX_FRAME_NUMBER} "
            f"to {MAX_FRAME_NUMBER}"
        )


def _dedupe(frames: Sequence[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(frames))


def _parse(spec: str) -> tuple[int, ...]:
    if not spec.strip():
        raise ValueError("the frame spec is empty; write e.g. '1-100' or '1,5,9-12'")
    frames: list[int] = []
    for raw in spec.split(","):
        item = raw.strip().replace(" ", "")
        match = _ITEM.match(item)
        if not match:
            raise ValueError(
                f"cannot read frame item {raw.strip()!r}; write a frame (7), a range (1-100) "
                f"or a range with a step (1-100x5), separated by commas"
            )
        try:
            first = int(match.group(1))
            last = int(match.group(2)) if match.group(2) is not None else first
            step = int(match.group(3)) if match.group(3) is not None else 1
        except ValueError:  # more digits than int() accepts
            raise ValueError(f"frame item {item[:40]!r} is out of range") from None
        _check_number(first)
        _check_number(last)
        if match.group(2) is None:
            frames.append(first)
        else:
            if last < first:
                raise ValueError(f"range {item!r} runs backwards; write it as '{last}-{first}'")
            if step <= 0:
                raise ValueError(f"range {item!r} has step {step}; the step must be 1 or more")
            count = (last - first) // step + 1
            if len(frames) + count > MAX_FRAMES:
                raise ValueError(
                    f"range {item!r} makes the job more than {MAX_FRAMES:,} frames; "
                    f"split it into several jobs or use a step"
                )
            frames.extend(range(first, last + 1, step))
        if len(frames) > MAX_FRAMES:
            raise ValueError(f"the frame set holds more than {MAX_FRAMES:,} frames")
    return _dedupe(frames)


def chunk_frames(frames: Sequence[int], chunk_size: int) -> list[tuple[int, ...]]:
    """Split frames, in order, into consecutive chunks of at most ``chunk_size``."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be 1 or more")
    return [tuple(frames[i : i + chunk_size]) for i in range(0, len(frames), chunk_size)]
