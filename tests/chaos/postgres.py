"""A private PostgreSQL cluster for the fault-injection suite.

Made with the Debian server binaries (``/usr/lib/postgresql/<version>/bin``:
``initdb``, ``pg_ctl``) in a fresh temporary directory, listening on its own
free port on 127.0.0.1 (trust authentication) with its socket in that
directory, so the suite can stop and restart it without touching the shared
server on 5432. ``initdb`` refuses to run as root: as root, every tool runs as
the ``postgres`` system user, who owns the directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

#: The system user the server runs as when the tests run as root.
SERVER_USER = "postgres"
#: Where Debian's ``postgresql-<version>`` packages put the server binaries.
BIN_ROOT = Path("/usr/lib/postgresql")


class ClusterError(RuntimeError):
    """A PostgreSQL tool failed; the message carries its output and the server log."""


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``."""
    found = []
    for initdb in BIN_ROOT.glob("*/bin/initdb"):
        bindir = initdb.parent
        version = bindir.parent.name
        if (bindir / "pg_ctl").exists() and version.replace(".", "").isdigit():
            found.append((tuple(int(p) for p in version.split(".")), bindir))
    return max(found)[1] if found else None


def missing_prerequisite() -> str | None:
    """Why a private cluster cannot be made here, or None."""
    if find_bindir() is None:
        return (f"PostgreSQL server binaries not found ({BIN_ROOT}/*/bin/initdb and pg_ctl; "
                f"Debian package postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and there is no {SERVER_USER!r} user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root, and runuser (util-linux) is missing"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateCluster:
    """One throw-away cluster: ``start``, ``stop`` (an outage), ``destroy`` (always)."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root = bindir, root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = _free_port()
        self._as_server_user = os.geteuid() == 0

    @classmethod
    def create(cls, bindir: Path) -> PrivateCluster:
        """``initdb`` a new cluster in a new temporary directory (not started)."""
        root = Path(tempfile.mkdtemp(prefix="ma2ml-chaos-pg-"))
        try:
            if os.geteuid() == 0:
                user = pwd.getpwnam(SERVER_USER)
                os.chown(root, user.pw_uid, user.pw_gid)
            cluster = cls(bindir, root)
            cluster._tool("initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust",
                          "-E", "UTF8", "--no-sync", timeout=120)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # fsync off: nothing here survives the machine, only the server, and a
        # server stop (fast or immediate) loses no committed transaction.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   f"-c fsync=off -c full_page_writes=off -c synchronous_commit=off")
        self._tool("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l",
                   str(self.log), "-o", options, timeout=90)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect everyone; ``immediate``: as a crash)."""
        self._tool("pg_ctl", "stop", "-w", "-t", "60", "-D", str(self.data), "-m", mode,
                   timeout=90)

    def running(self) -> bool:
        argv = self._argv("pg_ctl", "status", "-D", str(self.data))
        return subprocess.run(argv, cwd=self.root, capture_output=True, timeout=30,
                              check=False).returncode == 0

    def destroy(self) -> None:
        """Stop the server whatever its state, then remove the directory."""
        with contextlib.suppress(ClusterError, OSError, subprocess.SubprocessError):
            if self.running():
                self.stop("immediate")
        pid = self._postmaster_pid()
        if pid is not None:  # pg_ctl could not stop it: it is ours, kill it
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def _argv(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bindir / tool), *args]
        return ["runuser", "-u", SERVER_USER, "--", *argv] if self._as_server_user else argv

    def _tool(self, tool: str, *args: str, timeout: float) -> None:
        result = subprocess.run(self._argv(tool, *args), cwd=self.root, capture_output=True,
                                text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise ClusterError(f"{tool} {' '.join(args)} exited {result.returncode}:\n"
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}\n"
                               f"server log:\n{self.log_tail()}")
