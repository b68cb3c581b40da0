"""The coupled-modules benchmark family: seeded search tasks whose optimum only pays
when modules coordinate, with deceptive climbing-game traps and observation noise.

Why it exists. On the published tables a joint optimum is mostly reached
decision by decision, so one agent per module with counterfactual credit
has little to show there. Here it is the other way round: each task is a
sum of small main effects and pairwise interactions between decisions of
*different* agents, and every interaction is a generalised climbing game
(Claus & Boutilier 1998), the textbook case of relative overgeneralisation:

* the **trap cell** (t_i, t_j) pays H = 1, the most any interaction pays;
* the rest of the trap value's row and column is a heavy **penalty** -P
  (one module chose its part of the optimum, its partner did not);
* the **safe cell** (s_i, s_j) pays S (0.55-0.75) and the rest of the safe
  row and column pays 0.5-0.8 S whatever the partner does (except the
  partner's trap value, -P);
* every other cell pays 0-0.25 S.

Averaged over its partner, the trap value is the worst value a decision
has ((H - (W-1) P) / W, far below zero), so a learner that judges each
decision by its average reward (independent learners, a critic used as a
sum of per-decision marginals, TPE's per-dimension densities early on)
moves away from it and settles in the safe basin: the joint action with
every decision at its safe value. That basin is a strict local optimum
under single-decision changes (``is_local_optimum`` checks it; leaving it
in one decision loses at least 0.2 S in that decision's interactions, more
than any main effect can give back), so decision-by-decision improvement
never leaves it. The optimum sets every decision to its trap value at once.
Each decision takes part in at least one interaction, some in two, so the
traps are chained across the agents.

Known noise-free optimum, by construction. Write the objective as
f(a) = sum_d m_d(a_d) + sum_p g_p(a_p), with main effects m_d in
[0, main_scale] and pairs p, every decision in at least one pair, all
pairs of a decision sharing its trap value t_d. Let a* = (t_d)_d and
gap = min_p (H - max over non-trap cells of g_p) = 1 - max S > 0.25. Take
any a != a*, D the decisions where a differs from a*, and N the pairs not
at their trap cell under a. Every d in D lies in some pair of N and a pair
holds two decisions, so |N| >= |D| / 2. Then
f(a*) - f(a) >= |N| gap - |D| main_scale >= |D| (gap / 2 - main_scale) > 0
whenever main_scale < gap / 2, which ``make_task`` enforces. So a* is the
unique optimum and f(a*) = sum_d m_d(t_d) + (number of pairs) H; the unit
tests also enumerate small instances to check it.

Parameters of ``make_task`` (all checked, each error names the parameter):

* ``seed``: the instance (same seed, same task; the benchmark's task
  ``coupled-<seed>`` is ``make_task(seed)``);
* ``agents``: how many modules, 2-4 (named aug, nas, hpo, data);
* ``decisions``: (low, high) decisions per agent, within 2-4;
* ``values``: (low, high) values per decision, within 3-8;
* ``extra_pairs``: interactions added beyond the ones that cover every
  decision (0-8), so some decisions are coupled to two partners;
* ``penalty``: P of the mis-coordination cells, > 0 (climbing game: 30/11
  of its optimum, i.e. about 2.7; default 2);
* ``main_scale``: range of the main effects, 0 <= main_scale < 0.125;
* ``noise``: standard deviation of the Gaussian observation noise of one
  evaluation, >= 0 (default 0.2: about the gap between the optimum and the
  best configuration that misses one decision, as seed-to-seed noise of
  real training is about the gap between good pipelines).

Values of one task are about 1 per pair at the optimum (6-8 for the default
sizes), about 0.65 per pair in the safe basin, and below zero for a typical
random configuration; regret is in those units.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ma2ml.spaces import AgentSpace, Decision, SearchSpace

#: Module names and their decisions' names, in agent order (names only: values are levels).
AGENTS = {"aug": ("policy", "magnitude", "probability", "cutout"),
          "nas": ("depth", "width", "kernel", "resolution"),
          "hpo": ("lr", "batch_size", "optimizer", "weight_decay"),
          "data": ("subset", "resize", "balance", "mixup")}
#: The trap cell pays this; every other cell pays less (see the module docstring).
TRAP_PAYOFF = 1.0
SAFE_PAYOFF = (0.55, 0.75)
#: Bounds of make_task's parameters.
AGENT_RANGE, DECISION_RANGE, VALUE_RANGE, EXTRA_PAIRS_RANGE = (2, 4), (2, 4), (3, 8), (0, 8)
MAX_MAIN_SCALE = (TRAP_PAYOFF - SAFE_PAYOFF[1]) / 2


@dataclass(frozen=True)
class Pair:
    """One interaction: decisions ``first`` and ``second`` (flat indices, different
    agents) and its payoff matrix (values of first, values of second)."""

    first: int
    second: int
    payoff: np.ndarray


@dataclass(frozen=True)
class CoupledTask:
    """A generated task; same interface as the published tables' ``Task`` of
    ``search_efficiency.py`` (maximised; the learner's reward is the value itself)."""

    name: str
    space: SearchSpace
    main: tuple[np.ndarray, ...]  # per decision: (values,) main effects
    pairs: tuple[Pair, ...]
    trap: tuple[int, ...]  # the optimum: every decision at its trap value
    safe: tuple[int, ...]  # the deceptive basin: every decision at its safe value
    noise: float
    maximise: bool = True

    def values(self, rows: np.ndarray) -> np.ndarray:
        """Noise-free values of (batch, n_decisions) joint actions."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, len(self.main))
        total = np.zeros(len(rows))
        for d, effect in enumerate(self.main):
            total += effect[rows[:, d]]
        for pair in self.pairs:
            total += pair.payoff[rows[:, pair.first], rows[:, pair.second]]
        return total

    def value(self, row: Sequence[int]) -> float:
        return float(self.values(np.asarray([row]))[0])

    def observe(self, row: Sequence[int], rng: np.random.Generator) -> float:
        """One noisy evaluation (one 'training seed') of ``row``."""
        return self.value(row) + float(rng.normal(0.0, self.noise)) if self.noise else \
            self.value(row)

    def reward(self, value: float) -> float:
        return value

    @property
    def optimum(self) -> float:
        return self.value(self.trap)

    def regret(self, value: float) -> float:
        return self.optimum - value


def _check(name: str, value, low, high) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name}: {value!r} is outside [{low}, {high}]")


def _span(name: str, span: tuple[int, int], bounds: tuple[int, int]) -> None:
    if len(span) != 2 or span[0] > span[1]:
        raise ValueError(f"{name}: expected (low, high) with low <= high, got {span!r}")
    for v in span:
        _check(name, v, *bounds)


def _pairs(agent_of: list[int], extra: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Cross-agent pairs covering every decision, then ``extra`` more distinct ones."""
    n = len(agent_of)
    pairs: set[tuple[int, int]] = set()
    covered: set[int] = set()
    for d in rng.permutation(n).tolist():
        if d in covered:
            continue
        others = [e for e in range(n) if agent_of[e] != agent_of[d]]
        fresh = [e for e in others if e not in covered]
        partner = int(rng.choice(fresh or others))
        pairs.add((min(d, partner), max(d, partner)))
        covered.update((d, partner))
    candidates = [p for p in itertools.combinations(range(n), 2)
                  if agent_of[p[0]] != agent_of[p[1]] and p not in pairs]
    for k in rng.permutation(len(candidates))[:extra].tolist():
        pairs.add(candidates[k])
    return sorted(pairs)


def _payoff(rows: int, cols: int, trap: tuple[int, int], safe: tuple[int, int],
            penalty: float, rng: np.random.Generator) -> np.ndarray:
    """A generalised climbing game (module docstring) of shape (rows, cols)."""
    s = rng.uniform(*SAFE_PAYOFF)
    g = rng.uniform(0.0, 0.25 * s, (rows, cols))
    g[safe[0], :] = rng.uniform(0.5 * s, 0.8 * s, cols)
    g[:, safe[1]] = rng.uniform(0.5 * s, 0.8 * s, rows)
    g[safe] = s
    g[trap[0], :] = -penalty
    g[:, trap[1]] = -penalty
    g[trap] = TRAP_PAYOFF
    return g


def make_task(seed: int, agents: int = 3, decisions: tuple[int, int] = (2, 4),
              values: tuple[int, int] = (3, 6), extra_pairs: int = 1, penalty: float = 2.0,
              main_scale: float = 0.05, noise: float = 0.2) -> CoupledTask:
    """The coupled-modules task of instance ``seed`` (parameters: module docstring)."""
    _check("agents", agents, *AGENT_RANGE)
    _span("decisions", decisions, DECISION_RANGE)
    _span("values", values, VALUE_RANGE)
    _check("extra_pairs", extra_pairs, *EXTRA_PAIRS_RANGE)
    if not (np.isfinite(penalty) and penalty > 0):
        raise ValueError(f"penalty: {penalty!r} must be a positive number")
    if not 0 <= main_scale < MAX_MAIN_SCALE:
        raise ValueError(f"main_scale: {main_scale!r} must be in [0, {MAX_MAIN_SCALE}) "
                         "(else the optimum is no longer known by construction)")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: {noise!r} must be a number >= 0")
    rng = np.random.default_rng([seed, 1414])  # own stream: instance k never equals run k
    names = list(AGENTS)[:agents]
    sizes: list[list[int]] = [
        rng.integers(values[0], values[1] + 1, int(rng.integers(decisions[0], decisions[1] + 1)))
        .tolist() for _ in names]
    space = SearchSpace(tuple(
        AgentSpace(agent, tuple(Decision(AGENTS[agent][k], tuple(range(v)))
                                for k, v in enumerate(agent_sizes)))
        for agent, agent_sizes in zip(names, sizes, strict=True)))
    agent_of = [a for a, agent_sizes in enumerate(sizes) for _ in agent_sizes]
    flat = [v for agent_sizes in sizes for v in agent_sizes]
    trap, safe = [], []
    for v in flat:
        t, s = rng.choice(v, 2, replace=False).tolist()
        trap.append(t)
        safe.append(s)
    main = tuple(rng.uniform(0.0, main_scale, v) for v in flat)
    pairs = tuple(Pair(i, j, _payoff(flat[i], flat[j], (trap[i], trap[j]), (safe[i], safe[j]),
                                     penalty, rng))
                  for i, j in _pairs(agent_of, extra_pairs, rng))
    return CoupledTask(f"coupled-{seed}", space, main, pairs, tuple(trap), tuple(safe), noise)


# -- properties the tests check ------------------------------------------------------


def enumerate_optimum(task: CoupledTask, limit: int = 2_000_000) -> tuple[tuple[int, ...], float]:
    """The best joint action and its value by brute force (small instances only)."""
    sizes = [d.size for agent in task.space.agents for d in agent.decisions]
    if int(np.prod(sizes)) > limit:
        raise ValueError(f"task has {int(np.prod(sizes)):,} joint actions (limit {limit:,})")
    rows = np.indices(sizes).reshape(len(sizes), -1).T
    values = task.values(rows)
    best = int(values.argmax())
    return tuple(int(v) for v in rows[best]), float(values[best])


def greedy_row(task: CoupledTask) -> tuple[int, ...]:
    """Decision by decision, the value with the best average over uniformly random
    other decisions: what a learner judging each decision on its own converges to."""
    row = []
    for d, effect in enumerate(task.main):
        score = effect.copy()
        for pair in task.pairs:
            if pair.first == d:
                score += pair.payoff.mean(1)
            elif pair.second == d:
                score += pair.payoff.mean(0)
        row.append(int(score.argmax()))
    return tuple(row)


def is_local_optimum(task: CoupledTask, row: Sequence[int]) -> bool:
    """Whether no change of a single decision improves ``row``."""
    base = task.value(row)
    for d, effect in enumerate(task.main):
        for v in range(len(effect)):
            if v != row[d]:
                other = list(row)
                other[d] = v
                if task.value(other) > base:
                    return False
    return True
