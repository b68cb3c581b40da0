"""Multi-fidelity: a critic with a fidelity input ranks pipelines at full fidelity, even
when a good pipeline was only ever seen stopped early (and a blind one cannot)."""

from __future__ import annotations

from ma2ml.learner.algorithms import make_algorithm
from ma2ml.learner.base import Result
from ma2ml.learner.policy import Layout
from ma2ml.settings import Settings

LAYOUT = Layout(("nas",), (4,), (0,))


def results() -> list[Result]:
    """Full reward x/4 for value x; stopped at a quarter of the epochs, 0.5 less. Values 1
    and 2 were seen at both fidelities (they teach the offset); 3 only stopped early."""
    out = []
    for _ in range(6):
        for x in (0, 1, 2):
            out.append(Result({"nas": [x]}, x / 4))
        for x in (1, 2, 3):
            out.append(Result({"nas": [x]}, x / 4 - 0.5, "stopped", fidelity=0.25))
    return out


def scores(fidelity_input: bool) -> list[float]:
    settings = Settings.from_overrides({"fidelity_input": fidelity_input, "critic_steps": 200,
                                        "reward_transform": "zscore"})
    algorithm = make_algorithm("ma2ml", LAYOUT, settings, seed=0, multi_fidelity=True)
    algorithm.observe(results())
    algorithm.update()
    return algorithm._score([[x] for x in range(4)])


def test_the_critic_scores_at_full_fidelity() -> None:
    seen = scores(fidelity_input=True)
    assert max(range(4), key=seen.__getitem__) == 3  # the best pipeline when trained fully
    assert seen[0] < seen[1] < seen[2] < seen[3]


def test_without_the_fidelity_input_a_stopped_pipeline_looks_bad() -> None:
    blind = scores(fidelity_input=False)
    assert max(range(4), key=blind.__getitem__) == 2
    assert blind[3] < blind[2]


def test_without_early_stopping_the_critic_has_no_fidelity_input() -> None:
    plain = make_algorithm("ma2ml", LAYOUT, Settings(), seed=0)
    assert not plain.critic.fidelity_input
    assert make_algorithm("ma2ml", LAYOUT, Settings(), seed=0,
                          multi_fidelity=True).critic.fidelity_input
