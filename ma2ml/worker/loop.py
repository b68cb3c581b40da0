"""The long-lived worker: claim a trial, heartbeat its lease, train, report, repeat.

One process serves one search until the search is finished or failed (or
``stop`` is set, e.g. by SIGTERM). A background thread renews the lease
every ``leaseSeconds / 3`` (``lease.Heartbeat``); when the store says the
lease is gone (the trial was handed to another worker) training stops at the
next batch and nothing is reported. A report the store cannot take is
spooled to disk and retried with back-off (``spool.py``). Spooled reports and
epoch checkpoints are kept per search in its store (``places.py``).

While a trial trains, the next one is claimed and held (``prefetch.Ahead``),
so a worker goes from one trial to the next without waiting for the queue;
with nothing to claim, a worker waits for a NOTIFY that trials were queued
(PostgreSQL) or polls (``store.notify``). The held trial is handed back when
the worker leaves or the search is suspended.

Between two trials the worker does as little as it can before the next
trainer starts: one statement starts the held trial (``Store.start_held``:
still this worker's, search running, lease renewed, spec read), then the
trainer is spawned, and only then is the previous trial's report delivered
(on a thread, its lease still heartbeated) and the trial after next claimed.
Nothing runs twice or is lost by that order: the held trial was leased to this
worker before, and a report is delivered (or spooled) before the worker waits
for work or leaves.

Failure policy: ``TrialError`` carries its own ``retryable`` flag (a
missing dataset or a crashing custom command is not retryable: every
attempt would fail alike); any other exception (out of memory, a CUDA or
disk error) is retryable, bounded by ``budget.maxRetries``.

Learning curves and early stopping: the trainer calls ``StepReporter``
after every epoch, which records the result in the store and asks
the search's stored ``spec.earlyStopping`` whether to go on (``Store.report_step``, decided
once per epoch under the search's lock). On stop the store has already
ended the trial ``stopped`` with that epoch's result: the worker sends no
report, removes the checkpoint and claims its next trial at once. A store
outage during a step report does not stop training (the epoch goes
unrecorded, without a decision); a refused one (``StaleAttemptError``: the
trial went to another attempt or has a result) stops it like a lost lease.
Any other error of the store there is a ``StoreFault`` (a schema bug such as a
missing table): not retried and not the trial's failure; the trial is handed
back and the worker ends with the database's message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ma2ml.metrics import TRIAL_DURATION, TRIALS_FINISHED, WORKER_IMAGES_PER_SECOND
from ma2ml.spec import PipelineSearch, TrainerType
from ma2ml.store import (
    TERMINAL_SEARCH_STATES,
    ClaimedTrial,
    SearchNotFoundError,
    SearchRecord,
    SearchState,
    StaleAttemptError,
    StepDecision,
    Store,
    StoreUnavailableError,
)
from ma2ml.store.backoff import backoff_delays
from ma2ml.store.engine import error_cause
from ma2ml.store.notify import Waiter, queued_channel
from ma2ml.store.text import MetricsTooLargeError
from ma2ml.trainer.errors import TrialError, TrialInterrupted
from ma2ml.trainer.result import EpochCallback, TrialResult
from ma2ml.worker.custom import remove_stale_trial_dirs
from ma2ml.worker.errors import StoreFault
from ma2ml.worker.lease import Heartbeat
from ma2ml.worker.outcome import TrialOutcome
from ma2ml.worker.places import Places, remove_checkpoint
from ma2ml.worker.prefetch import Ahead, prefetch_setting
from ma2ml.worker.spool import Report, ReportKind, Spool, send_report

log = logging.getLogger(__name__)

DEFAULT_SPOOL_DIR = Path(".ma2ml-spool")
#: Seconds between store polls while no trial is pending or the search is suspended
#: (on PostgreSQL a NOTIFY that trials were queued ends the wait sooner).
POLL_SECONDS = 1.0
#: The first poll of an empty queue comes this soon, and each next one twice as late, up
#: to ``poll_seconds``: a queue empty for a moment (the learner is proposing, the search
#: just started) is seen refilled at once, one empty for long costs a poll a second.
FIRST_POLL_SECONDS = 0.05

__all__ = ["Heartbeat", "Trained", "deliver", "run_claimed", "run_worker", "train_claimed"]


def run_worker(store: Store, search_name: str, worker_id: str, *,
               stop: threading.Event | None = None, max_trials: int | None = None,
               spool_dir: Path = DEFAULT_SPOOL_DIR, device: str | None = None,
               poll_seconds: float = POLL_SECONDS, prefetch: int | None = None,
               threads: int | None = None) -> int:
    """Serve ``search_name`` until it ends, ``stop`` is set or ``max_trials`` ran.

    ``prefetch``: trials held ahead (0 or 1; None: ``prefetch.prefetch_setting``).
    ``threads``: torch CPU threads of the built-in trainer (None: torch's default);
    torch is imported only when the search uses the built-in trainer.
    Returns the number of trials this worker trained and reported.

    The critical path between two trials is kept short: when the next trial is held
    (prefetched) and still this worker's, its trainer starts first and the previous
    trial's report is delivered while it runs (``Trained.deliver_in_background``);
    otherwise the report is delivered before the worker looks for work, so the
    learner always sees a result before this worker waits for the next proposal.
    """
    stop = stop or threading.Event()
    depth = prefetch_setting(prefetch)
    for folder in remove_stale_trial_dirs():  # left by a worker killed mid-trial
        log.warning("removed trial folder %s of a worker that died", folder)
    # Reports and checkpoints are kept per search *in its store* (``places``): the
    # search is read first.
    record = _search(store, search_name, stop)
    if record is None:
        return 0
    run = _WorkerRun(store, search_name, worker_id, record, stop=stop, max_trials=max_trials,
                     spool_dir=spool_dir, device=device, poll_seconds=poll_seconds,
                     depth=depth, threads=threads)
    try:
        run.serve()
    finally:
        _hand_back(run.ahead)  # leaving (stop, search over or gone, an error): nothing is held
        run.settle()  # a trained result is never left behind undelivered
    log.info("worker %s leaves search %s after %d trial(s)", worker_id, search_name, run.done)
    return run.done


class _WorkerRun:
    """What ``run_worker`` carries from one trial to the next: the search as last read,
    where its reports go, the trial held ahead, and the trials whose reports are not
    settled yet."""

    def __init__(self, store: Store, search_name: str, worker_id: str, record: SearchRecord,
                 *, stop: threading.Event, max_trials: int | None, spool_dir: Path,
                 device: str | None, poll_seconds: float, depth: int, threads: int | None
                 ) -> None:
        self.store, self.search_name, self.worker_id = store, search_name, worker_id
        self.stop, self.max_trials, self.spool_dir = stop, max_trials, spool_dir
        self.device, self.poll_seconds, self.depth = device, poll_seconds, depth
        self.threads = threads
        self.record: SearchRecord | None = record
        self.places = Places.of(spool_dir, record)
        self.spool = Spool(self.places.reports)
        self.done = 0  # trials trained and reported
        self.ahead: Ahead | None = None
        self.waiter: Waiter | None = None
        # Trials trained whose reports are not settled yet, oldest first: at most the one
        # whose report is delivered in the background and the one that just ended.
        self.unsettled: list[Trained] = []
        self.idle = self._fresh_backoff()

    def serve(self) -> None:
        """Train trials until stopped, ``max_trials`` ran, or the search is over or gone."""
        while not self.stop.is_set() and self._below_max(self.trained_soon()):
            self.settle(in_background_only=True)
            if self.unsettled and (self.ahead is None or not self.ahead.holds()):
                self.settle()  # nothing to start first: the learner gets the result now
                continue
            if not self.spool.flush_with_backoff(self.store, self.stop):
                break
            claimed = self._take_held()
            if claimed is None:
                self.settle()  # before looking for work: the learner may need this result
                if self._leaving():
                    break
                claimed = self._claim()
            if claimed is None:
                self._wait()
                continue
            if self._train(claimed).interrupted:
                break

    def settle(self, in_background_only: bool = False) -> None:
        """Deliver reports now (or wait for their delivery in the background to end)."""
        while self.unsettled and (not in_background_only or self.unsettled[0].delivering):
            self.done += self.unsettled.pop(0).outcome(self.store, self.spool, self.stop).trained

    def trained_soon(self) -> int:
        """Trials trained, counting reports still to deliver."""
        return self.done + sum(trained.counts for trained in self.unsettled)

    def _below_max(self, trials: int) -> bool:
        return self.max_trials is None or trials < self.max_trials

    def _fresh_backoff(self) -> Iterator[float]:
        return backoff_delays(min(FIRST_POLL_SECONDS, self.poll_seconds), self.poll_seconds)

    def _take_held(self) -> ClaimedTrial | None:
        """The trial held ahead, in one round trip: if it is still ours and its search runs."""
        if self.ahead is None or self.record is None:
            return None
        held, self.ahead = self.ahead.start(), None
        if held is None:
            return None
        claimed, spec = held
        if spec is not None:  # re-read: budget and trainer may be edited live
            self.record = dataclasses.replace(self.record, spec=spec, state=SearchState.running)
        return claimed

    def _leaving(self) -> bool:
        """True when the worker leaves: stopped, ``max_trials`` reported, or the search
        over or gone. Otherwise re-reads the search (a search deleted and made afresh
        has its reports elsewhere)."""
        if self.stop.is_set() or not self._below_max(self.done):
            return True
        self.record = _search(self.store, self.search_name, self.stop)
        if self.record is None or self.record.state in TERMINAL_SEARCH_STATES:
            return True
        if Places.of(self.spool_dir, self.record) != self.places:  # deleted and made afresh
            self.places = Places.of(self.spool_dir, self.record)
            self.spool = Spool(self.places.reports)
        return False

    def _claim(self) -> ClaimedTrial | None:
        """A pending trial of the search just read, unless it is suspended."""
        assert self.record is not None
        search = self.record.search
        if self.record.state == SearchState.suspended:
            return None
        return _claim(self.store, self.record, search, self.worker_id)

    def _wait(self) -> None:
        """No trial to train: wait for one to be queued (or the next poll)."""
        assert self.record is not None
        self.waiter = self.waiter or self.store.listen(queued_channel(self.record.id))
        self.waiter.wait(next(self.idle), self.stop)

    def _train(self, claimed: ClaimedTrial) -> Trained:
        """Train ``claimed``; its report is settled later (``unsettled``)."""
        assert self.record is not None
        record = self.record
        search = record.search
        self.idle = self._fresh_backoff()
        previous = self.unsettled[-1] if self.unsettled else None
        hold_next = bool(self.depth and search.spec.budget.prefetch
                         and self._below_max(self.trained_soon() + 1))
        spool = self.spool

        def started() -> None:
            # The trainer runs: deliver the previous report and claim the next trial
            # now, off the path from one trainer's end to the next one's start.
            if previous is not None:
                previous.deliver_in_background(self.store, spool, self.stop)
            if hold_next:
                budget = search.spec.budget
                self.ahead = Ahead(self.store, record.id, self.worker_id,
                                   lease_seconds=budget.lease_seconds,
                                   parallelism=budget.parallelism, worker_stop=self.stop,
                                   poll_seconds=self.poll_seconds)

        current = train_claimed(self.store, search, record.name, claimed, self.worker_id,
                                stop=self.stop, places=self.places, device=self.device,
                                threads=self.threads, on_started=started)
        self.unsettled.append(current)
        return current


def _hand_back(ahead: Ahead | None) -> None:
    if ahead is not None:
        ahead.hand_back()


def _search(store: Store, name: str, stop: threading.Event) -> SearchRecord | None:
    """The search row, waiting out store outages; raises when it does not exist."""
    delays = backoff_delays()
    while not stop.is_set():
        try:
            record = store.get_search(name)
        except StoreUnavailableError as exc:
            delay = next(delays)
            log.warning("store unavailable (%s); retrying in %.1f s", exc, delay)
            stop.wait(delay)
            continue
        if record is None:
            raise SearchNotFoundError(f"search {name!r} does not exist in the store")
        return record
    return None


def _claim(store: Store, record: SearchRecord, search: PipelineSearch, worker_id: str
           ) -> ClaimedTrial | None:
    try:
        return store.claim(record.id, worker_id, search.spec.budget.lease_seconds)
    except StoreUnavailableError as exc:
        log.warning("claim failed, store unavailable: %s", exc)
        return None


class StepReporter:
    """The epoch callback of one attempt: records each epoch's result, relays the decision.

    ``lost`` is set when the store refuses the report because this attempt no
    longer holds the trial; training then stops as on a lost lease. On a stop
    the heartbeat ends at once: the store cleared the lease, and a beat seeing
    that would call it lost.
    """

    def __init__(self, store: Store, trial: ClaimedTrial,
                 heartbeat: Heartbeat | None = None) -> None:
        self.store, self.trial, self.heartbeat = store, trial, heartbeat
        self.lost = False

    def __call__(self, epoch: int, reward: float, metrics: dict[str, Any]) -> bool:
        try:
            # Judged by the search's stored rule, not this worker's copy of the spec.
            decision = self.store.report_step(self.trial.id, self.trial.attempt, epoch, reward,
                                              metrics)
        except StoreUnavailableError as exc:
            # Training is worth more than one point of the curve: go on undecided.
            log.warning("trial %d: epoch %d not recorded, store unavailable (%s)",
                        self.trial.id, epoch, exc)
            return True
        except StaleAttemptError:
            log.warning("trial %d attempt %d no longer holds the trial; stopping it",
                        self.trial.id, self.trial.attempt)
            self.lost = True
            raise TrialInterrupted("the attempt no longer holds the trial") from None
        except MetricsTooLargeError as exc:  # the trainer's doing: retrying cannot help
            raise TrialError(f"epoch {epoch}: {exc}") from None
        except Exception as exc:  # a schema bug: every trial would meet it, none may fail of it
            raise StoreFault(f"the store could not record epoch {epoch} of trial "
                             f"{self.trial.id}: {_cause(exc)}") from exc
        if decision == StepDecision.stop:
            if self.heartbeat is not None:
                self.heartbeat.finish()
            log.info("trial %d stopped early after epoch %d (reward %.4f)", self.trial.id,
                     epoch, reward)
        return decision == StepDecision.proceed


def _cause(error: BaseException) -> str:
    """The driver's own message of a database error (``[SQL: ...]`` and the background
    link left out: the last line of SQLAlchemy's text is the link, not the error)."""
    original = getattr(error, "orig", None) or error
    return f"{type(original).__name__}: {error_cause(error)}"


def run_claimed(store: Store, search: PipelineSearch, search_name: str, trial: ClaimedTrial,
                worker_id: str, *, stop: threading.Event, spool: Spool, places: Places,
                device: str | None = None, threads: int | None = None) -> TrialOutcome:
    """Train one claimed trial and report it; returns how it ended (``TrialOutcome``)."""
    trained = train_claimed(store, search, search_name, trial, worker_id, stop=stop,
                            places=places, device=device, threads=threads)
    return trained.outcome(store, spool, stop)


def train_claimed(store: Store, search: PipelineSearch, search_name: str, trial: ClaimedTrial,
                  worker_id: str, *, stop: threading.Event, places: Places,
                  device: str | None = None, threads: int | None = None,
                  on_started: Callable[[], None] | None = None) -> Trained:
    """Train one claimed trial; its report is delivered by the returned ``Trained``.

    The heartbeat keeps the lease until the report is delivered, not only while
    training: a result waiting out a store outage in the spool must not see its
    trial re-queued (or failed, out of retries) the moment the store is back.
    ``on_started`` is called once, as soon as the trainer runs (a custom command: the
    moment its process exists), or before returning when it never started.
    """
    once = _Once(on_started)
    trial_stop = threading.Event()
    heartbeat = Heartbeat(store, trial, search.spec.budget.lease_seconds, stop, trial_stop)
    heartbeat.start()
    started = time.monotonic()
    checkpoint = places.checkpoint_path(search, trial)
    steps = StepReporter(store, trial, heartbeat)
    trained = Trained(search, search_name, trial, worker_id, heartbeat, checkpoint, started)
    try:
        report = _train(search, trial, places, device, trial_stop, steps, threads, once)
        if report is None:  # interrupted: the lease was lost, or the worker is stopping
            heartbeat.finish()
            lost = heartbeat.lost or steps.lost
            trained.settled = TrialOutcome.lost if lost else _release(store, trial)
        elif isinstance(report, TrialResult):  # stopped early: the store ended the trial
            trained.metrics = report.metrics
            trained.end(TrialOutcome.stopped)
        else:
            trained.report, trained.metrics = report, report.metrics
    except StoreFault:
        heartbeat.finish()
        # Not this trial's fault: hand it back untouched (no failure counted), if the
        # store still takes that, before the worker ends with the message.
        with contextlib.suppress(Exception):
            _release(store, trial)
        raise
    except BaseException:
        heartbeat.finish()
        raise
    finally:
        once()
    if trained.report is None:
        heartbeat.finish()
    return trained


class _Once:
    """Calls ``function`` (if any) the first time it is called, never again."""

    def __init__(self, function: Callable[[], None] | None) -> None:
        self.function = function

    def __call__(self) -> None:
        function, self.function = self.function, None
        if function is not None:
            function()


class Trained:
    """One trained attempt: its report, delivered now or in the background, and how the
    trial ended (``outcome``). Its lease is kept (heartbeat) until the report is in."""

    def __init__(self, search: PipelineSearch, search_name: str, trial: ClaimedTrial,
                 worker_id: str, heartbeat: Heartbeat, checkpoint: Path, started: float
                 ) -> None:
        self.search, self.search_name, self.trial = search, search_name, trial
        self.worker_id, self.heartbeat, self.checkpoint = worker_id, heartbeat, checkpoint
        self.started = started
        self.metrics: dict[str, Any] = {}
        self.report: Report | None = None  # a result or a failure to deliver
        self.settled: TrialOutcome | None = None  # how it ended, once known
        self._delivery: threading.Thread | None = None

    @property
    def interrupted(self) -> bool:
        """The worker is stopping: the trial was handed back untrained."""
        return self.settled == TrialOutcome.interrupted

    @property
    def counts(self) -> bool:
        """Whether it counts towards ``max_trials`` (known before its report is delivered:
        only a stale report changes that, and then the trial has a result already)."""
        return self.report is not None or bool(self.settled and self.settled.trained)

    @property
    def delivering(self) -> bool:
        """Its report is being (or was) delivered by a background thread."""
        return self._delivery is not None

    def deliver_in_background(self, store: Store, spool: Spool, stop: threading.Event) -> None:
        """Start delivering the report on a thread (no-op when there is none or it started)."""
        if self.report is None or self._delivery is not None:
            return
        self._delivery = threading.Thread(target=self._deliver, args=(store, spool, stop),
                                          name=f"report-trial-{self.trial.id}", daemon=True)
        self._delivery.start()

    def outcome(self, store: Store, spool: Spool, stop: threading.Event) -> TrialOutcome:
        """How the trial ended: delivers the report now unless a thread does (then waits)."""
        if self._delivery is not None:
            self._delivery.join()
        elif self.report is not None and self.settled is None:
            self._deliver(store, spool, stop)
        assert self.settled is not None
        return self.settled

    def _deliver(self, store: Store, spool: Spool, stop: threading.Event) -> None:
        assert self.report is not None
        try:
            outcome = deliver(store, self.report, spool, stop)
        finally:
            self.heartbeat.finish()
        self.end(outcome)

    def end(self, outcome: TrialOutcome) -> None:
        """The trial ended ``outcome`` in the store: tidy up and count it."""
        self.settled = outcome
        if outcome.final:  # tidying up never raises: it must not turn a result into a crash
            remove_checkpoint(self.checkpoint)
        _record_metrics(self.search_name, self.worker_id, outcome,
                        time.monotonic() - self.started, self.metrics)


def _train(search: PipelineSearch, trial: ClaimedTrial, places: Places, device: str | None,
           trial_stop: threading.Event, on_epoch: EpochCallback, threads: int | None = None,
           on_started: Callable[[], None] | None = None) -> Report | TrialResult | None:
    """Run the trainer: the report to deliver, the result of a trial stopped early (the
    store holds it already), or None when training was interrupted."""
    try:
        checkpoint = places.checkpoint(search, trial)  # another pipeline's is refused there
        result = _trainer(search, threads, on_started)(
            search, trial.pipeline, seed=trial.number, checkpoint_path=checkpoint,
            device=device, stop=trial_stop, on_epoch=on_epoch)
    except TrialInterrupted:
        return None
    except StoreFault:
        raise  # the worker's end, not the trial's
    except TrialError as exc:
        return _failure(trial, search, str(exc), exc.retryable)
    except Exception as exc:  # unexpected: an infrastructure problem, worth a retry
        log.exception("trial %d crashed", trial.id)
        return _failure(trial, search, f"{type(exc).__name__}: {exc}", True)
    if result.stopped:
        return result
    return Report(trial.id, trial.attempt, ReportKind.complete, result.reward, result.metrics,
                  result.diverged)


def _trainer(search: PipelineSearch, threads: int | None = None,
             on_started: Callable[[], None] | None = None) -> Callable[..., TrialResult]:
    """The trainer of the spec. Only the built-in one imports torch (about 0.5 GB of
    memory and seconds of start-up that a custom command's worker does not pay).
    ``on_started``: called when the command's process exists (custom trainers), or
    right before training starts (built-in)."""
    if search.spec.trainer.type == TrainerType.command:
        from ma2ml.worker.custom import run_command

        return lambda search, pipeline, *, device, **kwargs: run_command(
            search, pipeline, on_started=on_started, **kwargs)
    from ma2ml.trainer.train import run_trial, set_threads

    if threads is not None:
        set_threads(threads)
    if on_started is not None:
        on_started()
    return run_trial


def _failure(trial: ClaimedTrial, search: PipelineSearch, error: str, retryable: bool) -> Report:
    log.warning("trial %d attempt %d failed (retryable=%s): %s", trial.id, trial.attempt,
                retryable, error)
    return Report(trial.id, trial.attempt, ReportKind.fail, error=error, retryable=retryable,
                  max_retries=search.spec.budget.max_retries)


def _release(store: Store, trial: ClaimedTrial) -> TrialOutcome:
    """Hand the trial back (SIGTERM): its last epoch checkpoint lets another worker resume."""
    try:
        store.release(trial.id, trial.attempt)
    except StoreUnavailableError as exc:
        log.warning("could not release trial %d (%s); its lease will expire", trial.id, exc)
    return TrialOutcome.interrupted


def deliver(store: Store, report: Report, spool: Spool, stop: threading.Event
            ) -> TrialOutcome:
    """Send a report now, or spool it and retry until the store accepts it."""
    outcome = send_report(store, report)
    if outcome is not None:
        return outcome
    log.warning("store unavailable; spooling the report of trial %d", report.trial_id)
    spool.add(report)
    if not spool.flush_with_backoff(store, stop):
        return TrialOutcome.spooled
    return TrialOutcome.of(report.outcome)


def _record_metrics(search: str, worker_id: str, status: TrialOutcome, seconds: float,
                    metrics: dict[str, Any]) -> None:
    TRIAL_DURATION.labels(search=search).observe(seconds)
    TRIALS_FINISHED.labels(search=search, status=status).inc()  # status "stopped" included
    speed = metrics.get("images_per_second")
    if speed is not None:
        WORKER_IMAGES_PER_SECOND.labels(search=search, worker=worker_id).set(speed)
