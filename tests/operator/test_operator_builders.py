"""The pure builders: objects a real API server would accept, without any server.

Every built object is also checked against the Kubernetes 1.33 OpenAPI schema
(``kubernetes-validate``, strict: unknown fields are errors).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ma2ml.operator import builders
from ma2ml.spec import PipelineSearch, parse_spec

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples/fashion-mnist.yaml").read_text())
OWNER = {"name": "fmnist", "uid": "1b4e28ba-2fa1-11d2-883f-0016d3cca427"}


def search(**spec: Any) -> PipelineSearch:
    document = copy.deepcopy(EXAMPLE)
    document["metadata"] = {"name": "fmnist", "namespace": "research"}
    document["spec"].update(spec)
    return parse_spec(document)


GPU = search(
    worker={"resources": {"limits": {"nvidia.com/gpu": 1}, "requests": {"cpu": "4"}},
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "imagenet"}}],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            "env": [{"name": "NCCL_DEBUG", "value": "INFO"}],
            "serviceAccountName": "trainer"},
    database={"secretName": "db", "secretKey": "dsn"},
    budget={"parallelism": 4})


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, "1.33", strict=True)


def test_worker_deployment_carries_the_pod_pieces_of_the_spec() -> None:
    obj = builders.build_worker_deployment(GPU, 4, owner=builders.owner_reference(OWNER))
    validate(obj)
    assert obj["metadata"]["name"] == "fmnist-worker"
    assert obj["metadata"]["namespace"] == "research"
    assert obj["spec"]["replicas"] == 4
    assert obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    pod = obj["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "4"}}
    assert container["command"] == ["ma2ml"]
    assert container["args"] == ["worker", "--search", "research/fmnist", "--metrics-port", "9090"]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    assert pod["serviceAccountName"] == "trainer"
    assert [v["name"] for v in pod["volumes"]] == ["data", "tmp"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MA2ML_DATABASE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "dsn"}}
    assert env["MA2ML_SEARCH"]["value"] == "research/fmnist"
    assert env["NCCL_DEBUG"]["value"] == "INFO"
    assert env["MA2ML_WORKER_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_learner_is_single_cpu_only_and_recreated() -> None:
    obj = builders.build_learner_deployment(GPU, 3)
    validate(obj)
    assert obj["spec"]["replicas"] == 1
    assert obj["spec"]["strategy"] == {"type": "Recreate"}
    pod = obj["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "nvidia.com/gpu" not in str(pod["containers"][0]["resources"])
    assert pod["containers"][0]["args"][:3] == ["learner", "--search", "research/fmnist"]


def test_children_are_labelled_selected_and_owned() -> None:
    owner = builders.owner_reference(OWNER)
    for obj, component in ((builders.build_learner_deployment(GPU, 1, owner=owner), "learner"),
                           (builders.build_worker_deployment(GPU, 2, owner=owner), "worker"),
                           (builders.build_spec_configmap(GPU, owner=owner), "spec")):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "ma2ml"
        assert labels["app.kubernetes.io/component"] == component
        assert labels["ma2ml.io/search"] == "fmnist"
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch", "name": "fmnist",
            "uid": OWNER["uid"], "controller": True, "blockOwnerDeletion": True}]
        if obj["kind"] == "Deployment":
            assert obj["spec"]["selector"]["matchLabels"] == labels
            assert obj["spec"]["template"]["metadata"]["labels"] == labels


def test_pods_run_as_non_root_without_privileges() -> None:
    built = builders.build_learner_deployment(GPU, 1), builders.build_worker_deployment(GPU, 1)
    for obj in built:
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        context = pod["containers"][0]["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}


def test_database_env_is_a_secret_reference_or_a_url_without_password() -> None:
    assert builders.database_env(GPU)["valueFrom"] == {
        "secretKeyRef": {"name": "db", "key": "dsn"}}
    plain = search(database={"url": "postgresql://spec-host/db"})
    assert builders.database_env(plain) == {"name": "MA2ML_DATABASE_URL",
                                            "value": "postgresql://spec-host/db"}
    with pytest.raises(builders.BuildError, match=r"^spec\.database\.url: carries a password"):
        builders.database_env(search(database={"url": "postgresql://u:pw@host/db"}))
    with pytest.raises(builders.BuildError, match=r"^spec\.database\.secretName: required"):
        builders.database_env(search())


def test_no_builder_writes_a_password() -> None:
    """Issue 12 item 13: pod specs reference the Secret; the ConfigMap's copy is masked."""
    leaky = search(database={"url": "postgresql+psycopg2://ma2ml:s3cret@db:5432/ma2ml"})
    with pytest.raises(builders.BuildError):
        builders.build_worker_deployment(leaky, 1)
    with pytest.raises(builders.BuildError):
        builders.build_learner_deployment(leaky, 1)
    configmap = builders.build_spec_configmap(leaky)
    validate(configmap)
    assert "s3cret" not in configmap["data"]["search.yaml"]
    stored = yaml.safe_load(configmap["data"]["search.yaml"])
    assert stored["spec"]["database"]["url"] == "postgresql+psycopg2://ma2ml:***@db:5432/ma2ml"
    in_query = search(database={"url": "postgresql://db/ma2ml?password=s3cret&sslmode=require"})
    assert "s3cret" not in builders.build_spec_configmap(in_query)["data"]["search.yaml"]


def test_pods_mount_no_api_token() -> None:
    for build in (builders.build_learner_deployment, builders.build_worker_deployment):
        obj = build(GPU, 1)
        assert obj["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_spec_configmap_round_trips_to_the_same_search() -> None:
    obj = builders.build_spec_configmap(GPU)
    validate(obj)
    assert parse_spec(yaml.safe_load(obj["data"]["search.yaml"])) == GPU


def test_template_hash_changes_with_the_template_only() -> None:
    def template_hash(obj: dict[str, Any]) -> str:
        return obj["metadata"]["annotations"][builders.TEMPLATE_HASH]

    base = builders.build_worker_deployment(GPU, 2)
    assert template_hash(builders.build_worker_deployment(GPU, 7)) == template_hash(base)
    other_image = search(worker={"image": "registry.example/ma2ml:2"},
                         database={"secretName": "db"})
    assert template_hash(builders.build_worker_deployment(other_image, 2)) != template_hash(base)


def test_the_cluster_example_builds_valid_objects() -> None:
    example = Path(__file__).parents[2] / "examples/search.yaml"
    resource = parse_spec(yaml.safe_load(example.read_text()))
    owner = builders.owner_reference(OWNER)
    for obj in (builders.build_learner_deployment(resource, 1, owner=owner),
                builders.build_worker_deployment(resource, 8, owner=owner),
                builders.build_spec_configmap(resource, owner=owner)):
        validate(obj)
