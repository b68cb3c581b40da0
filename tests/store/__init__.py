"""Tests of ma2ml.store (a package so that spawned worker processes can import helpers)."""
