"""Load the bifurcation paper's released victims (stable-baselines3 1.8 zips) in
stable-baselines3 2.x.

The authors (RMC-AIvsAI/A-Novel-Bifurcation-Method-for-Observation-Perturbation-Attacks-on-
Reinforcement-Learning-Agents) saved their agents with SB3 1.8 under gym 0.21: the pickled gym
spaces and the cloudpickled schedules in the zips do not load under gymnasium / SB3 2.x, so they are
replaced here by ``custom_objects``: the observation space ``Box(0, 1, (31,))``, the action space
``Discrete(20)`` (their ``MultiDiscrete([20])``: the same 20-logit policy head) or
``Box(0, 1, (1,))``, and constant schedules (unused for inference). Their files have no licence:
take a path to a local copy, never bundle them. The zips are pickles: load trusted files only.

Example (the 20-bin PPO victim in the paper's env)::

    from rlkit.envs.citylearn import make_citylearn_env
    from rlkit.envs.citylearn.authors import load_authors_model
    env = make_citylearn_env(action="discrete", bins=20)
    model = load_authors_model("default_PPO_..._20_bins_500.zip", "discrete")
    obs, _ = env.reset()
    action, _ = model.predict(obs, deterministic=True)
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

__all__ = ["authors_custom_objects", "infer_algorithm", "load_authors_model"]


def infer_algorithm(path: str | os.PathLike[str]) -> str:
    """The SB3 algorithm of a saved zip, from the parameters its ``data`` file lists.

    :param path: the SB3 zip.
    :return: ``"sac"``, ``"td3"``, ``"ppo"`` or ``"a2c"``.
    """
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    if "target_entropy" in data or ("ent_coef" in data and "tau" in data):
        return "sac"
    if "target_policy_noise" in data:
        return "td3"
    if "clip_range" in data:
        return "ppo"
    if "n_steps" in data:
        return "a2c"
    raise ValueError(f"{path}: cannot tell the SB3 algorithm from its saved parameters; pass algo=")


def authors_custom_objects(
    action: Literal["discrete", "continuous"], bins: int = 20, n_features: int = 31
) -> dict[str, Any]:
    """The ``custom_objects`` that replace the zips' gym 0.21 spaces and SB3 1.8 schedules.

    :param action: ``"discrete"`` (``Discrete(bins)``) or ``"continuous"`` (``Box(0, 1, (1,))``).
    :param bins: number of discrete battery bins (20 for the paper's PPO).
    :param n_features: observation size (31 for Building_6).
    """
    if action == "discrete":
        action_space: spaces.Space = spaces.Discrete(bins)
    elif action == "continuous":
        action_space = spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
    else:
        raise ValueError(f"action must be 'discrete' or 'continuous', got {action!r}")
    return {
        "observation_space": spaces.Box(0.0, 1.0, (n_features,), dtype=np.float32),
        "action_space": action_space,
        "lr_schedule": lambda _progress: 0.0,
        "clip_range": lambda _progress: 0.2,
    }


def load_authors_model(
    path: str | os.PathLike[str],
    action: Literal["discrete", "continuous"],
    *,
    algo: str | None = None,
    bins: int = 20,
    n_features: int = 31,
    device: str = "cpu",
) -> Any:
    """Load one of the authors' SB3 1.8 zips as a stable-baselines3 2.x model (for inference).

    :param path: the zip (e.g.
        ``.../default_PPO_citylearn_challenge_2022_phase_2_Building_6_20_bins_500.zip`` or
        ``.../SAC_citylearn_challenge_2022_phase_2_Building_6_default_rwd_MARLISA_hyperparams_500.zip``).
    :param action: ``"discrete"`` for the 20-bin PPO agents, ``"continuous"`` for SAC and PPOc.
    :param algo: ``"ppo"``, ``"sac"``, ``"a2c"`` or ``"td3"``; inferred from the zip when None.
    :param bins: discrete bins (the env's ``bins``).
    :param n_features: observation size.
    :param device: torch device.
    :return: the SB3 model; ``model.predict(obs, deterministic=True)`` gives the env's action.
    """
    from .compat import silence_gym_banner

    silence_gym_banner()
    import stable_baselines3 as sb3

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such model zip: {path}")
    name = (algo or infer_algorithm(path)).lower()
    classes = {"ppo": sb3.PPO, "sac": sb3.SAC, "a2c": sb3.A2C, "td3": sb3.TD3}
    if name not in classes:
        raise ValueError(f"algo must be one of {sorted(classes)}, got {algo!r}")
    with warnings.catch_warnings():
        # the zips pickle numpy 1.23 arrays, which name numpy.core (numpy 2 warns, then loads them)
        warnings.filterwarnings(
            "ignore", message=r"numpy\.core.* is deprecated", category=DeprecationWarning
        )
        return classes[name].load(
            path,
            device=device,
            custom_objects=authors_custom_objects(action, bins=bins, n_features=n_features),
        )
