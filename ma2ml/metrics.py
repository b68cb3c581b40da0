"""Prometheus metrics of ma2ml (DESIGN.md section 6), defined once.

Events (a trial finished, an update ran) are counters and histograms
updated where they happen. State (trials by status, queue depth, best
reward) is read from the store at scrape time by ``StoreCollector``, so no
process has to keep it in sync by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ma2ml.spec import Phase

if TYPE_CHECKING:
    from ma2ml.store import Store

# Worker
TRIAL_DURATION = Histogram(
    "ma2ml_trial_duration_seconds", "Wall time of one trial on a worker.", ["search"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200, 14400))
TRIALS_FINISHED = Counter(
    "ma2ml_trials_finished_total", "Trials a worker finished, by outcome.", ["search", "status"])
WORKER_IMAGES_PER_SECOND = Gauge(
    "ma2ml_worker_images_per_second", "Training throughput of the worker's last trial.",
    ["search", "worker"])

# Learner
LEASE_EXPIRIES = Counter(
    "ma2ml_lease_expiries_total", "Trials whose worker lease expired (requeued or failed).",
    ["search"])
POLICY_ENTROPY = Gauge(
    "ma2ml_policy_entropy", "Entropy (nats) of an agent's current policy.", ["search", "agent"])
AGENT_CREDIT = Gauge(
    "ma2ml_agent_credit", "Mean counterfactual credit (advantage) of an agent in the last update.",
    ["search", "agent"])
CRITIC_LOSS = Gauge("ma2ml_critic_loss", "Critic regression loss of the last update.", ["search"])
LEARNER_UPDATE_SECONDS = Histogram(
    "ma2ml_learner_update_seconds", "Wall time of one learner update.", ["search"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

# Operator
RECONCILE_ERRORS = Counter(
    "ma2ml_reconcile_errors_total", "Operator handler errors.", ["handler"])
RECONCILE_SECONDS = Histogram(
    "ma2ml_reconcile_duration_seconds", "Operator handler duration.", ["handler"])


class StoreCollector(Collector):
    """Trials by status, queue depth and best reward, read from the store per scrape."""

    def __init__(self, store: Store, searches: list[str] | None = None) -> None:
        self.store = store
        self.searches = searches  # None: every search in the store

    def collect(self) -> Iterator[Any]:
        trials = GaugeMetricFamily("ma2ml_trials", "Trials by status.", labels=["search", "status"])
        depth = GaugeMetricFamily("ma2ml_queue_depth", "Pending trials waiting for a worker.",
                                  labels=["search"])
        best = GaugeMetricFamily("ma2ml_best_reward", "Best reward so far.", labels=["search"])
        for record in self.store.list_searches():
            if self.searches is not None and record.name not in self.searches:
                continue
            counts = self.store.counts(record.id)
            for status, n in counts.items():
                trials.add_metric([record.name, status], n)
            depth.add_metric([record.name], counts.pending)
            top = self.store.best_trial(record.id)
            if top is not None and top.reward is not None:
                best.add_metric([record.name], top.reward)
        yield from (trials, depth, best)

    def describe(self) -> Iterator[Any]:
        return iter(())  # state is dynamic; avoid a store query at registration


def register_store_collector(store: Store, searches: list[str] | None = None,
                             registry: CollectorRegistry = REGISTRY) -> StoreCollector:
    collector = StoreCollector(store, searches)
    registry.register(collector)
    return collector


class SearchPhaseCollector(Collector):
    """PipelineSearches by phase (``ma2ml_searches``), counted per scrape.

    The operator reports the phase it last wrote for each search; the collector
    counts them when scraped, so every phase is exported (0 included) and a
    deleted search drops out with ``forget``.
    """

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()  # written from kopf's handler threads

    def observe(self, search: str, phase: str) -> None:
        with self._lock:
            self._phases[search] = phase

    def forget(self, search: str) -> None:
        with self._lock:
            self._phases.pop(search, None)

    def collect(self) -> Iterator[Any]:
        family = GaugeMetricFamily("ma2ml_searches", "PipelineSearches by phase.",
                                   labels=["phase"])
        with self._lock:
            phases = list(self._phases.values())
        for phase in Phase:
            family.add_metric([phase], phases.count(phase))
        yield family

    def describe(self) -> Iterator[Any]:
        return iter(())


def register_search_phase_collector(registry: CollectorRegistry = REGISTRY
                                    ) -> SearchPhaseCollector:
    collector = SearchPhaseCollector()
    registry.register(collector)
    return collector


#: Every metric name ma2ml exports (dashboards and alerts are checked against it).
EXPORTED = (
    "ma2ml_trial_duration_seconds", "ma2ml_trials_finished_total",
    "ma2ml_worker_images_per_second", "ma2ml_lease_expiries_total", "ma2ml_policy_entropy",
    "ma2ml_agent_credit", "ma2ml_critic_loss", "ma2ml_learner_update_seconds",
    "ma2ml_reconcile_errors_total", "ma2ml_reconcile_duration_seconds",
    "ma2ml_trials", "ma2ml_queue_depth", "ma2ml_best_reward", "ma2ml_searches",
)
