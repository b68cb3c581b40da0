"""The queue-sizing rule (``ma2ml.learner.queue_depth``): a pure function and its meter."""

from __future__ import annotations

import math

import pytest

from ma2ml.learner.queue_depth import MIN_HEADROOM, QueueMeter, queue_target


@pytest.mark.parametrize(
    ("parallelism", "prefetch", "rate", "interval", "latency", "expected", "why"),
    [
        (2, 1, 0.0, 0.0, 0.0, 3, "nothing measured yet: the spec's parallelism + prefetch"),
        (8, 1, 0.1, 0.5, 0.0, 9, "slow trials: the prefetch floor covers a tick"),
        (16, 1, 40.0, 0.5, 0.1, 16 + 24, "fast results: 40/s over a 0.6 s top-up cycle"),
        (256, 1, 200.0, 1.2, 0.3, 256 + 256, "one more round of every worker at most"),
        (2, 1, 200.0, 1.0, 0.0, 2 + MIN_HEADROOM, "a few workers with instant trials"),
        (4, 100, 1.0, 1.0, 0.0, 104, "a larger prefetch stays the floor"),
        (0, 0, 0.0, 0.0, 0.0, 0, "no workers: nothing queued"),
    ],
)
def test_queue_target(parallelism: int, prefetch: int, rate: float, interval: float,
                      latency: float, expected: int, why: str) -> None:
    assert queue_target(parallelism, prefetch, rate, interval, latency) == expected, why


@pytest.mark.parametrize(("field", "args"), [
    ("parallelism", (-1, 1, 0.0, 0.0, 0.0)),
    ("prefetch", (1, -1, 0.0, 0.0, 0.0)),
    ("rate", (1, 1, math.nan, 0.0, 0.0)),
    ("interval", (1, 1, 1.0, -1.0, 0.0)),
    ("latency", (1, 1, 1.0, 1.0, math.inf)),
])
def test_bad_inputs_name_the_field(field: str, args: tuple) -> None:
    with pytest.raises(ValueError, match=field):
        queue_target(*args)


def test_meter_measures_rate_and_longest_interval() -> None:
    meter = QueueMeter(window=10.0)
    assert meter.rate == 0.0 and meter.target(0.0, 4, 1) == 5  # nothing measured
    for second in range(6):  # 20 results per second, a top-up every second
        meter.observe(float(second), 20 * second)
        meter.topped_up(float(second) + 0.1, latency=0.1, pending=10, headroom=10)
    assert meter.rate == pytest.approx(20.0)
    assert meter.interval(5.2) == pytest.approx(1.0)
    # One slow tick (a big update): the queue must last through it.
    meter.observe(8.0, 160)
    meter.topped_up(8.1, latency=0.1, pending=10, headroom=10)
    assert meter.interval(8.2) == pytest.approx(3.0)
    assert meter.target(8.2, 4, 1) == 4 + math.ceil(meter.rate * 3.1)
    # Out of the window, the slow tick and the old counts are forgotten.
    for second in range(19, 31):
        meter.observe(float(second), 160 + 5 * (second - 18))
        meter.topped_up(float(second) + 0.1, latency=0.1, pending=10, headroom=10)
    assert meter.rate == pytest.approx(5.0)
    assert meter.interval(30.2) == pytest.approx(1.0)


def test_a_queue_that_ran_dry_doubles_the_headroom() -> None:
    """Instant trials: the measured rate is what the queue let through, so the meter
    grows the headroom while top-ups find nothing pending, and halves it back after."""
    meter = QueueMeter(window=10.0)
    headrooms = []
    for second in range(8):  # 8 workers drain whatever is queued, 1 result per slot
        meter.observe(float(second), 3 * second)
        headroom = meter.target(float(second), 8, 1) - 8
        headrooms.append(headroom)
        meter.topped_up(float(second) + 0.1, latency=0.1, pending=0, headroom=headroom)
    assert headrooms == [1, 3, 6, 12, 24, 48, MIN_HEADROOM, MIN_HEADROOM]  # x2, bounded
    meter.topped_up(9.1, latency=0.1, pending=MIN_HEADROOM, headroom=MIN_HEADROOM)
    assert meter.boost == MIN_HEADROOM  # halved from 2 * MIN_HEADROOM: plenty was left
    assert queue_target(8, 1, 0.0, 0.0, 0.0, boost=1000) == 8 + MIN_HEADROOM
