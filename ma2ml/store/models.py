"""ORM models of the store: searches, trials (queue + replay buffer), policy snapshots.

The schema itself is created by the Alembic revisions in ``migrations/``; these
models must match them (a test compares them on every backend).

Schema choices that are not obvious:

* Times are float epoch seconds (``DOUBLE PRECISION``) taken from the *database*
  clock (``engine.db_epoch``), not ``TIMESTAMP`` columns: lease arithmetic is then
  plain addition and comparison on both backends, and clock skew between worker
  machines does not matter.
* Statuses and states are short strings, not database enums: a new status needs
  no ``ALTER TYPE`` on PostgreSQL and no table rebuild on SQLite.
* JSON columns are plain ``JSON`` on every backend, not PostgreSQL ``JSONB``: JSONB
  re-orders object keys, and the agent order inside ``pipeline``/``action`` must
  read back the same on SQLite and PostgreSQL. Nothing queries inside them.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    JSON,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base; ``Base.metadata`` is Alembic's ``target_metadata``."""


class SearchModel(Base):
    """One search: a name like ``default/fmnist``, its spec, and two counters."""

    __tablename__ = "searches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(32))
    # Last finished_seq handed out. Incremented under this row's lock inside the
    # transaction that finishes a trial, so sequence order equals commit order and
    # a reader polling "finished_seq > n" never skips a result.
    result_seq: Mapped[int] = mapped_column(Integer, default=0)
    # Last trial number handed out (numbers are 1, 2, ... per search); a counter
    # instead of max(number) + 1 so that concurrent enqueues cannot collide.
    trial_count: Mapped[int] = mapped_column(Integer, default=0)
    # Deliberately no foreign key: trials already reference searches, and a cycle
    # of foreign keys would complicate ON DELETE CASCADE and table creation order.
    best_trial_id: Mapped[int | None] = mapped_column(Integer)
    # Copy of the best trial's reward, so that "does this result beat the best?" reads
    # only this (locked) row; see queue._next_seq_statement.
    best_reward: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    # Why the search is in its state, for a person (e.g. why the learner could not start).
    message: Mapped[str | None] = mapped_column(Text)


class TrialModel(Base):
    """A trial: queue entry while pending/running, replay-buffer entry once finished."""

    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("search_id", "number", name="uq_trials_search_number"),
        # Unique: a result can never be counted twice. NULLs (unfinished) do not clash.
        UniqueConstraint("search_id", "finished_seq", name="uq_trials_search_finished_seq"),
        # The claim: oldest pending trial of a search, also counts by status.
        Index("ix_trials_search_status_id", "search_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    # Fencing token: +1 on every hand-over (lease expiry, retry, release); a report
    # must quote the attempt it claimed.
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    # Expired leases + retryable failures, compared with the retry limit.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    pipeline: Mapped[dict[str, Any]] = mapped_column(JSON)
    action: Mapped[dict[str, Any]] = mapped_column(JSON)
    behaviour_logp: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy_version: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[float | None] = mapped_column(Double)
    heartbeat_at: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[float] = mapped_column(Double)
    # When the current attempt started training (NULL: held, or handed back).
    started_at: Mapped[float | None] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)
    # Training time of the earlier attempts, added when one is handed back, so that a
    # time budget counts work lost to a retry or a preempted worker (``Store.usage``).
    trained_seconds: Mapped[float] = mapped_column(Double, default=0.0,
                                                   server_default=text("0"))
    # 1, 2, ... per search in commit order, for completed, diverged and failed trials.
    finished_seq: Mapped[int | None] = mapped_column(Integer)
    reward: Mapped[float | None] = mapped_column(Double)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    # Last epoch reported to trial_steps: a stopped trial's fidelity.
    last_step: Mapped[int | None] = mapped_column(Integer)


class TrialStepModel(Base):
    """One point of a learning curve: a trial's result at an epoch, and the verdict on it.

    Keyed by (trial, step): a resumed or retried trial that reports an epoch again
    gets the recorded verdict back, so each (trial, step) is decided exactly once.
    ``search_id`` is repeated here so that "results at this rung" is one index range.
    """

    __tablename__ = "trial_steps"
    __table_args__ = (Index("ix_trial_steps_search_step_value", "search_id", "step", "value"),)

    trial_id: Mapped[int] = mapped_column(
        ForeignKey("trials.id", ondelete="CASCADE"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    value: Mapped[float | None] = mapped_column(Double)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    decision: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[float] = mapped_column(Double)


class PolicySnapshotModel(Base):
    """A versioned learner snapshot; old versions keep ``stats`` but may drop ``state``."""

    __tablename__ = "policy_snapshots"
    __table_args__ = (
        UniqueConstraint("search_id", "version", name="uq_policy_snapshots_search_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Double)
    # Nullable: states of old versions are pruned to bound the table's size, while
    # their stats stay for reports.
    state: Mapped[bytes | None] = mapped_column(LargeBinary)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)


# The tables, for the Core statements of the hot paths (no ORM unit-of-work overhead).
SEARCHES = cast(Table, SearchModel.__table__)
TRIALS = cast(Table, TrialModel.__table__)
SNAPSHOTS = cast(Table, PolicySnapshotModel.__table__)
STEPS = cast(Table, TrialStepModel.__table__)
