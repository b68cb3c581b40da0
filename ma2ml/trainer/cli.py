"""Body of ``ma2ml augment-preview`` (``ma2ml.cli`` stays thin; torch loads on call)."""

from __future__ import annotations

from pathlib import Path

import typer

from ma2ml.spec import PipelineSearch

#: Exit code for bad input, as in ``ma2ml.cli``.
EXIT_BAD_INPUT = 2


def preview_command(search: PipelineSearch, out: Path, pipeline: str | None, seed: int) -> None:
    import json

    from ma2ml.trainer.errors import TrialError
    from ma2ml.trainer.preview import preview

    try:
        decisions = preview(search, out, pipeline, seed=seed)
    except (ValueError, TrialError) as exc:  # bad --pipeline, unknown op, missing dataset
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    typer.echo(f"wrote {out}; aug policy: {json.dumps(decisions)}")
