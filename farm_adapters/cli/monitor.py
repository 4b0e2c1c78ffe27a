"""``farm-adapters monitor``: the local web monitor (see :mod:`farm_adapters.monitor`)."""

from __future__ import annotations

import click

from ._common import EXIT_USAGE, Context, cli, fail, handle_errors, pass_ctx, warn


@cli.command(
    epilog="""\b
Examples:
  farm-adapters monitor
  farm-adapters monitor --port 0 --open
  farm-adapters monitor --bind 0.0.0.0 --port 8765   (other machines: read the warning)"""
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on; 0 picks a free one (printed).",
)
@click.option(
    "--bind",
    "bind_host",
    metavar="ADDRESS",
    help="Listen on this address instead of 127.0.0.1 (other machines can then reach "
    "the monitor: anyone with the token sees and stops your jobs).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@click.option(
    "--interval",
    type=click.FloatRange(0.5, 3600),
    default=2.0,
    show_default=True,
    help="Seconds between two polls of each target.",
)
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Show at most this many jobs of the journal, newest first.",
)
@click.option(
    "--notify/--no-notify",
    default=True,
    show_default=True,
    help="Notify the end of a job seen running, through the targets file's [notify] "
    "(once per job, whoever observes it).",
)
@pass_ctx
def monitor(
    obj: Context,
    port: int,
    bind_host: str | None,
    open_browser: bool,
    interval: float,
    limit: int,
    notify: bool,
) -> None:
    """Serve a web page showing every target's jobs, live, on this machine.

    The URL printed carries a random access token: every request without it is
    refused (403). Only 127.0.0.1 listens unless --bind says otherwise."""
    from ..monitor._serve import LOOPBACK, bind, is_loopback, missing_dependencies

    problem = missing_dependencies()
    if problem is not None:
        fail(problem, EXIT_USAGE)
    host = bind_host or LOOPBACK
    if bind_host is not None and not is_loopback(bind_host):
        warn(
            f"listening on {bind_host}: other machines can reach the monitor; anyone who "
            f"has the token (it travels in plain HTTP) can see, stop and delete your jobs"
        )
    try:
        sock = bind(host, port)
    except OSError as exc:
        fail(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another "
            f"--port (0 picks a free one)",
            EXIT_USAGE,
        )
    with handle_errors(obj.debug):
        _run(obj, sock, interval=interval, limit=limit, notify=notify, open_browser=open_browser)


def _run(
    obj: Context, sock: object, *, interval: float, limit: int, notify: bool, open_browser: bool
) -> None:
    import socket

    from ..monitor import Poller, create_app, serve

    assert isinstance(sock, socket.socket)
    poller = Poller(obj, interval=interval, limit=limit, notify=notify)
    app = create_app(poller)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/?token={app.token}"

    def ready() -> None:
        click.echo(f"farm-adapters monitor on http://{shown}:{port}/", err=True)
        click.echo(url)
        click.echo("Ctrl-C stops it.", err=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    poller.start()
    try:
        serve(app, sock, on_ready=ready)
    finally:
        poller.stop()
        sock.close()
