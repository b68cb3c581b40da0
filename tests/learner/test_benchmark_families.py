"""Smoke runs of ``search_efficiency.py --tables coupled|noisy`` (few seconds each):
the coupled-modules family and the noisy tables run every learner unchanged and score
the recommended configuration's noise-free value.

Every run here writes under pytest's ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def test_coupled_family_runs_and_compares_per_instance_and_pooled(load_benchmark,
                                                                  tmp_path: Path) -> None:
    bench = load_benchmark("search_efficiency")
    methods = ("ma2ml", "ma2ml-no-credit", "ma2ml-1-candidate", "ma2ml-mlp", "tpe")
    argv = ["--tables", "coupled", "--tasks", "coupled-0", "--methods", *methods,
            "--seeds", "2", "--budget", "16", "--jobs", "1", "--out", str(tmp_path)]
    assert bench.main(argv) == 0
    table = (tmp_path / "search_efficiency_coupled.md").read_text()
    for method in methods:
        assert f"| coupled-0 | {method} |" in table
    assert "| coupled (all instances) |" in table
    assert "ma2ml vs ma2ml-1-candidate at 16 evaluations" in table
    assert "ma2ml vs ma2ml-mlp at 16 evaluations" in table
    regrets = json.loads((tmp_path / "search_efficiency_coupled.json").read_text())["regret"]
    task = bench.load_task("coupled-0")
    for rows in regrets["coupled-0"].values():
        # Regret of a real configuration of this task: between 0 and the worst possible.
        assert all(0 <= row[0] < task.optimum + 10 for row in rows)


def test_noisy_table_observes_one_seed_and_scores_the_seed_mean(load_benchmark) -> None:
    bench = load_benchmark("search_efficiency")
    clean, noisy = bench.load_task("nb201-cifar100"), bench.load_task("noisy-nb201-cifar100")
    assert (noisy.objective == clean.objective).all() and noisy.seeds is not None
    row = list(np.unravel_index(int(clean.objective.argmax()), clean.objective.shape))
    rng = np.random.default_rng(0)
    draws = {noisy.observe(row, rng) for _ in range(40)}
    seeds = noisy.seeds[tuple(row)]
    assert draws == set(seeds[~np.isnan(seeds)].tolist()) and len(draws) > 1
    assert noisy.value(row) == clean.value(row) == np.nanmean(seeds)
    assert clean.observe(row, rng) == clean.value(row)  # the published table: no noise


class Recording:
    """A task that remembers the noise-free value of every configuration evaluated."""

    def __init__(self, task) -> None:
        self.task, self.seen, self.observed = task, [], []

    def __getattr__(self, name: str):
        return getattr(self.task, name)

    def observe(self, row, rng) -> float:
        self.seen.append(self.task.value(row))
        self.observed.append(self.task.observe(row, rng))
        return self.observed[-1]


def test_noisy_run_recommends_and_is_no_better_than_its_observations(load_benchmark) -> None:
    """Scored on the recommendation's noise-free value: a lucky draw earns nothing."""
    bench = load_benchmark("search_efficiency")
    task = Recording(bench.load_task("noisy-fcnet-protein"))
    values = bench.run_learner_method(task, "random", 0, 12, 4, bench.Settings())
    assert len(values) == 12 and len(task.seen) == 12
    assert all(v in task.seen for v in values)  # a configuration it evaluated
    # Random search recommends its best (lowest-MSE) observation, scored at its seed mean.
    assert values[-1] == task.seen[int(np.argmin(task.observed))]
    assert task.observed != task.seen  # the learner saw single seeds, not the means


def test_ma2ml_recommends_by_the_products_rule_and_tpe_by_its_best_draw(load_benchmark
                                                                         ) -> None:
    """A pipeline evaluated twenty times against a poor one whose second draw was lucky:
    the product's rule (ma2ml on a noisy task) averages the draws and takes the
    replicated one; the best observation (TPE, random) takes the lucky one."""
    bench = load_benchmark("search_efficiency")
    task = bench.load_task("coupled-0")
    rng = np.random.default_rng(0)
    sizes = [d.size for agent in task.space.agents for d in agent.decisions]
    rows = [[int(rng.integers(v)) for v in sizes] for _ in range(40)]
    observed = [task.observe(r, rng) for r in rows]
    good, lucky = list(task.safe), rows[0]
    rows += [good] * 20 + [lucky]
    observed += [task.observe(good, rng) for _ in range(20)]
    observed.append(max(observed) + 0.5)
    assert bench.recommend(task, rows, observed, estimated=False) == lucky
    assert bench.recommend(task, rows, observed, estimated=True) == good
    assert bench.is_noisy(task) and not bench.is_noisy(bench.load_task("nb201-cifar10"))
