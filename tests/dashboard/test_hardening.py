"""Issue 25 item 17: what a hostile page, a hung database and a preview did to the dashboard.

* DNS rebinding: a page of another site whose name resolves to 127.0.0.1 sent
  ``Host: evil.example:8080`` and read the whole store. Now only the allowed
  names are answered (real uvicorn; the request goes to 127.0.0.1 with that Host).
* A hung database froze every endpoint, ``/healthz`` included. The hang is real:
  PostgreSQL behind a TCP relay in this test that stops forwarding (as a
  frozen server or a dropped network link does, with the connections still open).
* An augmentation preview loaded torch and the dataset into the dashboard
  process (~1 GiB, the chart's limit). Now a child process draws it, under a
  memory cap; the real ``ma2ml dashboard`` is checked through ``/proc`` for torch.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from ma2ml.dashboard.app import create_app
from ma2ml.dashboard.hosts import host_name
from ma2ml.dashboard.options import DashboardOptions, hosts_for
from ma2ml.dashboard.source import open_read_only
from ma2ml.store import Store

from .conftest import free_port, new_search, serve


def wait_until(check: Callable[[], Any], what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


# -- Host header allow-list -----------------------------------------------------------


def test_host_names_are_read_like_a_browser_writes_them() -> None:
    assert host_name("Example.COM:8080") == "example.com"
    assert host_name("[::1]:8080") == "::1" and host_name("[::1]") == "::1"
    assert host_name("localhost.") == "localhost"
    for bad in ("", ":8080", "a:b", "[::1", "host:80:90"):
        assert host_name(bad) is None, bad
    assert hosts_for("127.0.0.1") == ("localhost", "127.0.0.1", "::1")
    assert hosts_for("0.0.0.0", ["ma2ml-ui.ml.svc", "Dash.Example"]) == (
        "localhost", "127.0.0.1", "::1", "ma2ml-ui.ml.svc", "dash.example")
    assert hosts_for("192.168.1.5") == ("localhost", "127.0.0.1", "::1", "192.168.1.5")


def test_a_rebinding_host_is_refused(sqlite_store: Store) -> None:
    new_search(sqlite_store, "secret-search").finish(1)
    options = DashboardOptions(allowed_hosts=hosts_for("127.0.0.1", ["dash.example"]))
    with open_read_only(sqlite_store.url) as store:
        for served in serve(create_app(store, options)):
            port = served.url.rsplit(":", 1)[1]
            with httpx.Client(base_url=served.url, timeout=30) as client:
                for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil:{port}"):
                    for path in ("/api/searches", "/api/searches/1/trials", "/"):
                        response = client.get(path, headers={"Host": host})
                        assert response.status_code == 400, (host, path)
                        assert "secret-search" not in response.text
                        assert response.json()["error"].startswith(f"Host {host!r} is not one")
                        assert "--allowed-host" in response.json()["error"]
                # The browser on this machine, and a name given with --allowed-host.
                for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}",
                             "DASH.example"):
                    response = client.get("/api/searches", headers={"Host": host})
                    assert response.status_code == 200, host
                    assert "secret-search" in response.text
                # Probes answer whatever the Host: the kubelet sends the pod's IP.
                assert client.get("/healthz", headers={"Host": "10.1.2.3:8080"}).text == "ok\n"
                assert client.get("/readyz", headers={"Host": "10.1.2.3:8080"}).status_code \
                    == 200
    anyone = DashboardOptions(allowed_hosts=("*",))
    with open_read_only(sqlite_store.url) as store:
        for served in serve(create_app(store, anyone)):
            response = httpx.get(f"{served.url}/api/searches", headers={"Host": "x.example"},
                                 timeout=30)
            assert response.status_code == 200


# -- a hung database --------------------------------------------------------------------


class Relay:
    """A TCP relay to PostgreSQL that can freeze: it then forwards nothing, in either
    direction, on open or new connections, and closes none (a hung server or link)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.thawed = threading.Event()
        self.thawed.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> None:
        self.thawed.clear()

    def thaw(self) -> None:
        self.thawed.set()

    def close(self) -> None:
        self.closed = True
        self.thawed.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.sockets.append(client)
        self.thawed.wait()
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            client.close()
            return
        self.sockets.append(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
                self.thawed.wait()
                if not data or self.closed:
                    break
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(postgres_url: str) -> Iterator[Relay]:
    url = make_url(postgres_url)
    proxy = Relay(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.mark.postgres
def test_a_hung_database_gets_503_and_healthz_still_answers(postgres_url: str,
                                                           relay: Relay) -> None:
    with Store(postgres_url) as writable:
        new_search(writable, "hung", max_trials=5).finish(2)
    through = make_url(postgres_url).set(host="127.0.0.1", port=relay.port)
    options = DashboardOptions(db_timeout=1.0, max_stalled=3)
    with open_read_only(through.render_as_string(hide_password=False), timeout=1.0) as store:
        for served in serve(create_app(store, options)):
            with httpx.Client(base_url=served.url, timeout=120) as client:
                assert client.get("/api/searches").status_code == 200  # pooled connection
                relay.freeze()
                # More requests at once than the dashboard lets wait on the database.
                with ThreadPoolExecutor(12) as pool:
                    answers = list(pool.map(lambda path: client.get(path), [
                        "/api/searches", "/api/searches/1", "/api/searches/1/trials",
                        "/api/searches/1/progress", "/api/searches/1/policy", "/readyz"] * 2))
                assert [a.status_code for a in answers] == [503] * 12
                errors = {a.json()["error"] for a in answers}
                assert all("the database" in e for e in errors), errors
                # The process is alive and says so, while the database calls are stuck.
                assert client.get("/healthz").text == "ok\n"
                assert client.get("/").status_code == 200
                assert client.get("/api/searches").status_code == 503
                relay.thaw()
                # The stuck calls finish and the next poll is served again.
                wait_until(lambda: client.get("/api/searches").status_code == 200,
                           "the dashboard to serve again after the database came back")
                listed = client.get("/api/searches").json()["searches"]
                assert [s["name"] for s in listed] == ["default/hung"]


# -- the augmentation preview runs outside the dashboard ------------------------------------


@contextlib.contextmanager
def dashboard(tmp_path: Path, url: str, *args: str) -> Iterator[tuple[int, str]]:
    """The real ``ma2ml dashboard`` on a free port: (its pid, its base URL)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MA2ML_")}
    log = tmp_path / "dashboard.log"
    with log.open("w") as stderr:
        server = subprocess.Popen([sys.executable, "-m", "ma2ml", "dashboard", "--db", url,
                                   "--port", str(port), *args], cwd=tmp_path, env=env,
                                  stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.poll() is None, log.read_text()
        try:
            return httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, "ma2ml dashboard to start")
        yield server.pid, base
        assert server.poll() is None, log.read_text()  # whatever the preview did
    finally:
        server.terminate()
        server.wait(30)


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
def test_a_preview_is_drawn_outside_the_dashboard(tmp_path: Path, sqlite_store: Store) -> None:
    """Real torch on real Fashion-MNIST images, in a child of the real ``ma2ml dashboard``."""
    new_search(sqlite_store, "aug").finish(1)
    with dashboard(tmp_path, sqlite_store.url) as (pid, base), \
            httpx.Client(base_url=base, timeout=300) as client:
        assert client.get("/api/searches/1").json()["preview"] is True
        response = client.get("/api/searches/1/trials/1/preview.png")
        assert response.status_code == 200, response.text
        assert response.content.startswith(b"\x89PNG") and len(response.content) > 2000
        again = client.get("/api/searches/1/trials/1/preview.png")
        assert again.content == response.content  # drawn once, then kept
        maps = mapped_files(pid)
        assert "libtorch" not in maps and "torch/lib" not in maps


def test_a_preview_over_its_memory_cap_fails_alone(tmp_path: Path, sqlite_store: Store) -> None:
    new_search(sqlite_store, "aug").finish(1)
    with dashboard(tmp_path, sqlite_store.url, "--preview-memory", "256") as (_, base), \
            httpx.Client(base_url=base, timeout=300) as client:
        response = client.get("/api/searches/1/trials/1/preview.png")
        assert response.status_code == 404
        assert response.json()["error"] == ("the preview ran out of memory (limit 256 MiB; "
                                            "ma2ml dashboard --preview-memory)")
        assert client.get("/api/searches").status_code == 200  # the server goes on


def test_previews_can_be_off(sqlite_store: Store) -> None:
    new_search(sqlite_store, "aug").finish(1)
    options = DashboardOptions(previews=False)
    with open_read_only(sqlite_store.url) as store:
        for served in serve(create_app(store, options)):
            with httpx.Client(base_url=served.url, timeout=60) as client:
                assert client.get("/api/searches/1").json()["preview"] is False
                response = client.get("/api/searches/1/trials/1/preview.png")
                assert response.status_code == 404
                assert response.json()["error"].startswith("previews are off")

