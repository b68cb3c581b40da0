"""The PipelineSearch model: defaults, round trip, and the exact error messages."""

from __future__ import annotations

import copy
import time
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


@pytest.mark.parametrize(
    ("written", "seconds"),
    [(600, 600), ("10m", 600), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400),
     (" 2h ", 7200), ("1h0m30s", 3630), ("8760h", 365 * 86_400)],
)
def test_max_duration_takes_seconds_or_a_duration_string(written: Any, seconds: int) -> None:
    search = parse_spec(minimal(budget={"maxDuration": written, "maxTrainingHours": 2.5}))
    budget = search.spec.budget
    assert (budget.max_duration, budget.max_training_hours) == (seconds, 2.5)
    # Stored (and mirrored to the operator's ConfigMap) as seconds: the same either way.
    document = spec_to_document(search)
    assert document["spec"]["budget"]["maxDuration"] == seconds
    assert parse_spec(document) == search


def test_time_limits_are_unset_by_default() -> None:
    budget = parse_spec(minimal()).spec.budget
    assert (budget.max_duration, budget.max_training_hours) == (None, None)


DURATION_EXPECTED = ('expected seconds, or a duration such as "90s", "10m", "1h30m" or "1.5h" '
                     "(units h, m, s)")


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        ({"maxDuration": "10 minutes"},
         f"spec.budget.maxDuration: {DURATION_EXPECTED}, got '10 minutes'"),
        ({"maxDuration": "2d"}, f"spec.budget.maxDuration: {DURATION_EXPECTED}, got '2d'"),
        ({"maxDuration": "10ms"}, f"spec.budget.maxDuration: {DURATION_EXPECTED}, got '10ms'"),
        ({"maxDuration": ""}, f"spec.budget.maxDuration: {DURATION_EXPECTED}, got ''"),
        ({"maxDuration": True}, f"spec.budget.maxDuration: {DURATION_EXPECTED}, got True"),
        ({"maxDuration": "0s"}, "spec.budget.maxDuration: must be > 0, got '0s'"),
        ({"maxDuration": -5}, "spec.budget.maxDuration: must be > 0, got -5"),
        ({"maxDuration": 1.5}, "spec.budget.maxDuration: expected an integer, got 1.5"),
        ({"maxDuration": "9000h"}, "spec.budget.maxDuration: must be <= 31536000, got '9000h'"),
        ({"maxTrainingHours": 0}, "spec.budget.maxTrainingHours: must be > 0, got 0"),
        ({"maxTrainingHours": "2h"}, "spec.budget.maxTrainingHours: expected a number, got '2h'"),
        ({"maxTrainingHours": 1e8},
         "spec.budget.maxTrainingHours: must be <= 10000000, got 100000000.0"),
    ],
)
def test_bad_time_limits_name_the_field_and_what_it_takes(budget: dict[str, Any],
                                                          expected: str) -> None:
    assert errors_of(minimal(budget=budget)) == [expected]


def test_a_long_duration_string_is_quoted_short() -> None:
    [line] = errors_of(minimal(budget={"maxDuration": "1h" * 1000}))
    assert line.startswith("spec.budget.maxDuration: expected seconds") and len(line) < 200


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
         "spec.agents[0].decisions[0].values[0]: must be a string, number or boolean, "
         "got {'k': 1}"),
        ({"agents": [{"name": "a", "preset": "recipe"}, {"name": "a", "preset": "recipe"}]},
         "spec.agents: agent names must be unique, got ['a', 'a']"),
        ({"agents": [{"name": "Aug!", "preset": "recipe"}]},
         "spec.agents[0].name: must match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$, got 'Aug!'"),
        ({"algorithm": {"name": "ppo"}},
         "spec.algorithm.name: expected 'ma2ml', 'ma2ml-lite', 'independent', "
         "'ma2ml-no-credit', 'ma2ml-on-policy', 'random' or 'tpe', got 'ppo'"),
        ({"algorithm": {"settings": {"alpha": [1]}}},
         "spec.algorithm.settings.alpha: expected a number or an integer or true or false "
         "or a string, got [1]"),
        ({"algorithm": {"settings": {"alpha": 0}}},
         "spec.algorithm.settings.alpha: must be > 0, got 0.0"),
        ({"algorithm": {"settings": {"alpha": 5000}}},
         "spec.algorithm.settings.alpha: must be in (0, 1000], got 5000.0"),
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
        ({"earlyStopping": {"type": "hyperband"}},
         "spec.earlyStopping.type: expected 'none', 'asha', 'median' or 'learned', "
         "got 'hyperband'"),
        ({"earlyStopping": {"type": "asha", "reductionFactor": 1}},
         "spec.earlyStopping.reductionFactor: must be >= 2, got 1"),
        ({"earlyStopping": {"type": "median", "minEpochs": 0}},
         "spec.earlyStopping.minEpochs: must be >= 1, got 0"),
        ({"earlyStopping": {"type": "asha"}},  # trialEpochs defaults to 1: no rung below it
         "spec.earlyStopping.minEpochs: must be below spec.budget.trialEpochs (1) for asha to "
         "stop anything, got 1"),
        ({"earlyStopping": {"type": "asha", "minTrials": 3, "patience": 2}},
         "spec.earlyStopping.patience: unknown field (given 2)"),
    ],
)
def test_bad_spec_messages(spec: dict[str, Any], expected: str) -> None:
    assert errors_of(minimal(**spec)) == [expected]


def test_unknown_algorithm_setting_lists_the_known_ones() -> None:
    [line] = errors_of(minimal(algorithm={"settings": {"alpah": 0.1}}))
    assert line.startswith("spec.algorithm.settings.alpah: unknown setting (known: ")
    assert "alpha" in line and "tau" in line


def test_a_setting_the_algorithm_never_reads_is_refused() -> None:
    """``ma2ml validate`` says which setting and what it needs (the full table of what
    applies where: tests/learner/test_settings.py)."""
    doc = minimal(algorithm={"name": "tpe", "settings": {"tpe_window": 50, "alpha": 0.5}})
    assert errors_of(doc) == ["spec.algorithm.settings.alpha: does not apply to algorithm "
                              "tpe (it applies to ma2ml, ma2ml-lite, ma2ml-no-credit, "
                              "ma2ml-on-policy)"]
    doc = minimal(algorithm={"settings": {"critic_model": "mlp", "gibbs_sweeps": 3}})
    assert errors_of(doc) == ["spec.algorithm.settings.gibbs_sweeps: applies to critic_model "
                              "pairwise-bayes (or auto), not mlp"]
    parse_spec(minimal(algorithm={"settings": {"gibbs_sweeps": 3}}))  # auto may pick it


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


# --------------------------------------------------------------------------- limits


def _decisions(*sizes: int) -> list[dict[str, Any]]:
    return [{"name": f"d{i}", "values": list(range(n))} for i, n in enumerate(sizes)]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (minimal(budget={"prefetch": 1_000_000}),
         "spec.budget.prefetch: must be <= 1024, got 1000000"),
        (minimal(budget={"maxTrials": 10**7}),
         "spec.budget.maxTrials: must be <= 1000000, got 10000000"),
        (minimal(budget={"leaseSeconds": 1e9}),
         "spec.budget.leaseSeconds: must be <= 86400, got 1000000000.0"),
        (minimal(budget={"leaseSeconds": float("inf")}),
         "spec.budget.leaseSeconds: must be a finite number, got inf"),
        (minimal(trainer={"timeoutSeconds": float("nan")}),
         "spec.trainer.timeoutSeconds: must be a finite number, got nan"),
        (minimal(dataset={"splitSeed": 2**32}),
         "spec.dataset.splitSeed: must be <= 4294967295, got 4294967296"),
        (minimal(agents=[{"name": "a", "decisions": [{"name": "x", "values": [1, float("nan")]}]}]),
         "spec.agents[0].decisions[0].values[1]: must be a finite number, got nan"),
        (minimal(agents=[{"name": "a", "decisions": [{"name": "x", "values": [float("-inf")]}]}]),
         "spec.agents[0].decisions[0].values[0]: must be a finite number, got -inf"),
        (minimal(agents=[{"name": "a", "decisions": [{"name": "x", "values": ["v" * 2000]}]}]),
         "spec.agents[0].decisions[0].values[0]: must be at most 1024 characters, got 2000"),
        (minimal(agents=[{"name": "a", "decisions": _decisions(1001)}]),
         "spec.agents[0].decisions[0].values: must have at most 1000 item(s), got 1001"),
        (minimal(agents=[{"name": "a", "decisions": _decisions(*[1] * 513)}]),
         "spec.agents[0].decisions: must have at most 512 item(s), got 513"),
        (minimal(agents=[{"name": "a", "decisions": _decisions(*[1000] * 5)}]),
         "spec.agents: the agents' decisions have 5000 values in all (limit 4096, the learner's "
         "critic input width)"),
        (minimal(worker={"tolerations": [{}] * 65}),
         "spec.worker.tolerations: must have at most 64 item(s), got 65"),
        (minimal(worker={"env": [{"name": "X"}] * 257}),
         "spec.worker.env: must have at most 256 item(s), got 257"),
        (minimal(worker={"image": "i" * 2000}),
         "spec.worker.image: must be at most 1024 characters, got 2000 characters"),
        (minimal(worker={"resources": {"limits": {f"r{i}": 1 for i in range(33)}}}),
         "spec.worker.resources.limits: must have at most 32 item(s), got 33"),
        (minimal(trainer={"type": "command", "command": ["x"] * 257}),
         "spec.trainer.command: must have at most 256 item(s), got 257"),
        (minimal(algorithm={"settings": {"critic_steps": 10**6}}),
         "spec.algorithm.settings.critic_steps: must be in [0, 10000], got 1000000"),
        (minimal(algorithm={"settings": {"alpha": float("nan")}}),
         "spec.algorithm.settings.alpha: must be a finite number, got nan"),
        (minimal(algorithm={"settings": {"credit": "c" * 10_000}}),
         "spec.algorithm.settings.credit: expected one of decision, agent, got '" + "c" * 60
         + "...'"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_input_is_bounded(doc: dict[str, Any], expected: str) -> None:
    assert errors_of(doc) == [expected]


def test_long_metadata_name_states_the_limit() -> None:
    doc = minimal()
    doc["metadata"]["name"] = "a" * 300
    assert errors_of(doc) == ["metadata.name: must be at most 63 characters, got 300 characters"]


def test_describe_is_bounded_for_a_shared_reference_bomb() -> None:
    # What yaml.safe_load makes of "billion laughs": 9 levels of 9 references
    # to one list, 9**9 leaves; repr() would never finish.
    from ma2ml.spec import _describe

    bomb: Any = "lol"
    for _ in range(9):
        bomb = [bomb] * 9
    started = time.monotonic()
    text = _describe({"bomb": bomb, "n": 10**5000})
    # Generous for a loaded machine; the unbounded version never returns at all.
    assert time.monotonic() - started < 5
    assert len(text) <= 60 and text.startswith("{'bomb': [[[")
    assert _describe(10**5000) == "<integer of about 5001 digits>"
    assert _describe("x" * 10**6).endswith("...") and len(_describe("x" * 10**6)) == 60


def test_unknown_field_holding_a_large_structure_is_reported_briefly() -> None:
    bomb: Any = "lol"
    for _ in range(9):
        bomb = [bomb] * 9
    [line] = errors_of(minimal(bomb=bomb))
    assert line.startswith("spec.bomb: unknown field (given [[[") and len(line) < 120


LAUGHS = "".join(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n"
                 for i in range(1, 10))


def _spec_file(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text("apiVersion: ma2ml.io/v1alpha1\nkind: PipelineSearch\n"
                    "metadata: {name: demo}\nspec:\n  agents: [{name: hpo, preset: recipe}]\n"
                    + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  bomb:\n    l0: &l0 lol\n" + LAUGHS,
         "spec.bomb.l5[5]: the spec has more than 50000 values once YAML aliases are expanded "
         "(limit 50000)"),
        ("  worker:\n    tolerations: &t [*t]\n",
         "spec.worker.tolerations[0]: YAML alias *'t' refers to a node that contains it "
         "(a recursive structure)"),
        ("  worker:\n    env: [" + ", ".join(["{name: X}"] * 10_001) + "]\n",
         "spec.worker.env: a list of more than 10000 items (limit 10000)"),
        ("  budget: {prefetch: " + "9" * 200 + "}\n",
         "spec.budget.prefetch: a number of 200 characters (limit 100)"),
        ("  bomb: " + "[" * 70 + "]" * 70 + "\n",
         "spec.bomb" + "[0]" * 36 + "...: nested more than 64 levels deep (limit 64)"),
    ],
    ids=["alias-bomb", "recursive-alias", "long-list", "long-number", "deep"],
)
def test_yaml_shape_limits(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(_spec_file(tmp_path, extra))
    assert info.value.lines == [expected]


def test_aliases_within_the_limits_are_fine(tmp_path: Path) -> None:
    extra = ("  worker:\n    tolerations:\n      - &t {key: gpu, operator: Exists}\n"
             "      - *t\n")
    search = load_spec(_spec_file(tmp_path, extra))
    assert search.spec.worker.tolerations[0] == search.spec.worker.tolerations[1]


def test_spec_file_size_is_capped(tmp_path: Path) -> None:
    entries = "      - {name: X, value: yyyy}\n" * 40_000
    path = _spec_file(tmp_path, "  worker:\n    env:\n" + entries)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.lines == [f"{path}: the file is larger than 1048576 bytes (1 MiB), "
                                "the limit of a spec"]


def test_yaml_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("spec: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [line] = info.value.lines
    assert "\n" not in line and "not valid YAML" in line


def test_a_long_unknown_key_is_clipped_in_the_path() -> None:
    [line] = errors_of(minimal(**{"k" * 100_000: 1}))
    assert line.startswith("spec.'kkkk") and len(line) < 120


def test_the_largest_legal_space_loads(tmp_path: Path) -> None:
    # 8 agents of 512 one-value decisions: 4096 values, the most the limits allow,
    # and about 25,000 YAML nodes, well inside the node cap.
    agents = "".join(
        f"    - {{name: a{a}, decisions: ["
        + ", ".join(f"{{name: d{d}, values: [{d}]}}" for d in range(512)) + "]}\n"
        for a in range(8))
    path = tmp_path / "search.yaml"
    path.write_text("apiVersion: ma2ml.io/v1alpha1\nkind: PipelineSearch\n"
                    "metadata: {name: big}\nspec:\n  agents:\n" + agents)
    space = load_spec(path).spec.search_space()
    assert space.n_decisions == 4096 and len(space.agents) == 8


def test_a_stored_spec_is_read_back_with_settings_refused_since() -> None:
    """A search stored before settings were checked against their algorithm (a key it
    never read) still loads from the store, so an upgrade strands no search; a new spec
    with the same key is refused. Ranges and unknown keys are checked either way."""
    doc = minimal(algorithm={"name": "tpe", "settings": {"alpha": 0.5}})
    with pytest.raises(SpecError, match="alpha: does not apply to algorithm tpe"):
        parse_spec(doc)
    assert parse_spec(doc, stored=True).spec.algorithm.settings == {"alpha": 0.5}
    with pytest.raises(SpecError, match="alpah: unknown setting"):
        parse_spec(minimal(algorithm={"settings": {"alpah": 0.1}}), stored=True)
