"""rlkit's offline loop: sample batches from a fixed dataset, update, evaluate in the env.

A step is one gradient update. Everything else is the shared skeleton: periodic evaluation (with
the normalised score when reference returns are known), checkpoints, resume and the final model.
Resuming is exact: the dataset is fixed and the checkpoint holds the agent, every RNG state and
the sampler's generator, so ``train N; resume to 2N`` gives the weights of ``train 2N``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.agent import UpdateSchedule, build_agent
from rlkit.config import ConfigError, DatasetConfig, ExperimentConfig
from rlkit.envs import make_env
from rlkit.io import load_torch, save_torch
from rlkit.loops.common import Schedules, TrainLoop
from rlkit.registry import DATASETS
from rlkit.seeding import generator_state, set_generator_state

SAMPLER_STATE = "sampler.pt"
#: envs whose data the O-DICE authors rescaled by the return range (as IQL did)
RETURN_RANGE_ENVS = ("halfcheetah", "hopper", "walker2d")


def reward_scale(dataset: DatasetConfig, transitions: Any, env_id: str) -> float:
    """The reward factor of ``dataset.reward_scale`` (``auto``: the authors' choice per env).

    :param dataset: the dataset section.
    :param transitions: the loaded :class:`rlkit.datasets.Transitions`.
    :param env_id: the evaluation env (``auto`` looks at its name).
    """
    from rlkit.datasets import reward_scale_return_range

    choice = dataset.reward_scale
    if choice == "auto":
        locomotion = any(name in env_id.lower() for name in RETURN_RANGE_ENVS)
        choice = "return_range" if locomotion else "none"
    if choice == "none":
        return 1.0
    if choice == "return_range":
        return float(reward_scale_return_range(transitions, dataset.max_episode_steps))
    return float(choice)


def build_offline_data(config: ExperimentConfig, env: gym.Env, schedule: UpdateSchedule) -> Any:
    """The ``offline`` data source: ``dataset.path`` loaded, checked against the env's spaces,
    optionally cut to some episodes, rewards scaled.

    :param config: the experiment config (with a ``dataset`` section).
    :param env: an env of the evaluation task (its spaces validate the data).
    :param schedule: the agent's schedule (discount).
    """
    from rlkit.datasets import OfflineDataset, load_dataset

    dataset = config.dataset
    if dataset is None:
        raise ConfigError(f"agent {config.agent.name!r} learns offline: add a 'dataset' section")
    transitions = load_dataset(dataset.path, env.observation_space, env.action_space)
    if dataset.episodes is not None:
        transitions = transitions.select_episodes(dataset.episodes)
    return OfflineDataset(
        transitions,
        gamma=schedule.gamma,
        reward_scale=reward_scale(dataset, transitions, config.env.id),
        zero_rewards=dataset.zero_rewards,
    )


class OfflineLoop(TrainLoop):
    """One agent, one fixed dataset; the env is only used to evaluate."""

    def build(self) -> None:
        """The agent, its data source (the entry's ``data``, default ``offline``) and the
        observation normaliser when ``dataset.normalize_obs``."""
        from rlkit.datasets import observation_stats, reference_scores

        config = self.config
        env = make_env(config.env)
        try:
            self.agent = build_agent(self.entry, config, env.observation_space, env.action_space)
            self.data = DATASETS.get(self.entry.extra.get("data", "offline")).build(
                config, env, self.agent.schedule
            )
        finally:
            env.close()
        transitions = self.data.transitions
        if config.dataset is not None and config.dataset.normalize_obs:
            self.agent.set_obs_normalizer(*observation_stats(transitions))  # type: ignore[attr-defined]
        self.reference = reference_scores(config.env.id, transitions.metadata)
        self.sampler = np.random.default_rng(config.seed)

    def save_state(self, folder: Path) -> dict[str, Any]:
        """The sampler's generator; meta.json records the dataset's size.

        :param folder: the checkpoint folder.
        """
        save_torch(folder / SAMPLER_STATE, {"sampler": generator_state(self.sampler)})
        return {"dataset_transitions": len(self.data)}

    def load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        """Restore the sampler (the agent is already loaded).

        :param folder: the checkpoint folder.
        :param meta: its meta.json.
        """
        if meta.get("dataset_transitions") not in (None, len(self.data)):
            raise ConfigError(
                f"{folder}: was trained on {meta['dataset_transitions']} transitions, the "
                f"dataset now has {len(self.data)}; use --fresh to start over"
            )
        set_generator_state(self.sampler, load_torch(folder / SAMPLER_STATE)["sampler"])

    def train(self, schedules: Schedules) -> None:
        """Sample, update, log every ``train.log_every`` updates (metrics stay tensors until
        then), evaluate and checkpoint when due.

        :param schedules: evaluation/checkpoint schedules.
        """
        config, agent = self.config, self.agent
        batch_size = agent.schedule.batch_size
        while self.step < config.train.total_steps:
            metrics = agent.update(self.data.sample(batch_size, self.sampler), self.step)
            self.step += 1
            if self.step % config.train.log_every == 0:
                speed = {"time/updates_per_s": schedules.steps_per_second(self.step)}
                self.log.log(self.step, {f"train/{k}": v for k, v in metrics.items()} | speed)
            schedules.tick(self.step, self.periodic_eval, self.checkpoint)

    def describe(self, result: dict[str, Any]) -> dict[str, Any]:
        """Add ``normalized_score`` (100 (R - min) / (max - min)) when reference returns exist.

        :param result: an evaluation summary.
        """
        if self.reference is None:
            return result
        from rlkit.datasets import normalized_score

        returns = np.array([e["return"] for e in result["per_episode"]], dtype=float)
        score = normalized_score(returns, self.reference)
        kpis = {**result["kpis"], "normalized_score": float(np.mean(score))}
        return {**result, "kpis": kpis, "normalized_score_std": float(np.std(score))}
