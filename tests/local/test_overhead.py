"""``benchmarks/overhead.py``: the gap arithmetic on hand-made trials, and a ``--quick`` run
of the real ``ma2ml run`` (instant command trainer, 2 workers) on SQLite and PostgreSQL.

Everything writes under pytest's ``tmp_path``, never into the repository.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import URL

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bench(load_benchmark, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # it imports store_throughput
    return load_benchmark("overhead")


def trial(number: int, worker: str | None, started: float | None, finished: float | None,
          trainer: tuple[float, float] | None = None) -> SimpleNamespace:
    metrics = {"trainer_start": trainer[0], "trainer_end": trainer[1]} if trainer else {}
    return SimpleNamespace(number=number, worker=worker, started_at=started,
                           finished_at=finished, metrics=metrics)


def test_gaps_are_taken_per_worker_from_trainer_and_store_stamps(bench: Any) -> None:
    trials = [
        trial(1, "w1", 10.00, 10.10, (10.02, 10.03)),
        trial(2, "w2", 10.00, 10.20, (10.05, 10.06)),
        trial(3, "w1", 10.15, 10.30, (10.23, 10.24)),
        # Claimed ahead, before its worker's previous trial finished: a negative claim gap.
        trial(4, "w2", 10.10, 10.50, (10.36, 10.37)),
        trial(5, None, None, None),
    ]
    idle, claim, notes = bench.worker_gaps(trials)
    assert sorted(idle) == pytest.approx([0.20, 0.30])
    assert sorted(claim) == pytest.approx([-0.10, 0.05])
    assert notes == ["trial 5 lacks worker/started_at/finished_at"]


def test_percentiles_are_nearest_rank(bench: Any) -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert bench.percentile(values, 0.5) == 50.0
    assert bench.percentile(values, 0.99) == 99.0
    assert bench.percentile([7.0], 0.99) == 7.0
    assert math.isnan(bench.percentile([], 0.5))


@pytest.mark.parametrize("argv", [["--workers", "0"], ["--workers", "2", "1000"],
                                  ["--trials", "0"], ["--backend", "mysql"]])
def test_out_of_range_options_are_refused(bench: Any, argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def _rows(report: str) -> dict[str, list[str]]:
    """Table rows by backend, cells without units."""
    rows = {}
    for line in report.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] in ("sqlite", "postgres"):
            rows[cells[0]] = [c.removesuffix(" ms").removesuffix(" s").removesuffix(" MiB")
                              for c in cells]
    return rows


@pytest.mark.slow
@pytest.mark.postgres
def test_quick_run_measures_every_figure_on_both_backends(
        bench: Any, postgres_admin_url: URL, tmp_path: Path, capsys) -> None:
    argv = ["--quick", "--trials", "6", "--backend", "sqlite", "postgres", "--out",
            str(tmp_path), "--postgres-url", postgres_admin_url.render_as_string(False)]
    assert bench.main(argv) == 0
    report = (tmp_path / "overhead.md").read_text()
    assert report.strip() in capsys.readouterr().out
    rows = _rows(report)
    assert set(rows) == {"sqlite", "postgres"}
    for backend, cells in rows.items():
        (_, workers, trials, gap50, gap99, _, _, rate, after_create, after_launch, rss50,
         rss_max, worker_cpu, trainer_cpu, run_cpu) = cells
        assert (workers, trials) == ("2", "6"), backend
        # Positive: a worker never runs two trainers at once.
        assert 0 < float(gap50) <= float(gap99) < 60_000, backend
        assert float(rate) > 0, backend
        assert 0 < float(after_create) <= float(after_launch) < 300, backend
        assert 10 < float(rss50) <= float(rss_max) < 4096, backend
        # Measured (a short run may fall between two samples: then 0), and not a minute.
        assert all(0 <= float(ms) < 60_000 for ms in (worker_cpu, trainer_cpu, run_cpu)), backend
    assert "\n* " not in report, "every trial completed and was measured"
    assert "ma2ml at " in report and "CPUs" in report
