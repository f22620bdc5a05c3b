"""The built-in envs, agents and attacks, and the name checks run on every config."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import ValidationError

from rlkit.config import AttackConfig, ConfigError, ExperimentConfig, validation_message
from rlkit.registry import AGENTS, ATTACKS, ENVS, UnknownNameError, resolve, unknown_name_message

SB3_ALGOS = {
    "sac": ("SAC", "Soft Actor-Critic (stable-baselines3), continuous actions"),
    "td3": ("TD3", "Twin Delayed DDPG (stable-baselines3), continuous actions"),
    "ddpg": ("DDPG", "Deep Deterministic Policy Gradient (stable-baselines3), continuous actions"),
    "ppo": ("PPO", "Proximal Policy Optimisation (stable-baselines3), continuous or discrete"),
    "a2c": ("A2C", "Advantage Actor-Critic (stable-baselines3), continuous or discrete"),
}
CONTINUOUS_ONLY = ("Box",)
ANY_ACTION = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")

def _register_builtins() -> None:
    if "grid" in ENVS:
        return
    ENVS.register(
        "grid",
        "rlkit.envs.grid:make_grid_env",
        "battery dispatch on a pandapower distribution feeder (IEEE 33-bus, CIGRE MV, SimBench)",
        params="rlkit.envs.grid.config:GridEnvConfig",
        vector="rlkit.envs.grid:GridBatteryVectorEnv",
    )
    for name, (cls, description) in SB3_ALGOS.items():
        spaces = ANY_ACTION if name in ("ppo", "a2c") else CONTINUOUS_ONLY
        AGENTS.register(name, "rlkit.agents.sb3:SB3Agent", description, algo=cls, backend="sb3", action_spaces=spaces)
    AGENTS.register(
        "drqv2",
        "rlkit.agents.drqv2:DrQV2Agent",
        "DrQ-v2 actor-critic (DDPG, n-step, clipped noise schedule) on the rlkit-native loop",
        backend="native",
        action_spaces=CONTINUOUS_ONLY,
    )
    from rlkit.attacks.attacks import ATTACKS as ATTACK_DESCRIPTIONS

    for name, description in ATTACK_DESCRIPTIONS.items():
        ATTACKS.register(name, "rlkit.attacks:make_attack", description)


_register_builtins()


def is_gym_id(env_id: str) -> bool:
    """True when ``env_id`` is a gymnasium id (importing rlkit's own gymnasium ids if needed)."""
    import gymnasium as gym

    if env_id.startswith("rlkit/"):
        import rlkit.envs.grid  # noqa: F401  registers rlkit/GridBattery-v0

    return env_id in gym.registry


def accepted_kwargs(entry_factory: Any, algo: str | None) -> set[str] | None:
    """Keyword arguments an agent constructor accepts (None: anything goes)."""
    if algo is None:
        target = resolve(entry_factory)
        params = inspect.signature(target).parameters
    else:
        import stable_baselines3

        params = inspect.signature(getattr(stable_baselines3, algo).__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {name for name in params if name not in {"self", "policy", "env", "observation_space", "action_space", "device"}}


def _check_kwargs(given: dict[str, Any], accepted: set[str] | None, key: str, source: str) -> None:
    if accepted is None:
        return
    for name in given:
        if name not in accepted:
            raise ConfigError(f"{source}: key '{key}.{name}': {unknown_name_message('argument', name, accepted)}")


def check_env(config: ExperimentConfig, source: str) -> None:
    """Check ``env.id`` exists and ``env.kwargs``/``eval.env_kwargs`` fit its parameter model."""
    env_id = config.env.id
    if env_id in ENVS:
        model = ENVS.get(env_id).params_model()
        for key, kwargs in (("env.kwargs", config.env.kwargs), ("eval.env_kwargs", {**config.env.kwargs, **config.eval.env_kwargs})):
            if model is None:
                continue
            try:
                model.model_validate(kwargs)
            except ValidationError as err:
                raise ConfigError(validation_message(err, source, model, prefix=key + ".")) from None
        return
    if is_gym_id(env_id):
        return
    import gymnasium as gym

    raise ConfigError(f"{source}: key 'env.id': {unknown_name_message('env', env_id, [*ENVS.names(), *gym.registry])}")


def check_attacks(config: ExperimentConfig | AttackConfig, source: str) -> None:
    """Check attack names and their settings keys (of an experiment or an attack config)."""
    attack = config.attack if isinstance(config, ExperimentConfig) else config
    if attack is None:
        return
    for i, spec in enumerate(attack.attacks):
        key = f"attack.attacks.{i}"
        try:
            ATTACKS.get(spec.name)
        except UnknownNameError as err:
            raise ConfigError(f"{source}: key '{key}.name': {err}") from None
        from rlkit.attacks.attacks import attack_settings, validate_settings

        _check_kwargs(spec.settings, set(attack_settings(spec.name)), f"{key}.settings", source)
        try:
            validate_settings(spec.name, spec.settings)
        except ValueError as err:
            raise ConfigError(f"{source}: key '{key}.settings': {err}") from None
        for value in [*(spec.eps or []), *attack.eps]:
            if value < 0:
                raise ConfigError(f"{source}: key '{key}.eps': given {value}; allowed: eps >= 0")


def check_names(config: ExperimentConfig, source: str) -> None:
    """Check every registry name and kwargs in ``config``; raise ConfigError on the first problem.

    :param config: the validated config.
    :param source: where it came from, for messages.
    """
    check_env(config, source)
    try:
        entry = AGENTS.get(config.agent.name)
    except UnknownNameError as err:
        raise ConfigError(f"{source}: key 'agent.name': {err}") from None
    algo = (entry.extra or {}).get("algo")
    if entry.extra.get("backend") == "native" and config.env.n_envs != 1:
        raise ConfigError(f"{source}: key 'env.n_envs': given {config.env.n_envs}; agent {config.agent.name!r} trains on one env (allowed: 1)")
    _check_kwargs(config.agent.kwargs, accepted_kwargs(entry.factory, algo), "agent.kwargs", source)
    check_attacks(config, source)
