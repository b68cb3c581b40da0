"""The ``ma2ml`` command. Each command parses arguments and delegates.

Heavy imports (torch, kopf, SQLAlchemy) happen inside the commands that
need them, so ``ma2ml validate`` and ``ma2ml crd`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ma2ml.specfile import EXIT_BAD_INPUT, load_or_exit

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="MA2ML: joint AutoML search with multi-agent RL.")
db_app = typer.Typer(no_args_is_help=True, help="Database (store) administration.")
app.add_typer(db_app, name="db")
console = Console()
err_console = Console(stderr=True)

@app.command()
def crd() -> None:
    """Print the PipelineSearch CustomResourceDefinition (generated from the spec model)."""
    from ma2ml.crd import crd_yaml

    sys.stdout.write(crd_yaml())


@app.command()
def validate(file: Path = typer.Argument(..., help="PipelineSearch YAML file.")) -> None:
    """Check a spec and print the resolved search space."""
    search = load_or_exit(file)
    space = search.spec.search_space()
    table = Table(title=f"PipelineSearch {search.key}: search space")
    for column in ("agent", "preset", "decisions", "size"):
        table.add_column(column, justify="right" if column in ("decisions", "size") else "left")
    for row in space.describe():
        table.add_row(row["agent"], row["preset"], str(row["decisions"]), f"{row['size']:.3g}")
    console.print(table)
    for agent in space.agents:
        names = ", ".join(f"{d.name}({d.size})" for d in agent.decisions)
        console.print(f"[bold]{agent.name}[/]: {names}", highlight=False)
    console.print(f"joint space: {space.n_decisions} decisions, {space.size:.3g} pipelines; "
                  f"algorithm {search.spec.algorithm.name}, "
                  f"budget {search.spec.budget.max_trials} trials", highlight=False)


@db_app.command("upgrade")
def db_upgrade(url: str = typer.Option(None, "--url", envvar="MA2ML_DATABASE_URL",
                                       help="Database URL (default: sqlite:///ma2ml.db).")) -> None:
    """Bring the database schema to the current revision."""
    from ma2ml.store import resolve_database_url, upgrade

    resolved = resolve_database_url(url)
    upgrade(resolved)
    console.print(f"database at revision head: {_redact(resolved)}", highlight=False)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# Commands of the other rooms (learner, worker, local run, operator, results)
# register below this line.


@app.command("operator")
def operator_command(
    namespace: list[str] = typer.Option([], "--namespace", "-n",
                                        help="Namespace to watch (repeatable)."),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A",
                                        help="Watch every namespace."),
    liveness_port: int = typer.Option(8081, help="Port of /healthz (0: off)."),
    metrics_port: int = typer.Option(9090, help="Port of the Prometheus /metrics (0: off)."),
    peering: str = typer.Option(None, help="KopfPeering name for leader election (HA)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
) -> None:
    """Run the Kubernetes operator for PipelineSearch resources."""
    if bool(namespace) == all_namespaces:
        typer.echo("error: give --namespace NS (repeatable) or --all-namespaces", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    from ma2ml.operator.main import run_operator

    run_operator(namespace, all_namespaces=all_namespaces, liveness_port=liveness_port,
                 metrics_port=metrics_port, peering=peering, verbose=verbose)


def _register_local_commands() -> None:
    from ma2ml.local import commands

    for name in ("run", "status", "trials", "best", "export", "report"):
        app.command(name)(getattr(commands, name))


_register_local_commands()


@app.command()
def worker(
    search: str = typer.Option(..., "--search", envvar="MA2ML_SEARCH",
                               help="Search name in the store (namespace/name)."),
    db: str = typer.Option(None, "--db", envvar="MA2ML_DATABASE_URL", help="Database URL."),
    worker_id: str = typer.Option(None, "--worker-id", envvar="MA2ML_WORKER_NAME",
                                  help="Default: hostname-pid."),
    metrics_port: int = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)."),
    spool_dir: Path = typer.Option(Path(".ma2ml-spool"), "--spool-dir", envvar="MA2ML_SPOOL_DIR",
                                   help="Unsent reports and local checkpoints."),
) -> None:
    """Claim and train trials of a search until it ends; SIGTERM releases the trial, exits 0."""
    from ma2ml.worker.cli import worker_command

    worker_command(search, db, worker_id, metrics_port, threads, spool_dir)


@app.command("augment-preview")
def augment_preview(
    file: Path = typer.Argument(..., help="PipelineSearch YAML file."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    pipeline: str = typer.Option(None, "--pipeline", help="Pipeline JSON (default: random)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random policy and its draws."),
) -> None:
    """Save a grid of augmented training images: originals on top, a policy's draws below."""
    from ma2ml.worker.cli import preview_command

    preview_command(load_or_exit(file), out, pipeline, seed)


@app.command("learner")
def learner_command(
    search: str = typer.Option(..., "--search", help="Search name in the store (namespace/name)."),
    db: str = typer.Option(None, "--db", envvar="MA2ML_DATABASE_URL",
                           help="Database URL (default: sqlite:///ma2ml.db)."),
    metrics_port: int = typer.Option(0, "--metrics-port", help="Serve Prometheus metrics on "
                                     "this port (0: off)."),
) -> None:
    """Run the MA2ML learner of one search until it ends (what the learner pod runs)."""
    from ma2ml.learner.cli import serve_learner

    raise typer.Exit(serve_learner(search, db, metrics_port))
