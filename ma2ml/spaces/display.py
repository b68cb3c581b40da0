"""A sampled pipeline as short text, for the CR status, the live view and CLI tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def compact_pipeline(pipeline: Mapping[str, Any], *, max_decisions: int | None = None,
                     max_chars: int | None = None) -> dict[str, str]:
    """``{"aug": {"sp0_op0": "rotate", ...}}`` -> ``{"aug": "sp0_op0=rotate, ..."}``.

    ``max_decisions`` keeps the first decisions and says how many more there are;
    ``max_chars`` caps each agent's text (the CR status must stay small).
    """
    compact = {}
    for agent, decisions in pipeline.items():
        if isinstance(decisions, Mapping):
            items = [f"{name}={value}" for name, value in decisions.items()]
            shown = items if max_decisions is None else items[:max_decisions]
            more = f", +{len(items) - len(shown)} more" if len(shown) < len(items) else ""
            text = ", ".join(shown) + more
        else:
            text = str(decisions)
        if max_chars is not None and len(text) > max_chars:
            text = text[:max_chars - 3] + "..."
        compact[str(agent)] = text
    return compact
