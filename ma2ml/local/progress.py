"""The live view of ``ma2ml run``: a rich panel on a terminal, JSON lines otherwise.

Both count every status, ``stopped`` (early-stopped) included; the best pipeline
is ranked among completed trials at full fidelity only. The time left is
measured, from the first trial on (``ma2ml.results.eta``): from the running
trials' epochs until one trial has finished, then from trial durations, and
never past ``maxDuration``. Below the counters: how long the search ran and its
trials trained, against the budget's time limits (``Summary.time_used``).

While the database is unavailable the view says so (once in the log, and on
the panel with how long it has lasted) instead of raising: the run waits.
"""

from __future__ import annotations

import logging
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from ma2ml.durations import format_duration
from ma2ml.local.inert import inert
from ma2ml.results.summary import Summary, summarize
from ma2ml.spaces.display import compact_pipeline
from ma2ml.store import TERMINAL_SEARCH_STATES, Store, StoreUnavailableError

log = logging.getLogger("ma2ml.progress")


def time_left(summary: Summary) -> str:
    """``~4m 10s (pace of the last 6 results)``; before anything was measured, says what it
    waits for."""
    if summary.eta is None:
        ended = summary.done >= summary.max_trials or summary.state in TERMINAL_SEARCH_STATES
        return "-" if ended else "? (known after the first epoch)"
    return f"~{format_duration(summary.eta.seconds)} ({summary.eta.basis})"


def render(summary: Summary) -> Group:
    """The panel: counters, best pipeline and per-agent entropy."""
    counts = summary.counts
    head = Table.grid(padding=(0, 2))
    head.add_row(
        f"[bold]{inert(summary.key)}[/] ({summary.state})",
        f"trials [bold]{summary.done}[/]/{summary.max_trials}",
        f"running {counts.running}", f"pending {counts.pending}",
        f"failed {counts.failed}", f"diverged {counts.diverged}", f"stopped {counts.stopped}",
        f"left {time_left(summary)}",
    )
    best = Table(title="best pipeline (completed trials, full fidelity)", show_header=False,
                 expand=True)
    if summary.best is not None:
        accuracy = (summary.best.metrics or {}).get("accuracy")
        best.add_row("reward", f"{summary.best.reward:.4f} (trial {summary.best.number}, "
                     f"accuracy {accuracy if accuracy is None else round(accuracy, 4)})")
        for agent, text in compact_pipeline(summary.best.pipeline, max_decisions=6).items():
            best.add_row(inert(agent), inert(text))  # stored text is not markup
    entropy = "  ".join(f"{a}: {h:.2f}" for a, h in summary.entropy.items()) or "-"
    return Group(head, f"time  {summary.time_used()}", best,
                 f"policy entropy (nats)  {entropy}")


class ProgressView:
    """``on_tick`` callback for ``run_local``: redraws or logs on change."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live: Live | None = None
        self._last: tuple[int, ...] | None = None
        self._outage_since: float | None = None

    def _unavailable(self, reason: str) -> None:
        """The database is unavailable: say so once, and on the panel while it lasts;
        the run waits it out (``ma2ml.local.runner``)."""
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            log.warning("store unavailable (%s); waiting for it: trials keep training and "
                        "their results wait in the spool", reason)
            self._last = None  # the next progress line is logged whatever it says
        if self.live is not None:
            self.live.update(f"[bold]waiting for the database[/] "
                             f"({format_duration(now - self._outage_since)} so far): "
                             f"{inert(reason)}")

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)

    def __call__(self, store: Store, search_id: int) -> None:
        try:
            record = store.get_search_by_id(search_id)
            if record is None:
                return
            summary = summarize(store, record, now=time.time(), baseline=False)
        except StoreUnavailableError as exc:
            self._unavailable(str(exc))
            return
        if self._outage_since is not None:
            log.warning("store available again after %s; going on",
                        format_duration(time.monotonic() - self._outage_since))
            self._outage_since = None
        if self.live is not None:
            self.live.update(render(summary))
            return
        state = (summary.done, *summary.counts.values())
        if state != self._last:  # structured progress line only when something moved
            self._last = state
            log.info("progress", extra={
                "search": summary.key, "done": summary.done, "max_trials": summary.max_trials,
                **{f"trials_{k}": v for k, v in summary.counts.items()},
                "best_reward": summary.best.reward if summary.best else None,
                "entropy": summary.entropy, "elapsed_s": round(summary.elapsed, 1),
                "training_s": round(summary.usage.training_seconds, 1),
                "left_s": None if summary.eta is None else round(summary.eta.seconds, 1)})
