"""What a person is shown of stored or trainer values: text that cannot act, numbers to read.

A trainer's output, a stored error tail or a decision value may hold terminal
control sequences (``\\x1b]0;...\\x07`` sets the window title, ``\\x1b[2J``
clears the screen) or bidirectional controls (U+202E, RIGHT-TO-LEFT OVERRIDE,
shows ``txt.exe`` where ``exe.txt`` was written). Printed as they are, they act
instead of being read. ``visible`` writes each such character as its escape
(``\\x1b``, ``\\u202e``): a log line, a table cell or a report page shows what
was written and does only what ma2ml meant. Rich markup and emoji codes are
one more layer, for Rich output only (``ma2ml.local.inert``, built on this).

Numbers: a stored float is what arithmetic left (``0.8399999999999999``,
``1.220871250000073``); ``rounded`` shows it to ``SIGNIFICANT`` digits, and
``decimals`` gives the fixed-point form of a statistic without printing the
309 digits of a reward of 1e308.

Nothing of ours is imported here: logging, the store and every view use it.
"""

from __future__ import annotations

import math
import re
from typing import Any

#: Significant digits of a float shown to a person (``rounded``).
SIGNIFICANT = 6
#: From this magnitude on, ``decimals`` writes an exponent instead of every digit.
FIXED_LIMIT = 1e6

# C0 controls (but a new line, for ``keep_newlines``), DEL and C1 controls (``\x9b``
# is a one-byte CSI on some terminals).
_C0_BUT_NEWLINE = "\x00-\x09\x0b-\x1f"
_DEL_C1 = "\x7f-\x9f"
# Bidirectional controls (ALM, LRM, RLM, embeddings and overrides, isolates) and the
# Unicode line and paragraph separators, which some terminals take as a new line.
_LAYOUT = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_ACTING = re.compile(f"[{_C0_BUT_NEWLINE}\n{_DEL_C1}{_LAYOUT}]")
_ACTING_BUT_NEWLINE = re.compile(f"[{_C0_BUT_NEWLINE}{_DEL_C1}{_LAYOUT}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every character that would act on a terminal or a line's layout
    written as its escape (``\\x1b``, ``\\u202e``); ``keep_newlines`` leaves ``\\n``."""
    return (_ACTING_BUT_NEWLINE if keep_newlines else _ACTING).sub(_escape, text)


def rounded(value: Any) -> Any:
    """``value`` with every float cut to ``SIGNIFICANT`` digits, in lists and dicts too
    (``0.8399999999999999`` is 0.84); non-finite floats and other values as they are."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def decimals(value: float, places: int = 4) -> str:
    """``value`` with ``places`` decimals, or ``places`` significant digits and an exponent
    from ``FIXED_LIMIT`` on (``1e+308``, not 309 digits)."""
    if math.isfinite(value) and abs(value) >= FIXED_LIMIT:
        return f"{value:.{places}g}"
    return f"{value:.{places}f}"
