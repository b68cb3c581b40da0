"""Operator settings, read once at start-up from the environment (prefix ``MA2ML_``) and validated.

Nothing here runs at import: ``main.run_operator`` calls ``OperatorConfig.from_env()``
before kopf starts, so a bad or missing setting stops the operator with one
message naming the variable (``ConfigError``), never a half-started operator.

The Helm chart sets every variable from its values (``templates/operator.yaml``):

* ``MA2ML_DATABASE_URL``: the store (required; there is no SQLite fallback);
  chart: from the Secret ``database.secretName``.
* ``MA2ML_POD_DATABASE_SECRET``: ``NAME`` or ``NAME/KEY`` of the Secret that pods
  of a search naming no database read their URL from (``database.secretName``).
* ``MA2ML_DEFAULT_SERVICE_ACCOUNT``: account of the pods of a search naming none
  (``workloads.serviceAccount.name``, token-less).
* ``MA2ML_ALLOWED_SERVICE_ACCOUNTS``: further accounts a search may name, comma
  separated (``policy.serviceAccounts``).
* ``MA2ML_DEFAULT_IMAGE``: image of the pods of a search naming none (the chart's
  own image, ``image.*``); default ``spec.DEFAULT_IMAGE``.
* ``MA2ML_ALLOWED_IMAGE_PREFIXES``: image prefixes a search may use, comma
  separated; empty: the default image's repository only; ``*``: any image
  (``policy.imagePrefixes``).
* ``MA2ML_ALLOWED_SECRETS``: Secrets a search may reference (env ``secretKeyRef``,
  ``secret`` and projected volumes, ``spec.database.secretName``) besides the pods'
  database Secret, comma separated (``policy.secrets``).
* ``MA2ML_ALLOWED_VOLUME_CLAIMS``: PersistentVolumeClaims a search may mount, comma
  separated (``policy.persistentVolumeClaims``).
* ``MA2ML_ALLOWED_VOLUME_TYPES``: volume types a search may use, comma separated;
  unset: ``SAFE_VOLUME_TYPES`` (``policy.volumeTypes``).
* ``MA2ML_ALLOW_HOST_PATH``: ``true`` lets searches mount hostPath volumes
  (``policy.allowHostPath``).
* ``MA2ML_WORKLOAD_NAMESPACES``: namespaces where searches may run (the chart grants
  Deployments and ConfigMaps there only), comma separated; unset: any.
* ``MA2ML_STATUS_INTERVAL``: seconds between two status mirrors of a search (10).
* ``MA2ML_FAILURE_WARNING_FRACTION``: warn once failed trials reach this share of
  ``maxFailedTrials`` (0.5).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ma2ml.spec import DEFAULT_IMAGE

ENV_DATABASE_URL = "MA2ML_DATABASE_URL"
ENV_POD_DATABASE_SECRET = "MA2ML_POD_DATABASE_SECRET"
ENV_DEFAULT_SERVICE_ACCOUNT = "MA2ML_DEFAULT_SERVICE_ACCOUNT"
ENV_ALLOWED_SERVICE_ACCOUNTS = "MA2ML_ALLOWED_SERVICE_ACCOUNTS"
ENV_ALLOWED_IMAGE_PREFIXES = "MA2ML_ALLOWED_IMAGE_PREFIXES"
ENV_ALLOW_HOST_PATH = "MA2ML_ALLOW_HOST_PATH"
ENV_DEFAULT_IMAGE = "MA2ML_DEFAULT_IMAGE"
ENV_ALLOWED_SECRETS = "MA2ML_ALLOWED_SECRETS"
ENV_ALLOWED_VOLUME_CLAIMS = "MA2ML_ALLOWED_VOLUME_CLAIMS"
ENV_ALLOWED_VOLUME_TYPES = "MA2ML_ALLOWED_VOLUME_TYPES"
ENV_WORKLOAD_NAMESPACES = "MA2ML_WORKLOAD_NAMESPACES"
ENV_STATUS_INTERVAL = "MA2ML_STATUS_INTERVAL"
ENV_FAILURE_WARNING_FRACTION = "MA2ML_FAILURE_WARNING_FRACTION"

#: Key of the URL in the pods' database Secret when ``MA2ML_POD_DATABASE_SECRET`` names none.
DEFAULT_SECRET_KEY = "url"
_TRUE, _FALSE = frozenset({"1", "true", "yes"}), frozenset({"", "0", "false", "no"})
#: Volume types whose content the policy governs by name (claims, Secrets, projected
#: sources) or that hold nothing from outside the pod. Others (nfs, csi, ephemeral, ...)
#: reach storage no allow-list names, so a cluster admin adds them explicitly.
SAFE_VOLUME_TYPES = frozenset({"persistentVolumeClaim", "emptyDir", "configMap", "secret",
                               "projected", "downwardAPI"})
#: ``image_prefixes`` entry that admits any image.
ANY_IMAGE = "*"


class ConfigError(ValueError):
    """A missing or bad setting; the message starts with the variable's name."""


@dataclass(frozen=True)
class SecretRef:
    """A key of a Secret in the pod's own namespace (pods cannot read other namespaces')."""

    name: str
    key: str = DEFAULT_SECRET_KEY


@dataclass(frozen=True)
class WorkloadPolicy:
    """What a PipelineSearch may ask of the learner and worker pods, and what they get.

    A search author is not trusted with the operator's rights: without this,
    any image, any ServiceAccount of the namespace and the node's files
    (hostPath) would be one spec away. ``builders.resolve`` applies it.
    """

    #: Secret the pods of a search that names no database read ``MA2ML_DATABASE_URL``
    #: from. None: such a search is refused (the operator never hands out its URL).
    database_secret: SecretRef | None = None
    #: Account of the pods of a search that names none (None: the namespace's default).
    default_service_account: str | None = None
    #: Accounts a search may name besides ``default_service_account``.
    allowed_service_accounts: frozenset[str] = frozenset()
    #: ``spec.worker.image`` must start with one of these (at a ``/``, ``:`` or ``@``
    #: boundary, see ``image_allowed``); empty: ``default_image``'s repository; ``*``: any.
    image_prefixes: tuple[str, ...] = ()
    #: Image of the pods of a search that names none (the chart's own).
    default_image: str = DEFAULT_IMAGE
    #: Secrets a search may reference besides ``database_secret``: a Secret reference is
    #: a read of that Secret by whoever may create a PipelineSearch.
    allowed_secrets: frozenset[str] = frozenset()
    #: PersistentVolumeClaims a search may mount (never the database's own volume).
    volume_claims: frozenset[str] = frozenset()
    #: Volume types a search may use (hostPath is ``allow_host_path``'s alone).
    volume_types: frozenset[str] = SAFE_VOLUME_TYPES
    #: hostPath volumes give a pod the node's filesystem; off unless a cluster admin says so.
    allow_host_path: bool = False
    #: Namespaces where searches may run (the operator may create pods there); empty: any.
    namespaces: frozenset[str] = frozenset()

    @property
    def secrets(self) -> frozenset[str]:
        """Every Secret a search may reference: the pods' database Secret and the allowed."""
        own = {self.database_secret.name} if self.database_secret else set()
        return self.allowed_secrets | own

    @property
    def service_accounts(self) -> frozenset[str]:
        """Every account a search may name: the default one and the allowed ones."""
        default = {self.default_service_account} if self.default_service_account else set()
        return self.allowed_service_accounts | default

    @property
    def image_repositories(self) -> tuple[str, ...]:
        """The prefixes in force: the configured ones, else ``default_image``'s repository."""
        return self.image_prefixes or (repository(self.default_image),)

    def image_allowed(self, image: str) -> bool:
        """True when ``image`` is under one of ``image_repositories`` (``*``: any image).

        A prefix matches whole name parts only: ``registry.example/team`` admits
        ``registry.example/team/trainer:1`` but not ``registry.example/team-evil/x``.
        """
        return any(prefix == ANY_IMAGE or _under(image, prefix)
                   for prefix in self.image_repositories)


def repository(image: str) -> str:
    """``image`` without its tag or digest: ``ghcr.io/x/y:0.1`` -> ``ghcr.io/x/y``."""
    name = image.split("@", 1)[0]
    head, colon, tag = name.rpartition(":")
    return head if colon and "/" not in tag else name


def _under(image: str, prefix: str) -> bool:
    if not image.startswith(prefix):
        return False
    rest = image[len(prefix):]
    return prefix.endswith(("/", ":", "@")) or rest == "" or rest[0] in "/:@"


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs besides the resources it watches."""

    #: The store the operator mirrors into ``.status`` (the database the pods use).
    database_url: str
    #: What searches may ask of their pods, and what the pods get by default.
    workloads: WorkloadPolicy = field(default_factory=WorkloadPolicy)
    #: Seconds between two status mirrors of one search.
    status_interval: float = 10.0
    #: Warn (Kubernetes Event) once failed trials reach this fraction of maxFailedTrials.
    failure_warning_fraction: float = 0.5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read and validate the settings; a bad or missing one raises ``ConfigError``."""
        env = os.environ if environ is None else environ
        url = env.get(ENV_DATABASE_URL, "").strip()
        if not url:
            # An operator without a database would mirror an empty SQLite file in its
            # working directory and report every search as never started.
            raise ConfigError(f"{ENV_DATABASE_URL}: required: the SQLAlchemy URL of the store "
                              "the learners and workers write to (the Helm chart sets it from "
                              "the Secret database.secretName)")
        default_account = env.get(ENV_DEFAULT_SERVICE_ACCOUNT, "").strip() or None
        volume_types = frozenset(_list(env, ENV_ALLOWED_VOLUME_TYPES)) \
            if env.get(ENV_ALLOWED_VOLUME_TYPES, "").strip() else SAFE_VOLUME_TYPES
        if "hostPath" in volume_types:
            raise ConfigError(f"{ENV_ALLOWED_VOLUME_TYPES}: hostPath is allowed by "
                              f"{ENV_ALLOW_HOST_PATH}=true only (chart value "
                              "policy.allowHostPath)")
        return cls(
            database_url=url,
            workloads=WorkloadPolicy(
                database_secret=_secret_ref(env),
                default_service_account=default_account,
                allowed_service_accounts=frozenset(_list(env, ENV_ALLOWED_SERVICE_ACCOUNTS)),
                image_prefixes=tuple(_list(env, ENV_ALLOWED_IMAGE_PREFIXES)),
                default_image=env.get(ENV_DEFAULT_IMAGE, "").strip() or DEFAULT_IMAGE,
                allowed_secrets=frozenset(_list(env, ENV_ALLOWED_SECRETS)),
                volume_claims=frozenset(_list(env, ENV_ALLOWED_VOLUME_CLAIMS)),
                volume_types=volume_types,
                allow_host_path=_flag(env, ENV_ALLOW_HOST_PATH),
                namespaces=frozenset(_list(env, ENV_WORKLOAD_NAMESPACES)),
            ),
            status_interval=_positive(env, ENV_STATUS_INTERVAL, 10.0),
            failure_warning_fraction=_fraction(env, ENV_FAILURE_WARNING_FRACTION, 0.5),
        )


def _secret_ref(env: Mapping[str, str]) -> SecretRef | None:
    raw = env.get(ENV_POD_DATABASE_SECRET, "").strip()
    if not raw:
        return None
    name, slash, key = raw.partition("/")
    if not name or (slash and not key):
        raise ConfigError(f"{ENV_POD_DATABASE_SECRET}: expected NAME or NAME/KEY, got {raw!r}")
    return SecretRef(name, key or DEFAULT_SECRET_KEY)


def _list(env: Mapping[str, str], name: str) -> list[str]:
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value}")
    return value


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default)
    if not 0 < value <= 1:
        raise ConfigError(f"{name}: must be in (0, 1], got {value}")
    return value


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
