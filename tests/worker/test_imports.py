"""A worker of a custom-command search never imports torch: checked in real worker
processes (``ma2ml worker`` and the local pool's entry point), whose ``sys.modules``
is written out when they exit."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ma2ml.spec import PipelineSearch, spec_to_document
from ma2ml.store import Actor, SearchState, Store, TrialProposal

Make = Callable[..., PipelineSearch]

#: Runs ``ENTRY`` (set by the test) and, at exit, writes what the process imported.
PROBE = """
import atexit, json, sys
_OUT = sys.argv[1]
def _report():
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
    json.dump({"heavy": heavy[:5], "ran": "ma2ml.worker.loop" in sys.modules,
               "custom": "ma2ml.worker.custom" in sys.modules,
               "hwm_kib": int(status["VmHWM"].split()[0])}, open(_OUT, "w"))
atexit.register(_report)
"""
CLI_ENTRY = """
from ma2ml.cli import app
sys.argv = ["ma2ml", "worker", "--search", sys.argv[2], "--db", sys.argv[3],
            "--spool-dir", sys.argv[4], "--threads", "1"]
app()
"""
POOL_ENTRY = """
import os
from pathlib import Path
from ma2ml.local.pool import _worker_process
_worker_process(sys.argv[3], sys.argv[2], "local-probe", 1, None, Path(sys.argv[4]),
                os.getppid())
"""


@pytest.mark.parametrize("entry", [CLI_ENTRY, POOL_ENTRY], ids=["ma2ml-worker", "local-pool"])
def test_a_command_worker_never_imports_torch(sqlite_url: str, make_search: Make,
                                              python_trainer: Callable[[str], list[str]],
                                              tmp_path: Path, entry: str) -> None:
    search = make_search({
        "agents": [{"name": "trainer", "decisions": [{"name": "n", "values": [0, 1]}]}],
        "trainer": {"type": "command",
                    "command": python_trainer("import ma2ml; ma2ml.report(accuracy=0.5)")}})
    out = tmp_path / "modules.json"
    with Store(sqlite_url) as store:
        record = store.create_search(search.key, spec_to_document(search))
        store.enqueue_trials(record.id, [TrialProposal({"trainer": {"n": 0}}, {}, {}, 0)])
        process = subprocess.Popen(
            [sys.executable, "-c", PROBE + entry, str(out), search.key, sqlite_url,
             str(tmp_path / "spool")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        try:
            deadline = time.monotonic() + 60
            while store.counts(record.id).completed < 1:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the trial did not complete"
                time.sleep(0.05)
            store.move_search(record.id, SearchState.finished, by=Actor.learner)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, output
    seen = json.loads(out.read_text())
    assert seen["ran"] and seen["custom"], seen  # the worker loop ran the custom trainer
    assert seen["heavy"] == [], f"a command worker imported {seen['heavy']}"
