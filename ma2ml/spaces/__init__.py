"""Search spaces: decisions, agents, the joint space and the built-in presets.

``build_space`` turns agent descriptions (preset + options, or custom
decisions) into a ``SearchSpace``; it depends on nothing else in ma2ml.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ma2ml.spaces.base import (
    MAX_AGENTS,
    MAX_DECISIONS_PER_AGENT,
    MAX_TOTAL_VALUES,
    MAX_VALUES_PER_DECISION,
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
            raise SpaceError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})",
                             ("preset",))
        built = PRESETS[preset].decisions(options)
    else:
        built = [Decision(n, tuple(v)) for n, v in decisions]
    if len(built) > MAX_DECISIONS_PER_AGENT:
        raise SpaceError(f"agent {name!r} has {len(built)} decisions "
                         f"(limit {MAX_DECISIONS_PER_AGENT})")
    names = [d.name for d in built]
    if len(set(names)) != len(names):
        raise SpaceError(f"agent {name!r} has duplicate decision names")
    return AgentSpace(name=name, decisions=tuple(built), preset=preset)


def build_space(agents: Iterable[AgentSpace]) -> SearchSpace:
    """The joint space of ``agents``; refuses duplicate names and a space over the limits."""
    agents = tuple(agents)
    names = [a.name for a in agents]
    if len(names) > MAX_AGENTS:
        raise SpaceError(f"{len(names)} agents (limit {MAX_AGENTS})")
    if len(set(names)) != len(names):
        raise SpaceError(f"agent names must be unique, got {names}")
    total = sum(sum(a.sizes) for a in agents)
    if total > MAX_TOTAL_VALUES:
        raise SpaceError(f"the agents' decisions have {total} values in all "
                         f"(limit {MAX_TOTAL_VALUES}, the learner's critic input width)")
    return SearchSpace(agents)


__all__ = [
    "AUGMENT_OPS", "MAX_AGENTS", "MAX_DECISIONS_PER_AGENT", "MAX_TOTAL_VALUES",
    "MAX_VALUES_PER_DECISION", "PRESETS", "Action", "AgentSpace", "Decision", "Pipeline", "Preset",
    "Scalar", "SearchSpace", "SpaceError", "build_agent", "build_space",
]
