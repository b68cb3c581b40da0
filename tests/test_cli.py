"""The ``ma2ml`` command's spec commands, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from ma2ml.crd import build_crd

ROOT = Path(__file__).parent.parent


def ma2ml(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ma2ml", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120)


def test_validate_prints_the_space() -> None:
    result = ma2ml("validate", "examples/fashion-mnist.yaml")
    assert result.returncode == 0, result.stderr
    assert "autoaugment" in result.stdout and "mbconv-small" in result.stdout
    assert "joint space: 25 decisions" in result.stdout


def test_validate_says_how_a_time_limit_was_read(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "examples/fashion-mnist.yaml").read_text())
    doc["spec"]["budget"].update(maxDuration="90m", maxTrainingHours=2.5)
    spec = tmp_path / "timed.yaml"
    spec.write_text(yaml.safe_dump(doc))
    result = ma2ml("validate", str(spec))
    assert result.returncode == 0, result.stderr
    assert "trials, maxDuration 1h 30m, maxTrainingHours 2.5" in result.stdout


def test_validate_bad_spec_exits_2_with_field_lines(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "examples/fashion-mnist.yaml").read_text())
    doc["spec"]["budget"]["parallelism"] = 0
    doc["spec"]["agents"][0]["preset"] = "autoaugmint"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = ma2ml("validate", str(bad))
    assert result.returncode == 2
    assert "spec.budget.parallelism: must be >= 1, got 0" in result.stderr
    assert "spec.agents[0].preset: unknown preset 'autoaugmint'" in result.stderr
    assert result.stdout == ""


def test_validate_missing_file_exits_2(tmp_path: Path) -> None:
    result = ma2ml("validate", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read file" in result.stderr


def test_crd_command_prints_the_generated_crd() -> None:
    result = ma2ml("crd")
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout) == build_crd()


def test_db_upgrade_creates_the_schema_and_is_idempotent(database_url: str) -> None:
    import sqlalchemy

    for _ in range(2):
        result = ma2ml("db", "upgrade", "--url", database_url)
        assert result.returncode == 0, result.stderr
        assert "database at revision head" in result.stdout
    engine = sqlalchemy.create_engine(database_url)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"searches", "trials", "policy_snapshots", "alembic_version"} <= tables


# --------------------------------------------------------------------------- stored text

MARKUP = "[link=http://evil.example]click[/link]"


def _store_with_markup(tmp_path: Path) -> str:
    from ma2ml.spec import parse_spec, spec_to_document
    from ma2ml.store import Store, TrialProposal

    search = parse_spec({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "markup"},
        "spec": {"agents": [{"name": "hpo", "decisions": [
            {"name": "choice", "values": [MARKUP, "[bold red]loud[/]"]}]}],
            "trainer": {"type": "command", "command": ["true"]}},
    })
    space = search.spec.search_space()
    url = f"sqlite:///{tmp_path / 'markup.db'}"
    with Store(url) as store:
        record = store.create_search(search.key, spec_to_document(search))
        for index in (0, 1):
            action = {"hpo": [index]}
            store.enqueue_trials(record.id, [TrialProposal(space.decode(action), action,
                                                           {"hpo": -0.7}, 0)])
        first = store.claim(record.id, "w", 30)
        assert first is not None
        store.complete(first.id, first.attempt, 0.9, {"accuracy": 0.9, "note": "[blink]x[/blink]"})
        second = store.claim(record.id, "w", 30)
        assert second is not None
        store.fail(second.id, second.attempt, "[red]boom[/red]\x1b[2J", retryable=False,
                   max_retries=0)
    return url


def test_stored_markup_and_escapes_print_as_text(tmp_path: Path) -> None:
    url = _store_with_markup(tmp_path)
    best = ma2ml("best", "default/markup", "--db", url)
    assert best.returncode == 0, best.stderr
    assert f"choice = {MARKUP}" in best.stdout
    assert "note: [blink]x[/blink]" in best.stdout
    trials = ma2ml("trials", "default/markup", "--db", url)
    assert trials.returncode == 0, trials.stderr
    assert "[red]boom[/red]\\x1b[2J" in trials.stdout
    assert "\x1b" not in best.stdout + trials.stdout
