"""The dashboard in a real headless Chromium (Debian's, through chromedriver + selenium),
served by a real uvicorn on 127.0.0.1 from a real SQLite store that the test writes to
while the page is open (through the Store API, as the learner and workers would).

One browser and one server for the module. Screenshots go to the test's temporary
directory (``MA2ML_DASHBOARD_SHOTS=DIR`` keeps them in DIR, to look at them).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from ma2ml.dashboard.app import create_app
from ma2ml.dashboard.source import open_read_only
from ma2ml.store import Store

from .conftest import Served, Writer, new_search, serve

pytestmark = pytest.mark.slow  # a real browser (README: make test-fast)

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
#: Longest wait for the page to show a change, and how often it polls (``?poll=MS``).
WAIT = 20
POLL = "?poll=400"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kept = os.environ.get("MA2ML_DASHBOARD_SHOTS")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        return Path(kept)
    return tmp_path_factory.mktemp("shots")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The writer's side: one search with results before the page opens."""
    path = tmp_path_factory.mktemp("store") / "browser.db"
    with Store(f"sqlite:///{path}") as opened:
        writer = new_search(opened, "seeded", max_trials=30)
        writer.finish(4)
        for _ in range(6):
            writer.finish(1)
        writer.finish(1, fail=True)
        yield opened


@pytest.fixture(scope="module")
def site(store: Store) -> Iterator[Served]:
    with open_read_only(store.url) as read_only:
        yield from serve(create_app(read_only))


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1400,2200", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: webdriver.Chrome, check: Callable[[webdriver.Chrome], Any],
             message: str) -> Any:
    return WebDriverWait(browser, WAIT, poll_frequency=0.2).until(check, message)


def rows(browser: webdriver.Chrome, table: str) -> list[list[str]]:
    """The cells' texts of a table's rows, read in one go (the page redraws as it polls)."""
    return browser.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map("
        "r => [...r.cells].map(c => c.textContent));", f"#{table} tbody tr")


def open_page(browser: webdriver.Chrome, url: str) -> None:
    """A fresh page (a URL that differs only in its #fragment would not reload)."""
    browser.get("about:blank")
    browser.get(url)


def click_row(browser: webdriver.Chrome, number: str) -> None:
    browser.execute_script("document.querySelector(`#trials-table tr[data-number='${"
                           "arguments[0]}']`).click();", number)


def test_a_search_started_during_the_test_appears(site: Served, store: Store,
                                                  browser: webdriver.Chrome, shots: Path) -> None:
    open_page(browser, f"{site.url}/{POLL}")
    wait_for(browser, lambda b: len(rows(b, "searches-table")) == 1, "the seeded search")
    new_search(store, "started-later", max_trials=12)
    wait_for(browser, lambda b: "default/started-later" in b.find_element(
        By.ID, "searches-table").text, "a search created while the page is open")
    first = rows(browser, "searches-table")[0]
    assert first[0] == "default/started-later" and first[2] == "0/12"  # newest first
    browser.save_screenshot(str(shots / "searches.png"))


def test_live_counters_change_without_a_reload(site: Served, store: Store,
                                               browser: webdriver.Chrome, shots: Path) -> None:
    record = store.get_search("default/started-later")
    open_page(browser, f"{site.url}/{POLL}#/search/{record.id}")
    wait_for(browser, lambda b: b.find_element(By.ID, "done").text == "0/12 trials",
             "the search page")
    browser.execute_script("window.notReloaded = true;")
    writer = Writer(store, record, seed=1)
    writer.finish(3)
    wait_for(browser, lambda b: b.find_element(By.ID, "done").text == "3/12 trials",
             "the progress counter after three results")
    wait_for(browser, lambda b: len(rows(b, "trials-table")) == 3, "three trials listed")
    writer.propose(2)
    claimed = store.claim(record.id, "worker-1", 30)
    assert claimed is not None
    wait_for(browser, lambda b: b.find_element(By.ID, "running").text == "1 / 1",
             "one running, one pending")
    assert browser.execute_script("return window.notReloaded === true;"), "the page reloaded"
    best = browser.find_element(By.ID, "best").text
    assert best != "–" and "(#" in best
    browser.save_screenshot(str(shots / "live.png"))


def test_sorting_and_filtering(site: Served, store: Store, browser: webdriver.Chrome,
                               shots: Path) -> None:
    record = store.get_search("default/seeded")
    open_page(browser, f"{site.url}/{POLL}#/search/{record.id}")
    wait_for(browser, lambda b: len(rows(b, "trials-table")) == 11, "eleven trials")

    def rewards() -> list[float]:
        return [float(r[2]) for r in rows(browser, "trials-table") if r[2] != "–"]

    browser.find_element(By.CSS_SELECTOR, "th[data-sort=reward]").click()
    wait_for(browser, lambda b: rewards() == sorted(rewards(), reverse=True) and len(
        rewards()) == 10, "rows by reward, best first")
    assert rows(browser, "trials-table")[-1][1] == "failed"  # no reward: last either way
    browser.find_element(By.CSS_SELECTOR, "th[data-sort=reward]").click()
    wait_for(browser, lambda b: rewards() == sorted(rewards()), "rows by reward, worst first")
    browser.find_element(By.CSS_SELECTOR, "th[data-sort=number]").click()

    browser.find_element(By.ID, "trial-filter").send_keys("failed")
    wait_for(browser, lambda b: len(rows(b, "trials-table")) == 1, "text filter")
    assert rows(browser, "trials-table")[0][1] == "failed"
    browser.find_element(By.ID, "trial-filter").clear()
    browser.execute_script("document.getElementById('trial-filter')"
                           ".dispatchEvent(new Event('input'))")
    Select(browser.find_element(By.ID, "status-filter")).select_by_value("completed")
    wait_for(browser, lambda b: len(rows(b, "trials-table")) == 10 and all(
        r[1] == "completed" for r in rows(b, "trials-table")), "status filter")
    browser.save_screenshot(str(shots / "sorted.png"))


def test_trial_details_open(site: Served, store: Store, browser: webdriver.Chrome,
                            shots: Path) -> None:
    record = store.get_search("default/seeded")
    open_page(browser, f"{site.url}/{POLL}#/search/{record.id}")
    wait_for(browser, lambda b: len(rows(b, "trials-table")) == 11, "the trials")
    number = next(r[0] for r in rows(browser, "trials-table") if r[1] == "failed")
    click_row(browser, number)
    panel = wait_for(browser, lambda b: b.find_element(By.ID, "trial-details")
                     if b.find_element(By.ID, "trial-details").is_displayed() else None,
                     "the details panel")
    assert panel.find_element(By.ID, "details-title").text == f"Trial #{number}"
    # Stored text stays text: the error's <b> is shown, not rendered.
    assert "ValueError: bad <b>pipeline</b>" in panel.find_element(By.ID, "details-error").text
    assert "aug.sp0_op0" in panel.find_element(By.ID, "details-pipeline").text
    click_row(browser, next(r[0] for r in rows(browser, "trials-table") if r[1] == "completed"))
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#plot-curve .scatterlayer "
                                                ".trace"), "the learning curve")
    browser.save_screenshot(str(shots / "details.png"))
    # The learner's views are drawn too: policies, entropy, credit, decisions against reward.
    for plot in ("plot-progress", "plot-entropy", "plot-credit", "plot-policy",
                 "plot-policy-history", "plot-parcoords", "plot-interaction"):
        wait_for(browser, lambda b, p=plot: b.find_elements(
            By.CSS_SELECTOR, f"#{p} .main-svg"), f"the plot {plot}")


def test_an_unreachable_store_is_said_and_polled_again(browser: webdriver.Chrome) -> None:
    """A database that cannot be reached: the page says so and keeps polling (503s)."""
    with open_read_only("postgresql+psycopg2://nobody@127.0.0.1:1/x") as down:
        for served in serve(create_app(down)):
            open_page(browser, f"{served.url}/{POLL}")
            banner = wait_for(browser, lambda b: b.find_element(By.ID, "banner")
                              if b.find_element(By.ID, "banner").is_displayed() else None,
                              "the outage banner")
            assert banner.text.startswith("Cannot read the store: database unavailable")
            assert browser.find_element(By.ID, "live").text == "store unavailable"
    browser.get("about:blank")
    browser.get_log("browser")  # the 503s it logged are expected: not for the test below


def test_nothing_is_fetched_from_outside_the_machine(site: Served,
                                                     browser: webdriver.Chrome) -> None:
    """Every request of the whole module's session (Chrome's performance log) went to a
    dashboard on 127.0.0.1, or was a data: URL; the browser console has no error."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert len(urls) > 20, urls
    outside = [u for u in urls if not (u.startswith("http://127.0.0.1:") or u.startswith("data:")
                                       or u == "about:blank")]
    assert outside == []
    assert any(u.endswith("/static/plotly.min.js") for u in urls)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    time.sleep(0)  # (the log is read once: Chrome hands each entry out only once)
