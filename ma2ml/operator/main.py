"""``ma2ml operator``: run the kopf operator with a liveness endpoint and Prometheus metrics.

The settings are read and validated first (``OperatorConfig.from_env``): a
missing ``MA2ML_DATABASE_URL`` or a bad value stops the command with exit
code 2 and one line naming the variable, before kopf or any port starts.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
from collections.abc import Sequence

import kopf
from prometheus_client import start_http_server

from ma2ml.metrics import register_search_phase_collector
from ma2ml.operator.config import ConfigError, OperatorConfig
from ma2ml.operator.handlers import TIMER_ID, build_registry

#: Exit code of a configuration error (the CLI's code for bad input).
EXIT_CONFIG = 2


def _skip_routine_timer_lines(record: logging.LogRecord) -> bool:
    # The status timer succeeds every few seconds for every search; saying so is noise.
    return not str(record.msg).startswith(f"Timer {TIMER_ID!r} succeeded")


def run_operator(namespaces: Sequence[str] = (), *, all_namespaces: bool = False,
                 liveness_port: int = 8081, metrics_port: int = 9090,
                 peering: str | None = None, verbose: bool = False) -> None:
    """Watch PipelineSearches in ``namespaces`` (or everywhere) until SIGTERM/SIGINT.

    ``peering`` names a KopfPeering object for leader election between
    replicas; without it the operator runs standalone (one replica).
    """
    if bool(namespaces) == all_namespaces:
        raise ValueError("give --namespace NS (repeatable) or --all-namespaces, not both or none")
    try:
        config = OperatorConfig.from_env()
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(EXIT_CONFIG) from None
    # Plain lines for a person at a terminal, one JSON object per line for log collectors.
    log_format = kopf.LogFormat.FULL if sys.stderr.isatty() else kopf.LogFormat.JSON
    kopf.configure(verbose=verbose, log_format=log_format)
    if not verbose:
        logging.getLogger("kopf.objects").addFilter(_skip_routine_timer_lines)
    stop_flag = threading.Event()  # set by a handler that met a non-transient store error
    memo = kopf.Memo(phases=register_search_phase_collector(), stop_flag=stop_flag, fatal=None)
    if metrics_port:
        start_http_server(metrics_port)
    kopf.run(
        registry=build_registry(config),
        clusterwide=all_namespaces,
        namespaces=list(namespaces),
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
        standalone=peering is None,
        peering_name=peering,
        # Replicas with equal priority all stay active; distinct random ones
        # let kopf's peering keep exactly one (kopf docs, "multi-pod operators").
        priority=random.randint(1, 32767) if peering else 0,
        memo=memo,
        stop_flag=stop_flag,
    )
    if memo.fatal:
        sys.stderr.write(f"error: {memo.fatal}\n")
        raise SystemExit(1)
