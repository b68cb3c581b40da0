"""Learning-curve tasks for the multi-fidelity simulator: what a trial costs and reaches.

A task is a categorical search space (``ma2ml.spaces``) and, for every joint
action, a learning curve: validation accuracy after each epoch and the
cumulative seconds it took to get there. ``multi_fidelity.py`` replays those
curves on a simulated clock.

* ``lcbench-<task id>``: YAHPO Gym's LCBench surrogate (``benchmarks/data/lcbench``,
  Apache-2.0; see its README), MLPs on OpenML tasks. The seven hyperparameters
  on the README's cell-centred grid (131,250 configurations), split into two
  agents: ``net`` (layers, units, dropout) and ``sgd`` (batch size, learning
  rate, momentum, weight decay). The surrogate's epoch 1 is the untrained
  network and epoch 52 an artefact of the logging (the maintainers' words), so
  fidelity k = 1..50 is surrogate epoch k + 1; the cost of reaching it is the
  running maximum of the surrogate's cumulative ``time`` up to that epoch (0.4 %
  of its steps are negative), the untrained evaluation included. The regret
  reference is the exact grid optimum at epoch 50.

Only the 12 LCBench tasks named in ``DEVELOPMENT_TASKS`` are for tuning and
reporting; the other 22 are held out for evaluation (any id is accepted).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ma2ml.spaces import AgentSpace, Decision, SearchSpace

DATA = Path(__file__).resolve().parent / "data"

#: The LCBench tasks for tuning and reporting; the other 22 are held out.
DEVELOPMENT_TASKS = ("3945", "7593", "34539", "126025", "146212", "167104", "167149",
                     "167168", "167181", "168868", "189354", "189906")

#: The README's cell-centred grid: never the float bounds (the surrogate extrapolates
#: at the box corners).
LCBENCH_GRID: dict[str, tuple[float, ...]] = {
    "num_layers": (1, 2, 3, 4, 5),
    "max_units": (64, 128, 256, 512, 1024),
    "max_dropout": (0.1, 0.3, 0.5, 0.7, 0.9),
    "batch_size": (16, 32, 64, 128, 256, 512),
    "learning_rate": (1.64e-4, 4.39e-4, 1.18e-3, 3.16e-3, 8.48e-3, 2.28e-2, 6.11e-2),
    "momentum": (0.189, 0.367, 0.545, 0.723, 0.901),
    "weight_decay": (0.01, 0.03, 0.05, 0.07, 0.09),
}
LCBENCH_AGENTS = {"net": ("num_layers", "max_units", "max_dropout"),
                  "sgd": ("batch_size", "learning_rate", "momentum", "weight_decay")}
#: The surrogate's continuous inputs, in its order (after the epoch).
LCBENCH_INPUTS = ("batch_size", "learning_rate", "momentum", "weight_decay", "num_layers",
                  "max_units", "max_dropout")
LCBENCH_EPOCHS = 50  # fidelity k is surrogate epoch k + 1 (2..51)


@dataclass(frozen=True)
class Curve:
    """One joint action trained to full fidelity: accuracy (0-1) after each epoch and
    the cumulative seconds to reach it (non-decreasing)."""

    values: np.ndarray  # (max_epochs,)
    seconds: np.ndarray  # (max_epochs,)


@dataclass
class Task:
    """A search space with a learning curve for every joint action.

    ``optimum`` is the best final accuracy over the space (the regret reference),
    ``mean`` the mean one (what a uniform pick is worth), ``median_seconds`` the median
    cost of a full training (the budgets' unit).
    """

    name: str
    space: SearchSpace
    max_epochs: int
    optimum: float
    mean: float
    median_seconds: float
    _curves: dict[tuple[int, ...], Curve] = field(default_factory=dict, repr=False)

    def curve(self, row: Sequence[int]) -> Curve:
        """The curve of one joint action, as a row of value indices in layout order."""
        key = tuple(int(v) for v in row)
        if key not in self._curves:
            self._curves[key] = self._compute(np.array([key]))[0]
        return self._curves[key]

    def _compute(self, rows: np.ndarray) -> list[Curve]:
        raise NotImplementedError


class LCBenchTask(Task):
    """One OpenML task of the LCBench surrogate (see the module docstring)."""

    def __init__(self, task_id: str) -> None:
        code = _lcbench_codes().get(str(task_id))
        if code is None or str(task_id) == "167083":
            known = sorted(c for c in _lcbench_codes() if c not in ("#na#", "167083"))
            raise ValueError(f"unknown LCBench task {task_id!r} (known: {', '.join(known)})")
        self.code = code
        space = SearchSpace(tuple(
            AgentSpace(agent, tuple(Decision(n, LCBENCH_GRID[n]) for n in names))
            for agent, names in LCBENCH_AGENTS.items()))
        # Value tables in layout order, so a row of indices maps to raw inputs by gather.
        self._order = [n for names in LCBENCH_AGENTS.values() for n in names]
        super().__init__(f"lcbench-{task_id}", space, LCBENCH_EPOCHS, 0.0, 0.0, 0.0)
        self.optimum, self.mean, self.median_seconds = self._grid_statistics()

    def _raw(self, rows: np.ndarray) -> np.ndarray:
        """(n, 7) raw hyperparameters in the surrogate's input order."""
        by_name = {n: np.asarray(LCBENCH_GRID[n], dtype=np.float64)[rows[:, i]]
                   for i, n in enumerate(self._order)}
        return np.stack([by_name[n] for n in LCBENCH_INPUTS], axis=1)

    def _predict(self, raw: np.ndarray, epoch: np.ndarray) -> np.ndarray:
        """Surrogate outputs (time, val_accuracy %) for raw inputs at surrogate epochs."""
        x_cont = np.concatenate([epoch[:, None], raw], axis=1).astype(np.float32)
        x_cat = np.full((len(raw), 1), self.code, dtype=np.int32)
        out = _lcbench_session().run(None, {"x_cat": x_cat, "x_cont": x_cont})[0]
        return out[:, :2].astype(np.float64)

    def _compute(self, rows: np.ndarray) -> list[Curve]:
        epochs = np.arange(1, LCBENCH_EPOCHS + 2, dtype=np.float64)  # 1 (untrained) .. 51
        raw = np.repeat(self._raw(rows), len(epochs), axis=0)
        out = self._predict(raw, np.tile(epochs, len(rows))).reshape(len(rows), len(epochs), 2)
        seconds = np.maximum.accumulate(out[:, :, 0], axis=1)[:, 1:]
        values = out[:, 1:, 1] / 100.0
        return [Curve(v, s) for v, s in zip(values, seconds, strict=True)]

    def _grid_statistics(self) -> tuple[float, float, float]:
        """The exact grid optimum and mean at full fidelity, and the median full-training
        cost (the running maximum of time is approximated by the final time here)."""
        sizes = [len(LCBENCH_GRID[n]) for n in self._order]
        values, times = [], []
        for chunk in _chunks(itertools.product(*map(range, sizes)), 32_768):
            raw = self._raw(np.array(chunk))
            out = self._predict(raw, np.full(len(raw), LCBENCH_EPOCHS + 1.0))
            values.append(out[:, 1] / 100.0)
            times.append(out[:, 0])
        every = np.concatenate(values)
        return float(every.max()), float(every.mean()), float(np.median(np.concatenate(times)))


def _chunks(items: itertools.product, size: int) -> list[list[tuple[int, ...]]]:
    out, chunk = [], []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            out.append(chunk)
            chunk = []
    return out + ([chunk] if chunk else [])


@functools.cache
def _lcbench_codes() -> dict[str, int]:
    return json.loads((DATA / "lcbench" / "encoding.json").read_text())["OpenML_task_id"]


@functools.cache
def _lcbench_session():  # noqa: ANN202 - onnxruntime is an optional (bench) dependency
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one process per core runs the seeds
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(DATA / "lcbench" / "model.onnx"), options,
                                        providers=["CPUExecutionProvider"])


@functools.cache
def load_task(name: str) -> Task:
    """A task by name: ``lcbench-<OpenML task id>``."""
    family, _, instance = name.partition("-")
    if family == "lcbench" and instance:
        return LCBenchTask(instance)
    raise ValueError(f"unknown task {name!r} (known: lcbench-<OpenML task id>)")
