"""Alerts and dashboard: only metrics ma2ml exports, valid rules, alerts that fire.

`promtool` comes from the Debian package prometheus (installed by
`make test`, scripts/ensure-system.sh --tests).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import prometheus_client
import pytest
import yaml

from ma2ml import metrics

from .helpers import (
    ROOT,
    dashboard_exprs,
    dashboard_json,
    metric_names,
    one,
    render,
    rule_exprs,
    unknown_metrics,
    values_file,
)

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HISTOGRAMS = {m._name for m in vars(metrics).values() if isinstance(m, prometheus_client.Histogram)}


def rule_groups(chart: helm_python.Chart, values: dict[str, Any] | None = None
                ) -> list[dict[str, Any]]:
    monitoring = values or values_file("external-monitoring.yaml")
    return one(render(chart, monitoring), "PrometheusRule")["spec"]["groups"]


def unknown(exprs: list[str]) -> set[str]:
    return unknown_metrics(exprs, metrics.EXPORTED, HISTOGRAMS)


def test_dashboard_uses_only_exported_metrics() -> None:
    exprs = list(dashboard_exprs(dashboard_json()))
    assert unknown(exprs) == set()
    # The panels the issue asks for, by the metric each one plots.
    used = set().union(*(metric_names(e) for e in exprs))
    assert {"ma2ml_trials", "ma2ml_best_reward", "ma2ml_policy_entropy", "ma2ml_agent_credit",
            "ma2ml_queue_depth", "ma2ml_worker_images_per_second",
            "ma2ml_trials_finished_total"} <= used


def test_dashboard_shows_trials_stopped_early() -> None:
    """Early stopping (spec.earlyStopping): the store's count of stopped trials and the
    workers' counter of trials they stopped, each in a panel of its own."""
    stopped = {panel["title"]: [t["expr"] for t in panel["targets"]]
               for panel in dashboard_json()["panels"]
               if any('status="stopped"' in t["expr"] for t in panel.get("targets", []))}
    assert stopped == {
        "Stopped early": ['sum by (search) (max by (search, status) '
                          '(ma2ml_trials{search=~"$search",status="stopped"}))'],
        "Trials stopped early per minute": [
            'sum by (search) (rate(ma2ml_trials_finished_total{search=~"$search",'
            'status="stopped"}[5m])) * 60',
            'sum by (search) (rate(ma2ml_trials_finished_total{search=~"$search"}[5m])) * 60'],
    }


def test_alerts_use_only_exported_metrics(chart: helm_python.Chart) -> None:
    exprs = list(rule_exprs(rule_groups(chart)))
    assert unknown(exprs) == set()
    alerts = {rule["alert"] for group in rule_groups(chart) for rule in group["rules"]}
    assert {"MA2MLSearchFailed", "MA2MLSearchNoProgress", "MA2MLLeaseExpiriesRising"} <= alerts


@pytest.mark.parametrize(("expr", "bad"), [
    ('sum(ma2ml_trails{status="failed"})', {"ma2ml_trails"}),
    ("rate(ma2ml_trials_finished[5m])", {"ma2ml_trials_finished"}),  # counters end in _total
    ("ma2ml_trial_duration_seconds", {"ma2ml_trial_duration_seconds"}),  # histogram: no bare name
    ("ma2ml_queue_depth_bucket", {"ma2ml_queue_depth_bucket"}),  # a gauge has no buckets
    ('ma2ml_trials{search="ma2ml_x"} + ma2ml_trial_duration_seconds_count', set()),
])
def test_the_name_check_catches_unexported_names(expr: str, bad: set[str]) -> None:
    assert unknown([expr]) == bad


def test_dashboard_is_grafana_json(chart: helm_python.Chart) -> None:
    dashboard = dashboard_json()
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
    configmap = one(render(chart, {"monitoring": {"dashboard": {"enabled": True}}}), "ConfigMap")
    assert yaml.safe_load(configmap["data"]["ma2ml.json"]) == dashboard


def write_rules(chart: helm_python.Chart, directory: Path,
                values: dict[str, Any] | None = None) -> Path:
    path = directory / "alerts.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(chart, values)}, sort_keys=False))
    return path


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)


def test_promtool_checks_the_rules(chart: helm_python.Chart, tmp_path: Path) -> None:
    for values in (None, values_file("namespaced-ha.yaml")):
        rules = write_rules(chart, tmp_path, values)
        result = promtool("check", "rules", str(rules), cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS: 4 rules found" in result.stdout


def test_promtool_rejects_broken_rules(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"alert": "Broken", "expr": "sum(ma2ml_trials{status=\"failed\"}"}]}]}))
    assert promtool("check", "rules", str(rules), cwd=tmp_path).returncode != 0


def test_alerts_fire_when_they_should(chart: helm_python.Chart, tmp_path: Path) -> None:
    """promtool unit tests (monitoring/alerts-test.yaml) on the rules of the default values."""
    write_rules(chart, tmp_path)
    shutil.copy(ROOT / "monitoring" / "alerts-test.yaml", tmp_path / "alerts-test.yaml")
    result = promtool("test", "rules", "alerts-test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
