"""A trial's augmentation preview as PNG bytes (the grid ``ma2ml augment-preview`` draws).

Drawing it needs torch and a few images of the search's dataset, so torch is
imported here, on the first preview asked for, never when the server starts.
One preview is drawn at a time (it costs CPU) and the last few are kept.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ma2ml.spec import parse_spec
from ma2ml.store import SearchRecord, TrialRecord

#: Previews kept in memory (a grid of 8 x 5 small images is a few kB).
CACHED_PREVIEWS = 64


class PreviewError(RuntimeError):
    """No preview can be drawn here (no augmentation agent, or the data is not readable)."""


class Previews:
    """Draws and keeps augmentation previews, one at a time."""

    def __init__(self, keep: int = CACHED_PREVIEWS) -> None:
        self._cache: OrderedDict[tuple[int, float, int], bytes] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    def png(self, record: SearchRecord, trial: TrialRecord) -> bytes:
        key = (record.id, record.created_at, trial.id)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
            data = draw(record.spec, trial.pipeline)
            self._cache[key] = data
            while len(self._cache) > self._keep:
                self._cache.popitem(last=False)
            return data


def draw(spec: dict[str, Any], pipeline: dict[str, Any]) -> bytes:
    """The preview grid of ``pipeline``'s augmentation: originals on top, draws below."""
    search = parse_spec(spec)
    if not any(a.preset == "autoaugment" for a in search.spec.agents):
        raise PreviewError("this search has no augmentation agent (preset autoaugment)")
    from ma2ml.worker.preview import save_preview  # torch: only now

    with tempfile.TemporaryDirectory(prefix="ma2ml-preview-") as tmp:
        out = Path(tmp) / "preview.png"
        try:
            save_preview(search, pipeline, out)
        except Exception as error:  # a bad pipeline or unreadable data: this preview only
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise PreviewError(f"cannot draw the preview here: {first} (the dashboard "
                               f"needs the search's dataset to draw it)") from error
        return out.read_bytes()
