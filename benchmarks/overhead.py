"""Per-trial overhead of ma2ml's workers: instant custom trials through ``ma2ml run``.

Each configuration (backend x worker count) runs the real command line,
``ma2ml run spec.yaml --workers W --db URL``, on a fresh database (a SQLite
file in a temporary folder, or a scratch PostgreSQL database dropped
afterwards), with the random algorithm (the cheapest learner, so the
workers' and the queue's overhead is what is measured; ``--algorithm``
changes it) and a custom trainer that reports at once: ``sh -c`` stamps
``date +%s.%N`` when it starts and again when it has written its result,
so a trial "trains" for about a millisecond. Per configuration:

* **idle gap**: on each worker, from the end of one trainer to the start of
  the next (the trainer's own clock stamps, kept as result metrics): the
  time an accelerator would sit idle between two trials. p50 and p99 over
  all gaps of all workers.
* **claim gap**: the same from the store's timestamps, a worker's previous
  trial ``finished_at`` to its next trial ``started_at`` (database clock;
  ``started_at`` is when the trial was claimed, or for a trial held ahead
  when the worker started it; a worker starts its held trial before it
  delivers the previous result, which makes this negative).
* **results/s**: results between the first and the last one, over that time
  (start-up excluded).
* **first claim**: the first trial's ``started_at`` after the search's
  ``created_at`` (both database clock), and after ``ma2ml run`` was started
  (wall clock of this process; same machine, so the clocks agree).
* **worker RSS**: ``VmHWM`` (peak resident set) of the worker processes, read
  from ``/proc/<pid>/status`` of the children of ``ma2ml run`` every 0.2 s;
  median and max over workers. The trainer processes are not counted.
* **CPU per trial**: CPU seconds (user + system, ``/proc/<pid>/stat``, sampled
  with the RSS) of all workers, of their trainers (reaped children) and of
  ``ma2ml run`` itself (learner and pool), from the first result to the last,
  per result (start-up excluded, as for results/s). Unlike the gaps, these do
  not grow when the machine is shared with other jobs.

Usage (from the repository root)::

    PYTHONPATH=. .venv/bin/python benchmarks/overhead.py [--workers 2 8 32] \\
        [--backend sqlite postgres] [--trials N] [--quick] [--out DIR]

It prints a markdown table and writes nothing unless ``--out DIR`` is given
(``overhead.md`` there; the committed results are
``benchmarks/results/overhead.md``). ``--quick`` is the smoke mode a test
runs: 2 workers, 12 trials.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The sibling script (on sys.path when this one runs as a script; tests prepend benchmarks/).
from store_throughput import DEFAULT_POSTGRES_ADMIN_URL, fresh_database, provenance

#: The instant trainer: a start stamp, the result file, an end stamp (no shell start-up of
#: an interpreter, so the trainer itself costs about a millisecond).
TRAINER = (
    's=$(date +%s.%N); printf \'{"accuracy": 0.5, "metrics": {"trainer_start": %s, '
    '"trainer_end": %s}}\' "$s" "$(date +%s.%N)" > "$MA2ML_RESULT_FILE"'
)
#: Values per decision: 2 agents x 1000 values, so the random search never runs out.
VALUES = 1000
#: Seconds between two reads of the workers' /proc status.
SAMPLE_SECONDS = 0.2
MAX_WORKERS, MAX_TRIALS = 256, 100_000


@dataclass
class Measurement:
    """One configuration's figures (seconds unless the name says otherwise)."""

    backend: str
    workers: int
    trials: int
    algorithm: str
    gap_p50: float
    gap_p99: float
    claim_gap_p50: float
    claim_gap_p99: float
    gaps: int
    results_per_second: float
    first_claim_after_create: float
    first_claim_after_launch: float
    rss_mib_median: float
    rss_mib_max: float
    #: CPU milliseconds per trial: all workers together, their trainers, ``ma2ml run``.
    worker_cpu_ms: float
    trainer_cpu_ms: float
    run_cpu_ms: float
    run_seconds: float
    notes: list[str] = field(default_factory=list)


# -- the search --------------------------------------------------------------------------


def search_document(name: str, workers: int, trials: int, algorithm: str) -> dict[str, Any]:
    """A search of ``trials`` instant command trials run by ``workers`` workers."""
    values = list(range(VALUES))
    return {
        "apiVersion": "ma2ml.io/v1alpha1",
        "kind": "PipelineSearch",
        "metadata": {"name": name},
        "spec": {
            "agents": [{"name": "alpha", "decisions": [{"name": "x", "values": values}]},
                       {"name": "beta", "decisions": [{"name": "y", "values": values}]}],
            "algorithm": {"name": algorithm, "seed": 0},
            "budget": {"maxTrials": trials, "parallelism": workers, "trialEpochs": 1,
                       "maxFailedTrials": trials},
            "trainer": {"type": "command", "command": ["sh", "-c", TRAINER]},
        },
    }


# -- worker memory ------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _is_worker(pid: int) -> bool:
    """A spawned worker process of the pool (not multiprocessing's resource tracker)."""
    try:
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _peak_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _cpu_seconds(pid: int) -> tuple[float, float] | None:
    """(the process's own CPU seconds, its reaped children's), from ``/proc/<pid>/stat``."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 3
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    tick = os.sysconf("SC_CLK_TCK")
    return (utime + stime) / tick, (cutime + cstime) / tick


@dataclass
class Usage:
    """What ``ProcessWatch`` saw: per worker pid its peak RSS (KiB) and CPU seconds (own,
    its trainers'), the CPU seconds of ``ma2ml run`` itself (learner, pool), and a
    series of (wall-clock time, workers' CPU, trainers' CPU, ``ma2ml run``'s CPU)."""

    peaks: dict[int, int] = field(default_factory=dict)
    cpu: dict[int, tuple[float, float]] = field(default_factory=dict)
    run_cpu: float = 0.0
    series: list[tuple[float, float, float, float]] = field(default_factory=list)

    def cpu_between(self, start: float, end: float) -> tuple[float, float, float]:
        """CPU seconds (workers, trainers, ``ma2ml run``) spent from ``start`` to ``end``
        (wall clock), from the last samples taken at or before each."""
        before = [row for row in self.series if row[0] <= start]
        until = [row for row in self.series if row[0] <= end]
        if not before or not until:
            return float("nan"), float("nan"), float("nan")
        a, b = before[-1], until[-1]
        return b[1] - a[1], b[2] - a[2], b[3] - a[3]


class ProcessWatch(threading.Thread):
    """Samples ``ma2ml run`` and its worker processes every ``SAMPLE_SECONDS``.

    A process's CPU seconds are those of its last sample, so they may lag by up to one
    interval (``SAMPLE_SECONDS``).
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True, name="overhead-watch")
        self.pid, self.usage = pid, Usage()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            own = _cpu_seconds(self.pid)
            if own is not None:
                self.usage.run_cpu = own[0]
            for child in _children(self.pid):
                if not _is_worker(child):
                    continue
                kib, cpu = _peak_rss_kib(child), _cpu_seconds(child)
                if kib is not None:
                    self.usage.peaks[child] = max(kib, self.usage.peaks.get(child, 0))
                if cpu is not None:
                    self.usage.cpu[child] = cpu
            cpu = self.usage.cpu.values()
            self.usage.series.append((time.time(), sum(own for own, _ in cpu),
                                      sum(trainers for _, trainers in cpu), self.usage.run_cpu))

    def stop(self) -> Usage:
        self._done.set()
        self.join()
        return self.usage


# -- one configuration ---------------------------------------------------------------------


def run_search(url: str, workdir: Path, document: dict[str, Any], workers: int,
               timeout: float) -> tuple[float, float, Usage]:
    """``ma2ml run`` to the end: (its wall-clock start, its duration, what it used)."""
    spec = workdir / "overhead.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    log_path = workdir / "run.log"
    # The trainer's `python` (none here) and ma2ml's own workers use this interpreter.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    launched, tick = time.time(), time.perf_counter()
    with log_path.open("wb") as log, subprocess.Popen(
            [sys.executable, "-m", "ma2ml", "run", str(spec), "--workers", str(workers),
             "--db", url], cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
            env=env) as process:
        watch = ProcessWatch(process.pid)
        watch.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        finally:
            usage = watch.stop()
    seconds = time.perf_counter() - tick
    if code != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"ma2ml run {'timed out' if code is None else f'exited {code}'} "
                           f"after {seconds:.0f} s; log tail:\n{tail}")
    return launched, seconds, usage


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in [0, 1]); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def worker_gaps(trials: Sequence[Any]) -> tuple[list[float], list[float], list[str]]:
    """Idle gaps (trainer stamps) and claim gaps (store stamps) between consecutive trials of
    each worker, with notes on what could not be measured."""
    by_worker: dict[str, list[Any]] = {}
    notes = []
    for trial in trials:
        if trial.worker is None or trial.started_at is None or trial.finished_at is None:
            notes.append(f"trial {trial.number} lacks worker/started_at/finished_at")
            continue
        by_worker.setdefault(trial.worker, []).append(trial)
    idle, claim = [], []
    for runs in by_worker.values():
        stamped = sorted((t for t in runs if "trainer_start" in (t.metrics or {})),
                         key=lambda t: t.metrics["trainer_start"])
        idle += [b.metrics["trainer_start"] - a.metrics["trainer_end"]
                 for a, b in zip(stamped, stamped[1:], strict=False)]
        runs.sort(key=lambda t: t.started_at)
        claim += [b.started_at - a.finished_at for a, b in zip(runs, runs[1:], strict=False)]
    return idle, claim, notes


def measure(backend: str, workers: int, trials: int, algorithm: str, admin_url: str,
            timeout: float) -> Measurement:
    """Run one configuration on a fresh database and read its figures back from the store."""
    from ma2ml.store import Store, TrialStatus

    name = f"overhead-{backend}-{workers}"
    document = search_document(name, workers, trials, algorithm)
    with tempfile.TemporaryDirectory(prefix="ma2ml-overhead-") as tmp, \
            fresh_database(backend, admin_url) as url:
        launched, seconds, usage = run_search(url, Path(tmp), document, workers, timeout)
        with Store(url, migrate=False) as store:
            search = store.get_search(f"default/{name}")
            assert search is not None, "ma2ml run did not create the search"
            done = store.list_trials(search.id, status=TrialStatus.completed)
            started = [t.started_at for t in store.list_trials(search.id)
                       if t.started_at is not None]
    idle, claim, notes = worker_gaps(done)
    if len(done) != trials:
        notes.append(f"{len(done)} of {trials} trials completed")
    finished = sorted(t.finished_at for t in done if t.finished_at is not None)
    span = finished[-1] - finished[0] if len(finished) > 1 else 0.0
    first = min(started) if started else float("nan")
    rss = [kib / 1024 for kib in usage.peaks.values()]
    # Steady state, like results/s: CPU from the first result to the last, per result.
    workers_cpu, trainers_cpu, run_cpu = usage.cpu_between(finished[0], finished[-1]) \
        if len(finished) > 1 else (float("nan"),) * 3
    per_result = 1000 / max(len(finished) - 1, 1)
    return Measurement(
        backend=backend, workers=workers, trials=trials, algorithm=algorithm,
        gap_p50=percentile(idle, 0.5), gap_p99=percentile(idle, 0.99),
        claim_gap_p50=percentile(claim, 0.5), claim_gap_p99=percentile(claim, 0.99),
        gaps=len(idle),
        results_per_second=(len(finished) - 1) / span if span > 0 else float("nan"),
        first_claim_after_create=first - search.created_at,
        first_claim_after_launch=first - launched,
        rss_mib_median=statistics.median(rss) if rss else float("nan"),
        rss_mib_max=max(rss, default=float("nan")),
        worker_cpu_ms=per_result * workers_cpu, trainer_cpu_ms=per_result * trainers_cpu,
        run_cpu_ms=per_result * run_cpu, run_seconds=seconds, notes=notes)


# -- report ---------------------------------------------------------------------------------


def table(rows: Sequence[Measurement]) -> str:
    """The markdown table of ``rows``."""
    head = ("| backend | workers | trials | idle gap p50 | idle gap p99 | claim gap p50 | "
            "claim gap p99 | results/s | first claim after create | after launch | "
            "worker RSS median | max | CPU per trial: workers | trainers | learner + pool |")
    lines = [head, "|" + " --- |" * head.count(" | ") + " --- |"]
    for m in rows:
        lines.append(
            f"| {m.backend} | {m.workers} | {m.trials} | {_ms(m.gap_p50)} | {_ms(m.gap_p99)} | "
            f"{_ms(m.claim_gap_p50)} | {_ms(m.claim_gap_p99)} | {m.results_per_second:.1f} | "
            f"{m.first_claim_after_create:.2f} s | {m.first_claim_after_launch:.2f} s | "
            f"{m.rss_mib_median:.0f} MiB | {m.rss_mib_max:.0f} MiB | {m.worker_cpu_ms:.1f} ms | "
            f"{m.trainer_cpu_ms:.1f} ms | {m.run_cpu_ms:.1f} ms |")
    notes = [f"* {m.backend}, {m.workers} workers: {note}" for m in rows for note in m.notes]
    return "\n".join(lines + ([""] + notes if notes else []))


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.0f} ms"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgres"],
                        choices=["sqlite", "postgres"])
    parser.add_argument("--trials", type=int, default=None,
                        help="trials per configuration (default: 25 per worker)")
    parser.add_argument("--algorithm", default="random", help="spec.algorithm.name")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 workers, 12 trials")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds one configuration may take")
    parser.add_argument("--out", type=Path, default=None,
                        help="write overhead.md here (default: print only)")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MA2ML_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL),
        help="maintenance database of the server; a scratch database is made per run")
    args = parser.parse_args(argv)
    if args.quick:
        args.workers, args.trials = [2], args.trials or 12
    for count in args.workers:
        if not 1 <= count <= MAX_WORKERS:
            parser.error(f"--workers: each count must be in [1, {MAX_WORKERS}], got {count}")
    if args.trials is not None and not 1 <= args.trials <= MAX_TRIALS:
        parser.error(f"--trials: must be in [1, {MAX_TRIALS}], got {args.trials}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    for backend in args.backend:
        for workers in args.workers:
            trials = args.trials or 25 * workers
            row = measure(backend, workers, trials, args.algorithm, args.postgres_url,
                          args.timeout)
            print(f"{backend}, {workers} workers, {trials} trials: {row.run_seconds:.0f} s",
                  flush=True)
            rows.append(row)
    report = f"{table(rows)}\n\n{provenance()}"
    print(report)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "overhead.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
