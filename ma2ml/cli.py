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

from ma2ml.spec import PipelineSearch, SpecError, load_spec

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="MA2ML: joint AutoML search with multi-agent RL.")
db_app = typer.Typer(no_args_is_help=True, help="Database (store) administration.")
app.add_typer(db_app, name="db")
console = Console()
err_console = Console(stderr=True)

#: Exit code for bad input (spec, arguments), as in Unix usage errors.
EXIT_BAD_INPUT = 2


def load_or_exit(path: Path) -> PipelineSearch:
    """Load a spec; on error print one line per problem and exit with code 2."""
    try:
        return load_spec(path)
    except SpecError as exc:
        # Plain writes: one unwrapped line per problem, easy to grep.
        typer.echo(f"error: {path} is not a valid PipelineSearch:", err=True)
        for line in exc.lines:
            typer.echo(f"  {line}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


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
