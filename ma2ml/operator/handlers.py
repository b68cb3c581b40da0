"""kopf registration for ``pipelinesearches.ma2ml.io``: each handler delegates to ``reconcile``.

Create, resume, spec edits and a timer all run the same idempotent reconcile;
deletion runs a finalizer that applies ``spec.retention``. Importing this
module registers the handlers (``main.run_operator`` does that). The timer
interval is read from ``MA2ML_STATUS_INTERVAL`` at import.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf

from ma2ml.metrics import RECONCILE_ERRORS, RECONCILE_SECONDS, register_store_collector
from ma2ml.operator.config import OperatorConfig
from ma2ml.operator.kube import Kube
from ma2ml.operator.reconcile import finalize, reconcile
from ma2ml.spec import API_GROUP, API_VERSION, PLURAL
from ma2ml.store import Store, StoreUnavailableError

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
FINALIZER = f"{API_GROUP}/store-retention"
CONFIG = OperatorConfig.from_env()
#: Seconds before kopf retries a handler that found the store unreachable.
STORE_RETRY_DELAY = 15.0


@contextmanager
def guarded(handler: str) -> Iterator[None]:
    """Time a handler, count its errors, and retry later when the store is down."""
    start = time.perf_counter()
    try:
        yield
    except StoreUnavailableError as exc:
        RECONCILE_ERRORS.labels(handler).inc()
        raise kopf.TemporaryError(f"store unavailable: {exc}", delay=STORE_RETRY_DELAY) from exc
    except Exception:
        RECONCILE_ERRORS.labels(handler).inc()
        raise
    finally:
        RECONCILE_SECONDS.labels(handler).observe(time.perf_counter() - start)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Keep kopf's bookkeeping out of .status (the CRD schema would prune it).
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration")
    # A sync timer cannot be cancelled mid-reconcile: on deletion, look every
    # second whether it has returned instead of kopf's default minute.
    settings.background.cancellation_polling = 1.0
    # Milestones are posted as Events explicitly; routine handler logs are not.
    settings.posting.level = logging.WARNING
    memo.config = CONFIG
    memo.store = Store(CONFIG.database_url)
    memo.kube = Kube.from_environment()
    # Trials by status, queue depth and best reward of every search, read from
    # the store per scrape: the operator is the one long-lived exporter of them.
    if memo.get("store_collector") is None:
        memo.store_collector = register_store_collector(memo.store)


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    memo.store.close()


def _reconcile(handler: str, body: kopf.Body, memo: kopf.Memo, logger: logging.Logger) -> None:
    meta = body.metadata
    with guarded(handler):
        # Reconcile the object as stored now, not kopf's copy of it, and write the
        # status only if it is still that version: when handlers of one search
        # overlap (timer vs. spec edit), exactly one publishes the Events derived
        # from the old -> new status change.
        current = memo.kube.get_search(meta.namespace, meta.name)
        if current is None or current["metadata"].get("deletionTimestamp"):
            return  # gone or going: the finalizer handles it
        outcome = reconcile(current, memo.store, memo.kube, memo.config)
        written = outcome.status is None or memo.kube.replace_status(
            meta.namespace, meta.name, current["metadata"]["resourceVersion"], outcome.status)
    if not written:
        logger.debug("status changed meanwhile; the next reconcile writes it")
        return
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    if memo.get("phases") is not None:
        memo.phases.observe(f"{meta.namespace}/{meta.name}", outcome.phase)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
def create(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    _reconcile("create", body, memo, logger)


@kopf.on.update(*RESOURCE, field="spec")
def update(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    _reconcile("update", body, memo, logger)


@kopf.timer(*RESOURCE, interval=CONFIG.status_interval)
def mirror(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    _reconcile("timer", body, memo, logger)


@kopf.on.delete(*RESOURCE)
def delete(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    with guarded("delete"):
        removed = finalize(body, memo.store)
    key = f"{body.metadata.namespace}/{body.metadata.name}"
    logger.info(f"store rows of {key} {'deleted' if removed else 'kept'}")
    if memo.get("phases") is not None:
        memo.phases.forget(key)
