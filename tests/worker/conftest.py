"""Fixtures of the worker tests; the spec fixtures are the trainer tests' (tests/trainer)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from trainer.conftest import _one_thread, make_search  # noqa: F401 (fixtures shared)


@pytest.fixture
def python_trainer() -> Callable[[str], list[str]]:
    """A custom trainer command: this interpreter running a Python snippet."""
    return lambda code: [sys.executable, "-c", code]
