"""DrQ-v2 actor-critic (Yarats et al. 2021) on pixels or state vectors.

DDPG with clipped double Q, n-step returns, a scheduled exploration std and clipped
target-policy noise, as in facebookresearch/drqv2. The networks are the shared ones of
:mod:`rlkit.networks` (MENTOR builds on the same classes): an encoder, then an actor and a twin
critic that each start with a Linear -> LayerNorm -> Tanh trunk.

- **Pixels** (a 3-D uint8 observation space, (C, H, W)): DrQ-v2's convolutional encoder on
  ``obs / 255 - 0.5``, random shifts (pad 4) of both observations in every update, the encoder
  trained by the critic loss only (the actor sees detached features).
- **States** (any other Box): the encoder is the identity and there is no augmentation; the rest
  is the same code.

The agent follows :class:`rlkit.agent.Agent`: ``act``, ``update(batch)``, ``save``/``load`` into a
folder, and a ``policy_view`` (encoder -> actor on raw observations) for attacks; it knows
nothing of envs, run directories or logging. Its randomness (exploration, shifts, target noise)
comes from torch's global RNG, which the online loop checkpoints, so resuming is exact.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.agent import UpdateSchedule
from rlkit.agents.sa_sgld import check_sa_settings, sa_regularizer, tanh_mean_divergence
from rlkit.batch import Batch
from rlkit.io import load_torch, save_torch
from rlkit.networks import (
    DrQActor,
    DrQCritic,
    EncodedPolicy,
    PixelEncoder,
    RandomShift,
    make_encoder,
)
from rlkit.policy import PolicyView, continuous_view

STATE_FILE = "agent.pt"
NETWORKS = ("actor", "critic", "critic_target", "actor_opt", "critic_opt")
ENCODER_NETWORKS = ("encoder", "encoder_opt")
# DrQ-v2's TruncatedNormal keeps samples this far inside [-1, 1]
BOUND_EPS = 1e-6


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


def clipped_sample(
    mean: torch.Tensor, std: float, clip: float | None = None, margin: float = BOUND_EPS
) -> torch.Tensor:
    """DrQ-v2's ``TruncatedNormal(mean, std).sample(clip)``: Gaussian noise (clipped to
    ``[-clip, clip]`` when given) added to ``mean``, then clamped inside [-1, 1] with a
    straight-through gradient (the clamp passes the gradient to ``mean`` unchanged).

    :param mean: action means in [-1, 1] (after tanh).
    :param std: noise std.
    :param clip: noise clip (None: unclipped, as when acting).
    :param margin: the clamp keeps samples this far inside [-1, 1] (DrQ-v2: 1e-6).
    """
    noise = torch.randn_like(mean) * std
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    sample = mean + noise
    clamped = sample.clamp(-1.0 + margin, 1.0 - margin)
    return sample - sample.detach() + clamped.detach()


class DrQV2Agent:
    """DrQ-v2 on pixels (3-D uint8 Box) or states (any other Box); actions live in [-1, 1] and
    are rescaled to the env's bounds.

    :param observation_space: (C, H, W) uint8 Box for pixels, else a Box of state vectors.
    :param action_space: Box action space.
    :param hidden_dim: hidden width of actor and critic (1024 in DrQ-v2).
    :param feature_dim: trunk output size of actor and critic (50 in DrQ-v2).
    :param lr: Adam learning rate (encoder, actor and critic).
    :param critic_target_tau: Polyak factor of the target critic.
    :param update_every_steps: env steps per update.
    :param num_expl_steps: uniformly random actions at the start (and no updates before).
    :param stddev_schedule: exploration std (``linear(1.0,0.1,100000)`` as in DrQ-v2).
    :param stddev_clip: clip of the target-policy and actor-loss noise.
    :param batch_size: replay batch size.
    :param nstep: n-step return horizon.
    :param discount: discount factor.
    :param aug_pad: random-shift padding in pixels for image observations (0: no augmentation).
    :param sa_kappa: weight of the SA regulariser on the actor loss (0: plain DrQ-v2; see
        :mod:`rlkit.agents.sa`).
    :param sa_eps: its observation box radius (in raw observation units).
    :param sa_steps: its SGLD steps.
    :param encoder_bf16: run the pixel encoder's convolutions under bfloat16 autocast (weights,
        gradients and the heads stay float32): about 3x faster encoder passes on CPUs with AMX;
        the authors ran float32, hence off by default (see :class:`rlkit.networks.PixelEncoder`).
    :param device: torch device.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        action_space: gym.spaces.Box,
        hidden_dim: int = 1024,
        feature_dim: int = 50,
        lr: float = 1e-4,
        critic_target_tau: float = 0.01,
        update_every_steps: int = 2,
        num_expl_steps: int = 2000,
        stddev_schedule: str | float = "linear(1.0,0.1,100000)",
        stddev_clip: float = 0.3,
        batch_size: int = 256,
        nstep: int = 3,
        discount: float = 0.99,
        aug_pad: int = 4,
        sa_kappa: float = 0.0,
        sa_eps: float = 0.05,
        sa_steps: int = 10,
        encoder_bf16: bool = False,
        device: str = "cpu",
    ) -> None:
        check_sa_settings("drqv2", sa_kappa, sa_eps, sa_steps)
        self.sa_kappa, self.sa_eps, self.sa_steps = float(sa_kappa), float(sa_eps), int(sa_steps)
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError("drqv2 needs a continuous (Box) action space")
        if isinstance(observation_space, gym.spaces.Dict):
            raise ValueError(
                "drqv2 takes Box observations; fused pixel+state (Dict) observations are "
                "supported by mentor only (or use the env's frames-only variant, e.g. Adroit's "
                "hand_state: false)"
            )
        schedule(stddev_schedule, 0)  # reject a bad schedule now, not at the first update
        self.obs_shape = tuple(int(s) for s in observation_space.shape)
        self.action_dim = int(np.prod(action_space.shape))
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)
        self.device = torch.device(device)
        self.tau, self.num_expl_steps = critic_target_tau, num_expl_steps
        self.stddev_schedule, self.stddev_clip = stddev_schedule, stddev_clip
        self.schedule = UpdateSchedule(
            batch_size, update_every_steps, num_expl_steps, nstep, discount
        )
        self.encoder = make_encoder(observation_space, encoder_bf16).to(self.device)
        self.pixels = isinstance(self.encoder, PixelEncoder)
        self.aug: nn.Module = RandomShift(aug_pad) if self.pixels and aug_pad > 0 else nn.Identity()
        self.obs_dim = self.encoder.repr_dim
        sizes = (self.encoder.repr_dim, self.action_dim, feature_dim, hidden_dim)
        self.actor = DrQActor(*sizes).to(self.device)
        self.critic = DrQCritic(*sizes).to(self.device)
        self.critic_target = DrQCritic(*sizes).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr, fused=True)
        # the identity encoder of states has no parameters (and Adam refuses an empty list)
        self.encoder_opt = (
            torch.optim.Adam(self.encoder.parameters(), lr=lr, fused=True) if self.pixels else None
        )
        self.networks = NETWORKS + (ENCODER_NETWORKS if self.pixels else ())
        self.policy_body = EncodedPolicy(self.encoder, self.actor)
        self.low_t = torch.as_tensor(self.low, device=self.device)
        self.high_t = torch.as_tensor(self.high, device=self.device)

    def to_env_action(self, unit: np.ndarray) -> np.ndarray:
        """Map actions in [-1, 1] to the env's bounds.

        :param unit: actions in [-1, 1].
        """
        return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)

    def to_unit_action(self, action: np.ndarray) -> np.ndarray:
        """Map env actions to [-1, 1] (what the critic sees).

        :param action: actions in env units.
        """
        return 2.0 * (action - self.low) / (self.high - self.low) - 1.0

    def observations(self, obs: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A batch of raw observations as float tensors (B, *obs_shape) on the agent's device
        (uint8 frames keep their 0-255 range: the encoder scales them).

        :param obs: one observation or a batch.
        """
        obs_t = torch.as_tensor(np.asarray(obs), device=self.device)
        return obs_t.float().reshape(-1, *self.obs_shape)

    @torch.no_grad()
    def act(self, obs: np.ndarray, step: int = 0, explore: bool = False) -> np.ndarray:
        """Actions (env units) for a batch of observations.

        :param obs: (B, *obs_shape) observations (uint8-range frames for pixels).
        :param step: env steps so far (exploration schedule).
        :param explore: uniform actions before ``num_expl_steps``, then scheduled noise.
        """
        mean = torch.tanh(self.policy_body(self.observations(obs)))
        if explore:
            if step < self.num_expl_steps:
                mean = torch.empty_like(mean).uniform_(-1.0, 1.0)
            else:
                mean = clipped_sample(mean, schedule(self.stddev_schedule, step))
        return self.to_env_action(mean.cpu().numpy())

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """One critic (and encoder) update, then one actor update, then the target's Polyak step.

        :param batch: n-step transitions (actions in env units; uint8 or float observations).
        :param step: env steps so far.
        :return: metrics (losses, Q values, the exploration std).
        """
        batch = batch.to(self.device)
        action = 2.0 * (batch.action.float() - self.low_t) / (self.high_t - self.low_t) - 1.0
        std = schedule(self.stddev_schedule, step)
        raw_obs = batch.obs.float()
        obs = self.encoder(self.aug(raw_obs))
        with torch.no_grad():
            next_obs = self.encoder(self.aug(batch.next_obs.float()))
        critic_loss, q1 = self.update_critic(obs, action, batch, next_obs, std)
        actor_loss, metrics = self.update_actor(obs.detach(), raw_obs, std)
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

    def update_critic(
        self,
        features: torch.Tensor,
        action: torch.Tensor,
        batch: Batch,
        next_features: torch.Tensor,
        std: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The clipped double-Q step of critic and encoder; returns (loss, Q1).

        :param features: encoded (augmented) observations, attached to the encoder.
        :param action: batch actions in [-1, 1].
        :param batch: the batch (rewards and discounts).
        :param next_features: encoded next observations (no gradient).
        :param std: the current noise std.
        """
        with torch.no_grad():
            next_mean = torch.tanh(self.actor(next_features))
            next_action = clipped_sample(next_mean, std, self.stddev_clip)
            target_q = torch.min(*self.critic_target(next_features, next_action))
            target = batch.reward + batch.discount * target_q
        q1, q2 = self.critic(features, action)
        loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        if self.encoder_opt is not None:
            self.encoder_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        if self.encoder_opt is not None:
            self.encoder_opt.step()
        return loss, q1

    def update_actor(
        self, features: torch.Tensor, raw_obs: torch.Tensor, std: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The actor step on detached features (the encoder learns from the critic only);
        returns the loss and extra metrics.

        :param features: encoded observations, detached.
        :param raw_obs: the batch's raw observations (for the SA regulariser).
        :param std: the current noise std.
        """
        mean = torch.tanh(self.actor(features))
        policy_action = clipped_sample(mean, std, self.stddev_clip)
        loss = -torch.min(*self.critic(features, policy_action)).mean()
        metrics: dict[str, float] = {}
        if self.sa_kappa > 0:
            penalty = self.sa_penalty(raw_obs)
            loss = loss + self.sa_kappa * penalty
            metrics["sa_regularizer"] = float(penalty.detach())
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        return loss, metrics

    def sa_penalty(self, obs: torch.Tensor) -> torch.Tensor:
        """SA-DDPG's regulariser on a batch: the largest ``||pi(s') - pi(s)||^2`` of the
        deterministic action within the ``sa_eps`` box around the raw observations, by SA-PPO's
        SGLD (:func:`rlkit.agents.sa.sa_regularizer`), through encoder and actor.

        :param obs: raw observations (B, *obs_shape).
        """
        return sa_regularizer(
            self.policy_body, obs, self.sa_eps, self.sa_steps, divergence=tanh_mean_divergence
        )

    def on_episode_end(self, info: dict[str, Any]) -> None:
        """Nothing to do at episode ends (DrQ-v2 keeps no per-episode state).

        :param info: the episode's final info.
        """

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimisers (the encoder's too, for pixels)."""
        return {name: getattr(self, name).state_dict() for name in self.networks}

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        """Restore :meth:`state_dict` (only the policy, encoder and actor, when ``policy_only``).

        :param state: what :meth:`state_dict` returned.
        :param policy_only: load the actor (and the pixel encoder) only.
        """
        policy = ("actor", "encoder") if self.pixels else ("actor",)
        for name in policy if policy_only else self.networks:
            getattr(self, name).load_state_dict(state[name])

    def save(self, folder: Path) -> None:
        """Write networks and optimisers to ``folder/agent.pt`` (weights-only loadable).

        :param folder: the checkpoint or final folder.
        """
        save_torch(Path(folder) / STATE_FILE, self.state_dict())

    def load(self, folder: Path, policy_only: bool = False) -> None:
        """Restore :meth:`save` (``torch.load(weights_only=True)``).

        :param folder: the folder.
        :param policy_only: load the policy (actor and pixel encoder) only.
        """
        self.load_state_dict(load_torch(Path(folder) / STATE_FILE), policy_only)

    def policy_view(self, live: bool = False) -> PolicyView:
        """Encoder then actor on raw observations (uint8-range floats (B, C, H, W) for pixels;
        the /255 scaling is inside; no augmentation): the pre-tanh mean, squashed by tanh to the
        env bounds.

        :param live: share the training encoder and actor (for attacks inside training) instead
            of a frozen CPU copy.
        """
        return continuous_view(self.policy_body, self.low, self.high, live, self.device)
