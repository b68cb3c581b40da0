"""The real operator (``ma2ml operator`` subprocess, real kopf) against kmock's Kubernetes
emulator over HTTP and the real store on PostgreSQL.

There are no pods here: the tests play the learner and the workers by writing
trials into the store through the Store API (enqueue, claim, complete/fail),
exactly as the real ones do, and watch the operator mirror them.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import KubeClient, OperatorProcess, wait_for

from ma2ml.spec import parse_spec
from ma2ml.store import Actor, SearchState, Store, TrialProposal

# The real operator against the emulated API server, end to end (README: make test-fast).
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EXAMPLE = yaml.safe_load((Path(__file__).parents[2] / "examples/fashion-mnist.yaml").read_text())
GPU_WORKER = {
    "image": "registry.example/ma2ml:test",
    "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}, "requests": {"cpu": "2"}},
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
}


def search_doc(name: str, **spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(EXAMPLE)
    document["metadata"] = {"name": name}
    document["spec"]["budget"] = {"maxTrials": 4, "parallelism": 2, "maxFailedTrials": 3}
    document["spec"]["worker"] = copy.deepcopy(GPU_WORKER)
    document["spec"]["database"] = {"secretName": "ma2ml-db", "secretKey": "url"}
    document["spec"].update(spec)
    return document


def run_trials(store: Store, key: str, rewards: list[float], failures: int = 0) -> None:
    """Play workers: enqueue real pipelines of the search's space, claim, report."""
    record = store.get_search(key)
    assert record is not None, f"{key} was not registered in the store"
    space = parse_spec(record.spec).spec.search_space()
    start = store.max_trial_number(record.id)
    proposals = []
    for i in range(len(rewards) + failures):
        action = {a.name: [(start + i + j) % d.size for j, d in enumerate(a.decisions)]
                  for a in space.agents}
        proposals.append(TrialProposal(pipeline=space.decode(action), action=action,
                                       behaviour_logp={a: 0.0 for a in action},
                                       policy_version=0))
    store.enqueue_trials(record.id, proposals)
    for reward in rewards:
        trial = store.claim(record.id, "test-worker", lease_seconds=60)
        store.complete(trial.id, trial.attempt, reward, {"accuracy": reward, "flops": 2.5e6})
    for _ in range(failures):
        trial = store.claim(record.id, "test-worker", lease_seconds=60)
        store.fail(trial.id, trial.attempt, "CUDA out of memory", retryable=False, max_retries=0)


def status_of(kube: KubeClient, name: str) -> dict[str, Any]:
    return (kube.search(name) or {}).get("status") or {}


def wait_phase(kube: KubeClient, op: OperatorProcess, name: str, phase: str) -> dict[str, Any]:
    return wait_for(lambda: (s := status_of(kube, name)).get("phase") == phase and s,
                    f"{name} phase {phase}", log=op.log)


def replicas(kube: KubeClient, name: str) -> tuple[int | None, int | None]:
    learner, worker = kube.deployment(f"{name}-learner"), kube.deployment(f"{name}-worker")
    return ((learner or {}).get("spec", {}).get("replicas"),
            (worker or {}).get("spec", {}).get("replicas"))


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def worker_image(kube: KubeClient, name: str) -> str:
    deployment = kube.deployment(f"{name}-worker")
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def children_uids(kube: KubeClient, name: str) -> dict[str, str]:
    return {d["metadata"]["name"]: d["metadata"]["uid"] for d in kube.deployments()
            if d["metadata"]["labels"]["ma2ml.io/search"] == name}


def reasons(kube: KubeClient, name: str) -> list[str]:
    return [e["reason"] for e in kube.events(name)]


def test_apply_creates_labelled_owned_children_and_runs(
        kube: KubeClient, operator_proc: OperatorProcess, search_store: Store) -> None:
    created = kube.apply(search_doc("apply"))
    status = wait_phase(kube, operator_proc, "apply", "Running")
    assert status["observedGeneration"] == 1
    assert status["trials"]["total"] == 0
    assert condition(status, "SpecValid")["status"] == "True"
    assert search_store.get_search("default/apply").state == "running"

    learner, worker = kube.deployment("apply-learner"), kube.deployment("apply-worker")
    configmap = kube.configmap("apply-spec")
    owner = {"kind": "PipelineSearch", "name": "apply", "uid": created["metadata"]["uid"],
             "controller": True}
    for child, component in ((learner, "learner"), (worker, "worker"), (configmap, "spec")):
        assert child["metadata"]["labels"]["app.kubernetes.io/component"] == component
        assert child["metadata"]["labels"]["ma2ml.io/search"] == "apply"
        assert owner.items() <= child["metadata"]["ownerReferences"][0].items()
    assert (learner["spec"]["replicas"], worker["spec"]["replicas"]) == (1, 2)

    pod = worker["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"] == ["worker", "--search", "default/apply", "--metrics-port", "9090"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "8Gi"}
    assert pod["nodeSelector"] == GPU_WORKER["nodeSelector"]
    assert pod["tolerations"] == GPU_WORKER["tolerations"]
    assert GPU_WORKER["volumes"][0] in pod["volumes"]
    assert GPU_WORKER["volumeMounts"][0] in container["volumeMounts"]
    assert {"name": "MA2ML_DATABASE_URL",
            "valueFrom": {"secretKeyRef": {"name": "ma2ml-db", "key": "url"}}} in container["env"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    learner_container = learner["spec"]["template"]["spec"]["containers"][0]
    assert learner_container["args"][:3] == ["learner", "--search", "default/apply"]
    assert "nvidia.com/gpu" not in str(learner_container["resources"])
    assert parse_spec(yaml.safe_load(configmap["data"]["search.yaml"])).key == "default/apply"
    wait_for(lambda: "Started" in reasons(kube, "apply"), "a Started event")


def test_store_results_drive_status_then_success_scales_to_zero(
        kube: KubeClient, operator_proc: OperatorProcess, search_store: Store) -> None:
    kube.apply(search_doc("results"))
    wait_phase(kube, operator_proc, "results", "Running")
    run_trials(search_store, "default/results", [0.61, 0.83])
    status = wait_for(lambda: (s := status_of(kube, "results"))["trials"]["completed"] == 2 and s,
                      "two completed trials in the status", log=operator_proc.log)
    assert status["best"]["reward"] == pytest.approx(0.83)
    assert status["best"]["accuracy"] == pytest.approx(0.83)
    assert status["best"]["flops"] == pytest.approx(2.5e6)
    assert set(status["best"]["pipeline"]) == {"aug", "nas", "hpo"}
    assert re.match(r"^\w+=", status["best"]["pipeline"]["hpo"])
    assert replicas(kube, "results") == (1, 2)
    wait_for(lambda: "NewBest" in reasons(kube, "results"), "a NewBest event")

    run_trials(search_store, "default/results", [0.7], failures=0)
    wait_for(lambda: replicas(kube, "results") == (1, 1), "one worker for the last trial")
    run_trials(search_store, "default/results", [0.9])
    status = wait_phase(kube, operator_proc, "results", "Succeeded")
    assert status["trials"] == {"total": 4, "pending": 0, "running": 0, "completed": 4,
                                "diverged": 0, "stopped": 0, "failed": 0}
    assert status["best"]["reward"] == pytest.approx(0.9)
    assert condition(status, "Succeeded")["reason"] == "MaxTrialsReached"
    assert status["completionTime"]
    wait_for(lambda: replicas(kube, "results") == (0, 0), "learner and workers at zero")
    wait_for(lambda: "Succeeded" in reasons(kube, "results"), "a Succeeded event")


def test_failures_and_learner_verdicts(
        kube: KubeClient, operator_proc: OperatorProcess, search_store: Store) -> None:
    kube.apply(search_doc("failing"))
    wait_phase(kube, operator_proc, "failing", "Running")
    run_trials(search_store, "default/failing", [], failures=2)
    wait_for(lambda: "TrialsFailing" in reasons(kube, "failing"), "a TrialsFailing warning")
    run_trials(search_store, "default/failing", [], failures=1)
    status = wait_phase(kube, operator_proc, "failing", "Failed")
    assert condition(status, "Failed")["reason"] == "TooManyFailedTrials"
    wait_for(lambda: replicas(kube, "failing") == (0, 0), "children of a failed search at zero")

    kube.apply(search_doc("learner-done"))
    wait_phase(kube, operator_proc, "learner-done", "Running")
    record = search_store.get_search("default/learner-done")
    search_store.move_search(record.id, SearchState.finished, by=Actor.learner)
    status = wait_phase(kube, operator_proc, "learner-done", "Succeeded")
    assert condition(status, "Succeeded")["reason"] == "LearnerFinished"


def test_edits_scale_suspend_and_extend(
        kube: KubeClient, operator_proc: OperatorProcess, search_store: Store) -> None:
    kube.apply(search_doc("edits"))
    wait_phase(kube, operator_proc, "edits", "Running")
    kube.edit("edits", {"budget": {"parallelism": 3}})
    wait_for(lambda: replicas(kube, "edits") == (1, 3), "three workers")
    wait_for(lambda: status_of(kube, "edits").get("observedGeneration") == 2,
             "observedGeneration 2")

    worker_uid = kube.deployment("edits-worker")["metadata"]["uid"]
    kube.edit("edits", {"worker": {"image": "registry.example/ma2ml:v2"}})
    wait_for(lambda: worker_image(kube, "edits") == "registry.example/ma2ml:v2",
             "the worker template rolled to the new image")
    assert kube.deployment("edits-worker")["metadata"]["uid"] == worker_uid
    assert "registry.example/ma2ml:v2" in kube.configmap("edits-spec")["data"]["search.yaml"]

    kube.edit("edits", {"suspend": True})
    wait_phase(kube, operator_proc, "edits", "Suspended")
    wait_for(lambda: replicas(kube, "edits") == (1, 0), "workers suspended")
    assert search_store.get_search("default/edits").state == "suspended"
    kube.edit("edits", {"suspend": False})
    wait_phase(kube, operator_proc, "edits", "Running")
    wait_for(lambda: replicas(kube, "edits") == (1, 3), "workers back")
    assert search_store.get_search("default/edits").state == "running"
    assert "Resumed" in wait_for(lambda: reasons(kube, "edits"), "events")

    run_trials(search_store, "default/edits", [0.5, 0.6])
    kube.edit("edits", {"budget": {"maxTrials": 2}})
    wait_phase(kube, operator_proc, "edits", "Succeeded")
    wait_for(lambda: replicas(kube, "edits") == (0, 0), "children at zero")
    search_store.move_search(search_store.get_search("default/edits").id, SearchState.finished,
                             by=Actor.learner)
    kube.edit("edits", {"budget": {"maxTrials": 6}})
    wait_phase(kube, operator_proc, "edits", "Running")
    wait_for(lambda: replicas(kube, "edits") == (1, 3), "workers for the extension")
    record = search_store.get_search("default/edits")
    assert record.state == "running"
    assert record.spec["spec"]["budget"]["maxTrials"] == 6


def test_an_edit_of_a_fixed_field_under_results_is_refused_and_the_search_kept(
        kube: KubeClient, operator_proc: OperatorProcess, search_store: Store) -> None:
    # store.lifecycle.spec_edit, the rule `ma2ml run` applies too: the search's trials were
    # drawn from this space and measured on this data. The edit reaches neither the store
    # (where the learner reads its spec) nor the children; reverting it clears the condition.
    kube.apply(search_doc("fixed"))
    wait_phase(kube, operator_proc, "fixed", "Running")
    run_trials(search_store, "default/fixed", [0.5])
    wait_for(lambda: status_of(kube, "fixed")["trials"]["completed"] == 1, "one result")
    stored = search_store.get_search("default/fixed").spec
    configmap = kube.configmap("fixed-spec")["data"]
    templates = {name: kube.deployment(f"fixed-{name}")["spec"]["template"]
                 for name in ("learner", "worker")}

    dataset = {**EXAMPLE["spec"]["dataset"], "name": "cifar10"}
    kube.edit("fixed", {"dataset": dataset, "budget": {"parallelism": 1},
                        "worker": {"image": "registry.example/ma2ml:v2"}})
    status = wait_for(lambda: (s := status_of(kube, "fixed")).get("observedGeneration") == 2
                      and s, "the edit observed", log=operator_proc.log)
    valid = condition(status, "SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert "spec.dataset may not change once a search has trial results (1 here)" in \
        valid["message"]
    assert "new PipelineSearch" in valid["message"]
    assert status["phase"] == "Running" and status["trials"]["completed"] == 1
    wait_for(lambda: "InvalidSpec" in reasons(kube, "fixed"), "an InvalidSpec warning")
    assert search_store.get_search("default/fixed").spec == stored
    assert kube.configmap("fixed-spec")["data"] == configmap
    for name, template in templates.items():
        assert kube.deployment(f"fixed-{name}")["spec"]["template"] == template
    assert replicas(kube, "fixed") == (1, 2)  # the edited parallelism is not taken either

    kube.edit("fixed", {"dataset": EXAMPLE["spec"]["dataset"]})  # reverted (the rest stays)
    status = wait_for(lambda: (s := status_of(kube, "fixed")).get("observedGeneration") == 3
                      and s, "the revert observed", log=operator_proc.log)
    assert condition(status, "SpecValid")["status"] == "True"
    assert status["phase"] == "Running"
    wait_for(lambda: replicas(kube, "fixed") == (1, 1), "the parallelism edit taken over")
    assert worker_image(kube, "fixed") == "registry.example/ma2ml:v2"
    record = search_store.get_search("default/fixed")
    assert record.spec["spec"]["dataset"] == stored["spec"]["dataset"]
    assert record.spec["spec"]["budget"]["parallelism"] == 1
    assert search_store.counts(record.id).completed == 1


def test_delete_runs_the_retention_finalizer(
        kube: KubeClient, operator_proc: OperatorProcess, search_store: Store) -> None:
    kube.apply(search_doc("keep-rows", retention="keep"))
    kube.apply(search_doc("drop-rows", retention="delete"))
    for name in ("keep-rows", "drop-rows"):
        wait_phase(kube, operator_proc, name, "Running")
        assert "ma2ml.io/store-retention" in kube.search(name)["metadata"]["finalizers"]
        run_trials(search_store, f"default/{name}", [0.4])
        kube.delete(name)
    for name in ("keep-rows", "drop-rows"):
        wait_for(lambda n=name: kube.search(n) is None, f"{name} gone", log=operator_proc.log)
        # The emulator's owner-reference GC stands in for the kube-controller-manager.
        assert kube.deployment(f"{name}-worker") is None
    kept = search_store.get_search("default/keep-rows")
    assert kept is not None and search_store.counts(kept.id)["completed"] == 1
    assert search_store.get_search("default/drop-rows") is None


def test_killed_operator_restarts_without_duplicates_and_carries_on(
        kube: KubeClient, operator_proc: OperatorProcess, search_store: Store) -> None:
    kube.apply(search_doc("restart", budget={"maxTrials": 10, "parallelism": 2}))
    wait_phase(kube, operator_proc, "restart", "Running")
    run_trials(search_store, "default/restart", [0.3])
    wait_for(lambda: status_of(kube, "restart")["trials"]["completed"] == 1, "first result")
    uids = children_uids(kube, "restart")
    assert set(uids) == {"restart-learner", "restart-worker"}

    operator_proc.kill()
    run_trials(search_store, "default/restart", [0.8, 0.2])
    operator_proc.start()
    status = wait_for(lambda: (s := status_of(kube, "restart"))["trials"]["completed"] == 3 and s,
                      "results written while the operator was down", log=operator_proc.log)
    assert status["best"]["reward"] == pytest.approx(0.8)
    assert status["phase"] == "Running"
    assert children_uids(kube, "restart") == uids, "a restart duplicated or recreated children"
    assert reasons(kube, "restart").count("Started") == 1

    metrics = wait_for(lambda: operator_proc.get(operator_proc.metrics_port, "/metrics"),
                       "the metrics endpoint")
    assert re.search(r'ma2ml_searches\{phase="Running"\} [1-9]', metrics), metrics
    assert 'ma2ml_reconcile_duration_seconds_count{handler="timer"}' in metrics


INVALID = [
    ("parallelism", {"budget": {"parallelism": 0}}, "spec.budget.parallelism"),
    ("typo", {"budget": {"maxTrails": 5}}, "spec.budget.maxTrails"),
    ("preset-option", {"agents": [{"name": "aug", "preset": "autoaugment",
                                   "options": {"subPolicies": 0}}]}, "spec.agents[0]"),
    ("resources", {"worker": {"resources": {"limitz": {"cpu": 1}}}}, "spec.worker.resources"),
    ("trainer", {"trainer": {"type": "command"}}, "spec.trainer"),
]


@pytest.mark.parametrize(("case", "spec", "field"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_fails_with_the_field_and_no_children(
        kube: KubeClient, operator_proc: OperatorProcess, search_store: Store,
        case: str, spec: dict[str, Any], field: str) -> None:
    name = f"invalid-{case}"
    kube.apply(search_doc(name, **spec))
    status = wait_phase(kube, operator_proc, name, "Failed")
    valid = condition(status, "SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert field in valid["message"], valid["message"]
    assert condition(status, "Failed")["reason"] == "InvalidSpec"
    wait_for(lambda: "InvalidSpec" in reasons(kube, name), "an InvalidSpec warning")
    assert kube.deployment(f"{name}-learner") is None
    assert kube.deployment(f"{name}-worker") is None
    assert kube.configmap(f"{name}-spec") is None
    assert search_store.get_search(f"default/{name}") is None


def test_operator_command_needs_one_scope() -> None:
    result = subprocess.run([sys.executable, "-m", "ma2ml", "operator"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "--namespace NS (repeatable) or --all-namespaces" in result.stderr
