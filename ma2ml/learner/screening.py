"""Screening of proposals: which of many policy draws become trials.

Re-evaluating a pipeline wastes a trial, so draws proposed before are
skipped; when the policy is too concentrated to find enough unseen ones, the
first draws fill the rest (a converged policy may repeat). Drawing from the
policy keeps proposals where the policy puts its mass; choosing among a few
by the learner's own score (as TPE picks the best of its candidates) spends
each expensive trial on the most promising of them. The score is the
critic's, once an algorithm has one it trusts (``Algorithm._critic_ready``).

An algorithm may first turn the draws into other candidates
(``Algorithm._improve``: with ``critic_model: pairwise-bayes`` each draw
best-responds, decision by decision, to a posterior draw of the critic).

The log-probability a proposal carries is the policy's (mixed with
``exploration``), not the probability of having been chosen here; why that
is enough for every learner that reads it is in ``ma2ml.learner.reinforce``
and ``ma2ml.learner.actor_critic``.
"""

from __future__ import annotations

from collections.abc import Callable, Set


def unseen(draws: list[list[int]], proposed: Set[tuple[int, ...]], limit: int
           ) -> list[list[int]]:
    """Up to ``limit`` distinct draws not in ``proposed``, in draw order."""
    fresh: list[list[int]] = []
    seen = set(proposed)
    for row in draws:
        if len(fresh) == limit:
            break
        if tuple(row) not in seen:
            fresh.append(row)
            seen.add(tuple(row))
    return fresh


def pick_best_unseen(draws: list[list[int]], proposed: Set[tuple[int, ...]], n: int,
                     candidates: int, score: Callable[[list[list[int]]], list[float]],
                     fill: list[list[int]] | None = None) -> list[list[int]]:
    """For each of the ``n`` slots, the best-scored of ``candidates`` unseen draws.

    Slots judge disjoint candidate groups so a batch does not collapse onto
    one configuration. ``score`` is called only when there is a choice to make.
    Short of unseen draws, unseen ones of ``fill`` (the policy's own draws,
    when ``draws`` are candidates improved from them, which may have moved onto
    few joint actions) top them up, and the first of ``fill`` repeat last.
    """
    fill = draws if fill is None else fill
    rows = unseen(draws, proposed, n * candidates)
    if len(rows) < n:
        rows += unseen(fill, set(proposed) | {tuple(r) for r in rows}, n - len(rows))
    if len(rows) <= n:  # nothing to choose among
        return rows + fill[:n - len(rows)]
    scores = score(rows)
    # Interleaved groups: slot k judges draws k, k + n, k + 2n, ...
    return [rows[max(range(slot, len(rows), n), key=scores.__getitem__)]
            for slot in range(n)]
