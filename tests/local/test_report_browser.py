"""The HTML report renders in a real headless browser (Debian's Chromium).

The search's trials are written through the real Store API instead of
being trained (training is covered by test_run.py); the report, its
matplotlib PNGs and the browser are real.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ma2ml.local.report import write_report
from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store, TrialProposal

from .test_run import tiny_spec

pytestmark = pytest.mark.slow  # a real browser (README: make test-fast)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Appended to a copy of the page: after load, report how many images decoded.
PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.title = 'decoded ' + imgs.filter(i => i.complete && i.naturalWidth > 0).length
    + ' of ' + imgs.length;
});</script>"""


def filled_store(path: Path, n: int = 12) -> tuple[Store, int]:
    search = parse_spec(tiny_spec("browser", max_trials=n))
    store = Store(f"sqlite:///{path}")
    record = store.create_search(search.key, spec_to_document(search))
    space, rng = search.spec.search_space(), random.Random(0)
    for version in range(n):
        action = {a.name: [rng.randrange(s) for s in a.sizes] for a in space.agents}
        store.enqueue_trials(record.id, [TrialProposal(
            space.decode(action), action, {a: -1.0 for a in action}, version // 4)])
        claimed = store.claim(record.id, "w", 30)
        accuracy = 0.5 + 0.03 * version + rng.random() * 0.05
        store.complete(claimed.id, claimed.attempt, accuracy, {"accuracy": accuracy})
        stats = {"entropy": {a.name: 2.0 - 0.1 * version for a in space.agents},
                 "credit": {a.name: rng.uniform(-0.1, 0.1) for a in space.agents}}
        store.save_snapshot(record.id, version + 1, b"", stats)
    return store, record.id


@pytest.mark.skipif(CHROMIUM is None and not __import__("os").environ.get("CI"),
                    reason="Debian chromium not installed (make test installs it)")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    store, search_id = filled_store(tmp_path / "r.db")
    with store:
        report = write_report(store, store.get_search_by_id(search_id), tmp_path / "report")
    probed = tmp_path / "report" / "probe.html"
    probed.write_text(report.html.read_text().replace("</body>", PROBE + "</body>"))
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                          "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                         capture_output=True, text=True, timeout=120)
    title = re.search(r"<title>(.*?)</title>", dom.stdout)
    assert title is not None, dom.stderr[-2000:]
    assert title.group(1) == f"decoded {len(report.images)} of {len(report.images)}"
    assert len(report.images) == 6  # five plots (learning curves too) and the augmentation preview

    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,2400",
                    f"--screenshot={shot}", report.html.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 50_000, "a page with plots, not a blank one"
