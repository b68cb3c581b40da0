"""``benchmarks/early_stopping_replay.py``: the replay against hand-computed schedules, and
its table from a small curves file (no training: the curves are written here).

Writes under pytest's ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import json
from itertools import chain, repeat
from pathlib import Path

import pytest

from ma2ml.spec import EarlyStopping

# Three pipelines of 3 epochs, one second each: middling, bad, good.
CURVES = [([1, 2, 3], [0.5, 0.6, 0.7]), ([1, 2, 3], [0.1, 0.2, 0.3]),
          ([1, 2, 3], [0.9, 0.95, 0.99])]


def _curves(bench):
    return [bench.Curve(list(map(float, s)), a) for s, a in CURVES]


def test_asha_stops_the_bad_pipeline_and_frees_its_worker(load_benchmark) -> None:
    bench = load_benchmark("early_stopping_replay")
    rule = EarlyStopping(type="asha", min_epochs=1, reduction_factor=2)  # rungs 1 and 2
    order = chain([0, 1], repeat(2))
    # t=1: the middling one continues (first at rung 1); the bad one stops (not in the best
    # ceil(2/2) = 1), its worker starts the good one, which ends at t=4; the middling one
    # ends at t=3; at t=4 the next good one passes rung 1 and would end at t=6 > budget.
    assert bench.replay(_curves(bench), order, rule, budget=4.0) == [(3.0, 0.7), (4.0, 0.99)]
    # Without early stopping the bad one trains to the end and the good one ends at t=6.
    plain = bench.replay(_curves(bench), chain([0, 1], repeat(2)), None, budget=4.0)
    assert plain == [(3.0, 0.7), (3.0, 0.3)]
    assert bench.time_to(plain, 0.7) == 3.0 and bench.best_at(plain, 4.0) == 0.7


def test_median_stops_below_the_median_once_enough_peers(load_benchmark) -> None:
    bench = load_benchmark("early_stopping_replay")
    rule = EarlyStopping(type="median", min_epochs=1, min_trials=1)
    # t=1: the good one (first, no peers) continues, the bad one is below the median of
    # [0.9] and stops; the middling one starts in its place, passes epoch 1 at t=2 (0.5 is
    # not below the median of [0.9, 0.1]) and stops at epoch 2, t=3 (0.6 < 0.95), where
    # it would otherwise have ended at t=4.
    order = chain([2, 1], repeat(0))
    assert bench.replay(_curves(bench), order, rule, budget=4.0) == [(3.0, 0.99)]


def test_table_from_a_curves_file(load_benchmark, tmp_path: Path) -> None:
    bench = load_benchmark("early_stopping_replay")
    path = tmp_path / "learning_curves.json"
    path.write_text(json.dumps({"seed": 0, "epochs": 3, "pipelines": [
        {"index": i, "action": {}, "seconds": s, "accuracy": a}
        for i, (s, a) in enumerate(CURVES)] + [{"index": 3, "action": {}, "error": "x"}]}))
    curves = bench.load_curves([path])
    assert len(curves) == 3  # the failed pipeline is left out
    assert bench.rank_correlations(curves)[-1] == 1.0
    assert bench.main(["--curves", str(path), "--budgets", "6", "--orders", "20",
                       "--out", str(tmp_path)]) == 0
    table = (tmp_path / "early_stopping_replay.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 6 |")]
    assert len(rows) == len(bench.RULES)


def test_bad_inputs_name_what_was_expected(load_benchmark, tmp_path: Path, capsys) -> None:
    bench = load_benchmark("early_stopping_replay")
    for argv, message in ((["--orders", "0"], "--orders: from 1 to 100000"),
                          (["--budgets", "-5"], "--budgets: seconds in (0, 86400]"),
                          (["--collect", "5000"], "--collect: from 1 to 999")):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text('{"pipelines": "nope"}')
    with pytest.raises(SystemExit, match="not a learning-curves file"):
        bench.load_curves([broken])
    empty = tmp_path / "empty.json"
    empty.write_text('{"seed": 0, "epochs": 3, "pipelines": []}')
    with pytest.raises(SystemExit, match="no full-fidelity curves"):
        bench.load_curves([empty])
