"""Offline datasets: D4RL-format HDF5 files and Minari datasets, read and written locally.

- :func:`load_dataset` reads and validates a dataset into :class:`Transitions`;
- :class:`OfflineDataset` samples :class:`~rlkit.batch.Batch` es from them (a data source);
- :func:`reward_scale_return_range`, :func:`observation_stats`: the O-DICE authors' reward
  scaling and observation normalisation;
- :mod:`rlkit.datasets.scores`: D4RL reference returns and normalised scores;
- :mod:`rlkit.datasets.minari_io`: episodes and Minari datasets written with Minari's writer;
- :mod:`rlkit.datasets.collect`: datasets collected from trained rlkit runs (``rlkit dataset``).

Nothing here downloads anything.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlkit.datasets.minari_io import (
        Episode,
        datasets_root,
        episodes_to_transitions,
        transitions_to_episodes,
        write_minari,
    )
    from rlkit.datasets.offline import OfflineDataset
    from rlkit.datasets.readers import load_dataset, load_episodes
    from rlkit.datasets.scores import normalized_score, reference_scores
    from rlkit.datasets.transitions import (
        DatasetError,
        Transitions,
        observation_stats,
        reward_scale_return_range,
    )

#: public name -> defining module (imported on first use: ``rlkit --help`` stays light)
_EXPORTS = {
    "Episode": "minari_io",
    "datasets_root": "minari_io",
    "episodes_to_transitions": "minari_io",
    "transitions_to_episodes": "minari_io",
    "write_minari": "minari_io",
    "OfflineDataset": "offline",
    "load_dataset": "readers",
    "load_episodes": "readers",
    "normalized_score": "scores",
    "reference_scores": "scores",
    "DatasetError": "transitions",
    "Transitions": "transitions",
    "observation_stats": "transitions",
    "reward_scale_return_range": "transitions",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"rlkit.datasets.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'rlkit.datasets' has no attribute {name!r}")


__all__ = [
    "DatasetError",
    "Episode",
    "OfflineDataset",
    "Transitions",
    "datasets_root",
    "episodes_to_transitions",
    "load_dataset",
    "load_episodes",
    "normalized_score",
    "observation_stats",
    "reference_scores",
    "reward_scale_return_range",
    "transitions_to_episodes",
    "write_minari",
]
