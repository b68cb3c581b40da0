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
* ``nb301``: YAHPO Gym's NAS-Bench-301 surrogate, v2 (``benchmarks/data/nb301``,
  Apache-2.0; see ``benchmarks/data/README.md``), DARTS cells on CIFAR-10. One
  agent per cell, ``normal`` and ``reduce``, each with DARTS' genotype as 11
  decisions: the operations on the two edges into node 2 (``node2_op0``,
  ``node2_op1``), and for nodes 3, 4 and 5 the pair of earlier nodes it reads
  (``node<n>_inputs``) and the operations on those two edges (``node<n>_op0`` on
  the pair's first, ``node<n>_op1`` on its second). The config space's 24
  conditional edges are thus never a decision: an edge is active when its node's
  pair names its input, and gets its node's operation; every other edge is
  inactive and goes to the surrogate as ``#na#`` (code 0), as the data's README
  says. Every joint action is one valid cell and every cell one joint action
  (about 1e18). Fidelity k = 1..98 is surrogate epoch k (all the surrogate
  knows); the cost of reaching it is the running maximum of its cumulative
  ``runtime`` (1.8 % of its steps are not positive). The space is too big to
  enumerate, so the regret reference is the best final accuracy found by a
  fixed, seeded search computed at load (a few seconds): a uniform sample of
  ``NB301_SAMPLE`` cells, then best-improvement local search (one decision
  changed at a time, to a local optimum) from its ``NB301_STARTS`` best. It
  reaches 0.9448 where the sample's best is 0.9372, and 8, 32 and 128 starts
  all end at that same cell: the best known, not a proven optimum (a method
  that beats it scores a negative regret). ``mean`` and ``median_seconds`` are
  the sample's.
* ``fmnist-curves``: the 54 real learning curves of
  ``benchmarks/results/learning_curves_{77,78}.json`` (``early_stopping_replay.py
  --collect``): uniform random pipelines of ``time_to_accuracy.py``'s measured
  space (agents ``aug``, ``nas``, ``hpo``; 25 decisions, all of which vary among
  the 54) trained on real Fashion-MNIST for 9 epochs, validation accuracy and
  wall seconds after each. The space is that whole space, and the curves a
  nearest-neighbour tabular surrogate: a joint action replays the measured
  pipeline that differs from it in the fewest decisions (Hamming distance),
  the first in (collection seed, pipeline index) order among equally near ones
  (which favours the early ones: a uniform joint action ties often, typically
  13-15 decisions away). ``optimum`` is the best measured final accuracy
  (exact: every joint action replays a measured one); ``mean`` and
  ``median_seconds`` are those of the pipelines that ``FMNIST_SAMPLE`` uniform
  joint actions map to.

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

#: A DARTS edge's operations, in the config space's order.
NB301_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5")
#: The input pairs intermediate node n may take (0 and 1 are the cell's inputs, 2.. its
#: earlier intermediate nodes), in the config space's order.
NB301_PAIRS = {n: tuple(f"{i}_{j}" for i in range(n) for j in range(i + 1, n)) for n in (3, 4, 5)}
NB301_CELLS = ("normal", "reduce")
NB301_EPOCHS = 98
NB301_PREFIX = "NetworkSelectorDatasetInfo_COLON_darts_COLON_"
#: The uniform sample and the local searches that set the regret reference.
NB301_SAMPLE, NB301_STARTS, NB301_SEED = 100_000, 32, 301

#: The collections of real Fashion-MNIST learning curves (``early_stopping_replay.py``).
FMNIST_CURVES = tuple(DATA.parent / "results" / f"learning_curves_{seed}.json"
                      for seed in (77, 78))
#: The uniform sample that gives ``fmnist-curves`` its mean and median cost.
FMNIST_SAMPLE, FMNIST_SEED = 20_000, 54


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


class NB301Task(Task):
    """NAS-Bench-301's DARTS cells on CIFAR-10 (see the module docstring)."""

    def __init__(self) -> None:
        decisions = [Decision("node2_op0", NB301_OPS), Decision("node2_op1", NB301_OPS)]
        for node in (3, 4, 5):
            decisions += [Decision(f"node{node}_inputs", NB301_PAIRS[node]),
                          Decision(f"node{node}_op0", NB301_OPS),
                          Decision(f"node{node}_op1", NB301_OPS)]
        space = SearchSpace(tuple(AgentSpace(cell, tuple(decisions)) for cell in NB301_CELLS))
        super().__init__("nb301", space, NB301_EPOCHS, 0.0, 0.0, 0.0)
        self.optimum, self.mean, self.median_seconds = self._reference()

    @staticmethod
    def _encode(rows: np.ndarray) -> np.ndarray:
        """(n, 34) surrogate codes of (n, 22) value indices: a node's two operations go to
        the edges from its chosen inputs, every other edge is inactive (code 0)."""
        codes = _nb301_codes()
        x_cat = np.zeros((len(rows), 34), dtype=np.int32)
        n = np.arange(len(rows))
        for c in range(len(NB301_CELLS)):
            row = rows[:, 11 * c:11 * (c + 1)]
            edge = 14 * c  # this cell's edge_<cell>_0
            x_cat[:, edge] = codes[edge][row[:, 0]]
            x_cat[:, edge + 1] = codes[edge + 1][row[:, 1]]
            for k, node in enumerate((3, 4, 5)):
                column = 28 + 3 * c + k  # inputs_node_<cell>_<node>
                pair = row[:, 2 + 3 * k]
                x_cat[:, column] = codes[column][pair]
                # Node n's edges from inputs 0..n-1 are edges n(n-1)/2 - 1 .. on.
                ends = np.array([tuple(map(int, p.split("_"))) for p in NB301_PAIRS[node]])
                for side in (0, 1):  # every edge column codes the operations alike
                    target = edge + node * (node - 1) // 2 - 1 + ends[pair, side]
                    x_cat[n, target] = codes[edge][row[:, 3 + 3 * k + side]]
        return x_cat

    @staticmethod
    def _predict(x_cat: np.ndarray, epoch: np.ndarray) -> np.ndarray:
        """Surrogate outputs (val_accuracy 0-1, runtime s) at the given epochs."""
        out = _nb301_session().run(None, {"x_cat": x_cat,
                                          "x_cont": epoch[:, None].astype(np.float32)})[0]
        return out[:, [0, 2]].astype(np.float64)

    def _compute(self, rows: np.ndarray) -> list[Curve]:
        epochs = np.arange(1, NB301_EPOCHS + 1, dtype=np.float64)
        x_cat = np.repeat(self._encode(rows), len(epochs), axis=0)
        out = self._predict(x_cat, np.tile(epochs, len(rows))).reshape(len(rows), len(epochs), 2)
        seconds = np.maximum(np.maximum.accumulate(out[:, :, 1], axis=1), 1e-3)
        values = np.clip(out[:, :, 0], 0.0, 1.0)
        return [Curve(v, s) for v, s in zip(values, seconds, strict=True)]

    def _final(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Final accuracy and runtime (at epoch 98) of many rows, in one call per chunk."""
        values, times = [], []
        for start in range(0, len(rows), 32_768):
            x_cat = self._encode(rows[start:start + 32_768])
            out = self._predict(x_cat, np.full(len(x_cat), float(NB301_EPOCHS)))
            values.append(np.clip(out[:, 0], 0.0, 1.0))
            times.append(out[:, 1])
        return np.concatenate(values), np.concatenate(times)

    def _reference(self) -> tuple[float, float, float]:
        """The regret reference: the best final accuracy of a fixed uniform sample of
        ``NB301_SAMPLE`` cells, improved by best-improvement local search (one decision
        changed at a time, to a local optimum) from its ``NB301_STARTS`` best; and the
        sample's mean final accuracy and median final runtime."""
        sizes = np.array([d.size for a in self.space.agents for d in a.decisions])
        rng = np.random.default_rng(NB301_SEED)
        sample = (rng.random((NB301_SAMPLE, len(sizes))) * sizes).astype(np.int64)
        values, times = self._final(sample)
        starts = np.argsort(-values, kind="stable")[:NB301_STARTS]
        current, best = sample[starts], values[starts]
        moves = [(i, v) for i, size in enumerate(sizes) for v in range(size)]
        for _ in range(100):  # a bound only: the searches end at local optima well before
            # (starts, moves, decisions): every single-decision change of every start.
            neighbours = np.repeat(current[:, None, :], len(moves), axis=1)
            for m, (i, v) in enumerate(moves):
                neighbours[:, m, i] = v
            scores = self._final(neighbours.reshape(-1, len(sizes)))[0].reshape(len(current), -1)
            pick = scores.argmax(axis=1)
            better = scores[np.arange(len(current)), pick] > best
            if not better.any():
                break
            current[better] = neighbours[better, pick[better]]
            best[better] = scores[better, pick[better]]
        return float(max(best.max(), values.max())), float(values.mean()), \
            float(np.median(times))


class FashionMNISTCurvesTask(Task):
    """Real Fashion-MNIST trainings replayed by nearest neighbour (see the module
    docstring)."""

    def __init__(self) -> None:
        from time_to_accuracy import spec_for  # the space the curves were measured on

        from ma2ml.spec import parse_spec

        space = parse_spec(spec_for("ma2ml", 0, 9, False)).spec.search_space()
        rows, values, seconds, epochs = _fmnist_measured(space)
        self.rows = rows  # (pipelines, decisions), in (collection, index) order
        self._measured = [Curve(v, s) for v, s in zip(values, seconds, strict=True)]
        super().__init__("fmnist-curves", space, epochs, float(values[:, -1].max()), 0.0, 0.0)
        sizes = np.array([d.size for a in space.agents for d in a.decisions])
        rng = np.random.default_rng(FMNIST_SEED)
        nearest = self.nearest((rng.random((FMNIST_SAMPLE, len(sizes))) * sizes).astype(np.int64))
        self.mean = float(values[nearest, -1].mean())
        self.median_seconds = float(np.median(seconds[nearest, -1]))

    def nearest(self, rows: np.ndarray) -> np.ndarray:
        """The measured pipeline nearest each row: fewest decisions that differ, the
        first in (collection, index) order among equals."""
        out = []
        for start in range(0, len(rows), 4096):
            chunk = rows[start:start + 4096]
            distance = (chunk[:, None, :] != self.rows[None, :, :]).sum(axis=2)
            out.append(distance.argmin(axis=1))  # argmin: the first of the ties
        return np.concatenate(out)

    def _compute(self, rows: np.ndarray) -> list[Curve]:
        return [self._measured[i] for i in self.nearest(rows)]


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
    return _onnx_session(DATA / "lcbench" / "model.onnx")


def _onnx_session(path: Path):  # noqa: ANN202 - as _lcbench_session
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # one process per core runs the seeds
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@functools.cache
def _nb301_codes() -> np.ndarray:
    """(34, 11) code of each value index per ``x_cat`` column (edges: ``NB301_OPS``;
    input nodes: ``NB301_PAIRS``), from ``encoding_v2.json``."""
    encoding = json.loads((DATA / "nb301" / "encoding_v2.json").read_text())
    columns = [(f"edge_{cell}_{k}", NB301_OPS) for cell in NB301_CELLS for k in range(14)]
    columns += [(f"inputs_node_{cell}_{n}", NB301_PAIRS[n]) for cell in NB301_CELLS
                for n in (3, 4, 5)]
    codes = np.zeros((len(columns), 11), dtype=np.int32)
    for c, (name, values) in enumerate(columns):
        codes[c, :len(values)] = [encoding[NB301_PREFIX + name][v] for v in values]
    return codes


@functools.cache
def _nb301_session():  # noqa: ANN202 - as _lcbench_session
    return _onnx_session(DATA / "nb301" / "model_v2.onnx")


def _fmnist_measured(space: SearchSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The full-fidelity pipelines of ``FMNIST_CURVES`` as (value indices, accuracy,
    running-maximum seconds) arrays, in (collection, index) order, and their epochs."""
    found, epochs = [], set()
    for path in FMNIST_CURVES:
        document = json.loads(path.read_text())
        epochs.add(document["epochs"])
        for record in document["pipelines"]:
            if len(record.get("accuracy", ())) != document["epochs"]:
                continue  # a failed pipeline
            row = [v for a in space.agents for v in record["action"][a.name]]
            found.append(((document["seed"], record["index"]), row, record["accuracy"],
                          record["seconds"]))
    if len(epochs) != 1:
        raise ValueError(f"{FMNIST_CURVES} disagree on the epochs: {sorted(epochs)}")
    found.sort(key=lambda f: f[0])
    rows = np.array([f[1] for f in found], dtype=np.int64)
    sizes = np.array([d.size for a in space.agents for d in a.decisions])
    if rows.shape[1] != len(sizes) or (rows >= sizes).any() or (rows < 0).any():
        raise ValueError("the measured pipelines do not fit time_to_accuracy's space")
    values = np.array([f[2] for f in found], dtype=np.float64)
    seconds = np.maximum.accumulate(np.array([f[3] for f in found], dtype=np.float64), axis=1)
    return rows, values, seconds, epochs.pop()


#: The task names ``load_task`` knows, for its error and ``--tasks``' help.
KNOWN_TASKS = "lcbench-<OpenML task id>, nb301, fmnist-curves"


@functools.cache
def load_task(name: str) -> Task:
    """A task by name: ``lcbench-<OpenML task id>``, ``nb301`` or ``fmnist-curves``."""
    if name == "nb301":
        return NB301Task()
    if name == "fmnist-curves":
        return FashionMNISTCurvesTask()
    family, _, instance = name.partition("-")
    if family == "lcbench" and instance:
        return LCBenchTask(instance)
    raise ValueError(f"unknown task {name!r} (known: {KNOWN_TASKS})")
