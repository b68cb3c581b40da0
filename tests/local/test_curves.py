"""Learning curves and early-stopped trials in ``ma2ml trials --curves``, ``status``, ``best``,
the ``run`` summary and ``ma2ml report``.

The search's trials are written through the real Store API (``report_step`` under an
ASHA rule stops some of them, as a worker's epochs would) into a real SQLite file
beside a spec file; the commands run as the real command line in a subprocess.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ma2ml.cli import app
from ma2ml.local import commands, report
from ma2ml.results.summary import BEST_RANKING, sparkline
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import StepDecision, Store, TrialProposal, TrialRecord, TrialStatus

from .test_run import ma2ml, tiny_spec, write

EPOCHS = 4
#: ASHA with rungs at epochs 1 and 2 (reduction factor 2, below trialEpochs 4).
RULE = {"type": "asha", "minEpochs": 1, "reductionFactor": 2}
#: Each trial's value at epoch e is base + 0.05 e. In this order ASHA stops the 2nd, 4th
#: and 6th trials at epoch 1 (the bottom half of the results at that rung) and lets the
#: 1st, 3rd and 5th train all 4 epochs: 3 completed (best: 0.7 + 0.2) and 3 stopped.
BASES = (0.5, 0.3, 0.7, 0.2, 0.6, 0.1)
STOPPED_NUMBERS = [2, 4, 6]


def curvy_spec(name: str = "curvy", max_trials: int = 8) -> dict[str, Any]:
    """A small custom space (no dataset needed: nothing is trained here) with ASHA."""
    document = tiny_spec(name, max_trials=max_trials, trialEpochs=EPOCHS)
    document["spec"]["agents"] = [
        {"name": "hpo", "preset": "recipe-adamw"},
        {"name": "extra", "decisions": [{"name": "width", "values": [8, 16, 32]}]},
    ]
    document["spec"]["earlyStopping"] = RULE
    return document


def fill(store: Store, document: dict[str, Any], bases: tuple[float, ...] = BASES,
         pending: int = 1) -> int:
    """Run ``bases`` through the store as a worker would, epoch by epoch; leave ``pending``
    more trials queued. Returns the search id."""
    search = parse_spec(document)
    record = store.create_search(search.key, spec_to_document(search))
    space, rng = search.spec.search_space(), random.Random(0)

    def propose() -> None:
        action = {a.name: [rng.randrange(s) for s in a.sizes] for a in space.agents}
        store.enqueue_trials(record.id, [TrialProposal(
            space.decode(action), action, {a: -1.0 for a in action}, 0)])

    for base in bases:
        propose()
        claimed = store.claim(record.id, "w", 30)
        for epoch in range(1, EPOCHS + 1):
            value = round(base + 0.05 * epoch, 4)
            decision = store.report_step(claimed.id, claimed.attempt, epoch, value,
                                         {"accuracy": value})
            if decision == StepDecision.stop:
                break
        else:
            store.complete(claimed.id, claimed.attempt, value, {"accuracy": value})
    for _ in range(pending):
        propose()
    return record.id


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    """``curvy.yaml`` and its store ``curvy.db`` beside it, filled."""
    spec = write(tmp_path / "curvy.yaml", curvy_spec())
    with Store(f"sqlite:///{tmp_path / 'curvy.db'}") as store:
        search_id = fill(store, curvy_spec())
        counts = store.counts(search_id)
    assert (counts.completed, counts.stopped, counts.pending) == (3, 3, 1)
    return spec


def run_ok(*args: str, cwd: Path) -> str:
    result = ma2ml(*args, cwd=cwd, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_trials_curves_table_and_json(spec_file: Path) -> None:
    cwd = spec_file.parent
    table = run_ok("trials", str(spec_file), "--curves", cwd=cwd)
    assert "curve (epoch:value)" in table
    lines = {int(line.split()[1]): line for line in table.splitlines()
             if line.startswith("│") and line.split()[1].isdigit()}
    assert sorted(lines) == [1, 2, 3, 4, 5, 6, 7]
    for number in STOPPED_NUMBERS:
        assert "stopped" in lines[number] and f"1:{BASES[number - 1] + 0.05:.4g} (stopped)" \
            in lines[number], lines[number]
    # Completed trials: a 4-point sparkline on the range shared by every listed curve.
    assert "▇▇██ 1:0.75 → 4:0.9" in lines[3], lines[3]
    assert "▁ 1:0.15 (stopped)" in lines[6], "the lowest value of every listed curve"
    assert lines[7].rstrip("│ ").endswith("-"), "a pending trial has no curve yet"

    rows = json.loads(run_ok("trials", str(spec_file), "--curves", "--json", cwd=cwd))
    by_number = {row["number"]: row for row in rows}
    for number, base in enumerate(BASES, 1):
        curve = by_number[number]["curve"]
        stopped = number in STOPPED_NUMBERS
        assert [p["step"] for p in curve] == ([1] if stopped else [1, 2, 3, 4])
        assert math.isclose(curve[-1]["value"], base + 0.05 * len(curve))
        assert curve[-1]["decision"] == ("stop" if stopped else "continue")
        assert by_number[number]["status"] == ("stopped" if stopped else "completed")
        assert by_number[number]["epochs"] == len(curve)
    assert by_number[7]["curve"] == [] and by_number[7]["epochs"] is None


def test_status_and_best_count_stopped_and_rank_full_fidelity(spec_file: Path) -> None:
    cwd = spec_file.parent
    status = run_ok("status", str(spec_file), cwd=cwd)
    header = next(line for line in status.splitlines() if "search" in line and "state" in line)
    row = next(line for line in status.splitlines() if "default/curvy" in line)
    cells = dict(zip([c.strip() for c in header.split("┃")[1:-1]],
                     [c.strip() for c in row.split("│")[1:-1]], strict=True))
    assert cells["trials"] == "6/8", "stopped trials count towards maxTrials"
    assert (cells["stopped"], cells["pending"], cells["failed"]) == ("3", "1", "0")
    assert cells["best"] == "0.9000 (observed)"  # 3 pipelines: too few to de-noise

    best = json.loads(run_ok("best", str(spec_file), "--json", cwd=cwd))
    assert (best["trial"], best["reward"]) == (3, 0.9)
    assert (best["fidelity"], best["epochs"], best["ranking"]) == ("full", EPOCHS, BEST_RANKING)
    text = run_ok("best", str(spec_file), cwd=cwd)
    assert "best trial 3" in text
    assert "completed trials at full fidelity only" in text and "stopped early never" in text


def test_run_summary_line_counts_stopped(spec_file: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    commands._print_outcome(f"sqlite:///{spec_file.with_suffix('.db')}", "default/curvy")
    out = capsys.readouterr().out
    assert "6/8 trials, 3 stopped early, 0 failed" in out
    assert "best:   trial 3, reward 0.9000" in out and "(full fidelity)" in out


def test_report_plots_the_curves(spec_file: Path) -> None:
    cwd = spec_file.parent
    out = cwd / "report"
    run_ok("report", str(spec_file), "--out", str(out), cwd=cwd)
    curves = out / "curves.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert curves.stat().st_size > 15_000, "a plot with curves, not an empty frame"
    page = (out / "index.html").read_text()
    assert 'alt="curves"' in page
    assert page.count('<tr class="stopped">') == 3 and page.count('<tr class="completed">') == 3
    assert "3 stopped early" in page and "full fidelity only" in page


def test_trials_curves_reads_only_the_listed_trials(
        spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[int] | None] = []
    real = Store.curves

    def spy(self: Store, search_id: int, trial_ids: list[int] | None = None) -> Any:
        asked.append(trial_ids)
        return real(self, search_id, trial_ids)

    monkeypatch.setattr(Store, "curves", spy)
    monkeypatch.setattr(commands, "CURVES_DEFAULT_LIMIT", 2)
    runner = CliRunner()
    result = runner.invoke(app, ["trials", str(spec_file), "--curves", "--json", "--sort",
                                 "reward", "--desc", "--limit", "3"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["reward"] for row in rows] == [0.9, 0.8, 0.7]
    assert len(asked) == 1 and len(asked[0]) == 3, "one read, of the three listed trials"
    result = runner.invoke(app, ["trials", str(spec_file), "--curves", "--json", "--status",
                                 "stopped", "--limit", "2"])
    limited = json.loads(result.output)
    assert [row["number"] for row in limited] == STOPPED_NUMBERS[:2]
    assert all(row["curve"][-1]["decision"] == "stop" for row in limited)
    assert len(asked[-1]) == 2
    plain = json.loads(runner.invoke(app, ["trials", str(spec_file), "--json"]).output)
    assert "curve" not in plain[0] and len(asked) == 2, "curves only when asked for"
    result = runner.invoke(app, ["trials", str(spec_file), "--curves"])
    assert result.exit_code == 0, result.output
    assert len(asked[-1]) == 2, "--curves without --limit lists a bounded number of trials"
    assert "curves of the first 2 trials; --limit N for more" in result.output


def record(number: int, status: TrialStatus, reward: float | None, last_step: int | None
           ) -> TrialRecord:
    return TrialRecord(
        id=number, search_id=1, number=number, status=status, attempt=1, failures=0,
        pipeline={}, action={}, behaviour_logp={}, policy_version=0, worker=None,
        reward=reward, metrics=None, error=None, created_at=0.0, started_at=None,
        finished_at=None, finished_seq=number, last_step=last_step)


def test_report_draws_a_bounded_sample_with_the_best() -> None:
    rng = random.Random(1)
    trials = [record(n, TrialStatus.completed if n % 3 == 0 else TrialStatus.stopped,
                     rng.random(), rng.randrange(1, 5)) for n in range(1, 1001)]
    trials.append(record(1001, TrialStatus.failed, None, None))  # no curve: never drawn
    shown = report.curve_sample(trials, most=40, best=10)
    assert len(shown) == 40 and shown == report.curve_sample(trials, most=40, best=10)
    top = sorted((t for t in trials if t.status == "completed"), key=lambda t: -t.reward)[:10]
    assert {t.id for t in top} <= {t.id for t in shown}
    assert [t.number for t in shown] == sorted(t.number for t in shown)
    assert report.curve_sample(trials[:30], most=40) == trials[:30]


def test_sparkline_scales_and_samples() -> None:
    assert sparkline([0.0, 0.5, 1.0, None], 0.0, 1.0) == "▁▅█·"
    assert sparkline([0.3, 0.3], 0.3, 0.3) == "██", "a flat range draws full blocks"
    long = sparkline([i / 99 for i in range(100)], 0.0, 1.0, width=10)
    assert len(long) == 10 and long[0] == "▁" and long[-1] == "█"
