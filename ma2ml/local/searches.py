"""Finding a search and its database from what a user types.

A user names a search by its spec file (``examples/fashion-mnist.yaml``:
the database beside it, the name from its metadata) or by name with
``--db``; a bare ``name`` means ``default/name``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ma2ml.spec import PipelineSearch, load_spec, parse_spec, spec_to_document
from ma2ml.store import (
    Actor,
    SearchRecord,
    SearchState,
    Store,
    reopens,
    resolve_database_url,
)


class SearchConflictError(ValueError):
    """The spec names a stored search whose space or objective differs."""


def default_db_url(spec_path: Path) -> str:
    """The embedded default: a SQLite file beside the spec (``search.yaml`` -> ``search.db``)."""
    return f"sqlite:///{spec_path.with_suffix('.db').resolve()}"


def resolve_run_url(spec_path: Path, search: PipelineSearch, db: str | None) -> str:
    """``--db``, else ``spec.database.url``, else ``MA2ML_DATABASE_URL``, else beside the spec."""
    return (db or search.spec.database.url or os.environ.get("MA2ML_DATABASE_URL")
            or default_db_url(spec_path))


@dataclass(frozen=True)
class Target:
    """A search to look at: the database URL and the search's store key."""

    url: str
    key: str


def resolve_target(name_or_spec: str | None, db: str | None) -> Target:
    """From ``NAME`` (with ``--db``) or ``SPEC.yaml``, find the database and key."""
    path = Path(name_or_spec) if name_or_spec else None
    if path is not None and path.suffix in (".yaml", ".yml") and path.is_file():
        search = load_spec(path)
        return Target(resolve_run_url(path, search, db), search.key)
    url = resolve_database_url(db)
    key = name_or_spec or ""
    if key and "/" not in key:
        key = f"default/{key}"
    return Target(url, key)


_FIXED_AT_CREATION = ("agents", "dataset", "objective", "algorithm", "trainer")


def prepare_search(store: Store, search: PipelineSearch) -> SearchRecord:
    """Create the search, or resume it; budget edits are taken over, space edits refused."""
    document = spec_to_document(search)
    existing = store.get_search(search.key)
    if existing is None:
        return store.create_search(search.key, document)
    stored = parse_spec(existing.spec).spec
    changed = [f for f in _FIXED_AT_CREATION if getattr(stored, f) != getattr(search.spec, f)]
    if changed:
        raise SearchConflictError(
            f"search {search.key} already exists in {store!r} with a different "
            f"{', '.join('spec.' + f for f in changed)}; give it a new metadata.name "
            f"or use another --db")
    if existing.spec != document:
        store.update_search_spec(search.key, document)
    record = store.get_search(search.key)
    assert record is not None
    if reopens(record.state, search.spec.budget, store.counts(record.id)):
        # `ma2ml run` is the controller on one machine (store.lifecycle): maxTrials was raised.
        record = store.move_search(record.id, SearchState.running, by=Actor.controller)
    return record
