from __future__ import annotations

import itertools

import pytest

from farm_adapters import (
    Command,
    InvalidRequestError,
    Job,
    JobRequest,
    JobState,
    derive_job_state,
    parse_request,
)

Q, R, S_, C, F, S, U = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.STOPPING,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.STOPPED,
    JobState.UNKNOWN,
)


def test_final_states() -> None:
    assert {s for s in JobState if s.final} == {C, F, S}


@pytest.mark.parametrize(
    ("tasks", "job"),
    [
        ([], U),
        ([C, C], C),
        ([C, F], F),
        ([F, S], F),
        ([C, S], S),
        ([S], S),
        ([Q, Q], Q),
        ([Q, R], R),
        ([C, Q], R),  # under way
        ([F, Q], R),  # a failure does not end a job that still has work
        ([R, S_], S_),
        ([S, Q], R),
        ([U, Q], U),
        ([U, C], U),
        ([U, R], R),
        ([S_, U], S_),
    ],
)
def test_job_state_rule(tasks: list[JobState], job: JobState) -> None:
    assert derive_job_state(tasks) is job
    counts: dict[JobState, int] = {}
    for t in tasks:
        counts[t] = counts.get(t, 0) + 1
    assert derive_job_state(counts) is job


def test_job_state_rule_is_total_and_final_only_when_all_final() -> None:
    for combo in itertools.combinations_with_replacement(list(JobState), 3):
        state = derive_job_state(combo)
        assert state.final == all(s.final for s in combo)


def test_job_from_task_states_counts_and_progress() -> None:
    job = Job.from_task_states({C: 3, R: 1, Q: 0}, id="j1")
    assert job.state is R and job.total_tasks == 4 and job.progress == 0.75
    assert job.task_counts == {C: 3, R: 1}


def _problems(data: dict[str, object]) -> dict[str, str]:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(data)
    return dict(info.value.problems)


def test_invalid_requests_name_the_field() -> None:
    assert "frames" in _problems({"commands": [["x"]], "frames": "10-1"})
    assert "runs backwards" in _problems({"commands": [["x"]], "frames": "10-1"})["frames"]
    assert "chunk_size" in _problems({"commands": [["x"]], "frames": "1-2", "chunk_size": 0})
    bare = _problems({"commands": ["mitsuba scene.xml"]})
    assert "commands.0" in bare
    assert "not a string" in bare["commands.0"] and "shell" in bare["commands.0"]
    unknown = _problems({"commands": [["x"]], "frame": "1-2"})
    assert unknown == {"frame": "unknown key; check its spelling against the documented fields"}
    assert "requirements.gpu" in _problems({"commands": [["x"]], "requirements": {"gpu": 1}})
    assert "commands" in _problems({"commands": []})
    assert "commands" in _problems({})


def test_error_message_lists_every_problem() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request({"commands": [["x"]], "frames": "10-1", "chunk_size": 0})
    assert "frames:" in str(info.value) and "chunk_size:" in str(info.value)
    assert info.value.field == "frames"


def test_frame_token_without_frames_is_refused() -> None:
    problems = _problems({"commands": [["render", "-f", "{frame}"]]})
    assert any("no frames" in m for m in problems.values())


def test_commands_accept_lists_and_numbers() -> None:
    request = parse_request({"commands": [["sleep", 5], {"argv": ["echo"], "cwd": "/tmp"}]})
    assert request.commands[0].argv == ["sleep", "5"]
    assert request.commands[1].cwd == "/tmp"
    assert request.name == "sleep"


def test_shell_only_when_asked() -> None:
    cmd = Command(argv=["echo $HOME | wc -c"], shell=True)
    assert cmd.resolved_argv() == ["/bin/sh", "-c", "echo $HOME | wc -c"]
    with pytest.raises(ValueError, match="exactly one string"):
        Command(argv=["echo", "x"], shell=True)


def test_tasks_substitute_tokens() -> None:
    request = parse_request(
        {
            "commands": [
                [
                    "render",
                    "-s",
                    "{start}",
                    "-e",
                    "{end}",
                    "-o",
                    "out_{frame:04d}.exr",
                    "--all={frames}",
                    "{{frame}}",
                    "{unknown}",
                    '{"json": 1}',
                ]
            ],
            "frames": "1-5",
            "chunk_size": 2,
            "folder": "/farm/tmp/ctx",
        }
    )
    tasks = request.tasks()
    assert [t.frames for t in tasks] == [(1, 2), (3, 4), (5,)]
    assert request.task_count == 3
    assert tasks[1].commands[0].argv == [
        "render",
        "-s",
        "3",
        "-e",
        "4",
        "-o",
        "out_0003.exr",
        "--all=3,4",
        "{frame}",
        "{unknown}",
        '{"json": 1}',
    ]
    assert tasks[2].label == "task 2 (frame 5)" and tasks[0].label == "task 0 (frames 1-2)"


def test_folder_and_context_tokens_and_env() -> None:
    request = parse_request(
        {
            "commands": [{"argv": ["ls", "{folder}"], "env": {"CTX": "{context}"}}],
            "render_context": "abc-123",
            "folder": "/farm/abc-123",
        }
    )
    (task,) = request.tasks()
    assert task.commands[0].argv == ["ls", "/farm/abc-123"]
    assert task.commands[0].env == {"CTX": "abc-123"}


def test_render_context_is_path_safe() -> None:
    assert "render_context" in _problems({"commands": [["x"]], "render_context": "../etc"})
    ctx = JobRequest(commands=[Command(argv=["x"])]).render_context
    assert len(ctx) == 36


def test_bad_format_spec_is_an_invalid_request() -> None:
    request = parse_request({"commands": [["x", "{frame:q}"]], "frames": "1"})
    with pytest.raises(InvalidRequestError, match="cannot format"):
        request.tasks()


def test_memory_and_priority_bounds() -> None:
    request = parse_request({"commands": [["x"]], "requirements": {"memory": "2GiB"}})
    assert int(request.requirements.memory or 0) == 2 * 2**30
    assert "priority" in _problems({"commands": [["x"]], "priority": 101})
    assert "max_retries" in _problems({"commands": [["x"]], "max_retries": -1})
