"""The learned adversary's environment (``env.id: adversary``): train an RL adversary against a
frozen victim.

The adversary observes the clean observation of the inner env and acts with one value per feature
its budget lets it touch; the perturbation map (:class:`rlkit.attacks.learned.Perturbation`)
turns that action into the observation the victim sees; the victim acts on it (deterministic);
the adversary's reward is the negative victim reward (the authors' ``neg_reward``) or a chosen
observation feature of the next step (``reward: "feature:net_electricity_consumption"``: more
consumption is better for the adversary). This is the authors' ``AdversaryATLAWrapper``
(``modules/KBMproject/ATLA.py``), kept inside rlkit's budget; see :mod:`rlkit.attacks.learned`.

Example (the authors' setting on their building: scaled sum, calendar masked, 1x their "mean
diff"; a SAC adversary)::

    env:
      id: adversary
      kwargs:
        victim: runs/citylearn/ppo_discrete    # a run directory or an SB3 zip (+ env)
        perturbation: scaled_sum
        eps: 1.0
        mask: [calendar]
    agent: {name: sac, net_arch: [256, 256]}

A trained adversary attacks like any other attack: ``{name: learned, mask: [calendar],
settings: {adversary: RUN_DIR}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rlkit.attacks.learned import Perturbation, PerturbationFields, trace_scale

REWARD_NEGATIVE = "negative"


class InnerEnv(BaseModel):
    """The env the victim acts in (``env`` section fields)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="registered env name or gymnasium id")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="its factory's arguments")
    discrete_bins: int | None = Field(None, ge=2, description="as env.discrete_bins")
    discrete_shared: bool = Field(False, description="as env.discrete_shared")
    max_episode_steps: int | None = Field(None, ge=1, description="as env.max_episode_steps")


class AdversaryEnvConfig(PerturbationFields):
    """Arguments of the ``adversary`` env."""

    victim: str = Field(
        description="the frozen victim: an rlkit run directory or a stable-baselines3 zip "
        "(a trusted file; then give env)"
    )
    victim_algo: str | None = Field(None, description="SB3 algorithm of a victim zip (inferred)")
    env: InnerEnv | None = Field(
        None, description="the env the victim acts in (default: the victim run's env)"
    )
    clip: bool = Field(True, description="clip perturbed observations into the bounds")
    reward: str = Field(
        REWARD_NEGATIVE,
        description="adversary reward: 'negative' (minus the victim's reward) or "
        "'feature:NAME' (that feature of the next clean observation)",
    )


def inner_env_config(config: AdversaryEnvConfig) -> Any:
    """The victim's env as an :class:`rlkit.config.EnvConfig`.

    :param config: the adversary env's arguments.
    :raises ValueError: a zip victim without ``env``.
    """
    from rlkit.config import EnvConfig, load_config

    if config.env is not None:
        return EnvConfig(**config.env.model_dump())
    run_config = Path(config.victim) / "config.yaml"
    if not run_config.is_file():
        raise ValueError(
            f"env 'adversary': victim {config.victim!r} is not an rlkit run directory; give env "
            "(the env the victim acts in)"
        )
    return load_config(run_config).env.model_copy(update={"n_envs": 1})


def load_victim(config: AdversaryEnvConfig, env: gym.Env) -> Callable[[np.ndarray], np.ndarray]:
    """The victim's deterministic batch policy on raw observations.

    :param config: the adversary env's arguments.
    :param env: the inner env (for a zip's spaces).
    :raises ValueError: the victim cannot be found or loaded.
    """
    from rlkit.config import ConfigError
    from rlkit.loading import _sb3_agent, load_run, sb3_algo_of_zip

    path = Path(config.victim)
    try:
        if path.is_dir():
            return load_run(path).act
        if not path.is_file():
            raise ValueError(f"env 'adversary': victim {str(path)!r}: not found")
        algo = (config.victim_algo or sb3_algo_of_zip(path)).lower()
        agent = _sb3_agent(path, algo, env.observation_space, env.action_space, None)
    except ConfigError as err:
        raise ValueError(f"env 'adversary': victim {str(path)!r}: {err}") from None
    return lambda obs: agent.act(obs)


def budget_of(config: AdversaryEnvConfig, env: gym.Env) -> Any:
    """The adversary's budget in ``env``'s observation space.

    :param config: the adversary env's arguments.
    :param env: the inner env.
    """
    from rlkit.attacks.evaluation import build_budget
    from rlkit.config import AttackSpec

    spec = AttackSpec(name="learned", mask=config.mask, scale=config.scale)
    return build_budget(spec, config.eps, env)


def clean_trace(
    env: gym.Env, victim: Callable[[np.ndarray], np.ndarray], seed: int = 0
) -> np.ndarray:
    """One clean episode's observations (T, n) with the victim acting.

    :param env: the inner env.
    :param victim: the victim's batch policy.
    :param seed: the episode's reset seed.
    """
    obs, _ = env.reset(seed=seed)
    trace = [np.asarray(obs)]
    while True:
        obs, _, terminated, truncated, _ = env.step(victim(np.asarray(obs)[None])[0])
        if terminated or truncated:
            return np.stack(trace)
        trace.append(np.asarray(obs))


def resolved_feature_scale(config: AdversaryEnvConfig) -> list[float] | None:
    """``feature_scale`` as given, or computed from one clean victim episode (scaled_sum only).

    :param config: the adversary env's arguments.
    """
    if config.perturbation != "scaled_sum":
        return None
    if config.feature_scale is not None:
        return list(config.feature_scale)
    return list(_scale_from_victim(config.victim, config.model_dump_json(), config.statistic))


@cache
def _scale_from_victim(victim: str, config_json: str, statistic: str) -> tuple[float, ...]:
    """trace_scale of a clean victim episode (cached per process: the victim is frozen and the
    episode seeded, so the result never changes)."""
    from rlkit.envs.factory import make_env

    config = AdversaryEnvConfig.model_validate_json(config_json)
    env = make_env(inner_env_config(config))
    try:
        trace = clean_trace(env, load_victim(config, env))
    finally:
        env.close()
    return tuple(float(v) for v in trace_scale(trace, statistic))  # type: ignore[arg-type]


class AdversaryEnv(gym.Wrapper):
    """The inner env seen by an adversary (see the module doc).

    ``info`` carries ``victim_reward``, ``perturbed_obs`` and ``distortion_linf`` each step.

    :param env: the inner env (flat Box observations).
    :param victim: the victim's batch policy on raw observations.
    :param perturbation: the action -> perturbed observation map.
    :param reward: ``"negative"`` or ``"feature:NAME"``.
    """

    def __init__(
        self,
        env: gym.Env,
        victim: Callable[[np.ndarray], np.ndarray],
        perturbation: Perturbation,
        reward: str = REWARD_NEGATIVE,
    ) -> None:
        super().__init__(env)
        if len(env.observation_space.shape or ()) != 1:
            raise ValueError("env 'adversary': the inner env must have flat observations")
        self.victim = victim
        self.perturbation = perturbation
        low, high = perturbation.action_bounds()
        self.action_space = gym.spaces.Box(low, high, dtype=np.float32)
        self._reward_feature = _reward_feature(reward, env)
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the inner env; the adversary observes the clean first observation."""
        obs, info = self.env.reset(**kwargs)
        self._obs = np.asarray(obs)
        return obs, info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Perturb the current observation with ``action``, let the victim act on it, step."""
        if self._obs is None:
            raise RuntimeError("reset() the adversary env before step()")
        clean = self._obs
        seen = self.perturbation.apply(clean[None], np.asarray(action)[None])[0]
        obs, reward, terminated, truncated, info = self.env.step(self.victim(seen[None])[0])
        self._obs = np.asarray(obs)
        victim_reward = float(reward)
        if self._reward_feature is None:
            adversary_reward = -victim_reward
        else:
            adversary_reward = float(self._obs[self._reward_feature])
        info = {
            **info,
            "victim_reward": victim_reward,
            "perturbed_obs": seen,
            "distortion_linf": float(np.max(np.abs(seen - clean))) if seen.size else 0.0,
        }
        return obs, adversary_reward, terminated, truncated, info


def _reward_feature(reward: str, env: gym.Env) -> int | None:
    if reward == REWARD_NEGATIVE:
        return None
    from rlkit.envs.factory import feature_names

    prefix = "feature:"
    names = feature_names(env)
    if not reward.startswith(prefix) or reward[len(prefix) :] not in names:
        raise ValueError(
            f"env 'adversary': reward {reward!r}: use 'negative' or 'feature:NAME' with NAME one "
            f"of {', '.join(names)}"
        )
    return names.index(reward[len(prefix) :])


def make_adversary_env(**kwargs: Any) -> AdversaryEnv:
    """Factory used by the rlkit registry (``env.id: adversary``).

    :param kwargs: :class:`AdversaryEnvConfig` fields.
    :raises ValueError: bad arguments, a victim that cannot be loaded, a bad mask or reward.
    """
    from rlkit.envs.factory import make_env

    config = AdversaryEnvConfig.model_validate(kwargs)
    env = make_env(inner_env_config(config))
    victim = load_victim(config, env)
    n = int(np.prod(env.observation_space.shape))
    perturbation = Perturbation.from_budget(
        config.perturbation, budget_of(config, env), n, resolved_feature_scale(config), config.clip
    )
    return AdversaryEnv(env, victim, perturbation, config.reward)


class VictimEnv(gym.Wrapper):
    """The inner env seen by a victim trained against an adversary (the authors'
    ``VictimATLAWrapper``): observations returned by ``step`` are perturbed by the adversary's
    current policy (the first observation of an episode is clean, as theirs).

    :param env: the inner env.
    :param adversary: the adversary's batch policy on clean observations (deterministic).
    :param perturbation: the action -> perturbed observation map.
    """

    def __init__(
        self,
        env: gym.Env,
        adversary: Callable[[np.ndarray], np.ndarray],
        perturbation: Perturbation,
    ) -> None:
        super().__init__(env)
        self.adversary = adversary
        self.perturbation = perturbation

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step, then perturb the next observation with the adversary's action."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        batch = np.asarray(obs)[None]
        seen = self.perturbation.apply(batch, self.adversary(batch))[0]
        return seen, float(reward), terminated, truncated, {**info, "clean_obs": obs}
