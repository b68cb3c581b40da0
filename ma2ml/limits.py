"""Bounds on what a trainer reports, owned here for both sides of the report.

The worker checks a custom trainer's metrics against these where they are
made (``ma2ml.report`` in the trainer, the worker reading a result or a step:
a trial error, never retried), and the store cleans and bounds what it keeps
by the same numbers (``store.text``), so the store never refuses, after the
training, what a trainer was let report. Pure Python: ``ma2ml.report`` in a
trainer imports this without loading the store (SQLAlchemy costs a trainer
about 0.2 s of start-up).
"""

from __future__ import annotations

import json
from typing import Any

#: Metrics in one result or step report.
MAX_METRICS = 256
#: Characters of a metric name (the worker refuses longer ones; the store cuts them).
MAX_METRIC_NAME_CHARS = 256
#: Characters of a string metric (the worker refuses longer ones; the store cuts them).
MAX_METRIC_TEXT_CHARS = 4096
#: Size of a trial's metrics as compact JSON, in bytes; the store refuses more.
MAX_METRICS_BYTES = 65536


def metrics_bytes(metrics: Any) -> int:
    """The size of ``metrics`` as the store measures it (compact JSON)."""
    return len(json.dumps(metrics, separators=(",", ":"), default=str))
