"""examples/search.yaml: a valid GPU-cluster search that fits the chart's defaults."""

from __future__ import annotations

from pathlib import PurePosixPath

import helm_python
import jsonschema
import yaml
from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.crd import build_crd
from ma2ml.spec import load_spec

from .helpers import ROOT

EXAMPLE = ROOT / "examples" / "search.yaml"


def test_ma2ml_validate_accepts_it() -> None:
    result = CliRunner().invoke(app, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "PipelineSearch default/cifar10" in result.output


def test_the_api_server_schema_accepts_it() -> None:
    """Checked against the CRD's OpenAPI schema, as `kubectl apply` would be.

    OpenAPI 3.0 schemas are JSON Schema draft 4 plus keywords (nullable,
    x-kubernetes-*) that draft 4 ignores; the example sets no null anywhere.
    """
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    validator = jsonschema.Draft4Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(EXAMPLE.read_text()))) == []
    broken = yaml.safe_load(EXAMPLE.read_text())
    broken["spec"]["budget"]["parallelism"] = 0
    assert not validator.is_valid(broken)


def test_cifar10_from_a_claim_with_one_gpu_per_worker() -> None:
    spec = load_spec(EXAMPLE).spec
    assert spec.dataset.name == "cifar10"
    assert spec.trainer.device == "cuda"
    assert spec.worker.resources["limits"]["nvidia.com/gpu"] == 1
    claims = {v["name"]: v["persistentVolumeClaim"] for v in spec.worker.volumes
              if "persistentVolumeClaim" in v}
    [mount] = [m for m in spec.worker.volume_mounts if m["name"] in claims]
    assert PurePosixPath(spec.dataset.root).is_relative_to(mount["mountPath"])
    assert claims[mount["name"]]["readOnly"] is True


def test_it_uses_what_the_chart_creates(chart: helm_python.Chart) -> None:
    spec = load_spec(EXAMPLE).spec
    values = chart.values
    assert spec.database.secret_name == values["database"]["secretName"]
    assert spec.database.secret_key == values["database"]["secretKey"]
    assert spec.worker.service_account_name == values["workloads"]["serviceAccount"]["name"]
    assert spec.worker.image.endswith(":" + chart.metadata["appVersion"])
