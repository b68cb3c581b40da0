"""Fault injection: one search, real processes, a real database that goes away.

What is real: a private PostgreSQL cluster started by the suite (Debian
``initdb``/``pg_ctl``, its own port and directory, see ``postgres.py``); the
``ma2ml learner`` and three ``ma2ml worker`` processes, started with
``python -m ma2ml`` exactly as the pods run them, the workers sharing one
spool directory; a custom trainer (a Python script the workers run, which
reports with ``ma2ml.report``). Nothing in ma2ml is patched, mocked or
slowed down. The trainer's "training" is a sleep of 0.5-1.5 s; around it the
trainer leaves a marker while it trains and appends one line to a side file
when training finished, before it reports.

What is injected, at moments the test observes (never on a timer), with
choices drawn from a seeded RNG (``MA2ML_CHAOS_SEED`` replays another draw):

* kill -9 of a worker while its trainer is mid-training (4 times);
* kill -9 of the learner while it is driving the search (3 times);
* the database stopped (``pg_ctl stop -m fast``) for 3 x ``leaseSeconds``
  while trainers are mid-training, then restarted; during that outage, a
  worker whose finished result waits in the spool is killed -9 too (another
  worker must deliver it);
* a worker frozen (SIGSTOP, a worker cut off from the store) while its
  trainer trains, and resumed (SIGCONT) once the trainer finished and the
  learner re-queued the trial: its result arrives late, from an older
  attempt, and must be kept while the trial has none (first result wins).

A supervisor loop restarts every process that died, as a Deployment would
(at once after a kill, after 1 s after a crash).

Checked at the end (issue 12, "Acceptance"): ``maxTrials`` results, each
trial completed exactly once and none failed; ``finished_seq`` is 1..N
without gaps; every training that finished belongs to a trial whose stored
result comes from a finished training of it; no worker dropped a finished
result while its trial had none (the workers' logs against the stored
``finished_at``), and the frozen worker's late result was stored unless
another result had come first; no trainer outlived its worker and none is left running;
no ``ma2ml-trial-*`` folder is left in the workers' TMPDIR; no report is
left in the spool; the learner exits 0 and the workers exit 0 once the
search finished, and no process crashed except one started while the
database was down (a start-up against an unreachable store exits 1).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import random
import re
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import (
    TERMINAL_SEARCH_STATES,
    SearchState,
    Store,
    StoreUnavailableError,
    TrialRecord,
    TrialStatus,
)

from .postgres import PrivateCluster
from .processes import Managed, processes_running

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SEED = int(os.environ.get("MA2ML_CHAOS_SEED", "12"))
LEASE_SECONDS = 3.0
#: Room after the last fault (21 results): a fault waits for its moment (a trainer
#: that just started, a learner mid-drive), which a loaded machine can delay by several
#: results; with prefetching workers results come faster than they used to.
MAX_TRIALS = 50
PARALLELISM = 3
#: The outage: the database is down this long.
OUTAGE_SECONDS = 3 * LEASE_SECONDS
#: Faults in order, each once the search has at least this many results and its
#: moment has come (see ``Chaos._fire_*``). The last one fires well before MAX_TRIALS.
PLAN: tuple[tuple[int, str], ...] = (
    (2, "worker"), (4, "learner"), (7, "worker"), (10, "outage"),
    (13, "learner"), (15, "worker"), (17, "freeze"), (19, "worker"), (21, "learner"),
)
#: How long a frozen worker may wait for its trial to be re-queued.
FREEZE_LIMIT_SECONDS = 30.0
#: A worker is killed only while its trainer started at most this long ago
#: (training lasts at least 0.5 s, so it is surely still training).
KILL_WINDOW_SECONDS = 0.25
#: The whole search, faults included, must end within this.
RUN_DEADLINE_SECONDS = 150.0
#: After the search ended, every process must exit within this.
EXIT_DEADLINE_SECONDS = 30.0
#: A process that exited by itself (not killed) is restarted after this.
CRASH_RESTART_SECONDS = 1.0
#: A worker's log message when it drops a result the store refused (a late attempt).
DROPPED = re.compile(r"\btrial (\d+)\b.*\bdropped\b")
TICK_SECONDS = 0.05
STORE_READ_SECONDS = 0.2

TRAINER = '''\
"""Chaos trainer: a marker while training, one side-file line when done, then report."""
import json, os, pathlib, time

import ma2ml

state = pathlib.Path(os.environ["MA2ML_CHAOS_DIR"])
number = int(os.environ["MA2ML_SEED"])  # the worker passes the trial number as the seed
pid, worker = os.getpid(), os.getppid()
marker = state / "running" / f"{pid}.json"
partial = marker.with_suffix(".partial")
partial.write_text(json.dumps({"trial": number, "worker": worker, "started": time.time()}))
partial.replace(marker)
time.sleep(0.5 + (number * 0.618034) % 1.0)
line = {"trial": number, "pid": pid, "worker": worker, "time": time.time(),
        "pipeline": json.loads(os.environ["MA2ML_PIPELINE"])}
with open(state / "finished.log", "a") as log:
    log.write(json.dumps(line) + "\\n")
marker.unlink()
ma2ml.report(accuracy=0.05 + (number % 10) / 10, trainer_pid=pid)
'''


def search_document(trainer: Path) -> dict[str, Any]:
    values = list(range(10))
    return {
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "chaos", "namespace": "default"},
        "spec": {
            "agents": [{"name": "alpha", "decisions": [{"name": "x", "values": values}]},
                       {"name": "beta", "decisions": [{"name": "y", "values": values}]}],
            "algorithm": {"name": "random", "seed": SEED},
            # Infrastructure faults must never fail a trial, let alone the search.
            "budget": {"maxTrials": MAX_TRIALS, "maxFailedTrials": MAX_TRIALS,
                       "maxRetries": 20, "parallelism": PARALLELISM, "prefetch": 1,
                       "leaseSeconds": LEASE_SECONDS},
            "trainer": {"type": "command", "command": [sys.executable, str(trainer)],
                        "timeoutSeconds": 60},
        },
    }


@dataclass(frozen=True)
class Progress:
    state: SearchState
    results: int
    failures: int
    top_trial: int
    snapshot: int  # latest policy snapshot version (-1: none yet)


@dataclass(frozen=True)
class Training:
    """A trainer that is training now (its marker)."""

    pid: int
    trial: int
    worker: int
    started: float


@dataclass
class Frozen:
    """A worker stopped (SIGSTOP) while its trainer trains: a worker cut off from the store."""

    worker: Managed
    training: Training
    trial_id: int
    attempt: int
    since: float
    resumed_wall: float | None = None
    requeued_as: str = ""


class Chaos:
    """The search, its processes, the fault plan and the checks."""

    def __init__(self, cluster: PrivateCluster, root: Path, seed: int) -> None:
        self.cluster, self.root, self.seed = cluster, root, seed
        self.rng = random.Random(seed)
        self.t0 = time.monotonic()
        self.state_dir = root / "state"
        (self.state_dir / "running").mkdir(parents=True)
        self.finished_log = self.state_dir / "finished.log"
        self.worker_tmp = root / "worker-tmp"
        self.worker_tmp.mkdir()
        self.spool = root / "spool"
        self.trainer = root / "chaos_trainer.py"
        self.trainer.write_text(TRAINER)
        self.key = "default/chaos"
        self.store = Store(cluster.url)
        record = self.store.create_search(
            self.key, spec_to_document(parse_spec(search_document(self.trainer))))
        self.search_id = record.id

        env = {k: v for k, v in os.environ.items() if not k.startswith("MA2ML_")}
        # Plain Python tracebacks (not typer's rich ones) in the logs printed on failure.
        env.update(TMPDIR=str(self.worker_tmp), MA2ML_CHAOS_DIR=str(self.state_dir),
                   PYTHONUNBUFFERED="1", TYPER_STANDARD_TRACEBACK="1")
        base = [sys.executable, "-m", "ma2ml"]
        target = ["--search", self.key, "--db", cluster.url]
        self.learner = Managed("learner", [*base, "learner", *target], env, root,
                               root / "learner.log")
        self.workers = [
            Managed(f"w-{i}", [*base, "worker", *target, "--spool-dir", str(self.spool),
                               "--worker-id", f"w-{i}"], env, root, root / f"w-{i}.log")
            for i in range(1, PARALLELISM + 1)]
        self.processes = [self.learner, *self.workers]

        self.events: list[str] = []
        self.plan_index = 0
        self.progress: Progress | None = None
        self._read_at = 0.0
        self.search_over_at: float | None = None
        self.learner_top: int | None = None  # highest trial number when this learner began
        self.learner_snapshot = -1  # latest snapshot version when this learner began
        self._learner_due: float | None = None
        self.outage_down_at: float | None = None
        #: Wall-clock time the database began to stop (stopping takes a while under load).
        self.outage_began: float | None = None
        self.outage_up_at: float | None = None
        self.spool_kill: str | None = None
        self.trial_ids: dict[int, int] = {}
        self.frozen: Frozen | None = None
        #: (worker, its pid, its trainer, wall time once the worker was dead)
        self.killed_trainers: list[tuple[str, int, Training, float]] = []
        self.leftover_trainers: list[int] = []
        self.retrained = 0
        self.dropped = 0

    # ------------------------------------------------------------------ the run

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.t0:6.1f}s {text}")

    def run(self) -> None:
        for process in self.processes:
            self._start(process, time.monotonic())
        deadline = self.t0 + RUN_DEADLINE_SECONDS
        while True:
            now = time.monotonic()
            self._observe(now)
            self._supervise(now)
            if self.search_over_at is None:
                assert now < deadline, (f"the search did not end within {RUN_DEADLINE_SECONDS:g}"
                                        f" s (progress {self.progress})")
                self._step(now)
            elif all(p.process is None for p in self.processes):
                self.note("every process exited")
                return
            elif now > self.search_over_at + EXIT_DEADLINE_SECONDS:
                self.note("processes still running "
                          f"{[p.name for p in self.processes if p.process is not None]}")
                return
            time.sleep(TICK_SECONDS)

    def _start(self, process: Managed, now: float) -> None:
        process.start(now)
        if process is self.learner:
            self.learner_top = None
            self._learner_due = None
        if len(process.runs) > 1:
            self.note(f"restarted {process.name} (pid {process.pid})")

    def _observe(self, now: float) -> None:
        if now < self._read_at or self.database_down():
            return
        self._read_at = now + STORE_READ_SECONDS
        try:
            record = self.store.get_search_by_id(self.search_id)
            counts = self.store.counts(self.search_id)
            top = self.store.max_trial_number(self.search_id)
            snapshot = max(self.store.snapshot_versions(self.search_id), default=-1)
        except StoreUnavailableError:
            return
        assert record is not None
        self.progress = Progress(record.state, counts.results, counts.failures, top, snapshot)
        if self.learner_top is None and self.learner.alive():
            self.learner_top, self.learner_snapshot = top, snapshot
        if record.state in TERMINAL_SEARCH_STATES and self.search_over_at is None:
            self.search_over_at = now
            self.note(f"search {record.state}: {counts.results} results, "
                      f"{counts.failures} failures")

    def _supervise(self, now: float) -> None:
        for process in self.processes:
            run = process.reap(now)
            if run is not None and not run.killed:
                self.note(f"{process.name} (pid {run.pid}) exited {run.returncode}")
                process.restart_at = now + CRASH_RESTART_SECONDS
            if process.process is None and self.search_over_at is None \
                    and now >= process.restart_at:
                self._start(process, now)

    # ------------------------------------------------------------------ faults

    def database_down(self) -> bool:
        return self.outage_down_at is not None and self.outage_up_at is None

    def _step(self, now: float) -> None:
        if self.plan_index >= len(PLAN):
            return
        threshold, kind = PLAN[self.plan_index]
        if not self.database_down() and (self.progress is None
                                         or self.progress.results < threshold):
            return
        if getattr(self, f"_fire_{kind}")(now):
            self.plan_index += 1

    def training_now(self, max_age: float) -> list[Training]:
        """Trainers training now that started at most ``max_age`` seconds ago."""
        found = []
        wall = time.time()
        trainers = set(processes_running(self.trainer))
        for marker in sorted((self.state_dir / "running").glob("*.json")):
            try:
                data = json.loads(marker.read_text())
            except (OSError, ValueError):  # finished meanwhile
                continue
            pid = int(marker.stem)
            if wall - data["started"] <= max_age and marker.exists() \
                    and pid in trainers:
                found.append(Training(pid, data["trial"], data["worker"], data["started"]))
        return found

    def _fire_worker(self, now: float) -> bool:
        live = {w.pid: w for w in self.workers if w.alive()}
        candidates = [t for t in self.training_now(KILL_WINDOW_SECONDS) if t.worker in live]
        if not candidates:
            return False
        training = self.rng.choice(candidates)
        worker = live[training.worker]
        age = time.time() - training.started
        pid = worker.kill(now)
        self.killed_trainers.append((worker.name, pid, training, time.time()))
        self.note(f"kill -9 {worker.name} (pid {pid}): its trainer (pid {training.pid}) "
                  f"was {age:.2f} s into trial {training.trial}")
        return True

    def _learner_driving(self) -> bool:
        """The learner (this run of it) has proposed trials or saved a snapshot: it is in
        its loop. Late in a search every trial may already be proposed, and then only its
        updates (one snapshot each) show it working; waiting for a proposal there let
        the search end before the last learner kill."""
        progress = self.progress
        return (self.learner.alive() and self.learner_top is not None and progress is not None
                and (progress.top_trial > self.learner_top
                     or progress.snapshot > self.learner_snapshot))

    def _fire_learner(self, now: float) -> bool:
        if not self._learner_driving():
            return False
        if self._learner_due is None:
            self._learner_due = now + self.rng.uniform(0.0, 0.5)
        if now < self._learner_due:
            return False
        pid = self.learner.kill(now)
        results = self.progress.results if self.progress is not None else "?"
        self.note(f"kill -9 learner (pid {pid}) at {results} results")
        return True

    def _fire_freeze(self, now: float) -> bool:
        """SIGSTOP a worker while its trainer trains; SIGCONT it once the trainer finished
        and its trial was re-queued, so its result arrives late, from an older attempt."""
        if self.frozen is None:
            live = {w.pid: w for w in self.workers if w.alive()}
            candidates = [t for t in self.training_now(KILL_WINDOW_SECONDS) if t.worker in live]
            if not candidates:
                return False
            training = self.rng.choice(candidates)
            worker = live[training.worker]
            os.kill(training.worker, signal.SIGSTOP)
            try:
                trial = next(t for t in self.store.list_trials(self.search_id)
                             if t.number == training.trial)
            except StoreUnavailableError:
                os.kill(training.worker, signal.SIGCONT)
                return False
            self.frozen = Frozen(worker, training, trial.id, trial.attempt, now)
            self.note(f"SIGSTOP {worker.name} (pid {training.worker}): its trainer (pid "
                      f"{training.pid}) trains trial {training.trial} attempt {trial.attempt}")
            return False
        frozen = self.frozen
        if not frozen.worker.alive():
            return True  # the check reports it: the frozen worker died
        done = any(line["pid"] == frozen.training.pid for line in self.finished_lines())
        try:
            trial = self.store.get_trial(frozen.trial_id)
        except StoreUnavailableError:
            return False
        assert trial is not None
        if not (done and trial.attempt > frozen.attempt) \
                and now - frozen.since < FREEZE_LIMIT_SECONDS:
            return False
        os.kill(frozen.worker.pid or 0, signal.SIGCONT)
        frozen.resumed_wall = time.time()
        frozen.requeued_as = f"{trial.status} attempt {trial.attempt}"
        self.note(f"SIGCONT {frozen.worker.name}: its trainer finished={done}, its trial is "
                  f"now {frozen.requeued_as}")
        return True

    def _fire_outage(self, now: float) -> bool:
        if self.outage_down_at is None:
            training = self.training_now(0.6)
            if len(training) < 2 or not self._learner_driving() \
                    or not all(w.alive() for w in self.workers):
                return False
            # Trial ids of the trials now running, to find their spooled reports.
            self.trial_ids = {t.number: t.id for t in self.store.list_trials(self.search_id)}
            self.outage_began = time.time()
            self.cluster.stop("fast")
            self.outage_down_at = time.monotonic()
            self.note(f"database stopped while trials {sorted(t.trial for t in training)} train")
            return False
        if self.spool_kill is None:
            self._kill_a_spooling_worker(now)
        if time.monotonic() - self.outage_down_at < OUTAGE_SECONDS:
            return False
        self.cluster.start()
        self.outage_up_at = time.monotonic()
        self.note(f"database restarted after {self.outage_up_at - self.outage_down_at:.1f} s")
        return True

    def _kill_a_spooling_worker(self, now: float) -> None:
        """Kill a worker whose result, trained during the outage, waits in the spool."""
        assert self.outage_began is not None
        # From the moment the stop began: a trial that ended while the database was
        # shutting down could not deliver either (its report is spooled, checked below).
        down_since = self.outage_began
        live = {w.pid: w for w in self.workers if w.alive()}
        candidates = [line for line in self.finished_lines()
                      if line["time"] >= down_since and line["worker"] in live
                      and self._spooled(line["trial"])]
        if not candidates:
            return
        line = self.rng.choice(candidates)
        worker = live[line["worker"]]
        pid = worker.kill(now)
        self.spool_kill = f"{worker.name} (pid {pid})"
        self.note(f"kill -9 {self.spool_kill}: its result of trial {line['trial']}, trained "
                  f"during the outage, is in the spool")

    def _spooled(self, number: int) -> bool:
        trial_id = self.trial_ids.get(number)
        return trial_id is not None and \
            any(self.spool.glob(f"*/reports/trial-{trial_id}-attempt-*.json"))

    def finished_lines(self) -> list[dict[str, Any]]:
        if not self.finished_log.exists():
            return []
        return [json.loads(line) for line in self.finished_log.read_text().splitlines()
                if line.strip()]

    # ------------------------------------------------------------------ the end

    def stop_processes(self) -> None:
        """Kill -9 whatever still runs (noted), and any trainer left behind (recorded)."""
        now = time.monotonic()
        for process in self.processes:
            if process.close(now) is not None:
                self.note(f"{process.name} was still running; killed")
        self.leftover_trainers = processes_running(self.trainer)
        for pid in self.leftover_trainers:  # descendants of the workers: ours to end
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def check(self) -> list[str]:
        problems: list[str] = []
        if self.plan_index < len(PLAN):
            problems.append(f"the search ended before fault {self.plan_index + 1} of {PLAN} "
                            f"was injected")
        if self.outage_down_at is not None and self.spool_kill is None:
            problems.append("no worker held a spooled report during the outage to be killed")
        record = self.store.get_search_by_id(self.search_id)
        assert record is not None
        if record.state != SearchState.finished:
            problems.append(f"search is {record.state} ({record.message}), not finished")
        trials = self.store.list_trials(self.search_id)
        by_number = {t.number: t for t in trials}
        results = [t for t in trials if t.status in (TrialStatus.completed, TrialStatus.diverged)]
        if len(results) != MAX_TRIALS:
            problems.append(f"{len(results)} results, expected maxTrials={MAX_TRIALS}")
        problems += [f"trial {t.number} is {t.status} (attempt {t.attempt}, error {t.error!r})"
                     for t in trials if t.status != TrialStatus.completed]
        if len(by_number) != len(trials):
            problems.append(f"duplicate trial numbers: {sorted(t.number for t in trials)}")
        seqs = sorted(t.finished_seq for t in trials if t.finished_seq is not None)
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"finished_seq has gaps or repeats: {seqs}")

        lines = self.finished_lines()
        pids_of: dict[int, set[int]] = defaultdict(set)
        for line in lines:
            pids_of[line["trial"]].add(line["pid"])
            trial = by_number.get(line["trial"])
            if trial is None or trial.status != TrialStatus.completed:
                problems.append(f"the training of trial {line['trial']} by trainer "
                                f"{line['pid']} finished, but the trial has no result "
                                f"({trial.status if trial else 'no such trial'})")
            elif trial.pipeline != line["pipeline"]:
                problems.append(f"trial {trial.number}: trained {line['pipeline']}, "
                                f"stored {trial.pipeline}")
        for trial in results:
            pid = (trial.metrics or {}).get("trainer_pid")
            if pid not in pids_of[trial.number]:
                problems.append(f"the result of trial {trial.number} names trainer {pid}, "
                                f"whose training of it never finished "
                                f"(finished: {sorted(pids_of[trial.number])})")
        self.retrained = len(lines) - len(pids_of)
        for number in sorted(n for n, pids in pids_of.items() if len(pids) > 1):
            trainings = [f"trainer {line['pid']} under {self._name_of(line['worker'])}"
                         for line in lines if line["trial"] == number]
            self.note(f"trial {number} trained {len(trainings)} times: {', '.join(trainings)}")
        problems += self._dropped_too_early({t.id: t for t in trials})
        problems += self._late_result_problems({t.id: t for t in trials}, pids_of)
        killed = {training.pid: (name, pid, dead) for name, pid, training, dead
                  in self.killed_trainers}
        for line in lines:
            if line["pid"] not in killed:
                continue
            name, pid, dead = killed[line["pid"]]
            if line["time"] > dead:
                problems.append(f"trainer {line['pid']} finished trial {line['trial']} "
                                f"{line['time'] - dead:.2f} s after its worker {name} (pid {pid}) "
                                f"was killed -9")
            else:
                self.note(f"trainer {line['pid']} finished trial {line['trial']} before the kill "
                          f"of {name} landed (the test was descheduled)")

        problems += [f"trainer process {pid} outlived the workers" for pid in
                     self.leftover_trainers]
        leaked = sorted(p.name for p in self.worker_tmp.glob("ma2ml-trial-*"))
        if leaked:
            problems.append(f"{len(leaked)} trial folder(s) leaked in the workers' TMPDIR: "
                            f"{leaked}")
        left = sorted(str(p.relative_to(self.spool)) for p in self.spool.glob("*/reports/*"))
        if left:
            problems.append(f"reports left in the spool: {left}")
        problems += self._exit_problems()
        return problems

    def _late_result_problems(self, by_id: dict[int, TrialRecord],
                              pids_of: dict[int, set[int]]) -> list[str]:
        """The frozen worker's result, from an older attempt, is kept while its trial has none."""
        frozen = self.frozen
        if frozen is None:
            return []
        if frozen.resumed_wall is None:
            return [f"{frozen.worker.name} was frozen and never resumed"]
        trial = by_id[frozen.trial_id]
        if f"attempt {frozen.attempt}" == frozen.requeued_as.split(" ", 1)[-1]:
            return [f"trial {trial.number} was not re-queued within {FREEZE_LIMIT_SECONDS:g} s "
                    f"although its worker was frozen and its lease expired"]
        stored = (trial.metrics or {}).get("trainer_pid")
        late = f"the late result of trial {trial.number} (attempt {frozen.attempt}, trainer " \
               f"{frozen.training.pid}; the trial was {frozen.requeued_as} when its worker resumed)"
        if frozen.training.pid not in pids_of[trial.number]:
            return [f"{late}: the trainer never finished"]
        if stored == frozen.training.pid:
            self.note(f"{late} was accepted")
            return []
        if trial.finished_at is not None and trial.finished_at >= frozen.resumed_wall + 1.0:
            return [f"{late} was thrown away: the trial's result came from trainer {stored} "
                    f"{trial.finished_at - frozen.resumed_wall:.1f} s after that worker resumed"]
        self.note(f"{late} lost to trainer {stored}'s result, stored first")
        return []

    def _dropped_too_early(self, by_id: dict[int, TrialRecord]) -> list[str]:
        """Results a worker dropped while their trial had none (issue 12, item 1).

        A worker drops a result the store refuses (a late attempt); that is right
        only once the trial has an accepted result, stored before the refusal.
        """
        problems = []
        self.dropped = 0
        for worker in self.workers:
            for entry in _log_entries(worker.log_path):
                match = DROPPED.search(entry.get("message", ""))
                if match is None:
                    continue
                self.dropped += 1
                trial = by_id.get(int(match.group(1)))
                logged = _epoch(entry["time"])
                if trial is None or trial.finished_at is None \
                        or trial.finished_at > logged + 0.2:
                    problems.append(
                        f"{worker.name} dropped a finished result at {entry['time']} while its "
                        f"trial had none (trial id {match.group(1)}, finished at "
                        f"{trial.finished_at if trial else None}): {entry['message']}")
        return problems

    def _exit_problems(self) -> list[str]:
        problems = []
        for process in self.processes:
            for index, run in enumerate(process.runs):
                last = index == len(process.runs) - 1
                if run.killed or (last and run.returncode == 0):
                    continue
                what = "was still running at the end" if run.returncode is None else \
                    f"exited {run.returncode}"
                problems.append(f"{process.name} run {index + 1} (pid {run.pid}) {what}"
                                f"{'' if last else ' before the search ended'}")
        return problems

    def _name_of(self, pid: int) -> str:
        for process in self.processes:
            for index, run in enumerate(process.runs):
                if run.pid == pid:
                    return f"{process.name} run {index + 1}{' (killed)' if run.killed else ''}"
        return f"pid {pid}"

    def summary(self) -> str:
        runs = ", ".join(f"{p.name}: {len(p.runs)} runs" for p in self.processes)
        return "\n".join([f"chaos seed {self.seed}; {runs}; trainings re-run: "
                          f"{self.retrained}; late results dropped: {self.dropped}", *self.events])

    def logs(self) -> str:
        parts = [f"----- {p.name} ({p.log_path}) -----\n{p.tail()}" for p in self.processes]
        parts.append(f"----- postgres -----\n{self.cluster.log_tail()}")
        return "\n".join(parts)



def _log_entries(path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a worker's log (its tracebacks and headers skipped)."""
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except ValueError:
                continue
    return entries


def _epoch(stamp: str) -> float:
    """A worker log's UTC time (``2024-06-12T10:11:12.345Z``) as epoch seconds."""
    moment = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.UTC).timestamp()


@pytest.mark.serial
def test_a_search_survives_kills_and_a_database_outage(private_postgres: PrivateCluster,
                                                       tmp_path: Path) -> None:
    chaos = Chaos(private_postgres, tmp_path, SEED)
    try:
        try:
            chaos.run()
        finally:
            chaos.stop_processes()
        problems = chaos.check()
    except BaseException:
        print(chaos.summary())
        print(chaos.logs())
        raise
    finally:
        chaos.store.close()
    print(chaos.summary())
    if problems:
        print(chaos.logs())
    assert not problems, "\n".join(problems)
