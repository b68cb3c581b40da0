"""Stored specs parsed once: the typed ``PipelineSearch`` the store hands out.

A search's spec is read back often (the learner every tick, each worker before each
trial, the store on every step report); parsing costs milliseconds, serialising the
document to compare it with the one parsed last costs microseconds. One entry per
search id (its latest spec), shared by every ``Store`` of the process: the parse
depends on the document alone, so two databases' searches of one id cannot mix.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from ma2ml.spec import PipelineSearch, parse_spec

#: Searches remembered; past it the oldest entry goes (a process serves a few).
CACHED_SEARCHES = 256

_lock = threading.Lock()
_parsed: dict[int, tuple[str, PipelineSearch]] = {}


def stored_search(search_id: int, document: dict[str, Any]) -> PipelineSearch:
    """``document``, the stored spec of search ``search_id``, parsed with ``stored=True``
    (checks added since it was written do not refuse it); parsed again only when the
    document differs from the one this search id was parsed with last."""
    # Text, not the dict: a caller may change the dict it was handed afterwards.
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    with _lock:
        cached = _parsed.get(search_id)
    if cached is not None and cached[0] == text:
        return cached[1]
    search = parse_spec(document, stored=True)
    with _lock:
        _parsed.pop(search_id, None)
        _parsed[search_id] = (text, search)
        while len(_parsed) > CACHED_SEARCHES:
            del _parsed[next(iter(_parsed))]
    return search
