"""The report's ``index.html``: one self-contained page (PNGs embedded as data URIs).

Numbers are rounded for reading (``fmt``); stored and trainer text is escaped
and shows its control and bidirectional characters as escapes (``_shown``);
each figure has a caption saying
what it shows; the trials table is sorted by reward, best first, with each
completed trial's rank (``ranked``). Random search is compared at the same
number of trials (``Summary.random_best_of``), with the estimate's basis said.
The headline names the budget limit that ended the search, if one did, and the
time used (``Summary.time_used``).
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from ma2ml.results.summary import (
    BEST_RANKING,
    STATUS_ORDER,
    Summary,
    recommended_lines,
    trial_row,
)
from ma2ml.store import TrialRecord, TrialStatus
from ma2ml.visible import rounded, visible

#: Caption of each figure, by file stem.
CAPTIONS = {
    "best_so_far": "The search's best reward after n finished trials (blue) against random "
                   "search's expected best of n pipelines (grey, with its interval), estimated "
                   "from the pipelines this search drew uniformly at random before its policies "
                   "learned; dashed where n exceeds those draws: there only a lower bound "
                   "(random search's best of n is at least its best of fewer).",
    "rewards": "The reward of every finished trial, in the order the trials finished.",
    "curves": "Learning curves: the reward at each epoch of each trial.",
    "entropy": "Policy entropy per agent after each learner update: it falls as a policy "
               "concentrates on fewer choices.",
    "credit": "Mean absolute counterfactual credit per agent after each learner update.",
    "augment_preview": "Top row: original training images. Each row below: the best "
                       "pipeline's augmentation policy applied to those same images, a fresh "
                       "random draw of the policy per row.",
}
TABLE_NOTE = ("Sorted by reward, best first. The rank counts completed trials only (full "
              "fidelity); trials stopped early (grey) follow, then diverged and failed ones. "
              "<code>number</code> is the order in which the trials were proposed.")


def fmt(value: object) -> str:
    """A number as a person reads it: 4 decimals below 100, 1 above, 3 digits far out."""
    if value is None:
        return ""
    if isinstance(value, float):
        magnitude = abs(value)
        if not math.isfinite(value) or magnitude == 0:
            return str(value)
        if magnitude >= 1e6 or magnitude < 1e-3:
            return f"{value:.3g}"
        return f"{value:.1f}" if magnitude >= 100 else f"{value:.4f}"
    return str(value)


def _shown(value: object) -> str:
    """Stored or trainer text as HTML: escaped, and its control and bidirectional
    characters written as escapes (``ma2ml.visible``): a U+202E in an error tail
    must not turn the rest of its table row around."""
    return html.escape(visible(str(value), keep_newlines=True))


def ranked(trials: list[TrialRecord]) -> list[tuple[int | None, TrialRecord]]:
    """Trials sorted by status (completed first, ``STATUS_ORDER``), then reward (best first,
    ties to the first to finish); completed ones numbered 1, 2, ... (the best is 1)."""
    def key(t: TrialRecord) -> tuple[int, float, int]:
        reward = t.reward if t.reward is not None and math.isfinite(t.reward) else -math.inf
        return STATUS_ORDER.get(t.status, len(STATUS_ORDER)), -reward, t.finished_seq or 0

    rows: list[tuple[int | None, TrialRecord]] = []
    rank = 0
    for trial in sorted(trials, key=key):
        if trial.status == TrialStatus.completed and trial.reward is not None:
            rank += 1
            rows.append((rank, trial))
        else:
            rows.append((None, trial))
    return rows


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    alt = path.stem.replace("_", " ")
    caption = CAPTIONS.get(path.stem, "")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _random_line(summary: Summary) -> str:
    """Random search at this search's number of trials; the mean of random pipelines too."""
    compared = summary.random_best_of(max(1, summary.done))
    if not compared or summary.random_mean is None:
        return "random search: no pipelines drawn uniformly yet, nothing to compare with"
    line = f"random search: {compared[0].describe()}; their mean accuracy {summary.random_mean:.4f}"
    learned = summary.learned_against_random()
    return line + (f". Same number of trials: {learned}" if learned else "")


def _ended(summary: Summary) -> str:
    """`` (MaxDurationReached: search ran 10m 2s (maxDuration 10m))`` when the budget ended
    the search, else nothing (escaped HTML)."""
    reason = summary.ended_by()
    if reason is None or summary.verdict is None:
        return ""
    message = summary.message or summary.verdict.message
    return f" ({html.escape(reason)}: {_shown(message)})"


def _cell(column: str, value: object) -> str:
    if column == "seconds" and isinstance(value, float):
        return f"{value:.1f}"  # wall time: tenths are plenty
    return fmt(value)


def _trials_table(trials: list[TrialRecord]) -> str:
    if not trials:
        return "<p>No finished trials yet.</p>"
    header = "<th>rank</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in trial_row(trials[0]))
    body = "".join(
        f'<tr class="{html.escape(t.status)}"><td>{rank or ""}</td>'
        + "".join(f"<td>{_shown(_cell(k, v))}</td>" for k, v in trial_row(t).items())
        + "</tr>" for rank, t in ranked(trials))
    return f"<p>{TABLE_NOTE}</p><table><tr>{header}</tr>{body}</table>"


def render_html(summary: Summary, trials: list[TrialRecord], images: list[Path]) -> str:
    """The page: headline, best pipeline and metrics, captioned figures, ranked trials."""
    # The best estimated mean (ma2ml.store.recommend), not the luckiest draw.
    best = summary.recommended[1] if summary.recommended else summary.best
    rows = "".join(
        f"<tr><th>{_shown(agent)}</th><td><code>"
        f"{html.escape(json.dumps(rounded(values)))}</code></td></tr>"
        for agent, values in (best.pipeline.items() if best else []))
    metrics = "".join(f"<tr><th>{_shown(k)}</th><td>{_shown(fmt(v))}</td></tr>"
                      for k, v in sorted(((best.metrics or {}) if best else {}).items()))
    headline = (f"Best: {html.escape('; '.join(recommended_lines(summary)))} "
                f"({html.escape(BEST_RANKING)})" if summary.recommended
                else "No completed trial yet")
    figures = "".join(_figure(p) for p in images)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ma2ml report: {_shown(summary.key)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
figure{{display:inline-block;margin:.5em;vertical-align:top;max-width:520px}}
img{{max-width:520px}} figcaption{{font-size:85%;color:#444}}
img[alt="augment preview"]{{width:520px;image-rendering:pixelated}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}
tr.stopped{{color:#888}}
</style></head><body>
<h1>Search {_shown(summary.key)}</h1>
<p>State <b>{html.escape(summary.state)}</b>{_ended(summary)}, {summary.done}/{summary.max_trials}
trials, {summary.counts.stopped} stopped early, {summary.counts.failed} failed,
{summary.counts.diverged} diverged; {html.escape(summary.time_used())}. {headline}.</p>
<p>{html.escape(_random_line(summary))}.</p>
<h2>Best pipeline</h2><table>{rows}</table><h3>Metrics</h3><table>{metrics}</table>
<h2>Plots</h2>{figures}
<h2>Trials</h2>{_trials_table(trials)}
</body></html>
"""
