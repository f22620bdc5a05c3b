"""Train a stable-baselines3 agent inside an rlkit run directory (metrics, checkpoints, resume).

SB3 collects its own rollouts inside ``model.learn``; this loop routes SB3's logger into rlkit's
metrics and runs evaluation and checkpoints from a callback at rollout boundaries.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from rlkit.agent import build_agent
from rlkit.agents.sb3 import SB3Agent
from rlkit.agents.sb3_vec import GymnasiumVecEnv
from rlkit.config import ExperimentConfig
from rlkit.envs import make_env
from rlkit.loops.adversarial import AdversarialVecEnv, LiveAttack
from rlkit.loops.common import Schedules, TrainLoop
from rlkit.metrics import MetricsLog
from rlkit.registry import ENVS, resolve


class _MetricsWriter(KVWriter):
    """Routes SB3's logger (losses, rollout returns, fps) into rlkit's metrics log."""

    def __init__(self, log: MetricsLog) -> None:
        self.log = log

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0
    ) -> None:
        numeric = {
            k: v
            for k, v in key_values.items()
            if isinstance(v, int | float | np.number) and not isinstance(v, bool)
        }
        if numeric:
            self.log.log(step, numeric)

    def close(self) -> None:
        pass


class _Hooks(BaseCallback):
    def __init__(self, loop: SB3Loop, schedules: Schedules) -> None:
        super().__init__()
        self.loop, self.schedules = loop, schedules

    def _on_step(self) -> bool:
        self.schedules.show(self.model.num_timesteps)
        return True

    def _on_rollout_start(self) -> None:
        # SB3 calls on_step before storing the step's transition and training on it; at the
        # start of the next rollout both are done, so a checkpoint here is consistent.
        self.loop.step = self.model.num_timesteps
        self.schedules.tick(self.loop.step, self.loop.periodic_eval, self.loop.checkpoint)


def make_training_env(config: ExperimentConfig, live: LiveAttack | None = None) -> VecEnv:
    """The SB3 VecEnv for training, optionally wrapped in VecNormalize (observations only).

    Envs registered with a native batched vector env (the grid) use it when n_envs > 1 and no
    per-env wrapper is configured; otherwise n_envs monitored copies step one after another.

    :param config: the experiment config.
    :param live: adversarial training's attack (its wrapper goes under VecNormalize).
    """
    entry = ENVS.get(config.env.id) if config.env.id in ENVS else None
    vector = entry.extra.get("vector") if entry else None
    plain = config.env.discrete_bins is None and config.env.max_episode_steps is None
    if vector and plain and config.env.n_envs > 1:
        venv: VecEnv = GymnasiumVecEnv(resolve(vector)(config.env.n_envs, **config.env.kwargs))
        venv.seed(config.seed)
    else:
        venv = make_vec_env(
            lambda: make_env(config.env), n_envs=config.env.n_envs, seed=config.seed
        )
    if live is not None:
        venv = AdversarialVecEnv(venv, live)
    if config.env.normalize_obs:
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False)
    return venv


class SB3Loop(TrainLoop):
    """stable-baselines3's ``learn()`` with rlkit's skeleton around it."""

    agent: SB3Agent

    def build(self) -> None:
        """The training VecEnv and the SB3 agent on it (and adversarial training's attack on
        the agent's live policy)."""
        config = self.config
        live = None
        if config.adversarial is not None:
            live = LiveAttack(config.adversarial, config.seed)
        self.venv = make_training_env(config, live)
        self.agent = build_agent(
            self.entry,
            config,
            self.venv.observation_space,
            self.venv.action_space,
            env=self.venv,
        )  # type: ignore[assignment]
        if live is not None:
            probe = make_env(config.env)
            try:
                live.bind(self.agent, probe)
            finally:
                probe.close()

    def load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        """The step counter lives in the SB3 model (restored with the agent).

        :param folder: the checkpoint folder.
        :param meta: its meta.json.
        """
        self.step = int(self.agent.model.num_timesteps)

    def train(self, schedules: Schedules) -> None:
        """``model.learn`` for the remaining steps, with evaluation/checkpoint hooks.

        :param schedules: evaluation/checkpoint schedules.
        """
        model = self.agent.model
        model.set_logger(Logger(folder=None, output_formats=[_MetricsWriter(self.log)]))
        remaining = self.config.train.total_steps - self.step
        if remaining > 0:
            model.learn(remaining, callback=_Hooks(self, schedules), reset_num_timesteps=False)
        self.step = int(model.num_timesteps)

    def save_final(self, folder: Path) -> None:
        """Weights-only state (no buffer) plus an SB3 zip for other tools.

        :param folder: the temporary final folder.
        """
        self.agent.save(folder, with_buffer=False)
        self.agent.model.save(folder / "sb3_model.zip", exclude=["env", "replay_buffer"])

    def close(self) -> None:
        """Close the training VecEnv."""
        self.venv.close()
