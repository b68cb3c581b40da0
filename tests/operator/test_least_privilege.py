"""Issue 25 item 15: what a PipelineSearch author could still get through its pods.

Before: a plaintext database password in ``spec.worker.env`` (in the worker
Deployment and the ``NAME-spec`` ConfigMap, shadowing the Secret), any Secret
through ``secretKeyRef`` or a ``secret`` volume, a projected service-account
token, the PostgreSQL data volume, and any image. Now each is refused with a
line naming the field and the chart value that would allow it, and a search
naming no image gets the operator's own. Pure tests of ``builders.resolve``
and ``OperatorConfig``; ``test_policy.py`` runs the real operator on some of
these cases against the emulated API server.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from ma2ml.operator import builders
from ma2ml.operator.config import ConfigError, OperatorConfig, SecretRef, WorkloadPolicy
from ma2ml.operator.policy import credential_name, value_has_password
from ma2ml.spec import DEFAULT_IMAGE, PipelineSearch, parse_spec

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples/fashion-mnist.yaml").read_text())
DB_URL = "postgresql+psycopg2://ma2ml@db:5432/ma2ml"

#: What the chart gives an operator by default, with one extra Secret and claim allowed.
POLICY = WorkloadPolicy(database_secret=SecretRef("ma2ml-database", "url"),
                        default_service_account="ma2ml-workload",
                        default_image="registry.example/ma2ml:0.2",
                        allowed_secrets=frozenset({"hf-token"}),
                        volume_claims=frozenset({"datasets"}))
IMAGE = {"image": "registry.example/ma2ml:0.2"}


def document(**spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["metadata"] = {"name": "s", "namespace": "lab"}
    body["spec"]["worker"] = dict(IMAGE)
    body["spec"].update(spec)
    return body


def search(**spec: Any) -> PipelineSearch:
    return parse_spec(document(**spec))

DATA = {"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}


def lines(policy: WorkloadPolicy = POLICY, **worker: Any) -> list[str]:
    try:
        builders.resolve(search(worker={**IMAGE, **worker}), policy)
    except builders.BuildError as error:
        return error.lines
    return []


# -- env ------------------------------------------------------------------------------


def test_the_database_url_cannot_be_shadowed_or_given_in_plain_env() -> None:
    [line] = lines(env=[{"name": "MA2ML_DATABASE_URL",
                         "value": "postgresql://ma2ml:s3cret@db/ma2ml"}])
    assert line.startswith("spec.worker.env[0].name: MA2ML_DATABASE_URL is set by the "
                           "operator")
    [line] = lines(env=[{"name": "OMP_NUM_THREADS", "value": "4"},
                        {"name": "STORE", "value": "postgresql://ma2ml:s3cret@db/ma2ml"}])
    assert line.startswith("spec.worker.env[1].value: STORE holds a credential in plain text")
    assert "s3cret" not in line and "policy.secrets" in line
    for name in ("MA2ML_SEARCH", "MA2ML_WORKER_NAME"):
        assert lines(env=[{"name": name, "value": "x"}])


@pytest.mark.parametrize("name", ["HF_TOKEN", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY",
                                  "WANDB_API_KEY", "DB_PASSWD", "GITHUB_TOKEN", "SSH_PASSPHRASE"])
def test_credential_names_need_a_secret(name: str) -> None:
    assert credential_name(name)
    [line] = lines(env=[{"name": name, "value": "abc123"}])
    assert line.startswith(f"spec.worker.env[0].value: {name} holds a credential")
    # The same variable from an allowed Secret is fine.
    assert lines(env=[{"name": name, "valueFrom": {"secretKeyRef": {"name": "hf-token",
                                                                     "key": "token"}}}]) == []


@pytest.mark.parametrize("entry", [
    {"name": "TOKENIZERS_PARALLELISM", "value": "false"},
    {"name": "DATA_URL", "value": "https://data.example/cifar10.tar"},
    {"name": "PYTHONPATH", "value": "/opt/code"},
    {"name": "PASSWORD_POLICY_DOC", "value": ""},  # empty: nothing to leak
    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    {"name": "SETTINGS", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
])
def test_ordinary_env_is_left_alone(entry: dict[str, Any]) -> None:
    assert lines(env=[entry]) == []


def test_password_values_are_found_in_urls_and_keywords() -> None:
    assert value_has_password("redis://:pw@cache:6379/0")
    assert value_has_password("host=db user=u password=pw dbname=x")
    assert not value_has_password("https://user@host/path")
    assert not value_has_password("see https://example.com/a:b@c")  # '/' before ':' and '@'


def test_secret_key_refs_come_from_the_allow_list() -> None:
    ref = {"name": "TOKEN_FILE", "valueFrom": {"secretKeyRef": {"name": "ma2ml-operator-token",
                                                                 "key": "token"}}}
    [line] = lines(env=[ref])
    assert line == ("spec.worker.env[0].valueFrom.secretKeyRef.name: Secret "
                    "'ma2ml-operator-token' is not allowed by the operator's policy (allowed: "
                    "hf-token, ma2ml-database; chart value policy.secrets)")
    # The pods' own database Secret may always be referenced.
    own = {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "ma2ml-database", "key": "url"}}}
    assert lines(env=[own]) == []


# -- volumes ----------------------------------------------------------------------------


def test_secret_and_projected_volumes() -> None:
    [line] = lines(volumes=[DATA, {"name": "s", "secret": {"secretName": "ma2ml-postgresql"}}])
    assert line.startswith("spec.worker.volumes[1].secret.secretName: Secret "
                           "'ma2ml-postgresql' is not allowed")
    assert lines(volumes=[{"name": "s", "secret": {"secretName": "hf-token"}}]) == []
    token = {"name": "api", "projected": {"sources": [
        {"configMap": {"name": "cfg"}},
        {"serviceAccountToken": {"path": "token", "audience": "https://kubernetes.default"}},
        {"secret": {"name": "other"}}]}}
    assert lines(volumes=[token]) == [
        "spec.worker.volumes[0].projected.sources[1].serviceAccountToken: learner and worker "
        "pods get no Kubernetes API token (they talk to the database only)",
        "spec.worker.volumes[0].projected.sources[2].secret.name: Secret 'other' is not "
        "allowed by the operator's policy (allowed: hf-token, ma2ml-database; chart value "
        "policy.secrets)"]
    fine = {"name": "info", "projected": {"sources": [
        {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {
            "fieldPath": "metadata.labels"}}]}}, {"secret": {"name": "hf-token"}}]}}
    assert lines(volumes=[fine]) == []


def test_only_listed_claims_and_never_the_database_volume() -> None:
    database = {"name": "pg", "persistentVolumeClaim": {"claimName": "data-ma2ml-postgresql-0"}}
    [line] = lines(volumes=[DATA, database])
    assert line == ("spec.worker.volumes[1].persistentVolumeClaim.claimName: "
                    "'data-ma2ml-postgresql-0' is not allowed by the operator's policy "
                    "(allowed: datasets; chart value policy.persistentVolumeClaims)")
    assert lines(volumes=[DATA, {"name": "shm", "emptyDir": {"medium": "Memory"}}]) == []


def test_volume_types_outside_the_list() -> None:
    nfs = {"name": "n", "nfs": {"server": "nas", "path": "/data"}}
    [line] = lines(volumes=[nfs])
    assert line.startswith("spec.worker.volumes[0].nfs: volume type 'nfs' is not allowed")
    assert "policy.volumeTypes" in line
    more = dataclasses.replace(POLICY, volume_types=POLICY.volume_types | {"nfs"})
    assert lines(more, volumes=[nfs]) == []
    csi = {"name": "c", "csi": {"driver": "secrets-store.csi.k8s.io"}}
    assert lines(volumes=[csi])[0].startswith("spec.worker.volumes[0].csi: volume type")


# -- image, database Secret, namespace ------------------------------------------------------


def test_a_search_naming_no_image_gets_the_operators_own() -> None:
    body = document()
    del body["spec"]["worker"]["image"]
    resolved = builders.resolve(parse_spec(body), POLICY)
    assert resolved.spec.worker.image == "registry.example/ma2ml:0.2"
    pod = builders.build_worker_deployment(resolved, 1)["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/ma2ml:0.2"
    stored = yaml.safe_load(builders.build_spec_configmap(resolved)["data"]["search.yaml"])
    assert stored["spec"]["worker"]["image"] == "registry.example/ma2ml:0.2"
    # Other tags of the operator's repository are fine; other images are not.
    assert lines(image="registry.example/ma2ml:0.3") == []
    [line] = lines(image="docker.io/library/busybox:1")
    assert line == ("spec.worker.image: 'docker.io/library/busybox:1' is not under an allowed "
                    "image prefix (registry.example/ma2ml; chart value policy.imagePrefixes)")
    assert lines(image=DEFAULT_IMAGE)  # not the chart's image


def test_the_database_secret_comes_from_the_allow_list() -> None:
    with pytest.raises(builders.BuildError) as caught:
        builders.resolve(search(worker=IMAGE, database={"secretName": "ma2ml-postgresql"}),
                         POLICY)
    assert caught.value.lines == [
        "spec.database.secretName: Secret 'ma2ml-postgresql' is not allowed by the operator's "
        "policy (allowed: hf-token, ma2ml-database; chart value policy.secrets)"]


def test_searches_run_in_the_listed_namespaces_only() -> None:
    policy = dataclasses.replace(POLICY, namespaces=frozenset({"ml", "ma2ml-system"}))
    [line] = lines(policy)  # document() puts the search in namespace "lab"
    assert line == ("metadata.namespace: 'lab' is not a namespace this operator runs searches "
                    "in (allowed: ma2ml-system, ml; chart values operator.watchNamespaces or "
                    "workloads.namespaces)")
    assert lines(dataclasses.replace(policy, namespaces=frozenset({"lab"}))) == []


# -- settings ------------------------------------------------------------------------------


def test_the_new_settings_come_from_the_environment() -> None:
    policy = OperatorConfig.from_env({
        "MA2ML_DATABASE_URL": DB_URL, "MA2ML_DEFAULT_IMAGE": "registry.example/ma2ml:0.2",
        "MA2ML_ALLOWED_SECRETS": "hf-token, wandb", "MA2ML_ALLOWED_VOLUME_CLAIMS": "datasets",
        "MA2ML_ALLOWED_VOLUME_TYPES": "persistentVolumeClaim,emptyDir,nfs",
        "MA2ML_WORKLOAD_NAMESPACES": "ml,ma2ml-system"}).workloads
    assert policy.default_image == "registry.example/ma2ml:0.2"
    assert policy.image_repositories == ("registry.example/ma2ml",)
    assert policy.allowed_secrets == {"hf-token", "wandb"}
    assert policy.volume_claims == {"datasets"}
    assert policy.volume_types == {"persistentVolumeClaim", "emptyDir", "nfs"}
    assert policy.namespaces == {"ml", "ma2ml-system"}
    strict = OperatorConfig.from_env({"MA2ML_DATABASE_URL": DB_URL}).workloads
    assert strict.default_image == DEFAULT_IMAGE and strict.allowed_secrets == frozenset()
    assert strict.volume_claims == frozenset() and "nfs" not in strict.volume_types
    with pytest.raises(ConfigError, match="^MA2ML_ALLOWED_VOLUME_TYPES: hostPath is allowed by"):
        OperatorConfig.from_env({"MA2ML_DATABASE_URL": DB_URL,
                                 "MA2ML_ALLOWED_VOLUME_TYPES": "hostPath"})
