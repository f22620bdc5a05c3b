"""Generic gymnasium wrappers for rlkit environments."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class DiscreteActionWrapper(gym.ActionWrapper):
    """Expose a ``Box(-1, 1, (n,))`` action space as ``Discrete(bins)`` (n = 1) or
    ``MultiDiscrete([bins] * n)``.

    Mapping: index ``k`` in ``0..bins-1`` becomes ``-1 + 2 k / (bins - 1)``, i.e. ``bins`` evenly
    spaced values from -1 to 1 inclusive (for 20 bins: -1, -0.8947, ..., 0.8947, 1; there is no
    exact zero for an even number of bins; use an odd ``bins`` to include it). For Box bounds other
    than [-1, 1] the same fractions of ``[low, high]`` are used. The bifurcation-attack paper's
    discrete PPO uses 20 bins on one battery; with ``shared=True`` one ``Discrete(bins)`` choice
    drives every dimension (a central decision for all batteries, like the paper's single battery).
    """

    def __init__(self, env: gym.Env, bins: int = 20, shared: bool = False) -> None:
        """Wrap ``env``.

        :param env: environment with a 1-D ``Box`` action space and finite bounds.
        :param bins: number of levels per action dimension (>= 2).
        :param shared: one discrete choice applied to every action dimension.
        """
        super().__init__(env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ValueError(f"DiscreteActionWrapper needs a 1-D Box action space, got {space}")
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError("DiscreteActionWrapper needs finite Box bounds")
        self.bins = int(bins)
        self.n = int(space.shape[0])
        self._low = space.low.astype(np.float64)
        self._high = space.high.astype(np.float64)
        self._dtype = space.dtype
        self.shared = bool(shared)
        self.action_space = (
            gym.spaces.Discrete(self.bins)
            if self.n == 1 or self.shared
            else gym.spaces.MultiDiscrete([self.bins] * self.n)
        )

    def levels(self) -> np.ndarray:
        """Values of the ``bins`` levels on a [-1, 1] scale."""
        return -1.0 + 2.0 * np.arange(self.bins) / (self.bins - 1)

    def action(self, action: Any) -> np.ndarray:
        """Map a discrete action to the continuous one.

        :param action: int (Discrete) or integer array of shape (n,) (MultiDiscrete).
        """
        k = np.asarray(action, dtype=np.int64)
        k = np.broadcast_to(k.reshape(-1)[:1], (self.n,)) if self.shared else k.reshape(self.n)
        if np.any(k < 0) or np.any(k >= self.bins):
            raise ValueError(f"discrete action {action} outside 0..{self.bins - 1}")
        frac = k / (self.bins - 1)
        return (self._low + frac * (self._high - self._low)).astype(self._dtype)
