"""Smoke run of ``benchmarks/store_throughput.py``: ma2ml's store on SQLite and PostgreSQL
(a worker's per-trial work) and Optuna's journal file get through a few trials with two
spawned worker processes, as a user runs the script. (Optuna's RDB storage runs the same
``optuna_worker``; left out to keep this test short.)

Writes under pytest's ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[2]
STORAGES = ("ma2ml-postgres", "ma2ml-sqlite", "optuna-journal")


@pytest.mark.slow
@pytest.mark.postgres
def test_every_storage_completes_its_trials_without_errors(postgres_admin_url: URL,
                                                           tmp_path: Path) -> None:
    # A script, as a user runs it: its workers are spawned from __main__.
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "store_throughput.py"), "--trials", "12",
         "--workers", "2", "--storages", *STORAGES, "--out", str(tmp_path), "--postgres-url",
         postgres_admin_url.render_as_string(False)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (tmp_path / "store_throughput.md").read_text()
    rows = {cells[0]: cells for cells in (
        [cell.strip() for cell in line.strip("|").split("|")] for line in report.splitlines()
        if line.startswith("| ") and not line.startswith(("| storage", "| ---")))}
    assert set(rows) == set(STORAGES)
    for storage, (_, workers, trials, rate, *_, errors) in rows.items():
        assert (workers, trials, errors) == ("2", "12", "0"), storage
        assert float(rate) > 0, storage
    assert "ma2ml-postgres / optuna-journal" in report
    assert "ma2ml-sqlite / optuna-journal" in report
    assert list(tmp_path.iterdir()) == [tmp_path / "store_throughput.md"]
