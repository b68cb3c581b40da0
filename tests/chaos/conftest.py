"""Fixtures of the fault-injection suite: a private PostgreSQL cluster it may stop."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .postgres import PrivateCluster, find_bindir, missing_prerequisite


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivateCluster]:
    """A started private cluster (own port, own directory), destroyed at the end.

    Skips when the Debian server binaries are missing, except under CI=true,
    where the suite must run and fails instead.
    """
    problem = missing_prerequisite()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{problem} (CI=true: the fault-injection suite must run)")
        pytest.skip(problem)
    bindir = find_bindir()
    assert bindir is not None
    cluster = PrivateCluster.create(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
