"""``ma2ml learner``: the command the learner pod runs, against a real SQLite store."""

from __future__ import annotations

from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.store import Store

from .helpers import search_document


def test_learner_command_runs_a_search_to_the_end(sqlite_url: str, worker_factory) -> None:
    with Store(sqlite_url) as store:
        record = store.create_search("default/toy", search_document(max_trials=6))
        worker_factory(sqlite_url, record.id)
        result = CliRunner().invoke(app, ["learner", "--search", "default/toy",
                                          "--db", sqlite_url])
        assert result.exit_code == 0, result.output
        assert store.get_search("default/toy").state == "finished"
        assert store.counts(record.id)["completed"] == 6


def test_learner_command_unknown_search_exits_2(sqlite_url: str) -> None:
    result = CliRunner().invoke(app, ["learner", "--search", "default/nope", "--db", sqlite_url])
    assert result.exit_code == 2
