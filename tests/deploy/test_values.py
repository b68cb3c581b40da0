"""Bad values fail `helm install` (here: Helm's render) with a message naming the value.

Type and range errors come from values.schema.json, which Helm checks
before rendering; values that contradict each other are refused by the
chart's templates (``ma2ml.validate`` in _helpers.tpl).
"""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python
import pytest

from .helpers import CHART_DIR, render


def error_of(chart: helm_python.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as caught:
        render(chart, values)
    return str(caught.value)


@pytest.mark.parametrize(("values", "expected"), [
    ({"operator": {"replicas": -1}}, "at '/operator/replicas': minimum: got -1, want 0"),
    ({"image": {"repository": ""}}, "at '/image/repository': minLength"),
    ({"image": {"repository": None}}, "at '/image': missing property 'repository'"),
    ({"image": None}, "missing property 'image'"),
    ({"operator": {"replicas": "two"}}, "at '/operator/replicas': got string, want integer"),
    ({"operator": {"replica": 2}}, "at '/operator': additional properties 'replica' not allowed"),
    ({"operator": {"watchNamespaces": ["Team_A"]}}, "at '/operator/watchNamespaces/0'"),
    ({"database": {"postgresql": {"persistence": {"size": "lots"}}}},
     "at '/database/postgresql/persistence/size'"),
    ({"monitoring": {"prometheusRule": {"leaseExpiryWindow": "15 minutes"}}},
     "at '/monitoring/prometheusRule/leaseExpiryWindow'"),
    ({"databse": {}}, "additional properties 'databse' not allowed"),
    ({"policy": {"allowHostPaths": True}}, "at '/policy': additional properties"),
    ({"policy": {"allowHostPath": "yes"}}, "at '/policy/allowHostPath': got string"),
    ({"policy": {"imagePrefixes": ["a,b"]}}, "at '/policy/imagePrefixes/0'"),
    ({"policy": {"serviceAccounts": ["Root"]}}, "at '/policy/serviceAccounts/0'"),
    ({"workloads": {"namespaces": ["ML"]}}, "at '/workloads/namespaces/0'"),
])
def test_schema_names_the_bad_value(chart: helm_python.Chart, values: dict[str, Any],
                                    expected: str) -> None:
    message = error_of(chart, values)
    assert "values don't meet the specifications of the schema" in message
    assert expected in message


@pytest.mark.parametrize(("values", "expected"), [
    ({"operator": {"replicas": 3}}, "operator.replicas > 1 needs operator.ha.enabled"),
    ({"database": {"external": {"url": "postgresql://db/ma2ml"}}},
     "set either database.postgresql.enabled or database.external.url"),
    ({"database": {"postgresql": {"enabled": False}}}, "database.external.url"),
    ({"database": {"createSecret": False}}, "database.postgresql.enabled needs database."
     "createSecret"),
    ({"monitoring": {"prometheusRule": {"enabled": True}}},
     "monitoring.prometheusRule.enabled needs monitoring.serviceMonitor.enabled"),
    ({"operator": {"watchNamespaces": ["a"]}, "workloads": {"namespaces": ["b"]}},
     "workloads.namespaces is for a cluster-wide operator"),
])
def test_contradictory_values_fail_loudly(chart: helm_python.Chart, values: dict[str, Any],
                                          expected: str) -> None:
    assert expected in error_of(chart, values)


def test_every_value_is_in_the_schema_and_commented(chart: helm_python.Chart) -> None:
    """values.yaml and values.schema.json describe the same keys; every value carries
    a comment (its own, or one on each key of a section without one)."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    where = key_lines(lines)

    def check(values: dict[str, Any], node: dict[str, Any], path: str = "") -> None:
        for key, value in values.items():
            assert key in node.get("properties", {}), f"{path}{key} is not in values.schema.json"
            commented = lines[where[path + key] - 1].strip().startswith("#")
            if not commented:
                assert isinstance(value, dict) and value, f"{path}{key} has no comment"
                check(value, node["properties"][key], f"{path}{key}.")

    check(chart.values, schema)


def key_lines(lines: list[str]) -> dict[str, int]:
    """Dotted path of every mapping key in a block-style YAML file -> its line index."""
    found: dict[str, int] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing keys
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_][A-Za-z0-9_]*):", line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match.group(2)))
        found[".".join(key for _, key in stack)] = index
    return found
