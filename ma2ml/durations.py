"""Durations as people write and read them: ``"1h30m"`` in, ``"1h 30m"`` out.

``parse_duration`` reads what a Kubernetes user writes for a time limit (Go's
``time.ParseDuration`` with the units a search budget needs: ``h``, ``m``,
``s``; ``"90s"``, ``"10m"``, ``"1h30m"``, ``"1.5h"``) into whole seconds.
``format_duration`` is the one way every view (the budget's messages, ``ma2ml
status``, the live view, the report, the dashboard and the operator's status)
writes a number of seconds, so they all read alike.
"""

from __future__ import annotations

import math
import re

#: Seconds per unit a duration string may use.
UNITS = {"h": 3600, "m": 60, "s": 1}
#: What a duration string must look like, for error messages.
EXPECTED = ('seconds, or a duration such as "90s", "10m", "1h30m" or "1.5h" '
            "(units h, m, s)")
#: Characters of a duration string: "1h30m" is short, a longer text is a mistake.
MAX_DURATION_CHARS = 64

_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)([hms])")


def parse_duration(text: str) -> int:
    """Whole seconds (rounded) of a duration string; ``ValueError`` naming what is expected."""
    compact = text.strip()
    position, seconds = 0, 0.0
    if len(compact) <= MAX_DURATION_CHARS:
        for match in _PART.finditer(compact):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * UNITS[match.group(2)]
            position = match.end()
    if not compact or position != len(compact):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"expected {EXPECTED}, got {shown!r}")
    return round(seconds)


def format_duration(seconds: float) -> str:
    """``602`` -> ``"10m 2s"``, ``5400`` -> ``"1h 30m"``, ``90061`` -> ``"1d 1h 1m 1s"``:
    whole seconds (rounded down), from the largest unit that is not zero, without the
    zero units at the end."""
    if not math.isfinite(seconds) or seconds < 1:
        return "0s"
    left = int(seconds)
    parts: list[tuple[int, str]] = []
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count or parts:
            parts.append((count, unit))
    while parts and parts[-1][0] == 0:
        parts.pop()
    return " ".join(f"{count}{unit}" for count, unit in parts)
