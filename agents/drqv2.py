"""DrQ-v2 actor-critic (Yarats et al. 2021) on flat observations.

DDPG with clipped double Q, n-step returns, a scheduled exploration std and clipped target-policy
noise, as in facebookresearch/drqv2. The pixel encoder and augmentation arrive with the visual
agents (MENTOR builds on this one); here the encoder is the identity, so the agent learns from
state vectors. The agent follows :class:`rlkit.agent.Agent`: ``act``, ``update(batch)``,
``save``/``load`` into a folder, and a ``policy_view`` for attacks; it knows nothing of envs,
run directories or logging.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.agent import UpdateSchedule
from rlkit.batch import Batch
from rlkit.config import ExperimentConfig
from rlkit.io import load_torch, save_torch
from rlkit.policy import PolicyView

STATE_FILE = "agent.pt"
NETWORKS = ("actor", "critic", "critic_target", "actor_opt", "critic_opt")


def mlp(inp: int, hidden: int, out: int, depth: int = 2) -> nn.Sequential:
    """An MLP with ``depth`` ReLU hidden layers of width ``hidden``."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(inp if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, out))


def schedule(spec: str | float, step: int) -> float:
    """DrQ-v2 schedules: a constant or ``linear(start, end, duration)``.

    :param spec: the schedule.
    :param step: the current step.
    """
    if isinstance(spec, int | float):
        return float(spec)
    match = re.fullmatch(r"linear\(([^,]+),([^,]+),([^,]+)\)", spec.replace(" ", ""))
    if not match:
        raise ValueError(
            f"unknown schedule {spec!r}; allowed: a number or linear(start,end,duration)"
        )
    start, end, duration = (float(g) for g in match.groups())
    mix = np.clip(step / duration, 0.0, 1.0)
    return float((1.0 - mix) * start + mix * end)


class Actor(nn.Module):
    """Deterministic actor: pre-tanh mean ``mu(s)``; actions are ``tanh(mu)`` plus noise."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, action_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class Critic(nn.Module):
    """Two Q networks."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + action_dim, hidden, 1)
        self.q2 = mlp(obs_dim + action_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, action], dim=-1)
        return self.q1(x), self.q2(x)


class DrQV2Agent:
    """DrQ-v2 on state vectors; actions live in [-1, 1] and are rescaled to the env's bounds.

    :param observation_space: flat Box observation space.
    :param action_space: Box action space.
    :param hidden_dim: hidden width of actor and critic.
    :param lr: Adam learning rate.
    :param critic_target_tau: Polyak factor of the target critic.
    :param update_every_steps: env steps per update.
    :param num_expl_steps: uniformly random actions at the start.
    :param stddev_schedule: exploration std (``linear(1.0,0.1,100000)`` as in DrQ-v2).
    :param stddev_clip: clip of the target-policy noise.
    :param batch_size: replay batch size.
    :param nstep: n-step return horizon.
    :param discount: discount factor.
    :param sa_kappa: weight of the SA regulariser on the actor loss (0: plain DrQ-v2; see
        :mod:`rlkit.agents.sa`).
    :param sa_eps: its observation box radius.
    :param sa_steps: its SGLD steps.
    :param device: torch device.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        hidden_dim: int = 256,
        lr: float = 1e-4,
        critic_target_tau: float = 0.01,
        update_every_steps: int = 2,
        num_expl_steps: int = 2000,
        stddev_schedule: str | float = "linear(1.0,0.1,100000)",
        stddev_clip: float = 0.3,
        batch_size: int = 256,
        nstep: int = 3,
        discount: float = 0.99,
        sa_kappa: float = 0.0,
        sa_eps: float = 0.05,
        sa_steps: int = 10,
        device: str = "cpu",
    ) -> None:
        if sa_kappa < 0 or sa_eps < 0 or sa_steps < 1:
            raise ValueError("drqv2: sa_kappa and sa_eps must be >= 0 and sa_steps >= 1")
        self.sa_kappa, self.sa_eps, self.sa_steps = float(sa_kappa), float(sa_eps), int(sa_steps)
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError("drqv2 needs a continuous (Box) action space")
        schedule(stddev_schedule, 0)  # reject a bad schedule now, not at the first update
        self.obs_dim = int(np.prod(observation_space.shape))
        self.action_dim = int(np.prod(action_space.shape))
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)
        self.device = torch.device(device)
        self.tau, self.num_expl_steps = critic_target_tau, num_expl_steps
        self.stddev_schedule, self.stddev_clip = stddev_schedule, stddev_clip
        self.schedule = UpdateSchedule(
            batch_size, update_every_steps, num_expl_steps, nstep, discount
        )
        self.actor = Actor(self.obs_dim, self.action_dim, hidden_dim).to(self.device)
        self.critic = Critic(self.obs_dim, self.action_dim, hidden_dim).to(self.device)
        self.critic_target = Critic(self.obs_dim, self.action_dim, hidden_dim).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr)

    def to_env_action(self, unit: np.ndarray) -> np.ndarray:
        """Map actions in [-1, 1] to the env's bounds."""
        return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)

    def to_unit_action(self, action: np.ndarray) -> np.ndarray:
        """Map env actions to [-1, 1] (what the critic sees)."""
        return 2.0 * (action - self.low) / (self.high - self.low) - 1.0

    @torch.no_grad()
    def act(self, obs: np.ndarray, step: int = 0, explore: bool = False) -> np.ndarray:
        """Actions (env units) for a batch of observations.

        :param obs: (B, obs_dim) observations.
        :param step: env steps so far (exploration schedule).
        :param explore: uniform actions before ``num_expl_steps``, then scheduled noise.
        """
        obs_t = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self.device).reshape(
            -1, self.obs_dim
        )
        mean = torch.tanh(self.actor(obs_t))
        if explore:
            if step < self.num_expl_steps:
                mean = torch.empty_like(mean).uniform_(-1.0, 1.0)
            else:
                noise = torch.randn_like(mean) * schedule(self.stddev_schedule, step)
                mean = torch.clamp(mean + noise, -1.0, 1.0)
        return self.to_env_action(mean.cpu().numpy())

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """One critic and one actor update.

        :param batch: n-step transitions (actions in env units).
        :param step: env steps so far.
        :return: metrics (losses, Q values).
        """
        batch = batch.to(self.device)
        action = torch.as_tensor(
            self.to_unit_action(batch.action.cpu().numpy()), device=self.device
        )
        std = schedule(self.stddev_schedule, step)
        with torch.no_grad():
            next_mean = torch.tanh(self.actor(batch.next_obs))
            noise = (torch.randn_like(next_mean) * std).clamp(-self.stddev_clip, self.stddev_clip)
            next_action = (next_mean + noise).clamp(-1.0, 1.0)
            target_q = torch.min(*self.critic_target(batch.next_obs, next_action))
            target = batch.reward + batch.discount * target_q
        q1, q2 = self.critic(batch.obs, action)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        mean = torch.tanh(self.actor(batch.obs))
        policy_action = (
            mean + (torch.randn_like(mean) * std).clamp(-self.stddev_clip, self.stddev_clip)
        ).clamp(-1.0, 1.0)
        actor_loss = -torch.min(*self.critic(batch.obs, policy_action)).mean()
        metrics: dict[str, float] = {}
        if self.sa_kappa > 0:
            penalty = self.sa_penalty(batch.obs)
            actor_loss = actor_loss + self.sa_kappa * penalty
            metrics["sa_regularizer"] = float(penalty.detach())
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        with torch.no_grad():
            for p, tp in zip(
                self.critic.parameters(), self.critic_target.parameters(), strict=True
            ):
                tp.lerp_(p, self.tau)
        return {
            "critic_loss": critic_loss.item(),
            "actor_loss": actor_loss.item(),
            "q": q1.mean().item(),
            "stddev": std,
            **metrics,
        }

    def sa_penalty(self, obs: torch.Tensor) -> torch.Tensor:
        """SA-DDPG's regulariser on a batch: the largest ``||pi(s') - pi(s)||^2`` of the
        deterministic action within the ``sa_eps`` box, by SA-PPO's SGLD
        (:func:`rlkit.agents.sa.sa_regularizer`).

        :param obs: observations (B, obs_dim).
        """
        from rlkit.agents.sa import sa_regularizer

        def divergence(actor: nn.Module, clean: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                reference = torch.tanh(actor(clean))
            return ((torch.tanh(actor(moved)) - reference) ** 2).sum(dim=-1)

        return sa_regularizer(self.actor, obs, self.sa_eps, self.sa_steps, divergence=divergence)

    def on_episode_end(self, info: dict[str, Any]) -> None:
        """Nothing to do at episode ends (DrQ-v2 keeps no per-episode state).

        :param info: the episode's final info.
        """

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimisers."""
        return {name: getattr(self, name).state_dict() for name in NETWORKS}

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        """Restore :meth:`state_dict` (only the actor when ``policy_only``).

        :param state: what :meth:`state_dict` returned.
        :param policy_only: load the actor only.
        """
        for name in ("actor",) if policy_only else NETWORKS:
            getattr(self, name).load_state_dict(state[name])

    def save(self, folder: Path) -> None:
        """Write networks and optimisers to ``folder/agent.pt`` (weights-only loadable).

        :param folder: the checkpoint or final folder.
        """
        save_torch(Path(folder) / STATE_FILE, self.state_dict())

    def load(self, folder: Path, policy_only: bool = False) -> None:
        """Restore :meth:`save` (``torch.load(weights_only=True)``).

        :param folder: the folder.
        :param policy_only: load the actor only.
        """
        self.load_state_dict(load_torch(Path(folder) / STATE_FILE), policy_only)

    def policy_view(self, live: bool = False) -> PolicyView:
        """Pre-tanh actor mean on raw observations (squash: tanh to the env bounds).

        :param live: share the training actor (for attacks inside training) instead of a frozen
            CPU copy.
        """
        if live:
            return PolicyView(self.actor.net, "continuous", "tanh", self.low, self.high).to(
                self.device
            )
        view = PolicyView(
            copy.deepcopy(self.actor.net).cpu(), "continuous", "tanh", self.low, self.high
        )
        view.eval()
        for param in view.parameters():
            param.requires_grad_(False)
        return view


def build_drqv2(
    config: ExperimentConfig, observation_space: gym.Space, action_space: gym.Space, env: Any = None
) -> DrQV2Agent:
    """Registry factory: ``agent.kwargs`` plus ``learning_rate`` (lr) and ``net_arch[0]`` (width).

    :param config: the experiment config.
    :param observation_space: flat Box observations.
    :param action_space: Box actions.
    :param env: unused (the loop steps the env).
    """
    kwargs = dict(config.agent.kwargs)
    if config.agent.learning_rate is not None:
        kwargs["lr"] = config.agent.learning_rate
    if config.agent.net_arch:
        kwargs["hidden_dim"] = config.agent.net_arch[0]
    return DrQV2Agent(observation_space, action_space, device=config.train.device, **kwargs)  # type: ignore[arg-type]
