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
from typing import Any

from ma2ml.local.results import uniform_logp, was_uniform
from ma2ml.store import SearchRecord, Store, TrialStatus

#: Searches whose finished results ``ResultsCache`` keeps.
CACHED_SEARCHES = 32
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


@dataclass
class _Entry:
    seq: int = 0
    results: list[Result] = field(default_factory=list)


class ResultsCache:
    """Per search, its finished trials in finish order, read incrementally
    (``finished_since`` the last sequence number seen): a poll costs its new results."""

    def __init__(self, searches: int = CACHED_SEARCHES) -> None:
        self._entries: OrderedDict[tuple[int, float], _Entry] = OrderedDict()
        self._searches = searches
        self._lock = threading.Lock()

    def results(self, store: Store, record: SearchRecord) -> list[Result]:
        # Keyed by id and creation time: a deleted search's id reused later is another search.
        key = (record.id, record.created_at)
        with self._lock:
            entry = self._entries.pop(key, None) or _Entry()
            self._entries[key] = entry
            while len(self._entries) > self._searches:
                self._entries.popitem(last=False)
            new = store.finished_since(record.id, entry.seq)
            if new:
                uniform = uniform_logp(record)
                entry.results.extend(Result(t.number, str(t.status), t.reward,
                                            was_uniform(t, uniform)) for t in new)
                entry.seq = int(new[-1].finished_seq or entry.seq)
            return list(entry.results)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def expected_best(values: list[float], n: int) -> float:
    """E[max of ``n`` draws with replacement from ``values``]: the best a random search
    of ``n`` trials expects, on the empirical distribution of random draws seen."""
    xs = sorted(values)
    m = len(xs)
    return sum(x * ((k / m) ** n - ((k - 1) / m) ** n) for k, x in enumerate(xs, 1))


def _spaced(n: int, most: int) -> list[int]:
    """Up to ``most`` indices of ``range(n)`` evenly spaced, the first and the last in."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def progress_view(results: list[Result]) -> dict[str, Any]:
    """Best completed reward after each finished trial, against random search: the
    expected best of the same number of uniform draws (from the trials proposed while
    the policies were still uniform), and every trial's reward."""
    best, steps = -math.inf, []
    for i, r in enumerate(results, 1):
        if r.status == TrialStatus.completed and _finite(r.reward) and r.reward > best:
            best = r.reward
            steps.append([i, best])
    if steps and steps[-1][0] != len(results):
        steps.append([len(results), best])  # the line runs to the newest trial
    random = [r.reward for r in results
              if r.uniform and r.status == TrialStatus.completed and _finite(r.reward)]
    baseline = [[i + 1, expected_best(random, i + 1)]
                for i in _spaced(len(results), BASELINE_POINTS)] if random else []
    return {
        "finished": len(results), "best": steps,
        "random": {"n": len(random), "expected_best": baseline,
                   "mean": sum(random) / len(random) if random else None},
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
    rows = [[t.number, str(t.status), t.reward, t.action] for t in sample
            if t.status in REWARDED and _finite(t.reward)]
    rows.sort(key=lambda row: row[0])
    return {"sampled": len(sample), "trials": rows}
