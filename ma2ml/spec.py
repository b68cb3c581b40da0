"""The PipelineSearch resource, modelled once.

The pydantic models here are the single source of truth: ``load_spec``
validates the YAML a user would ``kubectl apply``; ``ma2ml.crd`` derives the
CustomResourceDefinition's OpenAPI schema from them; ``format_errors`` turns
pydantic's structured errors (``loc``, ``type``, ``ctx``, ``input``) into one
line per problem, each naming the field path, what was expected and what was
given.

Every input is bounded (README "Limits"): numbers have a range, lists and
strings a maximum length, the search space a size (``ma2ml.spaces``), and a
spec file a byte size, a nesting depth and a node count with YAML aliases
expanded, so that a hostile or mistaken spec is refused early, in little
memory, with a message naming the field.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from ma2ml.durations import EXPECTED, format_duration, parse_duration
from ma2ml.settings import Settings, SettingsError, ranges_text
from ma2ml.spaces import (
    MAX_AGENTS,
    MAX_DECISIONS_PER_AGENT,
    MAX_TOTAL_VALUES,
    MAX_VALUES_PER_DECISION,
    AgentSpace,
    SearchSpace,
    SpaceError,
    build_agent,
    build_space,
)

API_GROUP = "ma2ml.io"
API_VERSION = "v1alpha1"
KIND = "PipelineSearch"
PLURAL = "pipelinesearches"
DEFAULT_IMAGE = "ghcr.io/ma2ml/ma2ml:0.1.0"
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# --------------------------------------------------------------------------- limits
# What a spec may hold (README "Limits"). Each is generous for a real search
# and small enough that no process reading a spec holds much memory for it.

#: Validation context key: the document is a stored spec (``parse_spec(stored=True)``).
STORED = "stored"
#: Bytes of a spec file. The operator copies the spec into a ConfigMap, and
#: Kubernetes keeps a ConfigMap (and any object) under about 1 MiB.
MAX_SPEC_BYTES = 1024 * 1024
#: YAML nodes (scalars, lists, mappings) once aliases are expanded. A legal
#: spec at every limit below has about 25,000 (4096 one-value decisions);
#: "billion laughs" has 10**9. Loading 50,000 nodes peaks near 60 MB.
MAX_YAML_NODES = 50_000
#: Items of one YAML list or mapping (the largest real one: a decision's values).
MAX_YAML_ITEMS = 10_000
#: Nesting depth of YAML lists and mappings (Kubernetes objects need about 10).
MAX_YAML_DEPTH = 64
#: Characters of a number literal (a longer one is a mistake, and reading a
#: huge integer costs quadratic time).
MAX_NUMBER_CHARS = 100
#: Characters of a path, a URL or a command argument.
MAX_PATH_CHARS = 4096
#: Characters of a decision's string value (pipelines are stored per trial).
MAX_VALUE_CHARS = 1024
#: Characters of a Kubernetes object name (DNS subdomain).
MAX_K8S_NAME_CHARS = 253
#: Images in a dataset setting: above any real dataset (ImageNet-21k has 14M).
MAX_IMAGES = 100_000_000
#: Seeds: numpy accepts at most 2**32 - 1.
MAX_SEED = 2**32 - 1
#: A search's wall-clock budget: a year is longer than any search should run.
MAX_DURATION_SECONDS = 365 * 86_400
#: Device hours of a search: 1000 GPUs for a year is about 8.8 million.
MAX_TRAINING_HOURS = 10_000_000


PathText = Annotated[str, StringConstraints(max_length=MAX_PATH_CHARS)]
K8sName = Annotated[str, StringConstraints(max_length=MAX_K8S_NAME_CHARS)]
#: A label value, and a label key (an optional DNS-subdomain prefix, "/", a 63-character name).
LabelValue = Annotated[str, StringConstraints(max_length=63)]
LabelKey = Annotated[str, StringConstraints(max_length=MAX_K8S_NAME_CHARS + 64)]
#: A resource quantity such as "500m" or "16Gi".
Quantity = Annotated[str, StringConstraints(max_length=64)]
#: requests or limits: resource name -> quantity, at most 32 resources.
ResourceList = Annotated[dict[K8sName, Quantity | int], Field(max_length=32)]


def _ranged(default: Any, description: str, *, le: float, ge: float | None = None,
            gt: float | None = None) -> Any:
    """A bounded number whose description states its range (``kubectl explain`` shows it)."""
    low = f"[{_num(ge)}" if ge is not None else f"({_num(gt)}" if gt is not None else "(-inf"
    return Field(default, ge=ge, gt=gt, le=le,
                 description=f"{description} Range {low}, {_num(le)}].")


def _num(value: float) -> str:
    return f"{int(value)}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


def _seconds(value: Any) -> Any:
    """A duration string (``"1h30m"``) as whole seconds; numbers go on to the int check."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool):  # YAML's ``true`` is no number of seconds
        raise ValueError(f"expected {EXPECTED}, got {value!r}")
    return value


#: Whole seconds in (0, MAX_DURATION_SECONDS], written as a number or as a duration
#: string, or unset. The CRD takes either (``x-kubernetes-int-or-string``); the model holds
#: seconds, so the stored spec and the status read alike whichever was written.
OptionalSeconds = Annotated[
    Annotated[int, BeforeValidator(_seconds), Field(gt=0, le=MAX_DURATION_SECONDS)] | None,
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
                   mode="validation")]


class Model(BaseModel):
    """Base: camelCase in YAML, snake_case in Python, unknown fields and NaN/inf refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
        use_enum_values=True, allow_inf_nan=False,
    )


class DatasetName(enum.StrEnum):
    fashion_mnist = "fashion-mnist"
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    imagefolder = "imagefolder"


class Dataset(Model):
    """Where the training images are and how much of them a trial uses."""

    name: DatasetName = Field(DatasetName.fashion_mnist, description="Dataset format.")
    root: PathText | None = Field(
        None, description="Directory holding the data; default depends on the dataset "
        "(fashion-mnist: /usr/share/datasets/fashion-mnist).")
    validation_size: int = _ranged(
        5000, "Images carved from the training set for validation "
        "(deterministic split; the test set is never used during search).", ge=1, le=MAX_IMAGES)
    train_subset: int | None = _ranged(
        None, "Use only this many training images per trial (fast trials).", ge=1,
        le=MAX_IMAGES)
    validation_subset: int | None = _ranged(
        None, "Evaluate on only this many validation images.", ge=1, le=MAX_IMAGES)
    split_seed: int = _ranged(0, "Seed of the train/validation split.", ge=0, le=MAX_SEED)


class CustomDecision(Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63,
                      description="Decision name.")
    values: list[Any] = Field(
        min_length=1, max_length=MAX_VALUES_PER_DECISION,
        description=f"Candidate values: distinct strings (at most {MAX_VALUE_CHARS} "
        f"characters), finite numbers or booleans; at most {MAX_VALUES_PER_DECISION}.")

    @field_validator("values")
    @classmethod
    def _scalars(cls, values: list[Any]) -> list[Any]:
        for i, value in enumerate(values):
            if not isinstance(value, str | int | float | bool):
                raise nested_error((i,), f"must be a string, number or boolean, "
                                         f"got {_describe(value)}")
            if isinstance(value, float) and not math.isfinite(value):
                # JSON has no NaN or infinity: the store would keep null.
                raise nested_error((i,), f"must be a finite number, got {value!r}")
            if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                raise nested_error((i,), f"must be at most {MAX_VALUE_CHARS} characters, "
                                         f"got {len(value)}")
        if len({(type(v).__name__ == "bool", v) for v in values}) != len(values):
            raise ValueError(f"values must be distinct, got {_describe(values)}")
        return values


class Agent(Model):
    """One AutoML module: a built-in preset (with options) or custom decisions."""

    name: str = Field(pattern=_NAME, max_length=40, description="Agent name, e.g. aug, nas, hpo.")
    preset: str | None = Field(
        None, max_length=64,
        description="Built-in search space: autoaugment, mbconv-small, mbconv-imagenet, "
        "recipe, recipe-sgd, recipe-adamw.")
    options: dict[str, int] = Field(default_factory=dict, max_length=16,
                                    description="Preset options.")
    decisions: list[CustomDecision] = Field(
        default_factory=list, max_length=MAX_DECISIONS_PER_AGENT,
        description=f"Custom decisions (instead of a preset); at most "
        f"{MAX_DECISIONS_PER_AGENT}.")

    @model_validator(mode="after")
    def _preset_or_decisions(self) -> Agent:
        if (self.preset is None) == (not self.decisions):
            raise ValueError("set exactly one of preset or decisions")
        return self


class Metric(enum.StrEnum):
    accuracy = "accuracy"


class Objective(Model):
    """The shared reward: validation accuracy, optionally FLOPs-shaped (MnasNet)."""

    metric: Metric = Field(Metric.accuracy, description="Validation metric to maximise.")
    flops_target: float | None = _ranged(
        None, "Target FLOPs; when set reward = acc * (FLOPs/target)**w.", gt=0, le=1e18)
    flops_exponent: float = _ranged(
        -0.07, "MnasNet exponent w (<= 0) of the FLOPs/target factor.", ge=-10, le=0)


class AlgorithmName(enum.StrEnum):
    ma2ml = "ma2ml"
    ma2ml_lite = "ma2ml-lite"
    independent = "independent"
    ma2ml_no_credit = "ma2ml-no-credit"
    ma2ml_on_policy = "ma2ml-on-policy"
    random = "random"
    tpe = "tpe"


class Algorithm(Model):
    """The search algorithm and its coefficients (see ``ma2ml.learner``)."""

    name: AlgorithmName = Field(AlgorithmName.ma2ml, description="Search algorithm.")
    seed: int = _ranged(0, "Seed of the learner; same seed, same proposals.", ge=0, le=MAX_SEED)
    settings: dict[str, float | int | bool | str] = Field(
        default_factory=dict, max_length=64,
        description="Overrides of the algorithm's documented settings "
        f"(ma2ml/settings.py), e.g. alpha, tau, critic_steps, failed_reward. Ranges: "
        f"{ranges_text()}.")

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # A setting the algorithm (and its critic) never reads is refused too; with the
        # name itself invalid, only the settings' own checks run.
        name = None if (info.context or {}).get(STORED) else info.data.get("name")
        try:
            Settings.from_overrides(value, None if name is None else str(name))
        except SettingsError as exc:
            raise nested_error((exc.key,), exc.problem) from None
        return value


class Budget(Model):
    """How much the search may spend and how wide it runs."""

    max_trials: int = _ranged(50, "Finished trials after which the search ends.",
                              ge=1, le=1_000_000)
    max_failed_trials: int = _ranged(10, "Failed trials after which it fails.",
                                     ge=1, le=1_000_000)
    max_retries: int = _ranged(2, "Re-runs of a trial after a lost lease/error.", ge=0, le=100)
    parallelism: int = _ranged(1, "Trials running at once (workers).", ge=1, le=1024)
    # The learner samples parallelism + prefetch proposals ahead: bounded like parallelism.
    prefetch: int = _ranged(1, "Extra pending trials kept queued.", ge=0, le=1024)
    trial_epochs: int = _ranged(1, "Training epochs per trial.", ge=1, le=10_000)
    lease_seconds: float = _ranged(120.0, "Worker lease; heartbeats renew it.", ge=1,
                                   le=86_400)
    # Time budgets: the search ends at whichever of maxTrials, maxDuration and
    # maxTrainingHours comes first (store.lifecycle.budget_verdict).
    max_duration: OptionalSeconds = Field(
        None, description="Wall-clock time the search may run, counted from its creation: seconds "
        'or a duration such as "90m" or "1h30m" (units h, m, s). Range (0, '
        f"{format_duration(MAX_DURATION_SECONDS)}]; unset: no limit.")
    max_training_hours: float | None = _ranged(
        None, "Device hours the trials may train in all (each trial from its start to its "
        "result, retried attempts included); unset: no limit.", gt=0, le=MAX_TRAINING_HOURS)


class EarlyStoppingType(enum.StrEnum):
    none = "none"
    asha = "asha"
    median = "median"
    learned = "learned"


class BracketShares(enum.StrEnum):
    """How ``EarlyStopping.brackets`` shares the trials out (``ma2ml.store.stopping``)."""

    equal = "equal"
    hyperband = "hyperband"
    adaptive = "adaptive"


class EarlyStopping(Model):
    """Stopping hopeless trials early, decided against the store at epoch boundaries.

    ``asha``: asynchronous successive halving (Li et al., MLSys 2020), rungs at
    ``minEpochs * reductionFactor**k`` below ``trialEpochs``; a trial continues past
    a rung only among the best ``ceil(n / reductionFactor)`` of the n results
    recorded there. ``median``: from ``minEpochs`` on, a trial stops when its
    result is below the median of the other trials' results at the same epoch,
    once ``minTrials`` of them exist (Optuna's MedianPruner, Katib's median stop).
    ``learned``: at ASHA's rungs, a trial stops when its result is below what every
    trial that ended among the best ``1/reductionFactor`` of the completed ones had
    at that epoch, once ``minTrials`` trials completed: the search learns from its
    own curves how slowly its eventual best pipelines may start.
    ``brackets`` hedges both against early results that rank final ones badly, as
    Hyperband does: bracket s is judged from the s-th rung on, so some trials are
    judged late or, in the last bracket, never. ``bracketShares`` says how many trials
    each bracket gets: ``equal`` (by turns), ``hyperband`` (synchronous Hyperband's
    shares, most to the first rung) or ``adaptive`` (Hyperband's shares weighted by
    how often a trial that ends on top would survive each bracket's rungs, measured
    on the search's recently completed trials).
    """

    type: EarlyStoppingType = Field(EarlyStoppingType.none,
                                    description="none, asha, median or learned.")
    min_epochs: int = _ranged(1, "asha, learned: the first rung; median: epochs before any "
                              "stop.", ge=1, le=10_000)
    reduction_factor: int = _ranged(3, "asha: keep the best 1/reductionFactor at each rung; "
                                    "learned: the top 1/reductionFactor of completed trials "
                                    "set the bar.", ge=2, le=100)
    min_trials: int = _ranged(5, "median: other trials' results needed at an epoch before "
                              "it stops anything; learned: completed trials needed.",
                              ge=1, le=10_000)
    brackets: int = _ranged(1, "asha, learned: trials are shared out (bracketShares) over "
                            "this many brackets; bracket s is judged from the s-th rung on, and "
                            "one bracket past the rungs is never stopped (asynchronous "
                            "Hyperband). 1: every trial from the first rung.", ge=1, le=100)
    bracket_shares: BracketShares = Field(
        BracketShares.adaptive,
        description="asha, learned with brackets > 1: how trials are shared out over the "
                    "brackets. equal: by turns; hyperband: synchronous Hyperband's shares "
                    "(most to the first rung); adaptive: Hyperband's shares, each weighted by "
                    "how often a trial that ended on top would have survived the bracket's "
                    "rungs, among the search's recently completed trials.")


class TrainerType(enum.StrEnum):
    builtin = "builtin"
    command = "command"


class Trainer(Model):
    """The built-in image classifier trainer, or a user command."""

    type: TrainerType = Field(TrainerType.builtin, description="builtin or command.")
    command: list[PathText] = Field(
        default_factory=list, max_length=256,
        description="Argument list (no shell) of a custom trainer; at most 256 arguments of "
        f"{MAX_PATH_CHARS} characters.")
    timeout_seconds: float = _ranged(3600.0, "Kill a trial after this long.", gt=0,
                                     le=7 * 86_400)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Training device.")
    amp: bool = Field(True, description="Mixed precision on CUDA.")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA.")
    checkpoint_dir: PathText | None = Field(
        None, description="Epoch checkpoints (a shared volume in a cluster).")

    @model_validator(mode="after")
    def _command_needed(self) -> Trainer:
        if self.type == TrainerType.command and not self.command:
            raise ValueError("type 'command' needs a non-empty command list")
        if self.type == TrainerType.builtin and self.command:
            raise ValueError("command is only used with type 'command'")
        return self


K8sObject = dict[str, Any]


class Worker(Model):
    """Pieces of the worker (and learner) pod template."""

    image: str = Field(DEFAULT_IMAGE, min_length=1, max_length=1024,
                       description="Container image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: dict[str, ResourceList] = Field(
        default_factory=dict, description="requests/limits, e.g. nvidia.com/gpu: 1; at most "
        "32 resources each.")
    node_selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, max_length=64, description="Node labels; at most 64.")
    tolerations: list[K8sObject] = Field(default_factory=list, max_length=64,
                                         description="Pod tolerations; at most 64.")
    volumes: list[K8sObject] = Field(default_factory=list, max_length=64,
                                     description="Pod volumes; at most 64.")
    volume_mounts: list[K8sObject] = Field(default_factory=list, max_length=64,
                                           description="Volume mounts; at most 64.")
    env: list[K8sObject] = Field(default_factory=list, max_length=256,
                                 description="Container environment; at most 256 entries.")
    service_account_name: K8sName | None = None

    @field_validator("resources")
    @classmethod
    def _resource_sections(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - {"requests", "limits"}
        if unknown:
            raise ValueError(f"keys must be requests or limits, got {_describe(sorted(unknown))}")
        return value


class Database(Model):
    """Where the store lives: a URL (local) or a Secret holding it (cluster)."""

    url: PathText | None = Field(None, description="SQLAlchemy URL; default MA2ML_DATABASE_URL "
                                 "or a SQLite file beside the spec.")
    secret_name: K8sName | None = Field(None, description="Secret with the URL (cluster).")
    secret_key: K8sName = Field("url", description="Key of the URL in that Secret.")


class Retention(enum.StrEnum):
    keep = "keep"
    delete = "delete"


class PipelineSearchSpec(Model):
    """What to search, how, and with what budget."""

    dataset: Dataset = Field(default_factory=Dataset)
    agents: list[Agent] = Field(
        min_length=1, max_length=MAX_AGENTS,
        description=f"The AutoML modules; at most {MAX_AGENTS}, with at most "
        f"{MAX_DECISIONS_PER_AGENT} decisions each and {MAX_TOTAL_VALUES} values over all "
        "decisions.")
    objective: Objective = Field(default_factory=Objective)
    algorithm: Algorithm = Field(default_factory=Algorithm)
    budget: Budget = Field(default_factory=Budget)
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
    trainer: Trainer = Field(default_factory=Trainer)
    worker: Worker = Field(default_factory=Worker)
    database: Database = Field(default_factory=Database)
    suspend: bool = Field(False, description="Scale workers to zero, keep the store.")
    retention: Retention = Field(
        Retention.keep, description="On delete: keep or delete the store rows.")

    @field_validator("agents")
    @classmethod
    def _space_builds(cls, agents: list[Agent]) -> list[Agent]:
        # A field validator (not a model one) so these errors are reported
        # even when another field of the spec is wrong too.
        built = []
        for i, agent in enumerate(agents):
            try:
                built.append(_build_agent(agent))
            except SpaceError as exc:
                raise nested_error((i, *exc.loc), exc.problem) from None
        try:
            build_space(built)
        except SpaceError as exc:
            raise nested_error(exc.loc, exc.problem) from None
        return agents

    @model_validator(mode="after")
    def _rungs_below_the_last_epoch(self) -> PipelineSearchSpec:
        stopping, epochs = self.early_stopping, self.budget.trial_epochs
        if stopping.type != EarlyStoppingType.none and stopping.min_epochs >= epochs:
            raise nested_error(("earlyStopping", "minEpochs"),
                               f"must be below spec.budget.trialEpochs ({epochs}) for "
                               f"{stopping.type} to stop anything, got {stopping.min_epochs}")
        return self

    def search_space(self) -> SearchSpace:
        return build_space(_build_agent(a) for a in self.agents)


def _build_agent(agent: Agent) -> AgentSpace:
    return build_agent(agent.name, agent.preset, agent.options,
                       [(d.name, d.values) for d in agent.decisions])


class Metadata(Model):
    model_config = ConfigDict(extra="ignore", frozen=True)  # labels, uid, ... are Kubernetes'

    name: str = Field(pattern=_NAME, max_length=63)
    namespace: str = Field("default", pattern=_NAME, max_length=63)


class PipelineSearch(Model):
    """The whole resource, as a user writes it."""

    api_version: Literal["ma2ml.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["PipelineSearch"]
    metadata: Metadata
    spec: PipelineSearchSpec

    @property
    def key(self) -> str:
        """The search's name in the store: ``namespace/name``."""
        return f"{self.metadata.namespace}/{self.metadata.name}"


# --------------------------------------------------------------------------- status


class Phase(enum.StrEnum):
    pending = "Pending"
    running = "Running"
    succeeded = "Succeeded"
    failed = "Failed"
    suspended = "Suspended"


class Condition(Model):
    """A Kubernetes-style condition a person can act on."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = None


class TrialCounts(Model):
    total: int = 0
    pending: int = 0
    running: int = 0
    completed: int = 0
    diverged: int = 0
    stopped: int = Field(0, description="Trials ended early by spec.earlyStopping.")
    failed: int = 0


class BestTrial(Model):
    """The best trial so far, compact: the CR never holds trial history."""

    # Mirrored from the store, not written by a user: keep whatever it holds.
    model_config = ConfigDict(**{**Model.model_config, "allow_inf_nan": True})

    trial: int
    reward: float
    accuracy: float | None = None
    flops: float | None = None
    pipeline: dict[str, str] = Field(
        default_factory=dict, description="agent -> 'decision=value,...' (compact).")


class PipelineSearchStatus(Model):
    """What the operator mirrors from the store; constant size."""

    phase: Phase = Phase.pending
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    trials: TrialCounts = Field(default_factory=TrialCounts)
    best: BestTrial | None = None
    start_time: str | None = None
    completion_time: str | None = None
    message: str = ""
    elapsed_seconds: int | None = Field(
        None, description="Wall-clock seconds since the search was created, until it ended "
        "(what spec.budget.maxDuration limits).")
    training_hours: float | None = Field(
        None, description="Device hours its trials trained (what "
        "spec.budget.maxTrainingHours limits).")


# --------------------------------------------------------------------------- errors


class SpecError(ValueError):
    """A spec that does not validate; ``lines`` holds one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


#: pydantic error type of a validator that names a field below its own (``nested_error``).
NESTED = "ma2ml_nested"


def nested_error(path: tuple[int | str, ...], problem: str) -> PydanticCustomError:
    """An error for a validator to raise about ``path`` below the field it validates.

    The path travels in the error's structured context, so ``format_errors``
    extends the field path without reading the message.
    """
    return PydanticCustomError(NESTED, "{problem}", {"path": tuple(path), "problem": problem})


def format_loc(loc: tuple[int | str, ...]) -> str:
    """``("spec", "agents", 0, "name")`` -> ``spec.agents[0].name``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:  # an unknown key is the user's text: it may be long or hold newlines
            name = _key_text(part)
            path += f".{name}" if path else name
    return path or "(root)"


_DESCRIBE_CHARS = 60
_DESCRIBE_DEPTH = 3


def _describe(value: Any, limit: int = _DESCRIBE_CHARS) -> str:
    """A short repr of a value a user gave: bounded work and length whatever its size.

    ``repr`` of a YAML alias bomb (a small graph of shared lists that expands
    to 10**9 items) would never finish, so this visits at most ``limit``
    characters' worth of items and ``_DESCRIBE_DEPTH`` levels.
    """
    out: list[str] = []
    _bounded_repr(value, out, [limit + 1], _DESCRIBE_DEPTH)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _bounded_repr(value: Any, out: list[str], budget: list[int], depth: int) -> None:
    # ``budget`` (a one-element list, shared by the recursion) is the number of
    # characters still wanted; everything stops once it reaches zero.
    def emit(text: str) -> None:
        out.append(text)
        budget[0] -= len(text)

    if budget[0] <= 0:
        return
    if isinstance(value, str | bytes):
        emit(repr(value[:budget[0]]) + ("..." if len(value) > budget[0] else ""))
    elif isinstance(value, bool | float) or value is None:
        emit(repr(value))
    elif isinstance(value, int):
        # Python refuses str() of an int above 4300 digits; estimate the size instead.
        digits = int(value.bit_length() * 0.30103) + 1
        emit(repr(value) if digits < 40 else f"<integer of about {digits} digits>")
    elif isinstance(value, dict | list | tuple):
        _bounded_items(value, emit, out, budget, depth)
    else:
        emit(f"<{type(value).__name__}>")


def _bounded_items(value: dict[Any, Any] | list[Any] | tuple[Any, ...], emit: Any,
                   out: list[str], budget: list[int], depth: int) -> None:
    opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
    if depth <= 0:
        emit(f"{opening}...{closing}" if value else opening + closing)
        return
    emit(opening)
    items = iter(value.items()) if isinstance(value, dict) else iter(value)
    for i, item in enumerate(items):
        if budget[0] <= 0:
            return
        if i:
            emit(", ")
        if isinstance(value, dict):
            _bounded_repr(item[0], out, budget, depth - 1)
            emit(": ")
            item = item[1]
        _bounded_repr(item, out, budget, depth - 1)
    emit(closing)


_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
           "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}

#: What each pydantic type error expected, in words (by error ``type``).
_TYPE_WORDS = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "int_parsing_size": "an integer",
    "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string", "string_unicode": "a string", "string_sub_type": "a string",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "tuple_type": "a list", "set_type": "a list",
}


def _expected(err: dict[str, Any]) -> str:
    return _TYPE_WORDS.get(err["type"], "a valid value")


def _message(err: Mapping[str, Any]) -> str:
    """What was expected and what was given, from the error's ``type``, ``ctx`` and ``input``."""
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    constraint = _constraint_message(kind, ctx, given)
    if constraint is not None:
        return constraint
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return f"unknown field (given {_describe(given)})"
    if kind in ("enum", "literal_error"):
        return f"expected {ctx.get('expected')}, got {_describe(given)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    if kind == NESTED:
        return str(ctx["problem"])
    if kind in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[kind]}, got {_describe(given)}"
    # A type this table does not know yet: pydantic's own sentence, as a whole.
    return f"{err['msg']}, got {_describe(given)}"


def _constraint_message(kind: str, ctx: Mapping[str, Any], given: Any) -> str | None:
    """The message of a value of the right type that breaks a constraint (a bound, a
    length, a pattern, finiteness); None for any other kind of error."""
    if kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        limit = ctx.get(key)
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
        return f"must be {symbol} {limit}, got {_describe(given)}"
    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        return _length_message(kind, ctx, given)
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}, got {_describe(given)}"
    if kind == "finite_number":
        return f"must be a finite number, got {_describe(given)}"
    return None


def _length_message(kind: str, ctx: Mapping[str, Any], given: Any) -> str:
    """Too few or too many items (a list, a mapping) or characters (a string)."""
    if kind in ("too_short", "too_long"):
        word, key = ("least", "min_length") if kind == "too_short" else ("most", "max_length")
        actual = ctx.get("actual_length")
        if actual is None and isinstance(given, list | dict | tuple):
            actual = len(given)
        return f"must have at {word} {ctx.get(key)} item(s), got {actual}"
    word, key = ("least", "min_length") if kind == "string_too_short" else ("most",
                                                                             "max_length")
    length = len(given) if isinstance(given, str) else "?"
    return f"must be at {word} {ctx.get(key)} characters, got {length} characters"


def format_errors(exc: ValidationError) -> list[str]:
    """One ``path: what was expected, got what`` line per pydantic error."""
    by_path: dict[str, list[dict[str, Any]]] = {}
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        if err["type"] == NESTED:  # a validator named a deeper field: extend the path
            loc += tuple(err["ctx"]["path"])
        by_path.setdefault(format_loc(loc), []).append({**err, "message": _message(err)})
    lines = []
    for path, errs in by_path.items():
        finite = [e for e in errs if e["type"] == "finite_number"]
        if finite:  # NaN or infinity tried against a union: that is the one problem
            lines.append(f"{path}: {finite[0]['message']}")
        elif len(errs) > 1 and all(e["type"] in _TYPE_WORDS for e in errs):
            # One value failed every member of a union: say so once.
            kinds = " or ".join(dict.fromkeys(_expected(e) for e in errs))
            lines.append(f"{path}: expected {kinds}, got {_describe(errs[0].get('input'))}")
        else:
            lines.extend(f"{path}: {e['message']}" for e in errs)
    return lines


def _is_union_tag(part: int | str) -> bool:
    # pydantic adds the member type ("int", "str", "function-after[...]") to
    # union error locations; a user never wrote those.
    return isinstance(part, str) and (part in {"int", "str", "float", "bool"} or "[" in part)


def parse_spec(document: Any, *, stored: bool = False) -> PipelineSearch:
    """Validate a parsed YAML document; raise ``SpecError`` with every problem.

    ``stored``: a spec read back (from a store, an exported recipe), which was valid
    when it was written. Checks added since that only refuse input, never change its
    meaning (a setting the algorithm does not read), let it through, so an upgrade never
    strands a search that was accepted."""
    if not isinstance(document, dict):
        raise SpecError([f"(root): expected a mapping with apiVersion, kind, metadata and spec, "
                         f"got {_describe(document)}"])
    try:
        return PipelineSearch.model_validate(document, context={STORED: stored})
    except ValidationError as exc:
        raise SpecError(format_errors(exc)) from None


# --------------------------------------------------------------------------- YAML


_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class _Open:
    """A list or mapping being read: its path, items seen and expanded size so far."""

    path: str
    mapping: bool
    anchor: str | None
    events: int = 0  # child nodes seen (a mapping's keys and values both count)
    size: int = 1
    key: str = "?"


def _refuse(path: str, problem: str) -> SpecError:
    """A shape-check error at ``path``; a path 64 levels deep is clipped to stay readable."""
    path = path or "(root)"
    return SpecError([f"{path if len(path) <= 120 else path[:117] + '...'}: {problem}"])


@dataclass
class _ShapeCheck:
    """Counts a YAML stream's nodes, aliases expanded, and refuses it past the limits.

    It reads the parser's events before any node is built: an alias adds the
    size of the node it names, so "billion laughs" is refused after a few
    thousand events, in the memory of one open path.
    """

    nodes: int = 0
    stack: list[_Open] = field(default_factory=list)
    anchors: dict[str, int] = field(default_factory=dict)

    def run(self, data: bytes) -> None:
        for event in yaml.parse(data, Loader=_FAST_LOADER):
            if isinstance(event, yaml.ScalarEvent):
                path = self._child()
                if path.endswith("[key]"):  # name the value that follows by this key
                    self.stack[-1].key = _key_text(event.value)
                self._number_literal(event, path)
                self._add(1, event.anchor, path)
            elif isinstance(event, yaml.AliasEvent):
                path = self._child()
                self._add(self._alias_size(event.anchor, path), None, path)
            elif isinstance(event, yaml.CollectionStartEvent):
                self._open(event)
            elif isinstance(event, yaml.CollectionEndEvent):
                self._close()
            elif isinstance(event, yaml.DocumentStartEvent):
                self.anchors.clear()  # anchors are local to a document

    def _open(self, event: yaml.CollectionStartEvent) -> None:
        """A mapping or list starts: one node, and the parent of those that follow."""
        path = self._child()
        if len(self.stack) >= MAX_YAML_DEPTH:
            raise _refuse(path, f"nested more than {MAX_YAML_DEPTH} levels deep "
                                f"(limit {MAX_YAML_DEPTH})")
        self._count(1, path)
        self.stack.append(_Open(path, isinstance(event, yaml.MappingStartEvent), event.anchor))

    def _close(self) -> None:
        """A mapping or list ends: its size is known, for its anchor and its parent."""
        done = self.stack.pop()
        if done.anchor is not None:
            self.anchors[done.anchor] = done.size
        if self.stack:
            self.stack[-1].size += done.size

    def _child(self) -> str:
        """The path of the node that starts now; counts it as an item of its parent."""
        if not self.stack:
            return ""
        parent = self.stack[-1]
        index, parent.events = parent.events, parent.events + 1
        items = index // 2 if parent.mapping else index
        if items >= MAX_YAML_ITEMS:
            kind = "mapping" if parent.mapping else "list"
            raise _refuse(parent.path, f"a {kind} of more than {MAX_YAML_ITEMS} items "
                                       f"(limit {MAX_YAML_ITEMS})")
        if not parent.mapping:
            return f"{parent.path}[{index}]"
        if index % 2 == 0:
            parent.key = "?"  # until a scalar key names it
            return f"{parent.path}[key]"
        return f"{parent.path}.{parent.key}" if parent.path else parent.key

    def _add(self, size: int, anchor: str | None, path: str) -> None:
        self._count(size, path)
        if anchor is not None:
            self.anchors[anchor] = size
        if self.stack:
            self.stack[-1].size += size

    def _count(self, size: int, path: str) -> None:
        self.nodes += size
        if self.nodes > MAX_YAML_NODES:
            raise _refuse(path, f"the spec has more than {MAX_YAML_NODES} values once YAML "
                                f"aliases are expanded (limit {MAX_YAML_NODES})")

    def _alias_size(self, anchor: str | None, path: str) -> int:
        assert anchor is not None  # the parser's aliases always name their anchor
        if any(o.anchor == anchor for o in self.stack):
            raise _refuse(path, f"YAML alias *{_describe(anchor, 40)} refers to a node that "
                                f"contains it (a recursive structure)")
        # An undefined alias counts 1: the loader refuses it (and a duplicate anchor) anyway.
        return self.anchors.get(anchor, 1)

    def _number_literal(self, event: yaml.ScalarEvent, path: str) -> None:
        value = event.value
        plain = not event.style  # None from the Python parser, "" from libyaml
        if plain and len(value) > MAX_NUMBER_CHARS and event.implicit[0]:
            tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, event.implicit)
            if tag.endswith((":int", ":float")):
                raise _refuse(path, f"a number of {len(value)} characters "
                                    f"(limit {MAX_NUMBER_CHARS})")


def _key_text(value: str) -> str:
    return value if len(value) <= 60 and value.isprintable() else _describe(value, 40)


def load_spec(path: str | Path) -> PipelineSearch:
    """Read and validate a PipelineSearch YAML file, within the limits above."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            # Read one byte past the limit, never more: a 10 GB file costs 1 MiB.
            data = stream.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError([f"{path}: cannot read file ({exc.strerror})"]) from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([f"{path}: the file is larger than {MAX_SPEC_BYTES} bytes (1 MiB), "
                         f"the limit of a spec"])
    try:
        _ShapeCheck().run(data)
        document = yaml.load(data, Loader=_FAST_LOADER)  # noqa: S506 - a safe loader
    except SpecError:
        raise
    except yaml.YAMLError as exc:
        raise SpecError([f"{path}: not valid YAML ({_short_yaml_error(exc)})"]) from None
    except (ValueError, RecursionError) as exc:  # e.g. a date out of range
        raise SpecError([f"{path}: not valid YAML ({type(exc).__name__}: "
                         f"{_describe(str(exc), 200)})"]) from None
    return parse_spec(document)


def _short_yaml_error(exc: yaml.YAMLError) -> str:
    # The error spans lines and quotes a snippet of the document: one line, bounded.
    text = " ".join(str(exc).split())
    return text if len(text) <= 500 else text[:497] + "..."


def spec_to_document(search: PipelineSearch) -> dict[str, Any]:
    """The resolved resource (defaults filled) as plain JSON-able data."""
    return search.model_dump(mode="json", by_alias=True)
