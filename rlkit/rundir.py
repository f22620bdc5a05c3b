"""The run directory: resolved config, metrics, versioned atomic checkpoints, final model.

Layout::

    runs/<name>/
        config.yaml           resolved config (itself a valid config)
        metrics.csv           one row per log point; columns grow as new metrics appear
        tb/                   TensorBoard events
        checkpoints/step_000001000/   meta.json + agent files + loop.pt (RNG states, counters)
        replay/               replay chunks, appended by checkpoints (meta.json lists its own)
        final/                meta.json + agent files (the trained model)
        eval.json             clean evaluation

A checkpoint is written into a hidden temporary folder and renamed into place, so a run killed
mid-checkpoint still resumes from the previous complete one; a checkpoint that cannot be read
(a damaged file) is skipped with a warning in favour of the one before it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from rlkit.io import atomic_write_json, atomic_write_text

CHECKPOINT_SCHEMA = 2


class CheckpointError(ValueError):
    """A checkpoint or final model that cannot be read (damaged, truncated or from another
    version)."""


class RunDir:
    """Paths and helpers of one run directory.

    :param path: the directory (created on :meth:`create`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.csv")
    checkpoints = property(lambda self: self.path / "checkpoints")
    final = property(lambda self: self.path / "final")
    eval_path = property(lambda self: self.path / "eval.json")
    tb_path = property(lambda self: self.path / "tb")
    replay_store = property(lambda self: self.path / "replay")

    def create(self, config_text: str) -> None:
        """Create the folder and write the resolved config."""
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, config_text)

    def move_aside(self) -> Path | None:
        """Rename an existing run to ``<name>.old-<time>`` (never delete); return the new path."""
        if not self.path.exists():
            return None
        target = self.path.with_name(f"{self.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while target.exists():
            target = target.with_name(f"{target.name}-{n}")
            n += 1
        self.path.rename(target)
        return target

    # checkpoints -------------------------------------------------------------------------

    def checkpoint_dirs(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.glob("step_*") if (p / "meta.json").is_file()]
        return sorted(found, key=lambda p: int(p.name.split("_")[1]))

    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        dirs = self.checkpoint_dirs()
        return dirs[-1] if dirs else None

    def begin_checkpoint(self, step: int) -> Path:
        """A fresh temporary folder to write the checkpoint of ``step`` into."""
        tmp = self.checkpoints / f".tmp_step_{step:09d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, meta: dict[str, Any], keep: int) -> Path:
        """Write ``meta.json`` last, rename the folder into place, prune old checkpoints.

        :param tmp: the folder from :meth:`begin_checkpoint`, holding the state files.
        :param step: environment steps so far.
        :param meta: JSON facts (kind, counters); the schema version is added.
        :param keep: how many checkpoints to keep.
        """
        atomic_write_json(tmp / "meta.json", {"schema": CHECKPOINT_SCHEMA, "step": step, **meta})
        final = self.checkpoints / f"step_{step:09d}"
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in self.checkpoint_dirs()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final


def read_meta(folder: Path) -> dict[str, Any]:
    """Read a checkpoint's (or final model's) ``meta.json`` and check its schema version.

    :param folder: the checkpoint or final folder.
    :raises CheckpointError: missing, unreadable or of another schema version.
    """
    try:
        meta = json.loads((Path(folder) / "meta.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{folder}: cannot read meta.json ({err})") from None
    if not isinstance(meta, dict) or meta.get("schema") != CHECKPOINT_SCHEMA:
        schema = meta.get("schema") if isinstance(meta, dict) else None
        raise CheckpointError(
            f"{folder}: checkpoint schema {schema} is not supported "
            f"(expected {CHECKPOINT_SCHEMA}); it was written by another rlkit version"
        )
    return meta
