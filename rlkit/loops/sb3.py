"""Train a stable-baselines3 agent inside an rlkit run directory (metrics, checkpoints, resume)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from rlkit.agents.sb3 import SB3Agent
from rlkit.agents.sb3_vec import GymnasiumVecEnv
from rlkit.config import ExperimentConfig
from rlkit.envs import make_env
from rlkit.io import load_arrays, load_torch, save_arrays, save_torch
from rlkit.registry import AGENTS, ENVS, resolve
from rlkit.rundir import MetricsLog, RunDir, read_meta
from rlkit.seeding import rng_state, seed_everything, set_rng_state
from rlkit.train import TrainContext, periodic_eval, write_final


class _MetricsWriter(KVWriter):
    """Routes SB3's logger (losses, rollout returns, fps) into rlkit's metrics log."""

    def __init__(self, log: MetricsLog) -> None:
        self.log = log

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        numeric = {k: v for k, v in key_values.items() if isinstance(v, int | float | np.number) and not isinstance(v, bool)}
        if numeric:
            self.log.log(step, numeric)

    def close(self) -> None:
        pass


class _Hooks(BaseCallback):
    def __init__(self, ctx: TrainContext, evaluate_fn: Any, checkpoint_fn: Any) -> None:
        super().__init__()
        self.ctx, self.evaluate_fn, self.checkpoint_fn = ctx, evaluate_fn, checkpoint_fn

    def _on_step(self) -> bool:
        self.ctx.show(self.model.num_timesteps)
        return True

    def _on_rollout_start(self) -> None:
        # SB3 calls on_step before storing the step's transition and training on it; at the
        # start of the next rollout both are done, so a checkpoint here is consistent.
        self.ctx.tick(self.model.num_timesteps, self.evaluate_fn, self.checkpoint_fn)


def make_training_env(config: ExperimentConfig) -> VecEnv:
    """The SB3 VecEnv for training, optionally wrapped in VecNormalize (observations only).

    Envs registered with a native batched vector env (the grid) use it when n_envs > 1 and no
    per-env wrapper is configured; otherwise n_envs monitored copies step one after another.
    """
    entry = ENVS.get(config.env.id) if config.env.id in ENVS else None
    vector = (entry.extra or {}).get("vector") if entry else None
    plain = config.env.discrete_bins is None and config.env.max_episode_steps is None
    if vector and plain and config.env.n_envs > 1:
        venv = GymnasiumVecEnv(resolve(vector)(config.env.n_envs, **config.env.kwargs))
        venv.seed(config.seed)
    else:
        venv = make_vec_env(lambda: make_env(config.env), n_envs=config.env.n_envs, seed=config.seed)
    if config.env.normalize_obs:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False)
    return venv


def algo_of(config: ExperimentConfig) -> str:
    """SB3 class name of the configured agent."""
    return AGENTS.get(config.agent.name).extra["algo"]


def save_agent(agent: SB3Agent, folder: Path, with_buffer: bool) -> None:
    """Write ``state.pt`` (weights-only torch) and ``arrays.npz`` for ``agent`` into ``folder``."""
    state, arrays = agent.state_dict(with_buffer=with_buffer)
    state["rng"] = rng_state()
    save_torch(folder / "state.pt", state)
    save_arrays(folder / "arrays.npz", arrays)


def load_agent_state(agent: SB3Agent, folder: Path, policy_only: bool = False) -> dict[str, Any]:
    """Restore ``agent`` from a checkpoint or final folder; returns the torch state."""
    read_meta(folder)
    state = load_torch(folder / "state.pt")
    agent.load_state_dict(state, load_arrays(folder / "arrays.npz"), policy_only=policy_only)
    return state


def save_final_sb3(agent: SB3Agent, folder: Path) -> None:
    """The final model: weights-only state (no buffer) plus an SB3 zip for other tools."""
    save_agent(agent, folder, with_buffer=False)
    agent.model.save(folder / "sb3_model.zip", exclude=["env", "replay_buffer"])


def train_sb3(config: ExperimentConfig, run: RunDir, resume: Path | None) -> SB3Agent:
    """Train (or resume) an SB3 agent; writes checkpoints, ``final/`` and ``eval.json``.

    :param config: the resolved config.
    :param run: the run directory.
    :param resume: checkpoint folder to resume from, or None.
    """
    seed_everything(config.seed)
    venv = make_training_env(config)
    agent = SB3Agent(algo_of(config), config.agent, env=venv, seed=config.seed, device=config.train.device, total_steps=config.train.total_steps)
    log = MetricsLog(run, tensorboard=config.run.tensorboard)
    step = 0
    if resume is not None:
        state = load_agent_state(agent, resume)
        set_rng_state(state["rng"])
        step = agent.model.num_timesteps
    elif config.agent.init_from:
        load_agent_state(agent, Path(config.agent.init_from) / "final", policy_only=True)
    log.truncate(step)
    agent.model.set_logger(Logger(folder=None, output_formats=[_MetricsWriter(log)]))
    ctx = TrainContext(config, run, log)

    def checkpoint(at: int) -> None:
        tmp = run.begin_checkpoint(at)
        save_agent(agent, tmp, with_buffer=True)
        run.commit_checkpoint(tmp, at, {"kind": "sb3", "algo": agent.algo}, config.train.keep_checkpoints)

    eval_env_factory = lambda: make_env(config.env, config.eval.env_kwargs)  # noqa: E731
    act = lambda obs: agent.act(obs, deterministic=config.eval.deterministic)  # noqa: E731
    ctx.start(step)
    try:
        remaining = config.train.total_steps - step
        evaluate_fn = periodic_eval(config, act, eval_env_factory)
        if remaining > 0:
            agent.model.learn(remaining, callback=_Hooks(ctx, evaluate_fn, checkpoint), reset_num_timesteps=False)
        final_step = agent.model.num_timesteps
        ctx.tick(final_step, evaluate_fn, checkpoint)  # what fell due in the last rollout
        if not run.latest_checkpoint() or read_meta(run.latest_checkpoint())["step"] != final_step:
            checkpoint(final_step)
        write_final(
            run,
            config,
            lambda folder: save_final_sb3(agent, folder),
            {"kind": "sb3", "algo": agent.algo, "step": final_step},
            act,
            eval_env_factory,
        )
    finally:
        ctx.close()
        venv.close()
    return agent
