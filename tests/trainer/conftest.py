"""Fixtures of the trainer and worker tests: small specs over the real Fashion-MNIST files."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from ma2ml.spec import PipelineSearch, parse_spec

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

BASE_DOCUMENT: dict[str, Any] = {
    "apiVersion": "ma2ml.io/v1alpha1",
    "kind": "PipelineSearch",
    "metadata": {"name": "worker-test", "namespace": "default"},
    "spec": {
        "dataset": {"name": "fashion-mnist", "root": str(FASHION_MNIST), "validationSize": 1000,
                    "trainSubset": 256, "validationSubset": 200},
        "agents": [{"name": "aug", "preset": "autoaugment"},
                   {"name": "nas", "preset": "mbconv-small"},
                   {"name": "hpo", "preset": "recipe"}],
        "budget": {"trialEpochs": 1, "leaseSeconds": 30, "maxRetries": 1},
        "trainer": {"device": "cpu"},
    },
}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    # A worker process trains with one thread (the README's local run uses
    # two workers on two cores); the tests measure that configuration.
    torch.set_num_threads(1)


@pytest.fixture
def make_search() -> Callable[..., PipelineSearch]:
    """``make_search(spec={...}, name=...)``: the base spec with ``spec`` merged in."""

    def make(spec: dict[str, Any] | None = None, name: str = "worker-test") -> PipelineSearch:
        document = copy.deepcopy(BASE_DOCUMENT)
        document["metadata"]["name"] = name
        _merge(document["spec"], spec or {})
        return parse_spec(document)

    return make
