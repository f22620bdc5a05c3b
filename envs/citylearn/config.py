"""Typed configuration of the CityLearn building environment (``CityLearnEnvConfig``).

This module imports neither CityLearn nor gym, so the config validates (and the CLI help renders)
on a machine without CityLearn installed.
"""

from __future__ import annotations

import warnings
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

with warnings.catch_warnings():
    # A field named "schema" (CityLearn's own word) shadows pydantic's deprecated BaseModel.schema()
    # classmethod; pydantic warns once at class creation and the field works as any other.
    warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)

    class CityLearnEnvConfig(BaseModel):
        """Configuration of ``CityLearnGymEnv`` (``env.id: citylearn``).

        The defaults are the bifurcation paper's environment: CityLearn 2.0.0, the 2022 challenge
        (phase 2) data set, Building_6 controlled by one central agent, a whole year of hourly
        steps, the authors' wrappers (20 discrete battery bins, observations normalised to [0, 1]).
        Unknown keys are rejected.
        """

        model_config = ConfigDict(extra="forbid")

        # shadows BaseModel.schema (deprecated in pydantic 2): see the class body
        schema: str = Field(
            "citylearn_challenge_2022_phase_2",
            description=(
                "CityLearn data set name shipped with CityLearn 2.0.0 (e.g. "
                "'citylearn_challenge_2022_phase_2', the paper's) or a path to a schema.json file."
            ),
        )
        buildings: list[str] = Field(
            ["Building_6"],
            min_length=1,
            description=(
                "Names of the schema's buildings to simulate, controlled by one central agent "
                "(the paper: ['Building_6'], 31 features and one battery action)."
            ),
        )
        action: Literal["continuous", "discrete"] = Field(
            "discrete",
            description=(
                "'discrete': CityLearn's DiscreteActionWrapper with `bins` battery set-points, "
                "exposed as gymnasium Discrete(bins) (the authors' 20-bin PPO); 'continuous': "
                "CityLearn's NormalizedSpaceWrapper, Box(0, 1) per battery (the authors' SAC)."
            ),
        )
        bins: int = Field(
            20,
            ge=2,
            description=(
                "Number of battery set-points of the discrete action space (evenly spaced over "
                "CityLearn's battery action range)."
            ),
        )
        random_seed: int = Field(
            42,
            description=(
                "CityLearn's simulation seed (the authors: 0 for training, 42 for evaluation). In "
                "CityLearn 2.0.0 it only drives random episode splits, which this env does not "
                "use, so the simulation is the same for every seed."
            ),
        )
        episode_time_steps: int | None = Field(
            None,
            ge=1,
            le=8759,
            description=(
                "Env steps per episode, from the first hour of the year; None = the whole year "
                "(8,759 steps, as the paper). Short episodes (e.g. 48) are for tests; the "
                "observation normalisation is the full year's either way."
            ),
        )
        reward: Literal["default", "solar_penalty"] = Field(
            "default",
            description=(
                "'default': CityLearn's RewardFunction (minus the grid import, the authors' PPO "
                "and SAC); 'solar_penalty': CityLearn's SolarPenaltyReward (the authors' PPOc)."
            ),
        )

        @field_validator("buildings")
        @classmethod
        def _unique_buildings(cls, value: list[str]) -> list[str]:
            if len(set(value)) != len(value):
                raise ValueError(f"buildings must be distinct, got {value}")
            return value
