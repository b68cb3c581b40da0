"""``ma2ml dashboard [SPEC | --db URL]``: serve the live web UI of a store.

The store is found as the other read commands find it
(``specfile.DATABASE_PRECEDENCE``) and is opened read-only: a store that does
not exist is an error (exit 2), never created. Serves on 127.0.0.1 unless ``--host`` says otherwise,
and answers only requests whose ``Host`` header names this machine, the ``--host``
address or an ``--allowed-host`` (DNS rebinding). Every option can also come from its
``MA2ML_DASHBOARD_*`` variable (the Helm chart sets them that way).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from ma2ml.dashboard.options import (
    DB_TIMEOUT_SECONDS,
    PREVIEW_MEMORY_MIB,
    DashboardOptions,
    hosts_for,
)
from ma2ml.specfile import DATABASE_HELP, EXIT_BAD_INPUT, load_or_exit


def _url(spec: Path | None, db: str | None) -> str | None:
    if spec is None:
        return db
    if not spec.is_file():
        typer.echo(f"error: spec file {spec} does not exist", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    from ma2ml.local.searches import resolve_run_url

    return resolve_run_url(spec, load_or_exit(spec), db)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dashboard(
    spec: Path = typer.Argument(None, help="Spec file: serve the database its search uses "
                                "(see --db)."),
    db: str = typer.Option(None, "--db", help=DATABASE_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (only this "
                             "machine by default)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
    allowed_host: list[str] = typer.Option(
        [], "--allowed-host", metavar="NAME", envvar="MA2ML_DASHBOARD_ALLOWED_HOSTS",
        help="A further name the Host header may carry (repeatable; the variable: "
        "space-separated). Always allowed: localhost, 127.0.0.1, ::1 and --host. '*': any "
        "(then a web page can read the store through a DNS name pointed at this server)."),
    db_timeout: float = typer.Option(
        DB_TIMEOUT_SECONDS, "--db-timeout", metavar="SECONDS", min=0.1, max=300,
        envvar="MA2ML_DASHBOARD_DB_TIMEOUT",
        help="Seconds a request waits for the database before it answers 503."),
    no_previews: bool = typer.Option(
        False, "--no-previews", envvar="MA2ML_DASHBOARD_NO_PREVIEWS",
        help="Draw no augmentation previews (each one runs a child process that loads "
        "torch and the search's dataset)."),
    preview_memory: int = typer.Option(
        PREVIEW_MEMORY_MIB, "--preview-memory", metavar="MIB", min=256, max=1 << 20,
        envvar="MA2ML_DASHBOARD_PREVIEW_MEMORY",
        help="Memory cap (MiB, data segment) of the process that draws a preview."),
) -> None:
    """Serve a live, read-only web dashboard of every search in a store."""
    from ma2ml.dashboard.source import SourceError, masked, open_read_only
    from ma2ml.store import resolve_database_url

    url = resolve_database_url(_url(spec, db))
    options = DashboardOptions(allowed_hosts=hosts_for(host, allowed_host),
                               db_timeout=db_timeout, previews=not no_previews,
                               preview_memory_mib=preview_memory)
    try:
        store = open_read_only(url, timeout=db_timeout)
    except SourceError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    import uvicorn

    from ma2ml.dashboard.app import create_app

    if not _loopback(host):
        typer.echo(f"warning: listening on {host}: whoever reaches this address reads every "
                   f"search (there is no login)", err=True)
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"ma2ml dashboard of {masked(url)} (read-only) on http://{shown}:{port}/")
    with store:
        uvicorn.run(create_app(store, options), host=host, port=port, log_level="warning",
                    server_header=False)
