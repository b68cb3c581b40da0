"""Search spaces: presets as data, action encoding both ways, sizes."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from ma2ml.spaces import PRESETS, SpaceError, build_agent, build_space


def test_every_preset_builds_with_defaults_and_encodes_round_trip() -> None:
    rng = random.Random(0)
    for name in PRESETS:
        agent = build_agent("a", name)
        assert agent.decisions, name
        for _ in range(20):
            indices = [rng.randrange(n) for n in agent.sizes]
            assert agent.encode(agent.decode(indices)) == indices


def test_autoaugment_layout_follows_the_options() -> None:
    agent = build_agent("aug", "autoaugment", {"subPolicies": 3, "opsPerSubPolicy": 2})
    assert len(agent.decisions) == 3 * 2 * 3
    assert [d.name for d in agent.decisions[:3]] == ["sp0_op0", "sp0_prob0", "sp0_mag0"]
    sizes = {d.name: d.size for d in agent.decisions}
    assert (sizes["sp2_op1"], sizes["sp2_prob1"], sizes["sp2_mag1"]) == (16, 11, 10)
    assert agent.size == (16 * 11 * 10) ** 6


def test_joint_space_size_and_decode() -> None:
    space = build_space([
        build_agent("nas", "mbconv-small", {"stages": 1}),
        build_agent("custom", decisions=[("units", [64, 128]), ("act", ["relu", "tanh", True])]),
    ])
    assert space.size == space.agent("nas").size * 6
    assert space.n_decisions == len(space.agent("nas").decisions) + 2
    action = {"nas": [0] * len(space.agent("nas").decisions), "custom": [1, 2]}
    pipeline = space.decode(action)
    assert pipeline["custom"] == {"units": 128, "act": True}
    assert space.encode(pipeline) == action
    assert math.prod(r["size"] for r in space.describe()) == space.size


def test_booleans_and_numbers_are_distinct_values() -> None:
    agent = build_agent("x", decisions=[("flag", [0, False, 1, True])])
    assert agent.encode({"flag": True}) == [3]
    assert agent.encode({"flag": 1}) == [2]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: build_agent("a", "nope"), "preset: unknown preset 'nope'"),
        (lambda: build_agent("a", "mbconv-small", {"stages": 9}),
         "options.stages: must be an integer in [1, 5], got 9"),
        (lambda: build_agent("a", decisions=[("x", [])]), "decision 'x' has no values"),
        (lambda: build_agent("a", decisions=[("x", [1]), ("x", [2])]), "duplicate decision"),
        (lambda: build_space([build_agent("a", "recipe"), build_agent("a", "recipe")]),
         "agent names must be unique"),
        (lambda: build_agent("a", "recipe").decode([0]), "expected 11 indices, got 1"),
        (lambda: build_agent("a", decisions=[("x", [1, 2])]).decode([5]), "index 5 out of range"),
        (lambda: build_agent("a", decisions=[("x", [1, 2])]).encode({"x": 3}),
         "3 is not a value of decision 'x'"),
        (lambda: build_agent("a", decisions=[("x", [1])]).encode({}), "missing decisions ['x']"),
    ],
)
def test_space_errors_say_what_is_wrong(call: Callable[[], object], message: str) -> None:
    with pytest.raises(SpaceError) as info:
        call()
    assert message in str(info.value)
