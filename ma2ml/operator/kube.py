"""The only module that talks to the Kubernetes API (through the ``kubernetes`` client).

Objects go in and come out as plain dicts, the same shape the builders make;
responses are read raw (``_preload_content=False``) so nothing is lost in a
round trip through the client's model classes. Only the kinds the operator
owns are supported: Deployments and ConfigMaps, plus the status of a
PipelineSearch (written with optimistic concurrency).

``API_GRANTS`` is every API call made here, as RBAC rules: the chart grants
exactly these plus kopf's own needs (``handlers.KOPF_GRANTS``), and
``tests/deploy/test_rbac.py`` checks both directions, the calls against this
table (a recording API client) and the rendered roles against the tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kubernetes

from ma2ml.spec import API_GROUP, API_VERSION, PLURAL

Obj = dict[str, Any]
#: Answers to a conditional write whose object changed (or vanished) meanwhile.
_CONFLICTS = (404, 409, 422)


@dataclass(frozen=True)
class Grant:
    """One RBAC rule: ``verbs`` on ``resource`` of API ``group`` ("" is the core group)."""

    group: str
    resource: str
    verbs: tuple[str, ...]
    #: Who needs it and for what (the chart's comment on the rule says the same).
    why: str


#: Every call of ``Kube``, in each namespace the operator serves. Nothing lists,
#: watches, updates or deletes: children are found by name and deleted by the
#: garbage collector through their owner reference.
#: The children: a cluster-wide operator gets these only in the namespaces where
#: searches run (RBAC cannot restrict create to objects with the operator's labels).
CHILD_GRANTS = (
    Grant("apps", "deployments", ("get", "create", "patch"),
          "learner and worker Deployments: look, create, roll the template, scale"),
    Grant("", "configmaps", ("get", "create", "patch"), "the NAME-spec ConfigMap"),
)
#: The searches themselves, wherever they are.
SEARCH_GRANTS = (
    Grant(API_GROUP, PLURAL, ("get",), "re-read a search before writing its status"),
    Grant(API_GROUP, f"{PLURAL}/status", ("patch",), "write the status (JSON patch with a test)"),
)
API_GRANTS = (*CHILD_GRANTS, *SEARCH_GRANTS)
#: Not a call, but what the API server asks of the calls above: creating a child
#: whose owner reference sets blockOwnerDeletion needs update on the owner's
#: finalizers where the OwnerReferencesPermissionEnforcement admission plugin is on.
ADMISSION_GRANTS = (
    Grant(API_GROUP, f"{PLURAL}/finalizers", ("update",),
          "children own-referenced with blockOwnerDeletion"),
)


class Kube:
    """Get, create, patch and scale the operator's children."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        apps = kubernetes.client.AppsV1Api(api_client)
        core = kubernetes.client.CoreV1Api(api_client)
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._calls: dict[str, dict[str, Callable[..., Any]]] = {
            "Deployment": {"read": apps.read_namespaced_deployment,
                           "create": apps.create_namespaced_deployment,
                           "patch": apps.patch_namespaced_deployment},
            "ConfigMap": {"read": core.read_namespaced_config_map,
                          "create": core.create_namespaced_config_map,
                          "patch": core.patch_namespaced_config_map},
        }

    @classmethod
    def from_environment(cls) -> Kube:
        """In a pod: the service account; elsewhere: ``$KUBECONFIG`` or ``~/.kube/config``."""
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        return cls(kubernetes.client.ApiClient())

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The object, or None when it does not exist."""
        try:
            response = self._calls[kind]["read"](name, namespace, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _body(response)

    def ensure(self, obj: Obj) -> tuple[Obj, bool]:
        """``(object, created)``: look first, create only what is missing."""
        kind, meta = obj["kind"], obj["metadata"]
        existing = self.get(kind, meta["namespace"], meta["name"])
        if existing is not None:
            return existing, False
        try:
            response = self._calls[kind]["create"](meta["namespace"], obj, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            # Created meanwhile by a handler of the same search (timer vs. change handler).
            found = self.get(kind, meta["namespace"], meta["name"])
            if found is None:
                raise
            return found, False
        return _body(response), True

    def patch(self, kind: str, namespace: str, name: str, patch: Obj | list[Obj]) -> Obj:
        """A strategic-merge patch (dict) or a JSON patch (list of operations)."""
        response = self._calls[kind]["patch"](name, namespace, patch, _preload_content=False)
        return _body(response)

    def scale(self, deployment: Obj, replicas: int) -> bool:
        """Set a Deployment's replicas; False when they were already right."""
        if deployment.get("spec", {}).get("replicas") == replicas:
            return False
        meta = deployment["metadata"]
        self.patch("Deployment", meta["namespace"], meta["name"], {"spec": {"replicas": replicas}})
        return True

    def get_search(self, namespace: str, name: str) -> Obj | None:
        """A PipelineSearch as stored now, or None when it is gone."""
        try:
            response = self._custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _body(response)

    def replace_status(self, namespace: str, name: str, resource_version: str,
                       status: Obj) -> bool:
        """Replace a PipelineSearch's status if it is still at ``resource_version``.

        False when the object changed (or went) meanwhile: the caller's view is
        stale, and whatever it derived from it (Events) must not be published.
        """
        ops: list[Obj] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/status", "value": status}]
        try:
            self._custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, namespace, PLURAL, name, ops,
                _content_type="application/json-patch+json", _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status in _CONFLICTS:
                return False
            raise
        return True


def _body(response: Any) -> Obj:
    body: Obj = json.loads(response.data)
    return body
