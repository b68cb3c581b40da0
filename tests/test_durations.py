"""Durations as people write them in a spec and read them in every view."""

from __future__ import annotations

import pytest

from ma2ml.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.9, "0s"), (-3, "0s"), (float("nan"), "0s"), (59.9, "59s"), (60, "1m"),
     (602, "10m 2s"), (3600, "1h"), (3605, "1h 0m 5s"), (5400, "1h 30m"),
     (90_061, "1d 1h 1m 1s"), (365 * 86_400, "365d")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [1, 59, 60, 602, 3605, 5400, 86_399])
def test_what_is_written_below_a_day_reads_back(seconds: int) -> None:
    assert parse_duration(format_duration(seconds).replace(" ", "")) == seconds
