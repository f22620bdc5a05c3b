"""Gymnasium wrappers that feed an agent attacked observations.

* :class:`AttackedObservation` - single env; one attack call (batch of 1) per observation.
* :class:`AttackedVectorObservation` - ``gymnasium.vector.VectorEnv``; one attack call per step
  for all sub-envs, with per-env episode step counters that follow the env's autoreset mode.
  ``single_episode=True`` is the evaluation mode: each sub-env is attacked during one episode only
  (its first after ``reset()``), so sub-envs whose episode ended drop out of the attack batch.

Both pass ``t`` = the index of the observation within its episode (0 for the reset observation)
and add to ``info``: ``clean_obs``, ``perturbed_obs``, ``distortion_linf``, ``distortion_l2``
(vector envs: arrays with a leading (N,) axis plus the ``_key`` masks of the gymnasium 1.x vector
info convention; ``_key[i]`` is False for a sub-env that was not attacked at this step, whose
``perturbed_obs`` then equals its ``clean_obs`` and whose distortion is 0).

Observations may have any shape (flat features or images (C, H, W)); the attack gets a float32
batch (N, ...) and the distortion norms run over all elements of one observation.  Integer
observations (uint8 frames) come back as float32, float observations in their own dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from rlkit.attacks.fused import FusedContext

AttackFn = Callable[..., torch.Tensor]
RECORD_KEYS = ("clean_obs", "perturbed_obs", "distortion_linf", "distortion_l2")


def _run_attack(
    attack: AttackFn,
    obs: np.ndarray,
    t: int | np.ndarray,
    device: torch.device,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Perturb a batch ``obs`` (N, ...) at times ``t``; return it and the per-sample records.

    :param attack: callable ``attack(obs_tensor, t=...) -> tensor``.
    :param obs: clean observation batch.
    :param t: int or (N,) array of episode step indices.
    :param device: torch device of the attack's policy.
    :param rows: (N,) bool mask of the samples to attack (None = all); the attack sees only those
        rows (and their ``t``), the others pass through unchanged.
    """
    obs = np.asarray(obs)
    dtype = obs.dtype if np.issubdtype(obs.dtype, np.floating) else np.float32
    adv = obs.astype(dtype, copy=True)
    every = rows is None or bool(np.all(rows))
    if every or np.any(rows):
        sub = obs if every else obs[rows]
        x = torch.as_tensor(sub.astype(np.float32, copy=False), device=device)
        if isinstance(t, int | np.integer):
            t_arg: int | torch.Tensor = int(t)
        else:
            t_sub = np.asarray(t) if every else np.asarray(t)[rows]
            t_arg = torch.as_tensor(t_sub, device=device)
        out = attack(x, t=t_arg).detach().cpu().numpy().astype(dtype, copy=False).reshape(sub.shape)
        if every:
            adv = out.copy()
        else:
            adv[rows] = out
    return adv, observation_records(obs, adv)


def observation_records(obs: np.ndarray, adv: np.ndarray) -> dict[str, np.ndarray]:
    """The per-sample info records of a clean batch ``obs`` and the batch ``adv`` fed instead.

    :param obs: clean observations (N, ...).
    :param adv: perturbed observations, same shape.
    """
    n = obs.shape[0]
    diff = (adv.astype(np.float64) - obs.astype(np.float64)).reshape(n, -1)
    return {
        "clean_obs": obs.copy(),
        "perturbed_obs": adv.copy(),
        "distortion_linf": np.abs(diff).max(axis=1) if diff.shape[1] else np.zeros(n),
        "distortion_l2": np.linalg.norm(diff, axis=1),
    }


def _device_of(attack: AttackFn, device: torch.device | str | None) -> torch.device:
    """Explicit ``device``, else the attack's ``device`` attribute, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device(getattr(attack, "device", "cpu"))


class AttackedObservation(gym.ObservationWrapper):
    """Single-env wrapper: the agent sees ``attack(obs, t)`` instead of ``obs``.

    :param env: a gymnasium env with array observations.
    :param attack: callable ``attack(obs_batch, t=step_index) -> perturbed batch`` (see
        ``rlkit.attacks.make_attack``).
    :param device: torch device for the observation tensor (default: the attack's device or CPU).
    """

    def __init__(
        self, env: gym.Env, attack: AttackFn, device: torch.device | str | None = None
    ) -> None:
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

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
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

    :param env: a ``gymnasium.vector.VectorEnv`` (e.g. ``SyncVectorEnv``) with array observations.
    :param attack: callable ``attack(obs_batch, t=(N,) tensor) -> perturbed batch``.
    :param device: torch device for the observation tensor (default: the attack's device or CPU).
    :param single_episode: evaluation mode. Each sub-env is attacked during the first episode after
        ``reset()`` only: the observation returned by the step that ends it (the final
        observation, or for ``SAME_STEP`` the first of the next episode) and every later
        one pass through unattacked (``_key`` masks False) until that sub-env is reset
        again. The attack is called on the batch of sub-envs still in their episode, so a
        run of unequal-length episodes makes exactly the calls of a loop that drops
        finished episodes from its batch. :attr:`active` tells which sub-envs those are.
    :param fused: for ``Dict`` observations of pixels plus states
        (:mod:`rlkit.attacks.fused`): the attack perturbs the image, the states are the policy's
        context, ``info`` records the images and the returned observations are dicts.

    Per-env step counters restart at 0 on each sub-env's reset observation: for
    ``AutoresetMode.NEXT_STEP`` (gymnasium's default) that is the step *after* a done step, for
    ``SAME_STEP`` the done step itself, and for ``DISABLED`` a ``reset(options={"reset_mask":
    ...})``. A masked reset attacks only the sub-envs it resets; the others keep the perturbed
    observation they were last given.
    """

    def __init__(
        self,
        env: VectorEnv,
        attack: AttackFn,
        device: torch.device | str | None = None,
        single_episode: bool = False,
        fused: FusedContext | None = None,
    ) -> None:
        """Wrap vector env ``env`` with ``attack`` running on ``device``."""
        super().__init__(env)
        self.attack = attack
        self.fused = fused
        self.device = _device_of(attack, device)
        self.single_episode = bool(single_episode)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        self.autoreset_mode = AutoresetMode(mode) if isinstance(mode, str) else mode
        self.step_index = np.zeros(self.num_envs, dtype=np.int64)
        self._prev_done = np.zeros(self.num_envs, dtype=bool)
        self._finished = np.zeros(self.num_envs, dtype=bool)
        self._last_obs: np.ndarray | None = None

    @property
    def active(self) -> np.ndarray:
        """(N,) bool: sub-envs that are attacked (``single_episode``: still in their episode)."""
        return ~self._finished

    def feed_context(self, rows: np.ndarray) -> None:
        """Before the policy is called on the sub-envs ``rows``: give it their context (the
        states of fused observations; nothing otherwise).

        :param rows: (N,) bool mask of the sub-envs in the policy's next batch.
        """
        if self.fused is not None and rows.any():
            self.fused.feed(rows, self.device)

    def _image(self, obs: Any) -> Any:
        """What the attack perturbs: ``obs``, or the image batch of fused observations."""
        return obs if self.fused is None else self.fused.split(obs)

    def _out(self, obs: Any, adv: np.ndarray) -> Any:
        """The observation returned: ``adv``, or ``obs`` with its image replaced (fused)."""
        return adv if self.fused is None else self.fused.join(obs, adv)

    def _perturb(
        self, obs: Any, info: dict[str, Any], rows: np.ndarray
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Attack the sub-envs ``rows`` of batch ``obs`` and add the per-env records to ``info``."""
        self.feed_context(rows)
        adv, records = _run_attack(self.attack, obs, self.step_index.copy(), self.device, rows)
        info = dict(info)
        for key, value in records.items():
            info[key] = value
            info[f"_{key}"] = rows.copy()
        return adv, info

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset (all envs, or those in ``options["reset_mask"]``) with ``seed``; attack obs."""
        mask = None if options is None else options.get("reset_mask")  # the inner env pops it
        obs, info = self.env.reset(seed=seed, options=None if options is None else dict(options))
        if mask is None or self._last_obs is None:
            rows = np.ones(self.num_envs, dtype=bool)
        else:
            rows = np.asarray(mask, dtype=bool)
        self.step_index[rows] = 0
        self._prev_done[rows] = False
        self._finished[rows] = False
        adv, info = self._perturb(self._image(obs), info, rows)
        if not rows.all():
            adv[~rows] = self._last_obs[~rows]
            info["perturbed_obs"][~rows] = adv[~rows]
        self._last_obs = adv.copy()
        return self._out(obs, adv), info

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
        if self.single_episode:
            self._finished = self._finished | done
        adv, info = self._perturb(self._image(obs), info, ~self._finished)
        self._last_obs = adv.copy()
        return self._out(obs, adv), reward, terminated, truncated, info
