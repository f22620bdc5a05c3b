"""Clean evaluation: run episodes with a policy, collect returns and the env's episode KPIs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.observations import batch_of_one

EVAL_SEED_OFFSET = 100_000
ActFn = Callable[[np.ndarray], np.ndarray]


def run_episode(env: gym.Env, act: ActFn, seed: int, video: Path | None = None) -> dict[str, Any]:
    """Run one episode.

    :param env: the environment.
    :param act: batch policy: (1, *obs_shape) observations -> (1, *action_shape) actions.
    :param seed: reset seed of the episode.
    :param video: when given, write the episode's ``env.render()`` frames (the reset frame and
        one per step) to this path (``.mp4``, or ``.gif`` without imageio-ffmpeg).
    :return: ``{"return", "length", "kpis"}``; kpis from ``info["episode_kpis"]`` when the env has
        them.
    """
    obs, info = env.reset(seed=seed)
    writer = _video_writer(env, video)
    total, length, done = 0.0, 0, False
    while not done:
        action = act(batch_of_one(obs))[0]
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        length += 1
        done = terminated or truncated
        if writer is not None:
            writer.add(env.render())  # type: ignore[arg-type]
    if writer is not None:
        writer.save()
    kpis = {k: float(v) for k, v in (info.get("episode_kpis") or {}).items()}
    return {"return": total, "length": length, "kpis": kpis}


def summarize(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean/std of returns and mean KPIs over episodes.

    :param episodes: outputs of :func:`run_episode`.
    """
    returns = np.array([e["return"] for e in episodes], dtype=float)
    kpi_names = sorted({k for e in episodes for k in e["kpis"]})
    return {
        "episodes": len(episodes),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "length_mean": float(np.mean([e["length"] for e in episodes])),
        "kpis": {
            k: float(np.mean([e["kpis"][k] for e in episodes if k in e["kpis"]])) for k in kpi_names
        },
        "per_episode": episodes,
    }


def evaluate(
    env: gym.Env, act: ActFn, episodes: int, seed: int, video: Path | None = None
) -> dict[str, Any]:
    """Run ``episodes`` episodes with seeds ``seed, seed+1, ...`` and summarise them.

    :param env: the environment (reset with each seed).
    :param act: batch policy.
    :param episodes: number of episodes.
    :param seed: first episode seed.
    :param video: when given, the first episode is recorded there (see :func:`run_episode`).
    """
    return summarize(
        [run_episode(env, act, seed + i, video if i == 0 else None) for i in range(episodes)]
    )


def _video_writer(env: gym.Env, video: Path | None) -> Any:
    """A video writer holding the reset frame, or None when not recording."""
    if video is None:
        return None
    from rlkit.envs.pixels import VideoWriter

    writer = VideoWriter(video)
    writer.add(env.render())  # type: ignore[arg-type]
    return writer


def random_observations(env: gym.Env, count: int, seed: int = 0) -> np.ndarray:
    """Observations visited under uniformly random actions (resetting at episode ends).

    Handy for comparing policies on states an env actually produces.

    :param env: the environment.
    :param count: observations to collect.
    :param seed: seed of the first reset and of the action sampler.
    """
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    found = []
    for _ in range(count):
        found.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    return np.asarray(found, dtype=np.float32)
