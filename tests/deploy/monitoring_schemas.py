"""Minimal JSON schemas of the Prometheus Operator kinds the chart renders.

kubernetes-validate has no schemas for monitoring.coreos.com, and the CRDs
cannot be downloaded here. These schemas are a strict subset of the
monitoring.coreos.com/v1 CRDs (prometheus-operator v0.7x): every field the
chart uses, with its type, and nothing else (``additionalProperties:
false``), so a misspelt or misplaced field fails the test. Fields of the
real CRDs the chart does not use are deliberately absent.
"""

from __future__ import annotations

from typing import Any


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "properties": properties,
            "required": list(required)}


_STRING = {"type": "string"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
             "(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_METADATA = _object({"name": _STRING, "namespace": _STRING, "labels": _STRINGS,
                     "annotations": _STRINGS}, ("name",))
_LABEL_SELECTOR = _object({
    "matchLabels": _STRINGS,
    "matchExpressions": {"type": "array", "items": _object({
        "key": _STRING, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
        "values": {"type": "array", "items": _STRING}}, ("key", "operator"))},
})
_NAMESPACE_SELECTOR = _object({"any": {"type": "boolean"},
                               "matchNames": {"type": "array", "items": _STRING}})
_ENDPOINT = _object({"port": _STRING, "path": _STRING, "interval": _DURATION})


def _resource(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return _object({"apiVersion": {"const": "monitoring.coreos.com/v1"},
                    "kind": {"const": kind}, "metadata": _METADATA, "spec": spec},
                   ("apiVersion", "kind", "metadata", "spec"))


_RULE = _object({
    "alert": _STRING, "record": _STRING,
    "expr": {"type": ["string", "integer"]},
    "for": _DURATION, "labels": _STRINGS, "annotations": _STRINGS,
}, ("expr",))

MONITORING_SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": _resource("ServiceMonitor", _object({
        "selector": _LABEL_SELECTOR, "namespaceSelector": _NAMESPACE_SELECTOR,
        "endpoints": {"type": "array", "items": _ENDPOINT, "minItems": 1},
    }, ("selector", "endpoints"))),
    "PodMonitor": _resource("PodMonitor", _object({
        "selector": _LABEL_SELECTOR, "namespaceSelector": _NAMESPACE_SELECTOR,
        "podMetricsEndpoints": {"type": "array", "items": _ENDPOINT, "minItems": 1},
    }, ("selector", "podMetricsEndpoints"))),
    "PrometheusRule": _resource("PrometheusRule", _object({
        "groups": {"type": "array", "items": _object({
            "name": _STRING, "interval": _DURATION,
            "rules": {"type": "array", "items": _RULE}}, ("name", "rules"))},
    }, ("groups",))),
}
