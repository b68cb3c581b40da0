"""Where a search's epoch checkpoints and spooled reports live on disk.

Both are keyed by the search's identity in its store (its id and creation
time there: ``search_folder``), not by its name: the same spec run against
another database (another ``--db``, a store deleted and made afresh) is
another search, whose trial 3 is another pipeline, and whose trial ids mean
other trials. Keyed by name, such a run resumed the other store's
checkpoints of different pipelines, and a spooled report could have been
delivered to a stranger trial.

A checkpoint is also bound to its pipeline: the worker records the trial's
pipeline beside it (``<checkpoint>.pipeline``, JSON) before the trainer starts,
and a checkpoint found without that record, or with another pipeline's, is
refused: removed, and the trial trains from its first epoch
(``Places.checkpoint``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ma2ml.spec import PipelineSearch
from ma2ml.store import ClaimedTrial, SearchRecord
from ma2ml.worker.untrusted import read_regular

log = logging.getLogger(__name__)

#: Beside a checkpoint: the pipeline it was trained for.
PIPELINE_SUFFIX = ".pipeline"
#: Bytes of a pipeline record read (a pipeline is a few hundred decisions at most).
_MAX_PIPELINE_BYTES = 4 * 1024 * 1024


def safe_name(name: str) -> str:
    """A search name (``namespace/name``) as one path component."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def search_folder(record: SearchRecord) -> str:
    """One path component naming the search in its store: its name for people, then its id
    and its creation time (microseconds, the store's clock), which no other store's
    search of that name shares, nor a search made afresh under that name in this one."""
    return f"{safe_name(record.name)}-{record.id}-{round(record.created_at * 1e6)}"


@dataclass(frozen=True)
class Places:
    """The folders of one search under a worker's spool folder (and ``checkpointDir``)."""

    spool_dir: Path
    folder: str

    @classmethod
    def of(cls, spool_dir: Path, record: SearchRecord) -> Places:
        return cls(Path(spool_dir), search_folder(record))

    @property
    def reports(self) -> Path:
        """Reports waiting for the store (``spool.Spool``)."""
        return self.spool_dir / self.folder / "reports"

    def checkpoint_path(self, search: PipelineSearch, trial: ClaimedTrial) -> Path:
        """Per trial (not per attempt), so a retried or taken-over trial resumes."""
        root = Path(search.spec.trainer.checkpoint_dir or self.spool_dir / "checkpoints")
        return root / self.folder / f"trial-{trial.number}.pt"

    def checkpoint(self, search: PipelineSearch, trial: ClaimedTrial) -> Path:
        """The trial's checkpoint path, made ready for its trainer: a checkpoint there of
        another pipeline (or of none recorded) is removed, and this pipeline is recorded."""
        path = self.checkpoint_path(search, trial)
        record = pipeline_record(path)
        if path.exists() and _recorded_pipeline(record) != trial.pipeline:
            log.warning("checkpoint %s was not trained for trial %d's pipeline; refused, the "
                        "trial trains from its first epoch", path, trial.number)
            remove_checkpoint(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = record.with_name(record.name + ".partial")
        partial.write_text(json.dumps(trial.pipeline, sort_keys=True))
        partial.replace(record)
        return path


def pipeline_record(checkpoint: Path) -> Path:
    """The file beside ``checkpoint`` naming the pipeline it was trained for."""
    return checkpoint.with_name(checkpoint.name + PIPELINE_SUFFIX)


def remove_checkpoint(checkpoint: Path) -> None:
    """Remove a checkpoint and its pipeline record (whatever a trainer left there)."""
    for path in (checkpoint, pipeline_record(checkpoint)):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def _recorded_pipeline(record: Path) -> Any:
    try:
        return json.loads(read_regular(record, _MAX_PIPELINE_BYTES))
    except (OSError, ValueError, RecursionError):
        return None  # none recorded, or unreadable: the checkpoint's pipeline is unknown
