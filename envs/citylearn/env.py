"""CityLearn 2.0.0 as a gymnasium 1.x environment, observed exactly as the bifurcation paper's
agents.

CityLearn 2.0.0 is a gym 0.25 (old step API) environment. ``CityLearnGymEnv`` builds the authors'
wrapper chain from CityLearn's own wrappers (``modules/KBMproject/utilities.py`` of their
repository) and adapts its API to gymnasium:

- discrete: ``StableBaselines3Wrapper(NormalizedObservationWrapper(DiscreteActionWrapper(env,
  bin_sizes=[{"electrical_storage": bins}])))``, exposed as ``Discrete(bins)`` (one battery);
- continuous: ``StableBaselines3Wrapper(NormalizedSpaceWrapper(env))``, actions in ``[0, 1]``.

Either way the observation is CityLearn's normalised vector (for Building_6: 31 float32 features in
[0, 1]: month, day type and hour as cos/sin pairs, then min-max scaled weather, carbon intensity,
loads, solar generation, battery SOC, net consumption and prices), with named groups in
``obs_groups`` and ``feature_names``. ``reset(seed=...)`` returns ``(obs, info)``; ``step`` returns
the gymnasium 5-tuple and ``terminated=True`` at the end of the year (or of the short episode);
the final step's ``info["episode_kpis"]`` holds CityLearn's own district KPIs.

CityLearn (and gym) are imported only when an env is built: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .compat import silence_gym_banner
from .config import CityLearnEnvConfig

INSTALL_HINT = (
    "env 'citylearn' needs CityLearn 2.0.0 (which runs on the old gym 0.25 API). Install it into "
    "this environment with\n"
    "    pip install --no-deps CityLearn==2.0.0\n"
    "    pip install gym==0.25.2 simplejson scikit-learn\n"
    "(or `pip install -e '.[citylearn]'` followed by the --no-deps line; `make setup` does both). "
    "--no-deps is needed because CityLearn 2.0.0's declared pins (pandas==1.3.5, "
    "scikit-learn==1.0.2) cannot be installed on Python 3.11; gym 0.26 and CityLearn >= 2.2 "
    "do not work."
)

#: the authors' KPI baseline: the same building without its battery (CityLearn normalises by it)
BASELINE_CONDITION = "WITHOUT_STORAGE_BUT_WITH_PARTIAL_LOAD_AND_PV"

_CALENDAR = ("month", "day_type", "hour", "daylight_savings_status")
_WEATHER = ("outdoor_", "diffuse_solar_irradiance", "direct_solar_irradiance")
_SINGLE = (
    "carbon_intensity",
    "non_shiftable_load",
    "solar_generation",
    "electrical_storage_soc",
    "net_electricity_consumption",
)
#: the named observation groups, in the order CityLearn's vector lists them
GROUP_NAMES = ("calendar", "weather", *_SINGLE, "electricity_pricing")


def import_citylearn() -> SimpleNamespace:
    """Import CityLearn 2.0.x (and gym 0.25) quietly, or raise ``ValueError`` saying how to install.

    :return: a namespace with ``CityLearnEnv``, ``EvaluationCondition``, ``DataSet``, the four
        wrappers, ``RewardFunction``, ``SolarPenaltyReward`` and ``version``.
    """
    try:
        silence_gym_banner()
        import citylearn
        from citylearn.citylearn import CityLearnEnv, EvaluationCondition
        from citylearn.data import DataSet
        from citylearn.reward_function import RewardFunction, SolarPenaltyReward
        from citylearn.wrappers import (
            DiscreteActionWrapper,
            NormalizedObservationWrapper,
            NormalizedSpaceWrapper,
            StableBaselines3Wrapper,
        )
    except ImportError as exc:
        raise ValueError(f"{INSTALL_HINT}\n(import failed: {exc})") from exc
    version = getattr(citylearn, "__version__", "?")
    if not str(version).startswith(("2.0.", "2.1.")):
        raise ValueError(f"found CityLearn {version}; {INSTALL_HINT}")
    return SimpleNamespace(
        CityLearnEnv=CityLearnEnv,
        EvaluationCondition=EvaluationCondition,
        DataSet=DataSet,
        DiscreteActionWrapper=DiscreteActionWrapper,
        NormalizedObservationWrapper=NormalizedObservationWrapper,
        NormalizedSpaceWrapper=NormalizedSpaceWrapper,
        StableBaselines3Wrapper=StableBaselines3Wrapper,
        RewardFunction=RewardFunction,
        SolarPenaltyReward=SolarPenaltyReward,
        version=str(version),
    )


@contextlib.contextmanager
def _quiet_gym() -> Iterator[None]:
    """Silence the two warnings gym 0.25 gives on CityLearn's wrappers (and nothing else).

    "Initializing wrapper in old step API" (a DeprecationWarning per wrapper) and "Box bound
    precision lowered by casting to float32" (a UserWarning each time
    ``NormalizedActionWrapper.action_space`` is built).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*old step API", category=DeprecationWarning)
        warnings.filterwarnings(
            "ignore", message=r".*Box bound precision lowered", category=UserWarning
        )
        yield


def load_schema(cl: SimpleNamespace, schema: str) -> dict[str, Any]:
    """The schema dict of a CityLearn data set name, or of a schema.json path.

    :param cl: the namespace of :func:`import_citylearn`.
    :param schema: data set name (``cl.DataSet.get_names()``) or path to a schema.json.
    """
    names = cl.DataSet.get_names()
    if schema in names:
        return cl.DataSet.get_schema(schema)
    if os.path.isfile(schema):
        import json

        with open(schema, encoding="utf-8") as handle:
            data = json.load(handle)
        if data.get("root_directory") is None:
            data["root_directory"] = os.path.dirname(os.path.abspath(schema))
        return data
    raise ValueError(
        f"env 'citylearn': unknown schema {schema!r}; CityLearn {cl.version} ships: "
        f"{', '.join(names)} (or give a path to a schema.json)"
    )


def _group_of(name: str) -> str | None:
    base = name.rsplit("/", 1)[-1]
    if base.startswith(_CALENDAR):
        return "calendar"
    if base.startswith(_WEATHER):
        return "weather"
    if base.startswith("electricity_pricing"):
        return "electricity_pricing"
    if base in _SINGLE:
        return base
    return None


def feature_groups_of(names: list[str]) -> dict[str, slice | list[int]]:
    """Named groups over a CityLearn feature vector: a slice where contiguous, else an index list.

    :param names: the feature names (``CityLearnGymEnv.feature_names``).
    """
    members: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        group = _group_of(name)
        if group is not None:
            members.setdefault(group, []).append(i)
    groups: dict[str, slice | list[int]] = {}
    for group in GROUP_NAMES:
        idx = members.get(group)
        if not idx:
            continue
        contiguous = idx == list(range(idx[0], idx[-1] + 1))
        groups[group] = slice(idx[0], idx[-1] + 1) if contiguous else idx
    return groups


def district_kpis(citylearn_env: Any, cl: SimpleNamespace | None = None) -> dict[str, float]:
    """CityLearn's district KPIs now, as the authors computed them (lower is better).

    ``citylearn_env.evaluate(baseline_condition=WITHOUT_STORAGE_BUT_WITH_PARTIAL_LOAD_AND_PV)``,
    the ``District`` rows, under CityLearn's names (``cost_total``, ``daily_peak_average``,
    ``electricity_consumption_total``, ``ramping_average``, ...), as floats. Rows that CityLearn
    leaves undefined (NaN: the discomfort proportions of an unoccupied building) are left out.

    :param citylearn_env: the raw ``citylearn.citylearn.CityLearnEnv``.
    :param cl: the namespace of :func:`import_citylearn` (imported when None).
    """
    cl = cl or import_citylearn()
    baseline = getattr(cl.EvaluationCondition, BASELINE_CONDITION)
    frame = citylearn_env.evaluate(baseline_condition=baseline)
    district = frame[frame["name"] == "District"]
    kpis = {
        str(k): float(v) for k, v in zip(district["cost_function"], district["value"], strict=True)
    }
    return {k: v for k, v in sorted(kpis.items()) if np.isfinite(v)}


class CityLearnGymEnv(gym.Env):
    """CityLearn building(s) with one central battery controller, as a gymnasium env.

    Attributes:
        feature_names: the observation's feature names (CityLearn's, e.g. ``hour_cos``,
            ``solar_generation``; with several buildings the building-specific ones are prefixed
            ``Building_N/``).
        obs_groups: group name -> slice (or index list) over the observation: ``calendar``,
            ``weather``, ``carbon_intensity``, ``non_shiftable_load``, ``solar_generation``,
            ``electrical_storage_soc``, ``net_electricity_consumption``, ``electricity_pricing``.
        steps_per_day: 24 (hourly data).
        citylearn_env: the raw ``citylearn.citylearn.CityLearnEnv`` (gym 0.25 API).
        wrapped_env: the authors' gym wrapper chain around it (what the agent talks to).

    Seeding: ``random_seed`` (config) is CityLearn's simulation seed; CityLearn 2.0.0 uses it only
    to draw random episode splits, which this env never enables, and the simulation itself has no
    randomness. ``reset(seed=s)`` seeds gymnasium's ``np_random`` (unused by the simulation), so
    every reset replays the same year: same actions give the same observations, rewards and KPIs
    whatever the seeds.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: CityLearnEnvConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = CityLearnEnvConfig.model_validate(kwargs)
        elif kwargs:
            raise TypeError("give either a CityLearnEnvConfig or keyword arguments, not both")
        self.config = config
        cl = import_citylearn()
        self._cl = cl
        schema = load_schema(cl, config.schema)
        known = list(schema["buildings"])
        unknown = [b for b in config.buildings if b not in known]
        if unknown:
            raise ValueError(
                f"env 'citylearn': unknown building(s) {unknown} in schema {config.schema!r}; "
                f"it has: {', '.join(known)}"
            )
        episode = None
        if config.episode_time_steps is not None:
            # one fixed split from the first hour: N steps need N + 1 data time steps. A split list
            # (not an int) keeps the full year's normalisation and stops CityLearn from moving on
            # to the next split at every reset.
            start = int(schema["simulation_start_time_step"])
            end = start + config.episode_time_steps
            if end > int(schema["simulation_end_time_step"]):
                raise ValueError(
                    f"env 'citylearn': episode_time_steps={config.episode_time_steps} runs past "
                    f"the schema's last time step {schema['simulation_end_time_step']}"
                )
            episode = [(start, end)]
        reward_function = cl.SolarPenaltyReward if config.reward == "solar_penalty" else None
        with _quiet_gym():
            raw = cl.CityLearnEnv(
                schema,
                central_agent=True,
                buildings=list(config.buildings),
                random_seed=config.random_seed,
                episode_time_steps=episode,
                reward_function=reward_function,
            )
            if config.action == "discrete":
                bins = [{"electrical_storage": config.bins} for _ in raw.buildings]
                inner = cl.DiscreteActionWrapper(raw, bin_sizes=bins, default_bin_size=config.bins)
                normalized = cl.NormalizedObservationWrapper(inner)
                wrapped = cl.StableBaselines3Wrapper(normalized)
            else:
                normalized_space = cl.NormalizedSpaceWrapper(raw)
                normalized = normalized_space.env.env  # NormalizedObservationWrapper inside it
                wrapped = cl.StableBaselines3Wrapper(normalized_space)
            obs_space = wrapped.observation_space
            act_space = wrapped.action_space
        self.citylearn_env = raw
        self.wrapped_env = wrapped

        self.feature_names = self._names(raw, normalized)
        self.observation_space = spaces.Box(
            low=np.asarray(obs_space.low, dtype=np.float32),
            high=np.asarray(obs_space.high, dtype=np.float32),
            dtype=np.float32,
        )
        if self.observation_space.shape != (len(self.feature_names),):
            raise RuntimeError(
                f"CityLearn gave {self.observation_space.shape} features for "
                f"{len(self.feature_names)} names"
            )
        if config.action == "discrete":
            nvec = np.asarray(act_space.nvec, dtype=np.int64)
            self.action_space = (
                spaces.Discrete(int(nvec[0])) if nvec.size == 1 else spaces.MultiDiscrete(nvec)
            )
        else:
            self.action_space = spaces.Box(
                low=np.asarray(act_space.low, dtype=np.float32),
                high=np.asarray(act_space.high, dtype=np.float32),
                dtype=np.float32,
            )
        self.obs_groups = feature_groups_of(self.feature_names)
        self.steps_per_day = int(round(86400 / float(raw.seconds_per_time_step)))
        self.episode_steps = int(raw.time_steps) - 1
        self._t = 0
        self._done = True

    @staticmethod
    def _names(raw: Any, normalized: Any) -> list[str]:
        # the same walk as NormalizedObservationWrapper.observation (central agent): shared
        # observations once (from the first building), the others for every building
        shared = set(normalized.shared_observations)
        several = len(raw.buildings) > 1
        names: list[str] = []
        seen: set[str] = set()
        for i, building in enumerate(raw.buildings):
            for key in building.observations(normalize=True, periodic_normalization=True):
                if i == 0 or key not in shared or key not in seen:
                    names.append(f"{building.name}/{key}" if several and key not in shared else key)
                if key in shared:
                    seen.add(key)
        return names

    # --- gymnasium API ------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start the episode again from its first hour (the same year every time).

        :param seed: seeds ``self.np_random``; the simulation is deterministic and ignores it.
        :param options: unused.
        :return: ``(obs, info)``, ``info`` with ``time_step`` (0).
        """
        super().reset(seed=seed)
        with _quiet_gym():
            obs = self.wrapped_env.reset()
        self._t = 0
        self._done = False
        return np.asarray(obs, dtype=np.float32), {"time_step": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply a battery action and advance one hour.

        :param action: discrete: an int in ``[0, bins)`` (or one per battery); continuous: an array
            in ``[0, 1]`` per battery, passed on unclipped as the authors' wrappers do.
        :return: ``(obs, reward, terminated, truncated, info)``; ``terminated`` at the episode's
            last hour, when ``info["episode_kpis"]`` holds :func:`district_kpis`.
        """
        if self._done:
            raise RuntimeError(
                "CityLearnGymEnv.step called before reset() or after the episode ended"
            )
        if self.config.action == "discrete":
            act = np.asarray(action).astype(np.int64, copy=False).reshape(-1)
            nvec = np.atleast_1d(
                getattr(self.action_space, "nvec", getattr(self.action_space, "n", 0))
            )
            if act.shape != nvec.shape or (act < 0).any() or (act >= nvec).any():
                raise ValueError(f"action {action!r} is outside {self.action_space}")
        else:
            act = np.asarray(action, dtype=np.float32).reshape(-1)
            if act.shape != self.action_space.shape:
                raise ValueError(f"action {action!r} does not fit {self.action_space}")
        obs, reward, done, info = self.wrapped_env.step(act)
        self._t += 1
        info = dict(info or {})
        info["time_step"] = self._t
        terminated = bool(done)
        if terminated:
            self._done = True
            info["episode_kpis"] = self.kpis()
        return np.asarray(obs, dtype=np.float32), float(reward), terminated, False, info

    def kpis(self) -> dict[str, float]:
        """CityLearn's district KPIs of the episode so far (see :func:`district_kpis`)."""
        return district_kpis(self.citylearn_env, self._cl)

    def close(self) -> None:
        """Nothing to release."""
