"""The database NetworkPolicy, matched against the labels of the pods that really connect.

The policy's selectors are evaluated here as the API server's NetworkPolicy
semantics say (peers of a rule OR-ed, a peer's namespace and pod selectors
AND-ed, ``matchLabels`` and ``matchExpressions`` AND-ed), against the pod labels
of the chart's rendered Deployments (operator, dashboard) and of the learner
and worker Deployments the operator builds (``builders``), in the namespace
each runs in. Issue 25 item 16: with ``dashboard.enabled`` the dashboard pod
was shut out, so it never became ready where policies are enforced.
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from ma2ml.operator import builders

from .helpers import NAMESPACE, Obj, one, render

NAMESPACE_NAME = "kubernetes.io/metadata.name"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector applied to ``labels`` (an empty selector selects all)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], \
            expression.get("values", [])
        present = key in labels
        ok = {"In": present and labels.get(key) in values,
              "NotIn": not present or labels[key] not in values,
              "Exists": present, "DoesNotExist": not present}[operator]
        if not ok:
            return False
    return True


def admits(policy: Obj, pod_labels: dict[str, str], namespace: str) -> bool:
    """True when some ingress peer of ``policy`` lets a pod with these labels in."""
    own_namespace = policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress") or []:
        for peer in rule.get("from") or []:
            namespaces = peer.get("namespaceSelector")
            namespace_ok = (namespace == own_namespace if namespaces is None
                            else selects(namespaces, {NAMESPACE_NAME: namespace}))
            if namespace_ok and selects(peer.get("podSelector") or {}, pod_labels):
                return True
    return False


def pod_labels(objects: list[Obj], name: str) -> dict[str, str]:
    return one(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]


def test_the_matcher_follows_selector_semantics() -> None:
    """The check below is only as good as this reading of selectors."""
    labels = {"app": "x", "tier": "db"}
    assert selects({}, labels)
    assert selects({"matchLabels": {"app": "x"}}, labels)
    assert not selects({"matchLabels": {"app": "y"}}, labels)
    assert selects({"matchExpressions": [{"key": "tier", "operator": "In",
                                          "values": ["db", "web"]}]}, labels)
    assert not selects({"matchExpressions": [{"key": "tier", "operator": "NotIn",
                                              "values": ["db"]}]}, labels)
    assert not selects({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)
    assert selects({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}, labels)


@pytest.mark.parametrize("dashboard", [True, False])
def test_every_pod_that_uses_the_database_is_admitted(chart: helm_python.Chart,
                                                      dashboard: bool) -> None:
    values = {"dashboard": {"enabled": dashboard}, "workloads": {"namespaces": ["team-a"]}}
    objects = render(chart, values)
    policy = one(objects, "NetworkPolicy")
    assert admits(policy, pod_labels(objects, "ma2ml-operator"), NAMESPACE)
    for component in (builders.LEARNER, builders.WORKER):
        labels = builders.labels("cifar10", component)  # what the operator gives its pods
        assert admits(policy, labels, NAMESPACE) and admits(policy, labels, "team-a")
        assert not admits(policy, labels, "elsewhere")  # not a search namespace
    if dashboard:
        ui = pod_labels(objects, "ma2ml-ui")
        assert admits(policy, ui, NAMESPACE), "the dashboard pod cannot reach the database"
        assert not admits(policy, ui, "team-a")  # the chart runs it in its own namespace only
    # Nothing else gets in: the database itself, unlabelled pods, a look-alike dashboard
    # when none is deployed, a pod of another release's dashboard.
    database = one(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    stranger = {"app.kubernetes.io/name": "ma2ml", "app.kubernetes.io/component": "dashboard",
                "app.kubernetes.io/instance": "other"}
    assert not admits(policy, database, NAMESPACE)
    assert not admits(policy, {"app": "curl"}, NAMESPACE)
    assert not admits(policy, stranger, NAMESPACE)
    if not dashboard:
        ui_like = {**stranger, "app.kubernetes.io/instance": "ma2ml"}
        assert not admits(policy, ui_like, NAMESPACE)
