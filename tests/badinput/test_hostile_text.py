"""Hostile text from a trainer or a spec is shown, never obeyed (issue 25, item 12).

Terminal escape sequences (a window title set, the screen cleared), Rich markup and
emoji codes (``:skull:``) and the right-to-left override (U+202E) print as the
characters they are: in ``ma2ml run``'s warning lines on a terminal, in the
commands that show stored values, and in the HTML report.

The end-to-end test runs the real ``ma2ml run`` and ``ma2ml best`` on a real
pseudo-terminal (``pty``), so that logging and Rich take their terminal paths,
with a real custom trainer that fails with hostile output, then reports hostile
metrics. The others print through a real Rich console and a real formatter.
"""

from __future__ import annotations

import fcntl
import html
import logging
import os
import pty
import random
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import yaml
from rich.console import Console
from sqlalchemy import text as sql

from ma2ml.local.inert import inert
from ma2ml.logs import TerminalFormatter
from ma2ml.store import Store
from ma2ml.visible import visible

TITLE = "\x1b]0;pwned\x07"  # sets the terminal's window title
CLEAR = "\x1b[2J\x1b[H"  # clears the screen
CSI_C1 = "\x9b31m"  # a one-byte CSI (C1) some terminals obey
RTL = "\u202etxt.exe"  # shows as "exe.txt"
EMOJI = ":skull:"
MARKUP = "[link=http://evil.example]click[/link]"
HOSTILE = f"{TITLE}{CLEAR}{CSI_C1} {EMOJI} {RTL} {MARKUP}"


def _shown(markup: str) -> str:
    """What a terminal shows of ``markup`` printed by Rich (no colours, no wrapping)."""
    console = Console(force_terminal=True, color_system=None, width=10_000)
    with console.capture() as captured:
        console.print(markup, highlight=False, end="", soft_wrap=True)
    return captured.get()


def test_inert_text_prints_exactly_as_stored_with_controls_as_escapes() -> None:
    for text in (HOSTILE, EMOJI, f"x{EMOJI}y", ":smile:[bold]b[/]", "12:30:45", "a\\", "\\[b]",
                 "\\\\[b:c]", "q\\[z:skull:]", "[b]\\", "\u2066isolate\u2069 \u200fmark"):
        assert _shown(inert(text)) == visible(text), text
        # Beside a caller's own markup and colons, too.
        assert _shown(f"[bold]{inert(text)}[/bold]: {inert(text)}") == (
            f"{visible(text)}: {visible(text)}"), text
    shown = _shown(inert(HOSTILE))
    assert "\x1b" not in shown and "\x9b" not in shown and "\u202e" not in shown
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202etxt.exe" in shown
    assert EMOJI in shown and "\U0001f480" not in shown  # 💀


def test_inert_text_survives_a_fuzz_of_brackets_backslashes_and_colons() -> None:
    """Rich reads backslashes before ``[`` in two ways and replaces emoji codes in any
    run of plain text; whatever the mix, what is printed is what was stored."""
    rng = random.Random(25)
    alphabet = ["[", "]", "\\", ":", "a", "b", "/", "skull", " ", "smile", "#", "@", "=",
                "\x1b", "\u202e"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert _shown(f"x:{inert(text)}:y") == f"x:{visible(text)}:y", repr(text)


def test_terminal_log_lines_show_a_trainers_controls_as_escapes() -> None:
    record = logging.LogRecord("ma2ml.worker.loop", logging.WARNING, __file__, 1,
                               "trial %d failed: %s", (3, f"tail:\n{HOSTILE}"), None)
    line = TerminalFormatter().format(record)
    assert "\x1b" not in line and "\x9b" not in line and "\u202e" not in line
    assert "\\x1b]0;pwned\\x07" in line and "\\u202etxt.exe" in line
    assert "tail:\n" in line, "a multi-line message keeps its lines"


def test_the_report_page_shows_a_trainers_controls_as_escapes() -> None:
    from ma2ml.local.report_html import _shown as shown_in_html

    cell = shown_in_html(HOSTILE)
    assert "\x1b" not in cell and "\u202e" not in cell and "<" not in cell
    assert html.unescape(cell) == visible(HOSTILE, keep_newlines=True)


# --------------------------------------------------------------------------- end to end

#: Trial 1 fails, printing hostile text (its tail goes into the warning line); the others
#: report a reward and hostile metrics (a hostile name and a hostile value).
TRAINER = f"""
import os, sys
import ma2ml
if os.environ["MA2ML_SEED"] == "1":
    print({HOSTILE!r}, flush=True)
    sys.exit(3)
ma2ml.report(reward=0.5 + int(os.environ["MA2ML_SEED"]) / 100,
             **{{{EMOJI!r}: {HOSTILE!r}, "note": {RTL!r}}})
"""


def _on_terminal(args: list[str], cwd: Path, timeout: float = 240) -> tuple[int, str]:
    """Run ``ma2ml ARGS`` with stdin, stdout and stderr on a new pseudo-terminal of 200
    columns; its exit code and everything written to the terminal (by its children too)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([sys.executable, "-m", "ma2ml", *args], cwd=cwd, env=env,
                               stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process holding the terminal has gone
                break
            if not data:
                break
            chunks.append(data)
        else:
            process.kill()
            raise AssertionError(f"ma2ml {' '.join(args)} did not end in {timeout} s")
        code = process.wait(timeout=60)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", errors="replace")


def test_run_and_best_on_a_terminal_show_hostile_trainer_text_inert(tmp_path: Path) -> None:
    trainer = tmp_path / "train.py"
    trainer.write_text(TRAINER)
    spec = tmp_path / "search.yaml"
    spec.write_text(yaml.safe_dump({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "hostile"},
        "spec": {
            "agents": [{"name": "hpo", "decisions": [
                # Both hold an emoji code: whichever is shown as the best, it stays text.
                {"name": "choice", "values": [EMOJI, f"{RTL}{EMOJI}"]}]}],
            "algorithm": {"name": "random"},
            "budget": {"maxTrials": 3, "maxFailedTrials": 10, "maxRetries": 0,
                       "parallelism": 1, "prefetch": 0},
            "trainer": {"type": "command", "command": [sys.executable, str(trainer)],
                        "timeoutSeconds": 60},
        },
    }))
    code, run = _on_terminal(["run", str(spec)], tmp_path)
    assert code == 0, run[-3000:]
    # The failed trial's warning line quotes the trainer's output, made visible.
    assert "\\x1b]0;pwned\\x07" in run and "\\x1b[2J" in run, run[-3000:]
    assert TITLE not in run and "\x1b[2J" not in run and "\x9b" not in run
    assert "\u202e" not in run and "\\u202etxt.exe" in run
    assert "\U0001f480" not in run, "the live view shows the decision value :skull: as typed"
    code, best = _on_terminal(["best", str(spec)], tmp_path, timeout=120)
    assert code == 0, best
    assert f"{EMOJI}: " in best and "\U0001f480" not in best, best  # the metric's name
    assert "note: \\u202etxt.exe" in best and "\u202e" not in best, best
    assert TITLE not in best and "\\x1b]0;pwned\\x07" in best, best
    assert MARKUP in best, best


def test_run_shows_a_learner_crash_message_inert(tmp_path: Path) -> None:
    """``ma2ml run``'s "the learner crashed" line quotes the error, whose text may be the
    database's or a trainer's: made visible as the other lines are. The error here is the
    database's own message, written by a trigger that refuses every new trial."""
    database = tmp_path / "search.db"
    with Store(f"sqlite:///{database}") as store, store.engine.begin() as connection:
        connection.execute(sql(f"CREATE TRIGGER hostile BEFORE INSERT ON trials BEGIN "
                                f"SELECT RAISE(ABORT, '{HOSTILE}'); END"))
    spec = tmp_path / "search.yaml"
    spec.write_text(yaml.safe_dump({
        "apiVersion": "ma2ml.io/v1alpha1", "kind": "PipelineSearch",
        "metadata": {"name": "crash"},
        "spec": {
            "agents": [{"name": "hpo", "decisions": [{"name": "n", "values": [0, 1]}]}],
            "algorithm": {"name": "random"},
            "budget": {"maxTrials": 3, "parallelism": 1},
            "trainer": {"type": "command", "command": ["true"]},
        },
    }))
    code, run = _on_terminal(["run", str(spec), "--db", f"sqlite:///{database}"], tmp_path)
    assert code == 1, run[-3000:]
    (line,) = [line for line in run.splitlines() if "error: the learner crashed" in line]
    assert line.strip() == (f"error: the learner crashed: IntegrityError: {visible(HOSTILE)}"), \
        line
    assert TITLE not in run and "\x1b[2J" not in run and "\x9b" not in run, run[-3000:]
    assert "\u202e" not in run, run[-3000:]
