"""Smart-grid battery simulator on pandapower feeders (gymnasium ``rlkit/GridBattery-v0``).

Public API::

    from rlkit.envs.grid import (GridBatteryEnv, GridBatteryVectorEnv, GridEnvConfig,
                                 make_grid_env, GRID_PARAMS_MODEL, ENV_ID)
    from rlkit.envs.grid.powerflow import solve, ZBusSolver
"""

from __future__ import annotations

from typing import Any

from .config import GridEnvConfig, RewardWeights
from .env import GridBatteryEnv
from .vector import GridBatteryVectorEnv

ENV_ID = "rlkit/GridBattery-v0"  # registered with gymnasium by rlkit.catalog.register_builtins
GRID_PARAMS_MODEL = GridEnvConfig


def make_grid_env(**kwargs: Any) -> GridBatteryEnv:
    """Factory used by the rlkit registry: validate ``kwargs`` with ``GridEnvConfig`` and build.

    :param kwargs: ``GridEnvConfig`` fields.
    """
    return GridBatteryEnv(GridEnvConfig.model_validate(kwargs))


__all__ = [
    "ENV_ID",
    "GRID_PARAMS_MODEL",
    "GridBatteryEnv",
    "GridBatteryVectorEnv",
    "GridEnvConfig",
    "RewardWeights",
    "make_grid_env",
]
