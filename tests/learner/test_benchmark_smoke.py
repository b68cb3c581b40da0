"""Smoke run of ``benchmarks/search_efficiency.py --quick`` on the real tables.

Every run here writes under pytest's ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_tables_load_with_the_documented_optima(load_benchmark) -> None:
    bench = load_benchmark("search_efficiency")
    cifar10 = bench.load_task("nb201-cifar10")
    assert cifar10.objective.shape == (5,) * 6
    assert cifar10.optimum == np.float64(cifar10.objective.max())
    assert round(cifar10.optimum, 2) == 91.61  # best mean CIFAR-10 validation accuracy
    protein = bench.load_task("fcnet-protein")
    assert protein.objective.size == 62208 and protein.space.agent_names == ["nas", "hpo"]
    assert protein.regret(protein.optimum) == 0.0


def test_quick_run_writes_table_and_plot(load_benchmark, tmp_path: Path, capsys) -> None:
    assert load_benchmark("search_efficiency").main(["--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "search_efficiency.md").read_text()
    for method in ("ma2ml", "ma2ml-lite", "independent", "random", "tpe"):
        assert f"| fcnet-protein | {method} |" in table
        assert f"| nb201-cifar10 | {method} |" in table
    assert (tmp_path / "search_efficiency.png").stat().st_size > 10_000
    assert "regret@24" in capsys.readouterr().out
    data = json.loads((tmp_path / "search_efficiency.json").read_text())
    assert data["seeds"] == [0, 1] and data["checkpoints"] == [24]
    per_seed = data["regret"]["nb201-cifar10"]["ma2ml"]
    assert len(per_seed) == 2 and all(len(row) == 1 and row[0] >= 0 for row in per_seed)
    # The table's mean is the mean of the per-seed regrets written beside it.
    mean = sum(row[0] for row in per_seed) / 2
    assert f"| nb201-cifar10 | ma2ml | {mean:.4g} ± " in table


@pytest.mark.parametrize("argv", [["--quick"], ["--first-seed", "100", "--seeds", "3"],
                                  ["--tasks", "nb201-cifar10"], ["--methods", "ma2ml", "tpe"],
                                  ["--budget", "50"], ["--batch", "1"], ["--set", "alpha=0.1"]])
def test_only_the_reported_run_writes_the_committed_results(load_benchmark, argv: list[str],
                                                            tmp_path: Path,
                                                            monkeypatch) -> None:
    """A smoke or partial run must never overwrite ``benchmarks/results/``."""
    bench = load_benchmark("search_efficiency")
    assert bench.out_dir(bench.parse_args([])) == ROOT / "benchmarks" / "results"
    assert bench.out_dir(bench.parse_args(["--jobs", "4"])) == bench.RESULTS  # speed only
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # not /tmp: nothing left behind
    out = bench.out_dir(bench.parse_args(argv))
    assert out.parent == tmp_path and out.is_dir() and not any(out.iterdir())
    assert bench.out_dir(bench.parse_args([*argv, "--out", str(tmp_path / "x")])) == \
        tmp_path / "x"


def test_runs_come_back_in_seed_order_from_the_pool(load_benchmark, monkeypatch) -> None:
    """Two worker processes finish in any order; curves must still line up with seeds."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # spawned workers import it by name
    bench = load_benchmark("search_efficiency")
    seeds = [3, 0, 2]
    pooled = bench.evaluate(["nb201-cifar10"], ["random"], seeds, 10, 4, jobs=2,
                            progress=lambda _: None)
    serial = bench.evaluate(["nb201-cifar10"], ["random"], seeds, 10, 4, jobs=1)
    for a, b in zip(pooled[("nb201-cifar10", "random")], serial[("nb201-cifar10", "random")],
                    strict=True):
        assert list(a) == list(b)


def test_mann_whitney_matches_the_textbook_normal_approximation(load_benchmark) -> None:
    bench = load_benchmark("search_efficiency")
    # Fully separated 10 vs 10: U = 0, mean 50, sd sqrt(10*10*21/12); continuity-corrected.
    assert bench.mann_whitney_p(np.arange(10.0), np.arange(10.0) + 10) == \
        pytest.approx(math.erfc((50 - 0.5) / math.sqrt(175) / math.sqrt(2)))
    assert bench.mann_whitney_p(np.zeros(20), np.zeros(20)) == 1.0  # all tied: no evidence
    same = bench.mann_whitney_p(np.array([0.0, 0.0, 1.0, 2.0]), np.array([2.0, 1.0, 0.0, 0.0]))
    assert same == 1.0


def test_comparison_calls_only_detectable_differences(load_benchmark) -> None:
    bench = load_benchmark("search_efficiency")
    rng = np.random.default_rng(0)
    runs = {("a", "ma2ml"): list(rng.uniform(0, 1, (20, 1))),
            ("a", "tpe"): list(rng.uniform(0, 1, (20, 1))),
            ("b", "ma2ml"): list(rng.uniform(0, 1, (20, 1))),
            ("b", "tpe"): list(rng.uniform(2, 3, (20, 1)))}
    text = bench.compare(runs, "ma2ml", "tpe", checkpoint=1)
    assert "| a |" in text and "| match |" in text.split("| a |")[1].split("\n")[0]
    assert "better" in text.split("| b |")[1].split("\n")[0]
    assert text.endswith("better on 1, match on 1, worse on 0")
