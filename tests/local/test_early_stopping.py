"""``ma2ml run`` end to end with ASHA: a real learner, real worker processes and a real
custom trainer reporting learning curves; trials that are clearly worse at a rung end
``stopped``, the search finishes, and the best pipeline is ranked at full fidelity."""

from __future__ import annotations

import json
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from .test_run import ma2ml, write

#: A trainer with a learning curve: epochs 1..3 reported as steps, then the final result.
#: Odd trial numbers (``$MA2ML_SEED``) learn well, even ones badly, whatever the pipeline,
#: so that ASHA has clearly worse trials at its rungs whichever pipelines the learner draws.
#: Good trials tie (ties count in a trial's favour), so none of them is ever stopped. A bad
#: trial starts reporting late: the trial claimed just before it has reported epoch 1 by
#: then, so the good ones always outnumber the bad ones at a rung and every bad one stops.
#: The pause lets the worker judge each step while the trainer "trains" the next epoch.
TRAINER = """
import os, time, ma2ml
good = int(os.environ["MA2ML_SEED"]) % 2 == 1
level = 0.8 if good else 0.2
time.sleep(0 if good else 0.5)
for epoch in (1, 2, 3):
    ma2ml.report(accuracy=level * epoch / 4, step=epoch)
    time.sleep(0.15)
ma2ml.report(accuracy=level)
"""


def asha_spec(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "ma2ml.io/v1alpha1",
        "kind": "PipelineSearch",
        "metadata": {"name": name},
        "spec": {
            "agents": [{"name": "model", "decisions": [{"name": "width", "values": [1, 2, 3]}]}],
            "algorithm": {"name": "ma2ml", "seed": 1},
            "budget": {"maxTrials": 8, "parallelism": 2, "trialEpochs": 4, "leaseSeconds": 30},
            "earlyStopping": {"type": "asha", "minEpochs": 1, "reductionFactor": 2},
            "trainer": {"type": "command", "command": [sys.executable, "-c", TRAINER],
                        "timeoutSeconds": 60},
        },
    }


def test_asha_stops_the_worse_trials_and_the_best_is_a_completed_one(tmp_path: Path) -> None:
    spec = write(tmp_path / "asha.yaml", asha_spec("asha"))
    result = ma2ml("run", str(spec), cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]

    listed = json.loads(ma2ml("trials", str(spec), "--json", cwd=tmp_path).stdout)
    by_status: dict[str, list[dict[str, Any]]] = {}
    for trial in listed:
        by_status.setdefault(trial["status"], []).append(trial)
    stopped, completed = by_status.get("stopped", []), by_status.get("completed", [])
    assert stopped, f"no trial was stopped: {[t['status'] for t in listed]}"
    assert len(stopped) + len(completed) == 8, "the search ends at maxTrials results"
    assert all(t["number"] % 2 == 0 for t in stopped), "only the clearly worse trials stop"
    for trial in stopped:  # the result of the rung it stopped at, and that fidelity
        assert trial["epochs"] in (1, 2) and trial["reward"] == 0.2 * trial["epochs"] / 4

    best = json.loads(ma2ml("best", str(spec), "--json", cwd=tmp_path).stdout)
    [top] = [t for t in listed if t["number"] == best["trial"]]
    assert top["status"] == "completed"
    assert best["reward"] == max(t["reward"] for t in completed)
    assert best["reward"] == 0.8  # a full-fidelity result, never a rung's partial one

    with closing(sqlite3.connect(tmp_path / "asha.db")) as conn:
        points = conn.execute("SELECT trial_id, step, decision FROM trial_steps").fetchall()
        status = dict(conn.execute("SELECT id, status FROM trials").fetchall())
    curves: dict[int, list[tuple[int, str]]] = {}
    for trial_id, step, decision in sorted(points):
        curves.setdefault(trial_id, []).append((step, decision))
    for trial_id, curve in curves.items():
        if status[trial_id] == "stopped":
            assert curve[-1] in ((1, "stop"), (2, "stop"))  # at one of ASHA's rungs
        elif status[trial_id] == "completed":
            assert curve == [(1, "continue"), (2, "continue"), (3, "continue")]

    # What a user looks at afterwards shows the stopped trials.
    status_out = ma2ml("status", str(spec), cwd=tmp_path)
    assert status_out.returncode == 0 and "stopped" in status_out.stdout
    curves_out = ma2ml("trials", str(spec), "--curves", cwd=tmp_path)
    assert curves_out.returncode == 0 and "(stopped)" in curves_out.stdout
    with_curves = json.loads(ma2ml("trials", str(spec), "--curves", "--json",
                                   cwd=tmp_path).stdout)
    assert all(len(t["curve"]) == t["epochs"] for t in with_curves if t["status"] == "stopped")
    report = ma2ml("report", str(spec), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (tmp_path / "report" / "curves.png").stat().st_size > 2000
    assert "stopped" in (tmp_path / "report" / "index.html").read_text()
