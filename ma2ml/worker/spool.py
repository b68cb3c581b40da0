"""Delivering reports to the store, and a local spool of those it has not accepted yet.

When the store is unreachable a worker must not lose a trained result: it
writes the report (one JSON file per trial attempt, atomically) and retries
with back-off. A late result is still accepted while its trial has no result
(first result wins, see ``store.queue``); one for a trial that has a result
raises ``StaleAttemptError`` and is dropped, so nothing is counted twice. Any
worker of the search can flush any spool entry, so a result also survives
its worker's restart. Anything in the spool that does not read as a report
(JSON that is not an object or lacks a field, nesting too deep, a directory
or a FIFO under a report's name, a file over ``MAX_SPOOL_FILE_BYTES``) is
moved aside as ``*.corrupt``; it never stops a worker from starting, and a
FIFO is never opened in a way that blocks (``untrusted``).

``send_report`` is the one place a report meets the store: any error other
than "unavailable" or "stale" fails that trial with the error's message, so a
report the database refuses can never crash-loop a worker.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ma2ml.store import StaleAttemptError, Store, StoreUnavailableError, TrialStatus
from ma2ml.store.backoff import backoff_delays
from ma2ml.worker.outcome import TrialOutcome
from ma2ml.worker.untrusted import read_regular

log = logging.getLogger(__name__)

#: Bytes of one spool file read: a report holds at most 64 KiB of metrics and an error
#: tail; far more means the file is not one of ours.
MAX_SPOOL_FILE_BYTES = 16 * 1024 * 1024

#: A report's fields and the JSON types each may have in a spool file.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "trial_id": (int,), "attempt": (int,), "kind": (str,), "reward": (int, float, type(None)),
    "metrics": (dict,), "diverged": (bool,), "error": (str,), "retryable": (bool,),
    "max_retries": (int,)}


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

    def to_json(self) -> str:
        """The spool file's text (a diverged report's non-finite reward as null)."""
        fields = asdict(self)
        fields["reward"] = self.reward if math.isfinite(self.reward) else None
        return json.dumps(fields, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        """A report from a spool file; ``ValueError`` naming what is wrong if it is not one."""
        try:
            fields = json.loads(text)
        except RecursionError:  # nested deeper than the parser's stack
            raise ValueError("JSON nested too deep") from None
        if not isinstance(fields, dict):
            raise ValueError(f"a report is a JSON object, not {type(fields).__name__}")
        for name, types in _FIELD_TYPES.items():
            if name in ("trial_id", "attempt", "kind") and name not in fields:
                raise ValueError(f"field {name!r} is missing")
            value = fields.get(name)
            if name in fields and (not isinstance(value, types)
                                   or (isinstance(value, bool) and bool not in types)):
                raise ValueError(f"field {name!r} has the wrong type ({type(value).__name__})")
        unknown = set(fields) - set(_FIELD_TYPES)
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}")
        reward = fields.get("reward")
        return cls(**{**fields, "kind": ReportKind(fields["kind"]),
                      "reward": float("nan") if reward is None else float(reward)})


def send_report(store: Store, report: Report) -> TrialOutcome | None:
    """Deliver one report; None when the store is unreachable (keep it and retry).

    Stale: dropped. Any other error (the database refused the text, a bug): the
    trial fails with that message instead, and the worker carries on.
    """
    try:
        return TrialOutcome.of(report.send(store))
    except StaleAttemptError:
        log.warning("trial %d already has a result (attempt %d reported late); this one "
                    "is dropped", report.trial_id, report.attempt)
        return TrialOutcome.stale
    except StoreUnavailableError:
        return None
    except Exception as exc:  # the report is refused, never the worker
        log.exception("the store refused the report of trial %d", report.trial_id)
        return _fail_refused(store, report, f"{type(exc).__name__}: {exc}")


def _fail_refused(store: Store, report: Report, reason: str) -> TrialOutcome | None:
    """Fail the trial because its report was refused; gives up (logged) if that fails too."""
    error = f"the store refused this trial's report: {reason}"
    try:
        return TrialOutcome.of(store.fail(report.trial_id, report.attempt, error,
                                          retryable=False, max_retries=0))
    except StaleAttemptError:
        return TrialOutcome.stale
    except StoreUnavailableError:
        return None
    except Exception:  # a bug or a refused text: logged, the worker goes on
        log.exception("trial %d: could not record the refusal either; its lease will expire",
                      report.trial_id)
        return TrialOutcome.failed

class Spool:
    """Reports waiting for the store, as files in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def add(self, report: Report) -> Path:
        if self.directory.exists() and not self.directory.is_dir():
            _move_aside(self.directory, "is not a folder")
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"trial-{report.trial_id}-attempt-{report.attempt}.json"
        partial = path.with_suffix(".partial")
        for stale in (partial, path):  # a directory there would refuse this report
            if stale.is_dir() and not stale.is_symlink():
                _move_aside(stale, "in the way of a report")
        partial.write_text(report.to_json())
        partial.replace(path)
        return path

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("trial-*.json")) if self.directory.exists() else []

    def flush(self, store: Store) -> bool:
        """Send every spooled report; False when the store is still unreachable."""
        for path in self.pending():
            report = self._read(path)
            if report is None:
                continue
            outcome = send_report(store, report)
            if outcome is None:
                log.warning("store still unavailable; %d report(s) spooled", len(self.pending()))
                return False
            log.info("spooled report of trial %d: %s", report.trial_id, outcome)
            path.unlink(missing_ok=True)  # another worker flushing the same spool may be first
        return True

    @staticmethod
    def _read(path: Path) -> Report | None:
        """The report in ``path``; None when another worker delivered it meanwhile, or
        after moving an unreadable file aside."""
        try:
            raw = read_regular(path, MAX_SPOOL_FILE_BYTES + 1)
            if len(raw) > MAX_SPOOL_FILE_BYTES:
                raise ValueError(f"larger than {MAX_SPOOL_FILE_BYTES} bytes")
            return Report.from_json(raw)
        except FileNotFoundError:
            return None  # flushed by another worker of the search between glob and read
        except (OSError, ValueError, TypeError, KeyError) as exc:  # also a FIFO, a folder
            _move_aside(path, f"is corrupt ({exc})")
            return None

    def flush_with_backoff(self, store: Store, stop: threading.Event) -> bool:
        """Retry ``flush`` with exponential back-off until done or ``stop`` is set."""
        delays = backoff_delays()
        while not self.flush(store):
            if stop.wait(next(delays)):
                return False
        return True


def _move_aside(path: Path, why: str) -> None:
    """Rename ``path`` to a free ``*.corrupt`` name beside it, so no worker reads it again.
    Logged; a rename that fails is logged too and never raised (the worker goes on)."""
    corrupt = path.with_suffix(".corrupt")
    number = 0
    while corrupt.exists() or corrupt.is_symlink():
        number += 1
        corrupt = path.with_suffix(f".{number}.corrupt")
    try:
        path.rename(corrupt)
    except FileNotFoundError:
        return  # another worker moved or delivered it first
    except OSError as exc:
        log.error("spool entry %s %s, and cannot be moved aside (%s)", path, why, exc)
        return
    log.error("spool entry %s %s; moved aside to %s", path, why, corrupt)
