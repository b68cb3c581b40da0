"""The PipelineSearch resource, modelled once.

The pydantic models here are the single source of truth: ``load_spec``
validates the YAML a user would ``kubectl apply``; ``ma2ml.crd`` derives the
CustomResourceDefinition's OpenAPI schema from them; ``format_errors`` turns
pydantic's errors into one line per problem, each naming the field path,
what was expected and what was given.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ma2ml.settings import Settings, SettingsError
from ma2ml.spaces import AgentSpace, SearchSpace, SpaceError, build_agent, build_space

API_GROUP = "ma2ml.io"
API_VERSION = "v1alpha1"
KIND = "PipelineSearch"
PLURAL = "pipelinesearches"
DEFAULT_IMAGE = "ghcr.io/ma2ml/ma2ml:0.1.0"
_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Model(BaseModel):
    """Base: camelCase in YAML, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True,
        use_enum_values=True,
    )


class DatasetName(enum.StrEnum):
    fashion_mnist = "fashion-mnist"
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    imagefolder = "imagefolder"


class Dataset(Model):
    """Where the training images are and how much of them a trial uses."""

    name: DatasetName = Field(DatasetName.fashion_mnist, description="Dataset format.")
    root: str | None = Field(
        None, description="Directory holding the data; default depends on the dataset "
        "(fashion-mnist: /usr/share/datasets/fashion-mnist).")
    validation_size: int = Field(
        5000, ge=1, description="Images carved from the training set for validation "
        "(deterministic split; the test set is never used during search).")
    train_subset: int | None = Field(
        None, ge=1, description="Use only this many training images per trial (fast trials).")
    validation_subset: int | None = Field(
        None, ge=1, description="Evaluate on only this many validation images.")
    split_seed: int = Field(0, ge=0, description="Seed of the train/validation split.")


class CustomDecision(Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Decision name.")
    values: list[Any] = Field(min_length=1, description="Candidate values (JSON scalars).")

    @field_validator("values")
    @classmethod
    def _scalars(cls, values: list[Any]) -> list[Any]:
        for value in values:
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"values must be strings, numbers or booleans, got {value!r}")
        if len({(type(v).__name__ == "bool", v) for v in values}) != len(values):
            raise ValueError(f"values must be distinct, got {values!r}")
        return values


class Agent(Model):
    """One AutoML module: a built-in preset (with options) or custom decisions."""

    name: str = Field(pattern=_NAME, max_length=40, description="Agent name, e.g. aug, nas, hpo.")
    preset: str | None = Field(
        None, description="Built-in search space: autoaugment, mbconv-small, mbconv-imagenet, "
        "recipe, recipe-sgd, recipe-adamw.")
    options: dict[str, int] = Field(default_factory=dict, description="Preset options.")
    decisions: list[CustomDecision] = Field(
        default_factory=list, description="Custom decisions (instead of a preset).")

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
    flops_target: float | None = Field(
        None, gt=0, description="Target FLOPs; when set reward = acc * (FLOPs/target)**w.")
    flops_exponent: float = Field(
        -0.07, le=0, description="MnasNet exponent w (<= 0) of the FLOPs/target factor.")


class AlgorithmName(enum.StrEnum):
    ma2ml = "ma2ml"
    ma2ml_lite = "ma2ml-lite"
    independent = "independent"
    ma2ml_no_credit = "ma2ml-no-credit"
    ma2ml_on_policy = "ma2ml-on-policy"
    random = "random"


class Algorithm(Model):
    """The search algorithm and its coefficients (see ``ma2ml.learner``)."""

    name: AlgorithmName = Field(AlgorithmName.ma2ml, description="Search algorithm.")
    seed: int = Field(0, ge=0, description="Seed of the learner; same seed, same proposals.")
    settings: dict[str, float | int | bool | str] = Field(
        default_factory=dict, description="Overrides of the algorithm's documented settings "
        "(ma2ml/settings.py), e.g. alpha, tau, critic_steps, failed_reward.")

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Settings.from_overrides(value)
        except SettingsError as exc:  # ".key: message" extends the field path
            raise ValueError("." + str(exc).removeprefix("spec.algorithm.settings.")) from None
        return value


class Budget(Model):
    """How much the search may spend and how wide it runs."""

    max_trials: int = Field(50, ge=1, description="Finished trials after which the search ends.")
    max_failed_trials: int = Field(10, ge=1, description="Failed trials after which it fails.")
    max_retries: int = Field(2, ge=0, description="Re-runs of a trial after a lost lease/error.")
    parallelism: int = Field(1, ge=1, le=1024, description="Trials running at once (workers).")
    prefetch: int = Field(1, ge=0, description="Extra pending trials kept queued.")
    trial_epochs: int = Field(1, ge=1, description="Training epochs per trial.")
    lease_seconds: float = Field(120.0, ge=1, description="Worker lease; heartbeats renew it.")


class TrainerType(enum.StrEnum):
    builtin = "builtin"
    command = "command"


class Trainer(Model):
    """The built-in image classifier trainer, or a user command."""

    type: TrainerType = Field(TrainerType.builtin, description="builtin or command.")
    command: list[str] = Field(
        default_factory=list, description="Argument list (no shell) of a custom trainer.")
    timeout_seconds: float = Field(3600.0, gt=0, description="Kill a trial after this long.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Training device.")
    amp: bool = Field(True, description="Mixed precision on CUDA.")
    channels_last: bool = Field(True, description="channels_last memory format on CUDA.")
    checkpoint_dir: str | None = Field(
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

    image: str = Field(DEFAULT_IMAGE, min_length=1, description="Container image.")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: dict[str, dict[str, str | int]] = Field(
        default_factory=dict, description="requests/limits, e.g. nvidia.com/gpu: 1.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[K8sObject] = Field(default_factory=list)
    volumes: list[K8sObject] = Field(default_factory=list)
    volume_mounts: list[K8sObject] = Field(default_factory=list)
    env: list[K8sObject] = Field(default_factory=list)
    service_account_name: str | None = None

    @field_validator("resources")
    @classmethod
    def _resource_sections(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - {"requests", "limits"}
        if unknown:
            raise ValueError(f"keys must be requests or limits, got {sorted(unknown)}")
        return value


class Database(Model):
    """Where the store lives: a URL (local) or a Secret holding it (cluster)."""

    url: str | None = Field(None, description="SQLAlchemy URL; default MA2ML_DATABASE_URL "
                            "or a SQLite file beside the spec.")
    secret_name: str | None = Field(None, description="Secret with the URL (cluster).")
    secret_key: str = Field("url", description="Key of the URL in that Secret.")


class Retention(enum.StrEnum):
    keep = "keep"
    delete = "delete"


class PipelineSearchSpec(Model):
    """What to search, how, and with what budget."""

    dataset: Dataset = Field(default_factory=Dataset)
    agents: list[Agent] = Field(min_length=1, max_length=16)
    objective: Objective = Field(default_factory=Objective)
    algorithm: Algorithm = Field(default_factory=Algorithm)
    budget: Budget = Field(default_factory=Budget)
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
        # even when another field of the spec is wrong too. The "[i]..."
        # prefix lets format_errors extend the field path.
        built = []
        for i, agent in enumerate(agents):
            try:
                built.append(_build_agent(agent))
            except SpaceError as exc:
                sep = "." if str(exc).startswith(("options.", "preset:")) else ": "
                raise ValueError(f"[{i}]{sep}{exc}") from None
        try:
            build_space(built)
        except SpaceError as exc:
            raise ValueError(str(exc)) from None
        return agents

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
    failed: int = 0


class BestTrial(Model):
    """The best trial so far, compact: the CR never holds trial history."""

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


# --------------------------------------------------------------------------- errors


class SpecError(ValueError):
    """A spec that does not validate; ``lines`` holds one message per problem."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def format_loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(root)"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: dict[str, Any]) -> str:
    kind, ctx, given = err["type"], err.get("ctx", {}), err.get("input")
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
        return f"must be {bounds[kind]} {limit}, got {_describe(given)}"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return f"unknown field (given {_describe(given)})"
    if kind in ("enum", "literal_error"):
        return f"expected {ctx.get('expected')}, got {_describe(given)}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s), got {ctx.get('actual_length')}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')}, got {_describe(given)}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"expected {_expected_type(err)}, got {_describe(given)}"


_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false",
               "string": "a string", "dict": "a mapping", "list": "a list",
               "model": "a mapping"}


def _expected_type(err: dict[str, Any]) -> str:
    prefix = err["type"].split("_")[0]
    if prefix in _TYPE_WORDS:
        return _TYPE_WORDS[prefix]
    return err["msg"].removeprefix("Input should be ").removeprefix("a valid ")


_NESTED_PATH = re.compile(r"^((?:\[\d+\]|\.)[^\s:]*): (.*)$")


def format_errors(exc: ValidationError) -> list[str]:
    """One ``path: what was expected, got what`` line per pydantic error."""
    by_path: dict[str, list[dict[str, Any]]] = {}
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        message = _message(err)
        nested = _NESTED_PATH.match(message)
        if nested:  # a model validator named a deeper field: append it to the path
            loc, message = loc + tuple(_split_path(nested.group(1))), nested.group(2)
        by_path.setdefault(format_loc(loc), []).append({**err, "message": message})
    lines = []
    for path, errs in by_path.items():
        if len(errs) > 1:  # one value failed every member of a union: say so once
            kinds = " or ".join(dict.fromkeys(_expected_type(e) for e in errs))
            lines.append(f"{path}: expected {kinds}, got {_describe(errs[0].get('input'))}")
        else:
            lines.append(f"{path}: {errs[0]['message']}")
    return lines


def _is_union_tag(part: int | str) -> bool:
    # pydantic adds the member type ("int", "str", "function-after[...]") to
    # union error locations; a user never wrote those.
    return isinstance(part, str) and (part in {"int", "str", "float", "bool"} or "[" in part)


def _split_path(path: str) -> list[int | str]:
    parts: list[int | str] = []
    for token in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        parts.append(int(token[1:-1]) if token.startswith("[") else token)
    return parts


def parse_spec(document: Any) -> PipelineSearch:
    """Validate a parsed YAML document; raise ``SpecError`` with every problem."""
    if not isinstance(document, dict):
        raise SpecError([f"(root): expected a mapping with apiVersion, kind, metadata and spec, "
                         f"got {_describe(document)}"])
    try:
        return PipelineSearch.model_validate(document)
    except ValidationError as exc:
        raise SpecError(format_errors(exc)) from None


def load_spec(path: str | Path) -> PipelineSearch:
    """Read and validate a PipelineSearch YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError([f"{path}: cannot read file ({exc.strerror})"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([f"{path}: not valid YAML ({exc})"]) from None
    return parse_spec(document)


def spec_to_document(search: PipelineSearch) -> dict[str, Any]:
    """The resolved resource (defaults filled) as plain JSON-able data."""
    return search.model_dump(mode="json", by_alias=True)

