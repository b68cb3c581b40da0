"""No status compared as a bare string (issue 24, item 4).

Trial statuses, search states and phases are enums (``TrialStatus``, ``SearchState``,
``Phase``); code that compares one with a string literal (``trial.status ==
"completed"``, ``state in ("finished", "failed")``) or passes one as a literal
(``list_trials(status="failed")``) would go on compiling after a rename and silently
never match. This scans the package's syntax trees for exactly that: a comparison of a
name or attribute called ``*status``, ``*state`` or ``*phase`` (or a ``["status"]``
item) with a literal of the vocabulary, and a ``status=``/``state=``/``phase=``
keyword given such a literal. Anything else (a metrics key ``"diverged"``, a column
title) is left alone.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from ma2ml.spec import Phase
from ma2ml.store import SearchState, TrialStatus
from ma2ml.store.lifecycle import HELD

PACKAGE = Path(__file__).resolve().parents[1] / "ma2ml"
VOCABULARY = frozenset({*TrialStatus, *SearchState, *Phase, HELD})
SUFFIXES = ("status", "state", "phase")


def _named_status(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id.lower().endswith(SUFFIXES)
    if isinstance(node, ast.Attribute):
        return node.attr.lower().endswith(SUFFIXES)
    if isinstance(node, ast.Subscript):
        key = node.slice
        return (isinstance(key, ast.Constant) and isinstance(key.value, str)
                and key.value.lower().endswith(SUFFIXES))
    return False


def _status_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value in VOCABULARY
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_status_literal(element) for element in node.elts)
    return False


def bare_statuses(source: str) -> Iterator[ast.Compare | ast.keyword]:
    """The comparisons and keywords of ``source`` that use a status as a bare string."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(map(_named_status, operands)) and any(map(_status_literal, operands)):
                yield node
        elif (isinstance(node, ast.keyword) and node.arg is not None
              and node.arg.lower().endswith(SUFFIXES) and _status_literal(node.value)):
            yield node


@pytest.mark.parametrize("snippet", [
    'trial.status == "completed"',
    '"failed" != result.status',
    'state in ("finished", "failed")',
    'row["status"] == "running"',
    'summary.state == "failed"',
    'phase == "Running"',
    'shown == "held" or trial_status == "pending"',
    'store.list_trials(1, status="completed")',
])
def test_the_scan_finds_a_bare_status(snippet: str) -> None:
    assert list(bare_statuses(snippet))


@pytest.mark.parametrize("snippet", [
    'k != "diverged"',  # a metrics key
    'data.get("diverged", False)',
    'trial.status == TrialStatus.completed',
    'state.route == "#/"',
    'column in ("search", "state", "failed")',  # table titles
    'status = "failed"',  # an assignment, not a comparison
])
def test_the_scan_leaves_other_strings_alone(snippet: str) -> None:
    assert not list(bare_statuses(snippet))


def test_no_status_is_compared_as_a_bare_string() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        found += [f"ma2ml/{relative}:{node.lineno}: {ast.unparse(node)}"
                  for node in bare_statuses(path.read_text(encoding="utf-8"))]
    assert not found, "compare with the enums (TrialStatus, SearchState, Phase):\n" + \
        "\n".join(found)
