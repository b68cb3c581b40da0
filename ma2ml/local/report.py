"""``ma2ml report``: PNG plots and one self-contained HTML page per search.

Plots: best reward so far, the reward of every trial, the learning curves
(value per epoch; trials stopped early greyed, completed ones coloured by
their reward), per-agent policy entropy and mean credit over learner
updates, and an augmentation preview of the best pipeline. The HTML page
(``report_html``) embeds the PNGs as data URIs so it can be mailed or
archived as one file.

The curves plot stays bounded however big the search: at most
``MAX_CURVES`` curves are read and drawn, the ``BEST_CURVES`` best completed
trials and a fixed-seed random sample of the others, and its title says so.
The best pipeline is ranked at full fidelity (completed trials only).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ma2ml.local.report_html import render_html  # noqa: E402
from ma2ml.results.baseline import LEVEL  # noqa: E402
from ma2ml.results.summary import Summary, summarize  # noqa: E402
from ma2ml.store import SearchRecord, StepRecord, Store, TrialRecord, TrialStatus  # noqa: E402

COMPLETED, STOPPED = TrialStatus.completed, TrialStatus.stopped
STATUS_COLOURS = {COMPLETED: "tab:blue", STOPPED: "tab:grey",
                  TrialStatus.diverged: "tab:orange", TrialStatus.failed: "tab:red"}
STATUS_MARKERS = {COMPLETED: "o", STOPPED: "v", TrialStatus.diverged: "x",
                  TrialStatus.failed: "x"}
#: Most learning curves one report reads and draws.
MAX_CURVES = 200
#: Of those, the best completed trials (the rest is a random sample of the others).
BEST_CURVES = 50
STOPPED_GREY = "0.6"
#: Most values of n at which the random-search baseline is estimated and drawn.
BASELINE_POINTS = 120


@dataclass(frozen=True)
class Report:
    """Where the report was written."""

    html: Path
    images: list[Path]


def plot_best_so_far(trials: list[TrialRecord], summary: Summary, path: Path) -> Path:
    """The search's best reward after n trials against random search's expected best of n
    (``Summary.random_best_of``): solid while n is within the uniform draws it is estimated
    from, dashed beyond them, where it is a lower bound (the expected best of the draws)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    best, xs, ys = float("-inf"), [], []
    for i, trial in enumerate(trials, 1):
        if trial.status == COMPLETED and trial.reward is not None:
            best = max(best, trial.reward)
        if best > float("-inf"):
            xs.append(i)
            ys.append(best)
    ax.step(xs, ys, where="post", label="this search: best reward so far", color="tab:blue")
    ns = sorted({max(1, round(k * len(trials) / BASELINE_POINTS))
                 for k in range(1, BASELINE_POINTS + 1)}) if trials else []
    random_best = summary.random_best_of(*ns)
    if random_best:
        draws = random_best[0].draws
        within = [b for b in random_best if not b.extrapolated]
        beyond = [b for b in random_best if b.n >= draws]
        for part, style, label in (
                (within, "-", f"random search: expected best of n (from {draws} uniform draws, "
                              f"{LEVEL:.0%} interval)"),
                (beyond, "--", f"beyond n={draws}: at least that (a lower bound)")):
            if not part:
                continue
            n = [b.n for b in part]
            ax.plot(n, [b.expected for b in part], ls=style, color="tab:grey", label=label)
            ax.fill_between(n, [b.low for b in part], [b.high for b in part], color="tab:grey",
                            alpha=0.15 if style == "-" else 0.07, lw=0)
    ax.set(xlabel="finished trials (n)", ylabel="reward",
           title=f"{summary.key}: best so far against random search")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return _save(fig, path)


def plot_rewards(trials: list[TrialRecord], summary: Summary, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    for status, colour in STATUS_COLOURS.items():
        points = [(i, t.reward or 0.0) for i, t in enumerate(trials, 1) if t.status == status]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, s=18, color=colour, label=status, marker=STATUS_MARKERS[status])
    ax.set(xlabel="finished trials", ylabel="reward", title=f"{summary.key}: every trial")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def curve_sample(trials: list[TrialRecord], most: int = MAX_CURVES, best: int = BEST_CURVES,
                 seed: int = 0) -> list[TrialRecord]:
    """The trials whose curves the report draws: those that reported epochs at all, the
    ``best`` completed ones by reward and a seeded random sample of the rest, ``most`` in all
    (every one of them when there are no more)."""
    with_curves = [t for t in trials if t.last_step is not None]
    if len(with_curves) <= most:
        return with_curves
    rewarded = [(t.reward, t) for t in with_curves
                if t.status == COMPLETED and t.reward is not None]
    completed = [t for _reward, t in sorted(rewarded, key=lambda pair: pair[0], reverse=True)]
    top = completed[:min(best, most)]
    chosen = {t.id for t in top}
    rest = [t for t in with_curves if t.id not in chosen]
    sample = random.Random(seed).sample(rest, most - len(top))
    return sorted(top + sample, key=lambda t: t.number)


def plot_curves(shown: list[TrialRecord], curves: dict[int, list[StepRecord]], total: int,
                summary: Summary, path: Path) -> Path:
    """Value against epoch per trial: completed ones coloured by their reward, stopped ones
    grey with an ``x`` where they were stopped, diverged and failed ones dotted red."""
    fig, ax = plt.subplots(figsize=(7, 4))
    rewards = [t.reward for t in shown if t.status == COMPLETED and t.reward is not None]
    norm = Normalize(min(rewards), max(rewards)) if len(set(rewards)) > 1 else None
    colours = plt.get_cmap("viridis")
    drawn = {COMPLETED: 0, STOPPED: 0, "other": 0}
    # Grey first, so the coloured completed curves are drawn on top.
    for trial in sorted(shown, key=lambda t: t.status == COMPLETED):
        steps = curves.get(trial.id, [])
        if not steps:
            continue
        xs = [s.step for s in steps]
        ys = [s.value if s.value is not None else float("nan") for s in steps]
        if trial.status == COMPLETED:
            colour: object = "tab:blue"
            if norm is not None and trial.reward is not None:
                colour = colours(norm(trial.reward))
            ax.plot(xs, ys, color=colour, lw=1.3, alpha=0.9, marker=".", ms=3, zorder=3)
            drawn[COMPLETED] += 1
        elif trial.status == STOPPED:
            ax.plot(xs, ys, color=STOPPED_GREY, lw=0.9, alpha=0.6, zorder=1)
            ax.plot(xs[-1:], ys[-1:], color=STOPPED_GREY, marker="x", ms=5, ls="", zorder=1)
            drawn[STOPPED] += 1
        else:
            ax.plot(xs, ys, color="tab:red", lw=0.8, ls=":", alpha=0.7, zorder=2)
            drawn["other"] += 1
    handles = [
        Line2D([], [], color=colours(0.8), lw=1.3, label=f"completed ({drawn[COMPLETED]})"),
        Line2D([], [], color=STOPPED_GREY, marker="x", lw=0.9,
                   label=f"stopped early ({drawn[STOPPED]})"),
    ]
    if drawn["other"]:
        handles.append(Line2D([], [], color="tab:red", ls=":",
                                  label=f"diverged or failed ({drawn['other']})"))
    if norm is not None:
        scale = plt.cm.ScalarMappable(norm=norm, cmap=colours)
        fig.colorbar(scale, ax=ax, label="reward (completed)")
    if not any(drawn.values()):
        ax.text(0.5, 0.5, "no learning curves recorded\n(the trainer reported no "
                "per-epoch results)", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(handles=handles, loc="best", fontsize="small")
    title = f"{summary.key}: learning curves"
    if len(shown) < total:
        title += f"\n{len(shown)} of {total} curves: the best completed and a random sample"
    ax.set(xlabel="epoch", ylabel="value (reward at that epoch)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_agent_stat(stats: list[tuple[int, float, dict[str, Any]]], key: str, ylabel: str,
                    title: str, path: Path) -> Path:
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


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _augment_preview(record: SearchRecord, best: TrialRecord | None, path: Path) -> Path | None:
    """A grid of the best pipeline's augmentation applied to real training images."""
    if best is None:
        return None
    search = record.search
    if not any(a.preset == "autoaugment" for a in search.spec.agents):
        return None
    from ma2ml.trainer.preview import save_preview  # torch: only when there is a preview

    save_preview(search, best.pipeline, path)
    return path


def write_report(store: Store, record: SearchRecord, out_dir: Path) -> Report:
    """Write the PNGs and ``index.html`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(store, record)
    trials = store.finished_since(record.id, 0)  # every finished trial, in order
    stats = store.snapshot_stats(record.id)
    shown = curve_sample(trials, MAX_CURVES, BEST_CURVES)
    curves = store.curves(record.id, [t.id for t in shown]) if shown else {}
    images = [
        plot_best_so_far(trials, summary, out_dir / "best_so_far.png"),
        plot_rewards(trials, summary, out_dir / "rewards.png"),
        plot_curves(shown, curves, sum(t.last_step is not None for t in trials), summary,
                    out_dir / "curves.png"),
        plot_agent_stat(stats, "entropy", "entropy (nats)", "policy entropy per agent",
                        out_dir / "entropy.png"),
        plot_agent_stat(stats, "credit", "mean |A_i|",
                        "mean absolute counterfactual credit per agent", out_dir / "credit.png"),
    ]
    shown_best = summary.recommended[1] if summary.recommended else summary.best
    preview = _augment_preview(record, shown_best, out_dir / "augment_preview.png")
    if preview is not None:
        images.append(preview)
    page = out_dir / "index.html"
    page.write_text(render_html(summary, trials, images))
    return Report(page, images)
