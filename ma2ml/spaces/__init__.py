"""Search spaces: decisions, agents, the joint space and the built-in presets.

``build_space`` turns agent descriptions (preset + options, or custom
decisions) into a ``SearchSpace``; it depends on nothing else in ma2ml.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ma2ml.spaces.base import (
    Action,
    AgentSpace,
    Decision,
    Pipeline,
    Scalar,
    SearchSpace,
    SpaceError,
)
from ma2ml.spaces.presets import AUGMENT_OPS, PRESETS, Preset


def build_agent(
    name: str,
    preset: str | None = None,
    options: Mapping[str, Any] | None = None,
    decisions: Iterable[tuple[str, Iterable[Scalar]]] = (),
) -> AgentSpace:
    """One agent from a preset (plus options) or from custom ``(name, values)`` pairs."""
    if preset is not None:
        if preset not in PRESETS:
            raise SpaceError(f"preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        built = PRESETS[preset].decisions(options)
    else:
        built = [Decision(n, tuple(v)) for n, v in decisions]
    names = [d.name for d in built]
    if len(set(names)) != len(names):
        raise SpaceError(f"agent {name!r} has duplicate decision names")
    return AgentSpace(name=name, decisions=tuple(built), preset=preset)


def build_space(agents: Iterable[AgentSpace]) -> SearchSpace:
    agents = tuple(agents)
    names = [a.name for a in agents]
    if len(set(names)) != len(names):
        raise SpaceError(f"agent names must be unique, got {names}")
    return SearchSpace(agents)


__all__ = [
    "AUGMENT_OPS", "PRESETS", "Action", "AgentSpace", "Decision", "Pipeline", "Preset",
    "Scalar", "SearchSpace", "SpaceError", "build_agent", "build_space",
]
