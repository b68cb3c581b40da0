"""The Starlette application: the page, its static files and the read-only JSON API.

Routes (``{sid}``: a search's id, ``{tid}``: a trial's id):

* ``/`` the page; ``/static/...`` its JS and CSS; ``/static/plotly.min.js`` the
  plotly.js that PyPI ``plotly`` ships (offline: no CDN).
* ``/api/searches?limit=``, ``/api/searches/{sid}``, ``.../trials``, ``.../trials/{tid}``,
  ``.../trials/{tid}/preview.png``, ``.../progress``, ``.../policy``, ``.../decisions``.
* ``/healthz`` (the process is up) and ``/readyz`` (the store answers).

Endpoints that read the store are plain functions run by ``deadline.Deadline``
in worker threads with a deadline: a slow or hung database never blocks the
event loop, so ``/healthz`` and the page answer whatever the database does,
and a request that waited ``db_timeout`` seconds answers 503. Requests whose
``Host`` header is not an allowed name get 400 (``hosts``). Errors are JSON
``{"error": ...}``: 400 for a bad parameter (named) or Host, 404 for a missing
search or trial, 503 while the store is unreachable, slow or unusable; the
server itself keeps running.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ma2ml.dashboard import learning, params, queries
from ma2ml.dashboard.deadline import DatabaseTimeout, Deadline
from ma2ml.dashboard.hosts import AllowedHosts
from ma2ml.dashboard.options import DashboardOptions
from ma2ml.dashboard.preview import PreviewError, Previews
from ma2ml.dashboard.source import SourceError, check_schema
from ma2ml.store import (
    STATUSES,
    SearchRecord,
    Store,
    StoreError,
    StoreUnavailableError,
    TrialRecord,
)
from ma2ml.store.engine import dumps_json

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
#: Every response: scripts, styles and images from this server only (plotly adds inline
#: styles), never framed, no referrer sent anywhere.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class NotFound(LookupError):
    """A search or trial that is not in the store."""


def plotly_js() -> Path:
    """``plotly.min.js`` inside the installed ``plotly`` package (found without importing it)."""
    found = importlib.util.find_spec("plotly")
    if found is None or not found.submodule_search_locations:
        raise RuntimeError("the plotly package is not installed (pip install plotly)")
    path = Path(next(iter(found.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise RuntimeError(f"plotly.js is missing from the plotly package: {path}")
    return path


def json_response(payload: Any, status: int = 200) -> Response:
    # The store's JSON: NaN and infinities become null (JSON has neither).
    return Response(dumps_json(payload), status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store"})


class Headers:
    """ASGI middleware adding ``SECURITY_HEADERS`` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers if scope["type"] == "http" else send)


class Api:
    """The JSON endpoints over one read-only store."""

    def __init__(self, store: Store, options: DashboardOptions) -> None:
        self.store = store
        self.results = learning.ResultsCache()
        self.previews = Previews(options)
        self.options = options
        self.deadline = Deadline(options.db_timeout, options.max_stalled)
        self._schema_checked = False
        self._lock = threading.Lock()

    def _ready(self) -> None:
        # The schema is checked once the database answers (it may be down at start).
        if not self._schema_checked:
            with self._lock:
                check_schema(self.store)
                self._schema_checked = True

    def _search(self, request: Request) -> SearchRecord:
        self._ready()
        search_id = params.path_id(request.path_params["sid"], "search id")
        record = self.store.get_search_by_id(search_id)
        if record is None:
            raise NotFound(f"no search with id {search_id}")
        return record

    def _trial(self, request: Request, record: SearchRecord) -> TrialRecord:
        trial_id = params.path_id(request.path_params["tid"], "trial id")
        trial = self.store.get_trial(trial_id)
        if trial is None or trial.search_id != record.id:
            raise NotFound(f"no trial with id {trial_id} in search {record.name}")
        return trial

    def searches(self, request: Request) -> Response:
        self._ready()
        limit = params.integer(request.query_params, "limit", params.SEARCHES_LIMIT, 1,
                               params.MAX_SEARCHES_LIMIT)
        return json_response(queries.searches_view(self.store, limit))

    def search(self, request: Request) -> Response:
        view = queries.search_view(self.store, self._search(request))
        view["preview"] = view["preview"] and self.options.previews
        return json_response(view)

    def trials(self, request: Request) -> Response:
        record = self._search(request)
        query = request.query_params
        status = params.choice(query, "status", [str(s) for s in STATUSES], None)
        sort = params.choice(query, "sort", list(params.SORTS), "number")
        assert sort is not None
        return json_response(queries.trials_view(
            self.store, record, status=status, sort=params.SORTS[sort],
            descending=params.flag(query, "desc"),
            limit=params.integer(query, "limit", params.TRIALS_LIMIT, 1,
                                 params.MAX_TRIALS_LIMIT)))

    def trial(self, request: Request) -> Response:
        record = self._search(request)
        return json_response(queries.trial_view(self.store, record,
                                                self._trial(request, record)))

    async def preview(self, request: Request) -> Response:
        def find() -> tuple[SearchRecord, TrialRecord]:
            record = self._search(request)
            return record, self._trial(request, record)

        record, trial = await self.deadline.run(find)
        # Drawing takes seconds in a child process (preview.py), not the database's deadline.
        data = await anyio.to_thread.run_sync(self.previews.png, record, trial)
        return Response(data, media_type="image/png", headers={"cache-control": "max-age=3600"})

    def guarded(self, endpoint: Callable[[Request], Response]
                ) -> Callable[[Request], Awaitable[Response]]:
        """``endpoint`` run by the deadline (an async endpoint: Starlette awaits it)."""
        async def run(request: Request) -> Response:
            return await self.deadline.run(lambda: endpoint(request))
        return run

    def progress(self, request: Request) -> Response:
        record = self._search(request)
        return json_response(self.results.progress(self.store, record))

    def policy(self, request: Request) -> Response:
        record = self._search(request)
        query = request.query_params
        since = params.integer(query, "since", -1, -1, 2**31 - 1)
        return json_response(learning.policy_view(
            self.store, record, since=None if since < 0 else since,
            most=params.integer(query, "versions", params.VERSIONS_LIMIT, 2,
                                params.MAX_VERSIONS_LIMIT)))

    def decisions(self, request: Request) -> Response:
        record = self._search(request)
        most = params.integer(request.query_params, "limit", params.DECISIONS_LIMIT, 1,
                              params.MAX_DECISIONS_LIMIT)
        return json_response(learning.decisions_view(self.store, record, most=most))

    def statuses(self, request: Request) -> Response:
        return json_response(queries.statuses_view())

    def ready(self, request: Request) -> Response:
        self._ready()
        self.store.list_searches()
        return PlainTextResponse("ready\n")


def _error(status: int) -> Callable[[Request, Exception], Response]:
    def handle(request: Request, error: Exception) -> Response:
        if status >= 500:
            log.warning("%s: %s", request.url.path, error)
        return json_response({"error": str(error).splitlines()[0] if str(error) else
                              type(error).__name__}, status)
    return handle


def _unexpected(request: Request, error: Exception) -> Response:
    log.exception("%s failed", request.url.path)
    return json_response({"error": f"internal error ({type(error).__name__}); see the "
                                   f"dashboard's log"}, 500)


async def healthz(request: Request) -> Response:
    # On the event loop: it answers while every database call is stuck.
    return PlainTextResponse("ok\n")


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html")


def create_app(store: Store, options: DashboardOptions | None = None) -> Starlette:
    """The dashboard over ``store`` (opened read-only by ``source.open_read_only``)."""
    options = options or DashboardOptions()
    api = Api(store, options)
    plotly = plotly_js()

    async def plotly_file(request: Request) -> Response:
        return FileResponse(plotly, headers={"cache-control": "max-age=86400"})

    routes = [
        Route("/", page),
        Route("/healthz", healthz),
        Route("/readyz", api.guarded(api.ready)),
        Route("/static/plotly.min.js", plotly_file),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/api/statuses", api.statuses),  # no store read: not guarded
        Route("/api/searches", api.guarded(api.searches)),
        Route("/api/searches/{sid}", api.guarded(api.search)),
        Route("/api/searches/{sid}/trials", api.guarded(api.trials)),
        Route("/api/searches/{sid}/trials/{tid}", api.guarded(api.trial)),
        Route("/api/searches/{sid}/trials/{tid}/preview.png", api.preview),
        Route("/api/searches/{sid}/progress", api.guarded(api.progress)),
        Route("/api/searches/{sid}/policy", api.guarded(api.policy)),
        Route("/api/searches/{sid}/decisions", api.guarded(api.decisions)),
    ]
    handlers: dict[Any, Any] = {
        params.BadParameter: _error(400),
        NotFound: _error(404),
        PreviewError: _error(404),
        DatabaseTimeout: _error(503),
        StoreUnavailableError: _error(503),
        SourceError: _error(503),
        StoreError: _error(503),
        Exception: _unexpected,
    }
    return Starlette(routes=routes, exception_handlers=handlers,
                     middleware=[Middleware(Headers),
                                 Middleware(AllowedHosts, allowed=options.allowed_hosts),
                                 Middleware(GZipMiddleware, minimum_size=4096)])
