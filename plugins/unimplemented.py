"""Base for built-in backends that are listed but not implemented yet."""

from __future__ import annotations

from collections.abc import Sequence

from farm_adapters import (
    BackendUnavailableError,
    CheckResult,
    FarmPlugin,
    Job,
    JobRequest,
    JobState,
)
from farm_adapters.plugin import ProgressCallback


class UnimplementedPlugin(FarmPlugin):
    """Every operation raises BackendUnavailableError with the availability reason."""

    def _refuse(self) -> BackendUnavailableError:
        return BackendUnavailableError(f"backend {self.name!r}: {self.availability().reason}")

    def create_temporary_folder(self, render_context: str) -> str:
        raise self._refuse()

    def copy_render_files(
        self, paths: Sequence[str], folder: str, progress: ProgressCallback | None = None
    ) -> list[str]:
        raise self._refuse()

    def submit_job(self, request: JobRequest) -> str:
        raise self._refuse()

    def get_job(self, job_id: str) -> Job:
        raise self._refuse()

    def get_jobs(self, states: Sequence[JobState] | None = None) -> list[Job]:
        raise self._refuse()

    def check(self) -> list[CheckResult]:
        return [CheckResult(name="implemented", ok=False, detail=self.availability().reason)]
