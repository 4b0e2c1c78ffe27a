"""What is installed and configured: ``backends``, ``targets``, ``check``,
``completion``."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import FarmAdapterError
from ._common import (
    EXIT_BUG,
    EXIT_OK,
    EXIT_UNREACHABLE,
    Context,
    cli,
    console,
    describe_bug,
    dump,
    esc,
    handle_errors,
    pass_ctx,
)


@cli.command(
    epilog="""\b
Examples:
  farm-adapters backends
  farm-adapters backends --json"""
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def backends(obj: Context, as_json: bool) -> None:
    """List the backends, where each comes from, and whether it can be used."""
    with handle_errors(obj.debug):
        infos = obj.manager.list_backends()
        errors = obj.manager.errors
        if as_json:
            dump(
                {
                    "backends": [
                        {
                            "name": b.name,
                            "display_name": b.display_name,
                            "origin": b.origin,
                            "available": b.available,
                            "reason": b.reason,
                            "capabilities": sorted(str(c) for c in b.cls.capabilities)
                            if b.cls
                            else [],
                        }
                        for b in infos
                    ],
                    "errors": [
                        {"origin": getattr(e, "origin", ""), "message": str(e)} for e in errors
                    ],
                }
            )
            return
        out = console()
        width = max([len(b.name) for b in infos] + [4])
        out.print(f"[bold]{'name':<{width}}  ok   notes[/]")
        # One line per backend, its origin on the next: a long origin never squeezes
        # the other columns into wrapped fragments at 80 columns.
        for b in infos:
            ok = "[green]yes[/]" if b.available else "[red]no[/] "
            note = b.display_name if b.available else b.reason
            out.print(f"{esc(b.name):<{width}}  {ok}  {esc(note)}")
            out.print(f"  [dim]{esc(b.origin)}[/]")
        for error in errors:
            out.print(f"[red]plug-in error:[/] {esc(error)}")


@cli.command(
    epilog="""\b
Examples:
  farm-adapters targets
  farm-adapters targets --check"""
)
@click.option("--check", "run_check", is_flag=True, help="Run each target's self-test.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_ctx
def targets(obj: Context, run_check: bool, as_json: bool) -> None:
    """List the configured render targets (secrets are shown as references)."""
    with handle_errors(obj.debug):
        config = obj.targets
        rows = []
        worst = EXIT_OK
        for target in config:
            row: dict[str, Any] = {
                "name": target.name,
                "backend": target.backend,
                "description": target.description,
                "default": target.name == config.default_target,
                "settings": target.public_settings(),
                "storage": target.public_storage(),
                "path_mappings": [m.model_dump(exclude_none=True) for m in target.path_mappings],
                "source": str(target.source) if target.source else None,
            }
            if run_check:
                ok, detail, code = check_target(obj, target.name)
                row["check"] = {"ok": ok, "detail": detail}
                worst = max(worst, code)
            rows.append(row)
        if as_json:
            dump({"source": str(config.source) if config.source else None, "targets": rows})
        else:
            from rich.table import Table

            out = console()
            out.print(f"targets from {esc(config.source or 'no file: built-in local only')}")
            table = Table(box=None, pad_edge=False, header_style="bold")
            for column in ("name", "backend", "description", *(["check"] if run_check else [])):
                table.add_column(column, overflow="fold")
            for row in rows:
                name = esc(row["name"]) + (" (default)" if row["default"] else "")
                cells = [name, esc(row["backend"]), esc(row["description"])]
                if run_check:
                    check = row["check"]
                    cells.append(
                        ("[green]ok[/] " if check["ok"] else "[red]failed[/] ")
                        + esc(check["detail"])
                    )
                table.add_row(*cells)
            out.print(table)
        sys.exit(worst)


def check_target(obj: Context, name: str) -> tuple[bool, str, int]:
    """(ok, detail, exit code) of one target's self-test."""
    try:
        backend = obj.backend(name)
        results = backend.check() + backend.check_storage()
    except FarmAdapterError as exc:
        return False, str(exc), EXIT_UNREACHABLE
    except Exception as exc:  # a plug-in's bug: say whose, go on with the other targets
        return False, describe_bug(exc, obj._manager), EXIT_BUG
    bad = [r for r in results if not r.ok]
    if bad:
        return False, "; ".join(f"{r.name}: {r.detail}" for r in bad), EXIT_UNREACHABLE
    return True, "; ".join(f"{r.name}: {r.detail}" for r in results), EXIT_OK


@cli.command(
    epilog="""\b
Examples:
  farm-adapters check
  farm-adapters check studio-farm --json"""
)
@click.argument("target", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of lines.")
@pass_ctx
def check(obj: Context, target: str | None, as_json: bool) -> None:
    """Run a target's self-test: reachability, authentication, storage.

    TARGET defaults to the targets file's default_target."""
    with handle_errors(obj.debug):
        backend = obj.backend(target)
        results = backend.check() + backend.check_storage()
        if as_json:
            dump({"target": backend.target, "results": [r.model_dump() for r in results]})
        else:
            out = console()
            for r in results:
                mark = "[green]ok[/]    " if r.ok else "[red]FAILED[/]"
                out.print(f"{mark} {esc(r.name)}: {esc(r.detail)}")
        sys.exit(EXIT_OK if all(r.ok for r in results) else EXIT_UNREACHABLE)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: eval "$(farm-adapters completion bash)".

    Completes commands, options, job ids (from this machine's journal) and target
    names (from the targets file), without touching the network."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    comp = cls(cli, {}, "farm-adapters", "_FARM_ADAPTERS_COMPLETE")
    click.echo(comp.source())
