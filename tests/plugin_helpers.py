"""Source text of tiny plug-ins for the loading tests."""

from __future__ import annotations

from pathlib import Path

BACKEND_CLASS = """
from farm_adapters import CheckResult, FarmPlugin, Job, JobNotFoundError, JobState


class {cls}(FarmPlugin):
    name = "{name}"

    def create_temporary_folder(self, render_context):
        return "/tmp/" + render_context

    def copy_render_files(self, paths, folder, progress=None):
        return [folder + "/" + p.rsplit("/", 1)[-1] for p in paths]

    def submit_job(self, request):
        return "job-1"

    def get_job(self, job_id):
        if job_id != "job-1":
            raise JobNotFoundError(job_id, backend=self.name)
        return Job(id=job_id, state=JobState.COMPLETED, backend=self.name)

    def get_jobs(self, states=None):
        return [self.get_job("job-1")]

    def check(self):
        return [CheckResult(name="{name}", ok=True, detail="from {cls}")]
"""


def hook_file(name: str, cls: str = "StudioPlugin") -> str:
    return (
        "from farm_adapters import hookimpl\n"
        + BACKEND_CLASS.format(name=name, cls=cls)
        + f"\n\n@hookimpl\ndef farm_adapters_register_backends(register):\n    register({cls})\n"
    )


def registry_file(name: str, cls: str = "KatanaStylePlugin") -> str:
    return (
        BACKEND_CLASS.format(name=name, cls=cls)
        + f'\n\nPluginRegistry = [\n    ("FarmPlugin", 2.0, "{name}", {cls}),\n'
        + '    ("RenderPlugin", 1.0, "not-ours", object),\n]\n'
    )


def write_plugin(resource_dir: Path, filename: str, text: str) -> Path:
    folder = resource_dir / "Plugins"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(text)
    return path
