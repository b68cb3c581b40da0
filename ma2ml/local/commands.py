"""Typer commands of one-machine mode: run, status, trials, best, export, retrain,
report, delete.

Commands that only look (status, trials, best, export, report, delete) open an
existing store (``Store(create=False)``): a missing database file is an error,
never created. ``run`` reports why a search ended (the budget limit that ended it,
in the learner's words) and the time it used; for a failed search also the most
common error among its failed trials and how to start over.

``trials --curves`` adds each listed trial's learning curve (the store's
per-epoch results), read for the listed trials only, so it stays bounded by
``--limit``. ``best`` ranks completed trials at full fidelity only and says so.

Registered on the ``ma2ml`` app by ``ma2ml.cli``. Heavy modules are imported
inside each command so ``ma2ml --help`` stays fast.

Stored values (pipelines, metrics, errors, names) came from a spec author or
a trainer: everything printed from the store goes through ``inert``, so Rich
markup in it (``[link=...]``) prints as text and control characters (terminal
escape sequences) print as ``\\x1b``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from ma2ml.local.inert import inert
from ma2ml.specfile import DATABASE_HELP, EXIT_BAD_INPUT, exit_bad_spec, load_or_exit
from ma2ml.visible import decimals, visible

if TYPE_CHECKING:
    from ma2ml.store import SearchRecord, StepRecord, Store

# Piped output (scripts, CI logs) is not truncated to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 200)
DB_OPTION = typer.Option(None, "--db", help=DATABASE_HELP)
TARGET = typer.Argument(None, help="Spec file (its database and name) or search name "
                        "(namespace/name; a bare name means default/name).")


def run(
    spec: Path = typer.Argument(..., help="PipelineSearch YAML file."),
    workers: int = typer.Option(None, "--workers", "-w", min=1,
                                help="Worker processes (default: spec.budget.parallelism, "
                                "at most one per CPU of this machine)."),
    db: str = DB_OPTION,
    metrics_port: int = typer.Option(None, "--metrics-port", min=1, max=65535,
                                     help="Serve Prometheus metrics on 127.0.0.1:PORT "
                                     "(workers on PORT+1..PORT+N)."),
    restart: bool = typer.Option(False, "--restart", help="Delete the stored search of this "
                                 "name (all its trials) and start it over."),
) -> None:
    """Run a search on this machine (resumes when run again; see --restart)."""
    from ma2ml.local.dbfile import DatabaseFileError
    from ma2ml.local.progress import ProgressView
    from ma2ml.local.runner import run_local
    from ma2ml.local.searches import SearchConflictError
    from ma2ml.logs import setup_logging
    from ma2ml.store import SearchState, StoreUnavailableError
    from ma2ml.trainer.errors import DataError
    from ma2ml.worker.errors import StoreFault

    search = load_or_exit(spec)
    setup_logging()
    try:
        with ProgressView(console) as view:
            result = run_local(spec, search, workers=workers, db=db,
                               metrics_port=metrics_port, on_tick=view, restart=restart,
                               on_note=_note)
    except (SearchConflictError, DataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except DatabaseFileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except StoreFault as exc:  # a worker found the store broken; its trials handed back
        typer.echo(f"error: {visible(str(exc))}", err=True)
        raise typer.Exit(1) from None
    try:
        _print_outcome(result.url, result.key, spec)
    except StoreUnavailableError as exc:  # stopped during an outage: nothing to read yet
        console.print(f"outcome not shown: {inert(str(exc))}", highlight=False)
    if result.learner_error is not None:
        # The error's text may hold a trainer's or the database's words: shown, not obeyed.
        typer.echo(f"error: the learner crashed: {visible(result.learner_error)}", err=True)
        raise typer.Exit(1)
    if result.interrupted:
        console.print(f"stopped; run `ma2ml run {inert(spec)}` again to resume.",
                      highlight=False)
        raise typer.Exit(130)
    if result.state == SearchState.failed:
        raise typer.Exit(1)


def _note(text: str) -> None:
    console.print(f"note: {inert(text)}", highlight=False)


def _print_outcome(url: str, key: str, spec: Path | str = "SPEC") -> None:
    from ma2ml.results.summary import recommended_lines, summarize
    from ma2ml.store import SearchState, Store

    # create=False: the summary of a run never creates a store (a database deleted
    # meanwhile is an error, not a fresh empty search).
    with Store(url, create=False) as store:
        record = store.get_search(key)
        if record is None:
            return
        summary = summarize(store, record, now=time.time())
        failed = summary.state == SearchState.failed
        cause = failure_cause(store, record.id) if failed else None
    ended_by = summary.ended_by()  # which budget limit ended it, e.g. MaxDurationReached
    console.print(f"search {inert(key)}: {inert(summary.state)}"
                  f"{f' ({ended_by})' if ended_by else ''}, "
                  f"{summary.done}/{summary.max_trials} trials, "
                  f"{summary.counts.stopped} stopped early, "
                  f"{summary.counts.failed} failed", highlight=False)
    if record.message:
        console.print(f"reason: {inert(record.message)}", highlight=False)
    console.print(f"time:   {summary.time_used()}", highlight=False)
    if cause is not None:
        console.print(f"cause:  {inert(cause)}", highlight=False)
    if failed:
        console.print(f"fix the cause, then `ma2ml run --restart {inert(spec)}` starts the "
                      f"search over (deleting its {summary.counts.total} trials)",
                      highlight=False)
    # The best estimated mean (ma2ml.store.recommend), not the luckiest draw.
    for k, line in enumerate(recommended_lines(summary)):
        console.print(("best:   " if k == 0 else "        ") + inert(line), highlight=False)
    if summary.recommended is not None:
        accuracy = (summary.recommended[1].metrics or {}).get("accuracy")
        # A custom trainer may report only a reward: no accuracy to show.
        if isinstance(accuracy, int | float):
            console.print(f"        accuracy {accuracy:.4f} (full fidelity)", highlight=False)
    # Random search at the same number of trials (ma2ml.results.baseline), not the first draws.
    for compared in summary.random_best_of(max(1, summary.done)):
        console.print(f"random: {compared.describe()}", highlight=False)
    if (learned := summary.learned_against_random()) is not None:
        console.print(f"learned: {learned}", highlight=False)


#: Failed trials whose errors ``failure_cause`` reads (the most recent ones).
FAILURE_SAMPLE = 200


def failure_cause(store: Store, search_id: int) -> str | None:
    """The most common last line of the failed trials' errors, with how many share it."""
    from collections import Counter

    from ma2ml.store import TrialStatus

    failed = store.list_trials(search_id, status=TrialStatus.failed, order_by="finished_seq",
                               descending=True, limit=FAILURE_SAMPLE)
    tails = [_last_line(t.error) for t in failed if t.error and t.error.strip()]
    if not tails:
        return None
    tail, count = Counter(tails).most_common(1)[0]
    return f"{tail} ({count} of the {len(tails)} failed trials read)"


def _last_line(error: str) -> str:
    line = [part for part in error.strip().splitlines() if part.strip()][-1].strip()
    return line if len(line) <= 300 else line[:297] + "..."


def _open(target: str | None, db: str | None) -> tuple[Store, SearchRecord | None]:
    """The store named by ``target``/``db`` and the search in it (None: all searches).
    Only an existing store is opened: looking never creates a database."""
    from ma2ml.local.searches import TargetError, resolve_target
    from ma2ml.spec import SpecError
    from ma2ml.store import Store

    try:
        resolved = resolve_target(target, db)
    except TargetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except SpecError as exc:
        exit_bad_spec(Path(str(target)), exc)
    store = Store(resolved.url, create=False)
    record = store.get_search(resolved.key) if resolved.key else None
    if resolved.key and record is None:
        store.close()
        typer.echo(f"error: no search {resolved.key!r} in {resolved.url}", err=True)
        raise typer.Exit(1)
    return store, record


def status(target: str = TARGET, db: str = DB_OPTION) -> None:
    """Show searches with their progress."""
    from ma2ml.results.summary import summarize

    store, record = _open(target, db)
    with store:
        records = [record] if record else store.list_searches()
        table = Table()
        for column in ("search", "state", "trials", "running", "held", "pending", "stopped",
                       "failed", "best", "time"):
            table.add_column(column)
        for rec in records:
            s = summarize(store, rec, now=time.time(), baseline=False)
            table.add_row(inert(s.key), inert(s.state), f"{s.done}/{s.max_trials}",
                          # held: leased to a worker that has not started it (prefetch)
                          str(s.counts.running - s.held), str(s.held), str(s.counts.pending),
                          str(s.counts.stopped),
                          str(s.counts.failed), _best_cell(store, rec.id), s.time_used())
        console.print(table)


def _best_cell(store: Store, search_id: int) -> str:
    """The status table's best: the best estimated mean ± its standard error
    (``ma2ml.store.recommend``), or the best observation, marked, when there is no
    estimate yet."""
    from ma2ml.store import TrialStatus
    from ma2ml.store.recommend import recommend_trials

    recommended = recommend_trials(store.list_trials(search_id, status=TrialStatus.completed))
    if recommended is None:
        return "-"
    estimate = recommended[0]
    # ``decimals``: a reward of 1e308 is ``1e+308``, not 309 digits in a table cell.
    if estimate.stderr is None:  # not denoised
        return f"{decimals(estimate.observed)} (observed)"
    return f"{decimals(estimate.mean)} ± {decimals(estimate.stderr)}"


#: Trials whose curves ``trials --curves`` shows when no ``--limit`` is given.
CURVES_DEFAULT_LIMIT = 50
#: Trial ids per ``Store.curves`` read (the store's bound on one ``IN`` list).
CURVES_CHUNK = 1000


def trials(
    target: str = TARGET,
    db: str = DB_OPTION,
    status_filter: str = typer.Option(None, "--status", help="pending, running, completed, "
                                      "diverged, stopped or failed."),
    sort: str = typer.Option("number", "--sort", help="number, reward or finished."),
    descending: bool = typer.Option(False, "--desc", help="Sort in descending order."),
    limit: int = typer.Option(None, "--limit", min=1,
                              help=f"At most this many trials (with --curves: default "
                              f"{CURVES_DEFAULT_LIMIT})."),
    curves: bool = typer.Option(False, "--curves", help="Show each listed trial's learning "
                                "curve (its result per epoch; --json: every point)."),
    as_json: bool = typer.Option(False, "--json", help="Print the trials as a JSON list."),
) -> None:
    """List a search's trials (and their learning curves with --curves)."""
    from ma2ml.results.summary import trial_row
    from ma2ml.store import STATUSES, TrialStatus

    if status_filter is not None and status_filter not in STATUSES:
        raise typer.BadParameter(f"expected one of {', '.join(STATUSES)}, got {status_filter!r}",
                                 param_hint="--status")
    orders = {"number": "number", "reward": "reward", "finished": "finished_seq"}
    if sort not in orders:
        raise typer.BadParameter(f"expected one of {', '.join(orders)}, got {sort!r}",
                                 param_hint="--sort")
    defaulted = curves and limit is None
    if defaulted:
        limit = CURVES_DEFAULT_LIMIT
    store, record = _requires_search(target, db)
    with store:
        status = None if status_filter is None else TrialStatus(status_filter)
        listed = store.list_trials(record.id, status=status, order_by=orders[sort],
                                   descending=descending, limit=limit)
        steps = _read_curves(store, record.id, [t.id for t in listed]) if curves else {}
        counts = store.counts(record.id) if defaulted and len(listed) == limit else None
    more = counts is not None and len(listed) < (
        counts[status_filter] if status_filter else counts.total)
    rows = [trial_row(t) for t in listed]
    if as_json:
        if curves:
            from ma2ml.results.summary import curve_points

            rows = [{**row, "curve": curve_points(steps.get(t.id, []))}
                    for row, t in zip(rows, listed, strict=True)]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{inert(record.name)}: {len(rows)} trials")
    columns = ("number", "status", "reward", "accuracy", "flops", "seconds", "epochs",
               "policy_version", "attempt", "error")
    for column in columns:
        table.add_column(column)
    if curves:
        table.add_column("curve (epoch:value)", no_wrap=True)
    shown = _curve_cells(steps, [t.id for t in listed]) if curves else []
    for i, row in enumerate(rows):
        table.add_row(*(_cell(row[c]) for c in columns), *shown[i:i + 1])
    console.print(table)
    if more:
        console.print(f"(curves of the first {limit} trials; --limit N for more)",
                      highlight=False)


def _read_curves(store: Store, search_id: int, trial_ids: list[int]
                 ) -> dict[int, list[StepRecord]]:
    """``Store.curves`` of exactly ``trial_ids``, read in bounded chunks."""
    found: dict[int, list[StepRecord]] = {}
    for i in range(0, len(trial_ids), CURVES_CHUNK):
        found.update(store.curves(search_id, trial_ids[i:i + CURVES_CHUNK]))
    return found


def _curve_cells(steps: dict[int, list[StepRecord]], trial_ids: list[int]) -> list[str]:
    """One cell per trial: a sparkline on the range shared by every listed curve, then the
    first and last ``epoch:value`` and, for a stop, where it was decided."""
    from ma2ml.results.summary import finite_values, sparkline

    values = finite_values({i: steps.get(i, []) for i in trial_ids})
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    cells = []
    for trial_id in trial_ids:
        curve = steps.get(trial_id, [])
        if not curve:
            cells.append("-")
            continue
        spark = sparkline([s.value for s in curve], low, high)
        ends = [curve[0]] if len(curve) == 1 else [curve[0], curve[-1]]
        text = " → ".join(f"{s.step}:{_cell(s.value)}" for s in ends)
        stopped = curve[-1].decision == "stop"
        cells.append(inert(f"{spark} {text}{' (stopped)' if stopped else ''}"))
    return cells


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return inert(text if len(text) < 60 else text[:57] + "...")


def _requires_search(target: str | None, db: str | None) -> tuple[Store, SearchRecord]:
    if not target:
        raise typer.BadParameter("name a search (or its spec file)", param_hint="TARGET")
    store, record = _open(target, db)
    assert record is not None  # _open exits when a named search is missing
    return store, record


def best(target: str = TARGET, db: str = DB_OPTION,
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the best pipeline and its metrics."""
    from ma2ml.results.summary import BEST_RANKING, trial_epochs
    from ma2ml.store import TrialStatus
    from ma2ml.store.recommend import recommend_trials

    store, record = _requires_search(target, db)
    with store:
        # The best estimated mean, not the luckiest draw (ma2ml.store.recommend).
        recommended = recommend_trials(store.list_trials(record.id,
                                                         status=TrialStatus.completed))
    if recommended is None:
        typer.echo(f"error: search {record.name} has no completed trial yet (the best is "
                   f"{BEST_RANKING})", err=True)
        raise typer.Exit(1)
    estimate, top = recommended
    epochs = trial_epochs(record)
    payload = {"search": record.name, "trial": top.number, "reward": top.reward,
               "estimate": estimate.as_dict(),
               "metrics": top.metrics, "pipeline": top.pipeline,
               "fidelity": "full", "epochs": epochs, "ranking": BEST_RANKING}
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    console.print(f"[bold]{inert(record.name)}[/] best trial {top.number}: "
                  f"{estimate.describe()}", highlight=False)
    console.print(f"  ({BEST_RANKING}; full fidelity: {epochs} epochs)", highlight=False)
    for key, value in sorted((top.metrics or {}).items()):
        console.print(f"  {inert(key)}: {inert(value)}", highlight=False)
    for agent, values in top.pipeline.items():
        console.print(f"[bold]{inert(agent)}[/]", highlight=False)
        for name, value in values.items():
            console.print(f"  {inert(name)} = {inert(value)}", highlight=False)


def export(target: str = TARGET, db: str = DB_OPTION,
           out: Path = typer.Option(Path("ma2ml-export"), "--out", help="Directory to write."),
           epochs: int = typer.Option(None, "--epochs", min=1, help="Retraining epochs "
                                      "(default: max(10, 5 x trialEpochs)).")) -> None:
    """Write the best pipeline as recipe.json plus a retrain.py that evaluates on the test set."""
    from ma2ml.local.export import export_best

    store, record = _requires_search(target, db)
    with store:
        try:
            written = export_best(store, record, out, epochs)
        except LookupError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    console.print(f"wrote {inert(written.recipe)}", highlight=False)
    if written.script is not None:
        console.print(f"wrote {inert(written.script)}; retrain and test: ma2ml retrain "
                      f"{inert(out)} (or python {inert(written.script)})", highlight=False)
    else:
        console.print("custom trainer: feed recipe.json's pipeline to your command",
                      highlight=False)


def retrain(
    directory: Path = typer.Argument(..., metavar="DIR", help="Folder written by `ma2ml "
                                     "export` (recipe.json)."),
    epochs: int = typer.Option(None, "--epochs", min=1, max=10_000,
                               help="Training epochs (default: the recipe's)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the initial weights and the "
                             "augmentation draws."),
    device: str = typer.Option(None, "--device", help="cpu, cuda or auto (default: the "
                               "spec's trainer.device)."),
    train_subset: int = typer.Option(None, "--train-subset", min=1,
                                     help="Train on only this many images (smoke runs)."),
    test_subset: int = typer.Option(None, "--test-subset", min=1,
                                    help="Test on only this many images (smoke runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON line."),
) -> None:
    """Retrain an exported pipeline on the whole training set and score it on the test split
    (progress with time left on stderr)."""
    from ma2ml.local.export import ConsoleProgress, retrain_exported
    from ma2ml.trainer.errors import DataError

    try:
        with ConsoleProgress(Console(stderr=True)) as progress:
            metrics = retrain_exported(directory, epochs=epochs, seed=seed, device=device,
                                       train_subset=train_subset, test_subset=test_subset,
                                       progress=progress)
    except (ValueError, DataError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        typer.echo(json.dumps(metrics))
        return
    for key, value in metrics.items():
        console.print(f"{key}: {_cell(value) if isinstance(value, float) else value}",
                      highlight=False)


def report(target: str = TARGET, db: str = DB_OPTION,
           out: Path = typer.Option(Path("ma2ml-report"), "--out",
                                    help="Directory for the PNGs and index.html.")) -> None:
    """Write plots (PNG) and one self-contained HTML page for a search."""
    from ma2ml.local.report import write_report

    store, record = _requires_search(target, db)
    with store:
        written = write_report(store, record, out)
    console.print(f"wrote {inert(written.html)} and {len(written.images)} plots",
                  highlight=False)


def delete(target: str = TARGET, db: str = DB_OPTION,
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")
           ) -> None:
    """Delete a search with all its trials, learning curves and policy snapshots."""
    store, record = _requires_search(target, db)
    with store:
        counts = store.counts(record.id)
        what = (f"search {inert(record.name)} ({inert(record.state)}): {counts.total} trials, "
                f"{counts.results} with results")
        if not yes:
            if not sys.stdin.isatty():
                typer.echo(f"error: would delete {what}; add --yes to confirm", err=True)
                raise typer.Exit(EXIT_BAD_INPUT)
            typer.confirm(f"Delete {what}?", abort=True)
        store.delete_search(record.name)
    console.print(f"deleted {what}", highlight=False)
