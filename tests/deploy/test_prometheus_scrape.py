"""A real Prometheus server scrapes ma2ml's metrics; the dashboard's queries answer.

Stand-in for the local run: `ma2ml run --metrics-port` is not part of this
test. A search is created and filled through the real Store API on SQLite
(three proposals, two completed trials, one pending), and its metrics
endpoint is ma2ml's own ``register_store_collector`` behind
``prometheus_client.start_http_server`` -- the collector and endpoint every
ma2ml process serves. Prometheus (Debian package, /usr/bin/prometheus) runs
on loopback with a temporary config and data directory, scrapes every
second, and is queried through its HTTP API with the dashboard's own
expressions. Every wait is bounded; the server is stopped at the end.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml

from ma2ml.metrics import register_store_collector
from ma2ml.spec import load_spec, spec_to_document
from ma2ml.store import Store, TrialProposal

from .helpers import ROOT, dashboard_json

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
REWARDS = (0.8125, 0.75)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def http_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)
    except OSError:
        return None  # not listening yet


@pytest.fixture
def search_metrics(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A filled search in a SQLite store and an HTTP endpoint serving its metrics."""
    search = load_spec(ROOT / "examples" / "fashion-mnist.yaml")
    space = search.spec.search_space()
    with Store(f"sqlite:///{tmp_path / 'ma2ml.db'}") as store:
        record = store.create_search(search.key, spec_to_document(search))
        actions = [{agent.name: [i % d.size for d in agent.decisions] for agent in space.agents}
                   for i in range(3)]
        store.enqueue_trials(record.id, [
            TrialProposal(pipeline=space.decode(a), action=a,
                          behaviour_logp={name: -1.0 for name in a}, policy_version=0)
            for a in actions])
        for reward in REWARDS:
            trial = store.claim(record.id, "worker-0", lease_seconds=60)
            store.complete(trial.id, trial.attempt, reward, {"accuracy": reward})
        registry = prometheus_client.CollectorRegistry()
        register_store_collector(store, registry=registry)
        port = free_port()
        server, thread = prometheus_client.start_http_server(port, "127.0.0.1", registry)
        try:
            yield search.key, port
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


@pytest.fixture
def prometheus(tmp_path: Path, search_metrics: tuple[str, int]) -> Iterator[str]:
    """A Prometheus server scraping the endpoint; yields its base URL."""
    _, target = search_metrics
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "ma2ml",
                            "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}],
    }))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or http_json(f"{base}/api/v1/status/config"),
                 30, "Prometheus to start")
        assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def dashboard_expr(title: str) -> str:
    """The first query of a dashboard panel, for all searches."""
    panel = next(p for p in dashboard_json()["panels"] if p["title"] == title)
    return panel["targets"][0]["expr"].replace("$search", ".*")


def query(base: str, expr: str) -> list[dict[str, Any]]:
    answer = http_json(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer is None or answer["status"] == "success", answer
    return answer["data"]["result"] if answer else []


def test_prometheus_scrapes_the_metrics_the_dashboard_uses(
        prometheus: str, search_metrics: tuple[str, int]) -> None:
    key, _ = search_metrics
    best = wait_for(lambda: query(prometheus, dashboard_expr("Best reward over time")), 30,
                    "the first scrape")
    assert [(r["metric"]["search"], float(r["value"][1])) for r in best] == [(key, max(REWARDS))]
    by_status = {r["metric"]["status"]: float(r["value"][1])
                 for r in query(prometheus, dashboard_expr("Trials by status"))}
    assert by_status == {"pending": 1, "running": 0, "completed": 2, "diverged": 0,
                         "stopped": 0, "failed": 0}
    [stopped] = query(prometheus, dashboard_expr("Stopped early"))
    assert (stopped["metric"]["search"], float(stopped["value"][1])) == (key, 0)
    [depth] = query(prometheus, dashboard_expr("Queue depth"))
    assert float(depth["value"][1]) == 1
    [up] = query(prometheus, 'up{job="ma2ml"}')
    assert up["value"][1] == "1"
