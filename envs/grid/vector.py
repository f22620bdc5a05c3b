"""Native gymnasium vector env: N independent feeders, one batched power flow per step."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .config import GridEnvConfig
from .core import GridCore
from .env import build_config


class GridBatteryVectorEnv(VectorEnv):
    """N copies of :class:`GridBatteryEnv` stepped together (same semantics per copy).

    **Autoreset: SAME_STEP.** When copy ``i`` finishes, the returned observation is already the
    first observation of its next episode; the last observation is in ``infos["final_obs"][i]`` and
    the finishing step's info (with ``episode_kpis``) in ``infos["final_info"]`` (dict of arrays
    with ``_key`` masks, gymnasium 1.x convention). The per-step metrics in ``infos`` (``cost``,
    ``vmin``, ...) always describe the step just taken, also for copies that were reset.

    Seeding: ``reset(seed=s)`` seeds copy ``i`` with ``s + i`` exactly as a single env
    ``reset(seed=s + i)``, so N seeded single envs reproduce the vector env.
    """

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(
        self, num_envs: int, config: GridEnvConfig | dict | None = None, **kwargs: Any
    ) -> None:
        """Create the vector env.

        :param num_envs: number of feeders N (>= 1).
        :param config: :class:`GridEnvConfig`, dict of fields, or None.
        :param kwargs: field overrides.
        """
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.config = build_config(config, kwargs)
        self.num_envs = int(num_envs)
        self.core = GridCore(self.config, self.num_envs)
        n = self.core.obs_dim
        self.single_observation_space = gym.spaces.Box(0.0, 1.0, (n,), dtype=np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (self.core.nb,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.feature_names: list[str] = list(self.core.feature_names)
        self.obs_groups: dict[str, slice] = dict(self.core.obs_groups)
        self.episode_steps = self.core.T
        self._rngs = [seeding.np_random(None)[0] for _ in range(self.num_envs)]
        self._started = False

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset all copies.

        :param seed: int (copy i gets seed + i), list of per-copy seeds, or None.
        :param options: ``{"start_day": int | list[int]}`` optional.
        """
        if seed is not None:
            seeds = (
                [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            )
            if len(seeds) != self.num_envs:
                raise ValueError(f"expected {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        sd = None if not options else options.get("start_day")
        sds = sd if isinstance(sd, (list, tuple, np.ndarray)) else [sd] * self.num_envs
        rows = np.arange(self.num_envs)
        obs = self.core.reset_rows(rows, self._rngs, list(sds))
        self._started = True
        info = {
            "start_day": self.core.start // self.core.steps_per_day,
            "_start_day": np.ones(self.num_envs, dtype=bool),
        }
        return obs, info

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all copies with actions of shape (N, n_batteries).

        :param actions: batched actions in [-1, 1].
        """
        if not self._started:
            raise RuntimeError("call reset() before step()")
        obs, rew, trunc, info_b = self.core.step(np.asarray(actions, dtype=float))
        mask = np.ones(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        for k, v in info_b.items():
            infos[k] = v
            infos["_" + k] = mask
        done = np.flatnonzero(trunc)
        if len(done):
            final: dict[str, Any] = {}
            for i in done:
                single = {
                    k: (v[i].item() if np.ndim(v[i]) == 0 else v[i]) for k, v in info_b.items()
                }
                single["episode_kpis"] = self.core.episode_kpis(int(i))
                final = self._add_info(final, single, int(i))
                infos = self._add_info(infos, {"final_obs": obs[i].copy()}, int(i))
            infos["final_info"] = final
            infos["_final_info"] = np.isin(np.arange(self.num_envs), done)
            new_obs = self.core.reset_rows(done, [self._rngs[i] for i in done])
            obs[done] = new_obs
        terminated = np.zeros(self.num_envs, dtype=bool)
        return obs, rew.astype(np.float64), terminated, trunc.copy(), infos

    def apply_load_alteration(
        self, delta_p_mw: Any, buses: Any, steps: Any, env_indices: Any = None
    ) -> None:
        """Physical load alteration in the current episodes of the selected copies.

        :param delta_p_mw: scalar, (len(buses),) or (len(steps), len(buses)) MW of extra
            consumption.
        :param buses: pandapower bus index or indices.
        :param steps: absolute episode step indices.
        :param env_indices: copies to alter (None = all).
        """
        idx = range(self.num_envs) if env_indices is None else np.atleast_1d(env_indices)
        for i in idx:
            self.core.apply_load_alteration(int(i), delta_p_mw, buses, steps)
