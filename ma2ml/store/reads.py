"""Every read of the trial table: counts, time used, listings, best trial, new results,
replay samples.

Finished trials (completed, diverged, stopped, failed) carry ``finished_seq`` 1, 2, ...
in commit order with no gaps, which makes two reads cheap at any table size:
``finished_since`` is an index range scan, and ``replay_sample`` draws sequence
numbers in Python and fetches exactly those rows by index (no ``ORDER BY random()``).

The learner's reads (``results_since``, ``replay_results``, ``proposed_actions``)
are bounded pages of the few columns it learns from: with a backlog of 100k
results, one tick reads one page by keyset (``finished_seq > last``, or ``number
> last``), never an OFFSET and never the whole table, and skips the pipeline and
metrics JSON it does not need.
"""

from __future__ import annotations

import json
import random
from collections.abc import Container
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, Text, case, cast, func, select
from sqlalchemy.orm import Session

from ma2ml.store.engine import db_epoch
from ma2ml.store.errors import SearchNotFoundError
from ma2ml.store.lifecycle import TERMINAL_STATUSES, Counts, TrialStatus, Usage
from ma2ml.store.models import SEARCHES, SNAPSHOTS, STEPS, TRIALS
from ma2ml.store.records import STATUSES, ResultRecord, StepRecord, TrialRecord

#: Columns ``list_trials`` can order by.
ORDER_COLUMNS: dict[str, ColumnElement[Any]] = {
    name: TRIALS.c[name]
    for name in (
        "number",
        "id",
        "reward",
        "finished_seq",
        "created_at",
        "started_at",
        "finished_at",
    )
}
# Keeps IN lists well under SQLite's bound-parameter limit.
_IN_CHUNK = 5000


def trial_record(row: Row[Any]) -> TrialRecord:
    """A ``TrialRecord`` from a full row of the trials table."""
    return TrialRecord(
        id=row.id,
        search_id=row.search_id,
        number=row.number,
        status=TrialStatus(row.status),
        attempt=row.attempt,
        failures=row.failures,
        pipeline=row.pipeline,
        action=row.action,
        behaviour_logp=row.behaviour_logp,
        policy_version=row.policy_version,
        worker=row.worker,
        reward=row.reward,
        metrics=row.metrics,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        finished_seq=row.finished_seq,
        last_step=row.last_step,
    )


def _trials() -> Select[Any]:
    return select(*TRIALS.c)


def get_trial(session: Session, trial_id: int) -> TrialRecord | None:
    """One trial by id."""
    row = session.execute(_trials().where(TRIALS.c.id == trial_id)).first()
    return trial_record(row) if row is not None else None


def list_trials(
    session: Session,
    search_id: int,
    status: str | None,
    order_by: str,
    descending: bool,
    limit: int | None,
) -> list[TrialRecord]:
    """Trials of a search, optionally of one status, ordered by a known column."""
    if order_by not in ORDER_COLUMNS:
        known = ", ".join(sorted(ORDER_COLUMNS))
        raise ValueError(f"cannot order trials by {order_by!r}; known: {known}")
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; known: {', '.join(STATUSES)}")
    column = ORDER_COLUMNS[order_by]
    # NULLs (e.g. no reward yet) go last either way, the same on both backends.
    ordering = (column.desc() if descending else column.asc()).nulls_last()
    statement = _trials().where(TRIALS.c.search_id == search_id)
    if status is not None:
        statement = statement.where(TRIALS.c.status == status)
    statement = statement.order_by(ordering, TRIALS.c.id).limit(limit)
    return [trial_record(row) for row in session.execute(statement)]


def counts(session: Session, search_id: int) -> Counts:
    """Number of trials per status."""
    statement = (
        select(TRIALS.c.status, func.count())
        .where(TRIALS.c.search_id == search_id)
        .group_by(TRIALS.c.status)
    )
    return Counts.of({status: count for status, count in session.execute(statement)})


def usage(session: Session, search_id: int) -> Usage:
    """Time the search has used (``lifecycle.Usage``), in one statement on the database
    clock: its age, and the sum of its trials' training time. A trial adds its earlier
    attempts (``trained_seconds``) and its current one: a finished trial up to its result,
    a running one up to its last heartbeat (so the sum never goes down when a silent
    worker's trial is handed over); a held or pending trial has no current attempt."""
    started = TRIALS.c.started_at
    current = case(
        (started.is_(None), 0.0),
        (TRIALS.c.status == TrialStatus.running, TRIALS.c.heartbeat_at - started),
        (TRIALS.c.status.in_(TERMINAL_STATUSES), TRIALS.c.finished_at - started),
        else_=0.0,
    )
    trained = (select(func.coalesce(func.sum(TRIALS.c.trained_seconds + current), 0.0))
               .where(TRIALS.c.search_id == search_id).scalar_subquery())
    row = session.execute(select(db_epoch() - SEARCHES.c.created_at, trained)
                          .where(SEARCHES.c.id == search_id)).first()
    if row is None:
        raise SearchNotFoundError(f"no search with id {search_id!r}")
    return Usage(max(0.0, float(row[0])), max(0.0, float(row[1])))


def pending_count(session: Session, search_id: int) -> int:
    """Number of pending trials (the learner's prefetch gauge)."""
    statement = select(func.count()).where(
        TRIALS.c.search_id == search_id, TRIALS.c.status == TrialStatus.pending
    )
    return session.execute(statement).scalar_one()


def max_trial_number(session: Session, search_id: int) -> int:
    """Highest trial number handed out in the search (0 before the first trial)."""
    statement = select(SEARCHES.c.trial_count).where(SEARCHES.c.id == search_id)
    return session.execute(statement).scalar() or 0


def best_trial(session: Session, search_id: int) -> TrialRecord | None:
    """The completed trial with the highest reward (kept up to date by ``complete``)."""
    statement = _trials().join(SEARCHES, SEARCHES.c.best_trial_id == TRIALS.c.id)
    row = session.execute(statement.where(SEARCHES.c.id == search_id)).first()
    return trial_record(row) if row is not None else None


def finished_since(
    session: Session, search_id: int, seq: int, limit: int | None
) -> list[TrialRecord]:
    """Finished trials with ``finished_seq > seq``, in sequence order."""
    statement = (
        _trials()
        .where(TRIALS.c.search_id == search_id, TRIALS.c.finished_seq > seq)
        .order_by(TRIALS.c.finished_seq)
        .limit(limit)
    )
    return [trial_record(row) for row in session.execute(statement)]


def replay_sample(session: Session, search_id: int, n: int, seed: int | None) -> list[TrialRecord]:
    """``n`` finished trials drawn uniformly without replacement (fewer if fewer exist).

    Sequence numbers are drawn in Python and fetched by the (search_id,
    finished_seq) index, so the cost depends on ``n``, not on the table size.
    The result is in draw order.
    """
    rows = _rows_by_seq(session, search_id, _draw_seqs(session, search_id, n, seed), _trials())
    return [trial_record(row) for row in rows]


def _draw_seqs(session: Session, search_id: int, n: int, seed: int | None) -> list[int]:
    """``min(n, results)`` distinct sequence numbers of the search, uniformly drawn."""
    total = session.execute(
        select(SEARCHES.c.result_seq).where(SEARCHES.c.id == search_id)
    ).scalar()
    if not total or n <= 0:
        return []
    return random.Random(seed).sample(range(1, total + 1), min(n, total))


def _rows_by_seq(session: Session, search_id: int, seqs: list[int],
                 statement: Select[Any]) -> list[Row[Any]]:
    """The rows of ``statement`` (which selects ``finished_seq``) with these sequence
    numbers, in the order given."""
    by_seq: dict[int, Row[Any]] = {}
    for start in range(0, len(seqs), _IN_CHUNK):
        chunk = seqs[start : start + _IN_CHUNK]
        page = statement.where(TRIALS.c.search_id == search_id, TRIALS.c.finished_seq.in_(chunk))
        by_seq.update((row.finished_seq, row) for row in session.execute(page))
    return [by_seq[seq] for seq in seqs if seq in by_seq]


def curves(session: Session, search_id: int, trial_ids: list[int] | None
           ) -> dict[int, list[StepRecord]]:
    """Learning curves: trial id -> its steps in order (only ``trial_ids`` when given)."""
    statement = select(STEPS).where(STEPS.c.search_id == search_id)
    if trial_ids is not None:
        if not trial_ids:
            return {}
        statement = statement.where(STEPS.c.trial_id.in_(trial_ids[:_IN_CHUNK]))
    out: dict[int, list[StepRecord]] = {}
    for row in session.execute(statement.order_by(STEPS.c.trial_id, STEPS.c.step)):
        out.setdefault(row.trial_id, []).append(
            StepRecord(row.trial_id, row.step, row.value, row.metrics, row.decision))
    return out


def snapshot_versions(session: Session, search_id: int) -> list[int]:
    """Every policy snapshot version of a search, oldest first (no stats, no state)."""
    statement = (select(SNAPSHOTS.c.version).where(SNAPSHOTS.c.search_id == search_id)
                 .order_by(SNAPSHOTS.c.version))
    return list(session.execute(statement).scalars())


def snapshot_stats_of(session: Session, search_id: int, versions: list[int]
                      ) -> list[tuple[int, float, dict[str, Any]]]:
    """``(version, created_at, stats)`` of the given versions only (at most 5000), oldest
    first: a bounded read where ``searches.snapshot_stats`` reads every version."""
    if not versions:
        return []
    statement = (
        select(SNAPSHOTS.c.version, SNAPSHOTS.c.created_at, SNAPSHOTS.c.stats)
        .where(SNAPSHOTS.c.search_id == search_id,
               SNAPSHOTS.c.version.in_(versions[:_IN_CHUNK]))
        .order_by(SNAPSHOTS.c.version)
    )
    return [(row.version, row.created_at, row.stats) for row in session.execute(statement)]


# -- the learner's reads: bounded pages of the columns it learns from ------------------

_RESULT_COLUMNS = (TRIALS.c.finished_seq, TRIALS.c.status, TRIALS.c.action,
                   TRIALS.c.behaviour_logp, TRIALS.c.reward, TRIALS.c.last_step)


def _result_record(row: Row[*tuple[Any, ...]]) -> ResultRecord:
    return ResultRecord(row.finished_seq, TrialStatus(row.status), row.action,
                        row.behaviour_logp, row.reward, row.last_step)


def results_since(session: Session, search_id: int, seq: int, limit: int) -> list[ResultRecord]:
    """At most ``limit`` finished trials with ``finished_seq > seq``, in sequence order:
    one range scan of the (search_id, finished_seq) index, whatever lies beyond."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, not {limit}")
    statement = (
        select(*_RESULT_COLUMNS)
        .where(TRIALS.c.search_id == search_id, TRIALS.c.finished_seq > seq)
        .order_by(TRIALS.c.finished_seq)
        .limit(limit)
    )
    return [_result_record(row) for row in session.execute(statement)]


def replay_results(session: Session, search_id: int, n: int, seed: int | None,
                   cached: Container[int] = ()) -> tuple[list[int], list[ResultRecord]]:
    """The draws of ``replay_sample`` (same sequence numbers for the same seed, in draw
    order) and the learner's columns of those not in ``cached``: a learner that keeps
    what it read fetches only what it has not seen."""
    seqs = _draw_seqs(session, search_id, n, seed)
    wanted = [seq for seq in seqs if seq not in cached]
    rows = _rows_by_seq(session, search_id, wanted, select(*_RESULT_COLUMNS))
    return seqs, [_result_record(row) for row in rows]


def proposed_actions(session: Session, search_id: int, after_number: int, limit: int
                     ) -> list[tuple[int, dict[str, Any]]]:
    """``(number, action)`` of at most ``limit`` trials of the search numbered after
    ``after_number``, in number order (the (search_id, number) index): one page of
    every joint action ever proposed, whatever its status."""
    if limit <= 0:
        raise ValueError(f"limit must be positive, not {limit}")
    # The JSON as text, parsed in one call per page: decoding row by row costs more
    # than the query itself when a restart recalls 100k actions.
    statement = (
        select(TRIALS.c.number, cast(TRIALS.c.action, Text))
        .where(TRIALS.c.search_id == search_id, TRIALS.c.number > after_number)
        .order_by(TRIALS.c.number)
        .limit(limit)
    )
    rows = session.execute(statement).all()
    actions = json.loads("[" + ",".join(text for _, text in rows) + "]")
    return [(row[0], action) for row, action in zip(rows, actions, strict=True)]
