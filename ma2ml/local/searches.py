"""Finding a search and its database from what a user types; starting over.

A user names a search by its spec file (``examples/fashion-mnist.yaml``:
the database beside it, the name from its metadata) or by name with
``--db``; a bare ``name`` means ``default/name``. The precedence is written
once, in ``ma2ml.specfile.DATABASE_PRECEDENCE``.

``prepare_search`` decides what ``ma2ml run`` does with a stored search of
the same name. Trial results (completed, diverged, stopped) are never
deleted without the user asking (``--restart``, ``ma2ml delete``) and never
mixed into a search whose space, data, objective, algorithm or trainer
differ. A stored search without any result (say it failed on a wrong data
path before any trial finished) has nothing to lose: a fixed spec replaces it.
The rule is ``store.lifecycle.spec_edit``'s, which the operator applies too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ma2ml.spec import PipelineSearch, load_spec, spec_to_document
from ma2ml.store import (
    Actor,
    SearchRecord,
    SearchState,
    Store,
    reopens,
    resolve_database_url,
)
from ma2ml.store.engine import sqlite_file
from ma2ml.store.lifecycle import spec_edit


class SearchConflictError(ValueError):
    """The spec names a stored search with results whose space or objective differs."""


class TargetError(ValueError):
    """What the user named is neither an existing spec file nor a search name."""


def default_db_url(spec_path: Path) -> str:
    """The embedded default: a SQLite file beside the spec (``search.yaml`` -> ``search.db``)."""
    return f"sqlite:///{spec_path.with_suffix('.db').resolve()}"


def resolve_run_url(spec_path: Path, search: PipelineSearch, db: str | None) -> str:
    """``--db``, else ``spec.database.url``, else ``MA2ML_DATABASE_URL``, else beside the spec;
    a relative SQLite file is made absolute (from the current directory)."""
    return absolute_sqlite(db or search.spec.database.url
                           or os.environ.get("MA2ML_DATABASE_URL") or default_db_url(spec_path))


def absolute_sqlite(url: str) -> str:
    """``url`` with a relative SQLite file made absolute: ``ma2ml run``'s workers run in the
    spec's folder (``pool.py``) and must open the file the run means. Other URLs, and text
    that is no URL (``Store`` reports it), are returned as they are."""
    try:
        path = sqlite_file(url)
    except (ArgumentError, ValueError):
        return url
    if path is None or path.is_absolute():
        return url
    return make_url(url).set(database=str(path.resolve())).render_as_string(
        hide_password=False)


@dataclass(frozen=True)
class Target:
    """A search to look at: the database URL and the search's store key."""

    url: str
    key: str


def resolve_target(name_or_spec: str | None, db: str | None) -> Target:
    """From ``NAME`` (with ``--db``) or ``SPEC.yaml``, find the database and key."""
    path = Path(name_or_spec) if name_or_spec else None
    if path is not None and path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise TargetError(f"{path}: no such spec file (a search named {path} is "
                              f"written default/{path})")
        search = load_spec(path)
        return Target(resolve_run_url(path, search, db), search.key)
    url = resolve_database_url(db)
    key = name_or_spec or ""
    if key and "/" not in key:
        key = f"default/{key}"
    return Target(url, key)


def prepare_search(store: Store, search: PipelineSearch, *, restart: bool = False,
                   on_note: Callable[[str], None] | None = None) -> SearchRecord:
    """Create the search, or resume it; budget edits are taken over, space edits refused
    while the stored search has results. ``restart`` deletes the stored one first;
    ``on_note`` hears why a stored search was replaced."""
    document = spec_to_document(search)
    existing = store.get_search(search.key)
    note = _start_over(store, existing, search, restart) if existing is not None else None
    if existing is None or note is not None:
        if note is not None:
            store.delete_search(search.key)
            if on_note is not None:
                on_note(note)
        return store.create_search(search.key, document)
    if existing.spec != document:
        store.update_search_spec(search.key, document)
    record = store.get_search(search.key)
    assert record is not None
    if reopens(record.state, search.spec.budget, store.counts(record.id),
               store.usage(record.id)):
        # `ma2ml run` is the controller on one machine (store.lifecycle): maxTrials or a
        # time limit was raised above what the search used.
        record = store.move_search(record.id, SearchState.running, by=Actor.controller)
    return record


def _start_over(store: Store, existing: SearchRecord, search: PipelineSearch,
                restart: bool) -> str | None:
    """Why the stored search is replaced (None: resume it); ``SearchConflictError`` when
    it holds results of a different spec and the user did not ask to restart."""
    counts = store.counts(existing.id)
    trials = f"{counts.total} trials, {counts.results} with results"
    if restart:
        return f"--restart: deleted the stored search {search.key} ({trials})"
    edit = spec_edit(existing.search.spec, search.spec, counts)
    if edit.refused:
        raise SearchConflictError(
            f"search {search.key} already exists in {store!r} with {counts.results} trial "
            f"results of a different {edit.fields}; `ma2ml run --restart SPEC` deletes them "
            f"and starts over, or give the spec a new metadata.name")
    if edit.starts_over:
        return f"replaced the stored search {search.key}: its {edit.fields} differed and " \
               f"none of its {counts.total} trials had a result"
    return None  # the same search: resumed, or (finished, failed) shown as it ended
