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
    assert "joint space: 31 decisions" in result.stdout


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
