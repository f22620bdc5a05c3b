"""The one batch type shared by online replay and offline datasets, and the data-source protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@dataclass
class Batch:
    """A batch of (n-step) transitions as tensors.

    ``discount`` already folds in termination and the n-step horizon: the target is
    ``reward + discount * V(next_obs)`` with ``discount = gamma**k * (1 - terminated)``, so a
    truncated (time-limit) episode still bootstraps and a terminated one does not.

    :param obs: observations (B, *obs_shape), in the dtype the source stores (uint8 frames stay
        uint8: the agent's encoder converts them).
    :param action: actions (B, *action_shape).
    :param reward: summed discounted rewards (B, 1).
    :param discount: bootstrap factor (B, 1).
    :param next_obs: observations to bootstrap from (B, *obs_shape).
    :param extras: learner-specific fields (e.g. an offline learner's initial observations or
        ``terminated`` flags); every tensor has the batch as its first dimension.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor
    next_obs: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def to(self, device: str | torch.device) -> Batch:
        """The same batch on ``device``.

        :param device: the torch device.
        """
        return Batch(
            self.obs.to(device),
            self.action.to(device),
            self.reward.to(device),
            self.discount.to(device),
            self.next_obs.to(device),
            {key: value.to(device) for key, value in self.extras.items()},
        )


@runtime_checkable
class DataSource(Protocol):
    """Anything an agent learns from: replay buffers and offline datasets alike."""

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Draw ``batch_size`` transitions with ``rng`` (whose state the loop checkpoints).

        :param batch_size: transitions in the batch.
        :param rng: numpy generator.
        """
        ...

    def __len__(self) -> int:
        """Transitions available."""
        ...
