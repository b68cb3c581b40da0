"""Fixtures of the operator tests: a Kubernetes API, a store, and the real operator process.

* ``kube_url``: kmock's emulator (``ma2ml_kube_emulator``) over real HTTP, one per module.
* ``operator_db``: a fresh PostgreSQL database per module (the cluster's backend),
  made with the store suite's ``postgres_admin_url``.
* ``operator_proc``: ``python -m ma2ml operator --all-namespaces`` as a subprocess
  with a kubeconfig pointing at the emulator, so a restart test is a real SIGKILL.
  (kmock 0.8 cannot serve a namespace listing; the operator never asks for one,
  as kopf's scanning is off, so ``namespaced_operator_proc`` runs it with
  ``--namespace default``.)
  The operator reads every setting from its environment at start-up and has
  no default database, so the fixture sets ``MA2ML_DATABASE_URL`` and the
  workload policy the chart would set (``OPERATOR_POLICY_ENV``).
* ``kube``: the test's own client of the emulator (the ``kubernetes`` package).
Nothing in kopf or in the Kubernetes client is patched.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from ma2ml_kube_emulator import EmulatorThread
from sqlalchemy.engine import URL

from ma2ml.store import Store
from ma2ml.testing.scratch import scratch_database

ROOT = Path(__file__).parents[2]
GROUP, VERSION, PLURAL = "ma2ml.io", "v1alpha1", "pipelinesearches"
#: Seconds between two status mirrors in the operator under test.
STATUS_INTERVAL = "1.0"
#: The workload policy of the operator under test, as the chart's defaults set it
#: (``helm/ma2ml/templates/operator.yaml``), plus an image allowlist covering the
#: images the tests use.
OPERATOR_POLICY_ENV = {
    "MA2ML_POD_DATABASE_SECRET": "ma2ml-database/url",
    "MA2ML_DEFAULT_SERVICE_ACCOUNT": "ma2ml-workload",
    "MA2ML_ALLOWED_SERVICE_ACCOUNTS": "trainer",
    "MA2ML_ALLOWED_IMAGE_PREFIXES": "registry.example,ghcr.io/ma2ml",
    "MA2ML_ALLOW_HOST_PATH": "false",
    "MA2ML_ALLOWED_SECRETS": "ma2ml-db",
    "MA2ML_ALLOWED_VOLUME_CLAIMS": "datasets",
}


def wait_for(probe: Callable[[], Any], what: str, timeout: float = 20.0,
             log: Path | None = None) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` and the log tail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{tail}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def kube_url() -> Iterator[str]:
    emulator = EmulatorThread()
    url = emulator.start_and_wait()
    yield url
    emulator.stop()


@pytest.fixture(scope="module")
def kubeconfig(kube_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": kube_url}}],
        "users": [{"name": "tester", "user": {"token": "test-token"}}],
        "contexts": [{"name": "emulator",
                      "context": {"cluster": "emulator", "user": "tester"}}],
    }
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def operator_db(postgres_admin_url: URL) -> Iterator[str]:
    """A fresh PostgreSQL database for one module, dropped (WITH FORCE) afterwards."""
    with scratch_database(postgres_admin_url, "ma2ml_operator") as url:
        yield url


@pytest.fixture(scope="module")
def search_store(operator_db: str) -> Iterator[Store]:
    """The test's own handle on the operator's store (it plays the learner and workers)."""
    with Store(operator_db) as opened:
        yield opened


class OperatorProcess:
    """``ma2ml operator SCOPE`` in a subprocess; ``kill`` is SIGKILL, not a polite stop."""

    def __init__(self, env: dict[str, str], log: Path,
                 scope: tuple[str, ...] = ("--all-namespaces",)) -> None:
        self.env, self.log, self.scope = env, log, scope
        self.proc: subprocess.Popen[bytes] | None = None
        self.liveness_port = self.metrics_port = 0

    def start(self) -> None:
        self.liveness_port, self.metrics_port = free_port(), free_port()
        command = [sys.executable, "-m", "ma2ml", "operator", *self.scope,
                   "--liveness-port", str(self.liveness_port),
                   "--metrics-port", str(self.metrics_port)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, env=self.env, cwd=ROOT, stdout=out,
                                         stderr=subprocess.STDOUT)
        wait_for(self.alive, "the operator's liveness endpoint", timeout=60, log=self.log)

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"the operator exited:\n{self.log.read_text()[-4000:]}")
        return self.get(self.liveness_port, "/healthz") is not None

    def get(self, port: int, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


@pytest.fixture(scope="module")
def operator_proc(kubeconfig: Path, operator_db: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    yield from _operator(kubeconfig, operator_db, tmp_path_factory, ("--all-namespaces",))


@pytest.fixture(scope="module")
def namespaced_operator_proc(kubeconfig: Path, operator_db: str,
                             tmp_path_factory: pytest.TempPathFactory
                             ) -> Iterator[OperatorProcess]:
    """The operator serving ``default`` only, as with the chart's watchNamespaces."""
    yield from _operator(kubeconfig, operator_db, tmp_path_factory, ("--namespace", "default"))


def _operator(kubeconfig: Path, database_url: str, tmp_path_factory: pytest.TempPathFactory,
              scope: tuple[str, ...]) -> Iterator[OperatorProcess]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MA2ML_DATABASE_URL": database_url,
           "MA2ML_STATUS_INTERVAL": STATUS_INTERVAL, **OPERATOR_POLICY_ENV}
    env.pop("KUBERNETES_SERVICE_HOST", None)  # never mistake the test box for a pod
    process = OperatorProcess(env, tmp_path_factory.mktemp("operator") / "operator.log", scope)
    process.start()
    yield process
    process.stop()


class KubeClient:
    """The test's view of the cluster: plain dicts in, plain dicts out."""

    def __init__(self, url: str) -> None:
        config = kubernetes.client.Configuration()
        config.host = url
        api = kubernetes.client.ApiClient(config)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.applied: list[tuple[str, str]] = []

    @staticmethod
    def _read(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        try:
            return json.loads(call(*args, _preload_content=False, **kwargs).data)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, document: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        self.applied.append((namespace, document["metadata"]["name"]))
        return self._read(self.custom.create_namespaced_custom_object, GROUP, VERSION,
                          namespace, PLURAL, document)

    def search(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self._read(self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace,
                          PLURAL, name)

    def edit(self, name: str, spec_patch: dict[str, Any], namespace: str = "default") -> None:
        self._read(self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace,
                   PLURAL, name, {"spec": spec_patch})

    def delete(self, name: str, namespace: str = "default") -> None:
        self._read(self.custom.delete_namespaced_custom_object, GROUP, VERSION, namespace,
                   PLURAL, name)

    def deployment(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self._read(self.apps.read_namespaced_deployment, name, namespace)

    def deployments(self, namespace: str = "default") -> list[dict[str, Any]]:
        return self._read(self.apps.list_namespaced_deployment, namespace)["items"]

    def configmap(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self._read(self.core.read_namespaced_config_map, name, namespace)

    def events(self, name: str, namespace: str = "default") -> list[dict[str, Any]]:
        items = self._read(self.core.list_namespaced_event, namespace)["items"]
        return [e for e in items if e.get("involvedObject", {}).get("name") == name]


@pytest.fixture(scope="module")
def kube_client(kube_url: str) -> KubeClient:
    return KubeClient(kube_url)


@pytest.fixture
def kube(kube_client: KubeClient) -> Iterator[KubeClient]:
    """The client; searches a test applied are deleted after it (fewer timers to run)."""
    yield kube_client
    while kube_client.applied:
        namespace, name = kube_client.applied.pop()
        kube_client.delete(name, namespace)
