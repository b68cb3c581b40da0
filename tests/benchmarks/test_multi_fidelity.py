"""``benchmarks/multi_fidelity.py``: the simulator's clock and event order on a hand-made
two-worker example, its stopping decisions against the store's, determinism, and the
smoke run of every method of this venv on the real LCBench surrogate.

Writes under pytest's ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import numpy as np
import pytest

from ma2ml.spaces import AgentSpace, Decision, SearchSpace
from ma2ml.spec import EarlyStopping
from ma2ml.store import Store, TrialProposal


@pytest.fixture(scope="module")
def mf(load_benchmark):
    """The benchmark script (which puts its sibling modules on ``sys.path``)."""
    return load_benchmark("multi_fidelity")


def _toy_task(mf_tasks):
    """Three pipelines of 3 epochs: 1 s an epoch for 0 and 1, 2 s an epoch for 2."""
    curves = {0: ([0.5, 0.6, 0.7], [1, 2, 3]), 1: ([0.1, 0.2, 0.3], [1, 2, 3]),
              2: ([0.9, 0.95, 0.99], [2, 4, 6])}

    class Toy(mf_tasks.Task):
        def _compute(self, rows):
            return [mf_tasks.Curve(np.array(curves[int(r[0])][0]),
                                   np.array(curves[int(r[0])][1], dtype=float)) for r in rows]

    space = SearchSpace((AgentSpace("a", (Decision("pick", (0, 1, 2)),)),))
    return Toy("toy", space, 3, optimum=0.99, mean=0.5, median_seconds=3.0)


class Scripted:
    """Suggests pipelines in a fixed order, stops pipeline 1 at its first epoch, and
    logs every call."""

    def __init__(self, order):
        self.order, self.log, self.rows = list(order), [], {}

    def suggest(self, trial_id):
        from mf_simulator import Suggestion

        self.rows[trial_id] = self.order.pop(0)
        self.log.append(("suggest", trial_id, self.rows[trial_id]))
        return Suggestion([self.rows[trial_id]])

    def on_result(self, trial_id, epoch, value):
        self.log.append(("result", trial_id, epoch, value))
        return self.rows[trial_id] != 1

    def on_complete(self, trial_id, epoch, value, stopped):
        self.log.append(("complete", trial_id, epoch, value, stopped))


def test_two_workers_event_order_and_clock(mf) -> None:
    import mf_simulator
    import mf_tasks

    task, method = _toy_task(mf_tasks), Scripted([0, 1, 2, 0])
    trace = mf_simulator.simulate(task, method, workers=2, budget_seconds=5.0)
    # t=1: both first epochs, worker 0 first; trial 1 is stopped and worker 1 starts
    # trial 2 (2 s an epoch) at t=1; t=3: trial 0 ends, worker 0 starts trial 3; t=3:
    # trial 2's first epoch; t=4 trial 3's first; t=5 trial 2's second and trial 3's
    # second (worker 0 first at a tie); t=7 is past the budget.
    assert method.log == [
        ("suggest", 0, 0), ("suggest", 1, 1),
        ("result", 0, 1, 0.5), ("result", 1, 1, 0.1), ("complete", 1, 1, 0.1, True),
        ("suggest", 2, 2),
        ("result", 0, 2, 0.6), ("complete", 0, 3, 0.7, False), ("suggest", 3, 0),
        ("result", 2, 1, 0.9), ("result", 3, 1, 0.5),
        ("result", 3, 2, 0.6), ("result", 2, 2, 0.95),
    ]
    assert trace.full == [(3.0, 0.7)] and (trace.trials, trace.stopped) == (4, 1)
    assert trace.best_at([2.9, 3.0, 10.0]).tolist() == [-np.inf, 0.7, 0.7]
    assert trace.training_seconds == 1.0 + 3.0  # the two trials that ended


def test_scores_of_a_hand_made_trace(mf) -> None:
    record = {"unit": 1.0, "optimum": 1.0, "mean": 0.5,
              "full": [(2.0, 0.4), (4.0, 0.8), (6.0, 0.9)]}
    # Regret 0.5 (the mean: 0.4 is worse) until t=4, then 0.2, then 0.1.
    assert mf.regret_at(record, 3.0) == pytest.approx(0.5)
    assert mf.regret_at(record, 8.0) == pytest.approx(0.1)
    assert mf.regret_area(record, 8.0) == pytest.approx((4 * 0.5 + 2 * 0.2 + 2 * 0.1) / 8)
    assert mf.time_to(record, 0.85, 8.0) == 6.0 and mf.time_to(record, 0.95, 8.0) == np.inf
    twice_as_fast = {**record, "full": [(t / 2, v) for t, v in record["full"]]}
    assert mf.time_ratio(twice_as_fast, record, 8.0) == pytest.approx(0.5)


@pytest.mark.parametrize("rule", [
    EarlyStopping(type="asha", min_epochs=1, reduction_factor=2),
    EarlyStopping(type="median", min_epochs=1, min_trials=2),
    EarlyStopping(type="asha", min_epochs=1, reduction_factor=2, brackets=3),
    EarlyStopping(type="asha", min_epochs=1, reduction_factor=2, brackets=3,
                  bracket_shares="equal"),
    EarlyStopping(type="learned", min_epochs=1, reduction_factor=2, min_trials=2, brackets=2)])
def test_the_simulators_stopping_decisions_are_the_stores(mf, store: Store, rule,
                                                          stopping_search) -> None:
    """The same results, reported in the same order, get the same answers: three trials
    report every epoch and complete first, then three more report interleaved."""
    import mf_methods

    rng = np.random.default_rng(0)
    search = stopping_search(store, "default/mf-judge", rule, 5)
    store.enqueue_trials(search.id, [TrialProposal({"x": i}, {"a": [i]}, {"a": -1.0}, 0)
                                     for i in range(6)])
    claimed = [store.claim(search.id, "w", 60) for _ in range(6)]
    judge = mf_methods.StepJudge(rule, max_epochs=5)
    stopped: set[int] = set()
    answers = []

    def report(trial: int, step: int, value: float) -> None:
        if trial in stopped:
            return  # a stopped trial reports nothing more, in either
        ours = judge.report(trial, step, value)
        theirs = store.report_step(claimed[trial].id, claimed[trial].attempt, step, value, {})
        answers.append((ours, theirs))
        if theirs == "stop":
            stopped.add(trial)

    for trial in range(3):
        for step in (1, 2, 3, 4):
            report(trial, step, float(rng.random()))
        if trial not in stopped:
            final = float(rng.random())
            store.complete(claimed[trial].id, claimed[trial].attempt, final, {})
            judge.complete(trial, final)
    for step in (1, 2, 3, 4):
        for trial in 3 + rng.permutation(3):
            report(int(trial), step, float(rng.random()))
    assert all(a == b for a, b in answers)
    assert any(b == "stop" for _, b in answers) and any(b == "continue" for _, b in answers)


def test_adaptive_shares_read_the_same_curves_and_decide_alike(mf, store: Store,
                                                              stopping_search) -> None:
    """Adaptive bracket shares learn from the recent completed curves: after 40 trials
    complete (more than ``RECENT_CURVES``), the simulator and the store read the same
    curves and give 12 new trials the same answers. Early results here rank final ones
    inversely, so the shares leave the first rung, and some trial is judged only later."""
    import mf_methods

    from ma2ml.store.queue import _recent_curves
    from ma2ml.store.stopping import RECENT_CURVES, bracket, rungs

    rule = EarlyStopping(type="asha", min_epochs=1, reduction_factor=2, brackets=4)
    n_done, n_new, epochs = RECENT_CURVES + 10, 12, 8
    rng = np.random.default_rng(1)
    search = stopping_search(store, "default/mf-adaptive", rule, epochs)
    store.enqueue_trials(search.id, [TrialProposal({"x": i}, {"a": [i]}, {"a": -1.0}, 0)
                                     for i in range(n_done + n_new)])
    claimed = [store.claim(search.id, "w", 60) for _ in range(n_done + n_new)]
    judge = mf_methods.StepJudge(rule, max_epochs=epochs)
    answers = []

    def report(trial: int, step: int, value: float) -> str:
        ours = judge.report(trial, step, value)
        theirs = store.report_step(claimed[trial].id, claimed[trial].attempt, step, value, {})
        answers.append((ours, theirs))
        return theirs

    for trial in range(n_done):
        final = float(rng.random())
        for step in range(1, epochs):  # inversely ranked early: 1 - final, plus noise
            if report(trial, step, 1 - final + 0.01 * float(rng.random())) == "stop":
                break
        else:
            store.complete(claimed[trial].id, claimed[trial].attempt, final, {})
            judge.complete(trial, final)
    with store._session() as session:  # the query report_step makes, read directly
        curves = _recent_curves(session, search.id, rungs(rule, epochs))
    assert [sorted(c) for c in curves] == [sorted(c) for c in judge._recent_curves()]
    assert all(len(c) >= 6 for c in curves)
    assert bracket(rule, n_done + 1, epochs) != bracket(rule, n_done + 1, epochs, curves) or \
        any(bracket(rule, n, epochs) != bracket(rule, n, epochs, curves)
            for n in range(n_done + 1, n_done + n_new + 1))
    for step in range(1, epochs):
        for trial in n_done + rng.permutation(n_new):
            report(int(trial), step, float(rng.random()))
    assert all(a == b for a, b in answers)


def test_the_real_learner_is_deterministic_per_seed(mf) -> None:
    import mf_methods
    import mf_simulator
    import mf_tasks

    task = _toy_task(mf_tasks)
    runs = [mf_simulator.simulate(task, mf_methods.make_method("ma2ml+asha", task, seed, 2),
                                  2, 40.0).full for seed in (3, 3, 4)]
    assert runs[0] == runs[1] and runs[0]


def test_unknown_methods_and_tasks_are_refused_with_the_known_ones(mf) -> None:
    import mf_methods
    import mf_tasks

    with pytest.raises(ValueError, match="known: random, ma2ml"):
        mf_methods.make_method("optuna-tpe+asha", _toy_task(mf_tasks), 0, 2)
    with pytest.raises(ValueError, match="unknown LCBench task '42'.*3945"):
        mf_tasks.load_task("lcbench-42")
    with pytest.raises(ValueError, match="unknown task 'nb201'.*lcbench-<OpenML task id>, "
                                         "nb301, fmnist-curves"):
        mf_tasks.load_task("nb201")


def _uniform_rows(task, n: int, seed: int) -> np.ndarray:
    sizes = np.array([d.size for a in task.space.agents for d in a.decisions])
    return (np.random.default_rng(seed).random((n, len(sizes))) * sizes).astype(np.int64)


@pytest.mark.parametrize("name", ["nb301", "fmnist-curves"])
def test_the_new_task_families_give_sane_curves_and_deterministic_runs(mf, name) -> None:
    """Curves of uniform joint actions: accuracy in [0, 1], cost positive and
    non-decreasing, no final above the regret reference; the same curves computed again,
    and the same trace from the same seed on a short run."""
    import mf_methods
    import mf_simulator
    import mf_tasks

    task = mf_tasks.load_task(name)
    assert task.name == name and 0 < task.mean < task.optimum <= 1 and task.median_seconds > 0
    rows = _uniform_rows(task, 64, seed=7)
    curves = [task.curve(row) for row in rows]
    for c in curves:
        assert c.values.shape == c.seconds.shape == (task.max_epochs,)
        assert ((c.values >= 0) & (c.values <= 1)).all()
        assert c.seconds[0] > 0 and (np.diff(c.seconds) >= 0).all()
    assert max(c.values[-1] for c in curves) <= task.optimum
    again = task._compute(rows[:8])  # past the cache
    assert all((a.values == c.values).all() and (a.seconds == c.seconds).all()
               for a, c in zip(again, curves, strict=False))
    runs = [mf_simulator.simulate(task, mf_methods.make_method(method, task, seed, 2), 2,
                                  3 * task.median_seconds)
            for method, seed in (("random+asha", 5), ("random+asha", 5), ("ma2ml+adaptive", 5))]
    assert runs[0].full == runs[1].full and runs[0].full and runs[0].stopped > 0
    assert all(v <= task.optimum for run in runs for _, v in run.full)


def test_nb301_encodes_a_cell_with_its_active_edges_only(mf) -> None:
    """Per cell: the two edges into node 2, and into nodes 3-5 the edges from the chosen
    pair, carry their operations' codes; the other 6 of 14 edges are inactive (code 0)."""
    import mf_tasks

    codes = {op: code for op, code in zip(
        ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
         "dil_conv_3x3", "dil_conv_5x5"), (4, 1, 7, 5, 6, 2, 3), strict=True)}
    ops = list(mf_tasks.NB301_OPS)
    # normal: node 3 reads 1_2, node 4 reads 0_3, node 5 reads 2_4; reduce: the first pairs.
    normal = [0, 1, 2, 2, 3, 2, 4, 5, 8, 6, 0]
    reduce = [1, 1, 0, 1, 1, 0, 1, 1, 0, 1, 1]
    x_cat = mf_tasks.NB301Task._encode(np.array([normal + reduce]))[0]
    edges = np.zeros(14, dtype=int)
    # node 2: edges 0, 1; node 3 from 1, 2: edges 3, 4; node 4 from 0, 3: edges 5, 8;
    # node 5 from 2, 4: edges 11, 13.
    for edge, op in ((0, 0), (1, 1), (3, 2), (4, 3), (5, 4), (8, 5), (11, 6), (13, 0)):
        edges[edge] = codes[ops[op]]
    assert x_cat[:14].tolist() == edges.tolist()
    assert x_cat[14:28].tolist() == [1, 1, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0]
    # inputs_node_normal_3..5 then reduce_3..5: encoding_v2.json's codes of the pairs.
    assert x_cat[28:].tolist() == [3, 3, 9, 1, 1, 1]


def test_fmnist_curves_replay_the_nearest_measured_pipeline(mf) -> None:
    """A measured pipeline replays itself; any other joint action the measured pipeline
    fewest decisions away, the first in (collection, index) order among ties."""
    import mf_tasks

    task = mf_tasks.load_task("fmnist-curves")
    assert task.rows.shape == (54, 25) and task.max_epochs == 9
    assert task.optimum == max(c.values[-1] for c in task._measured)
    for i in (0, 17, 53):
        assert task.curve(task.rows[i]) is task._measured[i]
    for row in _uniform_rows(task, 32, seed=3):
        distance = [int((row != measured).sum()) for measured in task.rows]
        assert task.curve(row) is task._measured[distance.index(min(distance))]


def test_smoke_run_of_every_method_on_the_lcbench_surrogate(mf, tmp_path, capsys) -> None:
    mf.main(["--smoke", "--jobs", "1", "--out", str(tmp_path)])
    text = (tmp_path / "multi_fidelity.md").read_text()
    for method in mf.OWN_METHODS:
        assert f"| {method} |" in text
    assert "## lcbench-3945" in text and "ma2ml+adaptive against each method" in text
    assert "Average rank over 1 tasks" in text
    records = mf.read_records(tmp_path / "multi_fidelity.json.gz")
    assert {r["method"] for r in records} == set(mf.OWN_METHODS)
    asha = [r for r in records if r["method"] == "random+asha"]
    assert all(r["stopped"] > 0 and r["full"] for r in asha)


@pytest.mark.parametrize("args", [["--seeds", "0"], ["--workers", "2000"], ["--budgets", "-1"],
                                  ["--methods", "hyperopt"]])
def test_bad_command_lines_are_refused_naming_the_option(mf, args, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        mf.main(args)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert args[0] in err or "unknown methods ['hyperopt']" in err
