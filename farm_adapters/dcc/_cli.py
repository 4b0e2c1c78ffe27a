"""``farm-adapters blender ...`` and ``farm-adapters katana ...``.

Defined here and added to the main command by :mod:`farm_adapters.cli`; nothing here
imports ``bpy``.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import click

__all__ = ["blender", "katana"]


def _handle_errors() -> AbstractContextManager[None]:
    from ..cli import handle_errors

    ctx = click.get_current_context()
    debug = bool(getattr(ctx.find_root().obj, "debug", False))
    return handle_errors(debug)


@click.group()
def blender() -> None:
    """The Blender add-on: install it, or build the zip Blender's installer takes."""


@blender.command("install")
@click.option(
    "--dir",
    "scripts_dir",
    type=click.Path(file_okay=False),
    help="Blender scripts folder (default: $BLENDER_USER_SCRIPTS, else the newest "
    "Blender user folder's scripts).",
)
def blender_install(scripts_dir: str | None) -> None:
    """Write the add-on into SCRIPTS/addons/farm_adapters_blender, then enable
    "farm-adapters" in Blender's Preferences > Add-ons."""
    from .blender.install import install_addon

    with _handle_errors():
        folder = install_addon(scripts_dir)
    click.echo(f"installed the Blender add-on in {folder}")
    click.echo("enable it in Preferences > Add-ons: farm-adapters (Render)")


@blender.command("zip")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Zip file to write (default: ./farm_adapters_blender.zip).",
)
def blender_zip(output: str | None) -> None:
    """Write the add-on as a zip for Preferences > Add-ons > Install from Disk."""
    from .blender.install import write_zip

    with _handle_errors():
        path = write_zip(output)
    click.echo(str(path))


@click.group()
def katana() -> None:
    """The Katana bridge: render targets as Katana render farm plug-ins."""


@katana.command("path")
def katana_path() -> None:
    """Print the folder to add to KATANA_RESOURCES."""
    from .katana import resources_path

    click.echo(resources_path())
