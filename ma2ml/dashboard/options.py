"""What a running dashboard allows and how long it waits: one settings object.

``ma2ml dashboard`` fills it from its options (each also read from an
``MA2ML_DASHBOARD_*`` variable, which is how the Helm chart sets them);
``app.create_app`` takes it. The defaults are the safe ones for a dashboard
on a workstation: only this machine's names in the ``Host`` header, a
database that does not answer within seconds gets a 503 instead of a hung
page, and a preview drawn in a child process whose memory is capped.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Host names every dashboard answers to: this machine, by name or address.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Seconds a database call may take before the request gets a 503.
DB_TIMEOUT_SECONDS = 5.0
#: Database calls still running past their deadline (their threads wait on the database)
#: beyond which a request is refused at once: a hung database must not pile up threads.
MAX_STALLED_CALLS = 8
#: Memory (MiB) of the child process that draws a preview: torch alone is ~0.8 GiB, a
#: Fashion-MNIST preview peaks at ~1.1 GiB.
PREVIEW_MEMORY_MIB = 2048
#: Seconds a preview may take (importing torch and reading the dataset included).
PREVIEW_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class DashboardOptions:
    """The dashboard's limits (one line each); ``app.create_app`` applies them."""

    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    """Host header names answered (port ignored; ``*``: any). Others get 400: a page of
    another site that a rebinding DNS name points at this server cannot read the store."""
    db_timeout: float = DB_TIMEOUT_SECONDS
    """Seconds a request waits for the database before it answers 503."""
    max_stalled: int = MAX_STALLED_CALLS
    """Database calls past their deadline after which new ones get 503 at once."""
    previews: bool = True
    """Draw augmentation previews (in a child process); False: 404 saying they are off."""
    preview_memory_mib: int = PREVIEW_MEMORY_MIB
    """Data-segment limit (RLIMIT_DATA) of the child that draws a preview."""
    preview_timeout: float = PREVIEW_TIMEOUT_SECONDS
    """Seconds a preview may take before its child is killed."""


def hosts_for(bind: str, extra: tuple[str, ...] | list[str] = ()) -> tuple[str, ...]:
    """The names a dashboard listening on ``bind`` answers to: loopback, ``bind`` itself
    unless it is a wildcard address, and ``extra`` (e.g. the Service's DNS names)."""
    names = [*LOOPBACK_HOSTS]
    if bind not in ("0.0.0.0", "::", ""):
        names.append(bind)
    names.extend(extra)
    return tuple(dict.fromkeys(name.strip().lower().strip("[]") for name in names
                               if name.strip()))
