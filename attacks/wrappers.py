"""Gymnasium wrappers that feed an agent attacked observations.

* :class:`AttackedObservation` - single env; one attack call (batch of 1) per observation.
* :class:`AttackedVectorObservation` - ``gymnasium.vector.VectorEnv``; one attack call per step
  for all sub-envs, with per-env episode step counters that follow the env's autoreset mode.

Both pass ``t`` = the index of the observation within its episode (0 for the reset observation)
and add to ``info``: ``clean_obs``, ``perturbed_obs``, ``distortion_linf``, ``distortion_l2``
(vector envs: arrays with a leading (N,) axis plus the ``_key`` masks of the gymnasium 1.x vector
info convention).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

AttackFn = Callable[..., torch.Tensor]


def _run_attack(attack: AttackFn, obs: np.ndarray, t: int | np.ndarray,
                device: torch.device) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Perturb a batch ``obs`` (N, ...) at times ``t``; return it and the per-sample records.

    Args:
        attack: callable ``attack(obs_tensor, t=...) -> tensor``.
        obs: clean observation batch.
        t: int or (N,) array of episode step indices.
        device: torch device of the attack's policy.
    """
    obs = np.asarray(obs)
    x = torch.as_tensor(obs.astype(np.float32, copy=False), device=device)
    t_arg: int | torch.Tensor = (t if isinstance(t, int)
                                 else torch.as_tensor(np.asarray(t), device=device))
    adv = attack(x, t=t_arg).detach().cpu().numpy()
    dtype = obs.dtype if np.issubdtype(obs.dtype, np.floating) else np.float32
    adv = adv.astype(dtype, copy=False).reshape(obs.shape)
    diff = (adv.astype(np.float64) - obs.astype(np.float64)).reshape(obs.shape[0], -1)
    records = {
        "clean_obs": obs.copy(),
        "perturbed_obs": adv.copy(),
        "distortion_linf": np.abs(diff).max(axis=1) if diff.shape[1] else np.zeros(len(diff)),
        "distortion_l2": np.linalg.norm(diff, axis=1),
    }
    return adv, records


def _device_of(attack: AttackFn, device: torch.device | str | None) -> torch.device:
    """Explicit ``device``, else the attack's ``device`` attribute, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device(getattr(attack, "device", "cpu"))


class AttackedObservation(gym.ObservationWrapper):
    """Single-env wrapper: the agent sees ``attack(obs, t)`` instead of ``obs``.

    Args:
        env: a gymnasium env with array observations.
        attack: callable ``attack(obs_batch, t=step_index) -> perturbed batch`` (see
            ``rlkit.attacks.make_attack``).
        device: torch device for the observation tensor (default: the attack's device or CPU).
    """

    def __init__(self, env: gym.Env, attack: AttackFn,
                 device: torch.device | str | None = None) -> None:
        """Wrap ``env`` with ``attack`` running on ``device``."""
        super().__init__(env)
        self.attack = attack
        self.device = _device_of(attack, device)
        self.step_index = 0

    def _perturb(self, obs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Perturbed observation and the info records for one clean ``obs``."""
        adv, rec = _run_attack(self.attack, np.asarray(obs)[None], self.step_index, self.device)
        info = {
            "clean_obs": rec["clean_obs"][0],
            "perturbed_obs": rec["perturbed_obs"][0],
            "distortion_linf": float(rec["distortion_linf"][0]),
            "distortion_l2": float(rec["distortion_l2"][0]),
        }
        return adv[0], info

    def observation(self, observation: Any) -> np.ndarray:
        """Perturb ``observation`` at the current episode step (no info records)."""
        return self._perturb(observation)[0]

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env (``seed``, ``options``) and return the attacked first observation."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.step_index = 0
        adv, extra = self._perturb(obs)
        return adv, {**info, **extra}

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """Step the env with ``action`` and return the attacked next observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.step_index += 1
        adv, extra = self._perturb(obs)
        return adv, reward, terminated, truncated, {**info, **extra}


class AttackedVectorObservation(VectorWrapper):
    """Vector-env wrapper: one batched attack call per step for all sub-envs.

    Args:
        env: a ``gymnasium.vector.VectorEnv`` (e.g. ``SyncVectorEnv``) with array observations.
        attack: callable ``attack(obs_batch, t=(N,) tensor) -> perturbed batch``.
        device: torch device for the observation tensor (default: the attack's device or CPU).

    Per-env step counters restart at 0 on each sub-env's reset observation: for
    ``AutoresetMode.NEXT_STEP`` (gymnasium's default) that is the step *after* a done step, for
    ``SAME_STEP`` the done step itself, and for ``DISABLED`` a ``reset(options={"reset_mask":
    ...})``.
    """

    def __init__(self, env: VectorEnv, attack: AttackFn,
                 device: torch.device | str | None = None) -> None:
        """Wrap vector env ``env`` with ``attack`` running on ``device``."""
        super().__init__(env)
        self.attack = attack
        self.device = _device_of(attack, device)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self.autoreset_mode = AutoresetMode(mode) if isinstance(mode, str) else mode
        self.step_index = np.zeros(self.num_envs, dtype=np.int64)
        self._prev_done = np.zeros(self.num_envs, dtype=bool)

    def _perturb(self, obs: Any, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """Attack the batch ``obs`` and add the per-env records to ``info``."""
        adv, records = _run_attack(self.attack, obs, self.step_index.copy(), self.device)
        info = dict(info)
        present = np.ones(self.num_envs, dtype=bool)
        for key, value in records.items():
            info[key] = value
            info[f"_{key}"] = present.copy()
        return adv, info

    def reset(self, *, seed: int | list[int] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset (all envs, or those in ``options["reset_mask"]``) with ``seed``; attack obs."""
        obs, info = self.env.reset(seed=seed, options=options)
        mask = None if options is None else options.get("reset_mask")
        if mask is None:
            self.step_index[:] = 0
            self._prev_done[:] = False
        else:
            mask = np.asarray(mask, dtype=bool)
            self.step_index[mask] = 0
            self._prev_done[mask] = False
        return self._perturb(obs, info)

    def step(self, actions: Any) -> tuple[np.ndarray, Any, Any, Any, dict[str, Any]]:
        """Step all envs with ``actions``; update the counters; attack the next observations."""
        obs, reward, terminated, truncated, info = self.env.step(actions)
        done = np.logical_or(terminated, truncated)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self.step_index = np.where(self._prev_done, 0, self.step_index + 1)
            self._prev_done = done
        elif self.autoreset_mode == AutoresetMode.SAME_STEP:
            self.step_index = np.where(done, 0, self.step_index + 1)
        else:
            self.step_index = self.step_index + 1
        adv, info = self._perturb(obs, info)
        return adv, reward, terminated, truncated, info
