"""Least privilege: the operator is granted exactly what its code and kopf call.

The expected rules are not written here. They are the tables next to the
code that makes the calls: ``kube.API_GRANTS`` (every call of ``Kube``, checked
below against a recording API client, so a new call fails until the table
and the chart grant it) plus ``kube.ADMISSION_GRANTS`` and kopf's own needs
(``handlers.KOPF_GRANTS`` and the peering tables, from kopf's source). The
rendered roles must equal them: any other grant, a wildcard, or a binding to
another account fails, and so does a missing grant.
"""

from __future__ import annotations

import inspect
import itertools
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import helm_python
import kubernetes
import pytest

from ma2ml.operator import handlers
from ma2ml.operator.kube import ADMISSION_GRANTS, API_GRANTS, CHILD_GRANTS, Grant, Kube

from .helpers import NAMESPACE, Obj, of_kind, one, render, values_file

Grants = set[tuple[str, str, str]]
#: In every namespace the operator serves: what our code and kopf call there.
SERVED = (*API_GRANTS, *ADMISSION_GRANTS, *handlers.KOPF_GRANTS)


def expand(grants: Iterable[Grant]) -> Grants:
    return {(g.group, g.resource, verb) for g in grants for verb in g.verbs}


# -- the table is what Kube calls ---------------------------------------------------------


class RecordingApi(kubernetes.client.ApiClient):
    """An API client that answers from a dict of objects and records each request
    as the (apiGroup, resource, verb) triple RBAC authorises it by."""

    def __init__(self) -> None:
        super().__init__(kubernetes.client.Configuration())
        self.objects: dict[str, Obj] = {}
        self.conflicts: set[str] = set()  # paths whose next write answers 409
        self.created_meanwhile: dict[str, Obj] = {}  # ...after another client created this
        self.calls: Grants = set()

    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> Any:
        parts = urlsplit(url)
        path = parts.path
        self.calls.add(authorised_as(method, path, parse_qs(parts.query)))
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.created_meanwhile:
                self.objects[path] = self.created_meanwhile.pop(path)
                self.conflicts.add(path)
        if path in self.conflicts:
            self.conflicts.discard(path)
            raise kubernetes.client.ApiException(status=409, reason="Conflict")
        if method == "POST":
            self.objects[path] = body
        found = self.objects.get(path.removesuffix("/status"))
        if found is None:
            raise kubernetes.client.ApiException(status=404, reason="Not Found")
        return Answer(found)


class Answer:
    """The part of a raw response (``_preload_content=False``) that ``Kube`` reads."""

    status = 200

    def __init__(self, obj: Obj) -> None:
        self.response = self
        self.data = json.dumps(obj).encode()


def authorised_as(method: str, path: str, query: dict[str, list[str]]) -> tuple[str, str, str]:
    """The RBAC triple of a request (Kubernetes docs, "Determine the request verb")."""
    match = re.fullmatch(r"/(?:api/v1|apis/([^/]+)/[^/]+)/namespaces/[^/]+/([^/]+)"
                         r"(?:/([^/]+)(?:/([^/]+))?)?", path)
    assert match, f"not a namespaced resource path: {path}"
    group, resource, name, subresource = match.groups()
    if subresource:
        resource = f"{resource}/{subresource}"
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method)
    if verb is None:
        verb = "get" if name else ("watch" if query.get("watch") == ["true"] else "list")
    return group or "", resource, verb


def deployment(name: str, replicas: int = 1) -> Obj:
    labels = {"app": name}
    template = {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "registry.example/c:1"}]}}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "lab"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": template}}


def configmap(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "data": {},
            "metadata": {"name": name, "namespace": "lab"}}


def test_kube_calls_exactly_its_table() -> None:
    """Every public method of Kube, on each of its paths (found, missing, conflict)."""
    api = RecordingApi()
    kube = Kube(api)
    exercised = {"get", "ensure", "patch", "scale", "get_search", "replace_status"}
    public = {n for n, _ in inspect.getmembers(Kube, inspect.isfunction) if n[0] != "_"}
    assert public == exercised, "a new Kube method: exercise it here and grant its calls"

    for obj in (deployment("s-worker"), configmap("s-spec")):
        kind = obj["kind"]
        assert kube.get(kind, "lab", obj["metadata"]["name"]) is None
        assert kube.ensure(obj)[1] is True
        assert kube.ensure(obj)[1] is False
        kube.patch(kind, "lab", obj["metadata"]["name"], {"metadata": {"labels": {"a": "b"}}})
    theirs = deployment("t-worker", replicas=2)
    api.created_meanwhile["/apis/apps/v1/namespaces/lab/deployments/t-worker"] = theirs
    assert kube.ensure(deployment("t-worker")) == (theirs, False)
    assert kube.scale(deployment("s-worker"), 3) is True
    assert kube.scale(deployment("s-worker", replicas=3), 3) is False

    search_path = "/apis/ma2ml.io/v1alpha1/namespaces/lab/pipelinesearches/s"
    assert kube.get_search("lab", "s") is None
    api.objects[search_path] = {"metadata": {"name": "s", "resourceVersion": "7"}}
    assert kube.get_search("lab", "s") is not None
    assert kube.replace_status("lab", "s", "7", {"phase": "Running"}) is True
    api.conflicts.add(f"{search_path}/status")
    assert kube.replace_status("lab", "s", "7", {"phase": "Running"}) is False

    assert api.calls == expand(API_GRANTS)


def test_the_recorder_tells_verbs_apart() -> None:
    """The triples above are only as good as this mapping."""
    deployments = "/apis/apps/v1/namespaces/lab/deployments"
    assert authorised_as("GET", f"{deployments}/x", {}) == ("apps", "deployments", "get")
    assert authorised_as("GET", deployments, {}) == ("apps", "deployments", "list")
    assert authorised_as("GET", deployments, {"watch": ["true"]}) == (
        "apps", "deployments", "watch")
    assert authorised_as("DELETE", "/api/v1/namespaces/lab/configmaps/x", {}) == (
        "", "configmaps", "delete")
    assert authorised_as("PATCH", "/apis/ma2ml.io/v1alpha1/namespaces/lab/pipelinesearches/s"
                         "/status", {}) == ("ma2ml.io", "pipelinesearches/status", "patch")


# -- the chart grants exactly the tables ----------------------------------------------


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
    """Searches are watched everywhere, but Deployments and ConfigMaps are created and
    patched only in the namespaces where searches run (issue 25 item 15)."""
    values = {"operator": {"ha": {"enabled": ha}}, "workloads": {"namespaces": ["ml"]}}
    bound = bound_roles(render(chart, values))
    peering = handlers.KOPF_CLUSTER_PEERING_GRANTS if ha else ()
    children = expand(CHILD_GRANTS)
    assert bound == {("ClusterRole", None): expand((*SERVED, *peering)) - children,
                     ("Role", NAMESPACE): children, ("Role", "ml"): children}
    assert not children & bound[("ClusterRole", None)]


@pytest.mark.parametrize("ha", [False, True])
def test_namespaced_operator_has_nothing_cluster_wide(chart: helm_python.Chart,
                                                      ha: bool) -> None:
    values = {"operator": {"watchNamespaces": ["team-a", "team-b"], "ha": {"enabled": ha}}}
    bound = bound_roles(render(chart, values))
    served = expand((*SERVED, *(handlers.KOPF_PEERING_GRANTS if ha else ())))
    assert bound == {("Role", "team-a"): served, ("Role", "team-b"): served}


def test_no_secret_no_list_of_children_no_delete() -> None:
    """What the tables leave out, said plainly (issue 12 item 11)."""
    everything = expand((*SERVED, *handlers.KOPF_PEERING_GRANTS,
                         *handlers.KOPF_CLUSTER_PEERING_GRANTS))
    assert not {t for t in everything if t[1] in ("secrets", "pods", "jobs")}
    assert not {t for t in everything if t[2] in ("delete", "deletecollection", "update")
                and t[1] != "pipelinesearches/finalizers"}
    children = {("apps", "deployments"), ("", "configmaps")}
    assert not {t for t in everything if t[:2] in children and t[2] in ("list", "watch")}


def test_the_check_catches_an_extra_grant(chart: helm_python.Chart) -> None:
    objects = render(chart)
    role = one(objects, "ClusterRole")
    role["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    assert bound_roles(objects)[("ClusterRole", None)] != expand(SERVED)
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
