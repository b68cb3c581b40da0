"""Text and JSON from trainers made safe to store: no NUL, no lone surrogates, bounded.

PostgreSQL refuses a NUL character in any text value, and psycopg2 cannot
encode a lone surrogate (what ``surrogateescape`` decoding leaves of invalid
UTF-8). A trainer's output may hold either, and a trainer's metrics may be
any size, so the store cleans every such value before writing it: a bad
string never turns a finished result into a crash.
"""

from __future__ import annotations

import math
from typing import Any

# The metric limits are the worker's too (it checks a trainer's report by them): owned
# by ``ma2ml.limits``, re-exported here for the store's readers.
from ma2ml.limits import (
    MAX_METRIC_NAME_CHARS,
    MAX_METRIC_TEXT_CHARS,
    MAX_METRICS_BYTES,
    metrics_bytes,
)

__all__ = ["MAX_ERROR_CHARS", "MAX_METRICS_BYTES", "MAX_METRICS_DEPTH", "MAX_METRIC_NAME_CHARS",
           "MAX_METRIC_TEXT_CHARS", "MetricsTooLargeError", "clean_error", "clean_metrics",
           "clean_text", "metrics_bytes"]

#: Characters of an error message kept (its tail: the end of a log says what went wrong).
MAX_ERROR_CHARS = 4000
#: Nesting depth of metrics kept; deeper values are replaced by a marker.
MAX_METRICS_DEPTH = 8


class MetricsTooLargeError(ValueError):
    """A trial's metrics exceed ``MAX_METRICS_BYTES`` once cleaned."""


def clean_text(text: str, limit: int | None = None, *, keep: str = "tail") -> str:
    """``text`` without NUL or lone surrogates (each becomes U+FFFD), cut to ``limit``
    characters, keeping the ``tail`` or the ``head``."""
    if limit is not None and len(text) > limit:
        text = "..." + text[-(limit - 3):] if keep == "tail" else text[:limit - 3] + "..."
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def clean_error(text: str) -> str:
    """An error message as stored: clean, at most ``MAX_ERROR_CHARS`` (its tail)."""
    return clean_text(str(text), MAX_ERROR_CHARS)


def clean_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as stored: string keys and values cleaned and capped, non-finite numbers
    as None, nesting capped; ``MetricsTooLargeError`` when still over the size bound."""
    cleaned: dict[str, Any] = _clean(metrics, 0)
    size = metrics_bytes(cleaned)
    if size > MAX_METRICS_BYTES:
        raise MetricsTooLargeError(
            f"metrics are {size} bytes as JSON; at most {MAX_METRICS_BYTES} are stored")
    return cleaned


def _clean(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return clean_text(value, MAX_METRIC_TEXT_CHARS, keep="head")
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_METRICS_DEPTH:
        return "<nested too deep>"
    if isinstance(value, dict):
        return {clean_text(str(k), MAX_METRIC_NAME_CHARS, keep="head"): _clean(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    if hasattr(value, "tolist"):  # NumPy / torch scalars and arrays
        return _clean(value.tolist(), depth)
    return clean_text(str(value), MAX_METRIC_TEXT_CHARS, keep="head")
