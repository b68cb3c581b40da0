"""What a kopf handler does with store errors: wait out an outage, stop on a schema bug.

Real SQLite store and real kopf exceptions; the handler body is the code under
``guarded`` (no API server needed for this).
"""

from __future__ import annotations

import threading
from pathlib import Path

import kopf
import pytest
from sqlalchemy import text

from ma2ml.operator.handlers import guarded
from ma2ml.store import Store, StoreUnavailableError


def test_an_outage_is_retried_later(tmp_path: Path) -> None:
    memo = kopf.Memo(stop_flag=threading.Event(), fatal=None)
    with pytest.raises(kopf.TemporaryError), guarded("timer", memo):
        raise StoreUnavailableError("database unavailable: connection refused")
    assert not memo.stop_flag.is_set() and memo.fatal is None


def test_a_schema_bug_stops_the_operator_with_the_message(tmp_path: Path) -> None:
    memo = kopf.Memo(stop_flag=threading.Event(), fatal=None)
    with Store(f"sqlite:///{tmp_path / 'broken.db'}") as store:
        with store.engine.begin() as connection:
            connection.execute(text("DROP TABLE trial_steps"))
            connection.execute(text("DROP TABLE trials"))
        record = store.create_search("default/x", {})
        with pytest.raises(kopf.PermanentError, match="no such table: trials"), \
                guarded("timer", memo):
            store.counts(record.id)
    assert memo.stop_flag.is_set()
    assert memo.fatal.startswith("the store failed (not a connection problem)")
