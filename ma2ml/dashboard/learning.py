"""JSON views of what the search learned: best so far against random search, the
agents' policies over updates, entropy and credit, and decisions against reward.

Each view is bounded whatever the size of the search: finished results are read
incrementally (``ResultsCache``), policy history is read at evenly spaced
versions only, and decisions against reward use a uniform sample of trials.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from ma2ml.results.baseline import expected_best_of_n
from ma2ml.results.summary import accuracy_of, bounds_of, uniform_logp, was_uniform
from ma2ml.store import SearchRecord, Store, TrialStatus

#: Searches whose finished results ``ResultsCache`` keeps, and trials read per query.
CACHED_SEARCHES = 32
READ_CHUNK = 2000
#: Most points of the reward scatter and of the random-search curve.
MAX_POINTS = 3000
BASELINE_POINTS = 200
#: Statuses whose reward is a result a trial can be ranked by (the best is ``completed``).
REWARDED = (TrialStatus.completed, TrialStatus.stopped, TrialStatus.diverged)


@dataclass(frozen=True, slots=True)
class Result:
    """One finished trial, as the progress view needs it."""

    number: int
    status: str
    reward: float | None
    uniform: bool  # proposed while every policy was uniform: a random-search draw
    accuracy: float | None = None  # its ``accuracy`` metric, if a number (``accuracy_of``)


@dataclass
class _Entry:
    seq: int = 0
    results: list[Result] = field(default_factory=list)
    view: dict[str, Any] | None = None  # progress_view of ``ma2ml.results.summary`` (None: stale)


class ResultsCache:
    """Per search, its finished trials in finish order, read incrementally
    (``finished_since`` the last sequence number seen): a poll costs its new results."""

    def __init__(self, searches: int = CACHED_SEARCHES) -> None:
        self._entries: OrderedDict[tuple[int, float], _Entry] = OrderedDict()
        self._searches = searches
        self._lock = threading.Lock()

    def progress(self, store: Store, record: SearchRecord) -> dict[str, Any]:
        """``progress_view`` of the search, computed again only when results came in."""
        with self._lock:
            entry = self._update(store, record)
            if entry.view is None:
                entry.view = progress_view(entry.results)
            return entry.view

    def results(self, store: Store, record: SearchRecord) -> list[Result]:
        """The search's finished trials in finish order."""
        with self._lock:
            return list(self._update(store, record).results)

    def _update(self, store: Store, record: SearchRecord) -> _Entry:
        # Keyed by id and creation time: a deleted search's id reused later is another search.
        key = (record.id, record.created_at)
        entry = self._entries.pop(key, None) or _Entry()
        self._entries[key] = entry
        while len(self._entries) > self._searches:
            self._entries.popitem(last=False)
        uniform = None
        while True:  # in chunks: a first look at a big search holds one chunk of rows at once
            new = store.finished_since(record.id, entry.seq, limit=READ_CHUNK)
            if not new:
                return entry
            uniform = uniform or uniform_logp(record)
            entry.results.extend(Result(t.number, str(t.status), t.reward,
                                        was_uniform(t, uniform), accuracy_of(t)) for t in new)
            entry.seq = int(new[-1].finished_seq or entry.seq)
            entry.view = None


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def _spaced(n: int, most: int) -> list[int]:
    """Up to ``most`` indices of ``range(n)`` evenly spaced, the first and the last in."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def progress_view(results: list[Result]) -> dict[str, Any]:
    """Best completed reward after each finished trial, against random search: its
    expected best in as many trials (``ma2ml.results.baseline``, from the trials proposed
    while every policy was still uniform, within ``reward_bounds`` as the CLI has it),
    and every trial's reward."""
    best, steps = -math.inf, []
    for i, r in enumerate(results, 1):
        if r.status == TrialStatus.completed and _finite(r.reward) and r.reward > best:
            best = r.reward
            steps.append([i, best])
    if steps and steps[-1][0] != len(results):
        steps.append([len(results), best])  # the line runs to the newest trial
    drawn = [(r.reward, r.accuracy) for r in results
             if r.uniform and r.status == TrialStatus.completed and _finite(r.reward)]
    random = [reward for reward, _accuracy in drawn]
    ns = [i + 1 for i in _spaced(len(results), BASELINE_POINTS)]
    # Rewards that are accuracies: the interval stays within [0, 1], as the CLI's does.
    bounds = bounds_of(drawn)
    baseline = expected_best_of_n(random, ns, bounds=bounds) if random else []
    return {
        "finished": len(results), "best": steps,
        "random": {"n": len(random), "mean": sum(random) / len(random) if random else None,
                   # [n, expected best, interval low, interval high, extrapolated]
                   "expected_best": [[b.n, b.expected, b.low, b.high, b.extrapolated]
                                     for b in baseline],
                   "describe": baseline[-1].describe() if baseline else None},
        # [finished index, trial number, status, reward]
        "points": [[i + 1, results[i].number, results[i].status, results[i].reward]
                   for i in _spaced(len(results), MAX_POINTS)],
    }


def policy_view(store: Store, record: SearchRecord, *, most: int,
                since: int | None) -> dict[str, Any]:
    """Entropy, credit and critic loss per update, and each agent's policy per decision:
    now and at up to ``most`` evenly spaced earlier versions. ``since``: the newest version
    the caller has; when it is still the newest, only that is said (a cheap poll)."""
    versions = store.snapshot_versions(record.id)
    latest = versions[-1] if versions else None
    if since is not None and latest == since:
        return {"version": latest, "unchanged": True}
    picked = [versions[i] for i in _spaced(len(versions), most)]
    stats = store.snapshot_stats(record.id, versions=picked)
    series: dict[str, dict[str, list[list[float]]]] = {"entropy": {}, "credit": {}}
    loss = []
    for version, _created, values in stats:
        for key, per_agent in series.items():
            for agent, value in ((values or {}).get(key) or {}).items():
                if isinstance(value, int | float) and math.isfinite(value):
                    per_agent.setdefault(agent, []).append([version, value])
        if isinstance((values or {}).get("critic_loss"), int | float):
            loss.append([version, values["critic_loss"]])
    with_policy = [(v, s["policy"]) for v, _c, s in stats if isinstance(s, dict)
                   and isinstance(s.get("policy"), dict)]
    return {
        "version": latest, "updates": len(versions), "sampled": len(picked),
        "entropy": series["entropy"], "credit": series["credit"], "critic_loss": loss,
        "policy": with_policy[-1][1] if with_policy else None,
        "policy_versions": [v for v, _p in with_policy],
        # agent -> per version, per decision, the probabilities
        "policy_history": {agent: [p.get(agent) for _v, p in with_policy]
                           for agent in (with_policy[-1][1] if with_policy else {})},
    }


def decisions_view(store: Store, record: SearchRecord, *, most: int) -> dict[str, Any]:
    """Each rewarded trial's decisions (value indices, agents in spec order) and reward,
    for a uniform sample of at most ``most`` finished trials (fixed seed: a stable view)."""
    sample = store.replay_sample(record.id, most, seed=0)
    rows = [[t.number, str(t.status), t.reward, t.action]
            for t in sorted(sample, key=lambda t: t.number)
            if t.status in REWARDED and _finite(t.reward)]
    return {"sampled": len(sample), "trials": rows}
