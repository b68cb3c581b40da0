"""Scale simulation of the learner (issue 15): many stored trials, many simulated workers.

For each number N of stored trials, on a fresh scratch PostgreSQL database (dropped
afterwards), with the example search space (``examples/fashion-mnist.yaml``: 3
agents, 25 decisions):

1. Fill (set-up, not timed): N finished trials are written straight into the trials
   table in bulk, as the queue leaves them (completed, ``finished_seq`` 1..N, a
   decoded pipeline each).
2. Backlog: a fresh learner (no snapshot) meets all N as unseen results. Reported:
   its first tick, and its intake rate over ``--backlog-seconds`` of ticks, hence the
   time to take in the whole backlog (extrapolated when the window ends first).
3. Sustained: the learner is told the stored trials are learnt (its read position
   jumps to N: what it costs per tick then depends on the table's size, not on having
   learnt every row), then W simulated workers (threads in ``--processes``
   processes sharing ``--connections`` pooled connections each) claim, read the
   search, and complete trials at once (no training) for ``--seconds``. Reported:
   results finished per second, the learner's intake per second, its update time
   (median, p95, max), its queue target, and how often a worker found the queue empty.
4. Restart: a new ``Learner`` on the same store (snapshot, recall of every proposed
   action) and its first tick; the process's one-off imports are already paid.
5. Status: the size of the operator's ``.status`` JSON (``operator/status.py``) at N.

Run (from the repository root, PostgreSQL on 127.0.0.1):
    PYTHONPATH=. .venv/bin/python benchmarks/learner_scale.py \\
        [--stored 10000 100000] [--workers 64 256] [--output benchmarks/results/learner_scale.md]
    PYTHONPATH=. .venv/bin/python benchmarks/learner_scale.py --quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import torch
import yaml
from sqlalchemy import insert, update

from ma2ml.learner.loop import Learner, drive_learner
from ma2ml.learner.policy import Layout
from ma2ml.operator import status as operator_status
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store
from ma2ml.store.models import SEARCHES, TRIALS
from ma2ml.store.notify import queued_channel
from ma2ml.testing.scratch import scratch_database

DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fashion-mnist.yaml"
NAME = "default/scale"
FILL_CHUNK = 5000
WARMUP_SECONDS = 5.0


# -- set-up -------------------------------------------------------------------------------


def search_document(parallelism: int) -> dict[str, Any]:
    """The example search with a budget that never ends during the run."""
    document = yaml.safe_load(EXAMPLE.read_text())
    document["metadata"]["name"] = "scale"
    document["spec"]["budget"].update(maxTrials=1_000_000, maxFailedTrials=1_000_000,
                                      parallelism=parallelism, leaseSeconds=600)
    return spec_to_document(parse_spec(document))


def bulk_fill(store: Store, search_id: int, n: int, seed: int = 0) -> None:
    """Write ``n`` completed trials (finished_seq 1..n) and the search's counters."""
    space = parse_spec(store.get_search_by_id(search_id).spec).spec.search_space()
    layout = Layout.from_space(space)
    rng = random.Random(seed)
    now, best = time.time(), (None, -1.0)
    with store.engine.begin() as connection:
        for start in range(0, n, FILL_CHUNK):
            rows = []
            for number in range(start + 1, min(start + FILL_CHUNK, n) + 1):
                action = layout.to_dict([rng.randrange(size) for size in layout.sizes])
                reward = rng.random()
                best = max(best, (number, reward), key=lambda pair: pair[1])
                rows.append({
                    "search_id": search_id, "number": number, "status": "completed",
                    "attempt": 1, "failures": 0, "pipeline": space.decode(action),
                    "action": action, "behaviour_logp": {a: -1.0 for a in action},
                    "policy_version": 0, "worker": "fill", "created_at": now,
                    "started_at": now, "heartbeat_at": now, "finished_at": now,
                    "finished_seq": number, "reward": reward, "metrics": {"accuracy": reward},
                })
            connection.execute(insert(TRIALS), rows)
        best_id = connection.execute(
            TRIALS.select().with_only_columns(TRIALS.c.id)
            .where(TRIALS.c.search_id == search_id, TRIALS.c.number == best[0])).scalar_one()
        connection.execute(update(SEARCHES).where(SEARCHES.c.id == search_id).values(
            result_seq=n, trial_count=n, best_trial_id=best_id, best_reward=best[1]))
        connection.exec_driver_sql("ANALYZE trials")


# -- simulated workers ---------------------------------------------------------------------


def worker_process(url: str, search_id: int, threads: int, connections: int, index: int,
                   go: Event, halt: Event, out: Any) -> None:
    """``threads`` workers sharing one store: claim, read the search, complete, repeat."""
    totals = {"done": 0, "empty": 0, "claims": 0, "errors": 0}
    lock = threading.Lock()
    with Store(url, migrate=False, pool_size=connections, max_overflow=0) as store:
        def work(name: str) -> None:
            waiter = store.listen(queued_channel(search_id))
            done = empty = claims = errors = 0
            go.wait()
            while not halt.is_set():
                try:
                    trial = store.claim(search_id, name, 600)
                    claims += 1
                    if trial is None:
                        empty += 1
                        waiter.wait(1.0)  # woken when trials are queued
                        continue
                    store.get_search_by_id(search_id)  # a worker's per-trial search read
                    store.complete(trial.id, trial.attempt, random.random(), {"accuracy": 0.5})
                    done += 1
                except Exception:  # noqa: BLE001 - counted and reported, the run goes on
                    errors += 1
                    time.sleep(0.1)
            with lock:
                for key, value in (("done", done), ("empty", empty), ("claims", claims),
                                   ("errors", errors)):
                    totals[key] += value

        pool = [threading.Thread(target=work, args=(f"sim-{index}-{k}",), daemon=True)
                for k in range(threads)]
        for thread in pool:
            thread.start()
        out.put("ready")
        for thread in pool:
            thread.join()
    out.put(totals)


# -- the learner, timed -------------------------------------------------------------------


class TimedLearner(Learner):
    """A ``Learner`` that records each tick's duration, its intake and its queue target."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ticks: list[tuple[float, float, int]] = []  # (end, seconds, results taken in)
        super().__init__(*args, **kwargs)

    def tick(self) -> Any:
        started, seq = time.perf_counter(), self.seq
        outcome = super().tick()
        self.ticks.append((time.perf_counter(), time.perf_counter() - started, self.seq - seq))
        return outcome


@dataclass
class Row:
    """One line of the result table."""

    stored: int
    first_tick: float = float("nan")
    backlog_rate: float = float("nan")
    backlog_seconds: float = float("nan")
    backlog_measured: bool = False
    restart: float = float("nan")
    restart_tick: float = float("nan")
    status_bytes: int = 0
    sustained: list[dict[str, Any]] = field(default_factory=list)


def measure_backlog(store: Store, row: Row, seconds: float) -> TimedLearner:
    learner = TimedLearner(store, NAME)
    started = time.perf_counter()
    learner.tick()
    row.first_tick = time.perf_counter() - started
    while learner.behind and time.perf_counter() - started < seconds:
        learner.tick()
    elapsed = time.perf_counter() - started
    row.backlog_rate = learner.seq / elapsed
    row.backlog_measured = not learner.behind
    row.backlog_seconds = elapsed if row.backlog_measured else row.stored / row.backlog_rate
    return learner


def measure_sustained(store: Store, learner: TimedLearner, url: str, search_id: int,
                      workers: int, args: argparse.Namespace) -> dict[str, Any]:
    store.update_search_spec(NAME, search_document(workers))
    context = multiprocessing.get_context("spawn")
    go, halt, out = context.Event(), context.Event(), context.Queue()
    shares = [workers // args.processes + (k < workers % args.processes)
              for k in range(args.processes)]
    processes = [context.Process(target=worker_process, args=(
        url, search_id, share, min(args.connections, share), k, go, halt, out))
        for k, share in enumerate(shares) if share]
    for process in processes:
        process.start()
    stop = threading.Event()
    driver = threading.Thread(target=drive_learner, args=(learner,),
                              kwargs={"stop": stop, "poll_seconds": 0.5})
    driver.start()
    for _ in processes:  # every process imported, connected and started its threads
        if out.get(timeout=300) != "ready":
            raise RuntimeError("a worker process did not start")
    go.set()
    time.sleep(WARMUP_SECONDS)
    first_count, first_seq = store.counts(search_id).finished, learner.seq
    started = time.perf_counter()
    time.sleep(args.seconds)
    elapsed = time.perf_counter() - started
    finished, seq = store.counts(search_id).finished - first_count, learner.seq - first_seq
    target = learner.queue.target(learner.clock(), workers, 1)
    halt.set()
    totals = [out.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    stop.set()
    driver.join(timeout=120)
    updates = [s for end, s, n in learner.ticks if n and end >= started]
    claims = sum(t["claims"] for t in totals)
    return {
        "workers": workers, "results_per_s": finished / elapsed, "intake_per_s": seq / elapsed,
        "update_p50": statistics.median(updates) if updates else float("nan"),
        "update_p95": _quantile(updates, 0.95), "update_max": max(updates, default=float("nan")),
        "queue_target": target, "empty_claims": sum(t["empty"] for t in totals) / max(claims, 1),
        "errors": sum(t["errors"] for t in totals),
        "connections": sum(min(args.connections, s) for s in shares if s),
    }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_restart(store: Store, row: Row) -> None:
    started = time.perf_counter()
    learner = TimedLearner(store, NAME)
    row.restart = time.perf_counter() - started
    started = time.perf_counter()
    learner.tick()
    row.restart_tick = time.perf_counter() - started


def status_bytes(store: Store, search_id: int) -> int:
    """Bytes of the operator's ``.status`` JSON for the search as it stands."""
    record = store.get_search_by_id(search_id)
    spec = parse_spec(record.spec).spec
    counts, best = store.counts(search_id), store.best_trial(search_id)
    shown = operator_status.Best(best.number, best.reward, best.metrics or {}, best.pipeline)
    verdict = operator_status.decide(spec, record.state, counts, record.message)
    status = operator_status.build_status(verdict, counts, shown, {}, 1, "2026-12-03T00:00:00Z")
    return len(json.dumps(status))


# -- the run --------------------------------------------------------------------------------


@contextmanager
def _scratch(admin_url: str):
    with scratch_database(admin_url, "ma2ml_learner_scale") as url:
        yield url


def run(stored: int, args: argparse.Namespace) -> Row:
    row = Row(stored)
    with _scratch(args.postgres) as url, Store(url) as store:
        record = store.create_search(NAME, search_document(max(args.workers)))
        bulk_fill(store, record.id, stored)
        learner = measure_backlog(store, row, args.backlog_seconds)
        learner.seq = stored  # the rest of the backlog counts as learnt (see the docstring)
        for workers in args.workers:
            row.sustained.append(measure_sustained(store, learner, url, record.id, workers,
                                                   args))
            print(f"  {stored} stored, {workers} workers: {row.sustained[-1]}", flush=True)
        measure_restart(store, row)
        row.status_bytes = status_bytes(store, record.id)
    return row


def table(rows: list[Row]) -> str:
    lines = [
        "| stored | workers (connections) | results/s | learner intake/s | update s p50 / p95 /"
        " max | queue target | empty claims | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        for s in row.sustained:
            lines.append(
                f"| {row.stored:,} | {s['workers']} ({s['connections']}) "
                f"| {s['results_per_s']:.1f} | {s['intake_per_s']:.1f} "
                f"| {s['update_p50']:.2f} / {s['update_p95']:.2f} / {s['update_max']:.2f} "
                f"| {s['queue_target']} | {100 * s['empty_claims']:.1f}% | {s['errors']} |")
    lines += [
        "",
        "| stored | first tick over the backlog, s | backlog intake, results/s | whole backlog, s"
        " | restart, s | restart's first tick, s | .status JSON, bytes |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        whole = f"{row.backlog_seconds:.0f}" + ("" if row.backlog_measured else " (extrapolated)")
        lines.append(
            f"| {row.stored:,} | {row.first_tick:.2f} | {row.backlog_rate:.1f} | {whole} "
            f"| {row.restart:.2f} | {row.restart_tick:.2f} | {row.status_bytes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=30.0, help="sustained window")
    parser.add_argument("--backlog-seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8, help="per worker process")
    parser.add_argument("--postgres", default=os.environ.get("MA2ML_TEST_POSTGRES_URL",
                                                             DEFAULT_POSTGRES_ADMIN_URL))
    parser.add_argument("--output", type=Path)
    parser.add_argument("--quick", action="store_true", help="a smoke run: small and short")
    args = parser.parse_args(argv)
    if args.quick:
        args.stored, args.workers, args.seconds, args.backlog_seconds = [500], [8], 2.0, 2.0
        args.processes, args.connections = 2, 2
    torch.set_num_threads(1)  # tiny nets: more threads only add overhead on a shared machine
    rows = []
    for stored in args.stored:
        rows.append(run(stored, args))
    result = table(rows)
    print(result)
    if args.output:
        load = os.getloadavg()
        args.output.write_text(
            "# Learner scale simulation\n\n"
            f"`PYTHONPATH=. .venv/bin/python benchmarks/learner_scale.py --stored "
            f"{' '.join(map(str, args.stored))} --workers {' '.join(map(str, args.workers))} "
            f"--seconds {args.seconds:g} --backlog-seconds {args.backlog_seconds:g}`, "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, PostgreSQL on the same "
            f"machine: 2 CPU cores shared with other work (load average at the end "
            f"{load[0]:.1f}).\n\n" + result + "\n")
    return result


if __name__ == "__main__":
    main()
