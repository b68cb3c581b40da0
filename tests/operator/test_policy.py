"""The operator's settings and workload policy (issue 11 "Global state", issue 12 items 12-13).

* Settings come from the environment at start-up, validated; without
  ``MA2ML_DATABASE_URL`` the operator refuses to start (no SQLite fallback).
* A PipelineSearch gets no hostPath volume, no ServiceAccount outside the
  allowlist and no image outside the prefixes; a violation is ``InvalidSpec``
  naming the field, and no child is created.
* No password reaches a pod spec or a ConfigMap.

The pure parts are tested on ``builders.resolve`` and ``reconcile.validate``;
the last tests run the real operator against kmock's emulator (conftest),
serving the ``default`` namespace only, as the chart's least-privilege mode
does: it starts without listing namespaces or CRDs (kmock could not even
answer a namespace listing).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import OPERATOR_POLICY_ENV, KubeClient, OperatorProcess, wait_for

from ma2ml.operator import builders
from ma2ml.operator.config import ConfigError, OperatorConfig, SecretRef, WorkloadPolicy
from ma2ml.operator.reconcile import reconcile, validate
from ma2ml.spec import PipelineSearch, SpecError, parse_spec
from ma2ml.store import Store

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples/fashion-mnist.yaml").read_text())
DB_URL = "postgresql+psycopg2://ma2ml@db:5432/ma2ml"
POLICY = WorkloadPolicy(
    database_secret=SecretRef("ma2ml-database", "url"),
    default_service_account="ma2ml-workload",
    allowed_service_accounts=frozenset({"trainer"}),
    image_prefixes=("registry.example/team", "ghcr.io/ma2ml/ma2ml:"),
    allowed_secrets=frozenset({"team-db", "hf-token"}),
    volume_claims=frozenset({"datasets"}),
)
HOST_PATH = {"name": "node", "hostPath": {"path": "/var/run"}}
CLAIM = {"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}


def document(name: str = "fmnist", **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    body["metadata"] = {"name": name, "namespace": "lab"}
    body["spec"]["worker"] = {"image": "registry.example/team/ma2ml:1"}
    body["spec"].update(spec)
    return body


def search(**spec: Any) -> PipelineSearch:
    return parse_spec(document(**spec))


def problems(policy: WorkloadPolicy = POLICY, **spec: Any) -> list[str]:
    with pytest.raises(builders.BuildError) as caught:
        builders.resolve(search(**spec), policy)
    return caught.value.lines


# -- settings -------------------------------------------------------------------------


def test_settings_come_from_the_environment_the_chart_sets() -> None:
    config = OperatorConfig.from_env({
        "MA2ML_DATABASE_URL": DB_URL, "MA2ML_STATUS_INTERVAL": "2.5",
        "MA2ML_POD_DATABASE_SECRET": "ma2ml-database/dsn",
        "MA2ML_DEFAULT_SERVICE_ACCOUNT": "ma2ml-workload",
        "MA2ML_ALLOWED_SERVICE_ACCOUNTS": "trainer, builder,",
        "MA2ML_ALLOWED_IMAGE_PREFIXES": "registry.example/team,ghcr.io/ma2ml",
        "MA2ML_ALLOW_HOST_PATH": "true"})
    assert config.database_url == DB_URL and config.status_interval == 2.5
    assert config.workloads == WorkloadPolicy(
        database_secret=SecretRef("ma2ml-database", "dsn"),
        default_service_account="ma2ml-workload",
        allowed_service_accounts=frozenset({"trainer", "builder"}),
        image_prefixes=("registry.example/team", "ghcr.io/ma2ml"), allow_host_path=True)


def test_the_policy_is_strict_when_nothing_is_set() -> None:
    policy = OperatorConfig.from_env({"MA2ML_DATABASE_URL": DB_URL}).workloads
    assert policy == WorkloadPolicy()
    assert policy.service_accounts == frozenset() and not policy.allow_host_path
    assert policy.database_secret is None


@pytest.mark.parametrize(("env", "message"), [
    ({}, "MA2ML_DATABASE_URL: required"),
    ({"MA2ML_DATABASE_URL": "  "}, "MA2ML_DATABASE_URL: required"),
    ({"MA2ML_ALLOW_HOST_PATH": "maybe"}, "MA2ML_ALLOW_HOST_PATH: expected true or false"),
    ({"MA2ML_POD_DATABASE_SECRET": "db/"}, "MA2ML_POD_DATABASE_SECRET: expected NAME or"),
    ({"MA2ML_STATUS_INTERVAL": "0"}, "MA2ML_STATUS_INTERVAL: must be > 0"),
    ({"MA2ML_FAILURE_WARNING_FRACTION": "half"}, "MA2ML_FAILURE_WARNING_FRACTION: expected"),
])
def test_a_bad_setting_is_named(env: dict[str, str], message: str) -> None:
    base = {} if "MA2ML_DATABASE_URL" in env or not env else {"MA2ML_DATABASE_URL": DB_URL}
    with pytest.raises(ConfigError, match=f"^{message}"):
        OperatorConfig.from_env({**base, **env})


def test_operator_without_a_database_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MA2ML_DATABASE_URL"}
    result = subprocess.run([sys.executable, "-m", "ma2ml", "operator", "--all-namespaces",
                             "--liveness-port", "0", "--metrics-port", "0"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: MA2ML_DATABASE_URL: required"), result.stderr
    assert not (tmp_path / "ma2ml.db").exists()  # no SQLite file left behind


def test_importing_the_handlers_reads_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timer interval comes from the config given to build_registry, not from import."""
    from ma2ml.operator import handlers

    monkeypatch.setenv("MA2ML_STATUS_INTERVAL", "not a number")
    registry = handlers.build_registry(OperatorConfig(DB_URL, status_interval=7.0))
    [timer] = [h for h in registry._spawning.get_all_handlers() if h.id == handlers.TIMER_ID]
    assert timer.interval == 7.0
    ids = {h.id for h in registry._changing.get_all_handlers()}
    assert ids == {"create", "update/spec", "delete"}


# -- the workload policy on the builders ----------------------------------------------


def test_defaults_fill_the_account_and_the_database_secret() -> None:
    resolved = builders.resolve(search(), POLICY)
    assert resolved.spec.worker.service_account_name == "ma2ml-workload"
    assert (resolved.spec.database.secret_name, resolved.spec.database.secret_key) == (
        "ma2ml-database", "url")
    for build in (builders.build_learner_deployment, builders.build_worker_deployment):
        pod = build(resolved, 1)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "ma2ml-workload"
        assert pod["automountServiceAccountToken"] is False
        [env] = [e for e in pod["containers"][0]["env"] if e["name"] == "MA2ML_DATABASE_URL"]
        assert env == {"name": "MA2ML_DATABASE_URL", "valueFrom": {
            "secretKeyRef": {"name": "ma2ml-database", "key": "url"}}}
    # A search's own choices stay when the policy allows them.
    own = builders.resolve(search(worker={"image": "ghcr.io/ma2ml/ma2ml:0.2",
                                          "serviceAccountName": "trainer"},
                                  database={"secretName": "team-db"}), POLICY)
    assert own.spec.worker.service_account_name == "trainer"
    assert own.spec.database.secret_name == "team-db"


def test_host_path_is_refused_unless_allowed() -> None:
    worker = {"image": "registry.example/team/x:1", "volumes": [CLAIM, HOST_PATH]}
    [line] = problems(worker=worker)
    assert line.startswith("spec.worker.volumes[1].hostPath: hostPath volumes are not allowed")
    allowed = dataclasses.replace(POLICY, allow_host_path=True)
    assert builders.resolve(search(worker=worker), allowed).spec.worker.volumes[1] == HOST_PATH


def test_service_account_comes_from_the_allowlist() -> None:
    [line] = problems(worker={"image": "registry.example/team/x:1",
                              "serviceAccountName": "cluster-admin-sa"})
    assert line == ("spec.worker.serviceAccountName: 'cluster-admin-sa' is not allowed by the "
                    "operator's policy (allowed: ma2ml-workload, trainer; chart value "
                    "policy.serviceAccounts)")
    # With no account configured at all, none may be named.
    [line] = problems(WorkloadPolicy(database_secret=SecretRef("db")),
                      worker={"serviceAccountName": "default"})
    assert "(allowed: none;" in line


@pytest.mark.parametrize(("image", "allowed"), [
    ("registry.example/team/trainer:1", True),
    ("registry.example/team@sha256:abc", True),
    ("registry.example/team-evil/trainer:1", False),
    ("registry.example/teamx:1", False),
    ("ghcr.io/ma2ml/ma2ml:0.1.0", True),
    ("ghcr.io/ma2ml/ma2ml-evil:0.1.0", False),
    ("docker.io/library/busybox", False),
])
def test_image_prefixes_match_whole_name_parts(image: str, allowed: bool) -> None:
    assert POLICY.image_allowed(image) is allowed
    if not allowed:
        [line] = problems(worker={"image": image})
        assert line.startswith(f"spec.worker.image: {image!r} is not under an allowed")
    # No prefixes: the default image's repository only (the chart's own); "*": any image.
    assert WorkloadPolicy().image_allowed(image) is image.startswith("ghcr.io/ma2ml/ma2ml:")
    assert WorkloadPolicy(image_prefixes=("*",)).image_allowed(image)


def test_a_password_in_the_spec_url_is_refused() -> None:
    for url in ("postgresql+psycopg2://ma2ml:s3cret@db:5432/ma2ml",
                "postgresql://db/ma2ml?password=s3cret"):
        [line] = problems(database={"url": url})
        assert line.startswith("spec.database.url: carries a password")
        assert "s3cret" not in line
    [line] = problems(database={"url": "not a url"})
    assert line.startswith("spec.database.url: not a database URL")
    # Without a password (client certificates, trust) the URL is used as is.
    plain = builders.resolve(search(database={"url": DB_URL}), POLICY)
    assert builders.database_env(plain) == {"name": "MA2ML_DATABASE_URL", "value": DB_URL}
    # A URL given with a Secret still has its password refused: the spec is readable.
    assert problems(database={"url": "postgresql://u:pw@db/x", "secretName": "db"})


def test_without_a_pod_secret_a_search_must_name_its_database() -> None:
    [line] = problems(WorkloadPolicy(), worker={"image": "ghcr.io/ma2ml/ma2ml:1"})
    assert line.startswith("spec.database.secretName: required")


def test_every_violation_is_listed_by_validate() -> None:
    body = document(worker={"image": "docker.io/evil:1", "serviceAccountName": "root",
                            "volumes": [HOST_PATH]},
                    database={"url": "postgresql://u:pw@db/x"})
    with pytest.raises(SpecError) as caught:
        validate(body, OperatorConfig(DB_URL, workloads=POLICY))
    fields = [line.split(":")[0] for line in caught.value.lines]
    assert sorted(fields) == ["spec.database.url", "spec.worker.image",
                              "spec.worker.serviceAccountName", "spec.worker.volumes[0].hostPath"]


class NoChildrenKube:
    """A Kube that fails the test on any write; reads find nothing."""

    def get(self, kind: str, namespace: str, name: str) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the operator called Kube.{name} for a refused search")


def test_reconcile_of_a_refused_search_touches_no_child() -> None:
    body = document(worker={"image": "registry.example/team/x:1", "volumes": [HOST_PATH]})
    body["metadata"]["generation"] = 1
    store: Any = None  # a refused search never reaches the store
    outcome = reconcile(body, store, NoChildrenKube(), OperatorConfig(DB_URL, workloads=POLICY))
    assert outcome.phase == "Failed"
    [valid] = [c for c in outcome.status["conditions"] if c["type"] == "SpecValid"]
    assert valid["reason"] == "InvalidSpec"
    assert valid["message"].startswith("spec.worker.volumes[0].hostPath:")


# -- the real operator against the emulator ------------------------------------------


def cluster_doc(name: str, **spec: Any) -> dict[str, Any]:
    body = document(name, **spec)
    body["metadata"] = {"name": name}
    body["spec"]["budget"] = {"maxTrials": 4, "parallelism": 1}
    return body


REFUSED = [
    ("host-path", {"worker": {"image": "registry.example/ma2ml:test",
                              "volumes": [HOST_PATH],
                              "volumeMounts": [{"name": "node", "mountPath": "/host"}]}},
     "spec.worker.volumes[0].hostPath"),
    ("account", {"worker": {"image": "registry.example/ma2ml:test",
                            "serviceAccountName": "default"}}, "spec.worker.serviceAccountName"),
    ("image", {"worker": {"image": "docker.io/evil/miner:1"}}, "spec.worker.image"),
    ("password", {"database": {"url": "postgresql://ma2ml:s3cret@db/ma2ml"}},
     "spec.database.url"),
    # Issue 25 item 15: a password in plain env, another Secret, an API token, the
    # database's own volume.
    ("env-password", {"worker": {"image": "registry.example/ma2ml:test", "env": [
        {"name": "MA2ML_DATABASE_URL", "value": "postgresql://ma2ml:s3cret@db/ma2ml"}]}},
     "spec.worker.env[0].name"),
    ("secret-volume", {"worker": {"image": "registry.example/ma2ml:test", "volumes": [
        {"name": "s", "secret": {"secretName": "ma2ml-postgresql"}}]}},
     "spec.worker.volumes[0].secret.secretName"),
    ("token", {"worker": {"image": "registry.example/ma2ml:test", "volumes": [
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]}},
     "spec.worker.volumes[0].projected.sources[0].serviceAccountToken"),
    ("database-volume", {"worker": {"image": "registry.example/ma2ml:test", "volumes": [
        {"name": "pg", "persistentVolumeClaim": {"claimName": "data-ma2ml-postgresql-0"}}]}},
     "spec.worker.volumes[0].persistentVolumeClaim.claimName"),
]


@pytest.mark.postgres
@pytest.mark.parametrize(("case", "spec", "field"), REFUSED, ids=[c[0] for c in REFUSED])
def test_operator_refuses_a_search_against_its_policy(
        kube: KubeClient, namespaced_operator_proc: OperatorProcess, search_store: Store,
        case: str, spec: dict[str, Any], field: str) -> None:
    name = f"refused-{case}"
    kube.apply(cluster_doc(name, **spec))
    status = wait_for(lambda: ((kube.search(name) or {}).get("status") or {}).get("phase")
                      == "Failed" and kube.search(name)["status"], f"{name} Failed",
                      log=namespaced_operator_proc.log)
    [valid] = [c for c in status["conditions"] if c["type"] == "SpecValid"]
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert valid["message"].startswith(f"{field}:"), valid["message"]
    assert "s3cret" not in str(status)
    assert kube.deployment(f"{name}-learner") is None
    assert kube.deployment(f"{name}-worker") is None
    assert kube.configmap(f"{name}-spec") is None
    assert search_store.get_search(f"default/{name}") is None


@pytest.mark.postgres
def test_operator_gives_pods_the_secret_and_the_token_less_account(
        kube: KubeClient, namespaced_operator_proc: OperatorProcess) -> None:
    kube.apply(cluster_doc("defaults", worker={"image": "registry.example/ma2ml:test"}))
    worker = wait_for(lambda: kube.deployment("defaults-worker"), "the worker Deployment",
                      log=namespaced_operator_proc.log)
    pod = worker["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR_POLICY_ENV["MA2ML_DEFAULT_SERVICE_ACCOUNT"]
    assert pod["automountServiceAccountToken"] is False
    [env] = [e for e in pod["containers"][0]["env"] if e["name"] == "MA2ML_DATABASE_URL"]
    assert env["valueFrom"] == {"secretKeyRef": {"name": "ma2ml-database", "key": "url"}}
    configmap = wait_for(lambda: kube.configmap("defaults-spec"), "the spec ConfigMap")
    stored = yaml.safe_load(configmap["data"]["search.yaml"])
    assert stored["spec"]["database"]["secretName"] == "ma2ml-database"
    assert stored["spec"]["database"].get("url") is None
