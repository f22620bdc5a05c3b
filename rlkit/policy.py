"""Differentiable policy views: what attacks differentiate through.

A view maps a batch of *raw* observations (the env's own observation space; any normalisation
lives inside the view) to

- continuous agents: the action mean before squashing, shape (B, act_dim), and ``squash`` maps
  it to the env action (tanh + rescale, or clipping);
- discrete agents: the logits, shape (B, n_actions) (one discrete dimension) and ``squash`` is
  the argmax.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

ActionKind = Literal["continuous", "discrete"]


class ObsNormalizer(nn.Module):
    """``clip((obs - mean) / sqrt(var + eps), -clip, clip)`` with frozen statistics.

    :param mean: running mean of the observations.
    :param var: running variance.
    :param clip: clipping range of the normalised observation.
    :param eps: added to the variance.
    """

    def __init__(
        self, mean: np.ndarray, var: np.ndarray, clip: float = 10.0, eps: float = 1e-8
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.sqrt(torch.as_tensor(var, dtype=torch.float32) + eps))
        self.clip = float(clip)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.clamp((obs - self.mean) / self.std, -self.clip, self.clip)


class PolicyView(nn.Module):
    """Raw observation -> pre-squash action mean (continuous) or logits (discrete).

    :param body: module mapping normalised observations to the output.
    :param action_kind: "continuous" or "discrete".
    :param squash: "tanh" (SAC: tanh then rescale to the bounds), "clip" (PPO/A2C: clip to the
        bounds), "none" (already in the env's action units) or "argmax" (discrete).
    :param low: lower action bounds (continuous).
    :param high: upper action bounds (continuous).
    :param normalizer: optional observation normaliser applied first.
    """

    def __init__(
        self,
        body: nn.Module,
        action_kind: ActionKind,
        squash: str,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
        normalizer: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.action_kind: ActionKind = action_kind
        self.squash_kind = squash
        self.normalizer = normalizer if normalizer is not None else nn.Identity()
        if low is not None and high is not None:
            self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))
        else:
            self.low = self.high = None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalizer(obs.float()))

    def squash(self, output: torch.Tensor) -> torch.Tensor:
        """Map the view's output to the env action (bin index for discrete views).

        :param output: what :meth:`forward` returned.
        """
        if self.squash_kind == "argmax":
            return output.argmax(dim=-1)
        if self.squash_kind == "tanh":
            unit = torch.tanh(output)
            return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)
        if self.squash_kind == "clip":
            return torch.clamp(output, self.low, self.high)
        return output

    @torch.no_grad()
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic env action for a batch of raw observations."""
        return self.squash(self(obs))


def continuous_view(
    body: nn.Module, low: np.ndarray, high: np.ndarray, live: bool, device: torch.device | str
) -> PolicyView:
    """A tanh-squashed continuous view of a native agent's ``body`` (raw obs -> pre-tanh mean).

    :param body: the agent's encoder and actor as one module.
    :param low: lower action bounds.
    :param high: upper action bounds.
    :param live: share the training modules (attacks inside training) instead of a frozen,
        eval-mode CPU copy.
    :param device: the agent's device (live views stay on it).
    """
    if live:
        return PolicyView(body, "continuous", "tanh", low, high).to(device)
    import copy

    view = PolicyView(copy.deepcopy(body).cpu(), "continuous", "tanh", low, high)
    view.eval()
    for param in view.parameters():
        param.requires_grad_(False)
    return view
