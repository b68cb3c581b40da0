"""Searches and policy snapshots: create, find, update, move state, delete; snapshots.

A search's state moves only along ``lifecycle.SEARCH_EDGES`` (``move_search``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.orm import Session

from ma2ml.store.engine import db_epoch, rowcount
from ma2ml.store.errors import SearchNotFoundError
from ma2ml.store.lifecycle import TERMINAL_SEARCH_STATES, Actor, SearchState, sources
from ma2ml.store.models import SEARCHES, SNAPSHOTS
from ma2ml.store.records import SearchRecord, SnapshotRecord
from ma2ml.store.text import clean_error

_SEARCH_COLUMNS = (
    SEARCHES.c.id,
    SEARCHES.c.name,
    SEARCHES.c.spec,
    SEARCHES.c.state,
    SEARCHES.c.created_at,
    SEARCHES.c.finished_at,
    SEARCHES.c.best_trial_id,
    SEARCHES.c.message,
)


def search_record(row: Row[*tuple[Any, ...]]) -> SearchRecord:
    """A ``SearchRecord`` from a row of ``_SEARCH_COLUMNS``."""
    return SearchRecord(
        id=row.id,
        name=row.name,
        spec=row.spec,
        state=SearchState(row.state),
        created_at=row.created_at,
        finished_at=row.finished_at,
        best_trial_id=row.best_trial_id,
        message=row.message,
    )


def find_search(session: Session, key: str, value: Any) -> SearchRecord | None:
    """The search whose ``key`` ("name" or "id") equals ``value``, or None."""
    row = session.execute(select(*_SEARCH_COLUMNS).where(SEARCHES.c[key] == value)).first()
    return search_record(row) if row is not None else None


def list_searches(session: Session) -> list[SearchRecord]:
    """Every search, oldest first."""
    statement = select(*_SEARCH_COLUMNS).order_by(SEARCHES.c.id)
    return [search_record(row) for row in session.execute(statement)]


def insert_search(session: Session, name: str, spec: dict[str, Any]) -> SearchRecord:
    """A new running search (raises IntegrityError when the name is taken)."""
    statement = (
        insert(SEARCHES)
        .values(
            name=name,
            spec=spec,
            state=SearchState.running,
            result_seq=0,
            trial_count=0,
            created_at=db_epoch(),
        )
        .returning(*_SEARCH_COLUMNS)
    )
    return search_record(session.execute(statement).one())


def _update_search(session: Session, key: str, value: Any, values: dict[str, Any]) -> SearchRecord:
    row = session.execute(
        update(SEARCHES).where(SEARCHES.c[key] == value).values(values).returning(*_SEARCH_COLUMNS)
    ).first()
    if row is None:
        raise SearchNotFoundError(f"no search with {key} {value!r}")
    return search_record(row)


def update_spec(session: Session, name: str, spec: dict[str, Any]) -> SearchRecord:
    """Replace the spec of the named search."""
    return _update_search(session, "name", name, {"spec": spec})


def move_search(session: Session, search_id: int, target: SearchState, actor: Actor,
                message: str | None = None) -> SearchRecord:
    """Move the search into ``target`` along an edge ``actor`` owns; returns it as it is now.

    A compare-and-set: from a state with no such edge (someone else moved it
    first, or it is there already) nothing changes. Terminal states stamp
    ``finished_at``, others clear it; ``message`` says why (cleaned, capped).
    """
    finished_at = db_epoch() if target in TERMINAL_SEARCH_STATES else None
    message = clean_error(message) if message is not None else None
    row = session.execute(
        update(SEARCHES)
        .where(SEARCHES.c.id == search_id, SEARCHES.c.state.in_(sources(target, actor)))
        .values(state=target, finished_at=finished_at, message=message)
        .returning(*_SEARCH_COLUMNS)
    ).first()
    if row is not None:
        return search_record(row)
    current = find_search(session, "id", search_id)
    if current is None:
        raise SearchNotFoundError(f"no search with id {search_id!r}")
    return current


def delete_search(session: Session, name: str) -> bool:
    """Delete the search; its trials and snapshots go with it (ON DELETE CASCADE)."""
    result = session.execute(delete(SEARCHES).where(SEARCHES.c.name == name))
    return rowcount(result) > 0


def save_snapshot(
    session: Session,
    search_id: int,
    version: int,
    state: bytes,
    stats: dict[str, Any],
    keep_states: int | None,
) -> None:
    """Store (or replace) a snapshot version; prune states beyond the newest ``keep_states``."""
    same = (SNAPSHOTS.c.search_id == search_id, SNAPSHOTS.c.version == version)
    values = {"state": state, "stats": stats, "created_at": db_epoch()}
    replaced = rowcount(session.execute(update(SNAPSHOTS).where(*same).values(values)))
    if not replaced:
        session.execute(insert(SNAPSHOTS).values(search_id=search_id, version=version, **values))
    if keep_states is not None:
        _prune_states(session, search_id, max(keep_states, 1))


def _prune_states(session: Session, search_id: int, keep: int) -> None:
    oldest_kept = (
        select(SNAPSHOTS.c.version)
        .where(SNAPSHOTS.c.search_id == search_id)
        .order_by(SNAPSHOTS.c.version.desc())
        .offset(keep - 1)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(
        update(SNAPSHOTS)
        .where(
            SNAPSHOTS.c.search_id == search_id,
            SNAPSHOTS.c.state.is_not(None),
            SNAPSHOTS.c.version < oldest_kept,
        )
        .values(state=None)
    )


def load_snapshot(session: Session, search_id: int) -> SnapshotRecord | None:
    """The newest snapshot that still has its state."""
    row = session.execute(
        select(SNAPSHOTS)
        .where(SNAPSHOTS.c.search_id == search_id, SNAPSHOTS.c.state.is_not(None))
        .order_by(SNAPSHOTS.c.version.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return SnapshotRecord(
        search_id=row.search_id,
        version=row.version,
        created_at=row.created_at,
        state=bytes(row.state),
        stats=row.stats,
    )


def snapshot_stats(session: Session, search_id: int) -> list[tuple[int, float, dict[str, Any]]]:
    """``(version, created_at, stats)`` of every snapshot, oldest version first."""
    statement = (
        select(SNAPSHOTS.c.version, SNAPSHOTS.c.created_at, SNAPSHOTS.c.stats)
        .where(SNAPSHOTS.c.search_id == search_id)
        .order_by(SNAPSHOTS.c.version)
    )
    return [(row.version, row.created_at, row.stats) for row in session.execute(statement)]
