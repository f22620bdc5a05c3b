"""Networks shared by rlkit's native agents: MLPs, twin value heads, the Gaussian policy of the
offline learners, and the small modules that put observation normalisation and action units
inside a policy (so a saved model acts on raw observations and attacks see the env's units)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
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


# ---------------------------------------------------------------------------------------------
# Visual actor-critic networks (DrQ-v2, Yarats et al. 2021; reused by MENTOR). One copy lives
# here: agents/drqv2.py and agents/mentor.py both build from these classes.


def weight_init(module: nn.Module) -> None:
    """DrQ-v2's initialisation, for ``module.apply``: orthogonal Linear weights, orthogonal
    Conv weights with the ReLU gain, zero biases; other modules are left as they are.

    :param module: one module of the tree being initialised.
    """
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight.data)
        if module.bias is not None:
            module.bias.data.fill_(0.0)
    elif isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.fill_(0.0)


class RandomShift(nn.Module):
    """DrQ-v2's random-shift augmentation: replicate-pad by ``pad`` pixels, then take an
    (H, W) window at an integer offset in ``[0, 2 pad]`` per image, drawn from torch's global
    RNG (so the loop's checkpointed RNG state makes resuming exact). The window is read with
    ``grid_sample`` at pixel centres, as the authors do, which equals an integer crop up to
    float rounding.

    :param pad: padding in pixels (4 in DrQ-v2); 0 is the identity.
    """

    def __init__(self, pad: int = 4) -> None:
        super().__init__()
        if pad < 0:
            raise ValueError(f"RandomShift pad must be >= 0, got {pad}")
        self.pad = int(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offsets = torch.randint(0, 2 * self.pad + 1, (x.shape[0], 2), device=x.device)
        return self.shift(x, offsets)

    def shift(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Shift each image by given integer offsets: ``out[..., i, j] = padded[..., i + dy,
        j + dx]`` for ``offsets[b] = (dx, dy)``.

        :param x: float images (B, C, H, W) with H == W.
        :param offsets: (B, 2) integer offsets (x first, as in ``grid_sample``'s grid).
        """
        n, _, h, w = x.shape
        if h != w:
            raise ValueError(f"RandomShift needs square images, got {h}x{w}")
        padded = F.pad(x, (self.pad,) * 4, mode="replicate")
        size = h + 2 * self.pad
        eps = 1.0 / size
        # normalised centres of the first h padded pixels; the offset moves the window
        arange = torch.linspace(-1.0 + eps, 1.0 - eps, size, device=x.device, dtype=x.dtype)[:h]
        arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
        base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2).unsqueeze(0)
        shift = offsets.to(x.dtype).reshape(n, 1, 1, 2) * (2.0 / size)
        return F.grid_sample(padded, base_grid + shift, padding_mode="zeros", align_corners=False)


def conv_output_size(size: int) -> int:
    """Side length after :class:`PixelEncoder`'s convolutions (3x3; strides 2, 1, 1, 1).

    :param size: input side length (84 gives 35).
    """
    size = (size - 3) // 2 + 1
    return size - 3 * 2


class PixelEncoder(nn.Module):
    """DrQ-v2's image encoder: ``obs / 255 - 0.5`` then four 3x3 convolutions with 32 channels
    (the first with stride 2) and ReLUs, flattened. Input: uint8-range floats (B, C, H, W).

    :param obs_shape: (C, H, W), e.g. (9, 84, 84) for three stacked RGB frames.
    :param bf16: run the convolutions under bfloat16 autocast (the weights, the gradients and
        everything after the encoder stay float32): about 3x faster on CPUs with bf16 matrix
        units (AMX) and on recent GPUs, at bf16's 8-bit mantissa; DrQ-v2 and MENTOR ran float32.
        Input changes finer than bf16's resolution (about half a pixel level near mid-grey) are
        partly rounded away: keep float32 for SA regularisation or attacks whose budgets are a
        pixel level or less.
    """

    def __init__(self, obs_shape: tuple[int, int, int], bf16: bool = False) -> None:
        super().__init__()
        self.bf16 = bf16
        if len(obs_shape) != 3:
            raise ValueError(f"PixelEncoder needs a (C, H, W) shape, got {obs_shape}")
        channels, height, width = (int(s) for s in obs_shape)
        if min(height, width) < 11:
            raise ValueError(f"PixelEncoder needs images of at least 11x11, got {height}x{width}")
        self.obs_shape = (channels, height, width)
        self.repr_dim = 32 * conv_output_size(height) * conv_output_size(width)
        self.convnet = nn.Sequential(
            nn.Conv2d(channels, 32, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
        )
        self.apply(weight_init)
        # NHWC convolutions: 1.4-1.5x faster forward and backward on this CPU (oneDNN), same values
        self.convnet.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = (obs.float() / 255.0 - 0.5).contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            h = self.convnet(x).float()
        # flatten in (C, H, W) order whatever the memory layout, as the NCHW encoder does
        return h.contiguous().reshape(h.shape[0], -1)


class FlatEncoder(nn.Module):
    """The identity for state vectors (flattened to (B, obs_dim) floats), so one agent serves
    states and pixels.

    :param obs_dim: observation size.
    """

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.repr_dim = int(obs_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.float().reshape(obs.shape[0], self.repr_dim)


def is_pixel_space(space: object) -> bool:
    """Whether ``space`` holds images: a 3-D uint8 Box, (C, H, W).

    :param space: an observation space.
    """
    shape = getattr(space, "shape", None)
    return shape is not None and len(shape) == 3 and np.dtype(space.dtype) == np.uint8  # type: ignore[attr-defined]


def make_encoder(observation_space: object, bf16: bool = False) -> PixelEncoder | FlatEncoder:
    """:class:`PixelEncoder` for a 3-D uint8 Box (C, H, W), :class:`FlatEncoder` for any other
    Box (flattened).

    :param observation_space: the env's observation space.
    :param bf16: the pixel encoder's bfloat16 autocast (see :class:`PixelEncoder`).
    """
    shape = getattr(observation_space, "shape", None)
    if shape is None or not shape:
        raise ValueError(f"need a Box observation space, got {observation_space}")
    if is_pixel_space(observation_space):
        return PixelEncoder((int(shape[0]), int(shape[1]), int(shape[2])), bf16)
    return FlatEncoder(int(np.prod(shape)))


class Trunk(nn.Sequential):
    """DrQ-v2's trunk: Linear -> LayerNorm -> Tanh, from the encoder's output to features.

    :param repr_dim: encoder output size.
    :param feature_dim: feature size (50 in DrQ-v2).
    """

    def __init__(self, repr_dim: int, feature_dim: int) -> None:
        super().__init__(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())


class DrQActor(nn.Module):
    """DrQ-v2's deterministic actor: trunk -> Linear(feature, hidden) -> ReLU -> ``middle`` ->
    ReLU -> Linear(hidden, action); the output is the pre-tanh action mean.

    ``middle`` defaults to Linear(hidden, hidden) (DrQ-v2). MENTOR passes its mixture of
    experts; a middle may return a tensor or ``(tensor, aux_loss)``: :meth:`forward` keeps the
    tensor, :meth:`forward_with_aux` also returns the auxiliary loss (0 for a plain middle).
    DrQ-v2's :func:`weight_init` is applied to every layer, the middle included (as MENTOR does).

    :param repr_dim: encoder output size.
    :param action_dim: action size.
    :param feature_dim: trunk output size.
    :param hidden_dim: hidden width.
    :param middle: module mapping (B, hidden) to (B, hidden) [or with an aux loss].
    """

    def __init__(
        self,
        repr_dim: int,
        action_dim: int,
        feature_dim: int = 50,
        hidden_dim: int = 1024,
        middle: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.trunk = Trunk(repr_dim, feature_dim)
        self.input = nn.Linear(feature_dim, hidden_dim)
        self.middle = middle if middle is not None else nn.Linear(hidden_dim, hidden_dim)
        self.head = nn.Linear(hidden_dim, action_dim)
        self.apply(weight_init)

    def relu_fed_linears(self) -> list[nn.Module]:
        """The Linear layers whose output goes through ``F.relu`` (for the dormant ratio)."""
        layers: list[nn.Module] = [self.input]
        return layers + ([self.middle] if isinstance(self.middle, nn.Linear) else [])

    def forward_with_aux(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-tanh mean (B, A) and the middle's auxiliary loss (a 0-d tensor).

        :param features: encoder outputs (B, repr_dim).
        """
        h = F.relu(self.input(self.trunk(features)))
        out = self.middle(h)
        if isinstance(out, tuple):
            out, aux = out
        else:
            aux = h.new_zeros(())
        return self.head(F.relu(out)), aux

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(features)[0]


class DrQCritic(nn.Module):
    """DrQ-v2's twin Q: a shared trunk, then two heads Linear -> ReLU -> Linear -> ReLU ->
    Linear on ``[features, action]``.

    :param repr_dim: encoder output size.
    :param action_dim: action size.
    :param feature_dim: trunk output size.
    :param hidden_dim: hidden width.
    """

    def __init__(
        self, repr_dim: int, action_dim: int, feature_dim: int = 50, hidden_dim: int = 1024
    ) -> None:
        super().__init__()
        self.trunk = Trunk(repr_dim, feature_dim)
        self.q1 = mlp([feature_dim + action_dim, hidden_dim, hidden_dim, 1])
        self.q2 = mlp([feature_dim + action_dim, hidden_dim, hidden_dim, 1])
        self.apply(weight_init)

    def forward(
        self, features: torch.Tensor, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.trunk(features), action], dim=-1)
        return self.q1(h), self.q2(h)


class EncodedPolicy(nn.Module):
    """Encoder then actor: raw observations (uint8-range floats for pixels) to the pre-tanh
    action mean, with no augmentation (the body of a pixel agent's policy view).

    :param encoder: the observation encoder.
    :param actor: the actor on encoder outputs.
    """

    def __init__(self, encoder: nn.Module, actor: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self.encoder(obs))
