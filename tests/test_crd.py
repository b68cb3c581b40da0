"""The CRD generated from the spec model: committed copy current, structural, valid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from ma2ml.crd import build_crd, crd_yaml

CRD_FILE = Path(__file__).parent.parent / "crds" / "pipelinesearch.yaml"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return []
    out = [(path, node)]
    for key in ("properties",):
        for name, child in node.get(key, {}).items():
            out += walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out += walk(node[key], f"{path}[{key}]")
    return out


def test_committed_crd_is_current() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "run `make crd` and commit crds/pipelinesearch.yaml"


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(build_crd(), "1.33", strict=True)


def test_schema_is_structural() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "const" not in node, path
        free = node.get("x-kubernetes-preserve-unknown-fields") or node.get(
            "x-kubernetes-int-or-string")
        assert node.get("type") or free, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_schema_carries_the_model_constraints() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    budget = spec["properties"]["budget"]["properties"]
    assert budget["parallelism"]["minimum"] == 1
    assert budget["maxTrials"]["type"] == "integer"
    assert spec["required"] == ["agents"]
    assert spec["properties"]["agents"]["minItems"] == 1
    algorithm = spec["properties"]["algorithm"]["properties"]["name"]
    assert "ma2ml-lite" in algorithm["enum"]
    assert "description" in budget["parallelism"]
    # Seconds or a duration string ("1h30m"), as Kubernetes fields of both kinds are.
    assert budget["maxDuration"]["x-kubernetes-int-or-string"] is True
    assert budget["maxTrainingHours"]["type"] == "number"
    status = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "status"]["properties"]
    assert status["elapsedSeconds"]["type"] == "integer"
    assert status["trainingHours"]["type"] == "number"


def test_printer_columns_and_names() -> None:
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase", "Trials", "Best", "Running", "Age"]
    assert version["subresources"] == {"status": {}}
    assert crd["spec"]["names"]["shortNames"] == ["psearch"]
    assert crd["metadata"]["name"] == "pipelinesearches.ma2ml.io"
    assert yaml.safe_load(crd_yaml()) == crd
