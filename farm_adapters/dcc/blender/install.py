"""Installing the add-on into a Blender: a folder in a scripts directory, or a zip.

The add-on Blender sees is a small package, ``farm_adapters_blender``, that imports
:mod:`farm_adapters.dcc.blender.addon`. farm-adapters itself must be importable from
Blender's Python: installed into it (``blender --background --python-expr "import
pip; ..."`` or ``<blender python> -m pip install farm-adapters``), or found in the
folder this command was run from, which the package remembers and appends to
``sys.path`` (it works when Blender's Python has the same version, 3.11 for Blender
4.2 to 5.0).
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

from ...errors import ConfigurationError
from . import ADDON_MODULE

__all__ = ["addon_source", "default_scripts_dir", "install_addon", "write_zip"]

_TEMPLATE = '''"""farm-adapters: send renders to a render farm (Properties > Render > Render Farm).

Written by `farm-adapters blender install` / `farm-adapters blender zip`.
"""

import sys

bl_info = {{
    "name": "farm-adapters",
    "author": "farm-adapters developers",
    "version": {version},
    "blender": (4, 2, 0),
    "location": "Properties > Render > Render Farm",
    "description": "Send renders to a render farm target of farm-adapters",
    "category": "Render",
}}

# Where farm-adapters was installed when this add-on was written; used only when
# Blender's own Python cannot import it.
FARM_ADAPTERS_PATH = {site!r}


def _addon():
    try:
        from farm_adapters.dcc.blender import addon
    except ImportError:
        if FARM_ADAPTERS_PATH and FARM_ADAPTERS_PATH not in sys.path:
            sys.path.append(FARM_ADAPTERS_PATH)
        try:
            from farm_adapters.dcc.blender import addon
        except ImportError as exc:
            raise ImportError(
                "farm-adapters is not importable from Blender's Python (" + str(exc) + "); "
                "install it there: " + sys.executable + " -m pip install farm-adapters"
            ) from exc
    return addon


def register():
    _addon().register(__name__)


def unregister():
    _addon().unregister()
'''


def _site() -> str:
    import farm_adapters

    return str(Path(farm_adapters.__file__).resolve().parent.parent)


def addon_source() -> str:
    """The text of ``farm_adapters_blender/__init__.py``."""
    from ... import __version__

    version = tuple(int(p) for p in __version__.split(".")[:3] if p.isdigit())
    return _TEMPLATE.format(version=version, site=_site())


def default_scripts_dir() -> Path:
    """Blender's user scripts folder: ``$BLENDER_USER_SCRIPTS``, else the newest
    version folder of Blender's user configuration. Raises ConfigurationError when
    there is none."""
    env = os.environ.get("BLENDER_USER_SCRIPTS")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support" / "Blender"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", home)) / "Blender Foundation" / "Blender"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "blender"

    def version_key(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in p.name.split(".") if x.isdigit())

    versions = sorted(
        (p for p in base.glob("*.*") if p.is_dir() and version_key(p)), key=version_key
    )
    if not versions:
        raise ConfigurationError(
            f"no Blender user folder under {base}; start Blender once, or pass --dir "
            f"with the scripts folder (Preferences > File Paths > Script Directories)"
        )
    return versions[-1] / "scripts"


def install_addon(scripts_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write the add-on into ``<scripts_dir>/addons/farm_adapters_blender/``; return
    that folder. Raises ConfigurationError when it cannot be written."""
    root = Path(scripts_dir).expanduser() if scripts_dir else default_scripts_dir()
    folder = root / "addons" / ADDON_MODULE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text(addon_source(), encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(
            f"cannot write the add-on into {folder}: {exc.strerror}; pass --dir with a "
            f"writable scripts folder"
        ) from exc
    return folder


def write_zip(path: str | os.PathLike[str] | None = None) -> Path:
    """Write the zip Blender's add-on installer takes (Preferences > Add-ons >
    Install from Disk); return its path."""
    target = Path(path) if path else Path.cwd() / f"{ADDON_MODULE}.zip"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{ADDON_MODULE}/__init__.py", addon_source())
    except OSError as exc:
        raise ConfigurationError(f"cannot write {target}: {exc.strerror}") from exc
    return target
