"""``ma2ml augment-preview`` writes a real PNG grid of augmented Fashion-MNIST images."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor
from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.spec import PipelineSearch, spec_to_document
from ma2ml.trainer.preview import save_preview

AUG = {"sp0_op0": "invert", "sp0_prob0": 1.0, "sp0_mag0": 0}


def _spec_file(search: PipelineSearch, tmp_path: Path) -> Path:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(spec_to_document(search)))
    return path


def test_cli_writes_a_grid(make_search: Callable[..., PipelineSearch], tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["augment-preview", str(_spec_file(make_search(), tmp_path)),
                                      "--out", str(out), "--pipeline", json.dumps({"aug": AUG})])
    assert result.exit_code == 0, result.output
    assert '"sp0_op0": "invert"' in result.output
    with Image.open(out) as image:
        grid = pil_to_tensor(image.convert("L"))
    # 8 images per row, 1 original row + 4 augmented rows, 28 px + 2 px padding.
    assert grid.shape[-2:] == (5 * 30 + 2, 8 * 30 + 2)
    original = grid[0, 2:30, 2:30].int()
    inverted = grid[0, 32:60, 2:30].int()
    assert (original + inverted - 255).abs().max() <= 1  # the policy inverts every image


def test_random_policy_when_no_pipeline(make_search: Callable[..., PipelineSearch],
                                        tmp_path: Path) -> None:
    first = save_preview(make_search(), None, tmp_path / "a.png", seed=1)
    second = save_preview(make_search(), None, tmp_path / "b.png", seed=2)
    assert first != second and all(name.startswith("sp") for name in first)


def test_bad_pipeline_json_is_a_usage_error(make_search: Callable[..., PipelineSearch],
                                            tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["augment-preview", str(_spec_file(make_search(), tmp_path)),
                                      "--out", str(tmp_path / "x.png"), "--pipeline", "[1, 2]"])
    assert result.exit_code == 2
    assert "--pipeline: expected a JSON object" in result.output
