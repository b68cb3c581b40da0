"""Logging set-up shared by every ma2ml process.

On a terminal, readable lines; otherwise (pods, CI, files) one JSON object
per line so log collectors can index fields such as ``search`` and ``trial``.
A readable line may quote a trainer (its error tail): the terminal is shown
its escape sequences and bidirectional controls as text (``ma2ml.visible``),
never obeys them. JSON escapes them by itself.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ma2ml.visible import visible

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra={...}`` fields become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TerminalFormatter(logging.Formatter):
    """``time level logger: message``, with what would act on a terminal made visible."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record), keep_newlines=True)


def setup_logging(level: str | int = "INFO", *, json_lines: bool | None = None) -> None:
    """Configure the root logger once per process (idempotent)."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TerminalFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
