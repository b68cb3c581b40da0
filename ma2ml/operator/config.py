"""Operator settings, read once from the environment (prefix ``MA2ML_``) and validated."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ma2ml.store import resolve_database_url

ENV_STATUS_INTERVAL = "MA2ML_STATUS_INTERVAL"
ENV_FAILURE_WARNING_FRACTION = "MA2ML_FAILURE_WARNING_FRACTION"
ENV_DATABASE_URL = "MA2ML_DATABASE_URL"


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs besides the resources it watches."""

    #: The store the operator mirrors into ``.status`` (same database as the pods use).
    database_url: str
    #: URL handed to learner/worker pods of a search whose spec names no database
    #: Secret: the operator's own ``MA2ML_DATABASE_URL`` (None when it was not set).
    pod_database_url: str | None
    #: Seconds between two status mirrors of one search.
    status_interval: float = 10.0
    #: Warn (Kubernetes Event) once failed trials reach this fraction of maxFailedTrials.
    failure_warning_fraction: float = 0.5

    @classmethod
    def from_env(cls) -> OperatorConfig:
        """Read and validate the settings; a bad value raises ``ValueError`` naming it."""
        explicit_url = os.environ.get(ENV_DATABASE_URL) or None
        return cls(
            database_url=resolve_database_url(explicit_url),
            pod_database_url=explicit_url,
            status_interval=_positive(ENV_STATUS_INTERVAL, 10.0),
            failure_warning_fraction=_fraction(ENV_FAILURE_WARNING_FRACTION, 0.5),
        )


def _positive(name: str, default: float) -> float:
    value = _number(name, default)
    if value <= 0:
        raise ValueError(f"{name}: must be > 0, got {value}")
    return value


def _fraction(name: str, default: float) -> float:
    value = _number(name, default)
    if not 0 < value <= 1:
        raise ValueError(f"{name}: must be in (0, 1], got {value}")
    return value


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {raw!r}") from None
