"""The chart's optional live dashboard (`dashboard.enabled`): a Deployment and a ClusterIP
Service reading the same database, read-only, through the main URL Secret or a read-only
role's Secret. (Every rendered object is validated in test_chart.py, "dashboard" values.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import helm_python
import httpx
import pytest
import yaml

from ma2ml.spec import parse_spec, spec_to_document
from ma2ml.store import Store

from .helpers import NAMESPACE, RELEASE, ROOT, Obj, of_kind, one, render, values_file


def ui(objects: list[Obj]) -> tuple[Obj, Obj]:
    return one(objects, "Deployment", "ma2ml-ui"), one(objects, "Service", "ma2ml-ui")


def test_off_by_default(chart: helm_python.Chart) -> None:
    names = {o["metadata"]["name"] for o in render(chart)}
    assert "ma2ml-ui" not in names
    # monitoring.dashboard is the Grafana ConfigMap, another thing, named "-dashboard".
    grafana = render(chart, {"monitoring": {"dashboard": {"enabled": True}}})
    assert one(grafana, "ConfigMap", "ma2ml-dashboard") and not of_kind(
        [o for o in grafana if o["metadata"]["name"] == "ma2ml-ui"], "Deployment")


def test_deployment_and_cluster_ip_service(chart: helm_python.Chart) -> None:
    deployment, service = ui(render(chart, {"dashboard": {"enabled": True}}))
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"] == ["dashboard", "--host", "0.0.0.0", "--port", "8080"]
    env = {e["name"]: e for e in container["env"]}
    # The main database Secret: the dashboard opens read-only sessions on it.
    assert env["MA2ML_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "ma2ml-database", "key": "url"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    # The database NetworkPolicy admits pods labelled app.kubernetes.io/name=ma2ml.
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "ma2ml"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]


def test_read_only_role_secret(chart: helm_python.Chart) -> None:
    deployment, service = ui(render(chart, values_file("dashboard.yaml")))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "ma2ml-dashboard-db", "key": "readonly-url"}
    assert container["args"][-1] == "8090" and service["spec"]["ports"][0]["port"] == 8090


def test_notes_say_how_to_open_it(chart: helm_python.Chart) -> None:
    notes = chart.render({"dashboard": {"enabled": True}}, name=RELEASE,
                         namespace=NAMESPACE)["ma2ml/templates/NOTES.txt"]
    assert f"kubectl port-forward -n {NAMESPACE} svc/ma2ml-ui 8080" in notes
    assert "dashboard.database.existingSecret" in notes
    quiet = chart.render({}, name=RELEASE, namespace=NAMESPACE)["ma2ml/templates/NOTES.txt"]
    assert "port-forward" not in quiet


@pytest.mark.parametrize(("values", "expected"), [
    ({"dashboard": {"enabeld": True}}, "at '/dashboard': additional properties 'enabeld'"),
    ({"dashboard": {"port": 80}}, "at '/dashboard/port': minimum"),
    ({"dashboard": {"database": {"existingSecret": "Not_A_Name"}}},
     "at '/dashboard/database/existingSecret'"),
])
def test_schema_names_the_bad_value(chart: helm_python.Chart, values: dict, expected: str
                                    ) -> None:
    with pytest.raises(helm_python.HelmError) as caught:
        render(chart, values)
    assert expected in str(caught.value)


def test_the_pod_answers_its_service_names_only(chart: helm_python.Chart,
                                                tmp_path: Path) -> None:
    """Issue 25 item 17: the chart's environment, given to the real ``ma2ml dashboard``:
    the Service's DNS names and localhost (port-forward) are answered, a rebinding name
    is not, the probes answer any Host, and previews are off (the pod has no dataset)."""
    deployment, _ = ui(render(chart, {"dashboard": {"enabled": True,
                                                    "allowedHosts": ["ml.example.com"]}}))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    chart_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    url = f"sqlite:///{tmp_path / 'store.db'}"
    search = parse_spec(yaml.safe_load((ROOT / "examples" / "fashion-mnist.yaml").read_text()))
    with Store(url) as store:
        store.create_search(search.key, spec_to_document(search))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MA2ML_")},
           **chart_env, "HOME": str(tmp_path)}
    # The chart's args but on 127.0.0.1: only the Host header is under test.
    server = subprocess.Popen([sys.executable, "-m", "ma2ml", "dashboard", "--db", url,
                               "--host", "127.0.0.1", "--port", str(port)], env=env,
                              cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "ma2ml dashboard exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "ma2ml dashboard did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=30) as client:
            for host in ("ma2ml-ui", f"ma2ml-ui.{NAMESPACE}.svc",
                         f"ma2ml-ui.{NAMESPACE}.svc.cluster.local:8080", "localhost:8080",
                         "ml.example.com"):
                assert client.get("/api/searches", headers={"Host": host}).status_code == 200
            assert client.get("/api/searches", headers={"Host": "evil.example:8080"}
                              ).status_code == 400
            assert client.get("/readyz", headers={"Host": "10.0.0.7:8080"}).status_code == 200
            view = client.get("/api/searches/1").json()
            assert view["preview"] is False
    finally:
        server.terminate()
        server.wait(30)
