"""Least privilege: the rendered roles grant the operator exactly what it needs.

ALLOWED is the whole list (DESIGN.md section 5 and kopf's deployment docs,
https://kopf.readthedocs.io/en/stable/deployment/): any other grant, a
wildcard, or a binding to another account fails. REQUIRED is what the
operator cannot work without, so a missing grant fails too.
"""

from __future__ import annotations

import itertools
from typing import Any

import helm_python
import pytest

from .helpers import NAMESPACE, Obj, of_kind, one, render, values_file

CRUD = ("get", "list", "watch", "create", "patch", "update", "delete")
NAMESPACED: dict[tuple[str, str], tuple[str, ...]] = {
    ("ma2ml.io", "pipelinesearches"): ("get", "list", "watch", "patch", "update"),
    ("ma2ml.io", "pipelinesearches/status"): ("get", "list", "watch", "patch", "update"),
    # Creating children whose ownerReference sets blockOwnerDeletion (kopf.adopt)
    # needs this where OwnerReferencesPermissionEnforcement is on.
    ("ma2ml.io", "pipelinesearches/finalizers"): ("update",),
    ("apps", "deployments"): CRUD,
    ("batch", "jobs"): CRUD,
    ("", "configmaps"): CRUD,
    ("", "events"): ("create", "patch"),
    ("events.k8s.io", "events"): ("create", "patch"),
    ("", "pods"): ("get", "list", "watch"),
}
DISCOVERY = {("apiextensions.k8s.io", "customresourcedefinitions"): ("list", "watch")}
# kopf lists namespaces only when restricted to some (to start serving one once it exists).
NAMESPACE_DISCOVERY = {("", "namespaces"): ("list", "watch")}
CLUSTER_PEERING = {("kopf.dev", "clusterkopfpeerings"): ("list", "watch", "patch", "get")}
NAMESPACED_PEERING = {("kopf.dev", "kopfpeerings"): ("list", "watch", "patch", "get")}

Grants = set[tuple[str, str, str]]


def grants(role: Obj) -> Grants:
    """(apiGroup, resource, verb) triples of a Role or ClusterRole; no wildcards allowed."""
    found = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group, resource, verb in itertools.product(
                rule["apiGroups"], rule["resources"], rule["verbs"]):
            assert "*" not in (group, resource, verb), f"wildcard in {role['metadata']['name']}"
            found.add((group, resource, verb))
    return found


def expand(*tables: dict[tuple[str, str], tuple[str, ...]]) -> Grants:
    return {(g, r, v) for table in tables for (g, r), verbs in table.items() for v in verbs}


def bound_roles(objects: list[Obj]) -> dict[tuple[str, str | None], Grants]:
    """(kind, namespace) of each role bound to the operator's account -> its grants."""
    roles = {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")): o
             for o in of_kind(objects, "Role") + of_kind(objects, "ClusterRole")}
    bound: dict[tuple[str, str | None], Grants] = {}
    for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ma2ml-operator",
                                        "namespace": NAMESPACE}], binding["subjects"]
        namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles.pop((ref["kind"], ref["name"], namespace))
        bound[(ref["kind"], namespace)] = grants(role)
    assert roles == {}, f"roles bound to nobody: {list(roles)}"
    return bound


@pytest.mark.parametrize("ha", [False, True])
def test_cluster_wide_operator(chart: helm_python.Chart, ha: bool) -> None:
    values: dict[str, Any] = {"operator": {"ha": {"enabled": ha}}}
    bound = bound_roles(render(chart, values))
    expected = expand(NAMESPACED, DISCOVERY, CLUSTER_PEERING if ha else {})
    assert bound == {("ClusterRole", None): expected}


@pytest.mark.parametrize("ha", [False, True])
def test_namespaced_operator(chart: helm_python.Chart, ha: bool) -> None:
    values = {"operator": {"watchNamespaces": ["team-a", "team-b"], "ha": {"enabled": ha}}}
    bound = bound_roles(render(chart, values))
    namespaced = expand(NAMESPACED, NAMESPACED_PEERING if ha else {})
    assert bound == {
        ("ClusterRole", None): expand(DISCOVERY, NAMESPACE_DISCOVERY),
        ("Role", "team-a"): namespaced,
        ("Role", "team-b"): namespaced,
    }


def test_the_check_catches_an_extra_grant(chart: helm_python.Chart) -> None:
    objects = render(chart)
    role = one(objects, "ClusterRole")
    role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    assert bound_roles(objects)[("ClusterRole", None)] != expand(NAMESPACED, DISCOVERY)
    role["rules"].append({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})
    with pytest.raises(AssertionError, match="wildcard"):
        bound_roles(objects)


def test_learners_and_workers_get_no_api_rights(chart: helm_python.Chart) -> None:
    objects = render(chart, values_file("namespaced-ha.yaml"))
    accounts = [a for a in of_kind(objects, "ServiceAccount")
                if a["metadata"]["name"] == "ma2ml-workload"]
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)
    subjects = [s["name"] for b in of_kind(objects, "RoleBinding")
                + of_kind(objects, "ClusterRoleBinding") for s in b["subjects"]]
    assert "ma2ml-workload" not in subjects
    database = one(objects, "StatefulSet")["spec"]["template"]["spec"]
    assert database["automountServiceAccountToken"] is False


def test_rbac_can_be_left_to_the_cluster_admin(chart: helm_python.Chart) -> None:
    objects = render(chart, {"rbac": {"create": False}})
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
