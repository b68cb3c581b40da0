"""Smoke run of ``benchmarks/time_to_accuracy.py --quick``: real training on a few hundred
real Fashion-MNIST images, ma2ml with ASHA and Optuna TPE + Hyperband, 20 s each (less
was flaky under load).

Writes under pytest's ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.serial  # a wall-clock budget: measured alone, not beside other tests
def test_quick_run_writes_a_table_for_each_method(tmp_path: Path) -> None:
    # As a user runs it: a script whose Optuna workers are spawned from __main__.
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "time_to_accuracy.py"), "--quick",
         "--budget", "20", "--methods", "ma2ml-asha", "optuna-tpe-hyperband",
         "--out", str(tmp_path)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    table = (tmp_path / "time_to_accuracy.md").read_text()
    assert "| ma2ml-asha |" in table and "| optuna-tpe-hyperband |" in table
    runs = json.loads((tmp_path / "time_to_accuracy.json").read_text())
    assert {r["method"] for r in runs} == {"ma2ml-asha", "optuna-tpe-hyperband"}
    assert all(r["found"] for r in runs), runs  # each method finished pipelines in time
    assert all(0 <= acc <= 1 and 0 <= t <= 20 for r in runs for t, acc in r["found"])
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 2000


def test_only_the_reported_run_writes_the_committed_results(load_benchmark, tmp_path: Path,
                                                              monkeypatch) -> None:
    bench = load_benchmark("time_to_accuracy")
    assert bench.out_dir(bench.parse_args([])) == bench.RESULTS
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    for partial in (["--quick"], ["--budget", "60"], ["--seeds", "1"], ["--device", "cuda"]):
        assert bench.out_dir(bench.parse_args(partial)).parent == tmp_path


def test_ma2ml_methods_run_the_critic_auto_takes_for_tens_of_trials(load_benchmark) -> None:
    """The specs' maxTrials (100k) is only a bound the clock never reaches; read as a
    budget, ``auto`` would take the Bayesian critic, which loses below 100 trials."""
    from ma2ml.settings import Settings

    bench = load_benchmark("time_to_accuracy")
    for method in ("ma2ml-asha", "ma2ml", "ma2ml-asha-blind"):
        spec = bench.spec_for(method, 0, 9, False)["spec"]
        settings = Settings.from_overrides(spec["algorithm"]["settings"])
        assert settings.for_budget(spec["budget"]["maxTrials"]).critic_model == "mlp"
        assert Settings().for_budget(spec["budget"]["maxTrials"]).critic_model != "mlp"
    assert bench.spec_for("ma2ml", 0, 9, False)["spec"]["trainer"]["device"] == "cpu"
    assert bench.spec_for("ma2ml", 0, 9, False, "cuda")["spec"]["trainer"]["device"] == "cuda"
