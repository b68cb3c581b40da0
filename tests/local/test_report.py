"""The HTML report reads like a report (issue 16, friction 8): rounded numbers, captioned
figures, trials ranked best first, and random search compared at the same number of trials.

Trials are written through the real Store API instead of being trained (training is
covered by test_run.py); the report, its PNGs and the augmentation preview (real
Fashion-MNIST images) are real.
"""

from __future__ import annotations

import html
import random
import re
from pathlib import Path

from ma2ml.local.report import write_report
from ma2ml.results.summary import uniform_logp
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store, TrialProposal

from .test_run import tiny_spec

#: Rewards in finish order: the first four drawn uniformly, the rest by learned policies.
REWARDS = [0.41, 0.63, 0.55, 0.48, 0.70, 0.66, 0.81, 0.74]
UNIFORM = 4


def _report(tmp_path: Path) -> str:
    search = parse_spec(tiny_spec("report", max_trials=len(REWARDS) + 1))
    space, rng = search.spec.search_space(), random.Random(0)
    with Store(f"sqlite:///{tmp_path / 'r.db'}") as store:
        record = store.create_search(search.key, spec_to_document(search))
        uniform = uniform_logp(record)
        for i, reward in enumerate(REWARDS):
            action = {a.name: [rng.randrange(s) for s in a.sizes] for a in space.agents}
            logp = uniform if i < UNIFORM else {a: v + 0.5 for a, v in uniform.items()}
            store.enqueue_trials(record.id, [TrialProposal(space.decode(action), action,
                                                           logp, 0)])
            claimed = store.claim(record.id, "w", 30)
            # An unrounded float, as a real trainer reports them.
            store.complete(claimed.id, claimed.attempt, reward,
                           {"accuracy": reward, "train_seconds": 110.17415040700007 + i})
        failed = store.claim(record.id, "w", 30) or None
        assert failed is None  # nothing pending: the failed trial below is enqueued first
        action = {a.name: [0] * len(a.sizes) for a in space.agents}
        store.enqueue_trials(record.id, [TrialProposal(space.decode(action), action,
                                                       uniform, 0)])
        claimed = store.claim(record.id, "w", 30)
        store.fail(claimed.id, claimed.attempt, "boom", retryable=False, max_retries=0)
        report = write_report(store, store.get_search_by_id(record.id), tmp_path / "report")
    return report.html.read_text()


def test_report_rounds_captions_ranks_and_compares_at_the_same_n(tmp_path: Path) -> None:
    page = _report(tmp_path)
    assert "116.17415040700007" not in page and "116.2" in page, "floats are rounded"
    assert re.search(r"1 failed,\s+0 diverged; ran \d+s, trained \d+s\.", page), \
        "the headline says the time used"
    assert not re.search(r"\d\.\d{7,}", re.sub(r"base64,[^\"]+", "", page)), \
        "no number with more than 6 decimals"

    captions = dict(re.findall(r'<img alt="([^"]+)"[^>]*><figcaption>([^<]*)</figcaption>',
                               page))
    assert "Top row: original training images" in captions["augment preview"]
    assert "expected best of n" in captions["best so far"]

    table = page[page.index("<h2>Trials</h2>"):]
    assert "Sorted by reward, best first" in table
    rows = re.findall(r'<tr class="(\w+)"><td>(\d*)</td><td>(\d+)</td><td>\w+</td>'
                      r"<td>([\d.]*)</td>", table)
    assert [(status, rank) for status, rank, _, _ in rows] == (
        [("completed", str(r)) for r in range(1, len(REWARDS) + 1)] + [("failed", "")])
    shown = [float(reward) for _, _, _, reward in rows[:-1]]
    assert shown == sorted(REWARDS, reverse=True)
    assert rows[0][2] == str(REWARDS.index(max(REWARDS)) + 1), "number kept: finish order"

    # Random search at this search's 8 results, from its 4 uniform draws: a lower bound.
    line = html.unescape(re.search(r"<p>(random search: [^<]*)</p>", page).group(1))
    assert "expected best of 8 random pipelines: at least 0.6300" in line
    assert "only 4 pipelines this search drew uniformly" in line and "lower bound" in line
    # n against n: the latest 4 learned proposals (0.70, 0.66, 0.81, 0.74) against 4 random.
    assert ("the latest 4 trials the learned policies proposed: best 0.8100, mean 0.7275; "
            "4 random pipelines: expected best 0.6300") in line
