"""The two replays, in memory and in the store, sample alike: uniformly, without replacement.

The benchmark and the matrix games run on ``InMemoryReplay``, a real search
on ``StoreReplay``; if they drew differently, the benchmark would measure a
learner that no search runs.
"""

from __future__ import annotations

import numpy as np

from ma2ml.learner.loop import StoreReplay
from ma2ml.learner.policy import Layout
from ma2ml.learner.replay_buffer import InMemoryReplay, Replay
from ma2ml.spec import EarlyStopping, parse_spec
from ma2ml.store import Store, TrialProposal

from .helpers import search_document

SPACE = parse_spec(search_document()).spec.search_space()
LAYOUT = Layout.from_space(SPACE)
# Ten distinct joint actions (width, depth, lr); reward k for the k-th.
ROWS = [[k % 3, k // 3 % 3, k % 4] for k in range(10)]


def in_memory() -> Replay:
    replay = InMemoryReplay(LAYOUT.n_decisions, capacity=4)  # grows while filling
    replay.add(np.array(ROWS[:6]), np.arange(6.0))
    replay.add(np.array(ROWS[6:]), np.arange(6.0, 10.0))
    return replay


def in_store(store: Store) -> Replay:
    record = store.create_search("default/toy", search_document())
    store.enqueue_trials(record.id, [
        TrialProposal(SPACE.decode(LAYOUT.to_dict(row)), LAYOUT.to_dict(row), {}, 0)
        for row in ROWS])
    for k in range(len(ROWS)):  # claimed in enqueue order: trial k gets reward k
        trial = store.claim(record.id, "test-worker", 30)
        store.complete(trial.id, trial.attempt, float(k), {})
    return StoreReplay(store, record.id, LAYOUT, lambda r: float(r.reward), trial_epochs=1)


def check_draws_without_replacement_up_to_the_replay_size(replay: Replay) -> None:
    rng = np.random.default_rng(0)
    assert len(replay) == len(ROWS)
    for n, expected in [(0, 0), (4, 4), (10, 10), (25, 10)]:
        actions, rewards, fidelities = replay.sample(n, rng)
        assert actions.shape == (expected, LAYOUT.n_decisions) and rewards.shape == (expected,)
        assert fidelities.tolist() == [1.0] * expected  # every result here is full fidelity
        assert len(set(rewards.tolist())) == expected  # no trial drawn twice
        # Each drawn row comes with its own reward.
        assert all(ROWS[int(r)] == row for row, r in zip(actions.tolist(), rewards, strict=True))
    _, everything, _ = replay.sample(25, rng)
    assert sorted(everything.tolist()) == list(map(float, range(10)))


def check_uniform(replay: Replay) -> None:
    rng = np.random.default_rng(1)
    counts = np.zeros(len(ROWS))
    for _ in range(300):
        _, rewards, _ = replay.sample(3, rng)
        counts[rewards.astype(int)] += 1
    # 90 draws expected per trial; 5 standard deviations (about 8.7 each) either side.
    assert counts.min() > 90 - 45 and counts.max() < 90 + 45


def test_in_memory_replay_samples_without_replacement_and_uniformly() -> None:
    check_draws_without_replacement_up_to_the_replay_size(in_memory())
    check_uniform(in_memory())


def test_store_replay_samples_alike(store: Store) -> None:
    replay = in_store(store)
    check_draws_without_replacement_up_to_the_replay_size(replay)
    check_uniform(replay)


def test_an_empty_replay_samples_nothing() -> None:
    actions, rewards, fidelities = InMemoryReplay(LAYOUT.n_decisions).sample(
        8, np.random.default_rng(0))
    assert actions.shape == (0, LAYOUT.n_decisions) and rewards.shape == (0,)
    assert fidelities.shape == (0,)


def test_a_stopped_trial_is_sampled_at_the_fidelity_it_reached(store: Store) -> None:
    rule = EarlyStopping(type="asha", min_epochs=1, reduction_factor=2)
    document = search_document()  # judged by its stored rule: ASHA, 4 epochs
    document["spec"]["earlyStopping"] = rule.model_dump(by_alias=True, mode="json")
    document["spec"]["budget"]["trialEpochs"] = 4
    record = store.create_search("default/fidelity", document)
    store.enqueue_trials(record.id, [
        TrialProposal(SPACE.decode(LAYOUT.to_dict(row)), LAYOUT.to_dict(row), {}, 0)
        for row in ROWS[:2]])
    stopped, full = store.claim(record.id, "w", 30), store.claim(record.id, "w", 30)
    store.report_step(full.id, full.attempt, 1, 0.9, {})
    assert store.report_step(stopped.id, stopped.attempt, 1, 0.1, {}) == "stop"
    store.complete(full.id, full.attempt, 0.95, {})
    replay = StoreReplay(store, record.id, LAYOUT, lambda r: float(r.reward), trial_epochs=4)
    _, rewards, fidelities = replay.sample(2, np.random.default_rng(0))
    assert dict(zip(rewards.tolist(), fidelities.tolist(), strict=True)) == {0.1: 0.25,
                                                                           0.95: 1.0}
