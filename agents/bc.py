"""Behaviour cloning with a Gaussian policy, and the weighted form offline learners extract their
policy with (O-DICE trains the same policy with per-sample weights).

The policy lives in [-1, 1] action units; observation normalisation and the map to the env's
action bounds are modules inside it, so the saved model and its :meth:`policy_view` act on raw
observations in env units. The agent follows :class:`rlkit.agent.Agent` and knows nothing of
datasets, envs or logging. ``update`` returns 0-d tensors (never ``.item()``): the loop converts
them only when it logs, so an update does not wait for the device.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlkit.agent import UpdateSchedule
from rlkit.batch import Batch
from rlkit.io import load_torch, save_torch
from rlkit.networks import GaussianPolicy, Standardize, ToEnvUnits
from rlkit.policy import PolicyView

STATE_FILE = "agent.pt"


class _PolicyMean(nn.Module):
    """Normalised observation -> action mean in env units (the differentiable view's body)."""

    def __init__(self, policy: GaussianPolicy, units: ToEnvUnits) -> None:
        super().__init__()
        self.policy, self.units = policy, units

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.units(self.policy.mean(obs))


class BCAgent:
    """Behaviour cloning: maximise ``log pi(a|s)`` over the dataset's actions.

    :param observation_space: flat Box observations.
    :param action_space: Box actions (learned in [-1, 1] units, acted in the env's bounds).
    :param policy_hidden: hidden sizes of the policy MLP (the O-DICE authors' [1024, 1024]).
    :param tanh_mean: squash the policy mean with tanh (the authors' offline-imitation setting).
    :param policy_lr: Adam learning rate of the policy.
    :param weight_decay: Adam weight decay of the policy.
    :param lr: when given, the learning rate of every network (``agent.learning_rate``).
    :param batch_size: transitions per update.
    :param discount: discount the data source folds into ``Batch.discount``.
    :param device: torch device.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        policy_hidden: tuple[int, ...] = (1024, 1024),
        tanh_mean: bool = False,
        policy_lr: float = 2e-4,
        weight_decay: float = 1e-4,
        lr: float | None = None,
        batch_size: int = 256,
        discount: float = 0.99,
        device: str = "cpu",
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"{type(self).__name__} needs a continuous (Box) action space")
        self.obs_dim = int(np.prod(observation_space.shape or (1,)))
        self.action_dim = int(np.prod(action_space.shape))
        self.low = np.asarray(action_space.low, dtype=np.float32).reshape(-1)
        self.high = np.asarray(action_space.high, dtype=np.float32).reshape(-1)
        if not (np.isfinite(self.low).all() and np.isfinite(self.high).all()):
            raise ValueError("the action space must be bounded (finite low and high)")
        self.device = torch.device(device)
        self.schedule = UpdateSchedule(batch_size, 1, 0, 1, discount)
        hidden = list(policy_hidden)
        self.normalizer = Standardize(self.obs_dim).to(self.device)
        self.units = ToEnvUnits(self.low, self.high).to(self.device)
        self.policy = GaussianPolicy(self.obs_dim, self.action_dim, hidden, tanh_mean).to(
            self.device
        )
        self.policy_opt = torch.optim.Adam(
            self.policy.parameters(),
            lr=policy_lr if lr is None else lr,
            weight_decay=weight_decay,
            fused=True,
        )

    def set_obs_normalizer(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Standardise observations with these statistics (saved with the model).

        :param mean: per-feature mean of the dataset's observations.
        :param std: per-feature std (offset away from 0).
        """
        self.normalizer.set(mean, std)

    def _prepare(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, Batch]:
        """(normalised obs, actions in [-1, 1], the batch on the device)."""
        batch = batch.to(self.device)
        unit = self.units.inverse(batch.action.float().flatten(1)).clamp(-1.0, 1.0)
        return self.normalizer(batch.obs), unit, batch

    def policy_step(
        self, obs: torch.Tensor, action: torch.Tensor, weight: torch.Tensor | None
    ) -> torch.Tensor:
        """One Adam step on ``-mean(weight * log pi(action | obs))``; returns the loss (0-d).

        On the CPU the samples of weight zero skip the policy: O-DICE's
        ``relu`` weights are zero wherever the TD residual is negative (12% of a Hopper medium
        batch at the end of a 10k-step run, 77% of the speed benchmark's synthetic batches), and
        a zero-weight sample adds exactly nothing to the gradient, so the step is the same up to
        the order of the sums. On other devices the whole batch passes, since counting the kept
        samples would wait for the device.

        :param obs: normalised observations.
        :param action: dataset actions in [-1, 1] units.
        :param weight: per-sample weights broadcasting against (B,) (e.g. (heads, B): their
            mean over the heads weighs each sample), or None for plain BC.
        """
        if weight is None:
            loss = -self.policy.log_prob(obs, action).mean()
        else:
            batch = len(obs)
            per_sample = torch.broadcast_to(weight, (*weight.shape[:-1], batch))
            per_sample = per_sample.reshape(-1, batch).mean(0)
            if obs.device.type == "cpu":
                keep = torch.nonzero(per_sample != 0).squeeze(1)  # NaN and negatives stay
                obs, action, per_sample = obs[keep], action[keep], per_sample[keep]
            loss = (per_sample * -self.policy.log_prob(obs, action)).sum() / batch
        self.policy_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.policy_opt.step()
        return loss.detach()

    def update(self, batch: Batch, step: int) -> dict[str, Any]:
        """One behaviour-cloning step.

        :param batch: dataset transitions (actions in env units).
        :param step: updates so far.
        :return: ``policy_loss`` as a 0-d tensor.
        """
        obs, action, _ = self._prepare(batch)
        return {"policy_loss": self.policy_step(obs, action, None)}

    @torch.no_grad()
    def act(self, obs: np.ndarray, step: int = 0, explore: bool = False) -> np.ndarray:
        """Env actions for a batch of raw observations: the clipped mean, or a sample.

        :param obs: (B, *obs_shape) raw observations.
        :param step: unused (no exploration schedule offline).
        :param explore: sample from the Gaussian instead of taking its mean.
        """
        obs_t = torch.as_tensor(np.asarray(obs), device=self.device).reshape(len(obs), -1)
        normed = self.normalizer(obs_t)
        unit = self.policy.sample(normed) if explore else self.policy.mean(normed).clamp(-1, 1)
        return self.units(unit).cpu().numpy()

    def on_episode_end(self, info: dict[str, Any]) -> None:
        """Offline agents keep no per-episode state.

        :param info: unused.
        """

    def policy_modules(self) -> dict[str, nn.Module]:
        """What acting needs (loaded with ``policy_only``)."""
        return {"policy": self.policy, "normalizer": self.normalizer}

    def training_modules(self) -> dict[str, Any]:
        """Everything else a resumed run needs (optimisers, value networks)."""
        return {"policy_opt": self.policy_opt}

    def save(self, folder: Path) -> None:
        """Write every network, optimiser and the normaliser to ``folder/agent.pt``.

        :param folder: the checkpoint or final folder.
        """
        parts = {**self.policy_modules(), **self.training_modules()}
        save_torch(Path(folder) / STATE_FILE, {k: v.state_dict() for k, v in parts.items()})

    def load(self, folder: Path, policy_only: bool = False) -> None:
        """Restore :meth:`save` (``torch.load(weights_only=True)``).

        :param folder: the folder.
        :param policy_only: load the policy and normaliser only.
        """
        state = load_torch(Path(folder) / STATE_FILE)
        parts = dict(self.policy_modules())
        if not policy_only:
            parts.update(self.training_modules())
        for name, part in parts.items():
            part.load_state_dict(state[name])

    def policy_view(self, live: bool = False) -> PolicyView:
        """Raw observation -> action mean in env units (squash: clip to the bounds).

        :param live: share the training policy instead of a frozen CPU copy.
        """
        body: nn.Module = _PolicyMean(self.policy, self.units)
        normalizer: nn.Module = self.normalizer
        if not live:
            body, normalizer = copy.deepcopy(body).cpu(), copy.deepcopy(normalizer).cpu()
        view = PolicyView(body, "continuous", "clip", self.low, self.high, normalizer=normalizer)
        if live:
            return view.to(self.device)
        view.eval()
        for param in view.parameters():
            param.requires_grad_(False)
        return view
