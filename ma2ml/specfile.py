"""What commands share about their input: loading a spec file (one stderr line per
problem, exit code 2) and which database a command uses.

Shared by every command that reads a spec (``validate``, ``run``,
``augment-preview``) so bad input looks the same everywhere. ``DATABASE_HELP``
is the one description of the database precedence: every ``--db`` option
shows it, and README's "The database" quotes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from ma2ml.spec import PipelineSearch, SpecError, load_spec

#: Exit code for bad input (spec, arguments, database URL), as in Unix usage errors.
EXIT_BAD_INPUT = 2
#: Which database a command uses (``ma2ml.local.searches`` and ``ma2ml.store`` apply it).
DATABASE_PRECEDENCE = (
    "--db URL, else the spec's spec.database.url, else $MA2ML_DATABASE_URL, else the "
    "SQLite file beside the spec (search.yaml: search.db); without a spec file, "
    "sqlite:///ma2ml.db in the working directory")
#: Help of every ``--db`` option.
DATABASE_HELP = f"Database URL. The database used: {DATABASE_PRECEDENCE}."


def load_or_exit(path: Path) -> PipelineSearch:
    """Load a spec; on error print one line per problem and exit with code 2."""
    try:
        return load_spec(path)
    except SpecError as exc:
        exit_bad_spec(path, exc)


def exit_bad_spec(path: Path, exc: SpecError) -> NoReturn:
    """Print a spec's problems, one line each, and exit with code 2."""
    # Plain writes: one unwrapped line per problem, easy to grep.
    typer.echo(f"error: {path} is not a valid PipelineSearch:", err=True)
    for line in exc.lines:
        typer.echo(f"  {line}", err=True)
    raise typer.Exit(EXIT_BAD_INPUT) from None
