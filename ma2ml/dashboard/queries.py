"""JSON views of searches and trials, built on the store's read API.

Every view is a plain dict (the app serialises it with the store's own
``dumps_json``, which writes NaN and infinities as null). Summaries come from
``ma2ml.results.summary`` so the dashboard, ``ma2ml status`` and the report
agree on counts, progress, the best trial, the time used and the time left.
"""

from __future__ import annotations

import time
from typing import Any

from ma2ml.results.summary import (
    BEST_RANKING,
    STATUS_ORDER,
    Summary,
    curve_points,
    summarize,
    trial_row,
)
from ma2ml.spaces.display import compact_pipeline
from ma2ml.store import (
    STATUSES,
    TERMINAL_SEARCH_STATES,
    TERMINAL_STATUSES,
    SearchRecord,
    SearchState,
    Store,
    TrialRecord,
    TrialStatus,
)
from ma2ml.store.lifecycle import HELD

#: Characters of a trial's error shown in its details (the end: where the cause is).
ERROR_TAIL = 4000
#: Characters of the pipeline text each table row carries (the text filter searches it).
PIPELINE_TEXT = 400
#: The page's colour of each trial status (a held trial is drawn as a running one).
STATUS_COLOURS = {
    TrialStatus.completed: "#2563eb", TrialStatus.stopped: "#9ca3af",
    TrialStatus.diverged: "#d97706", TrialStatus.failed: "#dc2626",
    TrialStatus.running: "#0ea5e9", TrialStatus.pending: "#6b7280",
}


def statuses_view() -> dict[str, Any]:
    """The status vocabulary the page filters, plots and colours by (``/api/statuses``),
    so its script holds no list of its own: every trial status in the store's order, the
    terminal ones in the report's order (completed, stopped early, diverged, failed), the
    active ones, what a held trial shows, and the search states."""
    terminal = sorted(TERMINAL_STATUSES, key=lambda s: STATUS_ORDER.get(s, len(STATUS_ORDER)))
    return {
        "trial": [str(s) for s in STATUSES],
        "terminal": [str(s) for s in terminal],
        "active": [str(s) for s in STATUSES if s not in TERMINAL_STATUSES],
        "held": HELD,
        "search": [str(s) for s in SearchState],
        "search_terminal": [str(s) for s in SearchState if s in TERMINAL_SEARCH_STATES],
        "colours": {str(s): colour for s, colour in STATUS_COLOURS.items()},
    }


def _summary_json(summary: Summary, record: SearchRecord) -> dict[str, Any]:
    best = summary.best
    return {
        "id": record.id, "name": record.name, "state": str(summary.state),
        "message": record.message, "done": summary.done, "max_trials": summary.max_trials,
        "counts": dict(summary.counts), "created_at": record.created_at,
        "finished_at": record.finished_at, "elapsed": summary.elapsed,
        "eta": summary.eta_seconds(),
        # Time used against the budget's limits, as every other view words it.
        "training_seconds": summary.usage.training_seconds, "time_used": summary.time_used(),
        "max_duration": summary.max_duration, "max_training_hours": summary.max_training_hours,
        "ended_by": summary.ended_by(),
        "best": None if best is None else {
            "id": best.id, "number": best.number, "reward": best.reward,
            "accuracy": (best.metrics or {}).get("accuracy")},
        "algorithm": str(record.search.spec.algorithm.name),
    }


def searches_view(store: Store, limit: int) -> dict[str, Any]:
    """The newest ``limit`` searches, newest first, with phase, progress, best and age."""
    now = time.time()
    records = store.list_searches()
    newest = records[::-1][:limit]
    rows = [_summary_json(summarize(store, r, now=now, baseline=False), r) for r in newest]
    return {"now": now, "total": len(records), "searches": rows}


def space_json(record: SearchRecord) -> list[dict[str, Any]]:
    """The search space: per agent, its decisions and their values as text."""
    space = record.search.spec.search_space()
    return [{"name": a.name, "preset": a.preset,
             "decisions": [{"name": d.name, "values": [str(v) for v in d.values]}
                           for d in a.decisions]} for a in space.agents]


def search_view(store: Store, record: SearchRecord) -> dict[str, Any]:
    """One search at a glance, with its entropy per agent and its search space."""
    summary = summarize(store, record, now=time.time(), baseline=False)
    agents = record.search.spec.agents
    return {**_summary_json(summary, record), "now": time.time(), "entropy": summary.entropy,
            "ranking": BEST_RANKING, "space": space_json(record),
            "preview": any(a.preset == "autoaugment" for a in agents)}


def _row(trial: TrialRecord) -> dict[str, Any]:
    text = "; ".join(f"{agent}: {t}" for agent, t in compact_pipeline(trial.pipeline).items())
    return {**trial_row(trial), "id": trial.id, "finished_seq": trial.finished_seq,
            "pipeline": text[:PIPELINE_TEXT],
            "error": None if trial.error is None else trial.error[-200:]}


def trials_view(store: Store, record: SearchRecord, *, status: str | None, sort: str,
                descending: bool, limit: int) -> dict[str, Any]:
    """A page of the trials table (``sort``: a ``Store.list_trials`` column)."""
    counts = store.counts(record.id)
    wanted = None if status is None else TrialStatus(status)
    listed = store.list_trials(record.id, status=wanted, order_by=sort, descending=descending,
                               limit=limit)
    matching = counts[status] if status else counts.total
    return {"total": matching, "shown": len(listed), "statuses": list(STATUSES),
            "trials": [_row(t) for t in listed]}


def trial_view(store: Store, record: SearchRecord, trial: TrialRecord) -> dict[str, Any]:
    """Everything about one trial: pipeline, metrics, error tail and learning curve."""
    steps = store.curves(record.id, [trial.id]).get(trial.id, [])
    error = trial.error
    return {
        **trial_row(trial), "id": trial.id, "search_id": record.id,
        "pipeline": trial.pipeline, "action": trial.action,
        "behaviour_logp": trial.behaviour_logp, "metrics": trial.metrics or {},
        "error_tail": None if error is None else error[-ERROR_TAIL:],
        "error_truncated": error is not None and len(error) > ERROR_TAIL,
        "created_at": trial.created_at, "started_at": trial.started_at,
        "finished_at": trial.finished_at, "finished_seq": trial.finished_seq,
        "curve": curve_points(steps),
    }
