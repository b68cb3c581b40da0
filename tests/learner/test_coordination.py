"""Coordination across more than two agents: the climbing game chained over three agents.

The middle agent's part of the optimum pays only when both neighbours choose
theirs, and each trap guards it with the climbing game's penalties: the
smallest case of traps chained across agents (``benchmarks/coupled.py``).
Independent learners settle on a safe joint action; MA2ML's final policies
must choose the joint optimum. Counts are printed (run with ``-s``).
"""

from __future__ import annotations

from .games import CLIMBING, ChainGame, play

GAME = ChainGame(CLIMBING, 3)
SEEDS = range(8)
BUDGET = 96  # evaluations per run, in batches of 4 (24 learner updates); 27 joint actions


def test_ma2ml_coordinates_a_chain_of_three_climbing_games() -> None:
    ma2ml = [play(GAME, "ma2ml", seed, BUDGET) for seed in SEEDS]
    independent = [play(GAME, "independent", seed, BUDGET) for seed in SEEDS]
    hits = sum(r == GAME.optimum for r in ma2ml)
    independent_hits = sum(r == GAME.optimum for r in independent)
    print(f"\n{GAME.name}: ma2ml optimum {hits}/8, independent {independent_hits}/8 "
          f"(payoffs {sorted(set(independent))})")
    assert hits >= 7
    assert independent_hits <= 1
