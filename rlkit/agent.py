"""The agent contract every rlkit agent follows, and building agents through the registry.

An agent knows nothing of envs, files layouts or logging. It acts on batches of raw
observations, learns from :class:`~rlkit.batch.Batch` es, says when it wants to learn
(:attr:`Agent.schedule`), saves and loads itself into a folder it is given, and exposes a
differentiable :class:`~rlkit.policy.PolicyView` for attacks (``live=True``: a view sharing the
training weights, for attacks inside training loops).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import gymnasium as gym

    from rlkit.batch import Batch
    from rlkit.config import ExperimentConfig
    from rlkit.policy import PolicyView
    from rlkit.registry import Entry


@dataclass(frozen=True)
class UpdateSchedule:
    """When and from what an agent learns (read by the loop; owned by the agent).

    :param batch_size: transitions per update.
    :param every: env steps between updates.
    :param start: env steps before the first update (acting at random until then, if it wants).
    :param nstep: return horizon the data source must build.
    :param gamma: discount of the n-step returns.
    """

    batch_size: int = 256
    every: int = 1
    start: int = 0
    nstep: int = 1
    gamma: float = 0.99

    def due(self, step: int) -> bool:
        """Whether an update is due after env step ``step``.

        :param step: env steps so far.
        """
        return step >= self.start and step % self.every == 0


@runtime_checkable
class Agent(Protocol):
    """What a loop, an evaluator and an attack need from an agent."""

    schedule: UpdateSchedule

    def act(self, obs: np.ndarray, step: int, explore: bool) -> np.ndarray:
        """Env actions for a batch of raw observations.

        :param obs: observations (B, *obs_shape).
        :param step: env steps so far (exploration schedules).
        :param explore: sample / add exploration noise (training) instead of the greedy action.
        """
        ...

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """Learn from one batch; return scalar metrics.

        :param batch: transitions from the agent's data source.
        :param step: env steps so far.
        """
        ...

    def policy_view(self, live: bool = False) -> PolicyView:
        """Differentiable raw observation -> pre-squash action mean or logits.

        :param live: share the training weights (attacks during training) instead of a frozen copy.
        """
        ...

    def save(self, folder: Path) -> None:
        """Write everything needed to resume (weights, optimisers, normaliser) into ``folder``.

        :param folder: an existing empty folder.
        """
        ...

    def load(self, folder: Path, policy_only: bool = False) -> None:
        """Restore what :meth:`save` wrote.

        :param folder: the folder.
        :param policy_only: load only what acting needs (evaluation, fine-tuning).
        """
        ...

    def on_episode_end(self, info: dict[str, Any]) -> None:
        """Called by online loops when a training episode ends.

        :param info: the final step's info plus ``episode_return`` and ``episode_length``.
        """
        ...


def build_agent(
    entry: Entry,
    config: ExperimentConfig,
    observation_space: gym.Space,
    action_space: gym.Space,
    env: Any = None,
) -> Agent:
    """Build the agent of registry ``entry`` for ``config`` and the given spaces.

    Every agent factory has this signature: ``factory(config, observation_space, action_space,
    env=None, **entry_bound_kwargs)``; ``env`` is the training env for agents that step it
    themselves (stable-baselines3), None when loading for evaluation.

    :param entry: the agent's registry entry.
    :param config: the resolved experiment config.
    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param env: the training env, or None.
    """
    bound = entry.extra.get("bind", {})
    return entry.build(config, observation_space, action_space, env=env, **bound)
