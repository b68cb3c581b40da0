"""The PipelineSearch model: defaults, round trip, and the exact error messages."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ma2ml.spec import PipelineSearch, SpecError, load_spec, parse_spec, spec_to_document

EXAMPLES = Path(__file__).parent.parent / "examples"


def minimal(**spec: Any) -> dict[str, Any]:
    doc = {
        "apiVersion": "ma2ml.io/v1alpha1",
        "kind": "PipelineSearch",
        "metadata": {"name": "demo", "namespace": "team-a", "labels": {"x": "y"}},
        "spec": {"agents": [{"name": "aug", "preset": "autoaugment"},
                            {"name": "nas", "preset": "mbconv-small"},
                            {"name": "hpo", "preset": "recipe-sgd"}]},
    }
    doc["spec"].update(copy.deepcopy(spec))
    return doc


def errors_of(doc: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse_spec(doc)
    return info.value.lines


def test_defaults_are_filled() -> None:
    search = parse_spec(minimal())
    assert search.key == "team-a/demo"
    assert search.spec.budget.max_trials == 50
    assert search.spec.budget.parallelism == 1
    assert search.spec.algorithm.name == "ma2ml"
    assert search.spec.dataset.name == "fashion-mnist"
    assert search.spec.trainer.type == "builtin"
    assert search.spec.retention == "keep"
    assert [a.name for a in search.spec.search_space().agents] == ["aug", "nas", "hpo"]


def test_round_trip_through_document_is_stable() -> None:
    search = parse_spec(minimal(budget={"maxTrials": 7}))
    document = spec_to_document(search)
    assert document["spec"]["budget"]["maxTrials"] == 7
    assert parse_spec(document) == search


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    assert isinstance(load_spec(path), PipelineSearch)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"budget": {"parallelism": 0}}, "spec.budget.parallelism: must be >= 1, got 0"),
        ({"budget": {"maxTrials": -3}}, "spec.budget.maxTrials: must be >= 1, got -3"),
        ({"budget": {"maxTrials": "many"}},
         "spec.budget.maxTrials: expected an integer, got 'many'"),
        ({"budget": {"trialEpochs": 1.5}},
         "spec.budget.trialEpochs: expected an integer, got 1.5"),
        ({"budget": {"maxRetries": -1}}, "spec.budget.maxRetries: must be >= 0, got -1"),
        ({"budget": {"paralelism": 2}}, "spec.budget.paralelism: unknown field (given 2)"),
        ({"colour": "blue"}, "spec.colour: unknown field (given 'blue')"),
        ({"agents": []}, "spec.agents: must have at least 1 item(s), got 0"),
        ({"agents": [{"name": "a", "preset": "nope"}]},
         "spec.agents[0].preset: unknown preset 'nope' (known: autoaugment, mbconv-small, "
         "mbconv-imagenet, recipe-sgd, recipe-adamw, recipe)"),
        ({"agents": [{"name": "a", "preset": "autoaugment", "options": {"subPolicys": 2}}]},
         "spec.agents[0].options.subPolicys: unknown option of preset 'autoaugment' "
         "(known: opsPerSubPolicy, subPolicies)"),
        ({"agents": [{"name": "a", "preset": "autoaugment", "options": {"subPolicies": 0}}]},
         "spec.agents[0].options.subPolicies: must be an integer in [1, 25], got 0"),
        ({"agents": [{"name": "a"}]}, "spec.agents[0]: set exactly one of preset or decisions"),
        ({"agents": [{"name": "a", "decisions": [{"name": "x", "values": []}]}]},
         "spec.agents[0].decisions[0].values: must have at least 1 item(s), got 0"),
        ({"agents": [{"name": "a", "decisions": [{"name": "x", "values": [1, 1]}]}]},
         "spec.agents[0].decisions[0].values: values must be distinct, got [1, 1]"),
        ({"agents": [{"name": "a", "decisions": [{"name": "x", "values": [{"k": 1}]}]}]},
         "spec.agents[0].decisions[0].values: values must be strings, numbers or booleans, "
         "got {'k': 1}"),
        ({"agents": [{"name": "a", "preset": "recipe"}, {"name": "a", "preset": "recipe"}]},
         "spec.agents: agent names must be unique, got ['a', 'a']"),
        ({"agents": [{"name": "Aug!", "preset": "recipe"}]},
         "spec.agents[0].name: must match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$, got 'Aug!'"),
        ({"algorithm": {"name": "ppo"}},
         "spec.algorithm.name: expected 'ma2ml', 'ma2ml-lite', 'independent', "
         "'ma2ml-no-credit', 'ma2ml-on-policy' or 'random', got 'ppo'"),
        ({"algorithm": {"settings": {"alpha": [1]}}},
         "spec.algorithm.settings.alpha: expected a number or an integer or true or false "
         "or a string, got [1]"),
        ({"algorithm": {"settings": {"alpha": 0}}},
         "spec.algorithm.settings.alpha: must be > 0, got 0.0"),
        ({"algorithm": {"settings": {"credit": "shapley"}}},
         "spec.algorithm.settings.credit: expected one of decision, agent, got 'shapley'"),
        ({"trainer": {"type": "command"}},
         "spec.trainer: type 'command' needs a non-empty command list"),
        ({"trainer": {"command": "python train.py"}},
         "spec.trainer.command: expected a list, got 'python train.py'"),
        ({"objective": {"flopsTarget": 0}}, "spec.objective.flopsTarget: must be > 0, got 0"),
        ({"worker": {"resources": {"limit": {"cpu": 1}}}},
         "spec.worker.resources: keys must be requests or limits, got ['limit']"),
        ({"suspend": "maybe"}, "spec.suspend: expected true or false, got 'maybe'"),
        ({"retention": "forever"}, "spec.retention: expected 'keep' or 'delete', got 'forever'"),
    ],
)
def test_bad_spec_messages(spec: dict[str, Any], expected: str) -> None:
    assert errors_of(minimal(**spec)) == [expected]


def test_unknown_algorithm_setting_lists_the_known_ones() -> None:
    [line] = errors_of(minimal(algorithm={"settings": {"alpah": 0.1}}))
    assert line.startswith("spec.algorithm.settings.alpah: unknown setting (known: ")
    assert "alpha" in line and "tau" in line


def test_every_problem_is_reported_at_once() -> None:
    lines = errors_of(minimal(budget={"parallelism": 0, "maxTrials": 0}))
    assert lines == ["spec.budget.maxTrials: must be >= 1, got 0",
                     "spec.budget.parallelism: must be >= 1, got 0"]


def test_envelope_errors() -> None:
    doc = minimal()
    doc["kind"] = "Search"
    doc["metadata"]["name"] = "Bad_Name"
    del doc["apiVersion"]
    assert errors_of(doc) == [
        "apiVersion: required field is missing",
        "kind: expected 'PipelineSearch', got 'Search'",
        "metadata.name: must match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$, got 'Bad_Name'",
    ]
    assert errors_of(minimal() | {"spec": None}) == ["spec: expected a mapping, got None"]
    assert errors_of(["not", "a", "mapping"])[0].startswith("(root): expected a mapping")


def test_load_spec_reports_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read file"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_spec_is_immutable() -> None:
    search = parse_spec(minimal())
    with pytest.raises(Exception, match="frozen"):
        search.spec.budget.max_trials = 3  # type: ignore[misc]
