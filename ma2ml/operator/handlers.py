"""kopf registration for ``pipelinesearches.ma2ml.io``: each handler delegates to ``reconcile``.

Create, resume, spec edits and a timer all run the same idempotent reconcile;
deletion runs a finalizer that applies ``spec.retention``.

Nothing happens at import. ``build_registry(config)`` registers the handlers
on a fresh kopf registry, and ``main.run_operator`` calls it with the config
it read at start-up and hands the registry to ``kopf.run``. Registration is
a function because kopf fixes a timer's interval when the timer is
registered: this way ``MA2ML_STATUS_INTERVAL`` is read and validated at
start-up like every other setting. (A short fixed timer that looked up the
interval on every tick would work too, but would wake every search's timer
more often than asked, and hide the interval from kopf's own logs.) No
module-level state: the registry, the config, the store and the API client
all come from ``build_registry``'s argument and kopf's memo.

``KOPF_GRANTS`` and the peering tables say what kopf itself calls, beside
``kube.API_GRANTS`` (what our code calls); the chart grants exactly both.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf
from sqlalchemy.exc import DBAPIError

from ma2ml.metrics import RECONCILE_ERRORS, RECONCILE_SECONDS, register_store_collector
from ma2ml.operator.config import OperatorConfig
from ma2ml.operator.kube import Grant, Kube
from ma2ml.operator.reconcile import finalize, reconcile
from ma2ml.spec import API_GROUP, API_VERSION, PLURAL
from ma2ml.store import Store, StoreUnavailableError

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
FINALIZER = f"{API_GROUP}/store-retention"
#: Handler id of the status timer (kopf logs "Timer 'mirror' succeeded" per tick).
TIMER_ID = "mirror"
#: Seconds before kopf retries a handler that found the store unreachable.
STORE_RETRY_DELAY = 15.0

#: What kopf calls in each namespace it serves (kopf 1.45: a list+watch per
#: resource, JSON merge patches for the finalizer and the annotations that
#: ``configure`` selects, and POSTed core/v1 Events). kopf never writes the
#: status here (no handler returns a result, progress lives in annotations).
KOPF_GRANTS = (
    Grant(API_GROUP, PLURAL, ("list", "watch", "patch"),
          "kopf: watch searches; patch their finalizer and progress annotations"),
    Grant("", "events", ("create",), "kopf: post Events (milestones, handler errors)"),
)
#: kopf peering between operator replicas (HA) in each served namespace...
KOPF_PEERING_GRANTS = (
    Grant("kopf.dev", "kopfpeerings", ("list", "watch", "patch"),
          "kopf peering: one active operator among the replicas"),
)
#: ...or, for a cluster-wide operator, the cluster-scoped peering object.
KOPF_CLUSTER_PEERING_GRANTS = (
    Grant("kopf.dev", "clusterkopfpeerings", ("list", "watch", "patch"),
          "kopf peering: one active operator among the replicas"),
)


@contextmanager
def guarded(handler: str, memo: kopf.Memo) -> Iterator[None]:
    """Time a handler, count its errors, and retry later when the store is down.

    Any other database error (a schema bug such as a missing table) is not
    retried: it would fail alike for every search, forever. The operator stops
    (``memo.stop_flag``) and exits non-zero with the message (``main``).
    """
    start = time.perf_counter()
    try:
        yield
    except StoreUnavailableError as exc:
        RECONCILE_ERRORS.labels(handler).inc()
        raise kopf.TemporaryError(f"store unavailable: {exc}", delay=STORE_RETRY_DELAY) from exc
    except DBAPIError as exc:
        RECONCILE_ERRORS.labels(handler).inc()
        memo.fatal = f"the store failed (not a connection problem): {exc}"
        logging.getLogger(__name__).critical("%s; stopping the operator", memo.fatal)
        if memo.get("stop_flag") is not None:
            memo.stop_flag.set()
        raise kopf.PermanentError(memo.fatal) from exc
    except Exception:
        RECONCILE_ERRORS.labels(handler).inc()
        raise
    finally:
        RECONCILE_SECONDS.labels(handler).observe(time.perf_counter() - start)


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, config: OperatorConfig,
              **_: Any) -> None:
    """Start-up: kopf's settings, then the store and the API client on the memo."""
    # Keep kopf's bookkeeping out of .status (the CRD schema would prune it).
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration")
    # No watching of CRDs and namespaces: the CRD is installed before the
    # operator (Helm's crds/), and the watched namespaces are exact names. This
    # is what spares the operator every cluster-wide grant when it serves
    # some namespaces only (kopf then takes the names as given).
    settings.scanning.disabled = True
    # A sync timer cannot be cancelled mid-reconcile: on deletion, look every
    # second whether it has returned instead of kopf's default minute.
    settings.background.cancellation_polling = 1.0
    # Milestones are posted as Events explicitly; routine handler logs are not.
    settings.posting.level = logging.WARNING
    memo.config = config
    memo.store = Store(config.database_url)
    memo.kube = Kube.from_environment()
    # Trials by status, queue depth and best reward of every search, read from
    # the store per scrape: the operator is the one long-lived exporter of them.
    if memo.get("store_collector") is None:
        memo.store_collector = register_store_collector(memo.store)


def close(memo: kopf.Memo, **_: Any) -> None:
    memo.store.close()


def _reconcile(handler: str, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger) -> None:
    meta = body.metadata
    with guarded(handler, memo):
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


def create(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    _reconcile("create", body, memo, logger)


def update(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    _reconcile("update", body, memo, logger)


def mirror(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    _reconcile("timer", body, memo, logger)


def delete(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    with guarded("delete", memo):
        removed = finalize(body, memo.store)
    key = f"{body.metadata.namespace}/{body.metadata.name}"
    logger.info(f"store rows of {key} {'deleted' if removed else 'kept'}")
    if memo.get("phases") is not None:
        memo.phases.forget(key)


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """A kopf registry with every handler, the timer at ``config.status_interval``."""
    registry = kopf.OperatorRegistry()
    # kopf's default registry adds its login fallbacks by itself; a registry of
    # our own names the one that fits: the credentials of the ``kubernetes``
    # client (in-cluster account, else the kubeconfig), as ``Kube`` uses.
    kopf.on.login(id="login", registry=registry)(kopf.login_via_client)
    # Explicit ids: kopf keys its progress annotations by them, so they must
    # not change with how the functions are wrapped.
    kopf.on.startup(id="configure", registry=registry)(
        functools.partial(configure, config=config))
    kopf.on.cleanup(id="close", registry=registry)(close)
    kopf.on.resume(*RESOURCE, id="create", registry=registry)(create)
    kopf.on.create(*RESOURCE, id="create", registry=registry)(create)
    kopf.on.update(*RESOURCE, id="update", field="spec", registry=registry)(update)
    kopf.timer(*RESOURCE, id=TIMER_ID, interval=config.status_interval,
               registry=registry)(mirror)
    kopf.on.delete(*RESOURCE, id="delete", registry=registry)(delete)
    return registry
