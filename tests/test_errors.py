from __future__ import annotations

import inspect

import farm_adapters
from farm_adapters import errors


def _error_classes() -> list[type[BaseException]]:
    return [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, BaseException) and c.__module__ == errors.__name__
    ]


def test_one_tree() -> None:
    for cls in _error_classes():
        assert issubclass(cls, errors.FarmAdapterError), cls
        assert cls.__name__.endswith("Error")


def test_tree_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for cls in _error_classes():
        assert cls.__name__ in doc, f"{cls.__name__} is missing from the drawn tree"


def test_every_error_is_public() -> None:
    assert sorted(c.__name__ for c in _error_classes()) == sorted(errors.__all__)
    for name in errors.__all__:
        assert getattr(farm_adapters, name) is getattr(errors, name)


def test_submit_error_carries_transient() -> None:
    assert errors.SubmitError("x", transient=True).transient
    assert not errors.SubmitError("x").transient


def test_not_found_says_what_to_do() -> None:
    message = str(errors.JobNotFoundError("abc", backend="local"))
    assert "abc" in message and "farm-adapters jobs" in message


def test_public_api_is_pinned() -> None:
    expected = {
        "APIError",
        "AuthenticationError",
        "Availability",
        "BackendError",
        "BackendInfo",
        "BackendNotFoundError",
        "BackendUnavailableError",
        "Capability",
        "CheckResult",
        "Command",
        "ConfigurationError",
        "DryRun",
        "FarmAdapterError",
        "FarmPlugin",
        "FarmPluginManager",
        "FrameSet",
        "InstallationMetadata",
        "InvalidRequestError",
        "Job",
        "JobError",
        "JobNotFoundError",
        "JobRequest",
        "JobState",
        "LogChunk",
        "PluginConflictError",
        "PluginError",
        "PluginLoadError",
        "Requirements",
        "SecretNotFoundError",
        "SubmitError",
        "TargetNotFoundError",
        "Task",
        "TransferError",
        "TransferProgress",
        "UnsupportedOperationError",
        "WaitTimeoutError",
        "__version__",
        "derive_job_state",
        "follow_log",
        "get_plugin_manager",
        "hookimpl",
        "parse_request",
        "requires",
        "submit",
        "wait",
    }
    assert set(farm_adapters.__all__) == expected
    for name in expected:
        assert hasattr(farm_adapters, name)
