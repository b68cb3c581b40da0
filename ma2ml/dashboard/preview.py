"""A trial's augmentation preview as PNG bytes (the grid ``ma2ml augment-preview`` draws).

Drawing it needs torch and the search's dataset: about 1 GiB, more than the
dashboard itself by far (the chart gives its pod 1 GiB). So the dashboard
never draws: it runs ``ma2ml augment-preview`` in a child process, one at a
time, and keeps the PNG. The child's data segment is capped
(``RLIMIT_DATA``, ``DashboardOptions.preview_memory_mib``), it is the first
process the kernel's OOM killer picks (``oom_score_adj`` 1000), and it is
killed after ``preview_timeout`` seconds; whatever happens to it, the server
goes on and its memory is returned when the child exits. The child gets no
database URL: it reads the spec and the data only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import yaml

from ma2ml.dashboard.options import DashboardOptions
from ma2ml.spec import parse_spec
from ma2ml.store import SearchRecord, TrialRecord

#: Previews kept in memory (a grid of 8 x 5 small images is a few kB).
CACHED_PREVIEWS = 64
#: Bytes of a PNG read back from the child (a preview grid is tens of kB).
MAX_PNG_BYTES = 8 << 20
#: The child: caps its own memory, volunteers for the OOM killer, then runs the ma2ml
#: command (set in the child itself: ``preexec_fn`` is unsafe in a threaded server).
_CHILD = """
import resource, runpy, sys
limit = int(sys.argv.pop(1))
resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
try:
    with open("/proc/self/oom_score_adj", "w") as adj:
        adj.write("1000")
except OSError:
    pass  # not Linux: the rlimit still holds
sys.argv[0] = "ma2ml"
runpy.run_module("ma2ml", run_name="__main__")
"""
#: What a child that ran out of memory says (Python, the C++ allocator, the loader).
_OUT_OF_MEMORY = ("MemoryError", "bad_alloc", "failed to map segment",
                  "Cannot allocate memory", "out of memory")


class PreviewError(RuntimeError):
    """No preview can be drawn here (off, no augmentation agent, unreadable data, or the
    child ran out of memory or time)."""


class Previews:
    """Draws previews in child processes, one at a time, and keeps the last few."""

    def __init__(self, options: DashboardOptions | None = None,
                 keep: int = CACHED_PREVIEWS) -> None:
        self.options = options or DashboardOptions()
        self._cache: OrderedDict[tuple[int, float, int], bytes] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def png(self, record: SearchRecord, trial: TrialRecord) -> bytes:
        if not self.options.previews:
            raise PreviewError("previews are off in this dashboard (it was started with "
                               "--no-previews; chart value dashboard.previews)")
        key = (record.id, record.created_at, trial.id)
        if not self._lock.acquire(timeout=self.options.preview_timeout):
            raise PreviewError("another preview is still being drawn; try again")
        try:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            data = draw(record.spec, trial.pipeline, self.options)
            self._cache[key] = data
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
            return data
        finally:
            self._lock.release()


def draw(spec: dict[str, Any], pipeline: dict[str, Any],
         options: DashboardOptions | None = None) -> bytes:
    """The preview grid of ``pipeline``'s augmentation: originals on top, draws below."""
    options = options or DashboardOptions()
    search = parse_spec(spec, stored=True)
    if not any(a.preset == "autoaugment" for a in search.spec.agents):
        raise PreviewError("this search has no augmentation agent (preset autoaugment)")
    with tempfile.TemporaryDirectory(prefix="ma2ml-preview-") as tmp:
        spec_file, out = Path(tmp) / "search.yaml", Path(tmp) / "preview.png"
        spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
        limit = options.preview_memory_mib << 20
        command = [sys.executable, "-c", _CHILD, str(limit), "augment-preview",
                   str(spec_file), "--out", str(out), "--pipeline", json.dumps(pipeline)]
        env = {k: v for k, v in os.environ.items() if k != "MA2ML_DATABASE_URL"}
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True,
                                  errors="replace", timeout=options.preview_timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise PreviewError(f"the preview took longer than {options.preview_timeout:g} s "
                               f"and was stopped") from None
        if done.returncode != 0:
            raise PreviewError(_failure(done, options))
        if not out.is_file() or out.stat().st_size > MAX_PNG_BYTES:
            raise PreviewError("the preview process wrote no usable image")
        return out.read_bytes()


def _failure(done: subprocess.CompletedProcess[str], options: DashboardOptions) -> str:
    stderr = done.stderr or ""
    if done.returncode == -9 or any(mark in stderr for mark in _OUT_OF_MEMORY):
        return (f"the preview ran out of memory (limit {options.preview_memory_mib} MiB; "
                f"ma2ml dashboard --preview-memory)")
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1].removeprefix("error: ") if lines else f"exit code {done.returncode}"
    return (f"cannot draw the preview here: {last[:300]} (the dashboard needs the search's "
            f"dataset to draw it)")
