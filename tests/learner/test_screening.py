"""Screening of proposals: unseen draws first, the best-scored per slot."""

from __future__ import annotations

from ma2ml.learner.screening import pick_best_unseen, unseen


def test_unseen_skips_proposed_and_repeated_draws_in_draw_order() -> None:
    draws = [[0, 0], [1, 0], [0, 0], [2, 0], [1, 0], [3, 0]]
    assert unseen(draws, {(1, 0)}, limit=2) == [[0, 0], [2, 0]]
    assert unseen(draws, set(), limit=10) == [[0, 0], [1, 0], [2, 0], [3, 0]]


def test_each_slot_takes_the_best_of_its_own_group() -> None:
    draws = [[k] for k in range(6)]
    # Two slots: slot 0 judges draws 0, 2, 4; slot 1 judges draws 1, 3, 5.
    scores = {0: 0.0, 1: 5.0, 2: 9.0, 3: 1.0, 4: 3.0, 5: 2.0}
    chosen = pick_best_unseen(draws, set(), 2, 3, lambda rows: [scores[r[0]] for r in rows])
    assert chosen == [[2], [1]]


def test_a_concentrated_policy_repeats_without_being_scored() -> None:
    def score(rows: list[list[int]]) -> list[float]:
        raise AssertionError("nothing to choose among: no scoring")

    draws = [[0], [0], [1], [0]]
    assert pick_best_unseen(draws, {(1,)}, 3, 4, score) == [[0], [0], [0]]


def test_collapsed_candidates_are_topped_up_with_unseen_policy_draws() -> None:
    """Best responses can move every candidate onto one joint action: the policy's own
    unseen draws fill the batch before anything repeats, and repeats come last."""
    def score(rows: list[list[int]]) -> list[float]:
        raise AssertionError("nothing to choose among: no scoring")

    improved = [[2], [2], [2], [2]]  # every candidate moved to (2,)
    policy_draws = [[0], [1], [0], [3]]
    assert pick_best_unseen(improved, {(1,)}, 3, 4, score, fill=policy_draws) == \
        [[2], [0], [3]]
    assert pick_best_unseen(improved, {(0,), (1,), (3,)}, 3, 4, score, fill=policy_draws) == \
        [[2], [0], [1]]
