"""``emulate ovfarm|runai``: a farm emulator on this machine, for developing without a
farm (needs the ``emulators`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

import click

from ._common import EXIT_UNREACHABLE, EXIT_USAGE, cli, fail

if TYPE_CHECKING:
    import socket


def _install_hint() -> str:
    """How to get the extra: from a clone (a pyproject.toml beside the package) it is
    `pip install '.[emulators]'`; from a release, the PyPI name."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "farm_adapters").is_dir():
        return f"pip install -e '{root}[emulators]'"
    return "pip install 'farm-adapters[emulators]'"


def _missing_extra(exc: ImportError) -> NoReturn:
    fail(f"the emulator needs the emulators extra: {_install_hint()} ({exc})", EXIT_USAGE)


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is printed: a busy port is one
    error line, and port 0 picks a free port."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(
            f"cannot listen on {host}:{port}: {exc.strerror}; another program uses the "
            f"port: pick another with --port, or --port 0 for any free one",
            EXIT_UNREACHABLE,
        )
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _serve(app: Any, sock: socket.socket) -> None:
    import uvicorn

    config = uvicorn.Config(app, log_level="info", access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


def _announce(title: str, url: str, block: str) -> None:
    click.echo(f"{title} on {url} (Ctrl-C to stop)", err=True)
    click.echo("Add this target to farm-adapters.toml to use it:", err=True)
    click.echo(block)


@cli.group()
def emulate() -> None:
    """Run a farm emulator on this machine (needs the `emulators` extra).

    \b
    Examples:
      farm-adapters emulate ovfarm --port 0
      farm-adapters emulate runai --project team-a
    """


@emulate.command("ovfarm")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8222,
    show_default=True,
    help="Port to listen on; 0 picks a free one (printed).",
)
@click.option(
    "--api-key",
    envvar="FARM_ADAPTERS_EMULATOR_API_KEY",
    default="change-me",
    show_default=True,
    help="The X-API-KEY jobs/save and jobs/remove expect.",
)
@click.option(
    "--job-dir",
    type=click.Path(file_okay=False),
    help="Keep job definitions as .kit files here (survive a restart).",
)
@click.option("--agents", type=int, default=2, show_default=True, help="Built-in agents.")
@click.option("--labels", default="", help="Comma-separated labels of the built-in agents.")
@click.option(
    "--cancel-delay",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds before the queue forces a cancelling task to cancelled.",
)
@click.option(
    "--propagation-delay",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds before agents see a saved job definition.",
)
@click.option(
    "--log-interval",
    type=float,
    default=0.5,
    show_default=True,
    help="Seconds between an agent's log uploads.",
)
def emulate_ovfarm(
    host: str,
    port: int,
    api_key: str,
    job_dir: str | None,
    agents: int,
    labels: str,
    cancel_delay: float,
    propagation_delay: float,
    log_interval: float,
) -> None:
    """An Omniverse Farm queue (2.0.42) with agents that really run tasks."""
    try:
        import uvicorn  # noqa: F401

        from ..testing.emulators.ovfarm import create_app
    except ImportError as exc:
        _missing_extra(exc)
    sock = _bind(host, port)
    app = create_app(
        api_key=api_key,
        job_dir=job_dir,
        agents=agents,
        agent_labels=[x for x in labels.split(",") if x],
        cancel_delay=cancel_delay,
        propagation_delay=propagation_delay,
        log_interval=log_interval,
    )
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}"
    _announce(
        "Omniverse Farm emulator",
        url,
        f"[targets.emulated-ovfarm]\n"
        f'backend = "ovfarm"\n'
        f'url = "{url}"\n'
        f'api_key = {{ env = "FARM_ADAPTERS_EMULATOR_API_KEY" }}  # the --api-key value\n',
    )
    _serve(app, sock)


@emulate.command("runai")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8333,
    show_default=True,
    help="Port to listen on; 0 picks a free one (printed).",
)
@click.option(
    "--client-id",
    default="farm-adapters",
    show_default=True,
    help="The application id the token endpoint accepts.",
)
@click.option(
    "--client-secret",
    envvar="FARM_ADAPTERS_EMULATOR_CLIENT_SECRET",
    default="change-me",
    show_default=True,
    help="The secret the token endpoint accepts.",
)
@click.option(
    "--project",
    "projects",
    multiple=True,
    default=["team-a"],
    show_default=True,
    help="Project names (repeatable).",
)
@click.option(
    "--token-lifetime",
    type=float,
    default=3600.0,
    show_default=True,
    help="Seconds an access token stays valid.",
)
@click.option(
    "--nfs-root",
    type=click.Path(file_okay=False),
    help="Local folder standing in for NFS servers (server/path below it).",
)
def emulate_runai(
    host: str,
    port: int,
    client_id: str,
    client_secret: str,
    projects: tuple[str, ...],
    token_lifetime: float,
    nfs_root: str | None,
) -> None:
    """A Run:ai control plane with a one-node cluster that really runs trainings."""
    try:
        import uvicorn  # noqa: F401

        from ..testing.emulators.runai import create_app
    except ImportError as exc:
        _missing_extra(exc)
    sock = _bind(host, port)
    app = create_app(
        client_id=client_id,
        client_secret=client_secret,
        projects=list(projects),
        token_lifetime=token_lifetime,
        nfs_root=nfs_root,
    )
    port = sock.getsockname()[1]
    url = f"http://{host}:{port}"
    _announce(
        "Run:ai emulator",
        url,
        f"[targets.emulated-runai]\n"
        f'backend = "runai"\n'
        f'url = "{url}"\n'
        f'client_id = {{ env = "FARM_ADAPTERS_EMULATOR_CLIENT_ID" }}  # {client_id}\n'
        f'client_secret = {{ env = "FARM_ADAPTERS_EMULATOR_CLIENT_SECRET" }}\n'
        f'project = "{projects[0] if projects else "team-a"}"\n'
        f'image = "ubuntu:22.04"\n',
    )
    _serve(app, sock)
