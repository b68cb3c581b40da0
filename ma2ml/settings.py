"""Every coefficient of the learner, with its documented default, in one dataclass.

A spec overrides any of them through ``spec.algorithm.settings``; an unknown
key or a value of the wrong type is refused with an error naming
``spec.algorithm.settings.<key>``. It lives beside the spec (not inside the
torch-using learner) so that ``ma2ml validate``, ``ma2ml run`` and the
operator refuse a bad setting before any process starts. Defaults were tuned on
the climbing and penalty games, on the FCNet / NAS-Bench-201 tables with seeds
100-139 and 1000-1019 (``benchmarks/search_efficiency.py --first-seed 1000``,
noise-free and ``--tables noisy``) and on coupled instances 100-107 with seeds
1000-1004; the reported benchmarks use seeds from 0 and coupled instances 0-7.
They are the same for every task.

Every numeric setting has a range (``RANGES``), upper bound included: a
typo such as ``critic_steps: 1000000`` is refused at validation instead of
holding a learner for hours or exhausting its memory.

A setting the chosen algorithm never reads (``ALGORITHM_SETTINGS``), or one of
the critic that ``critic_model`` does not name (``CRITIC_SETTINGS``), is refused
too (``check_applies``): set, it would be silently ignored. Under
``critic_model: auto`` the critic is decided from ``maxTrials`` (``for_budget``,
the one place that decides it), which may be edited while a search runs, so
both critics' settings are accepted there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

CREDIT_ESTIMATORS = ("decision", "agent")
CRITIC_REDUCTIONS = ("mean", "min")
CRITIC_MODELS = ("auto", "pairwise-bayes", "mlp")
BAYES_PAIRS = ("all", "cross-agent")
REWARD_TRANSFORMS = ("rank", "zscore", "upper-linear")


class SettingsError(ValueError):
    """An override in ``spec.algorithm.settings`` that cannot be used.

    ``key`` names the setting and ``problem`` says what is wrong with it, so
    that the spec can report the field path without parsing this message.
    """

    def __init__(self, message: str, *, key: str, problem: str) -> None:
        super().__init__(message)
        self.key = key
        self.problem = problem


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric setting: ``low`` to ``high``, both included
    unless ``open_low`` (then ``low`` itself is refused)."""

    low: float
    high: float
    open_low: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        return above and value <= self.high

    def violated(self, value: float) -> str:
        """The bound ``value`` breaks: the lower one alone, or the whole range."""
        if value <= self.low if self.open_low else value < self.low:
            return f"{'>' if self.open_low else '>='} {_num(self.low)}"
        return f"in {self}"

    def __str__(self) -> str:
        return f"{'(' if self.open_low else '['}{_num(self.low)}, {_num(self.high)}]"


@dataclass(frozen=True)
class Settings:
    """Coefficients of MA2ML and its baselines (one line of documentation each)."""

    # -- centralised critic ------------------------------------------------------------
    critic_ensemble: int = 2
    """Independent critics in the ensemble (>= 2 curbs over-estimation)."""
    critic_hidden: int = 64
    """Hidden units of each critic layer."""
    critic_layers: int = 2
    """Hidden layers of each critic MLP."""
    critic_lr: float = 3e-3
    """Adam learning rate of the critics."""
    critic_steps: int = 16
    """Critic gradient steps per learner update."""
    critic_reduce: str = "mean"
    """How the ensemble's predictions are combined: mean or min."""
    batch_size: int = 64
    """Replay trials per critic minibatch (plus every fresh result)."""
    critic_model: str = "auto"
    """Critic: 'auto' (see auto_bayes_trials), 'pairwise-bayes' (Thompson draws) or 'mlp'."""
    # Thompson draws from hundreds of pair coefficients explore hard while the results
    # are tens: on the tuning tables at 50 evaluations the pairwise-bayes critic's regret
    # was about twice the MLP's; from 100 on it was lower, on the coupled tasks far lower.
    auto_bayes_trials: int = 100
    """critic_model 'auto': pairwise-bayes when maxTrials is at least this, else mlp."""
    gibbs_sweeps: int = 5
    """pairwise-bayes: Gibbs sweeps per learner update (the chain carries over)."""
    bayes_window: int = 512
    """pairwise-bayes: results the critic is fitted on (a uniform sample beyond that)."""
    bayes_pairs: str = "all"
    """pairwise-bayes: pairs of decisions with an interaction term: 'all' or 'cross-agent'."""
    bayes_exploration: float = 0.25
    """pairwise-bayes: share of uniform starts of the best responses (its exploration)."""
    bayes_reward_transform: str = "upper-linear"
    """pairwise-bayes: the rewards its critic is fitted on (its reward_transform)."""
    reward_transform: str = "rank"
    """Rewards as learners see them: 'rank' (normal scores of ranks), 'zscore', 'upper-linear'."""
    # -- actor (DMAC-style divergence-regularised update) ------------------------------
    alpha: float = 0.2
    """Temperature: weight of the divergence to the target policy, in normalised-reward units."""
    tau: float = 0.2
    """Soft-update rate of the target policies (rho <- (1 - tau) rho + tau pi)."""
    # Adam moves each logit by about actor_lr per step whatever the target's sharpness
    # (alpha), so actor_lr * actor_steps per results_per_update results sets how fast the
    # policies concentrate: at 0.05 they reached 0.99 per decision within 50 NAS-Bench-201
    # results, and some searches never left the first good basin.
    actor_lr: float = 0.02
    """Adam learning rate of the policy logits (how fast the policies concentrate)."""
    actor_steps: int = 4
    """Actor gradient steps per learner update."""
    results_per_update: int = 4
    """Fresh results that one full actor update (actor_steps, tau) is sized for."""
    actor_samples: int = 128
    """Joint actions re-sampled from the current policies and scored by the critic."""
    credit: str = "decision"
    """Counterfactual baseline: exact per decision ('decision') or Monte-Carlo per agent."""
    mc_samples: int = 8
    """Samples M of an agent's alternative actions for the Monte-Carlo baseline."""
    warmup_results: int = 8
    """Results the critic sees before the actor starts learning from it."""
    # With spec.earlyStopping the critic takes each result's fidelity (epochs trained /
    # trialEpochs) as an input and scores proposals and the actor at full fidelity
    # (``ma2ml.learner.critic``); off, a stopped trial counts as if trained to the end.
    fidelity_input: bool = True
    """Critic input: each result's fidelity, with proposals scored at full fidelity."""
    # -- REINFORCE baselines (ma2ml-lite, independent) ---------------------------------
    reinforce_lr: float = 0.1
    """Adam learning rate of the REINFORCE learners."""
    baseline_decay: float = 0.9
    """Decay of the moving reward baseline of the REINFORCE learners."""
    importance_clip: float = 2.0
    """Upper clip of the importance ratio pi / behaviour on fresh results."""
    # -- proposals and rewards ---------------------------------------------------------
    exploration: float = 0.1
    """Share of each proposed decision drawn uniformly instead of from the policy."""
    proposal_candidates: int = 16
    """Policy draws per proposal; the critic's favourite is proposed (1: plain sampling)."""
    proposal_optimism: float = 0.0
    """Weight of the critic ensemble's spread in a candidate's score (optimism)."""
    dedupe_tries: int = 8
    """Re-draws of a proposal whose joint action was already proposed (0: allow repeats)."""
    failed_reward: float = 0.0
    """Reward the learner assumes for a failed trial."""
    diverged_reward: float = 0.0
    """Reward the learner assumes for a diverged trial that reported no finite reward."""
    # -- tpe (Optuna's TPESampler, ``ma2ml.learner.tpe``) -------------------------------
    tpe_startup_trials: int = 10
    """Results TPE takes before it models them (random draws until then; n_startup_trials)."""
    tpe_candidates: int = 24
    """Draws from the good-results model that TPE ranks per proposal (n_ei_candidates)."""
    tpe_window: int = 1000
    """Most recent results TPE models: bounds a proposal's cost; older ones are forgotten."""

    def __post_init__(self) -> None:
        _check_choice("credit", self.credit, CREDIT_ESTIMATORS)
        _check_choice("critic_reduce", self.critic_reduce, CRITIC_REDUCTIONS)
        _check_choice("critic_model", self.critic_model, CRITIC_MODELS)
        _check_choice("bayes_pairs", self.bayes_pairs, BAYES_PAIRS)
        _check_choice("reward_transform", self.reward_transform, REWARD_TRANSFORMS)
        _check_choice("bayes_reward_transform", self.bayes_reward_transform, REWARD_TRANSFORMS)
        for name, allowed in RANGES.items():
            value = getattr(self, name)
            if not allowed.contains(value):
                problem = f"must be {allowed.violated(value)}, got {_short(value)}"
                raise SettingsError(f"{_PATH}.{name}: {problem}", key=name, problem=problem)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | None,
                       algorithm: str | None = None) -> Settings:
        """Defaults updated by ``spec.algorithm.settings``; bad keys and types are refused,
        and, given the ``algorithm``, a key it does not read (``check_applies``)."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in (overrides or {}).items():
            if key not in known:
                problem = f"unknown setting (known: {', '.join(sorted(known))})"
                raise SettingsError(f"{_PATH}.{key}: {problem}", key=str(key)[:60],
                                    problem=problem)
            values[key] = _coerce(key, known[key].type, value)
        settings = cls(**values)
        if algorithm is not None:
            check_applies(algorithm, settings.critic_model, values)
        return settings

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def for_budget(self, max_trials: int | None) -> Settings:
        """``critic_model: auto`` decided for a search of ``max_trials`` results: the
        pairwise-bayes critic from ``auto_bayes_trials`` on, mlp below and when the
        budget is unknown."""
        if self.critic_model != "auto":
            return self
        bayes = max_trials is not None and max_trials >= self.auto_bayes_trials
        return dataclasses.replace(self, critic_model="pairwise-bayes" if bayes else "mlp")


#: The range of every numeric setting. Lower bounds are what the math needs
#: (a learning rate > 0, a probability in [0, 1]); upper bounds are generous
#: multiples of the defaults that still bound a learner's time and memory.
RANGES: dict[str, Range] = {
    "critic_ensemble": Range(1, 16),
    "critic_hidden": Range(1, 4096),
    "critic_layers": Range(1, 16),
    "critic_lr": Range(0, 10, open_low=True),
    "critic_steps": Range(0, 10_000),
    "gibbs_sweeps": Range(1, 1000),
    "bayes_window": Range(16, 8192),
    "bayes_exploration": Range(0, 1),
    "auto_bayes_trials": Range(0, 10_000_000),
    "batch_size": Range(1, 65_536),
    "alpha": Range(0, 1000, open_low=True),
    "tau": Range(0, 1),
    "actor_lr": Range(0, 10, open_low=True),
    "actor_steps": Range(0, 10_000),
    "results_per_update": Range(1, 10_000),
    "actor_samples": Range(1, 4096),
    "mc_samples": Range(1, 1024),
    "warmup_results": Range(0, 1_000_000),
    "reinforce_lr": Range(0, 10, open_low=True),
    "baseline_decay": Range(0, 1),
    "importance_clip": Range(1, 1000),
    "exploration": Range(0, 1),
    "proposal_candidates": Range(1, 1024),
    "proposal_optimism": Range(-100, 100),
    "dedupe_tries": Range(0, 1000),
    "failed_reward": Range(-1e6, 1e6),
    "diverged_reward": Range(-1e6, 1e6),
    "tpe_startup_trials": Range(0, 100_000),
    "tpe_candidates": Range(1, 4096),
    "tpe_window": Range(10, 100_000),
}


#: Settings only one critic reads (``ma2ml.learner.critics``); the others of the
#: actor-critic algorithms apply to both.
CRITIC_SETTINGS: dict[str, tuple[str, ...]] = {
    "mlp": ("critic_ensemble", "critic_hidden", "critic_layers", "critic_lr", "critic_steps",
            "critic_reduce", "batch_size", "proposal_optimism", "exploration",
            "reward_transform"),
    "pairwise-bayes": ("gibbs_sweeps", "bayes_window", "bayes_pairs", "bayes_exploration",
                       "bayes_reward_transform"),
}
#: What a setting of one critic is called for the other, for the refusal's hint.
_COUNTERPARTS = {"exploration": "bayes_exploration", "reward_transform": "bayes_reward_transform",
                 "bayes_exploration": "exploration", "bayes_reward_transform": "reward_transform"}
_PROPOSALS = ("dedupe_tries",)
_REWARDS = ("failed_reward", "diverged_reward")
_REINFORCE = (*_PROPOSALS, *_REWARDS, "exploration", "reward_transform", "reinforce_lr",
              "baseline_decay", "importance_clip")
_ACTOR_CRITIC = (*_PROPOSALS, *_REWARDS, "proposal_candidates", "critic_model",
                 "auto_bayes_trials", "alpha", "tau", "actor_lr", "actor_steps",
                 "results_per_update", "actor_samples", "credit", "mc_samples",
                 "warmup_results", "fidelity_input", *CRITIC_SETTINGS["mlp"],
                 *CRITIC_SETTINGS["pairwise-bayes"])
#: The settings each algorithm (``spec.AlgorithmName``) reads; setting any other is refused.
#: The on-policy ablation has no replay to draw minibatches or a window from, the
#: no-credit one no counterfactual to sample; random search learns nothing.
ALGORITHM_SETTINGS: dict[str, frozenset[str]] = {
    "ma2ml": frozenset(_ACTOR_CRITIC),
    "ma2ml-lite": frozenset((*_REINFORCE, "alpha", "tau")),
    "independent": frozenset(_REINFORCE),
    "ma2ml-no-credit": frozenset(_ACTOR_CRITIC) - {"mc_samples"},
    "ma2ml-on-policy": frozenset(_ACTOR_CRITIC) - {"batch_size", "bayes_window"},
    "random": frozenset(_PROPOSALS),
    "tpe": frozenset((*_PROPOSALS, *_REWARDS, "tpe_startup_trials", "tpe_candidates",
                      "tpe_window")),
}


def check_applies(algorithm: str, critic_model: str, keys: Iterable[str]) -> None:
    """Refuse, naming it, the first of ``keys`` (settings a spec sets) that ``algorithm``
    with ``critic_model`` never reads: it would be silently ignored.

    Under ``critic_model: auto`` the critic is not known here (it is decided from
    ``maxTrials``, which may be edited while the search runs), so the settings of
    both critics are accepted; ``auto_bayes_trials`` only under ``auto``."""
    applies = ALGORITHM_SETTINGS.get(algorithm)
    if applies is None:  # an unknown name is the spec's to refuse
        return
    for key in keys:
        if key not in applies:
            users = [name for name, used in ALGORITHM_SETTINGS.items() if key in used]
            problem = (f"does not apply to algorithm {algorithm} (it applies to "
                       f"{', '.join(users)})")
        elif key == "auto_bayes_trials" and critic_model != "auto":
            problem = f"applies to critic_model auto only, not {critic_model}"
        elif critic_model != "auto" and key not in CRITIC_SETTINGS.get(critic_model, (key,)) \
                and any(key in own for own in CRITIC_SETTINGS.values()):
            other = next(name for name, own in CRITIC_SETTINGS.items() if key in own)
            problem = f"applies to critic_model {other} (or auto), not {critic_model}"
            if key in _COUNTERPARTS:
                problem += f"; {critic_model} reads {_COUNTERPARTS[key]}"
        else:
            continue
        raise SettingsError(f"{_PATH}.{key}: {problem}", key=key, problem=problem)


def ranges_text() -> str:
    """``name [low, high]`` for every numeric setting, for documentation (the CRD)."""
    return ", ".join(f"{name} {allowed}" for name, allowed in RANGES.items())


_PATH = "spec.algorithm.settings"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _short(value: Any) -> str:
    # Settings values are scalars, but a string may be long: never quote it whole.
    text = repr(value[:60] + "...") if isinstance(value, str) and len(value) > 60 else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        problem = f"expected one of {', '.join(choices)}, got {_short(value)}"
        raise SettingsError(f"{_PATH}.{name}: {problem}", key=name, problem=problem)


def _coerce(key: str, kind: Any, value: Any) -> Any:
    # ``from __future__ import annotations`` makes field types strings.
    kind = {"int": int, "float": float, "str": str, "bool": bool}.get(str(kind), kind)
    if isinstance(value, float) and not math.isfinite(value) and kind in (int, float):
        problem = f"expected a finite number, got {value!r}"
        raise SettingsError(f"{_PATH}.{key}: {problem}", key=key, problem=problem)
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, kind) and not (kind is not bool and isinstance(value, bool)):
        return value
    words = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    problem = f"expected {words[kind]}, got {_short(value)}"
    raise SettingsError(f"{_PATH}.{key}: {problem}", key=key, problem=problem)
