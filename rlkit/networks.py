"""Networks shared by rlkit's native agents: MLPs, twin value heads, the Gaussian policy of the
offline learners, and the small modules that put observation normalisation and action units
inside a policy (so a saved model acts on raw observations and attacks see the env's units)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mlp(dims: list[int], layer_norm: bool = False) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them, optionally LayerNorm before each ReLU.

    :param dims: input, hidden..., output sizes.
    :param layer_norm: LayerNorm after every hidden Linear (the O-DICE value network).
    """
    if len(dims) < 2:
        raise ValueError(f"an MLP needs an input and an output size, got {dims}")
    layers: list[nn.Module] = []
    for inp, out in zip(dims[:-2], dims[1:-1], strict=True):
        layers.append(nn.Linear(inp, out))
        if layer_norm:
            layers.append(nn.LayerNorm(out))
        layers.append(nn.ReLU())
    layers.append(nn.Linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)


class TwinValue(nn.Module):
    """Two state-value heads V1, V2; ``forward`` is their minimum, ``both`` stacks them (2, B).

    :param obs_dim: observation size.
    :param hidden: hidden layer sizes.
    :param layer_norm: LayerNorm in the hidden layers.
    :param twin: two heads (min for targets); one head when false.
    """

    def __init__(
        self, obs_dim: int, hidden: list[int], layer_norm: bool = True, twin: bool = True
    ) -> None:
        super().__init__()
        dims = [obs_dim, *hidden, 1]
        self.heads = nn.ModuleList(mlp(dims, layer_norm) for _ in range(2 if twin else 1))

    def both(self, obs: torch.Tensor) -> torch.Tensor:
        """Every head's value, shape (heads, B).

        :param obs: (B, obs_dim) observations.
        """
        return torch.stack([head(obs).squeeze(-1) for head in self.heads])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.both(obs).min(dim=0).values


class GaussianPolicy(nn.Module):
    """Gaussian policy with a state-independent log-std (clamped to [-5, 2]) in [-1, 1] units.

    The mean is not squashed unless ``tanh_mean`` (the O-DICE authors' offline-RL and
    offline-imitation settings); acting clips it to [-1, 1].

    :param obs_dim: observation size.
    :param action_dim: action size.
    :param hidden: hidden layer sizes (the authors used [1024, 1024]).
    :param tanh_mean: squash the mean with tanh.
    """

    def __init__(
        self, obs_dim: int, action_dim: int, hidden: list[int], tanh_mean: bool = False
    ) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *hidden, action_dim])
        self.log_std = nn.Parameter(torch.zeros(action_dim))
        self.tanh_mean = tanh_mean

    def mean(self, obs: torch.Tensor) -> torch.Tensor:
        """The action mean (B, action_dim).

        :param obs: normalised observations.
        """
        out = self.net(obs)
        return torch.tanh(out) if self.tanh_mean else out

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(action | obs), shape (B,): the diagonal Gaussian written out (the same value as
        the authors' ``MultivariateNormal`` with a diagonal ``scale_tril``, without its solve).

        :param obs: normalised observations.
        :param action: actions in [-1, 1] units.
        """
        log_std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        z = (action - self.mean(obs)) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std - _HALF_LOG_2PI).sum(-1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """A sampled action, clipped to [-1, 1].

        :param obs: normalised observations.
        """
        std = torch.exp(self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX))
        mean = self.mean(obs)
        return (mean + std * torch.randn_like(mean)).clamp(-1.0, 1.0)


class Standardize(nn.Module):
    """``(obs - mean) / std`` with stored statistics (identity until they are set).

    :param obs_dim: observation size.
    """

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def set(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Store the statistics.

        :param mean: per-feature mean.
        :param std: per-feature std (already offset away from 0).
        """
        self.mean.copy_(torch.as_tensor(np.asarray(mean, dtype=np.float32).reshape(-1)))
        self.std.copy_(torch.as_tensor(np.asarray(std, dtype=np.float32).reshape(-1)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs.float().flatten(1) - self.mean) / self.std


class ToEnvUnits(nn.Module):
    """Map [-1, 1] actions to the env's bounds: ``low + (a + 1) / 2 * (high - low)``.

    :param low: lower bounds.
    :param high: upper bounds.
    """

    def __init__(self, low: np.ndarray, high: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32))
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32))

    def forward(self, unit: torch.Tensor) -> torch.Tensor:
        return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)

    def inverse(self, action: torch.Tensor) -> torch.Tensor:
        """Env actions to [-1, 1] units.

        :param action: actions in env units.
        """
        return 2.0 * (action - self.low) / (self.high - self.low) - 1.0
