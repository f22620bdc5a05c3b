"""Smart-grid battery simulator on pandapower feeders (gymnasium ``rlkit/GridBattery-v0``).

Public API::

    from rlkit.envs.grid import (GridBatteryEnv, GridBatteryVectorEnv, GridEnvConfig,
                                 make_grid_env, GRID_PARAMS_MODEL, ENV_ID)
    from rlkit.envs.grid.powerflow import solve, ZBusSolver
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from .config import GridEnvConfig, RewardWeights
from .env import GridBatteryEnv
from .vector import GridBatteryVectorEnv

ENV_ID = "rlkit/GridBattery-v0"
GRID_PARAMS_MODEL = GridEnvConfig


def make_grid_env(**kwargs: Any) -> GridBatteryEnv:
    """Factory used by the rlkit registry: validate ``kwargs`` with ``GridEnvConfig`` and build.

    :param kwargs: ``GridEnvConfig`` fields.
    """
    return GridBatteryEnv(GridEnvConfig.model_validate(kwargs))


if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="rlkit.envs.grid.env:GridBatteryEnv",
        vector_entry_point="rlkit.envs.grid.vector:GridBatteryVectorEnv",
        disable_env_checker=False,
    )

__all__ = [
    "ENV_ID",
    "GRID_PARAMS_MODEL",
    "GridBatteryEnv",
    "GridBatteryVectorEnv",
    "GridEnvConfig",
    "RewardWeights",
    "make_grid_env",
]
