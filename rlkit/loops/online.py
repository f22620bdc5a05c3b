"""rlkit's online training loop for native agents (``act`` + ``update(batch)``).

Resuming is exact: a checkpoint holds the agent, the replay buffer, every RNG state and the
counters, and the env is restored by resetting it with the current episode's seed and replaying
the episode's actions from the buffer (envs are deterministic given seed and actions). So
``train N; resume to 2N`` gives the same metrics and weights as ``train 2N``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.config import ExperimentConfig
from rlkit.envs import make_env
from rlkit.io import load_arrays, load_torch, save_arrays, save_torch
from rlkit.registry import AGENTS
from rlkit.replay import ReplayBuffer
from rlkit.rundir import MetricsLog, RunDir, read_meta
from rlkit.seeding import (
    generator_state,
    rng_state,
    seed_everything,
    set_generator_state,
    set_rng_state,
)
from rlkit.train import TrainContext, periodic_eval, write_final


def build_agent(config: ExperimentConfig, observation_space: gym.Space, action_space: gym.Space) -> Any:
    """Construct the configured native agent for the given spaces."""
    kwargs = dict(config.agent.kwargs)
    if config.agent.learning_rate is not None:
        kwargs["lr"] = config.agent.learning_rate
    if config.agent.net_arch:
        kwargs["hidden_dim"] = config.agent.net_arch[0]
    entry = AGENTS.get(config.agent.name)
    return entry.build(observation_space, action_space, device=config.train.device, **kwargs)


class _State:
    """Loop counters (checkpointed)."""

    def __init__(self) -> None:
        self.step = 0
        self.episode = 0
        self.episode_step = 0
        self.episode_return = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _episode_seed(config: ExperimentConfig, episode: int) -> int:
    return config.seed * 1_000_003 + episode


def save_native(folder: Path, agent: Any, buffer: ReplayBuffer | None, counters: dict[str, Any], rng: np.random.Generator | None) -> None:
    """Write a native agent's ``state.pt`` and ``arrays.npz`` into ``folder``."""
    state = {"agent": agent.state_dict(), "rng": rng_state(), "counters": counters}
    if rng is not None:
        state["sampler_rng"] = generator_state(rng)
    save_torch(folder / "state.pt", state)
    save_arrays(folder / "arrays.npz", buffer.state_arrays() if buffer is not None else {})


def train_online(config: ExperimentConfig, run: RunDir, resume: Path | None) -> Any:
    """Train (or resume) a native agent online; writes checkpoints, ``final/`` and ``eval.json``.

    :param config: the resolved config.
    :param run: the run directory.
    :param resume: checkpoint folder to resume from, or None.
    """
    if config.env.n_envs != 1:
        raise ValueError("the native online loop steps one env (set env.n_envs: 1)")
    seed_everything(config.seed)
    env = make_env(config.env)
    agent = build_agent(config, env.observation_space, env.action_space)
    buffer = ReplayBuffer(config.train.replay_size, env.observation_space.shape, env.action_space.shape)
    sampler = np.random.default_rng(config.seed)
    counters = _State()
    if resume is not None:
        read_meta(resume)
        state = load_torch(resume / "state.pt")
        agent.load_state_dict(state["agent"])
        buffer.load_state_arrays(load_arrays(resume / "arrays.npz"))
        vars(counters).update(state["counters"])
        set_generator_state(sampler, state["sampler_rng"])
        set_rng_state(state["rng"])
    elif config.agent.init_from:
        agent.load_state_dict(load_torch(Path(config.agent.init_from) / "final" / "state.pt")["agent"])
    obs = _restore_env(env, config, counters, buffer)
    log = MetricsLog(run, tensorboard=config.run.tensorboard)
    log.truncate(counters.step)
    ctx = TrainContext(config, run, log)

    def checkpoint(at: int) -> None:
        tmp = run.begin_checkpoint(at)
        save_native(tmp, agent, buffer, counters.as_dict(), sampler)
        run.commit_checkpoint(tmp, at, {"kind": "native", "agent": config.agent.name}, config.train.keep_checkpoints)

    eval_env_factory = lambda: make_env(config.env, config.eval.env_kwargs)  # noqa: E731
    evaluate_fn = periodic_eval(config, lambda o: agent.act(o, eval_mode=True), eval_env_factory)
    ctx.start(counters.step)
    try:
        while counters.step < config.train.total_steps:
            obs = _env_step(env, agent, buffer, obs, counters, config, log)
            if counters.step >= agent.num_expl_steps and counters.step % agent.update_every_steps == 0:
                metrics = agent.update(buffer.sample(agent.batch_size, sampler, agent.nstep, agent.discount), counters.step)
                if counters.step % config.train.log_every == 0:
                    log.log(counters.step, {f"train/{k}": v for k, v in metrics.items()} | {"time/steps_per_s": ctx.steps_per_second(counters.step)})
            ctx.tick(counters.step, evaluate_fn, checkpoint)
        if run.latest_checkpoint() is None or read_meta(run.latest_checkpoint())["step"] != counters.step:
            checkpoint(counters.step)
        write_final(
            run,
            config,
            lambda folder: save_native(folder, agent, None, counters.as_dict(), None),
            {"kind": "native", "agent": config.agent.name, "step": counters.step},
            lambda o: agent.act(o, eval_mode=True),
            eval_env_factory,
        )
    finally:
        ctx.close()
        env.close()
    return agent


def _env_step(env: gym.Env, agent: Any, buffer: ReplayBuffer, obs: np.ndarray, counters: _State, config: ExperimentConfig, log: MetricsLog) -> np.ndarray:
    action = agent.act(obs[None], counters.step, eval_mode=False)[0]
    next_obs, reward, terminated, truncated, _ = env.step(action)
    buffer.add(obs, action, float(reward), next_obs, bool(terminated), bool(truncated))
    counters.step += 1
    counters.episode_step += 1
    counters.episode_return += float(reward)
    if terminated or truncated:
        log.log(counters.step, {"train/episode_return": counters.episode_return, "train/episode_length": counters.episode_step})
        counters.episode += 1
        counters.episode_step, counters.episode_return = 0, 0.0
        next_obs, _ = env.reset(seed=_episode_seed(config, counters.episode))
    return np.asarray(next_obs, dtype=np.float32)


def _restore_env(env: gym.Env, config: ExperimentConfig, counters: _State, buffer: ReplayBuffer) -> np.ndarray:
    """Reset with the current episode's seed and replay its recorded actions."""
    obs, _ = env.reset(seed=_episode_seed(config, counters.episode))
    for action in buffer.recent_actions(counters.episode_step) if counters.episode_step else []:
        obs, *_ = env.step(action)
    return np.asarray(obs, dtype=np.float32)
