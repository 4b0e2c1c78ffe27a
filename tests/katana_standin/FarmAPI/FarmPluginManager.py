"""Stand-in for Katana's FarmAPI.FarmPluginManager (tests only)."""

import importlib.util
import os
import uuid
from pathlib import Path

from . import BaseFarmPlugin


class JobRequest:
    """What Katana hands to submitJob() after the temporary files and environment."""

    def __init__(self, renderContextName, commands, name="", environment=None):
        self.renderContextName = renderContextName
        self.commands = commands
        self.name = name
        self.environment = dict(environment or {})


def NewRenderContextName():
    """Katana allocates a UUID v4 per render."""
    return str(uuid.uuid4())


def LoadPlugins():
    """{name: class} of every FarmPlugin on KATANA_RESOURCES, as Katana finds them."""
    found = {}
    for directory in os.environ.get("KATANA_RESOURCES", "").split(os.pathsep):
        if not directory:
            continue
        folder = Path(directory) / "Plugins"
        for path in sorted(folder.glob("*.py")):
            spec = importlib.util.spec_from_file_location(f"katana_plugin_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            for kind, _version, name, cls in getattr(module, "PluginRegistry", []):
                if kind == "FarmPlugin" and issubclass(cls, BaseFarmPlugin):
                    found[name] = cls
    return found
