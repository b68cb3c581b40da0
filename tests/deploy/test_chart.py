"""The Helm chart rendered by real Helm (helm-python-sdk embeds Helm v4) and validated.

Every rendered object of a Kubernetes kind is validated with
kubernetes-validate (strict: unknown fields fail) for the oldest supported
and a current Kubernetes version. The kinds it has no schema for are
checked as well: kopf's peering objects against the CRD the chart ships,
and the Prometheus Operator objects against the minimal schemas in
``monitoring_schemas.py`` (the monitoring.coreos.com CRDs are not vendored
here; those schemas hold the fields the chart uses, which is what a typo
would break).
"""

from __future__ import annotations

import base64
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import pytest
import yaml

import ma2ml
from ma2ml.crd import crd_yaml
from ma2ml.operator.config import OperatorConfig, SecretRef, WorkloadPolicy
from ma2ml.spec import DEFAULT_IMAGE

from .helpers import (
    CHART_DIR,
    KUBERNETES_VERSIONS,
    NAMESPACE,
    ROOT,
    Obj,
    of_kind,
    one,
    render,
    values_file,
)
from .monitoring_schemas import MONITORING_SCHEMAS

VALUE_SETS = {
    "dashboard": values_file("dashboard.yaml"),
    "defaults": {},
    "external-monitoring": values_file("external-monitoring.yaml"),
    "external-url": values_file("external-url.yaml"),
    "namespaced-ha": values_file("namespaced-ha.yaml"),
}


def chart_crds() -> dict[str, Obj]:
    """CRDs of the chart's crds/ directory by name."""
    crds = {}
    for path in sorted((CHART_DIR / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            crds[doc["metadata"]["name"]] = doc
    return crds


def crd_schema(obj: Obj) -> dict[str, Any] | None:
    """The openAPIV3Schema of the chart's own CRD for ``obj``, if it ships one."""
    group = obj["apiVersion"].split("/")[0]
    for crd in chart_crds().values():
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == obj["kind"]:
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return None


def validate_object(obj: Obj, version: str) -> None:
    schema = MONITORING_SCHEMAS.get(obj["kind"]) or crd_schema(obj)
    if schema is not None:
        jsonschema.validate(obj, schema)
    else:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_objects_are_valid_kubernetes(chart: helm_python.Chart, name: str) -> None:
    objects = render(chart, VALUE_SETS[name])
    one(objects, "Deployment", "ma2ml-operator")
    for obj in objects:
        for version in KUBERNETES_VERSIONS:
            try:
                validate_object(obj, version)
            except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
                pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']} is invalid for "
                            f"Kubernetes {version}: {exc}")


def test_validation_rejects_a_broken_object(chart: helm_python.Chart) -> None:
    """The validators above are strict: a misspelt field is an error, not ignored."""
    deployment = one(render(chart), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(deployment, KUBERNETES_VERSIONS[-1])
    monitor = one(render(chart, VALUE_SETS["external-monitoring"]), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate_object(monitor, KUBERNETES_VERSIONS[-1])


@pytest.mark.parametrize("name", ["dashboard", "defaults", "external-monitoring",
                                  "namespaced-ha"])
def test_helm_lint_is_clean(name: str) -> None:
    report = helm_python.lint(CHART_DIR, VALUE_SETS[name], strict=True,
                              namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_chart_crd_is_the_generated_crd(chart: helm_python.Chart) -> None:
    """crds/pipelinesearch.yaml is a copy of `ma2ml crd`; refresh it with
    `ma2ml crd > helm/ma2ml/crds/pipelinesearch.yaml` after a spec change."""
    shipped = {c["name"]: c["data"] for c in chart.crds}
    assert shipped["crds/pipelinesearch.yaml"] == crd_yaml()
    assert (ROOT / "crds" / "pipelinesearch.yaml").read_text() == crd_yaml()
    crd = yaml.safe_load(crd_yaml())
    assert chart_crds()["pipelinesearches.ma2ml.io"] == crd
    for version in KUBERNETES_VERSIONS:
        for obj in chart_crds().values():
            kubernetes_validate.validate(obj, version, strict=True)


def test_image_and_versions_agree(chart: helm_python.Chart) -> None:
    """The chart's default image is the one the operator gives to searches by default."""
    assert chart.metadata["appVersion"] == ma2ml.__version__
    deployment = one(render(chart), "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == DEFAULT_IMAGE


def test_operator_deployment(chart: helm_python.Chart) -> None:
    deployment = one(render(chart), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:2] == ["operator", "--all-namespaces"]
    assert deployment["spec"]["strategy"]["type"] == "Recreate"  # never two kopf operators
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "healthz": 8081, "metrics": 9090}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    [url] = [e for e in container["env"] if e["name"] == "MA2ML_DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "ma2ml-database", "key": "url"}


def test_watched_namespaces_and_ha(chart: helm_python.Chart) -> None:
    objects = render(chart, VALUE_SETS["namespaced-ha"])
    deployment = one(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:5] == ["operator", "--namespace", "team-a", "--namespace", "team-b"]
    assert args[args.index("--peering") + 1] == "ma2ml"
    assert deployment["spec"]["replicas"] == 2
    peerings = of_kind(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert of_kind(objects, "ClusterKopfPeering") == []
    # The URL Secret and the API-less workload account exist where the searches run.
    secrets = [s["metadata"]["namespace"] for s in of_kind(objects, "Secret")
               if s["metadata"]["name"] == "ma2ml-database"]
    assert sorted(secrets) == sorted(["team-a", "team-b", NAMESPACE])
    accounts = [a for a in of_kind(objects, "ServiceAccount")
                if a["metadata"]["name"] == "ma2ml-workload"]
    assert sorted(a["metadata"]["namespace"] for a in accounts) == ["team-a", "team-b"]
    assert all(a["automountServiceAccountToken"] is False for a in accounts)


def test_in_cluster_postgresql(chart: helm_python.Chart) -> None:
    objects = render(chart)
    statefulset = one(objects, "StatefulSet")
    claim = statefulset["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    url_secret = one(objects, "Secret", "ma2ml-database")
    url = base64.b64decode(url_secret["data"]["url"]).decode()
    password = base64.b64decode(one(objects, "Secret", "ma2ml-postgresql")["data"]["password"])
    assert url == (f"postgresql+psycopg2://ma2ml:{password.decode()}"
                   f"@ma2ml-postgresql.{NAMESPACE}.svc:5432/ma2ml")
    assert len(password) == 32


def network_policy_namespaces(objects: list[Obj]) -> list[str]:
    """Namespaces whose ma2ml pods the database NetworkPolicy admits."""
    policy = one(objects, "NetworkPolicy")
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    [expression] = peer["namespaceSelector"]["matchExpressions"]
    assert (expression["key"], expression["operator"]) == ("kubernetes.io/metadata.name", "In")
    return sorted(expression["values"])


def test_database_network_policy_admits_only_ma2ml_pods(chart: helm_python.Chart) -> None:
    objects = render(chart, VALUE_SETS["namespaced-ha"])
    policy = one(objects, "NetworkPolicy")
    database_pod = one(objects, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= database_pod.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    names = {e["key"]: e["values"] for e in peer["podSelector"]["matchExpressions"]}
    assert names == {"app.kubernetes.io/name": ["ma2ml"],
                     "app.kubernetes.io/component": ["operator", "learner", "worker"]}
    assert network_policy_namespaces(objects) == sorted(["team-a", "team-b", NAMESPACE])
    operator_pod = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert operator_pod["app.kubernetes.io/component"] == "operator"


def test_cluster_wide_database_admits_the_listed_namespaces_only(
        chart: helm_python.Chart) -> None:
    """Issue 12 item 14: a cluster-wide operator no longer opens the database to ma2ml-labelled
    pods of every namespace; only the release's and workloads.namespaces."""
    assert network_policy_namespaces(render(chart)) == [NAMESPACE]
    objects = render(chart, {"workloads": {"namespaces": ["ml-a", "ml-b"]}})
    assert network_policy_namespaces(objects) == sorted(["ml-a", "ml-b", NAMESPACE])
    # The Secret and the token-less account are where those pods run.
    for kind, name in (("Secret", "ma2ml-database"), ("ServiceAccount", "ma2ml-workload")):
        found = [o["metadata"]["namespace"] for o in of_kind(objects, kind)
                 if o["metadata"]["name"] == name]
        assert sorted(found) == sorted(["ml-a", "ml-b", NAMESPACE]), kind


def operator_env(objects: list[Obj]) -> dict[str, str]:
    """The operator container's plain env values (the URL comes from a Secret)."""
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_policy_values_reach_the_operator_config(chart: helm_python.Chart) -> None:
    """Values -> the operator's MA2ML_* environment -> OperatorConfig (issue 12 item 12)."""
    url = {"MA2ML_DATABASE_URL": "postgresql://ma2ml@db/ma2ml"}
    default = OperatorConfig.from_env({**operator_env(render(chart)), **url}).workloads
    # Least privilege by default (issue 25 item 15): the chart's own image only, no
    # Secret but the database's, the datasets claim, the safe volume types, and searches
    # in the release namespace only.
    assert default == WorkloadPolicy(database_secret=SecretRef("ma2ml-database", "url"),
                                     default_service_account="ma2ml-workload",
                                     default_image=DEFAULT_IMAGE,
                                     volume_claims=frozenset({"datasets"}),
                                     namespaces=frozenset({NAMESPACE}))
    assert default.image_repositories == ("ghcr.io/ma2ml/ma2ml",)
    values = {"policy": {"allowHostPath": True, "serviceAccounts": ["trainer", "loader"],
                         "imagePrefixes": ["registry.example/ml", "ghcr.io/ma2ml/"],
                         "secrets": ["hf-token"], "persistentVolumeClaims": ["imagenet"],
                         "volumeTypes": ["persistentVolumeClaim", "nfs"]},
              "image": {"repository": "registry.example/ml/ma2ml", "tag": "0.2"},
              "workloads": {"serviceAccount": {"name": "ml-pods"}, "namespaces": ["ml"]},
              "database": {"secretName": "team-db", "secretKey": "dsn"}}
    policy = OperatorConfig.from_env({**operator_env(render(chart, values)), **url}).workloads
    assert policy == WorkloadPolicy(
        database_secret=SecretRef("team-db", "dsn"), default_service_account="ml-pods",
        allowed_service_accounts=frozenset({"trainer", "loader"}),
        image_prefixes=("registry.example/ml", "ghcr.io/ma2ml/"), allow_host_path=True,
        default_image="registry.example/ml/ma2ml:0.2", allowed_secrets=frozenset({"hf-token"}),
        volume_claims=frozenset({"imagenet"}),
        volume_types=frozenset({"persistentVolumeClaim", "nfs"}),
        namespaces=frozenset({NAMESPACE, "ml"}))


def test_the_database_volume_can_never_be_allowed(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmError, match="policy.persistentVolumeClaims: "
                       "data-ma2ml-postgresql-0 is the database's own volume"):
        render(chart, {"policy": {"persistentVolumeClaims": ["datasets",
                                                            "data-ma2ml-postgresql-0"]}})
    with pytest.raises(helm_python.HelmError, match="at '/policy/volumeTypes/0'"):
        render(chart, {"policy": {"volumeTypes": ["hostPath"]}})


def test_external_database_secret(chart: helm_python.Chart) -> None:
    objects = render(chart, VALUE_SETS["external-monitoring"])
    assert of_kind(objects, "StatefulSet") == [] and of_kind(objects, "NetworkPolicy") == []
    assert of_kind(objects, "Secret") == []  # the platform team's Secret is used as is
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    [url] = [e for e in container["env"] if e["name"] == "MA2ML_DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"]["name"] == "ma2ml-external-db"
    dashboard = one(objects, "ConfigMap")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
