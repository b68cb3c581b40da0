"""The coupled-modules generator of ``benchmarks/coupled.py``: the optimum it claims is the
real one, instances are seeded, and the climbing-game trap is really there."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def coupled(load_benchmark):
    return load_benchmark("coupled")


@pytest.mark.parametrize("seed", range(6))
def test_the_constructed_optimum_is_the_enumerated_one(coupled, seed: int) -> None:
    task = coupled.make_task(seed, agents=3, decisions=(2, 2), values=(3, 4), extra_pairs=2)
    row, value = coupled.enumerate_optimum(task)
    assert row == task.trap
    assert value == pytest.approx(task.optimum)
    assert task.regret(value) == pytest.approx(0.0)


def test_the_constructed_optimum_holds_with_the_largest_main_effects(coupled) -> None:
    task = coupled.make_task(7, agents=2, decisions=(3, 3), values=(3, 5), extra_pairs=3,
                             main_scale=coupled.MAX_MAIN_SCALE * 0.99, penalty=0.3)
    assert coupled.enumerate_optimum(task)[0] == task.trap


def test_same_seed_same_task_and_other_seeds_differ(coupled) -> None:
    a, b, c = coupled.make_task(3), coupled.make_task(3), coupled.make_task(4)
    assert a.space == b.space and a.trap == b.trap and a.safe == b.safe
    assert all((x.payoff == y.payoff).all() for x, y in zip(a.pairs, b.pairs, strict=True))
    assert (a.space, a.trap) != (c.space, c.trap)
    sizes = [d.size for agent in a.space.agents for d in agent.decisions]
    rows = np.stack([np.random.default_rng(0).integers(0, v, 50) for v in sizes], 1)
    assert (a.values(rows) == b.values(rows)).all()


@pytest.mark.parametrize("seed", range(10))
def test_the_trap_is_there(coupled, seed: int) -> None:
    """Decision-by-decision greedy choice lands in the safe basin, a local optimum that no
    single change leaves, far from the optimum; every interaction couples two agents."""
    task = coupled.make_task(seed)
    assert coupled.greedy_row(task) == task.safe
    assert coupled.is_local_optimum(task, task.safe)
    assert task.regret(task.value(task.safe)) > 0.25 * len(task.pairs)
    agent_of = [a for a, agent in enumerate(task.space.agents) for _ in agent.decisions]
    assert all(agent_of[p.first] != agent_of[p.second] for p in task.pairs)
    assert {d for p in task.pairs for d in (p.first, p.second)} == set(range(len(agent_of)))
    # Mis-coordination is punished: the trap value of one decision with the safe value
    # of its partner is worse than the safe basin.
    pair = task.pairs[0]
    half = list(task.safe)
    half[pair.first] = task.trap[pair.first]
    assert task.value(half) < task.value(task.safe) - 1.0


def test_observations_are_noisy_around_the_value(coupled) -> None:
    task = coupled.make_task(0, noise=0.2)
    rng = np.random.default_rng(1)
    draws = np.array([task.observe(task.safe, rng) for _ in range(2000)])
    assert draws.mean() == pytest.approx(task.value(task.safe), abs=0.02)
    assert draws.std() == pytest.approx(0.2, rel=0.1)
    assert coupled.make_task(0, noise=0.0).observe(task.safe, rng) == task.value(task.safe)


@pytest.mark.parametrize(("key", "value"), [("agents", 5), ("decisions", (1, 3)),
                                            ("values", (3, 9)), ("extra_pairs", -1),
                                            ("penalty", 0.0), ("main_scale", 0.2),
                                            ("noise", float("nan"))])
def test_bad_parameters_are_refused_by_name(coupled, key: str, value) -> None:
    with pytest.raises(ValueError, match=key):
        coupled.make_task(0, **{key: value})
