"""Pure builders: a validated PipelineSearch -> the Kubernetes objects it owns, as dicts.

Children of search ``NAME``: Deployment ``NAME-learner`` (one replica at most),
Deployment ``NAME-worker`` (``parallelism`` long-lived workers) and ConfigMap
``NAME-spec`` (the resolved spec, for people and tools). Every child carries the
same labels and an owner reference to the search, so ``kubectl get all -l
ma2ml.io/search=NAME`` finds them and deleting the search deletes them.
Names are deterministic: finding a child is a GET, and re-running a handler
cannot duplicate it.

``resolve`` applies the operator's ``WorkloadPolicy`` to a search before anything
is built (``reconcile.validate`` calls it): it fills in the pods' image, database
Secret and ServiceAccount, and refuses whatever ``policy.problems`` finds (images,
Secrets, volumes, ServiceAccounts and namespaces outside the allow-lists, API
tokens, credentials in plain env, database URLs with a password). No builder ever
writes a password into a pod spec or a ConfigMap: pods get the URL from a
Secret by reference, and the ConfigMap's copy of the spec is masked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from ma2ml.operator import policy as workload_policy
from ma2ml.operator.config import WorkloadPolicy
from ma2ml.operator.policy import OPERATOR_ENV, PASSWORD_PARAMS, url_has_password
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
_DATABASE_ENV, _SEARCH_ENV, _WORKER_NAME_ENV = OPERATOR_ENV


class BuildError(ValueError):
    """A search that cannot be turned into pods; each line starts with the field path."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


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


def resolve(search: PipelineSearch, policy: WorkloadPolicy) -> PipelineSearch:
    """The search with the policy's defaults filled in; ``BuildError`` lists every violation.

    A search naming no image gets ``policy.default_image`` (the chart's own), one
    naming no ServiceAccount ``policy.default_service_account``, one naming no
    database ``policy.database_secret``. The result is what the operator builds,
    stores and shows in the ``NAME-spec`` ConfigMap.
    """
    worker, database = search.spec.worker, search.spec.database
    if "image" not in worker.model_fields_set:
        worker = worker.model_copy(update={"image": policy.default_image})
        search = search.model_copy(update={"spec": search.spec.model_copy(
            update={"worker": worker})})
    problems = workload_policy.problems(search, policy)
    secret = None
    if not database.secret_name and not database.url:
        if policy.database_secret is None:
            problems.append("spec.database.secretName: required: this operator has no "
                            "database Secret of its own to give the pods "
                            "(MA2ML_POD_DATABASE_SECRET is not set)")
        else:
            secret = policy.database_secret
    if problems:
        raise BuildError(problems)
    worker = worker.model_copy(update={
        "service_account_name": worker.service_account_name or policy.default_service_account})
    if secret is not None:
        database = database.model_copy(update={"secret_name": secret.name,
                                               "secret_key": secret.key})
    spec = search.spec.model_copy(update={"worker": worker, "database": database})
    return search.model_copy(update={"spec": spec})


def masked_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (an unparsable one entirely)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "***"
    if not url_has_password(url):
        return url
    secret_params = [k for k in parsed.query if k.lower() in PASSWORD_PARAMS]
    return parsed.difference_update_query(secret_params).render_as_string(hide_password=True)


def database_env(search: PipelineSearch) -> dict[str, Any]:
    """``MA2ML_DATABASE_URL`` for the pods of a resolved search.

    ``spec.database.secretName`` by reference (the URL never appears in the pod
    spec), else ``spec.database.url`` as a value, which ``resolve`` allows only
    without a password. A password is refused here too, whoever calls this.
    """
    database = search.spec.database
    if database.secret_name:
        ref = {"name": database.secret_name, "key": database.secret_key}
        return {"name": _DATABASE_ENV, "valueFrom": {"secretKeyRef": ref}}
    if not database.url:
        raise BuildError(["spec.database.secretName: required (the operator fills it in "
                          "from its policy: resolve the search first)"])
    problems = workload_policy.database_url_problems(database.url)
    if problems:
        raise BuildError(problems)
    return {"name": _DATABASE_ENV, "value": database.url}


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


def _base_env(search: PipelineSearch) -> list[dict[str, Any]]:
    return [database_env(search), {"name": _SEARCH_ENV, "value": search.key}]


def _pod_template(search: PipelineSearch, component: str, pod_spec: dict[str, Any]
                  ) -> dict[str, Any]:
    account = search.spec.worker.service_account_name
    spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                            "fsGroup": RUN_AS_USER},
        **({"serviceAccountName": account} if account else {}),
        # Learners and workers talk to the database only: whatever account they
        # run as, no API token is mounted into them.
        "automountServiceAccountToken": False,
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
                             owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The learner: at most one replica, CPU only, no GPU node selection.

    ``search`` is resolved (``resolve``): its database comes from a Secret reference.
    """
    container = _container(search, LEARNER, _base_env(search),
                           LEARNER_RESOURCES, [{"name": "tmp", "mountPath": "/tmp"}])
    template = _pod_template(search, LEARNER, {
        "containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]})
    # Recreate: two learners at once would both propose trials and snapshot policies.
    return _deployment(search, LEARNER, min(replicas, 1), template, {"type": "Recreate"}, owner)


def build_worker_deployment(search: PipelineSearch, replicas: int, *,
                            owner: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Long-lived workers (claim, train, report in a loop) with the spec's pod pieces.

    ``search`` is resolved (``resolve``): its database comes from a Secret reference.
    """
    worker = search.spec.worker
    env = [
        *_base_env(search),
        {"name": _WORKER_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
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
    """The resolved spec (defaults filled) as ``search.yaml``; ``ma2ml run`` accepts it.

    A ConfigMap is readable by anyone who may read the namespace's configuration,
    so a password in ``spec.database.url`` is masked (``resolve`` refuses one anyway).
    """
    name = search.metadata.name
    document = spec_to_document(search)
    database = document["spec"]["database"]
    if database.get("url"):
        database["url"] = masked_url(database["url"])
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": child_name(name, "spec"),
            "namespace": search.metadata.namespace,
            "labels": labels(name, "spec"),
            **({"ownerReferences": [dict(owner)]} if owner else {}),
        },
        "data": {"search.yaml": yaml.safe_dump(document, sort_keys=False)},
    }
