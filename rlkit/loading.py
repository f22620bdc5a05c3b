"""Load a trained policy: from an rlkit run directory (through its agent's registry entry), or
from a stable-baselines3 zip trained elsewhere."""

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

from rlkit.agent import build_agent
from rlkit.config import ConfigError, EnvConfig, ExperimentConfig, load_config
from rlkit.envs import make_env
from rlkit.loops.common import READ_ERRORS
from rlkit.policy import PolicyView
from rlkit.registry import AGENTS
from rlkit.rundir import RunDir, read_meta


@dataclass
class LoadedPolicy:
    """A trained policy ready to evaluate or attack.

    :param env_config: how to build its env.
    :param act: batch policy on raw observations -> env actions.
    :param view: differentiable policy view (raw obs -> pre-squash mean or logits).
    :param config: the run's config (None for a foreign SB3 zip given without --config).
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


def _spaces(env_config: EnvConfig) -> tuple[gym.Space, gym.Space]:
    env = make_env(env_config)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def load_run(run_dir: str | Path, checkpoint: str | None = None) -> LoadedPolicy:
    """Load the final model of a run directory (or its latest checkpoint if there is no final).

    :param run_dir: a directory made by ``rlkit train``.
    :param checkpoint: load this checkpoint instead, a folder name under ``RUN/checkpoints``
        such as ``"step_000050000"``.
    :raises ConfigError: not a run, nothing trained yet, no such checkpoint, or a damaged model.
    """
    run = RunDir(run_dir)
    if not run.config_path.is_file():
        raise ConfigError(f"{run.path}: not an rlkit run directory (no config.yaml)")
    config = load_config(run.config_path)
    folder = run.final if run.final.is_dir() else run.latest_checkpoint()
    if checkpoint is not None:
        folder = run.checkpoints / checkpoint
        if not (folder / "meta.json").is_file():
            found = ", ".join(p.name for p in run.checkpoint_dirs()) or "none"
            raise ConfigError(f"{run.path}: no checkpoint {checkpoint!r} (checkpoints: {found})")
    if folder is None:
        raise ConfigError(f"{run.path}: has no final model or checkpoint yet; train it first")
    agent = build_agent(AGENTS.get(config.agent.name), config, *_spaces(config.env))
    try:
        read_meta(folder)
        agent.load(folder, policy_only=True)
    except READ_ERRORS as err:
        raise ConfigError(
            f"{folder}: the model cannot be read ({type(err).__name__}: {err}); "
            "train the run again (re-running `rlkit train` with --fresh) or restore the folder"
        ) from None
    explore = not config.eval.deterministic
    return LoadedPolicy(
        config.env,
        lambda obs: agent.act(obs, 0, explore),
        agent.policy_view(),
        config,
        config.eval.env_kwargs,
        config.seed,
    )


# ---------------------------------------------------------------------------------------------
# stable-baselines3 zips trained elsewhere


def read_zip_data(path: Path) -> dict[str, Any]:
    """The JSON ``data`` member of an SB3 zip (read without unpickling anything).

    :param path: the model zip.
    :raises ConfigError: not a zip, or not an SB3 model zip.
    """
    if not zipfile.is_zipfile(path):
        raise ConfigError(
            f"--model {path}: not a stable-baselines3 model (the file is not a zip archive)"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data"))
    except (KeyError, ValueError, zipfile.BadZipFile, OSError) as err:
        raise ConfigError(
            f"--model {path}: not a stable-baselines3 model zip (no readable 'data' member: {err})"
        ) from None
    if not isinstance(data, dict) or "policy_class" not in data:
        raise ConfigError(
            f"--model {path}: not a stable-baselines3 model zip ('data' has no policy_class)"
        )
    return data


def sb3_algo_of_zip(path: Path) -> str:
    """The algorithm of an SB3 zip, from its JSON metadata (no unpickling).

    PPO and A2C share a policy class; PPO saves ``n_epochs`` and ``clip_range``, A2C does not.
    TD3 and DDPG share one too; DDPG is TD3 with ``policy_delay`` 1 and target noise clipped to 0.

    :param path: the zip file.
    :raises ConfigError: when the zip does not say (pass ``--algo``).
    """
    data = read_zip_data(Path(path))
    module = data.get("policy_class", {}).get("__module__", "")
    if ".sac." in module:
        return "sac"
    if ".td3." in module:
        ddpg = data.get("policy_delay") == 1 and data.get("target_noise_clip") == 0
        return "ddpg" if ddpg else "td3"
    for algo in ("dqn", "ppo", "a2c"):
        if f".{algo}." in module:
            return algo
    if "n_epochs" in data or "clip_range" in data:
        return "ppo"
    if "ent_coef" in data and "gae_lambda" in data:
        return "a2c"
    raise ConfigError(f"--model {path}: cannot tell the algorithm from the zip; pass --algo")


def _saved_obs_shape(data: dict[str, Any]) -> tuple[int, ...] | None:
    space = data.get("observation_space")
    shape = space.get("_shape") if isinstance(space, dict) else None
    return tuple(shape) if isinstance(shape, list) else None


def env_config_for_model(
    env_id: str | None, config_path: str | None, overrides: list[str], algo: str
) -> tuple[EnvConfig, ExperimentConfig | None]:
    """The env a foreign model is evaluated on: ``--env ID``, or a config file's ``env`` section.

    :param env_id: ``--env`` (a gymnasium id or a registered name).
    :param config_path: ``--config`` (an experiment config; its ``agent`` section may be omitted).
    :param overrides: ``key.sub=value`` overrides of the config.
    :param algo: the model's algorithm (the agent name when the config has none).
    """
    from rlkit.catalog import check_env
    from rlkit.config import load_raw

    if config_path is not None:
        raw = load_raw(Path(config_path))
        raw.setdefault("agent", {"name": algo})
        config = load_config(config_path, overrides, data=raw)
        return config.env, config
    if not env_id:
        raise ConfigError(
            "--model needs --env ENV_ID or --config FILE (the env the model was trained on)"
        )
    env_config = EnvConfig(id=env_id)
    check_env(ExperimentConfig(env=env_config, agent={"name": algo}), "--env")
    return env_config, None


def load_sb3_zip(
    path: str | Path,
    env_id: str | None = None,
    algo: str | None = None,
    vecnormalize: str | None = None,
    seed: int = 0,
    config_path: str | None = None,
    overrides: list[str] | None = None,
) -> LoadedPolicy:
    """Load a stable-baselines3 model zip trained elsewhere (a trusted file: SB3 zips hold pickles).

    SB3 1.x zips load too: the env's spaces are passed to SB3 so that old pickled spaces need
    not be unpickled, after checking the saved observation shape against the env's.

    :param path: the model zip.
    :param env_id: gymnasium id or rlkit env name it was trained on (or use ``config_path``).
    :param algo: SB3 algorithm (read from the zip when None).
    :param vecnormalize: VecNormalize statistics file saved with the model (trusted pickle).
    :param seed: first evaluation seed (a config's own ``seed`` wins).
    :param config_path: an experiment config describing the env (kwargs, bins, wrappers).
    :param overrides: ``key.sub=value`` overrides of that config.
    """
    from rlkit.catalog import SB3_ALGOS

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--model {path}: file not found")
    data = read_zip_data(path)
    algo = (algo or sb3_algo_of_zip(path)).lower()
    if algo not in SB3_ALGOS:
        raise ConfigError(f"--algo {algo!r}: allowed: {', '.join(SB3_ALGOS)}")
    env_config, config = env_config_for_model(env_id, config_path, overrides or [], algo)
    observation_space, action_space = _spaces(env_config)
    saved = _saved_obs_shape(data)
    if saved is not None and saved != observation_space.shape:
        raise ConfigError(
            f"--model {path}: the model observes shape {saved}, env {env_config.id!r} gives "
            f"{observation_space.shape}; evaluate it on the env it was trained on"
        )
    agent = _sb3_agent(path, algo, observation_space, action_space, vecnormalize)
    view = agent.policy_view()
    if config is not None:
        seed = config.seed
        return LoadedPolicy(
            env_config, lambda obs: agent.act(obs), view, config, config.eval.env_kwargs, seed
        )
    return LoadedPolicy(env_config, lambda obs: agent.act(obs), view, None, None, seed)


def _sb3_agent(
    path: Path,
    algo: str,
    observation_space: gym.Space,
    action_space: gym.Space,
    vecnormalize: str | None,
) -> Any:
    import stable_baselines3
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from rlkit.agents.sb3 import SB3Agent, SpacesEnv
    from rlkit.catalog import SB3_ALGOS

    cls = getattr(stable_baselines3, SB3_ALGOS[algo][0])
    custom = {
        "observation_space": observation_space,
        "action_space": action_space,
        "lr_schedule": _constant,
        "clip_range": _constant,
    }
    try:
        with warnings.catch_warnings():  # SB3 1.x zips: pickled-schedule warnings are noise here
            warnings.simplefilter("ignore")
            model = cls.load(path, device="cpu", custom_objects=custom)
    except (ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as err:
        raise ConfigError(
            f"--model {path}: cannot be loaded as {algo.upper()} ({type(err).__name__}: {err}); "
            "check --algo"
        ) from None
    mean = var = None
    clip = 10.0
    if vecnormalize:
        stats = VecNormalize.load(
            vecnormalize, DummyVecEnv([lambda: SpacesEnv(observation_space, action_space)])
        )
        rms: Any = stats.obs_rms
        mean, var, clip = rms.mean, rms.var, stats.clip_obs
    return SB3Agent.from_model(model, mean, var, clip)


def _constant(_: float) -> float:
    return 0.0
