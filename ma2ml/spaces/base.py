"""Search-space primitives: a decision, an agent's space, the joint space.

An agent's action is one index per decision; the joint action is one such
index list per agent. ``SearchSpace`` converts between indices (what the
learner and the store see) and values (what a trainer sees).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Scalar = str | int | float | bool
Pipeline = dict[str, dict[str, Scalar]]
Action = dict[str, list[int]]

# Size limits of a search space. The learner's critic embeds a joint action
# one-hot over every value of every decision, and exact per-decision credit
# evaluates each value of each decision, so its memory grows with the square
# of the total value count W (about actor_samples * W**2 floats): these caps
# bound it. Every built-in preset, at its largest options, fits.
#: Agents (AutoML modules) in one search.
MAX_AGENTS = 16
#: Decisions one agent controls (autoaugment at its largest has 300).
MAX_DECISIONS_PER_AGENT = 512
#: Candidate values of one decision.
MAX_VALUES_PER_DECISION = 1000
#: Values summed over every decision of every agent (the critic's input width).
MAX_TOTAL_VALUES = 4096


class SpaceError(ValueError):
    """A search space that cannot be built, or an action/pipeline outside it.

    ``loc`` is the field path of the problem inside the agent's description
    (``("options", "stages")``, ``("preset",)``), or empty; ``problem`` is
    the message without it. ``str()`` joins them as ``options.stages: ...``.
    """

    def __init__(self, problem: str, loc: tuple[str | int, ...] = ()) -> None:
        self.problem = problem
        self.loc = loc
        path = ".".join(str(part) for part in loc)
        super().__init__(f"{path}: {problem}" if path else problem)


@dataclass(frozen=True)
class Decision:
    """One categorical choice: a name and its ordered candidate values."""

    name: str
    values: tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise SpaceError(f"decision {self.name!r} has no values")
        if len(self.values) > MAX_VALUES_PER_DECISION:
            raise SpaceError(f"decision {self.name!r} has {len(self.values)} values "
                             f"(limit {MAX_VALUES_PER_DECISION})")
        if len(set(map(_key, self.values))) != len(self.values):
            raise SpaceError(f"decision {self.name!r} has duplicate values")

    @property
    def size(self) -> int:
        return len(self.values)

    def index(self, value: Scalar) -> int:
        for i, candidate in enumerate(self.values):
            if _key(candidate) == _key(value):
                return i
        raise SpaceError(f"{value!r} is not a value of decision {self.name!r}")


def _key(value: Scalar) -> tuple[str, Scalar]:
    # True == 1 == 1.0 in Python; keep them apart so a decision over
    # [0, False] is not a duplicate and 1 never matches True.
    kind = "bool" if isinstance(value, bool) else "num" if isinstance(value, int | float) else "str"
    return kind, value


@dataclass(frozen=True)
class AgentSpace:
    """The decisions one agent (AutoML module) controls."""

    name: str
    decisions: tuple[Decision, ...]
    preset: str | None = None

    @property
    def sizes(self) -> list[int]:
        return [d.size for d in self.decisions]

    @property
    def size(self) -> int:
        return math.prod(self.sizes)

    def encode(self, values: Mapping[str, Scalar]) -> list[int]:
        missing = [d.name for d in self.decisions if d.name not in values]
        if missing:
            raise SpaceError(f"agent {self.name!r}: missing decisions {missing}")
        return [d.index(values[d.name]) for d in self.decisions]

    def decode(self, indices: Sequence[int]) -> dict[str, Scalar]:
        if len(indices) != len(self.decisions):
            raise SpaceError(
                f"agent {self.name!r}: expected {len(self.decisions)} indices, got {len(indices)}"
            )
        out: dict[str, Scalar] = {}
        for decision, i in zip(self.decisions, indices, strict=True):
            if not 0 <= int(i) < decision.size:
                raise SpaceError(f"{self.name}.{decision.name}: index {i} out of range")
            out[decision.name] = decision.values[int(i)]
        return out


@dataclass(frozen=True)
class SearchSpace:
    """The joint space: one ``AgentSpace`` per agent, in spec order."""

    agents: tuple[AgentSpace, ...]

    def __post_init__(self) -> None:
        if not self.agents:
            raise SpaceError("a search space needs at least one agent")

    @property
    def agent_names(self) -> list[str]:
        return [a.name for a in self.agents]

    def agent(self, name: str) -> AgentSpace:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise SpaceError(f"no agent named {name!r}; agents are {self.agent_names}")

    @property
    def size(self) -> int:
        return math.prod(a.size for a in self.agents)

    @property
    def n_decisions(self) -> int:
        return sum(len(a.decisions) for a in self.agents)

    def encode(self, pipeline: Mapping[str, Mapping[str, Scalar]]) -> Action:
        return {a.name: a.encode(pipeline.get(a.name, {})) for a in self.agents}

    def decode(self, action: Mapping[str, Sequence[int]]) -> Pipeline:
        missing = [a.name for a in self.agents if a.name not in action]
        if missing:
            raise SpaceError(f"action lacks agents {missing}")
        return {a.name: a.decode(action[a.name]) for a in self.agents}

    def describe(self) -> list[dict[str, Any]]:
        """Rows for a human: agent, preset, decision count and space size."""
        return [
            {
                "agent": a.name,
                "preset": a.preset or "custom",
                "decisions": len(a.decisions),
                "size": a.size,
            }
            for a in self.agents
        ]
