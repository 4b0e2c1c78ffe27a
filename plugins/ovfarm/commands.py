"""``farm-adapters jobdefs``: manage Omniverse Farm job definitions from the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from farm_adapters.cli import Context, handle_errors, pass_ctx
from farm_adapters.errors import ConfigurationError, InvalidRequestError

from .plugin import OmniverseFarmPlugin


def _ovfarm(obj: Context, target: str | None) -> OmniverseFarmPlugin:
    backend = obj.backend(target)
    if not isinstance(backend, OmniverseFarmPlugin):
        raise ConfigurationError(
            f"target {backend.target!r} uses backend {backend.name!r}; jobdefs needs an "
            f"ovfarm target (--target NAME)"
        )
    return backend


def read_definitions(path: Path) -> list[dict[str, Any]]:
    """Job definitions from a Farm ``.kit`` TOML file (one ``[job.<name>]`` table each;
    the table key is the name) or a JSON file (one definition or a list)."""
    from farm_adapters._toml import TOMLDecodeError, read_toml

    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            items = data if isinstance(data, list) else [data]
            for item in items:
                if not isinstance(item, dict) or "name" not in item:
                    raise InvalidRequestError(f"{path}: each definition needs a name")
            return items
        tables = read_toml(path).get("job")
    except OSError as exc:
        raise InvalidRequestError(f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise InvalidRequestError(f"{path} is not valid {kind}: {exc}") from exc
    if not isinstance(tables, dict) or not tables:
        raise InvalidRequestError(f"{path}: no [job.<name>] table found")
    return [{**table, "name": name} for name, table in tables.items()]


@click.group()
def jobdefs() -> None:
    """Omniverse Farm job definitions: list, push, remove."""


@jobdefs.command("list")
@click.option("-t", "--target", help="An ovfarm target.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_(obj: Context, target: str | None, as_json: bool) -> None:
    """List the job definitions on the farm."""
    with handle_errors(obj.debug):
        definitions = _ovfarm(obj, target).load_definitions()
        if as_json:
            click.echo(json.dumps(definitions, indent=2, sort_keys=True))
            return
        for name, definition in sorted(definitions.items()):
            args = " ".join(str(a) for a in definition.get("args", []))
            click.echo(
                f"{name}\t{definition.get('job_type', '')}\t"
                f"{definition.get('command', '')} {args}".rstrip()
            )


@jobdefs.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-t", "--target", help="An ovfarm target.")
@pass_ctx
def push(obj: Context, files: tuple[Path, ...], target: str | None) -> None:
    """Save job definitions from .kit (TOML) or .json files, and wait until the farm
    lists them."""
    with handle_errors(obj.debug):
        backend = _ovfarm(obj, target)
        definitions = [d for f in files for d in read_definitions(f)]
        for definition in definitions:
            backend.publish_definition(definition)
            click.echo(f"pushed {definition['name']}")


@jobdefs.command()
@click.argument("names", nargs=-1, required=True)
@click.option("-t", "--target", help="An ovfarm target.")
@pass_ctx
def remove(obj: Context, names: tuple[str, ...], target: str | None) -> None:
    """Remove job definitions (tasks already queued for them stay queued)."""
    with handle_errors(obj.debug):
        backend = _ovfarm(obj, target)
        for name in names:
            backend.remove_definition(name)
            click.echo(f"removed {name}")
