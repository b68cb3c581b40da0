"""Query parameters of the JSON API, checked: bad input is a 400 naming the parameter.

Every number has bounds, so no request can ask the store for an unbounded read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: Searches listed per request (each one is summarised): default and most.
SEARCHES_LIMIT = 100
MAX_SEARCHES_LIMIT = 1000
#: Rows of the trials table per request: default and most.
TRIALS_LIMIT = 200
MAX_TRIALS_LIMIT = 1000
#: Trials in the decisions-against-reward view: default and most.
DECISIONS_LIMIT = 1000
MAX_DECISIONS_LIMIT = 5000
#: Policy versions drawn in the history views (evenly spaced, newest always in): default, most.
VERSIONS_LIMIT = 100
MAX_VERSIONS_LIMIT = 1000
#: Trial sort keys of the API -> ``Store.list_trials`` columns.
SORTS = {"number": "number", "reward": "reward", "finished": "finished_seq",
         "created": "created_at", "started": "started_at"}


class BadParameter(ValueError):
    """A query parameter out of its domain; the message names it and what is allowed."""


def integer(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """``query[name]`` as an int in ``low..high`` (``default`` when absent)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name}: expected an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{name}: expected {low}..{high}, got {value}")
    return value


def choice(query: Mapping[str, str], name: str, allowed: Sequence[str],
           default: str | None) -> str | None:
    """``query[name]`` when it is one of ``allowed`` (``default`` when absent)."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise BadParameter(f"{name}: expected one of {', '.join(allowed)}, got {raw[:40]!r}")
    return raw


def flag(query: Mapping[str, str], name: str) -> bool:
    """``query[name]`` as a boolean: 1/true/yes or 0/false/no (absent: false)."""
    raw = (query.get(name) or "0").lower()
    if raw in ("1", "true", "yes"):
        return True
    if raw in ("0", "false", "no"):
        return False
    raise BadParameter(f"{name}: expected true or false, got {raw[:40]!r}")


def path_id(raw: str, name: str) -> int:
    """A database id from the URL path (a positive int below 2**31)."""
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name}: expected a positive integer, got {raw[:40]!r}") from None
    if not 1 <= value < 2**31:
        raise BadParameter(f"{name}: expected 1..{2**31 - 1}, got {value}")
    return value
