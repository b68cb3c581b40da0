"""The theory check: cooperative matrix games with a known joint optimum.

Independent learners are known to settle on a worse joint action in both
games (Claus and Boutilier 1998); MA2ML's centralised critic and
counterfactual credit must find the optimum. The outcomes of ``ma2ml`` and
``independent`` are printed (run with ``-s``) for the issue note.
"""

from __future__ import annotations

import pytest

from .games import CLIMBING, PENALTY, MatrixGame, play

SEEDS = range(20)
BUDGET = 120  # evaluations per run, in batches of 4 (30 learner updates)


@pytest.mark.parametrize("game", [CLIMBING, PENALTY], ids=lambda g: g.name)
def test_ma2ml_reaches_the_joint_optimum(game: MatrixGame) -> None:
    ma2ml = [play(game, "ma2ml", seed, BUDGET) for seed in SEEDS]
    independent = [play(game, "independent", seed, BUDGET) for seed in SEEDS]
    hits = sum(r == game.optimum for r in ma2ml)
    independent_hits = sum(r == game.optimum for r in independent)
    print(f"\n{game.name}: ma2ml optimum {hits}/20 (mean payoff {sum(ma2ml) / 20:.2f}); "
          f"independent optimum {independent_hits}/20 (mean payoff {sum(independent) / 20:.2f}, "
          f"joint actions' payoffs {sorted(set(independent))})")
    assert hits >= 18
    assert sum(independent) < sum(ma2ml)
