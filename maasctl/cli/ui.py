"""`maasctl ui`: the read-only web view of the store, served by the same HTTP stack as `serve`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from maasctl.cli import render
from maasctl.cli._options import state


def ui(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port; 0 picks a free one.")] = 8765,
    token: Annotated[str | None, typer.Option("--token", envvar="MAASCTL_TOKEN", show_envvar=True,
                                                 help="Require this token on every page and API call "
                                                 "(Bearer header, or open once with ?token=...).")] = None,
) -> None:
    """A read-only web view of the store.

    Models, versions, aliases and their history, runs with their curves, detached servers. Every page has its JSON under /api/... . Ctrl-C stops.

    Example: maasctl ui --port 8765
    """
    import logging

    from maasctl.serving.server import bind, run, url_of
    from maasctl.ui.app import UiApp

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    sock = bind(host, port)
    url = url_of(sock)
    if not token and host not in ("127.0.0.1", "localhost", "::1"):
        render.message(f"warning: serving the view on {host} without --token: anyone who can reach this port "
                       "can read the store's models, runs and configs")
    app = UiApp(state(ctx).store, token=token)
    print(url + "/")
    sys.stdout.flush()
    render.message(f"maasctl ui at {url}/" + (" (open it once with ?token=<your token>)" if token else "")
                   + " (Ctrl-C stops)")
    run(app, sock)  # type: ignore[arg-type]  # any ASGI app
    render.message("ui stopped")


def attach(app: typer.Typer) -> None:
    app.command("ui")(ui)
