"""The trial queue: enqueue, claim with a lease, heartbeat, complete, fail, release, requeue.

Each function runs inside one write transaction (the caller's session) and uses
Core statements on the tables, one round trip each where possible.

Edges: each function that writes a trial's status names its ``TrialMove``; its SQL
filters on that edge's sources (``_from``) and writes only its targets (``_to``), both
read from ``lifecycle.TRIAL_EDGES``, so the table and the statements cannot drift apart.

Fencing: every report names the ``attempt`` it claimed; a hand-over bumps the
attempt. Heartbeats, failures and releases only touch the row ``WHERE attempt =
:attempt AND status = 'running'``, so a previous holder can no longer keep, fail
or hand back a trial. A *result* is different: training finished, and throwing
it away would waste it. The first result to arrive wins, from any attempt, as
long as the trial has none yet (it is pending or running); a newer attempt that
is still running is thereby cancelled, and its worker learns so at its next
heartbeat. A result for a trial that already has one is refused
(``StaleAttemptError``), so no result is ever counted twice.

Notifications (``notify.py``): every edge into pending sends ``queued_channel`` and
every edge into a terminal status sends ``results_channel`` of the trial's search,
in the same transaction, so they are delivered at COMMIT and only then.

Held trials (prefetch): ``claim_ahead`` leases a trial to a worker that is still
training another one. It is ``running`` (its lease is kept and fenced like any
other) with ``started_at`` NULL until the worker starts training it
(``start_held``, which sets ``started_at``). Readers show such a trial as held by
its worker (``lifecycle.is_held``), and a held trial whose lease expires goes back
to pending without counting as a failed attempt: it never ran.

Training time (``reads.usage``, for ``budget.maxTrainingHours``): an attempt trains
from ``started_at``; a hand-over adds its time to ``trained_seconds`` and clears
``started_at`` (a released or failed attempt up to now, an expired one up to its last
heartbeat), so work lost to a retry or a preempted worker still counts.

Lock order, to stay free of deadlocks on PostgreSQL: a transaction that needs the
search row (to draw a ``finished_seq`` or a trial number) locks it *before* any
trial row. ``claim``, ``claim_ahead``, ``start_held``, ``heartbeat`` and ``release`` lock a single
trial row only (``start_held`` reads the search row without locking it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Double,
    Result,
    Select,
    Update,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from ma2ml.spec import EarlyStopping
from ma2ml.store.engine import db_epoch, rowcount
from ma2ml.store.errors import SearchNotFoundError, StaleAttemptError
from ma2ml.store.lifecycle import TRIAL_EDGES, SearchState, TrialMove, TrialStatus
from ma2ml.store.models import SEARCHES, STEPS, TRIALS
from ma2ml.store.notify import queued_channel, results_channel, send
from ma2ml.store.parsed import stored_search
from ma2ml.store.records import ClaimedTrial, TrialProposal
from ma2ml.store.stopping import (
    RECENT_CURVES,
    StepDecision,
    decide,
    judged,
    learns,
    needs_curves,
    rungs,
)
from ma2ml.store.text import clean_error, clean_metrics


def _from(move: TrialMove) -> tuple[ColumnElement[bool], ...]:
    """WHERE clause: the trial is in a status ``move`` leaves (``lifecycle.TRIAL_EDGES``)."""
    edge = TRIAL_EDGES[move]
    sources = sorted(edge.sources)
    status = (TRIALS.c.status == sources[0] if len(sources) == 1
              else TRIALS.c.status.in_(sources))
    return (status, TRIALS.c.started_at.is_(None)) if edge.held_only else (status,)


def _to(move: TrialMove, status: TrialStatus) -> TrialStatus:
    """``status``, one of the targets of ``move`` (ValueError at import if not)."""
    return TRIAL_EDGES[move].target(status)


# Columns to clear whenever a trial stops running.
_LEASE_CLEARED: dict[str, Any] = {"lease_expires_at": None}


def _attempt_ended(end: ColumnElement[float]) -> dict[str, Any]:
    """Values that hand an attempt's training time (from ``started_at`` to ``end``) to
    ``trained_seconds`` and clear its start: the next attempt counts its own."""
    ran = case((TRIALS.c.started_at.is_(None), 0.0), else_=end - TRIALS.c.started_at)
    return {"trained_seconds": TRIALS.c.trained_seconds + ran, "started_at": None}


# The hot paths (claim, heartbeat, complete) execute statements built once here with
# bound parameters: building a statement costs more CPU than running it on a local
# database. Parameter names start with "p_" (column names are reserved in SET).
def _held_by(move: TrialMove) -> tuple[ColumnElement[bool], ...]:
    """WHERE clause of a fenced write, bound: this attempt holds the trial ``move`` leaves."""
    return (TRIALS.c.id == bindparam("p_trial_id"),
            TRIALS.c.attempt == bindparam("p_attempt"), *_from(move))


# Which attempt may report a result, per status a result leaves: for a running trial the
# running one or an earlier one, for a pending trial one that was handed over. (A status
# added to the edge's sources without a fence here fails at import.)
_RESULT_FENCE = {
    TrialStatus.running: TRIALS.c.attempt >= bindparam("p_attempt"),
    TrialStatus.pending: TRIALS.c.attempt > bindparam("p_attempt"),
}
# The trial has no result yet and the report comes from an attempt that ran.
_OPEN = (
    TRIALS.c.id == bindparam("p_trial_id"),
    or_(*(and_(TRIALS.c.status == status, _RESULT_FENCE[status])
          for status in sorted(TRIAL_EDGES[TrialMove.complete].sources))),
)
_LEASE_END = db_epoch() + bindparam("p_lease", type_=Double())

# SKIP LOCKED (PostgreSQL): concurrent claimers each take a different row instead
# of queueing on the same one. SQLite ignores it; BEGIN IMMEDIATE already
# serialises writers there.
_OLDEST_PENDING_ROW = (
    select(TRIALS.c.id)
    .where(TRIALS.c.search_id == bindparam("p_search_id"), *_from(TrialMove.claim))
    .order_by(TRIALS.c.id)
    .limit(1)
    .with_for_update(skip_locked=True)
)
_OLDEST_PENDING = _OLDEST_PENDING_ROW.scalar_subquery()


def _claim_statement(target: Any, move: TrialMove, *, held: bool = False) -> Update:
    return (
        update(TRIALS)
        .where(TRIALS.c.id == target, *_from(move))
        .values(
            status=_to(move, TrialStatus.running),
            worker=bindparam("p_worker"),
            # A held trial has not started (also clears an earlier attempt's start).
            started_at=None if held else db_epoch(),
            heartbeat_at=db_epoch(),
            lease_expires_at=_LEASE_END,
        )
        .returning(
            TRIALS.c.id,
            TRIALS.c.number,
            TRIALS.c.attempt,
            TRIALS.c.pipeline,
            TRIALS.c.action,
            TRIALS.c.policy_version,
        )
    )


_CLAIM = _claim_statement(_OLDEST_PENDING, TrialMove.claim)
# Workers holding a running trial of the search.
_HOLDERS = (
    select(func.count(func.distinct(TRIALS.c.worker)))
    .where(TRIALS.c.search_id == bindparam("p_search_id"),
           TRIALS.c.status == TrialStatus.running)
    .scalar_subquery()
)
# A claim ahead passes over the oldest pending trials, as many as there are idle
# workers (``p_parallelism`` minus the holders), counted in the same statement. It
# reads them without locking: an OFFSET under FOR UPDATE would lock every row it steps
# past (PostgreSQL locks a row before OFFSET discards it), so an idle worker claiming
# at that moment would skip the very trial left for it and find nothing.
_IDLE_WORKERS: ColumnElement[Any] = bindparam("p_parallelism") - _HOLDERS
_LEFT_TO_IDLE = (
    select(TRIALS.c.id)
    .where(TRIALS.c.search_id == bindparam("p_search_id"), *_from(TrialMove.claim))
    .order_by(TRIALS.c.id)
    .limit(case((_IDLE_WORKERS > 0, _IDLE_WORKERS), else_=0))
)
_CLAIM_AHEAD = _claim_statement(
    _OLDEST_PENDING_ROW.where(TRIALS.c.id.not_in(_LEFT_TO_IDLE)).scalar_subquery(),
    TrialMove.claim_ahead, held=True)
_HEARTBEAT = (
    update(TRIALS).where(*_held_by(TrialMove.heartbeat))
    .values(heartbeat_at=db_epoch(), lease_expires_at=_LEASE_END)
)
_OWN_SEARCH = SEARCHES.c.id == TRIALS.c.search_id
# Start a held trial: still this attempt's, not started, its search running; renews the
# lease and answers with the search's spec, all in one statement (the worker's round
# trip between two trials).
_START_HELD = (
    update(TRIALS)
    .where(*_held_by(TrialMove.start_held),
           select(SEARCHES.c.id).where(_OWN_SEARCH, SEARCHES.c.state == SearchState.running)
           .exists())
    .values(started_at=db_epoch(), heartbeat_at=db_epoch(), lease_expires_at=_LEASE_END)
    .returning(select(SEARCHES.c.spec).where(_OWN_SEARCH).scalar_subquery())
)


def _next_seq_statement(best_candidate: bool, reporter: tuple[ColumnElement[bool], ...]
                        ) -> Update:
    """Draw the next ``finished_seq`` of the search of the trial that ``reporter`` matches
    (locks the search row); with ``best_candidate``, also move ``best_trial_id`` when
    ``p_reward`` beats the best."""
    held_search = select(TRIALS.c.search_id).where(*reporter).scalar_subquery()
    values: dict[str, Any] = {"result_seq": SEARCHES.c.result_seq + 1}
    if best_candidate:
        # Compare with best_reward on the search row itself, not with a subquery on
        # the best trial: on PostgreSQL a statement that waited for the row lock
        # re-reads the locked row but evaluates subqueries in its older snapshot.
        reward: BindParameter[float] = bindparam("p_reward", type_=Double())
        beats = or_(SEARCHES.c.best_reward.is_(None), SEARCHES.c.best_reward < reward)
        values["best_trial_id"] = case(
            (beats, bindparam("p_trial_id")), else_=SEARCHES.c.best_trial_id
        )
        values["best_reward"] = case((beats, reward), else_=SEARCHES.c.best_reward)
    return (
        update(SEARCHES)
        .where(SEARCHES.c.id == held_search)
        .values(values)
        .returning(SEARCHES.c.result_seq, SEARCHES.c.id)
    )


_NEXT_SEQ_FAIL = _next_seq_statement(False, _held_by(TrialMove.fail))
_NEXT_SEQ_STOP = _next_seq_statement(False, _held_by(TrialMove.report_step))
_NEXT_SEQ_RESULT = _next_seq_statement(False, _OPEN)
_NEXT_SEQ_RESULT_BEST = _next_seq_statement(True, _OPEN)
_COMPLETE = (
    update(TRIALS)
    .where(*_OPEN)
    .values(
        status=bindparam("p_status"),
        reward=bindparam("p_reward", type_=Double()),
        metrics=bindparam("p_metrics", type_=TRIALS.c.metrics.type),
        finished_seq=bindparam("p_seq"),
        finished_at=db_epoch(),
        **_LEASE_CLEARED,
    )
)


def _stale(trial_id: int, attempt: int) -> StaleAttemptError:
    return StaleAttemptError(f"trial {trial_id} attempt {attempt} does not hold the lease")


def _holder(move: TrialMove, trial_id: int, attempt: int) -> list[ColumnElement[bool]]:
    """WHERE clause of the rarer fenced updates: this attempt holds the trial ``move``
    leaves."""
    return [TRIALS.c.id == trial_id, TRIALS.c.attempt == attempt, *_from(move)]


def enqueue(session: Session, search_id: int, proposals: Sequence[TrialProposal]) -> list[int]:
    """Insert ``proposals`` as pending trials numbered after the last one; returns their ids."""
    if not proposals:
        return []
    count = len(proposals)
    row = session.execute(
        update(SEARCHES)
        .where(SEARCHES.c.id == search_id)
        .values(trial_count=SEARCHES.c.trial_count + count)
        .returning(SEARCHES.c.trial_count, db_epoch())
    ).first()
    if row is None:
        raise SearchNotFoundError(f"no search with id {search_id}")
    last_number, now = row
    rows = [
        {
            "search_id": search_id,
            "number": last_number - count + 1 + index,
            "status": _to(TrialMove.enqueue, TrialStatus.pending),
            "attempt": 1,
            "failures": 0,
            "pipeline": proposal.pipeline,
            "action": proposal.action,
            "behaviour_logp": proposal.behaviour_logp,
            "policy_version": proposal.policy_version,
            "created_at": now,
        }
        for index, proposal in enumerate(proposals)
    ]
    statement = insert(TRIALS).returning(TRIALS.c.id, sort_by_parameter_order=True)
    ids = list(session.execute(statement, rows).scalars())
    send(session, queued_channel(search_id))
    return ids


def claim(
    session: Session, search_id: int, worker: str, lease_seconds: float
) -> ClaimedTrial | None:
    """Lease the oldest pending trial of the search to ``worker``; None when none is pending."""
    parameters = {"p_search_id": search_id, "p_worker": worker, "p_lease": float(lease_seconds)}
    return _claimed(session.execute(_CLAIM, parameters).first(), search_id)


def claim_ahead(session: Session, search_id: int, worker: str, lease_seconds: float,
                parallelism: int) -> ClaimedTrial | None:
    """Lease a trial for ``worker`` to hold while its current one trains (prefetch).

    A prefetched trial waits for its holder, so it must not be one an idle worker
    would start now: the claim passes over as many pending trials as there are
    idle workers, ``parallelism`` minus the workers holding a running trial, and
    returns None when no trial is left beyond those. (An estimate: a worker that
    died still counts until its lease expires.)
    """
    parameters = {"p_search_id": search_id, "p_worker": worker, "p_lease": float(lease_seconds),
                  "p_parallelism": int(parallelism)}
    return _claimed(session.execute(_CLAIM_AHEAD, parameters).first(), search_id)


def _claimed(row: Any, search_id: int) -> ClaimedTrial | None:
    if row is None:
        return None
    return ClaimedTrial(
        id=row.id,
        number=row.number,
        search_id=search_id,
        attempt=row.attempt,
        pipeline=row.pipeline,
        action=row.action,
        policy_version=row.policy_version,
    )


def heartbeat(session: Session, trial_id: int, attempt: int, lease_seconds: float) -> bool:
    """Extend the lease; False when this attempt no longer holds the trial."""
    parameters = {"p_trial_id": trial_id, "p_attempt": attempt, "p_lease": float(lease_seconds)}
    result = session.execute(_HEARTBEAT, parameters)
    return rowcount(result) == 1


def start_held(session: Session, trial_id: int, attempt: int, lease_seconds: float
               ) -> dict[str, Any] | None:
    """Start training a held trial (sets ``started_at``, renews the lease); returns the
    search's spec. None, changing nothing, when this attempt no longer holds the trial,
    it started already, or its search is not running (suspended, finished, failed)."""
    parameters = {"p_trial_id": trial_id, "p_attempt": attempt, "p_lease": float(lease_seconds)}
    row = session.execute(_START_HELD, parameters).first()
    return None if row is None else dict(row[0])


def _next_seq(session: Session, trial_id: int, attempt: int, statement: Update,
              reward: float | None = None) -> int:
    """Draw the next ``finished_seq`` (``StaleAttemptError`` when the reporter does not
    match) and notify the search's results channel: the trial is about to end.
    ``reward`` is a candidate for the search's best trial (None: not a candidate).
    """
    parameters: dict[str, Any] = {"p_trial_id": trial_id, "p_attempt": attempt}
    if reward is not None:
        parameters["p_reward"] = reward
    row = session.execute(statement, parameters).first()
    if row is None:
        raise _stale(trial_id, attempt)
    send(session, results_channel(row.id))
    return int(row.result_seq)


def _check_finished(result: Result[Any], trial_id: int, attempt: int) -> None:
    if rowcount(result) != 1:
        # Lost a race with a hand-over after the seq was drawn: the caller's
        # rollback returns the seq, so sequences never have gaps.
        raise _stale(trial_id, attempt)


_COMPLETED = _to(TrialMove.complete, TrialStatus.completed)
_DIVERGED = _to(TrialMove.complete, TrialStatus.diverged)


def complete(
    session: Session,
    trial_id: int,
    attempt: int,
    reward: float,
    metrics: dict[str, Any],
    diverged: bool,
) -> int:
    """Record the result of a trial that has none yet; returns its ``finished_seq``.

    First result wins: ``attempt`` may be older than the trial's current one (a late
    report after a hand-over), which cancels the newer attempt. A diverged trial may
    report a non-finite reward, stored as NULL; a completed one must report a finite
    reward. Metrics are cleaned and bounded (``text.clean_metrics``).
    """
    finite = math.isfinite(reward)
    if not finite and not diverged:
        raise ValueError(f"reward {reward!r} is not finite; report the trial as diverged")
    stored = float(reward) if finite else None
    cleaned = clean_metrics(metrics)
    if diverged or stored is None:
        seq = _next_seq(session, trial_id, attempt, _NEXT_SEQ_RESULT)
    else:
        seq = _next_seq(session, trial_id, attempt, _NEXT_SEQ_RESULT_BEST, stored)
    parameters = {
        "p_trial_id": trial_id,
        "p_attempt": attempt,
        "p_status": _DIVERGED if diverged else _COMPLETED,
        "p_reward": stored,
        "p_metrics": cleaned,
        "p_seq": seq,
    }
    _check_finished(session.execute(_COMPLETE, parameters), trial_id, attempt)
    return seq


def fail(
    session: Session, trial_id: int, attempt: int, error: str, retryable: bool, max_retries: int
) -> TrialStatus:
    """Record a failed attempt: back to pending (retry) or failed; returns the new status.

    Only the attempt holding the trial may fail it; ``error`` is cleaned and capped.
    """
    error = clean_error(error)
    move = TrialMove.fail
    row = session.execute(select(TRIALS.c.failures)
                          .where(*_holder(move, trial_id, attempt))).first()
    if row is None:
        raise _stale(trial_id, attempt)
    if retryable and row.failures < max_retries:
        return _hand_over(session, move, trial_id, attempt, failed=True, error=error)
    seq = _next_seq(session, trial_id, attempt, _NEXT_SEQ_FAIL)
    values = {
        "status": _to(move, TrialStatus.failed),
        "failures": TRIALS.c.failures + int(retryable),
        "error": error,
        "finished_seq": seq,
        "finished_at": db_epoch(),
        **_LEASE_CLEARED,
    }
    result = session.execute(update(TRIALS).where(*_holder(move, trial_id, attempt))
                             .values(values))
    _check_finished(result, trial_id, attempt)
    return _to(move, TrialStatus.failed)


def _hand_over(session: Session, move: TrialMove, trial_id: int, attempt: int, *,
               failed: bool, error: str | None = None) -> TrialStatus:
    """Fenced return of a running trial to pending under the next attempt number."""
    status = _to(move, TrialStatus.pending)
    values: dict[str, Any] = {
        "status": status,
        "attempt": TRIALS.c.attempt + 1,
        "failures": TRIALS.c.failures + int(failed),
        "worker": None,
        **_attempt_ended(db_epoch()),  # the worker hands it back now
        **_LEASE_CLEARED,
    }
    if error is not None:
        values["error"] = error
    statement = update(TRIALS).where(*_holder(move, trial_id, attempt)).values(values)
    search_id = session.execute(statement.returning(TRIALS.c.search_id)).scalar()
    if search_id is None:
        if failed:
            raise _stale(trial_id, attempt)
        return status
    send(session, queued_channel(search_id))
    return status


def release(session: Session, trial_id: int, attempt: int) -> None:
    """Graceful hand-back (worker shutting down): pending again, failures unchanged.

    A no-op when the attempt no longer holds the trial.
    """
    _hand_over(session, TrialMove.release, trial_id, attempt, failed=False)


def _expired(search_id: int) -> Select[Any]:
    return (
        select(TRIALS.c.id, TRIALS.c.failures, TRIALS.c.started_at)
        .where(
            TRIALS.c.search_id == search_id,
            *_from(TrialMove.requeue_expired),
            TRIALS.c.lease_expires_at < db_epoch(),
        )
        .order_by(TRIALS.c.id)
    )


def any_expired(session: Session, search_id: int) -> bool:
    """Whether a running trial of the search has an expired lease (read only)."""
    return session.execute(_expired(search_id).limit(1)).first() is not None


def requeue_expired(session: Session, search_id: int, max_retries: int) -> tuple[int, int]:
    """Hand expired leases over: pending again, or failed once out of retries.

    A held trial that never started (its worker died while training another) is
    pending again without counting a failure: nothing of it ran.
    Returns ``(requeued, failed)``.
    """
    # Search row first (lock order), then the expired trial rows; SKIP LOCKED
    # passes over a trial whose worker is heartbeating it at this very moment.
    search_lock = select(SEARCHES.c.id).where(SEARCHES.c.id == search_id)
    session.execute(search_lock.with_for_update(key_share=True))
    rows = session.execute(_expired(search_id).with_for_update(skip_locked=True)).all()
    held = [row.id for row in rows if row.started_at is None]
    ran = [row for row in rows if row.started_at is not None]
    give_up = [row.id for row in ran if row.failures >= max_retries]
    retry = [row.id for row in ran if row.failures < max_retries]
    move = TrialMove.requeue_expired
    if held:
        session.execute(
            update(TRIALS)
            .where(TRIALS.c.id.in_(held), *_from(move))
            .values(status=_to(move, TrialStatus.pending), attempt=TRIALS.c.attempt + 1,
                    worker=None, **_LEASE_CLEARED)
        )
    if retry:
        session.execute(
            update(TRIALS)
            .where(TRIALS.c.id.in_(retry), *_from(move))
            .values(
                status=_to(move, TrialStatus.pending),
                attempt=TRIALS.c.attempt + 1,
                failures=TRIALS.c.failures + 1,
                worker=None,
                error="lease expired",
                # Its worker went silent: the last heartbeat is the last training known.
                **_attempt_ended(TRIALS.c.heartbeat_at),
                **_LEASE_CLEARED,
            )
        )
    if held or retry:
        send(session, queued_channel(search_id))
    if give_up:
        _fail_expired(session, search_id, give_up)
        send(session, results_channel(search_id))
    return len(held) + len(retry), len(give_up)


def _fail_expired(session: Session, search_id: int, trial_ids: list[int]) -> None:
    """Mark expired trials failed, drawing one ``finished_seq`` each (in id order)."""
    last = session.execute(
        update(SEARCHES)
        .where(SEARCHES.c.id == search_id)
        .values(result_seq=SEARCHES.c.result_seq + len(trial_ids))
        .returning(SEARCHES.c.result_seq)
    ).scalar_one()
    first = last - len(trial_ids) + 1
    move = TrialMove.requeue_expired
    for offset, trial_id in enumerate(trial_ids):
        session.execute(
            update(TRIALS)
            .where(TRIALS.c.id == trial_id, *_from(move))
            .values(
                status=_to(move, TrialStatus.failed),
                attempt=TRIALS.c.attempt + 1,
                failures=TRIALS.c.failures + 1,
                error="lease expired; out of retries",
                finished_at=db_epoch(),
                finished_seq=first + offset,
                **_LEASE_CLEARED,
            )
        )


def report_step(
    session: Session,
    trial_id: int,
    attempt: int,
    step: int,
    value: float | None,
    metrics: dict[str, Any],
) -> StepDecision:
    """Record a running trial's result at epoch ``step`` and decide whether it continues.

    Holding the search row's lock, so concurrent reports of one search are judged one
    after the other against the same recorded results, by the rule (``earlyStopping``,
    ``budget.trialEpochs``) of the spec stored in that row: never by a worker's copy, which
    an edit may have left stale. A (trial, step) already
    recorded gets its recorded answer back (a resumed attempt re-reporting an epoch).
    On ``stop`` the trial ends ``stopped`` here, with this result as its reward; it is
    never a candidate for the best trial (that is ranked at full fidelity only).
    """
    found = session.execute(select(TRIALS.c.search_id, TRIALS.c.number)
                            .where(TRIALS.c.id == trial_id)).first()
    if found is None:
        raise _stale(trial_id, attempt)
    search_id, number = found
    rule, max_epochs = _stopping_rule(session, search_id)
    move = TrialMove.report_step
    if session.execute(select(TRIALS.c.id)
                       .where(*_holder(move, trial_id, attempt))).first() is None:
        raise _stale(trial_id, attempt)
    same = (STEPS.c.trial_id == trial_id, STEPS.c.step == step)
    recorded = session.execute(select(STEPS.c.decision).where(*same)).scalar()
    if recorded is not None:
        return StepDecision(recorded)
    value = float(value) if value is not None and math.isfinite(value) else None
    decision = StepDecision.proceed
    curves = (_recent_curves(session, search_id, rungs(rule, max_epochs))
              if needs_curves(rule, step, max_epochs) else None)
    if judged(rule, step, max_epochs, number, curves):
        decision = _decide(session, rule, value, search_id, trial_id, step)
    cleaned = clean_metrics(metrics)
    session.execute(insert(STEPS).values(
        trial_id=trial_id, step=step, search_id=search_id, attempt=attempt, value=value,
        metrics=cleaned, decision=decision, created_at=db_epoch()))
    # The furthest epoch reported, not the latest report: steps reported backwards
    # (3, 2, 1) trained the trial to epoch 3, its fidelity.
    furthest = case((or_(TRIALS.c.last_step.is_(None), TRIALS.c.last_step < step), step),
                    else_=TRIALS.c.last_step)
    session.execute(update(TRIALS).where(*_holder(move, trial_id, attempt))
                    .values(last_step=furthest))
    if decision == StepDecision.stop:
        _stop(session, trial_id, attempt, value, {**cleaned, "stopped_at_epoch": step})
    return decision


def _stopping_rule(session: Session, search_id: int) -> tuple[EarlyStopping, int]:
    """Lock the search row; its stored ``earlyStopping`` and ``budget.trialEpochs``
    (parsed once per stored document, ``store.parsed``)."""
    document = session.execute(select(SEARCHES.c.spec).where(SEARCHES.c.id == search_id)
                               .with_for_update()).scalar_one()
    spec = stored_search(search_id, document).spec
    return spec.early_stopping, spec.budget.trial_epochs


def _decide(session: Session, rule: EarlyStopping, value: float | None, search_id: int,
            trial_id: int, step: int) -> StepDecision:
    """``stopping.decide`` on what the rule reads (one index range of the step): the
    completed trials' results for the learned rule, the other trials' for the rest."""
    if learns(rule):
        return decide(rule, value, (), _completed_at(session, search_id, step))
    others = session.execute(select(STEPS.c.value).where(
        STEPS.c.search_id == search_id, STEPS.c.step == step, STEPS.c.trial_id != trial_id))
    return decide(rule, value, list(others.scalars()))


def _completed_at(session: Session, search_id: int, step: int
                  ) -> list[tuple[float | None, float | None]]:
    """(result at ``step``, final reward) of the search's completed trials: what the
    learned rule learns from. One range of the (search, step) index."""
    rows = session.execute(select(STEPS.c.value, TRIALS.c.reward)
                           .join(TRIALS, TRIALS.c.id == STEPS.c.trial_id)
                           .where(STEPS.c.search_id == search_id, STEPS.c.step == step,
                                  TRIALS.c.status == TrialStatus.completed))
    return [(value, reward) for value, reward in rows]


def _recent_curves(session: Session, search_id: int, steps: Sequence[int]
                   ) -> list[list[tuple[float | None, float | None]]]:
    """Per step of ``steps``, (result there, final reward) of the search's
    ``RECENT_CURVES`` most recently completed trials that recorded that step: what
    adaptive bracket shares learn from. Two index ranges: the recent completed trials
    (by finish order), then their steps."""
    recent = (select(TRIALS.c.id, TRIALS.c.reward)
              .where(TRIALS.c.search_id == search_id,
                     TRIALS.c.status == TrialStatus.completed)
              .order_by(TRIALS.c.finished_seq.desc()).limit(RECENT_CURVES).subquery())
    rows = session.execute(select(STEPS.c.step, STEPS.c.value, recent.c.reward)
                           .join(recent, recent.c.id == STEPS.c.trial_id)
                           .where(STEPS.c.step.in_(list(steps))))
    by_step: dict[int, list[tuple[float | None, float | None]]] = {s: [] for s in steps}
    for step, value, reward in rows:
        by_step[step].append((value, reward))
    return [by_step[s] for s in steps]


def _stop(session: Session, trial_id: int, attempt: int, reward: float | None,
          metrics: dict[str, Any]) -> None:
    """End a running trial as ``stopped`` with its last intermediate result."""
    move = TrialMove.report_step
    seq = _next_seq(session, trial_id, attempt, _NEXT_SEQ_STOP)
    values = {
        "status": _to(move, TrialStatus.stopped),
        "reward": reward,
        "metrics": metrics,
        "finished_seq": seq,
        "finished_at": db_epoch(),
        **_LEASE_CLEARED,
    }
    result = session.execute(update(TRIALS).where(*_holder(move, trial_id, attempt))
                             .values(values))
    _check_finished(result, trial_id, attempt)
