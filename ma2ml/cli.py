"""The ``ma2ml`` command. Each command parses arguments and delegates.

Heavy imports (torch, kopf, SQLAlchemy) happen inside the commands that
need them, so ``ma2ml validate`` and ``ma2ml crd`` start fast.

``Ma2mlGroup`` is the one place two things hold for every command: a store
error that reaches the top (a bad or unreachable database URL) prints one
line and exits 2, and ``--help`` shows plain metavars (``SPEC``, ``TEXT``)
instead of typer's type tags (``{file}``, ``<bool>``).
"""

from __future__ import annotations

import sys
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperArgument, TyperGroup, TyperOption

from ma2ml.specfile import DATABASE_HELP, EXIT_BAD_INPUT, load_or_exit

if TYPE_CHECKING:
    from ma2ml.spec import Budget


class _PlainArgument(TyperArgument):
    """An argument shown as ``SPEC`` (required) or ``[TARGET]`` in the usage line;
    typer's own form is ``{spec}``."""

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        return name if self.required else f"[{name}]"

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name (SPEC, TARGET) says it; typer's "<path>" adds only noise


def _tidy_param(param: Any, ctx: Any) -> None:
    """Click-style metavars: flags show no type, values their type in capitals
    (``<int range>`` becomes ``INT``; the range itself is shown beside it)."""
    if isinstance(param, TyperArgument):
        param.metavar = param.metavar or param.name.upper()
        # Only the usage line differs; the argument parses exactly as before.
        param.__class__ = _PlainArgument
    elif isinstance(param, TyperOption) and param.metavar is None:
        shown = param.display_type(ctx).strip("<>").removesuffix(" range")
        param.metavar = "" if param.is_flag else shown.upper()


#: Commands whose parameters ``Ma2mlGroup.get_command`` has tidied already.
_TIDIED: weakref.WeakSet[Any] = weakref.WeakSet()  # click commands (typer bundles click)


class Ma2mlGroup(TyperGroup):
    """The ``ma2ml`` group: plain help for every command and one handler for store errors."""

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        option = super().get_help_option(ctx)
        if option is not None:
            _tidy_param(option, ctx)
        return option

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and command not in _TIDIED:
            # typer builds --help once per command and caches it: tidy that one too.
            for param in [*command.params, command.get_help_option(ctx)]:
                if param is not None:
                    _tidy_param(param, ctx)
            _TIDIED.add(command)
        return command

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            line = _store_error_line(exc)
            if line is None:
                raise
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None


def _store_error_line(exc: Exception) -> str | None:
    """One line for a store error (bad or unreachable database, schema too new), else None."""
    errors = sys.modules.get("ma2ml.store.errors")  # loaded when the store raised anything
    if errors is None or not isinstance(exc, errors.StoreError):
        return None
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


app = typer.Typer(cls=Ma2mlGroup, no_args_is_help=True, add_completion=False,
                  help="MA2ML: joint AutoML search with multi-agent RL.")
db_app = typer.Typer(cls=Ma2mlGroup, no_args_is_help=True,
                     help="Database (store) administration.")
app.add_typer(db_app, name="db")
console = Console()
err_console = Console(stderr=True)

@app.command()
def crd() -> None:
    """Print the PipelineSearch CustomResourceDefinition (generated from the spec model)."""
    from ma2ml.crd import crd_yaml

    sys.stdout.write(crd_yaml())


@app.command()
def validate(file: Path = typer.Argument(..., metavar="SPEC", help="PipelineSearch YAML file."),
             check_data: bool = typer.Option(False, "--check-data", help="Also check that the "
                                             "built-in trainer can read the dataset.")) -> None:
    """Check a spec and print the resolved search space."""
    search = load_or_exit(file)
    if check_data:
        _check_data_or_exit(search)
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
                  f"budget {_budget_text(search.spec.budget)}", highlight=False)


def _budget_text(budget: Budget) -> str:
    """``50 trials, maxDuration 1h 30m, maxTrainingHours 2``: what ends the search, the
    duration as it was understood (written "90m" or 5400, it reads the same)."""
    from ma2ml.durations import format_duration

    text = f"{budget.max_trials} trials"
    if budget.max_duration is not None:
        text += f", maxDuration {format_duration(budget.max_duration)}"
    if budget.max_training_hours is not None:
        text += f", maxTrainingHours {budget.max_training_hours:g}"
    return text


def _check_data_or_exit(search: Any) -> None:
    from ma2ml.spec import TrainerType
    from ma2ml.trainer.data import check_data
    from ma2ml.trainer.errors import DataError

    if search.spec.trainer.type != TrainerType.builtin:
        console.print("data: not checked (a custom trainer reads its own data)",
                      highlight=False)
        return
    try:
        console.print(f"data: {check_data(search.spec.dataset)}", highlight=False)
    except DataError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


@db_app.command("upgrade")
def db_upgrade(url: str = typer.Option(None, "--db", "--url", help=DATABASE_HELP)) -> None:
    """Bring the database schema to the current revision (creating the database if needed)."""
    from ma2ml.store import Store, masked_url, resolve_database_url

    resolved = resolve_database_url(url)
    with Store(resolved):  # opening migrates; errors name the URL in one line
        pass
    console.print(f"database at revision head: {masked_url(resolved)}", highlight=False)


# Commands of the other rooms (learner, worker, local run, operator, results)
# register below this line.


def _register_dashboard() -> None:
    from ma2ml.dashboard.command import dashboard

    app.command("dashboard")(dashboard)


_register_dashboard()


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

    for name in ("run", "status", "trials", "best", "export", "retrain", "report", "delete"):
        app.command(name)(getattr(commands, name))


_register_local_commands()


@app.command()
def worker(
    search: str = typer.Option(..., "--search", envvar="MA2ML_SEARCH",
                               help="Search name in the store (namespace/name)."),
    db: str = typer.Option(None, "--db", help=DATABASE_HELP),
    worker_id: str = typer.Option(None, "--worker-id", envvar="MA2ML_WORKER_NAME",
                                  help="Default: hostname-pid."),
    metrics_port: int = typer.Option(None, "--metrics-port", help="Serve Prometheus metrics."),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads (default: torch's)."),
    spool_dir: Path = typer.Option(Path(".ma2ml-spool"), "--spool-dir", envvar="MA2ML_SPOOL_DIR",
                                   help="Unsent reports and local checkpoints."),
    prefetch: int = typer.Option(None, "--prefetch", envvar="MA2ML_WORKER_PREFETCH", min=0,
                                 max=1, help="Trials claimed ahead while one trains: 1 "
                                 "(default) or 0."),
) -> None:
    """Claim and train trials of a search until it ends; SIGTERM releases the trial, exits 0.

    Exits 3 when the store itself is broken (a schema bug such as a missing table): the
    trial is handed back and starting the worker again would meet the same error.
    """
    from ma2ml.worker.cli import worker_command

    worker_command(search, db, worker_id, metrics_port, threads, spool_dir, prefetch)


@app.command("augment-preview")
def augment_preview(
    file: Path = typer.Argument(..., help="PipelineSearch YAML file."),
    out: Path = typer.Option(..., "--out", help="PNG file to write."),
    pipeline: str = typer.Option(None, "--pipeline", help="Pipeline JSON (default: random)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random policy and its draws."),
) -> None:
    """Save a grid of augmented training images: originals on top, a policy's draws below."""
    from ma2ml.trainer.cli import preview_command

    preview_command(load_or_exit(file), out, pipeline, seed)


@app.command("learner")
def learner_command(
    search: str = typer.Option(..., "--search", help="Search name in the store (namespace/name)."),
    db: str = typer.Option(None, "--db", help=DATABASE_HELP),
    metrics_port: int = typer.Option(0, "--metrics-port", help="Serve Prometheus metrics on "
                                     "this port (0: off)."),
) -> None:
    """Run the MA2ML learner of one search until it ends (what the learner pod runs)."""
    from ma2ml.learner.cli import serve_learner

    raise typer.Exit(serve_learner(search, db, metrics_port))
