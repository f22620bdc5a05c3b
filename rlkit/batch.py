"""The one batch type shared by online replay and offline datasets."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Batch:
    """A batch of (n-step) transitions as float tensors.

    ``discount`` already folds in termination and the n-step horizon: the target is
    ``reward + discount * V(next_obs)`` with ``discount = gamma**k * (1 - terminated)``, so a
    truncated (time-limit) episode still bootstraps and a terminated one does not.

    :param obs: observations (B, *obs_shape).
    :param action: actions (B, *action_shape).
    :param reward: summed discounted rewards (B, 1).
    :param discount: bootstrap factor (B, 1).
    :param next_obs: observations to bootstrap from (B, *obs_shape).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor
    next_obs: torch.Tensor

    def to(self, device: str | torch.device) -> Batch:
        """The same batch on ``device``."""
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})
