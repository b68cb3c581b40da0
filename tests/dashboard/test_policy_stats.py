"""The learner's snapshot stats carry each decision's probabilities, which the dashboard's
policy views draw, and the store reads them back at chosen versions only."""

from __future__ import annotations

import math

import pytest

from ma2ml.learner.algorithms import make_algorithm
from ma2ml.learner.base import Result
from ma2ml.spaces import SearchSpace
from ma2ml.spec import parse_spec
from ma2ml.store import Store

from .conftest import new_search, tiny_spec


@pytest.mark.parametrize("name", ["ma2ml", "random"])
def test_update_stats_carry_the_policy(name: str) -> None:
    space: SearchSpace = parse_spec(tiny_spec("stats")).spec.search_space()
    algorithm = make_algorithm(name, space, seed=0)
    proposals = algorithm.propose(4)
    algorithm.observe([Result(p.action, 0.5 + 0.1 * i, behaviour_logp=p.logp)
                       for i, p in enumerate(proposals)])
    policy = algorithm.update()["policy"]
    assert list(policy) == space.agent_names
    for agent in space.agents:
        assert [len(p) for p in policy[agent.name]] == agent.sizes
        assert all(math.isclose(sum(p), 1.0, abs_tol=1e-3) for p in policy[agent.name])


def test_snapshot_reads_at_chosen_versions(sqlite_store: Store) -> None:
    writer = new_search(sqlite_store, "versions")
    for _ in range(5):
        writer.snapshot()
    search_id = writer.record.id
    assert sqlite_store.snapshot_versions(search_id) == [1, 2, 3, 4, 5]
    picked = sqlite_store.snapshot_stats(search_id, versions=[5, 1, 3, 99])
    assert [version for version, _created, _stats in picked] == [1, 3, 5]
    assert picked[0][2]["entropy"]["aug"] == pytest.approx(2.9)
    assert sqlite_store.snapshot_stats(search_id, versions=[]) == []
    assert len(sqlite_store.snapshot_stats(search_id)) == 5
