"""What early stopping buys on the example's space: real learning curves, replayed.

A real time-to-accuracy run (``time_to_accuracy.py``) gives one noisy sample
per method and seed, and on 2 CPU cores 300 s of it buy a handful of
trainings. This script measures the stopping rules themselves, precisely:

1. ``--collect N``: train N uniform random pipelines of the benchmark's space
   (``time_to_accuracy.spec_for``: real Fashion-MNIST, the built-in trainer,
   ``--epochs`` epochs) to full fidelity, 2 at a time with one torch thread
   each, as ``ma2ml run``'s 2 local workers do, recording every epoch's
   validation accuracy and the wall time at which it was known.
2. Replay (the default): random search over the collected pipelines, drawn
   with replacement in thousands of orders (a bootstrap of uniform draws),
   on 2 simulated workers, once with each rule and once without early
   stopping on the same order. Each decision is ma2ml's own
   (``ma2ml.store.stopping.judged`` and ``decide``, the functions the store
   calls); a stopped trial frees its worker at the epoch it was stopped.

For every budget and rule the table gives the median, over orders, of the
time early stopping needed to reach the final best (at the budget) of no
early stopping, as a fraction of the time no early stopping took (inf when
it never got there), the share of orders in which that fraction is at most
0.5, the mean best accuracy at the budget, and how many full trainings no
early stopping fits in the budget (median). It measures the rule, not the
learner: a learner can only do better than uniform draws on top of it.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/early_stopping_replay.py \\
        [--curves JSON ...] [--budgets S ...] [--orders N]
    PYTHONPATH=. .venv/bin/python benchmarks/early_stopping_replay.py \\
        --collect 26 --collect-seed 77 --out DIR   # about a minute a pipeline here

The replay reads ``benchmarks/results/learning_curves_*.json`` (one file per
collection) unless ``--curves`` names others, and prints its table; ``--out``
also writes it (``make bench`` writes ``benchmarks/results/``). A collection
writes ``DIR/learning_curves_SEED.json``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ma2ml.spec import EarlyStopping
from ma2ml.store.stopping import StepDecision, decide, judged

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the sibling script, also in spawned workers
from time_to_accuracy import best_at, spec_for, time_to  # noqa: E402

#: The committed collections, one file per ``--collect-seed``.
CURVES = sorted((ROOT / "benchmarks" / "results").glob("learning_curves_*.json"))
#: The rules replayed: ASHA at every first rung and factor worth trying on 9 epochs,
#: and median stopping.
RULES = (
    [{"type": "asha", "minEpochs": m, "reductionFactor": f}
     for m, f in ((1, 3), (2, 2), (2, 3), (3, 2), (3, 3), (4, 2))]
    + [{"type": "median", "minEpochs": m, "minTrials": 5} for m in (2, 4)]
)


@dataclass(frozen=True)
class Curve:
    """One pipeline trained to full fidelity: seconds since its start and validation
    accuracy, after each epoch."""

    seconds: list[float]
    accuracy: list[float]


# -- collecting curves -----------------------------------------------------------------


def _train_one(job: tuple[int, int, int]) -> dict[str, Any]:
    """In a worker process: one uniform random pipeline, every epoch recorded."""
    index, seed, epochs = job
    import torch

    from ma2ml.spec import parse_spec
    from ma2ml.trainer.train import run_trial

    torch.set_num_threads(1)
    search = parse_spec(spec_for("ma2ml", 0, epochs, False))
    space = search.spec.search_space()
    rng = random.Random(seed * 1000 + index)  # pipeline ``index`` of collection ``seed``
    action = {a.name: [rng.randrange(d.size) for d in a.decisions] for a in space.agents}
    seconds: list[float] = []
    accuracy: list[float] = []
    started = time.perf_counter()

    def on_epoch(epoch: int, reward: float, metrics: dict[str, Any]) -> bool:
        seconds.append(time.perf_counter() - started)
        accuracy.append(float(metrics["accuracy"]))
        return True

    try:
        run_trial(search, space.decode(action), seed=index, on_epoch=on_epoch)
    except Exception as exc:  # a failed pipeline is a result too; the replay skips it
        return {"index": index, "action": action, "error": str(exc)}
    return {"index": index, "action": action, "seconds": seconds, "accuracy": accuracy}


def collect(count: int, seed: int, epochs: int, path: Path) -> None:
    """Train ``count`` pipelines, 2 at a time; ``path`` is rewritten after each."""
    done: list[dict[str, Any]] = []
    with mp.get_context("spawn").Pool(2) as pool:
        for record in pool.imap_unordered(_train_one, [(i, seed, epochs)
                                                       for i in range(count)]):
            done.append(record)
            path.write_text(json.dumps({"seed": seed, "epochs": epochs,
                                        "pipelines": done}, indent=1) + "\n")
            print(f"{len(done)}/{count}: {record.get('accuracy', record.get('error'))}",
                  flush=True)


def load_curves(paths: Sequence[Path]) -> list[Curve]:
    """The full-fidelity curves of the collected files (failed pipelines left out)."""
    curves = []
    for path in paths:
        try:
            document = json.loads(path.read_text())
            for record in document["pipelines"]:
                if len(record.get("accuracy", ())) == document["epochs"]:
                    curves.append(Curve(record["seconds"], record["accuracy"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SystemExit(f"{path}: not a learning-curves file of --collect ({exc!r})") \
                from exc
    if not curves:
        raise SystemExit(f"no full-fidelity curves in {', '.join(map(str, paths))}")
    return curves


# -- replay ----------------------------------------------------------------------------


def replay(curves: Sequence[Curve], order: Iterator[int], rule: EarlyStopping | None,
           budget: float, workers: int = 2) -> list[tuple[float, float]]:
    """(time, accuracy) of each pipeline trained to full fidelity within ``budget``,
    the pipelines started in ``order`` on ``workers`` simulated workers."""
    recorded: dict[int, list[float]] = {}
    found: list[tuple[float, float]] = []
    events: list[tuple[float, int, int, int, float]] = []  # (time, worker, pipeline, epoch, start)
    for worker in range(workers):
        first = next(order)
        events.append((curves[first].seconds[0], worker, first, 1, 0.0))
    heapq.heapify(events)
    while events:
        now, worker, index, epoch, start = heapq.heappop(events)
        if now > budget:
            continue  # this worker's trial did not finish its epoch in time
        curve = curves[index]
        value = curve.accuracy[epoch - 1]
        last = epoch == len(curve.accuracy)
        stop = last
        if not last and rule is not None and judged(rule, epoch, len(curve.accuracy)):
            peers = recorded.setdefault(epoch, [])
            stop = decide(rule, value, peers) == StepDecision.stop
            peers.append(value)
        if last:
            found.append((now, value))
        if stop:
            nxt = next(order)
            heapq.heappush(events, (now + curves[nxt].seconds[0], worker, nxt, 1, now))
        else:
            heapq.heappush(events, (start + curve.seconds[epoch], worker, index, epoch + 1,
                                    start))
    return found


def cut(found: Sequence[tuple[float, float]], budget: float) -> list[tuple[float, float]]:
    """The results of a replay found within ``budget``."""
    return [(t, acc) for t, acc in found if t <= budget]


def draws(n: int, seed: int) -> Iterator[int]:
    """An endless order of uniform draws (with replacement) of the n pipelines."""
    rng = np.random.default_rng(seed)
    while True:
        yield from rng.integers(n, size=64).tolist()


def rule_name(rule: dict[str, Any]) -> str:
    if rule["type"] == "asha":
        return f"asha min {rule['minEpochs']} eta {rule['reductionFactor']}"
    return f"median from {rule['minEpochs']}"


def rank_correlations(curves: Sequence[Curve]) -> list[float]:
    """Spearman correlation of each epoch's accuracy with the last epoch's."""
    table = np.array([c.accuracy for c in curves])
    ranks = table.argsort(axis=0).argsort(axis=0)
    return [float(np.corrcoef(ranks[:, k], ranks[:, -1])[0, 1]) for k in range(table.shape[1])]


def summarise(curves: Sequence[Curve], budgets: Sequence[float], orders: int) -> str:
    epochs = len(curves[0].accuracy)
    full = [c.seconds[-1] for c in curves]
    lines = [f"{len(curves)} pipelines trained to {epochs} epochs; seconds per full "
             f"training median {statistics.median(full):.0f} [{min(full):.0f}, "
             f"{max(full):.0f}]; best final accuracy {max(c.accuracy[-1] for c in curves):.3f}",
             "", "Spearman correlation of epoch k's accuracy with the final one: "
             + ", ".join(f"{k + 1}: {r:.2f}" for k, r in enumerate(rank_correlations(curves))),
             "", "| budget (s) | rule | time to no-ES best (ratio, median) | ratio <= 0.5 "
             "| never | mean best at budget | no-ES mean best | no-ES trainings |",
             "|---|---|---|---|---|---|---|---|"]
    # One replay per rule and order, to the longest budget: cut at a shorter one it is
    # what a replay to that budget finds, since no decision looks ahead.
    longest, n = max(budgets), len(curves)
    plain_runs = [replay(curves, draws(n, k), None, longest) for k in range(orders)]
    rule_runs = [[replay(curves, draws(n, k), EarlyStopping.model_validate(spec), longest)
                  for k in range(orders)] for spec in RULES]
    for budget in budgets:
        plain = [cut(f, budget) for f in plain_runs]
        plain_best = [best_at(f, budget) for f in plain]
        plain_mean = np.mean([b for b in plain_best if b is not None])
        trainings = statistics.median(len(f) for f in plain)
        for spec, runs in zip(RULES, rule_runs, strict=True):
            ratios, bests = [], []
            for found, base, target in zip(runs, plain, plain_best, strict=True):
                found = cut(found, budget)
                bests.append(best_at(found, budget) or 0.0)
                if target is None:
                    continue
                fast, slow = time_to(found, target), time_to(base, target)
                ratios.append(np.inf if fast is None or slow is None else fast / slow)
            r = np.array(ratios)
            lines.append(f"| {budget:.0f} | {rule_name(spec)} | {np.median(r):.2f} | "
                         f"{np.mean(r <= 0.5):.2f} | {np.mean(np.isinf(r)):.2f} | "
                         f"{np.mean(bests):.4f} | {plain_mean:.4f} | {trainings:.0f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--curves", type=Path, nargs="+", default=CURVES)
    parser.add_argument("--budgets", type=float, nargs="+", default=[300, 600, 1200, 2400, 4800])
    parser.add_argument("--orders", type=int, default=1000, help="bootstrap orders per budget")
    parser.add_argument("--collect", type=int, default=0, metavar="N",
                        help="train N new pipelines instead of replaying")
    parser.add_argument("--collect-seed", type=int, default=0,
                        help="which uniform draws (the committed curves: 77)")
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 0 <= args.collect < 1000:  # the draws of collection k are seeded k*1000 + index
        parser.error("--collect: from 1 to 999 pipelines")
    if not 1 <= args.orders <= 100_000:
        parser.error(f"--orders: from 1 to 100000, got {args.orders}")
    if not all(0 < b <= 86_400 for b in args.budgets):
        parser.error(f"--budgets: seconds in (0, 86400], got {args.budgets}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out
    if args.collect:
        out = out or Path(tempfile.mkdtemp(prefix="early_stopping_replay-"))
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"learning_curves_{args.collect_seed}.json"
        collect(args.collect, args.collect_seed, args.epochs, path)
        print(f"wrote {path}")
        return 0
    table = summarise(load_curves(args.curves), args.budgets, args.orders)
    print(table)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "early_stopping_replay.md").write_text(table + "\n")
        print(f"\nwrote {out}/early_stopping_replay.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
