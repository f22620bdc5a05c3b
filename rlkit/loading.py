"""Load a trained policy: from an rlkit run directory, or from a stable-baselines3 zip."""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.config import ConfigError, EnvConfig, ExperimentConfig, load_config
from rlkit.envs import make_env
from rlkit.io import load_torch
from rlkit.policy import PolicyView
from rlkit.registry import AGENTS
from rlkit.rundir import RunDir, read_meta


@dataclass
class LoadedPolicy:
    """A trained policy ready to evaluate or attack.

    :param env_config: how to build its env.
    :param act: batch policy on raw observations -> env actions.
    :param view: differentiable policy view (raw obs -> pre-squash mean or logits).
    :param config: the run's config (None for a foreign SB3 zip).
    :param eval_env_kwargs: env kwargs for evaluation (e.g. the test split).
    :param seed: base seed of evaluation episodes.
    """

    env_config: EnvConfig
    act: Callable[[np.ndarray], np.ndarray]
    view: PolicyView
    config: ExperimentConfig | None = None
    eval_env_kwargs: dict[str, Any] | None = None
    seed: int = 0

    def make_env(self) -> gym.Env:
        """A fresh evaluation env."""
        return make_env(self.env_config, self.eval_env_kwargs)


def load_run(run_dir: str | Path) -> LoadedPolicy:
    """Load the final model of a run directory (or its latest checkpoint if there is no final).

    :param run_dir: a directory made by ``rlkit train``.
    """
    run = RunDir(run_dir)
    if not run.config_path.is_file():
        raise ConfigError(f"{run.path}: not an rlkit run directory (no config.yaml)")
    config = load_config(run.config_path)
    folder = run.final if (run.final / "meta.json").is_file() else run.latest_checkpoint()
    if folder is None:
        raise ConfigError(f"{run.path}: has no final model or checkpoint yet; train it first")
    meta = read_meta(folder)
    env = make_env(config.env)
    spaces = (env.observation_space, env.action_space)
    env.close()
    entry = AGENTS.get(config.agent.name)
    if meta["kind"] == "sb3":
        from rlkit.agents.sb3 import SB3Agent
        from rlkit.loops.sb3 import load_agent_state

        with warnings.catch_warnings():  # rollout-size advice about the 1-env shell is noise here
            warnings.simplefilter("ignore", UserWarning)
            agent = SB3Agent(entry.extra["algo"], config.agent, spaces=spaces, seed=config.seed)
        load_agent_state(agent, folder, policy_only=True)
        act = lambda obs: agent.act(obs, deterministic=config.eval.deterministic)  # noqa: E731
    else:
        from rlkit.loops.online import build_agent

        agent = build_agent(config, *spaces)
        agent.load_state_dict(load_torch(folder / "state.pt")["agent"], policy_only=True)
        act = lambda obs: agent.act(obs, eval_mode=True)  # noqa: E731
    return LoadedPolicy(config.env, act, agent.policy_view(), config, config.eval.env_kwargs, config.seed)


def sb3_algo_of_zip(path: Path) -> str:
    """Read the algorithm of an SB3 zip from its JSON metadata (no unpickling).

    :param path: the zip file.
    """
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    module = data.get("policy_class", {}).get("__module__", "")
    for algo in ("sac", "td3", "ddpg", "ppo", "a2c", "dqn"):
        if f".{algo}." in module:
            return algo
    raise ConfigError(f"{path}: cannot tell the algorithm from the zip; pass --algo")


def load_sb3_zip(path: str | Path, env_id: str, algo: str | None = None, vecnormalize: str | None = None, seed: int = 0) -> LoadedPolicy:
    """Load a stable-baselines3 model zip trained elsewhere (a trusted file: SB3 zips hold pickles).

    :param path: the model zip.
    :param env_id: gymnasium id or rlkit env name it was trained on.
    :param algo: SB3 algorithm (read from the zip when None).
    :param vecnormalize: VecNormalize statistics file saved with the model (trusted pickle).
    :param seed: first evaluation seed.
    """
    import stable_baselines3
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rlkit.agents.sb3 import SB3Agent, SpacesEnv
    from rlkit.catalog import SB3_ALGOS

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--model {path}: file not found")
    algo = (algo or sb3_algo_of_zip(path)).lower()
    if algo not in SB3_ALGOS:
        raise ConfigError(f"--algo {algo!r}: allowed: {', '.join(SB3_ALGOS)}")
    env_config = EnvConfig(id=env_id)
    from rlkit.catalog import check_env

    check_env(ExperimentConfig(env=env_config, agent={"name": algo}), "--env")
    cls = getattr(stable_baselines3, SB3_ALGOS[algo][0])
    model = cls.load(path, device="cpu")
    mean = var = None
    clip = 10.0
    if vecnormalize:
        env = make_env(env_config)
        stats = VecNormalize.load(vecnormalize, DummyVecEnv([lambda: SpacesEnv(env.observation_space, env.action_space)]))
        mean, var, clip = stats.obs_rms.mean, stats.obs_rms.var, stats.clip_obs
    agent = SB3Agent.from_model(model, mean, var, clip)
    return LoadedPolicy(env_config, lambda obs: agent.act(obs), agent.policy_view(), None, None, seed)
