from __future__ import annotations

import pytest

from farm_adapters.frames import MAX_FRAMES, FrameSet, chunk_frames


@pytest.mark.parametrize(
    ("spec", "frames"),
    [
        ("1-5", [1, 2, 3, 4, 5]),
        ("1-10x3", [1, 4, 7, 10]),
        ("1-100x5", list(range(1, 101, 5))),
        ("1,5,9-12", [1, 5, 9, 10, 11, 12]),
        ("-5--1", [-5, -4, -3, -2, -1]),
        ("-2-2", [-2, -1, 0, 1, 2]),
        ("7", [7]),
        (" 1 - 3 , 8 ", [1, 2, 3, 8]),
        ("1-10,5", list(range(1, 11))),  # duplicates dropped, first kept
        ("10,1-3", [10, 1, 2, 3]),  # order as written
        (3, [3]),
        ([4, 2, 4], [4, 2]),
    ],
)
def test_parses(spec: object, frames: list[int]) -> None:
    assert list(FrameSet(spec)) == frames  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("10-1", "runs backwards; write it as '1-10'"),
        ("1-10x0", "step 0"),
        ("1-10x-2", "step -2"),
        ("", "empty"),
        ("1-", "cannot read frame item '1-'"),
        ("a-b", "cannot read frame item 'a-b'"),
        ("1,,2", "cannot read frame item ''"),
        (f"1-{MAX_FRAMES + 1}", "more than"),
        ([], "empty"),
        ([1, "2"], "not an integer"),
    ],
)
def test_rejects_with_a_reason(spec: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        FrameSet(spec)  # type: ignore[arg-type]


def test_sequence_behaviour() -> None:
    fs = FrameSet("1-4")
    assert len(fs) == 4 and fs[0] == 1 and fs[-1] == 4 and list(fs[1:3]) == [2, 3]
    assert fs == FrameSet([1, 2, 3, 4]) and hash(fs) == hash(FrameSet("1-4"))
    assert str(fs) == "1-4"


def test_chunking_keeps_order_and_remainder() -> None:
    assert chunk_frames([1, 2, 3, 4, 5], 2) == [(1, 2), (3, 4), (5,)]
    assert chunk_frames([5, 1], 10) == [(5, 1)]
    with pytest.raises(ValueError):
        chunk_frames([1], 0)
