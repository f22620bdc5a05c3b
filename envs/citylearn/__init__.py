"""The bifurcation paper's building: CityLearn 2.0.0 as a gymnasium env (``env.id: citylearn``).

Public API::

    from rlkit.envs.citylearn import (CityLearnEnvConfig, make_citylearn_env,
                                      CITYLEARN_PARAMS_MODEL, ENV_ID)
    from rlkit.envs.citylearn.env import CityLearnGymEnv, district_kpis
    from rlkit.envs.citylearn.authors import load_authors_model

Importing this package does not import CityLearn (nor gym); building an env does, and raises a
``ValueError`` saying how to install CityLearn when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .compat import silence_gym_banner
from .config import CityLearnEnvConfig

if TYPE_CHECKING:
    from .env import CityLearnGymEnv

ENV_ID = "rlkit/CityLearn-v0"
CITYLEARN_PARAMS_MODEL = CityLearnEnvConfig


def make_citylearn_env(**kwargs: Any) -> CityLearnGymEnv:
    """Factory used by the rlkit registry: validate ``kwargs`` with ``CityLearnEnvConfig`` and
    build.

    :param kwargs: ``CityLearnEnvConfig`` fields (schema, buildings, action, bins, random_seed,
        episode_time_steps, reward).
    :raises ValueError: CityLearn 2.0.x is not installed (the message says how to install it), or
        an unknown schema or building.
    """
    config = CityLearnEnvConfig.model_validate(kwargs)
    from .env import CityLearnGymEnv

    return CityLearnGymEnv(config)


__all__ = [
    "CITYLEARN_PARAMS_MODEL",
    "ENV_ID",
    "CityLearnEnvConfig",
    "make_citylearn_env",
    "silence_gym_banner",
]
