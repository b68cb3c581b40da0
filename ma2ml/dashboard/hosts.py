"""The ``Host`` header allow-list: the dashboard's defence against DNS rebinding.

A page on any web site can make the visitor's browser resolve its own name
to 127.0.0.1 and then read ``http://evil.example:8080/api/...`` as same-origin:
the browser sends ``Host: evil.example:8080``. A server that answers only to
the names it is meant to be reached by (``options.DashboardOptions.allowed_hosts``)
gives such a page a 400 and no data. The probes (``/healthz``, ``/readyz``) are
exempt: the kubelet sends the pod's IP, and they show no store content.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

#: Paths answered whatever the Host: liveness and readiness say nothing about searches.
PROBE_PATHS = frozenset({"/healthz", "/readyz"})


def host_name(header: str) -> str | None:
    """The name of a ``Host`` header (lower case, no port, no brackets); None if malformed.

    ``Example.COM:8080`` -> ``example.com``, ``[::1]:8080`` -> ``::1``.
    """
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest.startswith(":") and rest[1:].isdigit()):
        return None
    name = name.rstrip(".")  # "localhost." is the same host
    return name or None


class AllowedHosts:
    """ASGI middleware: 400 for an HTTP request whose ``Host`` is not in ``allowed``."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = frozenset(name.lower() for name in allowed)

    def permits(self, header: str | None) -> bool:
        if self.any:
            return True
        name = host_name(header) if header is not None else None
        return name is not None and name in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"host")
        header = raw.decode("latin-1") if raw is not None else None
        if self.permits(header):
            await self.app(scope, receive, send)
            return
        shown = "no Host header" if header is None else f"Host {header[:100]!r}"
        body = json.dumps({"error": f"{shown} is not one this dashboard answers to (allowed: "
                                    f"{', '.join(sorted(self.allowed))}; ma2ml dashboard "
                                    f"--allowed-host NAME)"}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})
