"""The built-in envs, agents, attacks and loops, the plug-in hooks, and the name checks run on
every config.

:func:`register_builtins` fills :mod:`rlkit.registry` explicitly; ``import rlkit`` runs it once,
so every entry point (the CLI, ``import rlkit.envs``, ``gymnasium.make("rlkit/GridBattery-v0")``)
sees the same registry whatever was imported before. Registering imports nothing heavy: factories
and parameter models are ``"module:attr"`` strings resolved on first use.
"""

from __future__ import annotations

from typing import Any

from rlkit.config import AttackConfig, ConfigError, ExperimentConfig
from rlkit.params import check_params
from rlkit.registry import (
    AGENTS,
    ATTACKS,
    DATASETS,
    ENVS,
    LOOPS,
    Entry,
    UnknownNameError,
    unknown_name_message,
)

SB3_ALGOS = {
    "sac": ("SAC", "Soft Actor-Critic (stable-baselines3), continuous actions"),
    "td3": ("TD3", "Twin Delayed DDPG (stable-baselines3), continuous actions"),
    "ddpg": ("DDPG", "Deep Deterministic Policy Gradient (stable-baselines3), continuous actions"),
    "ppo": ("PPO", "Proximal Policy Optimisation (stable-baselines3), continuous or discrete"),
    "a2c": ("A2C", "Advantage Actor-Critic (stable-baselines3), continuous or discrete"),
}
CONTINUOUS_ONLY = ("Box",)
ANY_ACTION = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")
GRID_GYM_ID = "rlkit/GridBattery-v0"
CITYLEARN_GYM_ID = "rlkit/CityLearn-v0"
#: the bifurcation paper's other attacks, through adversarial-robustness-toolbox (optional extra)
ART_ATTACKS: dict[str, tuple[str, str]] = {
    "art_apgd": (
        "rlkit.attacks.art.auto:ARTAutoPGD",
        "ART AutoPGD on the bifurcated policy (the authors' uAPGD, CW loss)",
    ),
    "art_acg": (
        "rlkit.attacks.art.auto:ARTAutoCG",
        "ART Auto Conjugate Gradient on the bifurcated policy (the authors' uACG)",
    ),
    "art_dynamic_eps": (
        "rlkit.attacks.art.auto:ARTDynamicEps",
        "smallest flipping eps of [0.01, 0.03, 0.05, 0.07] per step, ART ACG (dynamic distortion)",
    ),
    "art_optimal_bb": (
        "rlkit.attacks.art.brendel_bethge:ARTOptimalBB",
        "ART Brendel-Bethge toward an adversary policy's action (optimally targeted attack)",
    ),
    "art_snooping_fgm": (
        "rlkit.attacks.art.snooping:ARTSnoopingFGM",
        "black-box snooping: ART FGM on an imitation proxy, transferred",
    ),
}
# rlkit's own agents (built by build_native): name, class, description, loop, data source
NATIVE_AGENTS = (
    (
        "drqv2",
        "rlkit.agents.drqv2:DrQV2Agent",
        "DrQ-v2 actor-critic (DDPG, n-step, clipped noise schedule) on the rlkit-native loop",
        "online",
        "replay",
    ),
    (
        "mentor",
        "rlkit.agents.mentor:MentorAgent",
        "MENTOR: DrQ-v2 + DrM with a mixture-of-experts actor and task-oriented perturbation",
        "online",
        "replay",
    ),
    (
        "odice",
        "rlkit.agents.odice:ODICEAgent",
        "O-DICE offline learner (orthogonal, true_gradient or semi_gradient; weighted BC policy)",
        "offline",
        "offline",
    ),
    (
        "bc",
        "rlkit.agents.bc:BCAgent",
        "behaviour cloning, Gaussian policy (offline)",
        "offline",
        "offline",
    ),
)
ATTACK_NAMES = ("random", "fgsm", "pgd", "targeted_pgd", "bifurcation", "bifurcation_toggle", "mad")


def register_builtins() -> None:
    """Fill the registry with rlkit's own parts (idempotent)."""
    if "grid" in ENVS:
        return
    from rlkit.envs.citylearn.compat import silence_gym_banner

    silence_gym_banner()  # stable-baselines3 imports gym 0.25 (the CityLearn extra) when installed
    _register_envs()
    _register_agents()
    _register_attacks()
    LOOPS.register(
        "online",
        "rlkit.loops.online:OnlineLoop",
        "rlkit's online loop: act, store, update from replay",
    )
    LOOPS.register(
        "sb3", "rlkit.loops.sb3:SB3Loop", "stable-baselines3's learn() inside an rlkit run"
    )
    LOOPS.register(
        "atla",
        "rlkit.loops.atla:ATLALoop",
        "ATLA: victim and learned adversary in alternation (SB3 learn() for each)",
    )
    LOOPS.register(
        "offline",
        "rlkit.loops.offline:OfflineLoop",
        "rlkit's offline loop: updates from a fixed dataset, evaluation in the env",
    )
    DATASETS.register(
        "replay",
        "rlkit.loops.online:build_replay",
        "replay buffer filled by the online loop (frame-aware, n-step)",
    )
    DATASETS.register(
        "offline",
        "rlkit.loops.offline:build_offline_data",
        "dataset.path: a D4RL HDF5 file or a Minari dataset (validated, never downloaded)",
    )
    AGENTS.plugin = agent_plugin
    ATTACKS.plugin = attack_plugin


def _register_envs() -> None:
    import gymnasium as gym

    ENVS.register(
        "grid",
        "rlkit.envs.grid:make_grid_env",
        "battery dispatch on a pandapower distribution feeder (IEEE 33-bus, CIGRE MV, SimBench)",
        params="rlkit.envs.grid.config:GridEnvConfig",
        vector="rlkit.envs.grid:GridBatteryVectorEnv",
    )
    ENVS.register(
        "citylearn",
        "rlkit.envs.citylearn:make_citylearn_env",
        "the bifurcation paper's building: CityLearn 2.0.0, 2022 phase 2, the authors' wrappers",
        params="rlkit.envs.citylearn.config:CityLearnEnvConfig",
    )
    ENVS.register(
        "adversary",
        "rlkit.envs.adversary:make_adversary_env",
        "a learned adversary's env: perturb a frozen victim's observations, reward = -victim's",
        params="rlkit.envs.adversary:AdversaryEnvConfig",
    )
    _register_pixel_envs()
    if GRID_GYM_ID not in gym.registry:
        gym.register(
            id=GRID_GYM_ID,
            entry_point="rlkit.envs.grid.env:GridBatteryEnv",
            vector_entry_point="rlkit.envs.grid.vector:GridBatteryVectorEnv",
        )
    if CITYLEARN_GYM_ID not in gym.registry:
        gym.register(id=CITYLEARN_GYM_ID, entry_point="rlkit.envs.citylearn:make_citylearn_env")


def _register_pixel_envs() -> None:
    """DeepMind Control, Meta-World v3 and Adroit, one entry per task (``dmc/cartpole-swingup``);
    the task lists are plain tuples, so registering imports no simulator."""
    from rlkit.envs.adroit import ADROIT_TASKS
    from rlkit.envs.dmc import DMC_TASKS
    from rlkit.envs.metaworld import METAWORLD_TASKS

    families = (
        ("dmc", DMC_TASKS, "DeepMind Control"),
        ("metaworld", METAWORLD_TASKS, "Meta-World v3 (MT1)"),
        ("adroit", ADROIT_TASKS, "Adroit hand (gymnasium-robotics)"),
    )
    for family, tasks, label in families:
        for task in tasks:
            ENVS.register(
                f"{family}/{task}",
                f"rlkit.envs.{family}:make_{family}_env",
                f"{label} {task}: pixels (84x84, frame stack, action repeat 2) or state",
                params=f"rlkit.envs.{family}:{PIXEL_PARAMS[family]}",
                bind={"task": task},
                family=(family, label),
            )


PIXEL_PARAMS = {"dmc": "DMCParams", "metaworld": "MetaWorldParams", "adroit": "AdroitParams"}


def _register_agents() -> None:
    for name, (algo, description) in SB3_ALGOS.items():
        register_sb3_agent(
            name, algo, description, ANY_ACTION if name in ("ppo", "a2c") else CONTINUOUS_ONLY
        )
    for name, path, description, loop, data in NATIVE_AGENTS:
        AGENTS.register(
            name,
            "rlkit.catalog:build_native",
            description,
            params=lambda p=path: native_params(p),
            loop=loop,
            data=data,
            action_spaces=CONTINUOUS_ONLY,
            bind={"cls": path},
        )
    AGENTS.register(
        "atla",
        "rlkit.agents.atla:build_atla",
        "ATLA: an SB3 victim and a learned SB3 adversary trained in alternation (Zhang et al.)",
        params="rlkit.agents.atla:ATLAParams",
        loop="atla",
        action_spaces=ANY_ACTION,
    )


def register_sb3_agent(
    name: str, algo: Any, description: str, action_spaces: tuple[str, ...] = ANY_ACTION
) -> Entry:
    """Register a stable-baselines3 algorithm (a built-in name or a subclass) as an agent.

    :param name: the agent name.
    :param algo: SB3 class name (``"SAC"``) or an algorithm class.
    :param description: one line for ``rlkit info``.
    :param action_spaces: action space kinds it can act in.
    """
    return AGENTS.register(
        name,
        "rlkit.agents.sb3:build_sb3",
        description,
        params=lambda: _sb3_params(algo),
        loop="sb3",
        action_spaces=action_spaces,
        bind={"algo": algo},
        algo=algo if isinstance(algo, str) else algo.__name__,
    )


def register_agent(
    name: str, cls: Any, description: str = "", action_spaces: tuple[str, ...] = ANY_ACTION
) -> Entry:
    """Register a native agent class (one following :class:`rlkit.agent.Agent`) on the online loop.

    The class is built as ``cls(observation_space, action_space, device=..., **agent.kwargs)``.

    :param name: the agent name.
    :param cls: the agent class (or ``"module:Class"``).
    :param description: one line for ``rlkit info``.
    :param action_spaces: action space kinds it can act in.
    """
    return AGENTS.register(
        name,
        "rlkit.catalog:build_native",
        description or f"plug-in agent {cls}",
        params=lambda: native_params(cls),
        loop="online",
        data="replay",
        action_spaces=action_spaces,
        bind={"cls": cls},
    )


def register_attack(name: str, cls: Any, description: str = "") -> Entry:
    """Register an attack class (a subclass of :class:`rlkit.attacks.Attack`) under ``name``.

    :param name: the attack name.
    :param cls: the attack class (or ``"module:Class"``).
    :param description: one line for ``rlkit info``.
    """
    return ATTACKS.register(
        name, cls, description or f"plug-in attack {cls}", params=lambda: attack_params(cls)
    )


def _sb3_params(algo: Any) -> Any:
    from rlkit.agents.sb3 import sb3_params

    return sb3_params(algo)


def native_params(cls: Any) -> Any:
    """Typed ``agent.kwargs`` of a native agent class (spaces and device are supplied by rlkit).

    :param cls: the class or ``"module:Class"``.
    """
    from rlkit.params import signature_model
    from rlkit.registry import resolve

    klass = resolve(cls)
    return signature_model(
        klass, f"{klass.__name__}Params", exclude=("observation_space", "action_space", "device")
    )


def attack_params(cls: Any) -> Any:
    """Typed settings of an attack class: its ``settings_model`` attribute, if it has one.

    :param cls: the class or ``"module:Class"``.
    """
    from rlkit.registry import resolve

    return getattr(resolve(cls), "settings_model", None)


def build_native(
    config: ExperimentConfig,
    observation_space: Any,
    action_space: Any,
    env: Any = None,
    *,
    cls: Any,
) -> Any:
    """Factory of native agents: ``cls(observation_space, action_space, device, **kwargs)``.

    ``agent.learning_rate`` and ``agent.net_arch`` are passed as ``lr`` / ``hidden_dim`` (or the
    whole list as ``policy_hidden``) when the class accepts them.

    :param config: the experiment config.
    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param env: unused (the loop steps the env).
    :param cls: the agent class.
    """
    from rlkit.registry import resolve

    klass = resolve(cls)
    kwargs = dict(config.agent.kwargs)
    model = native_params(klass)
    fields = model.model_fields if model is not None else {}
    if config.agent.learning_rate is not None and "lr" in fields:
        kwargs["lr"] = config.agent.learning_rate
    if config.agent.net_arch and "hidden_dim" in fields:
        kwargs["hidden_dim"] = config.agent.net_arch[0]
    elif config.agent.net_arch and "policy_hidden" in fields:
        kwargs["policy_hidden"] = list(config.agent.net_arch)
    return klass(observation_space, action_space, device=config.train.device, **kwargs)


def agent_plugin(path: str, obj: Any) -> Entry:
    """Turn ``agent.name: package.module:Class`` into an entry: an SB3 algorithm subclass trains
    on the sb3 loop, any other class is a native agent on the online loop.

    :param path: the class path.
    :param obj: the imported class.
    """
    from stable_baselines3.common.base_class import BaseAlgorithm

    if not isinstance(obj, type):
        raise UnknownNameError("agent", path, AGENTS.names(), f" ({path} is not a class)")
    entry = Entry(path, None, f"plug-in {path}")
    if issubclass(obj, BaseAlgorithm):
        entry.factory, entry.params = "rlkit.agents.sb3:build_sb3", lambda: _sb3_params(obj)
        entry.extra = {
            "loop": "sb3",
            "action_spaces": ANY_ACTION,
            "bind": {"algo": obj},
            "algo": obj.__name__,
        }
    else:
        entry.factory, entry.params = "rlkit.catalog:build_native", lambda: native_params(obj)
        entry.extra = {
            "loop": "online",
            "data": "replay",
            "action_spaces": ANY_ACTION,
            "bind": {"cls": obj},
        }
    return entry


def attack_plugin(path: str, obj: Any) -> Entry:
    """Turn ``name: package.module:AttackClass`` into an attack entry.

    :param path: the class path.
    :param obj: the imported class.
    """
    if not isinstance(obj, type):
        raise UnknownNameError("attack", path, ATTACKS.names(), f" ({path} is not a class)")
    return Entry(path, obj, f"plug-in {path}", params=lambda: attack_params(obj))


def _register_attacks() -> None:
    for name, (path, description) in ART_ATTACKS.items():
        register_attack(name, path, description)
    register_attack(
        "learned",
        "rlkit.attacks.learned:LearnedAttack",
        "a trained adversary policy's perturbation (optimal attack; the authors' BScaledSum)",
    )
    for name in ATTACK_NAMES:
        ATTACKS.register(
            name,
            "rlkit.attacks:make_attack",
            "",
            params=lambda n=name: _builtin_attack_model(n),
            builtin=name,
        )


def _builtin_attack_model(name: str) -> Any:
    from rlkit.attacks.attacks import settings_model

    return settings_model(name)


def attack_description(entry: Entry) -> str:
    """An attack's one-line description (read from the attacks module for built-ins).

    :param entry: the attack's entry.
    """
    if entry.description:
        return entry.description
    from rlkit.attacks.attacks import ATTACKS as DESCRIPTIONS

    return DESCRIPTIONS.get(entry.extra.get("builtin", ""), "")


def build_attack(name: str, policy: Any, budget: Any, settings: dict[str, Any]) -> Any:
    """Build the attack registered as ``name`` (a built-in or a plug-in) against ``policy``.

    :param name: the attack name or class path.
    :param policy: the differentiable policy view.
    :param budget: the :class:`rlkit.attacks.AttackBudget`.
    :param settings: the attack's settings.
    """
    entry = ATTACKS.get(name)
    if "builtin" in entry.extra:
        return entry.build(entry.extra["builtin"], policy, budget, **settings)
    model = entry.params_model()
    merged = model.model_validate(settings).model_dump() if model is not None else dict(settings)
    return entry.build(name, policy, budget, merged)


# ---------------------------------------------------------------------------------------------
# name and parameter checks run on every config


def is_gym_id(env_id: str) -> bool:
    """True when ``env_id`` is a gymnasium id.

    :param env_id: the id.
    """
    import gymnasium as gym

    return env_id in gym.registry


def check_env(config: ExperimentConfig, source: str) -> None:
    """Check ``env.id`` exists and ``env.kwargs``/``eval.env_kwargs`` fit its parameter model.

    :param config: the validated config.
    :param source: where it came from, for messages.
    """
    env_id = config.env.id
    if env_id in ENVS:
        model = ENVS.get(env_id).params_model()
        check_params(model, config.env.kwargs, source, "env.kwargs")
        check_params(
            model, {**config.env.kwargs, **config.eval.env_kwargs}, source, "eval.env_kwargs"
        )
        return
    if is_gym_id(env_id):
        return
    import gymnasium as gym

    raise ConfigError(
        f"{source}: key 'env.id': "
        f"{unknown_name_message('env', env_id, [*ENVS.names(), *gym.registry])}"
    )


def check_attacks(config: ExperimentConfig | AttackConfig, source: str) -> None:
    """Check attack names and their settings (of an experiment or an attack config).

    :param config: the config holding the attacks.
    :param source: where it came from, for messages.
    """
    if isinstance(config, ExperimentConfig) and config.adversarial is not None:
        spec = config.adversarial.attack
        try:
            entry = ATTACKS.get(spec.name)
        except UnknownNameError as err:
            raise ConfigError(f"{source}: key 'adversarial.attack.name': {err}") from None
        check_params(entry.params_model(), spec.settings, source, "adversarial.attack.settings")
    attack = config.attack if isinstance(config, ExperimentConfig) else config
    if attack is None:
        return
    for i, spec in enumerate(attack.attacks):
        key = f"attack.attacks.{i}"
        try:
            entry = ATTACKS.get(spec.name)
        except UnknownNameError as err:
            raise ConfigError(f"{source}: key '{key}.name': {err}") from None
        check_params(entry.params_model(), spec.settings, source, f"{key}.settings")
        for value in [*(spec.eps or []), *attack.eps]:
            if value < 0:
                raise ConfigError(f"{source}: key '{key}.eps': given {value}; allowed: eps >= 0")


def agent_entry(config: ExperimentConfig, source: str) -> Entry:
    """The registry entry of ``agent.name`` (ConfigError naming the key when unknown).

    :param config: the config.
    :param source: where it came from, for messages.
    """
    try:
        return AGENTS.get(config.agent.name)
    except UnknownNameError as err:
        raise ConfigError(f"{source}: key 'agent.name': {err}") from None


def check_names(config: ExperimentConfig, source: str) -> None:
    """Check every registry name and parameter in ``config``; raise ConfigError on the first
    problem.

    :param config: the validated config.
    :param source: where it came from, for messages.
    """
    check_env(config, source)
    entry = agent_entry(config, source)
    if entry.extra.get("loop") == "online" and config.env.n_envs != 1:
        raise ConfigError(
            f"{source}: key 'env.n_envs': given {config.env.n_envs}; agent {config.agent.name!r} "
            "trains on one env (allowed: 1)"
        )
    offline = entry.extra.get("loop") == "offline"
    if offline and config.dataset is None:
        raise ConfigError(
            f"{source}: key 'dataset' is required: agent {config.agent.name!r} learns offline "
            "(give dataset.path, an HDF5 file or a Minari dataset, and dataset.env)"
        )
    if not offline and config.dataset is not None:
        raise ConfigError(
            f"{source}: key 'dataset': agent {config.agent.name!r} learns online; remove the "
            "dataset section or use an offline agent (odice, bc)"
        )
    check_params(entry.params_model(), config.agent.kwargs, source, "agent.kwargs")
    check_attacks(config, source)
