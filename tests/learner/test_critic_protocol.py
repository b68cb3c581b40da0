"""The critic protocol (issue 24, item 3) changed how MA2ML talks to its critic, not what it
proposes: golden proposals and statistics recorded on the code before that refactor, for
both critics, with and without fidelity, and for the ablations; and snapshots saved before
it still load and continue the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ma2ml.learner import Result, Settings, make_algorithm
from ma2ml.learner.base import Algorithm, from_bytes
from ma2ml.learner.critics import BayesCritic, MLPCritic, make_critic
from ma2ml.learner.policy import Layout

#: Three agents, 720 joint actions: 32 proposals never run out of unseen ones.
LAYOUT = Layout(("a", "b", "c"), (4, 3, 4, 3, 5), (0, 0, 1, 1, 2))
DATA = Path(__file__).parent / "data"


def _reward(row: list[int]) -> float:
    """Main effects and one cross-agent interaction (decisions 0 and 2)."""
    return 0.1 * row[1] + 0.05 * row[4] + (1.0 if row[0] == row[2] == 1 else 0.1 * row[0])


def _results(algo: Algorithm, rows: list[list[int]], logps: list[dict[str, float]]
             ) -> list[Result]:
    """Every third result stopped at half fidelity when the search stops trials early, the
    sixth failed: each kind of result the critics treat differently."""
    out = []
    for i, (row, logp) in enumerate(zip(rows, logps, strict=True)):
        action = algo.layout.to_dict(row)
        if i == 5:
            out.append(Result(action, None, "failed", logp))
        elif algo.multi_fidelity and i % 3 == 0:
            out.append(Result(action, _reward(row) - 0.2, "stopped", logp, fidelity=0.5))
        else:
            out.append(Result(action, _reward(row), "completed", logp))
    return out


def _round(algo: Algorithm, log: list[Any]) -> None:
    """Propose 8, observe their results, update; log the rows and the statistics."""
    proposals = algo.propose(8)
    rows = [algo.layout.from_dict(p.action) for p in proposals]
    algo.observe(_results(algo, rows, [p.logp for p in proposals]))
    stats = algo.update()
    loss = stats["critic_loss"]
    credit = {k: round(v, 6) for k, v in sorted(stats["credit"].items())}
    log.append([rows, None if loss is None else round(loss, 6), credit])


def _build(algorithm: str, critic: str, multi_fidelity: bool, credit: str = "decision",
           **overrides: Any) -> Algorithm:
    settings = Settings(critic_model=critic, credit=credit, **overrides)
    return make_algorithm(algorithm, LAYOUT, settings, seed=7, multi_fidelity=multi_fidelity)


def run(algorithm: str, critic: str, multi_fidelity: bool, credit: str = "decision"
        ) -> list[Any]:
    """Three updates of 8 results, then 8 more proposals."""
    algo = _build(algorithm, critic, multi_fidelity, credit)
    log: list[Any] = []
    for _ in range(3):
        _round(algo, log)
    log.append([[algo.layout.from_dict(p.action) for p in algo.propose(8)]])
    return log


CASES = [
    ("ma2ml", "mlp", False), ("ma2ml", "mlp", True),
    ("ma2ml", "pairwise-bayes", False), ("ma2ml", "pairwise-bayes", True),
    ("ma2ml-no-credit", "mlp", False), ("ma2ml-no-credit", "mlp", True),
    ("ma2ml-no-credit", "pairwise-bayes", False), ("ma2ml-no-credit", "pairwise-bayes", True),
    ("ma2ml-on-policy", "mlp", False), ("ma2ml-on-policy", "pairwise-bayes", True),
    ("ma2ml", "mlp", False, "agent"), ("ma2ml", "pairwise-bayes", True, "agent"),
]

#: Recorded on the code before the critic protocol (commit 6e8985c).
GOLDEN: dict[tuple[Any, ...], list[Any]] = {
    ('ma2ml', 'mlp', False):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.338238, {'a': 0.07283, 'b': 0.180755, 'c': 0.049515}],
         [[[0, 0, 3, 2, 0], [1, 1, 1, 2, 2], [2, 1, 3, 0, 3], [0, 2, 3, 2, 1], [1, 2, 1, 2, 1],
           [2, 1, 1, 2, 1], [1, 1, 3, 2, 4], [1, 1, 3, 0, 2]],
          0.3723, {'a': 0.124111, 'b': 0.206044, 'c': 0.203067}],
         [[[1, 1, 3, 2, 2], [1, 2, 1, 1, 3], [3, 2, 1, 2, 3], [1, 2, 1, 2, 0], [1, 0, 1, 2, 2],
           [1, 2, 3, 2, 3], [1, 2, 1, 2, 4], [2, 2, 3, 2, 3]],
          0.246633, {'a': 0.209471, 'b': 0.221048, 'c': 0.214842}],
         [[[1, 1, 1, 2, 3], [3, 2, 1, 2, 4], [1, 2, 1, 1, 2], [1, 2, 1, 2, 2], [0, 2, 1, 2, 3],
           [1, 0, 1, 1, 2], [1, 2, 1, 0, 4], [1, 2, 1, 0, 3]]]],
    ('ma2ml', 'mlp', False, 'agent'):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.338238, {'a': 0.103941, 'b': 0.23547, 'c': 0.049787}],
         [[[2, 1, 1, 2, 2], [2, 1, 3, 2, 1], [2, 1, 1, 2, 1], [2, 0, 3, 0, 3], [0, 0, 3, 2, 1],
           [0, 1, 1, 2, 4], [1, 1, 1, 2, 4], [1, 2, 3, 2, 1]],
          0.400375, {'a': 0.220111, 'b': 0.28623, 'c': 0.127363}],
         [[[2, 1, 1, 0, 3], [2, 2, 3, 0, 3], [1, 2, 1, 2, 0], [2, 2, 3, 0, 4], [1, 1, 3, 0, 2],
           [2, 1, 2, 0, 3], [1, 1, 1, 2, 3], [1, 1, 1, 0, 1]],
          0.282702, {'a': 0.382039, 'b': 0.354749, 'c': 0.160962}],
         [[[2, 2, 2, 0, 4], [1, 2, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 2, 0], [2, 1, 1, 2, 0],
           [1, 2, 1, 2, 4], [1, 2, 1, 0, 1], [2, 1, 1, 2, 3]]]],
    ('ma2ml', 'mlp', True):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.331105, {'a': 0.052202, 'b': 0.246623, 'c': 0.099089}],
         [[[3, 2, 3, 0, 4], [3, 1, 3, 2, 2], [1, 1, 1, 2, 2], [2, 1, 3, 2, 0], [2, 0, 1, 2, 4],
           [1, 1, 1, 0, 1], [0, 1, 1, 2, 1], [1, 1, 3, 2, 4]],
          0.498077, {'a': 0.104446, 'b': 0.174802, 'c': 0.241653}],
         [[[1, 2, 1, 2, 4], [3, 0, 3, 2, 2], [1, 0, 1, 2, 2], [3, 0, 1, 2, 2], [2, 0, 3, 2, 2],
           [0, 2, 3, 2, 4], [2, 2, 3, 0, 2], [3, 2, 3, 2, 2]],
          0.344946, {'a': 0.219001, 'b': 0.157989, 'c': 0.264548}],
         [[[1, 2, 1, 2, 3], [1, 2, 1, 2, 2], [1, 2, 1, 0, 2], [3, 2, 1, 2, 4], [1, 1, 1, 0, 4],
           [1, 2, 3, 2, 4], [1, 2, 1, 0, 4], [1, 1, 1, 2, 3]]]],
    ('ma2ml', 'pairwise-bayes', False):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.792381, {'a': 1.506607, 'b': 1.352094, 'c': 3.334413}],
         [[[3, 2, 2, 0, 4], [1, 0, 0, 1, 0], [0, 2, 2, 2, 4], [1, 2, 1, 0, 2], [1, 1, 0, 0, 4],
           [1, 1, 1, 0, 0], [0, 1, 2, 0, 2], [3, 1, 2, 0, 2]],
          0.153219, {'a': 1.379889, 'b': 1.149745, 'c': 1.978489}],
         [[[1, 2, 1, 0, 4], [1, 2, 0, 0, 2], [1, 2, 1, 2, 2], [3, 2, 1, 0, 4], [2, 2, 3, 2, 1],
           [0, 1, 2, 2, 1], [3, 2, 1, 1, 0], [1, 2, 1, 2, 1]],
          0.180291, {'a': 0.492598, 'b': 1.157507, 'c': 0.793837}],
         [[[2, 2, 2, 1, 2], [3, 1, 3, 1, 3], [1, 1, 3, 0, 1], [1, 0, 3, 0, 0], [2, 2, 1, 2, 3],
           [2, 0, 1, 1, 2], [1, 1, 3, 2, 4], [1, 0, 2, 0, 4]]]],
    ('ma2ml', 'pairwise-bayes', True):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.504691, {'a': 1.041261, 'b': 1.395795, 'c': 1.798495}],
         [[[0, 1, 3, 2, 0], [0, 2, 2, 1, 2], [2, 0, 3, 1, 2], [2, 2, 0, 0, 1], [2, 1, 3, 0, 2],
           [2, 2, 2, 1, 3], [1, 2, 3, 2, 4], [2, 0, 1, 0, 3]],
          0.191635, {'a': 0.693329, 'b': 0.75994, 'c': 0.716088}],
         [[[1, 2, 3, 0, 1], [0, 0, 0, 2, 4], [1, 1, 1, 2, 2], [0, 0, 1, 2, 1], [1, 1, 1, 2, 3],
           [3, 0, 3, 0, 1], [3, 0, 0, 2, 1], [1, 1, 1, 2, 4]],
          0.081633, {'a': 0.950798, 'b': 0.517148, 'c': 0.508186}],
         [[[1, 1, 1, 2, 0], [2, 0, 1, 2, 0], [3, 0, 1, 2, 0], [0, 2, 1, 2, 2], [3, 0, 1, 2, 4],
           [1, 1, 3, 0, 4], [1, 1, 0, 0, 4], [1, 1, 0, 2, 3]]]],
    ('ma2ml', 'pairwise-bayes', True, 'agent'):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.504691, {'a': 1.511334, 'b': 1.923424, 'c': 1.950746}],
         [[[0, 2, 2, 1, 2], [1, 0, 2, 1, 4], [2, 0, 3, 1, 2], [1, 1, 3, 1, 0], [2, 1, 3, 0, 2],
           [0, 2, 2, 2, 3], [2, 2, 0, 0, 1], [0, 1, 3, 2, 0]],
          0.172063, {'a': 0.638899, 'b': 0.883119, 'c': 0.761381}],
         [[[3, 0, 0, 2, 1], [3, 1, 1, 0, 4], [0, 0, 0, 2, 4], [1, 1, 1, 2, 2], [3, 0, 2, 2, 0],
           [1, 2, 3, 0, 1], [1, 1, 1, 2, 3], [1, 1, 1, 2, 4]],
          0.041507, {'a': 0.584607, 'b': 0.830325, 'c': 0.498847}],
         [[[3, 1, 1, 2, 4], [2, 0, 1, 2, 0], [0, 0, 1, 2, 0], [3, 0, 1, 2, 4], [0, 2, 0, 0, 4],
           [1, 2, 1, 2, 4], [2, 2, 1, 2, 4], [2, 1, 1, 2, 2]]]],
    ('ma2ml-no-credit', 'mlp', False):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.338238, {'a': 0.243217, 'b': 0.243217, 'c': 0.243217}],
         [[[1, 0, 3, 2, 1], [2, 1, 1, 0, 2], [1, 1, 1, 2, 3], [2, 1, 3, 2, 2], [1, 1, 1, 2, 2],
           [2, 1, 1, 2, 1], [0, 1, 1, 2, 2], [1, 1, 3, 2, 4]],
          0.372382, {'a': 0.377357, 'b': 0.377357, 'c': 0.377357}],
         [[[0, 2, 3, 2, 3], [2, 1, 3, 2, 3], [3, 2, 3, 0, 3], [1, 2, 1, 2, 0], [1, 2, 3, 0, 3],
           [1, 1, 3, 2, 3], [2, 2, 3, 2, 3], [0, 0, 1, 2, 3]],
          0.359223, {'a': 0.366035, 'b': 0.366035, 'c': 0.366035}],
         [[[1, 1, 1, 0, 4], [1, 2, 1, 0, 1], [1, 2, 1, 0, 4], [3, 2, 1, 2, 4], [1, 2, 1, 2, 4],
           [1, 2, 1, 1, 2], [1, 2, 1, 0, 2], [1, 2, 1, 0, 3]]]],
    ('ma2ml-no-credit', 'mlp', True):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.331105, {'a': 0.324093, 'b': 0.324093, 'c': 0.324093}],
         [[[2, 1, 3, 2, 0], [2, 1, 3, 0, 4], [2, 1, 3, 2, 2], [1, 1, 1, 2, 2], [2, 1, 3, 2, 4],
           [0, 1, 1, 2, 1], [1, 2, 3, 2, 3], [2, 2, 1, 2, 4]],
          0.340521, {'a': 0.410438, 'b': 0.410438, 'c': 0.410438}],
         [[[1, 2, 3, 0, 4], [3, 2, 1, 2, 4], [3, 2, 3, 2, 4], [1, 0, 1, 0, 2], [1, 0, 1, 2, 2],
           [1, 2, 1, 2, 4], [2, 2, 3, 2, 4], [1, 0, 3, 0, 2]],
          0.418601, {'a': 0.347149, 'b': 0.347149, 'c': 0.347149}],
         [[[1, 0, 1, 1, 2], [3, 1, 3, 2, 4], [3, 0, 1, 2, 4], [1, 1, 1, 0, 2], [3, 2, 1, 0, 4],
           [3, 1, 1, 2, 2], [2, 1, 1, 0, 2], [3, 0, 1, 2, 2]]]],
    ('ma2ml-no-credit', 'pairwise-bayes', False):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.792381, {'a': 3.548496, 'b': 3.548496, 'c': 3.548496}],
         [[[1, 1, 3, 0, 2], [3, 2, 1, 1, 2], [1, 1, 1, 2, 2], [1, 0, 1, 2, 2], [1, 1, 0, 1, 2],
           [1, 1, 1, 0, 2], [3, 0, 2, 2, 2], [3, 1, 3, 2, 2]],
          0.126558, {'a': 1.850354, 'b': 1.850354, 'c': 1.850354}],
         [[[3, 0, 0, 2, 3], [0, 0, 0, 0, 4], [0, 0, 1, 2, 3], [0, 2, 1, 2, 3], [2, 0, 2, 2, 2],
           [2, 1, 2, 2, 1], [2, 0, 0, 0, 4], [0, 2, 1, 2, 2]],
          0.192336, {'a': 2.055932, 'b': 2.055932, 'c': 2.055932}],
         [[[0, 0, 3, 1, 0], [1, 2, 1, 1, 3], [0, 1, 1, 1, 0], [0, 2, 3, 1, 3], [3, 1, 1, 2, 4],
           [0, 1, 3, 1, 0], [1, 1, 1, 1, 4], [1, 0, 3, 2, 0]]]],
    ('ma2ml-no-credit', 'pairwise-bayes', True):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.504691, {'a': 2.542267, 'b': 2.542267, 'c': 2.542267}],
         [[[2, 1, 1, 2, 1], [0, 2, 0, 0, 2], [3, 2, 0, 2, 4], [2, 1, 0, 0, 1], [2, 0, 1, 0, 1],
           [2, 0, 0, 0, 1], [0, 1, 0, 0, 4], [0, 1, 2, 1, 3]],
          0.23654, {'a': 1.331436, 'b': 1.331436, 'c': 1.331436}],
         [[[1, 1, 0, 1, 0], [3, 2, 3, 1, 1], [1, 2, 3, 0, 1], [3, 2, 2, 2, 4], [3, 2, 0, 1, 3],
           [0, 0, 0, 1, 0], [0, 0, 3, 0, 1], [2, 2, 3, 0, 1]],
          0.084764, {'a': 0.773444, 'b': 0.773444, 'c': 0.773444}],
         [[[0, 2, 0, 2, 0], [2, 2, 3, 2, 0], [1, 1, 2, 0, 1], [1, 1, 0, 2, 1], [2, 2, 3, 1, 2],
           [0, 2, 1, 1, 3], [2, 2, 0, 2, 0], [1, 2, 1, 1, 1]]]],
    ('ma2ml-on-policy', 'mlp', False):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.300155, {'a': 0.081089, 'b': 0.210755, 'c': 0.061984}],
         [[[3, 1, 3, 2, 2], [1, 1, 1, 2, 2], [2, 1, 3, 0, 3], [0, 2, 3, 2, 1], [2, 1, 1, 2, 1],
           [0, 1, 1, 2, 1], [0, 1, 1, 2, 0], [0, 0, 3, 2, 0]],
          0.627231, {'a': 0.147527, 'b': 0.296894, 'c': 0.297112}],
         [[[1, 2, 3, 0, 4], [3, 1, 3, 0, 3], [2, 1, 3, 2, 3], [1, 2, 3, 0, 2], [2, 2, 3, 2, 3],
           [1, 1, 3, 2, 2], [1, 2, 3, 0, 3], [2, 1, 3, 2, 2]],
          0.527303, {'a': 0.183973, 'b': 0.239595, 'c': 0.274679}],
         [[[1, 2, 1, 0, 4], [2, 2, 2, 0, 3], [3, 2, 3, 0, 3], [2, 1, 3, 0, 4], [2, 1, 1, 0, 2],
           [2, 2, 1, 2, 3], [3, 1, 2, 0, 3], [3, 0, 3, 0, 4]]]],
    ('ma2ml-on-policy', 'pairwise-bayes', True):
        [[[[1, 0, 2, 2, 3], [1, 0, 2, 1, 1], [3, 0, 3, 2, 3], [2, 2, 2, 0, 0], [3, 0, 1, 0, 0],
           [3, 1, 0, 1, 1], [1, 1, 1, 2, 1], [2, 0, 2, 0, 4]],
          0.504691, {'a': 1.041261, 'b': 1.395795, 'c': 1.798495}],
         [[[0, 1, 3, 2, 0], [0, 2, 2, 1, 2], [2, 0, 3, 1, 2], [2, 2, 0, 0, 1], [2, 1, 3, 0, 2],
           [2, 2, 2, 1, 3], [1, 2, 3, 2, 4], [2, 0, 1, 0, 3]],
          0.100657, {'a': 0.619714, 'b': 0.603686, 'c': 0.958371}],
         [[[0, 1, 1, 0, 4], [1, 1, 2, 2, 2], [3, 0, 2, 0, 4], [2, 1, 2, 2, 1], [2, 1, 1, 2, 2],
           [3, 0, 2, 0, 1], [1, 1, 3, 1, 4], [0, 0, 2, 2, 2]],
          0.09218, {'a': 0.547723, 'b': 1.320428, 'c': 1.131052}],
         [[[3, 1, 1, 2, 4], [2, 2, 3, 0, 2], [2, 0, 0, 2, 0], [0, 1, 0, 0, 2], [1, 2, 2, 2, 3],
           [2, 1, 2, 1, 4], [3, 0, 2, 1, 4], [3, 2, 2, 1, 0]]]],
}


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_the_same_seed_and_calls_give_the_proposals_recorded_before_the_refactor(
        case: tuple[Any, ...]) -> None:
    assert run(*case) == GOLDEN[case]


#: Snapshots saved by the code before the critic protocol (``snapshot_state``; a small MLP
#: critic, so the file stays small), with the 8 proposals that code made next, loaded from
#: them into a new algorithm.
SNAPSHOTS = {("mlp", True): "snapshot-mlp.pt", ("pairwise-bayes", True): "snapshot-bayes.pt"}
SNAPSHOT_SETTINGS = {"critic_hidden": 8}
SNAPSHOT_NEXT: dict[tuple[str, bool], list[list[int]]] = {
    ('mlp', True):
        [[2, 2, 3, 0, 0], [2, 2, 1, 1, 4], [3, 2, 3, 0, 3], [3, 2, 1, 0, 1], [2, 2, 2, 2, 4],
         [3, 2, 1, 2, 4], [3, 2, 3, 2, 1], [3, 2, 2, 2, 4]],
    ('pairwise-bayes', True):
        [[1, 2, 3, 0, 1], [0, 0, 0, 2, 4], [1, 1, 1, 2, 2], [0, 0, 1, 2, 1], [1, 1, 1, 2, 3],
         [3, 0, 3, 0, 1], [3, 0, 0, 2, 1], [1, 1, 1, 2, 4]],
}


def snapshot_state(critic: str, multi_fidelity: bool) -> dict[str, Any]:
    """The snapshot after two updates of ``_round``."""
    algo = _build("ma2ml", critic, multi_fidelity, **SNAPSHOT_SETTINGS)
    log: list[Any] = []
    for _ in range(2):
        _round(algo, log)
    return algo.state_dict()


@pytest.mark.parametrize(("key", "file"), SNAPSHOTS.items(), ids=lambda v: str(v))
def test_a_snapshot_saved_before_the_refactor_loads_and_continues(
        key: tuple[str, bool], file: str) -> None:
    critic, multi_fidelity = key
    state = from_bytes((DATA / file).read_bytes())
    algo = _build("ma2ml", critic, multi_fidelity, **SNAPSHOT_SETTINGS)
    algo.load_state_dict(state)
    assert [algo.layout.from_dict(p.action) for p in algo.propose(8)] == SNAPSHOT_NEXT[key]
    # Saved again, the snapshot has the same entries as before the refactor.
    assert _keys(algo.state_dict()) == _keys(state)


def _keys(state: Any) -> Any:
    """The nested keys of a state dict (tensors and plain values as their type)."""
    if isinstance(state, dict):
        return {k: _keys(v) for k, v in state.items()}
    return type(state).__name__ if not isinstance(state, np.ndarray) else "ndarray"


def test_a_critic_is_built_only_once_auto_is_decided() -> None:
    with pytest.raises(ValueError, match="critic_model 'auto' is not decided"):
        make_critic(LAYOUT, Settings(), fidelity_input=False)
    for budget, cls in ((None, MLPCritic), (99, MLPCritic), (100, BayesCritic)):
        critic = make_critic(LAYOUT, Settings().for_budget(budget), fidelity_input=True)
        assert isinstance(critic, cls) and critic.fidelity_input
