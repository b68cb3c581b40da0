"""The registry of search algorithms, chosen by name in ``spec.algorithm.name``.

The names are ``AlgorithmName`` of the spec (the CRD's enum): each class
carries its member, and the registry refuses to load unless it covers the
enum exactly, so a name added to the spec without a class (or the reverse)
fails at import, not in the middle of a search.
"""

from __future__ import annotations

from collections.abc import Sequence

from ma2ml.learner.actor_critic import MA2ML, MA2MLNoCredit, MA2MLOnPolicy
from ma2ml.learner.base import Algorithm
from ma2ml.learner.policy import Layout
from ma2ml.learner.random_search import RandomSearch
from ma2ml.learner.reinforce import Independent, MA2MLLite
from ma2ml.learner.replay_buffer import Replay
from ma2ml.learner.tpe import TPE
from ma2ml.settings import Settings
from ma2ml.spaces import SearchSpace
from ma2ml.spec import AlgorithmName


def build_registry(classes: Sequence[type[Algorithm]]) -> dict[str, type[Algorithm]]:
    """Name -> class in the spec's order; refuses classes that do not cover
    ``AlgorithmName`` exactly, one class per name."""
    by_name = {cls.name: cls for cls in classes}
    if set(by_name) != set(AlgorithmName) or len(by_name) != len(classes):
        names = [str(cls.name) for cls in classes]
        raise RuntimeError(f"algorithm classes named {names} do not match the spec's "
                           f"AlgorithmName {[n.value for n in AlgorithmName]}")
    return {name: by_name[name] for name in AlgorithmName}


#: Algorithm name -> class, in the spec's order. ``ma2ml`` is the default.
ALGORITHMS = build_registry(
    (MA2ML, MA2MLLite, Independent, MA2MLNoCredit, MA2MLOnPolicy, RandomSearch, TPE))


def make_algorithm(name: str, space: SearchSpace | Layout, settings: Settings | None = None,
                   seed: int = 0, replay: Replay | None = None, *,
                   multi_fidelity: bool = False, budget: int | None = None) -> Algorithm:
    """Build the algorithm called ``name``; unknown names list the known ones.
    ``multi_fidelity``: results may be stopped early (``spec.earlyStopping``);
    ``budget``: the search's ``maxTrials``, which ``critic_model: auto`` decides on."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"spec.algorithm.name: unknown algorithm {name!r} "
                         f"(known: {', '.join(ALGORITHMS)})") from None
    settings = (settings or Settings()).for_budget(budget)
    return cls(space, settings, seed, replay, multi_fidelity=multi_fidelity)
