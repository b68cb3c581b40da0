"""Pure builders: a validated PipelineSearch -> the Kubernetes objects it owns, as dicts.

Children of search ``NAME``: Deployment ``NAME-learner`` (one replica at most),
Deployment ``NAME-worker`` (``parallelism`` long-lived workers) and ConfigMap
``NAME-spec`` (the resolved spec, for people and tools). Every child carries the
same labels and an owner reference to the search, so ``kubectl get all -l
ma2ml.io/search=NAME`` finds them and deleting the search deletes them.
Names are deterministic: finding a child is a GET, and re-running a handler
cannot duplicate it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import yaml

from ma2ml.spec import API_GROUP, API_VERSION, KIND, PipelineSearch, spec_to_document

LEARNER = "learner"
WORKER = "worker"
METRICS_PORT = 9090
#: Any non-root uid works; a numeric one lets ``runAsNonRoot`` be checked for any image.
RUN_AS_USER = 10001
#: The learner fits critic and policies on the CPU: small, fixed requests.
LEARNER_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}
TEMPLATE_HASH = f"{API_GROUP}/template-hash"
SEARCH_LABEL = f"{API_GROUP}/search"


class BuildError(ValueError):
    """A search that cannot be turned into pods; the message starts with the field path."""


def child_name(search_name: str, component: str) -> str:
    """``NAME-learner``, ``NAME-worker`` or ``NAME-spec``."""
    return f"{search_name}-{component}"


def labels(search_name: str, component: str) -> dict[str, str]:
    """Labels of every child; the selector of a Deployment uses all of them."""
    return {
        "app.kubernetes.io/name": "ma2ml",
        "app.kubernetes.io/instance": search_name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "ma2ml-operator",
        SEARCH_LABEL: search_name,
    }


def owner_reference(owner_meta: Mapping[str, Any]) -> dict[str, Any]:
    """A controller owner reference to the PipelineSearch (``metadata`` of its body)."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": owner_meta["name"],
        "uid": owner_meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def database_env(search: PipelineSearch, fallback_url: str | None) -> dict[str, Any]:
    """``MA2ML_DATABASE_URL`` for the pods: the Secret by reference, else a plain URL.

    Precedence: ``spec.database.secretName`` (the URL never appears in the pod
    spec), then ``spec.database.url``, then the operator's own URL.
    """
    database = search.spec.database
    if database.secret_name:
        ref = {"name": database.secret_name, "key": database.secret_key}
        return {"name": "MA2ML_DATABASE_URL", "valueFrom": {"secretKeyRef": ref}}
    url = database.url or fallback_url
    if not url:
        raise BuildError("spec.database.secretName: required when the operator itself has no "
                         "MA2ML_DATABASE_URL to hand to the pods")
    return {"name": "MA2ML_DATABASE_URL", "value": url}


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container(search: PipelineSearch, component: str, env: list[dict[str, Any]],
               resources: Mapping[str, Any], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    worker = search.spec.worker
    return {
        "name": component,
        "image": worker.image,
        "imagePullPolicy": worker.image_pull_policy,
        "command": ["ma2ml"],
        "args": [component, "--search", search.key, "--metrics-port", str(METRICS_PORT)],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "resources": _quantities(resources),
        "securityContext": _security_context(),
        "volumeMounts": mounts,
    }


def _quantities(resources: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    # Quantities are strings in the API ("1", "8Gi"); the spec also allows a bare 1.
    return {section: {name: str(value) for name, value in amounts.items()}
            for section, amounts in resources.items()}


def _base_env(search: PipelineSearch, fallback_url: str | None) -> list[dict[str, Any]]:
    return [database_env(search, fallback_url), {"name": "MA2ML_SEARCH", "value": search.key}]


def _pod_template(search: PipelineSearch, component: str, pod_spec: dict[str, Any]
                  ) -> dict[str, Any]:
    account = search.spec.worker.service_account_name
    spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                            "fsGroup": RUN_AS_USER},
        **({"serviceAccountName": account} if account else {}),
        **pod_spec,
    }
    return {"metadata": {"labels": labels(search.metadata.name, component)}, "spec": spec}


def _deployment(search: PipelineSearch, component: str, replicas: int,
                template: dict[str, Any], strategy: dict[str, Any],
                owner: Mapping[str, Any] | None) -> dict[str, Any]:
    name = search.metadata.name
    template_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": child_name(name, component),
            "namespace": search.metadata.namespace,
            "labels": labels(name, component),
            "annotations": {TEMPLATE_HASH: template_hash[:16]},
            **({"ownerReferences": [dict(owner)]} if owner else {}),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels(name, component)},
            "strategy": strategy,
            "template": template,
        },
    }


def build_learner_deployment(search: PipelineSearch, replicas: int, *,
                             fallback_url: str | None = None,
                             owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The learner: at most one replica, CPU only, no GPU node selection."""
    container = _container(search, LEARNER, _base_env(search, fallback_url),
                           LEARNER_RESOURCES, [{"name": "tmp", "mountPath": "/tmp"}])
    template = _pod_template(search, LEARNER, {
        "containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]})
    # Recreate: two learners at once would both propose trials and snapshot policies.
    return _deployment(search, LEARNER, min(replicas, 1), template, {"type": "Recreate"}, owner)


def build_worker_deployment(search: PipelineSearch, replicas: int, *,
                            fallback_url: str | None = None,
                            owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Long-lived workers (claim, train, report in a loop) with the spec's pod pieces."""
    worker = search.spec.worker
    env = [
        *_base_env(search, fallback_url),
        {"name": "MA2ML_WORKER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *worker.env,
    ]
    mounts = [*worker.volume_mounts, {"name": "tmp", "mountPath": "/tmp"}]
    pod_spec: dict[str, Any] = {
        "containers": [_container(search, WORKER, env, worker.resources, mounts)],
        "volumes": [*worker.volumes, {"name": "tmp", "emptyDir": {}}],
    }
    if worker.node_selector:
        pod_spec["nodeSelector"] = dict(worker.node_selector)
    if worker.tolerations:
        pod_spec["tolerations"] = list(worker.tolerations)
    template = _pod_template(search, WORKER, pod_spec)
    # maxSurge 0: an update never asks for one GPU more than parallelism.
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    return _deployment(search, WORKER, replicas, template, strategy, owner)


def build_spec_configmap(search: PipelineSearch, *,
                         owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The resolved spec (defaults filled) as ``search.yaml``; ``ma2ml run`` accepts it."""
    name = search.metadata.name
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": child_name(name, "spec"),
            "namespace": search.metadata.namespace,
            "labels": labels(name, "spec"),
            **({"ownerReferences": [dict(owner)]} if owner else {}),
        },
        "data": {"search.yaml": yaml.safe_dump(spec_to_document(search), sort_keys=False)},
    }
