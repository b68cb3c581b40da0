"""Stored values as inert terminal text: what a trainer or spec wrote is never markup.

A decision value ``[link=http://evil.example]click[/link]`` or an ANSI escape
in an error tail must print as the characters it is, in every command and in
the live view alike.
"""

from __future__ import annotations

import re

from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def inert(value: object) -> str:
    """``value`` as text for Rich: markup escaped, control characters shown as ``\\xNN``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))
    return escape(text)
