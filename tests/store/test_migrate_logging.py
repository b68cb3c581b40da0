"""Creating a store says one line at most: Alembic's INFO lines stay out of a user's output.

A fresh process configures logging as every ma2ml command does (INFO, readable
lines) and opens a store on a new database, then on the migrated one.
"""

from __future__ import annotations

import subprocess
import sys

OPEN_STORE = """
import sys
from ma2ml.logs import setup_logging
from ma2ml.store import Store
setup_logging("INFO", json_lines=False)
Store(sys.argv[1]).close()
"""


def _open_store(url: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", OPEN_STORE, url], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_a_new_store_logs_one_line_and_no_alembic_lines(database_url: str) -> None:
    first = _open_store(database_url)
    assert not [line for line in first if "alembic" in line], first
    assert len(first) == 1 and "store schema created at revision" in first[0], first
    assert _open_store(database_url) == [], "an up-to-date store says nothing"
