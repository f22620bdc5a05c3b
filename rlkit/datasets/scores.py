"""Normalised scores: 100 * (R - random) / (expert - random), D4RL's convention.

D4RL's reference returns for the Gym-MuJoCo locomotion tasks (random policy, expert policy) are
used for those four envs, whatever the dataset says, so scores compare with published D4RL
tables; every other dataset uses its own ``ref_min_score`` / ``ref_max_score``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

#: D4RL reference returns (random, expert) of the locomotion tasks
D4RL_REFERENCE: dict[str, tuple[float, float]] = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}


def d4rl_task(name: str | None) -> str | None:
    """The D4RL locomotion task a gymnasium id, d4rl name or Minari id refers to, or None.

    ``"Hopper-v5"``, ``"hopper-medium-v2"``, ``"hopper_medium-v2"`` and
    ``"mujoco/hopper/medium-v0"`` all give ``"hopper"``; ``"antmaze-umaze-v2"`` gives None (only
    the plain Ant task uses Ant's reference returns).

    :param name: the id or file name.
    """
    if not name:
        return None
    for part in str(name).lower().split("/"):
        head = re.split(r"[-_]", part, maxsplit=1)[0]
        if head in D4RL_REFERENCE:
            return head
    return None


def reference_scores(env_id: str | None, metadata: dict[str, Any]) -> tuple[float, float] | None:
    """(random, expert) reference returns for normalising scores, or None when unknown.

    The env is ``env_id``, else ``metadata["env_id"]``, else the dataset's ``metadata["name"]``
    (a file stem such as ``hopper-medium-v2`` or a Minari id). For HalfCheetah, Hopper, Walker2d
    and Ant these are D4RL's; otherwise the dataset's own ``ref_min_score`` /
    ``ref_max_score`` when both are set.

    :param env_id: gymnasium id or d4rl name of the evaluation env (None: from the metadata).
    :param metadata: the dataset's :attr:`~rlkit.datasets.Transitions.metadata`.
    """
    name = env_id or metadata.get("env_id") or metadata.get("name")
    task = d4rl_task(name)
    if task is not None:
        return D4RL_REFERENCE[task]
    low, high = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if low is None or high is None:
        return None
    return float(low), float(high)


def normalized_score(returns: Any, ref: tuple[float, float]) -> np.ndarray:
    """``100 * (R - ref_min) / (ref_max - ref_min)`` for each return.

    :param returns: one return or an array of returns.
    :param ref: (random, expert) reference returns, as :func:`reference_scores` gives them.
    :raises ValueError: equal reference returns.
    """
    low, high = float(ref[0]), float(ref[1])
    if high == low:
        raise ValueError(f"reference scores must differ, got min = max = {low}")
    return 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)
