"""``ma2ml report``: PNG plots and one self-contained HTML page per search.

Plots: best reward so far, the reward of every trial, per-agent policy
entropy and mean credit over learner updates, and an augmentation preview
of the best pipeline. The HTML page embeds the PNGs as data URIs so it can
be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402

from ma2ml.local.results import Summary, summarize, trial_row  # noqa: E402
from ma2ml.store import SearchRecord, Store, TrialRecord  # noqa: E402

STATUS_COLOURS = {"completed": "tab:blue", "diverged": "tab:orange", "failed": "tab:red"}


@dataclass(frozen=True)
class Report:
    """Where the report was written."""

    html: Path
    images: list[Path]


def plot_best_so_far(trials: list[TrialRecord], summary: Summary, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    best, xs, ys = float("-inf"), [], []
    for i, trial in enumerate(trials, 1):
        if trial.status == "completed" and trial.reward is not None:
            best = max(best, trial.reward)
        if best > float("-inf"):
            xs.append(i)
            ys.append(best)
    ax.step(xs, ys, where="post", label="best reward so far", color="tab:blue")
    if summary.random_mean is not None:
        ax.axhline(summary.random_mean, ls="--", color="grey",
                   label=f"random pipelines (mean accuracy, n={len(summary.random_accuracies)})")
    ax.set(xlabel="finished trials", ylabel="reward", title=f"{summary.key}: best so far")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_rewards(trials: list[TrialRecord], summary: Summary, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for status, colour in STATUS_COLOURS.items():
        points = [(i, t.reward or 0.0) for i, t in enumerate(trials, 1) if t.status == status]
        if points:
            ax.scatter(*zip(*points, strict=True), s=18, color=colour, label=status,
                       marker="x" if status != "completed" else "o")
    ax.set(xlabel="finished trials", ylabel="reward", title=f"{summary.key}: every trial")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_agent_stat(stats: list[tuple[int, float, dict]], key: str, ylabel: str, title: str,
                    path: Path) -> Path:
    """One line per agent of ``stats[key][agent]`` over policy versions."""
    fig, ax = plt.subplots(figsize=(7, 4))
    agents: dict[str, tuple[list[int], list[float]]] = {}
    for version, _created, values in stats:
        for agent, value in (values or {}).get(key, {}).items():
            if value is not None:
                xs, ys = agents.setdefault(agent, ([], []))
                xs.append(version)
                ys.append(float(value))
    for agent, (xs, ys) in agents.items():
        ax.plot(xs, ys, marker=".", label=agent)
    if not agents:
        ax.text(0.5, 0.5, "no learner updates yet", ha="center", transform=ax.transAxes)
    ax.set(xlabel="policy version (learner update)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if agents:
        ax.legend()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _augment_preview(record: SearchRecord, best: TrialRecord | None, path: Path) -> Path | None:
    """A grid of the best pipeline's augmentation applied to real training images."""
    if best is None:
        return None
    from ma2ml.spec import parse_spec
    from ma2ml.worker.preview import save_preview

    search = parse_spec(record.spec)
    if not any(a.preset == "autoaugment" for a in search.spec.agents):
        return None
    save_preview(search, best.pipeline, path)
    return path


def write_report(store: Store, record: SearchRecord, out_dir: Path) -> Report:
    """Write the PNGs and ``index.html`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(store, record)
    trials = store.finished_since(record.id, 0)  # every finished trial, in order
    stats = store.snapshot_stats(record.id)
    images = [
        plot_best_so_far(trials, summary, out_dir / "best_so_far.png"),
        plot_rewards(trials, summary, out_dir / "rewards.png"),
        plot_agent_stat(stats, "entropy", "entropy (nats)", "policy entropy per agent",
                        out_dir / "entropy.png"),
        plot_agent_stat(stats, "credit", "mean |A_i|",
                        "mean absolute counterfactual credit per agent", out_dir / "credit.png"),
    ]
    preview = _augment_preview(record, summary.best, out_dir / "augment_preview.png")
    if preview is not None:
        images.append(preview)
    page = out_dir / "index.html"
    page.write_text(render_html(summary, trials, images))
    return Report(page, images)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def render_html(summary: Summary, trials: list[TrialRecord], images: list[Path]) -> str:
    best = summary.best
    rows = "".join(
        f"<tr><th>{html.escape(agent)}</th><td><code>{html.escape(json.dumps(values))}</code>"
        f"</td></tr>" for agent, values in (best.pipeline.items() if best else []))
    metrics = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                      for k, v in sorted(((best.metrics or {}) if best else {}).items()))
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in trial_row(t).values())
        + "</tr>" for t in trials)
    header = "".join(f"<th>{k}</th>" for k in trial_row(trials[0])) if trials else ""
    random_line = (f"{summary.random_mean:.4f} (mean of {len(summary.random_accuracies)} "
                   f"random pipelines)" if summary.random_mean is not None else "-")
    figures = "".join(_img(p, p.stem.replace("_", " ")) for p in images)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ma2ml report: {html.escape(summary.key)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
figure{{display:inline-block;margin:.5em}} img{{max-width:520px}}
img[alt="augment preview"]{{width:520px;image-rendering:pixelated}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px;font-size:90%}}
</style></head><body>
<h1>Search {html.escape(summary.key)}</h1>
<p>State <b>{html.escape(summary.state)}</b>, {summary.done}/{summary.max_trials} trials,
{summary.counts.get('failed', 0)} failed, {summary.counts.get('diverged', 0)} diverged.
Best reward <b>{best.reward if best else '-'}</b> (trial {best.number if best else '-'});
random baseline accuracy {random_line}.</p>
<h2>Best pipeline</h2><table>{rows}</table><h3>Metrics</h3><table>{metrics}</table>
<h2>Plots</h2>{figures}
<h2>Trials</h2><table><tr>{header}</tr>{table}</table>
</body></html>
"""


def _fmt(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
