"""The registry of search algorithms, chosen by name in ``spec.algorithm.name``."""

from __future__ import annotations

from ma2ml.learner.actor_critic import MA2ML, MA2MLNoCredit, MA2MLOnPolicy
from ma2ml.learner.base import Algorithm
from ma2ml.learner.policy import Layout
from ma2ml.learner.random_search import RandomSearch
from ma2ml.learner.reinforce import Independent, MA2MLLite
from ma2ml.learner.replay_buffer import Replay
from ma2ml.settings import Settings
from ma2ml.spaces import SearchSpace

#: Algorithm name (as in the spec) -> class. ``ma2ml`` is the default.
ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (MA2ML, MA2MLLite, Independent, MA2MLNoCredit, MA2MLOnPolicy, RandomSearch)
}


def make_algorithm(name: str, space: SearchSpace | Layout, settings: Settings | None = None,
                   seed: int = 0, replay: Replay | None = None) -> Algorithm:
    """Build the algorithm called ``name``; unknown names list the known ones."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"spec.algorithm.name: unknown algorithm {name!r} "
                         f"(known: {', '.join(ALGORITHMS)})") from None
    return cls(space, settings, seed, replay)
