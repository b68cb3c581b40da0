"""Smoke run of ``benchmarks/search_efficiency.py --quick`` on the real tables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "search_efficiency", ROOT / "benchmarks" / "search_efficiency.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tables_load_with_the_documented_optima() -> None:
    bench = _benchmark()
    cifar10 = bench.load_task("nb201-cifar10")
    assert cifar10.objective.shape == (5,) * 6
    assert cifar10.optimum == np.float64(cifar10.objective.max())
    assert round(cifar10.optimum, 2) == 91.61  # best mean CIFAR-10 validation accuracy
    protein = bench.load_task("fcnet-protein")
    assert protein.objective.size == 62208 and protein.space.agent_names == ["nas", "hpo"]
    assert protein.regret(protein.optimum) == 0.0


def test_quick_run_writes_table_and_plot(tmp_path: Path, capsys) -> None:
    assert _benchmark().main(["--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "search_efficiency.md").read_text()
    for method in ("ma2ml", "ma2ml-lite", "independent", "random", "tpe"):
        assert f"| fcnet-protein | {method} |" in table
        assert f"| nb201-cifar10 | {method} |" in table
    assert (tmp_path / "search_efficiency.png").stat().st_size > 10_000
    assert "regret@24" in capsys.readouterr().out
