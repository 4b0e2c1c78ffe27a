"""Run a few backend calls in a fresh Python process (used by the conformance suite).

``python -m farm_adapters.testing._fresh_process FOLDER`` reads ``FOLDER/call.json``
(the backend class's module, file and name, the target, the calls) and
``FOLDER/settings.pickle`` (the validated settings and the target's storage), builds a
new instance of the backend, runs the calls in order and writes ``FOLDER/result.json``:
one ``{"value": ...}`` or ``{"error": type, "farm_error": bool, "message": ...}`` each.
The process then exits: whatever the backend left running must outlive it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pickle
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def _module(name: str, file: str | None) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        if not file:
            raise
    # A plug-in loaded from a file (a resources path, a conftest): load it again under
    # the same module name, so pickled settings find their classes.
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _plain(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def main(folder: str) -> None:
    from farm_adapters import FarmAdapterError, submit

    call = json.loads((Path(folder) / "call.json").read_text())
    module = _module(call["module"], call["file"])
    cls: Any = module
    for part in call["qualname"].split("."):
        cls = getattr(cls, part)
    settings, extras = pickle.loads((Path(folder) / "settings.pickle").read_bytes())
    backend = cls(settings, target=call["target"])
    for key, extra in extras.items():
        setattr(backend, key, extra)
    results: list[dict[str, Any]] = []
    try:
        for name, args in call["calls"]:
            try:
                if name == "submit":
                    value: Any = submit(backend, args[0], journal=False).id  # type: ignore[union-attr]
                else:
                    value = getattr(backend, name)(*args)
                results.append({"value": _plain(value)})
            except Exception as exc:  # reported to the suite, which judges it
                results.append(
                    {
                        "error": type(exc).__name__,
                        "farm_error": isinstance(exc, FarmAdapterError),
                        "message": str(exc),
                    }
                )
    finally:
        backend.close()
        (Path(folder) / "result.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
