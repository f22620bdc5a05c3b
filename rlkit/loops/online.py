"""rlkit's online loop for native agents: act, store in the replay, update when the agent says.

Resuming is exact: a checkpoint holds the agent, the replay (appended chunks), every RNG state
and the counters, and the env is restored by resetting it with the current episode's seed and
replaying the episode's actions from the buffer (envs are deterministic given seed and actions).
So ``train N; resume to 2N`` gives the same metrics and weights as ``train 2N``.

Observations are arrays or, for fused envs (Adroit's pixels + hand state), dicts of arrays: the
agent acts on :func:`rlkit.observations.batch_of_one` of it and the replay stores it as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.agent import UpdateSchedule, build_agent
from rlkit.config import ExperimentConfig
from rlkit.envs import make_env
from rlkit.io import load_torch, save_torch
from rlkit.loops.adversarial import LiveAttack
from rlkit.loops.common import Schedules, TrainLoop
from rlkit.observations import Observation, as_observation, batch_of_one
from rlkit.registry import DATASETS
from rlkit.replay import ReplayBuffer
from rlkit.seeding import generator_state, set_generator_state

COUNTERS = "counters.pt"


def build_replay(config: ExperimentConfig, env: gym.Env, schedule: UpdateSchedule) -> ReplayBuffer:
    """The ``replay`` data source: a frame-aware buffer sized by ``train.replay_size``.

    :param config: the experiment config.
    :param env: the training env (spaces; ``frame_stack`` attribute for stacked pixels).
    :param schedule: the agent's schedule (n-step horizon and discount).
    """
    frame_stack = int(env_attr(env, "frame_stack", 1) or 1)
    return ReplayBuffer(
        config.train.replay_size,
        env.observation_space,  # type: ignore[arg-type]  # the buffer checks it is a Box
        env.action_space,
        nstep=schedule.nstep,
        gamma=schedule.gamma,
        frame_stack=frame_stack,
    )


def env_attr(env: gym.Env, name: str, default: Any) -> Any:
    """An attribute of ``env`` or of any wrapper inside it (gymnasium 1.x wrappers do not forward).

    :param env: the (wrapped) env.
    :param name: the attribute, e.g. ``frame_stack``.
    :param default: returned when no layer has it.
    """
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return default


class OnlineLoop(TrainLoop):
    """One env, one agent, one data source (a replay buffer by default)."""

    def build(self) -> None:
        """The env, the agent and its data source (the entry's ``data``, default ``replay``)."""
        config = self.config
        self.env = make_env(config.env)
        self.agent = build_agent(
            self.entry, config, self.env.observation_space, self.env.action_space
        )
        self.buffer = DATASETS.get(self.entry.extra.get("data", "replay")).build(
            config, self.env, self.agent.schedule
        )
        self.sampler = np.random.default_rng(config.seed)
        self.episode, self.episode_step, self.episode_return = 0, 0, 0.0
        self.obs: Observation | None = None
        self.live = self._live_attack()

    def _live_attack(self) -> LiveAttack | None:
        """Adversarial training's attack on the agent's live policy (``adversarial`` section)."""
        if self.config.adversarial is None:
            return None
        if self.buffer.frame_stack > 1:
            raise ValueError(
                "adversarial: adversarial training in the online loop needs unstacked "
                f"observations (this env stacks {self.buffer.frame_stack} frames)"
            )
        live = LiveAttack(self.config.adversarial, self.config.seed)
        live.bind(self.agent, self.env)
        return live

    def _observe(self, obs: Observation) -> Observation:
        """The observation the agent sees: attacked by adversarial training when it draws so."""
        if self.live is None:
            return obs
        adv, _ = self.live.perturb(batch_of_one(obs), np.array([self.episode_step]), self.step)
        if isinstance(adv, dict):
            return {key: value[0] for key, value in adv.items()}
        return adv[0]

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Counters and the sampler's RNG into ``counters.pt``; the replay appends its chunks.

        :param folder: the checkpoint folder.
        """
        counters = {
            "episode": self.episode,
            "episode_step": self.episode_step,
            "episode_return": self.episode_return,
        }
        state: dict[str, Any] = {"counters": counters, "sampler": generator_state(self.sampler)}
        if self.live is not None:
            # the observation the agent saw may be perturbed: the env cannot give it back
            state["live"] = {**self.live.state(), "obs": _to_tensors(self.obs)}
        save_torch(folder / COUNTERS, state)
        return {"replay": self.buffer.save(self.run.replay_store)}

    def load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        """Restore counters, sampler and replay (as the checkpoint's manifest describes it).

        :param folder: the checkpoint folder.
        :param meta: its meta.json.
        """
        state = load_torch(folder / COUNTERS)
        counters = state["counters"]
        self.episode, self.episode_step = int(counters["episode"]), int(counters["episode_step"])
        self.episode_return = float(counters["episode_return"])
        set_generator_state(self.sampler, state["sampler"])
        if self.live is not None and "live" in state:
            self.live.load_state(state["live"])
            self.obs = _from_tensors(state["live"]["obs"])
        self.buffer.load(self.run.replay_store, meta["replay"])

    def after_prune(self) -> None:
        """Drop replay chunks that no kept checkpoint references."""
        from rlkit.rundir import read_meta

        manifests = [read_meta(folder)["replay"] for folder in self.run.checkpoint_dirs()]
        ReplayBuffer.prune_store(self.run.replay_store, manifests)

    def train(self, schedules: Schedules) -> None:
        """Step the env, store transitions, update when the agent's schedule says so.

        :param schedules: evaluation/checkpoint schedules.
        """
        config, agent = self.config, self.agent
        obs = self._restore_env()
        while self.step < config.train.total_steps:
            obs = self.obs = self._env_step(obs)
            if agent.schedule.due(self.step):
                batch = self.buffer.sample(agent.schedule.batch_size, self.sampler)
                metrics = agent.update(batch, self.step)
                if self.step % config.train.log_every == 0:
                    speed = {"time/steps_per_s": schedules.steps_per_second(self.step)}
                    self.log.log(self.step, {f"train/{k}": v for k, v in metrics.items()} | speed)
            schedules.tick(self.step, self.periodic_eval, self.checkpoint)

    def close(self) -> None:
        """Close the training env."""
        self.env.close()

    def _episode_seed(self, episode: int) -> int:
        return self.config.seed * 1_000_003 + episode

    def _env_step(self, obs: Observation) -> Observation:
        # step the env with exactly what the replay stores, so a resumed run replays it exactly
        action = np.asarray(
            self.agent.act(batch_of_one(obs), self.step, explore=True)[0],
            dtype=self.env.action_space.dtype,
        )
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        next_obs = as_observation(next_obs)
        if not (terminated or truncated):  # the final observation stays clean (bootstrap)
            next_obs = self._observe(next_obs)
        self.buffer.add(obs, action, float(reward), next_obs, bool(terminated), bool(truncated))
        self.step += 1
        self.episode_step += 1
        self.episode_return += float(reward)
        if terminated or truncated:
            ended = {"episode_return": self.episode_return, "episode_length": self.episode_step}
            self.log.log(self.step, {f"train/{k}": v for k, v in ended.items()})
            self.agent.on_episode_end({**info, **ended})
            self.episode += 1
            self.episode_step, self.episode_return = 0, 0.0
            reset_obs, _ = self.env.reset(seed=self._episode_seed(self.episode))
            next_obs = self._observe(as_observation(reset_obs))
        return next_obs

    def _restore_env(self) -> Observation:
        """Reset with the current episode's seed and replay its recorded actions."""
        obs, _ = self.env.reset(seed=self._episode_seed(self.episode))
        for action in self.buffer.recent_actions(self.episode_step) if self.episode_step else []:
            obs, *_ = self.env.step(action)
        if self.live is not None:
            return self.obs if self.obs is not None else self._observe(as_observation(obs))
        return as_observation(obs)


def _to_tensors(obs: Observation | None) -> Any:
    """An observation as tensors (a dict: entry by entry), for a checkpoint."""
    if isinstance(obs, dict):
        return {key: torch.from_numpy(np.array(value)) for key, value in obs.items()}
    return torch.from_numpy(np.array(obs))


def _from_tensors(saved: Any) -> Observation:
    """What :func:`_to_tensors` saved, back as arrays."""
    if isinstance(saved, dict):
        return {key: value.numpy() for key, value in saved.items()}
    return saved.numpy()
