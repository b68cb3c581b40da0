"""Loading a spec file for a command: one stderr line per problem, exit code 2.

Shared by every command that reads a spec (``validate``, ``run``,
``augment-preview``) so bad input looks the same everywhere.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ma2ml.spec import PipelineSearch, SpecError, load_spec

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
