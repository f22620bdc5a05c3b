"""Use a native gymnasium ``VectorEnv`` (e.g. the batched grid) as a stable-baselines3 VecEnv.

Requires the SAME_STEP autoreset mode (the finished env's last observation is in
``infos["final_obs"]`` and the returned observation already starts the next episode), which is
SB3's own convention. Episode returns and lengths are reported as Monitor-style ``info["episode"]``
so SB3 logs ``rollout/ep_rew_mean``.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn


class GymnasiumVecEnv(VecEnv):
    """SB3 view of a gymnasium ``VectorEnv`` with SAME_STEP autoreset.

    :param venv: the vector env.
    """

    def __init__(self, venv: VectorEnv) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(f"GymnasiumVecEnv needs autoreset_mode SAME_STEP, the env has {mode}")
        self.venv = venv  # before VecEnv.__init__, which reads render_mode through get_attr
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(venv.num_envs)
        self._lengths = np.zeros(venv.num_envs, dtype=int)
        self._t0 = time.time()

    def reset(self) -> np.ndarray:
        seeds = None if all(s is None for s in self._seeds) else [s for s in self._seeds]
        obs, _ = self.venv.reset(seed=seeds)  # type: ignore[arg-type]  # gymnasium takes a list too
        self._reset_seeds()
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = np.logical_or(terminated, truncated)
        self._returns += rewards
        self._lengths += 1
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            infos[i]["episode"] = {
                "r": float(self._returns[i]),
                "l": int(self._lengths[i]),
                "t": round(time.time() - self._t0, 6),
            }
            self._returns[i], self._lengths[i] = 0.0, 0
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        # gymnasium vector envs without rendering have no render_mode attribute; SB3 asks for it
        value = (
            getattr(self.venv, attr_name, None)
            if attr_name == "render_mode"
            else getattr(self.venv, attr_name)
        )
        return [value] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        return [getattr(self.venv, method_name)(*method_args, **method_kwargs)]

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))
