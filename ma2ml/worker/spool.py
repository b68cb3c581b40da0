"""A local spool of finished results the store has not accepted yet.

When the store is unreachable a worker must not lose a trained result: it
writes the report (one JSON file per trial attempt, atomically) and retries
with back-off. Fencing makes a late report safe: a report for an attempt
that no longer holds the trial raises ``StaleAttemptError`` and is dropped,
so nothing is counted twice. Any worker of the search can flush any spool
entry, so a result also survives its worker's restart.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ma2ml.store import StaleAttemptError, Store, StoreUnavailableError, TrialStatus
from ma2ml.worker.backoff import backoff_delays

log = logging.getLogger(__name__)


class ReportKind(enum.StrEnum):
    """A report carries a result or a failure (stored in spool files as these strings)."""

    complete = "complete"
    fail = "fail"


@dataclass(frozen=True)
class Report:
    """What the worker tells the store about one attempt: a result or a failure."""

    trial_id: int
    attempt: int
    kind: ReportKind
    reward: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    diverged: bool = False
    error: str = ""
    retryable: bool = False
    max_retries: int = 0

    @property
    def outcome(self) -> TrialStatus:
        """The status this report asks for: completed, diverged or failed.

        The store may answer a retryable failure with pending instead (a retry);
        ``send`` returns what the store actually did.
        """
        if self.kind == ReportKind.complete:
            return TrialStatus.diverged if self.diverged else TrialStatus.completed
        return TrialStatus.failed

    def send(self, store: Store) -> TrialStatus:
        """Deliver to the store; returns the trial's new status."""
        if self.kind == ReportKind.complete:
            store.complete(self.trial_id, self.attempt, self.reward, self.metrics,
                           diverged=self.diverged)
            return self.outcome
        return store.fail(self.trial_id, self.attempt, self.error, retryable=self.retryable,
                          max_retries=self.max_retries)


class Spool:
    """Reports waiting for the store, as files in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def add(self, report: Report) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"trial-{report.trial_id}-attempt-{report.attempt}.json"
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(report), allow_nan=False))
        partial.replace(path)
        return path

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("trial-*.json")) if self.directory.exists() else []

    def flush(self, store: Store) -> bool:
        """Send every spooled report; False when the store is still unreachable."""
        for path in self.pending():
            fields = json.loads(path.read_text())
            report = Report(**{**fields, "kind": ReportKind(fields["kind"])})
            try:
                status = report.send(store)
                log.info("spooled report of trial %d delivered (%s)", report.trial_id, status)
            except StaleAttemptError:
                log.warning("spooled report of trial %d attempt %d is stale (the trial was "
                            "handed over); dropped", report.trial_id, report.attempt)
            except StoreUnavailableError as exc:
                log.warning("store still unavailable (%s); %d report(s) spooled", exc,
                            len(self.pending()))
                return False
            path.unlink()
        return True

    def flush_with_backoff(self, store: Store, stop: threading.Event) -> bool:
        """Retry ``flush`` with exponential back-off until done or ``stop`` is set."""
        delays = backoff_delays()
        while not self.flush(store):
            if stop.wait(next(delays)):
                return False
        return True
