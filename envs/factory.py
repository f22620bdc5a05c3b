"""Build environments from an :class:`rlkit.config.EnvConfig`: rlkit names or gymnasium ids."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlkit.config import EnvConfig
from rlkit.registry import ENVS


def make_env(config: EnvConfig, kwargs_override: dict[str, Any] | None = None) -> gym.Env:
    """Create one environment.

    :param config: the ``env`` section (id, kwargs, discrete_bins, max_episode_steps).
    :param kwargs_override: kwargs replacing ``config.kwargs`` entries (e.g. ``{"split": "test"}``).
    :return: the environment, with the action-discretising and time-limit wrappers applied.
    """
    kwargs = {**config.kwargs, **(kwargs_override or {})}
    if config.id in ENVS:
        entry = ENVS.get(config.id)
        env = entry.build(**entry.extra.get("bind", {}), **kwargs)  # e.g. the task of dmc/...
    else:
        from rlkit.catalog import is_gym_id

        is_gym_id(config.id)  # imports rlkit's own gymnasium ids when needed
        env = gym.make(config.id, **kwargs)
    if config.max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps=config.max_episode_steps)
    if config.discrete_bins is not None:
        from rlkit.envs.wrappers import DiscreteActionWrapper

        env = DiscreteActionWrapper(env, bins=config.discrete_bins, shared=config.discrete_shared)
    return env


def feature_groups(env: gym.Env) -> dict[str, slice]:
    """Named observation groups of ``env`` (``obs_groups`` of the unwrapped env), or {}."""
    return dict(getattr(env.unwrapped, "obs_groups", {}) or {})


def feature_names(env: gym.Env) -> list[str]:
    """Observation feature names of ``env``, or ``obs_0``, ``obs_1``, ... for plain Box envs."""
    names = getattr(env.unwrapped, "feature_names", None)
    if names:
        return list(names)
    shape = env.observation_space.shape or (0,)
    size = 1
    for dim in shape:
        size *= dim
    return [f"obs_{i}" for i in range(size)]
