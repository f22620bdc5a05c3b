"""stable-baselines3 algorithms behind rlkit's agent interface.

The adapter builds an SB3 model from an :class:`~rlkit.config.AgentConfig`, keeps optional
observation-normalisation statistics beside it, saves and restores everything with weights-only
torch files (never SB3's pickled zip data), and exposes a differentiable :class:`PolicyView`
with the normalisation folded in, so attacks work on raw observations. It follows
:class:`rlkit.agent.Agent`, except that SB3 collects its own rollouts and learns inside
``model.learn`` (the ``sb3`` loop), so :meth:`SB3Agent.update` is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize
from torch import nn

from rlkit.agent import UpdateSchedule
from rlkit.batch import Batch
from rlkit.config import AgentConfig, ExperimentConfig
from rlkit.io import load_arrays, load_torch, save_arrays, save_torch
from rlkit.params import signature_model
from rlkit.policy import ObsNormalizer, PolicyView

STATE_FILE, ARRAYS_FILE = "agent.pt", "agent.npz"
#: constructor arguments rlkit supplies itself (not settable through ``agent.kwargs``)
SUPPLIED = ("policy", "env", "device", "seed", "verbose", "_init_setup_model")
BUFFER_KEYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


class SpacesEnv(gym.Env):
    """An env that only carries spaces: lets SB3 build a model for loading and evaluation."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        raise RuntimeError("SpacesEnv cannot be stepped")

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        raise RuntimeError("SpacesEnv cannot be stepped")


class SB3Agent:
    """An SB3 algorithm with rlkit's agent interface.

    :param algo: SB3 class name, e.g. "SAC".
    :param config: the ``agent`` config section.
    :param env: training VecEnv, or None to build the model on ``spaces`` only (loading).
    :param spaces: (observation_space, action_space) when ``env`` is None.
    :param seed: random seed.
    :param device: torch device.
    :param total_steps: planned training steps (caps the default replay-buffer size).
    """

    def __init__(
        self,
        algo: str | type[BaseAlgorithm],
        config: AgentConfig,
        env: VecEnv | None = None,
        spaces: tuple[gym.Space, gym.Space] | None = None,
        seed: int = 0,
        device: str = "cpu",
        total_steps: int | None = None,
    ) -> None:
        cls: type[BaseAlgorithm] = (
            getattr(stable_baselines3, algo) if isinstance(algo, str) else algo
        )
        self.algo = _base_algo(cls)
        if env is None:
            if spaces is None:
                raise ValueError("SB3Agent needs an env or (observation_space, action_space)")
            env = DummyVecEnv([lambda: SpacesEnv(*spaces)])
        self.vec_normalize = env if isinstance(env, VecNormalize) else None
        self.model: BaseAlgorithm = cls(
            "MlpPolicy", env, **self._model_kwargs(cls, config, seed, device, total_steps)
        )
        self.obs_mean: np.ndarray | None = None
        self.obs_var: np.ndarray | None = None
        self.clip_obs = 10.0
        self.schedule = UpdateSchedule()

    @classmethod
    def from_model(
        cls,
        model: BaseAlgorithm,
        obs_mean: np.ndarray | None = None,
        obs_var: np.ndarray | None = None,
        clip_obs: float = 10.0,
    ) -> SB3Agent:
        """Wrap an already built SB3 model (e.g. loaded from a zip trained elsewhere).

        :param model: the SB3 model.
        :param obs_mean: observation-normalisation mean it was trained with, if any.
        :param obs_var: observation-normalisation variance.
        :param clip_obs: clipping of normalised observations.
        """
        agent = cls.__new__(cls)
        agent.algo, agent.model, agent.vec_normalize = _base_algo(type(model)), model, None
        agent.obs_mean, agent.obs_var, agent.clip_obs = obs_mean, obs_var, clip_obs
        agent.schedule = UpdateSchedule()
        return agent

    @staticmethod
    def _model_kwargs(
        cls: type, config: AgentConfig, seed: int, device: str, total_steps: int | None
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"seed": seed, "device": device, "verbose": 0, **config.kwargs}
        if config.learning_rate is not None:
            kwargs["learning_rate"] = config.learning_rate
        if config.net_arch is not None:
            kwargs["policy_kwargs"] = {
                **kwargs.get("policy_kwargs", {}),
                "net_arch": list(config.net_arch),
            }
        if issubclass(cls, OffPolicyAlgorithm) and "buffer_size" not in kwargs and total_steps:
            kwargs["buffer_size"] = int(min(1_000_000, max(total_steps, 1000)))
        return kwargs

    # acting ------------------------------------------------------------------------------

    @property
    def action_kind(self) -> str:
        """ "discrete" for Discrete action spaces, else "continuous"."""
        return (
            "discrete" if isinstance(self.model.action_space, gym.spaces.Discrete) else "continuous"
        )

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """Apply the saved observation normalisation (identity when there is none)."""
        stats = self._stats()
        if stats is None:
            return obs
        mean, var = stats
        return np.clip((obs - mean) / np.sqrt(var + 1e-8), -self.clip_obs, self.clip_obs).astype(
            np.float32
        )

    def _stats(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.vec_normalize is not None:
            rms: Any = self.vec_normalize.obs_rms  # a RunningMeanStd for Box observations
            return rms.mean, rms.var
        if self.obs_mean is not None and self.obs_var is not None:
            return self.obs_mean, self.obs_var
        return None

    def act(self, obs: np.ndarray, step: int = 0, explore: bool = False) -> np.ndarray:
        """Actions for a batch of raw observations.

        :param obs: observations, shape (B, *obs_shape).
        :param step: env steps so far (unused: SB3 keeps its own schedules).
        :param explore: sample from the policy instead of the mean / argmax action.
        """
        action, _ = self.model.predict(
            self.normalize(np.asarray(obs, dtype=np.float32)), deterministic=not explore
        )
        return action

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """Not used: stable-baselines3 learns inside ``model.learn`` (the ``sb3`` loop).

        :param batch: unused.
        :param step: unused.
        """
        raise NotImplementedError(
            "stable-baselines3 agents learn inside their own rollouts (loop 'sb3')"
        )

    def on_episode_end(self, info: dict[str, Any]) -> None:
        """Nothing to do: SB3 tracks its own episodes.

        :param info: the episode's final info.
        """

    def policy_view(self, live: bool = False) -> PolicyView:
        """A differentiable deterministic policy taking raw observations.

        :param live: share the model's training weights (attacks inside training) instead of a
            frozen CPU copy.
        """
        policy = self.model.policy
        space = self.model.action_space
        body, squash = _policy_body(self.algo, policy, copy_policy=not live)
        stats = self._stats()
        normalizer = ObsNormalizer(stats[0], stats[1], self.clip_obs) if stats is not None else None
        if isinstance(space, gym.spaces.Discrete):
            view = PolicyView(body, "discrete", "argmax", normalizer=normalizer)
        else:
            box: Any = space
            view = PolicyView(body, "continuous", squash, box.low, box.high, normalizer)
        if live:
            return view.to(self.model.device)
        view.eval()
        for param in view.parameters():
            param.requires_grad_(False)
        return view

    # saving ------------------------------------------------------------------------------

    def state_dict(self, with_buffer: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(torch state, numpy arrays): parameters, optimisers, counters, normaliser, buffer.

        :param with_buffer: include the replay buffer's arrays.
        """
        model = self.model
        _, torch_vars = model._get_torch_save_params()
        state: dict[str, Any] = {
            "params": model.get_parameters(),
            "torch_vars": {
                name: _getattr_path(model, name).detach().clone() for name in torch_vars
            },
            "counters": {
                "num_timesteps": int(model.num_timesteps),
                "n_updates": int(getattr(model, "_n_updates", 0)),
                "episode_num": int(model._episode_num),
            },
        }
        arrays: dict[str, np.ndarray] = {}
        stats = self._stats()
        if stats is not None:
            arrays["obs_mean"], arrays["obs_var"] = np.asarray(stats[0]), np.asarray(stats[1])
            if self.vec_normalize is not None:
                arrays["obs_count"] = np.asarray(self.vec_normalize.obs_rms.count)  # type: ignore[attr-defined]
        buffer = getattr(model, "replay_buffer", None)
        if with_buffer and buffer is not None:
            size = buffer.buffer_size if buffer.full else buffer.pos
            for key in BUFFER_KEYS:
                value = getattr(buffer, key, None)
                if value is not None:
                    arrays[f"buffer_{key}"] = value[:size]
            arrays["buffer_pos"] = np.asarray(buffer.pos)
            arrays["buffer_full"] = np.asarray(buffer.full)
        return state, arrays

    def load_state_dict(
        self, state: dict[str, Any], arrays: dict[str, np.ndarray], policy_only: bool = False
    ) -> None:
        """Restore what :meth:`state_dict` returned.

        :param state: the torch part (parameters, optimisers, counters).
        :param arrays: the numpy part (normaliser, replay buffer).
        :param policy_only: load the policy weights only (evaluation).
        """
        model = self.model
        params = state["params"]
        if policy_only:
            model.set_parameters({"policy": params["policy"]}, exact_match=False)
        else:
            model.set_parameters(params, exact_match=True)
            for name, value in state["torch_vars"].items():
                _getattr_path(model, name).data.copy_(value)
            counters = state["counters"]
            model.num_timesteps = counters["num_timesteps"]
            model._n_updates = counters["n_updates"]
            model._episode_num = counters["episode_num"]
        if "obs_mean" in arrays:
            self.obs_mean, self.obs_var = arrays["obs_mean"], arrays["obs_var"]
            if self.vec_normalize is not None:
                rms: Any = self.vec_normalize.obs_rms
                rms.mean, rms.var = arrays["obs_mean"].copy(), arrays["obs_var"].copy()
                rms.count = float(arrays["obs_count"])
        buffer = getattr(model, "replay_buffer", None)
        if not policy_only and buffer is not None and "buffer_pos" in arrays:
            for key in BUFFER_KEYS:
                if f"buffer_{key}" in arrays and getattr(buffer, key, None) is not None:
                    saved = arrays[f"buffer_{key}"]
                    getattr(buffer, key)[: len(saved)] = saved
            buffer.pos = int(arrays["buffer_pos"])
            buffer.full = bool(arrays["buffer_full"])

    def save(self, folder: Path, with_buffer: bool = True) -> None:
        """Write ``agent.pt`` (weights-only torch) and ``agent.npz`` (normaliser, buffer).

        :param folder: the checkpoint or final folder.
        :param with_buffer: include the replay buffer (checkpoints; not final models).
        """
        state, arrays = self.state_dict(with_buffer=with_buffer)
        save_torch(Path(folder) / STATE_FILE, state)
        save_arrays(Path(folder) / ARRAYS_FILE, arrays)

    def load_zip_policy(self, path: Path) -> None:
        """Start from the policy weights of a stable-baselines3 zip trained elsewhere (fine-tuning
        from e.g. the bifurcation authors' released controllers; a trusted file). Only the
        policy's tensors are read (weights-only torch), not its optimiser or pickled data.

        :param path: the zip.
        :raises ValueError: the zip has no policy, or its tensors do not fit this policy.
        """
        from stable_baselines3.common.save_util import load_from_zip_file

        _, params, _ = load_from_zip_file(path, load_data=False, device="cpu")
        if not params or "policy" not in params:
            raise ValueError("it holds no policy.pth")
        try:
            self.model.policy.load_state_dict(params["policy"])  # type: ignore[arg-type]
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(f"its policy does not fit this agent's ({first})") from None

    def load(self, folder: Path, policy_only: bool = False) -> None:
        """Restore :meth:`save` (weights-only torch, numpy without pickle).

        :param folder: the folder.
        :param policy_only: load the policy weights (and normaliser) only.
        """
        state = load_torch(Path(folder) / STATE_FILE)
        self.load_state_dict(
            state, load_arrays(Path(folder) / ARRAYS_FILE), policy_only=policy_only
        )


def build_sb3(
    config: ExperimentConfig,
    observation_space: gym.Space,
    action_space: gym.Space,
    env: Any = None,
    *,
    algo: Any,
) -> SB3Agent:
    """Registry factory of the SB3 agents: a model on the training VecEnv, or on the spaces only.

    :param config: the experiment config.
    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param env: the training VecEnv (None: a model for loading and evaluation).
    :param algo: SB3 class name (``"SAC"``) or class (a plug-in subclass).
    """
    spaces = None if env is not None else (observation_space, action_space)
    return SB3Agent(
        algo,
        config.agent,
        env=env,
        spaces=spaces,
        seed=config.seed,
        device=config.train.device,
        total_steps=config.train.total_steps,
    )


def sb3_params(algo: Any) -> Any:
    """The typed model of ``agent.kwargs`` for SB3 algorithm ``algo`` (from its signature).

    :param algo: SB3 class name or class.
    """
    cls = getattr(stable_baselines3, algo) if isinstance(algo, str) else algo
    return signature_model(cls, f"{cls.__name__}Params", exclude=SUPPLIED)


def _getattr_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


class _ActorMean(nn.Module):
    """SAC/TD3/DDPG actor up to the pre-squash mean."""

    def __init__(self, actor: nn.Module, latent: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.actor, self.latent, self.head = actor, latent, head

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        features = self.actor.extract_features(obs, self.actor.features_extractor)
        return self.head(self.latent(features))


class _ActorCriticHead(nn.Module):
    """PPO/A2C policy up to the action mean (continuous) or logits (discrete)."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        policy = self.policy
        features = policy.extract_features(obs, policy.pi_features_extractor)
        return policy.action_net(policy.mlp_extractor.forward_actor(features))


def _base_algo(cls: type) -> str:
    """Name of the stable-baselines3 algorithm ``cls`` is (or derives from), e.g. ``"SAC"``.

    :param cls: an SB3 algorithm class or a subclass of one (plug-ins).
    """
    for klass in cls.__mro__:
        if klass.__module__.startswith("stable_baselines3.") and klass.__name__ in (
            "SAC",
            "TD3",
            "DDPG",
            "PPO",
            "A2C",
            "DQN",
        ):
            return klass.__name__
    return cls.__name__


def _policy_body(algo: str, policy: nn.Module, copy_policy: bool = True) -> tuple[nn.Module, str]:
    """(module producing the pre-squash output, squash kind) for an SB3 policy.

    :param algo: SB3 algorithm name.
    :param policy: the model's policy.
    :param copy_policy: work on a CPU copy (frozen views) rather than the training policy.
    """
    import copy

    if copy_policy:
        policy = copy.deepcopy(policy).cpu()
    actor: Any = getattr(policy, "actor", None)
    if algo == "SAC":
        return _ActorMean(actor, actor.latent_pi, actor.mu), "tanh"
    if algo in ("TD3", "DDPG"):  # mu is Sequential(..., Tanh): drop the final Tanh
        return _ActorMean(actor, nn.Identity(), nn.Sequential(*list(actor.mu)[:-1])), "tanh"
    return _ActorCriticHead(policy), "tanh" if getattr(policy, "squash_output", False) else "clip"
