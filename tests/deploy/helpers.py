"""Rendering the chart with real Helm (PyPI helm-python-sdk) and small PromQL helpers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "ma2ml"
VALUES_DIR = Path(__file__).parent / "values"
RELEASE = "ma2ml"
NAMESPACE = "ma2ml-system"
#: Kubernetes versions the rendered objects are validated against: the oldest
#: the chart supports (Chart.yaml kubeVersion) and a current one.
KUBERNETES_VERSIONS = ("1.29", "1.35")

Obj = dict[str, Any]


def values_file(name: str) -> dict[str, Any]:
    """A values file of tests/deploy/values/ as a dict."""
    return yaml.safe_load((VALUES_DIR / name).read_text())


def render(chart: helm_python.Chart, values: dict[str, Any] | None = None) -> list[Obj]:
    """Every object the chart renders for ``values`` (templates/, not crds/)."""
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def of_kind(objects: Iterable[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: Iterable[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in of_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def dashboard_json() -> dict[str, Any]:
    return json.loads((CHART_DIR / "dashboards" / "ma2ml.json").read_text())


def dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[str]:
    """PromQL of every panel target and every templating query."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield query["query"]


def rule_exprs(rule_groups: list[dict[str, Any]]) -> Iterator[str]:
    for group in rule_groups:
        for rule in group["rules"]:
            yield rule["expr"]


# A metric name in PromQL: an identifier not preceded by a name character or
# a quote (label values such as "ma2ml_x" inside {} are strings, not names).
_NAME = re.compile(r"(?<![\w\"':])(ma2ml_[A-Za-z0-9_]*)")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}


def metric_names(expr: str) -> set[str]:
    """Names starting with ``ma2ml_`` that a PromQL expression selects."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(_NAME.findall(without_strings))


def unknown_metrics(exprs: Iterable[str], exported: Iterable[str],
                    histograms: Iterable[str]) -> set[str]:
    """Names in ``exprs`` that ma2ml does not export.

    ``exported`` are the names as exposed (counters already end in
    ``_total``); a histogram is also exposed as ``_bucket``, ``_sum`` and
    ``_count`` series, never under its bare name.
    """
    exported, histograms = set(exported), set(histograms)
    allowed = (exported - histograms) | {h + s for h in histograms
                                         for s in _SUFFIXES["histogram"]}
    names = set().union(*(metric_names(e) for e in exprs))
    return names - allowed
