"""Shared visual networks (DrQ-v2's): random shift, encoders, trunk, actor, critic, init."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.networks import (
    DrQActor,
    DrQCritic,
    EncodedPolicy,
    FlatEncoder,
    PixelEncoder,
    RandomShift,
    Trunk,
    conv_output_size,
    make_encoder,
    weight_init,
)


def images(n: int = 3, c: int = 2, size: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g).float()


def assert_orthonormal_rows(matrix: torch.Tensor, gain: float = 1.0) -> None:
    """Orthogonal init: rows orthonormal when there are fewer rows than columns, else columns."""
    m = matrix.detach().reshape(matrix.shape[0], -1)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0]), atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# random shift


def test_shift_with_pad_zero_is_the_identity():
    x = images()
    torch.manual_seed(0)
    torch.testing.assert_close(RandomShift(0)(x), x, atol=1e-3, rtol=0)


@pytest.mark.parametrize("offsets", [[[0, 0], [8, 8], [3, 1]], [[4, 4], [0, 8], [7, 2]]])
def test_shift_equals_replicate_padding_then_an_integer_crop(offsets):
    x, pad = images(), 4
    padded = F.pad(x, (pad,) * 4, mode="replicate")
    out = RandomShift(pad).shift(x, torch.tensor(offsets))
    for b, (dx, dy) in enumerate(offsets):
        expected = padded[b, :, dy : dy + 12, dx : dx + 12]  # dx moves along the width
        torch.testing.assert_close(out[b], expected, atol=1e-3, rtol=0)


def test_shift_at_the_centre_offset_is_the_identity_and_borders_replicate():
    x = images(n=1)
    out = RandomShift(4).shift(x, torch.tensor([[4, 4]]))
    torch.testing.assert_close(out, x, atol=1e-3, rtol=0)
    left = RandomShift(4).shift(x, torch.tensor([[0, 4]]))  # window 4 pixels to the left
    torch.testing.assert_close(
        left[0, :, :, :5], x[0, :, :, :1].expand(-1, -1, 5), atol=1e-3, rtol=0
    )
    torch.testing.assert_close(left[0, :, :, 5:], x[0, :, :, 1:8], atol=1e-3, rtol=0)


def test_random_shift_draws_per_image_offsets_from_the_global_rng():
    x, shift = images(n=64), RandomShift(4)
    torch.manual_seed(3)
    out = shift(x)
    torch.manual_seed(3)
    offsets = torch.randint(0, 9, (64, 2))
    torch.testing.assert_close(out, shift.shift(x, offsets))
    assert len({tuple(o) for o in offsets.tolist()}) > 20  # different shifts per image
    with pytest.raises(ValueError, match="square"):
        shift(torch.zeros(1, 1, 8, 9))


# ---------------------------------------------------------------------------------------------
# encoders


def test_pixel_encoder_size_on_84x84_frames():
    encoder = PixelEncoder((9, 84, 84))
    assert encoder.repr_dim == 32 * 35 * 35 == 39200 and conv_output_size(84) == 35
    assert encoder(torch.zeros(2, 9, 84, 84)).shape == (2, 39200)
    assert PixelEncoder((3, 24, 24)).repr_dim == 32 * 5 * 5


def test_pixel_encoder_scales_by_255_and_centres():
    """First conv averages its 3x3x3 patch, the others copy their channel: the output is
    relu(value / 255 - 0.5) for a constant image."""
    encoder = PixelEncoder((3, 16, 16))
    first, *rest = [m for m in encoder.convnet if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        first.weight.fill_(1.0 / 27)
        first.bias.zero_()
        for conv in rest:
            conv.weight.zero_()
            conv.bias.zero_()
            for ch in range(32):
                conv.weight[ch, ch, 1, 1] = 1.0
    for value, expected in [(255, 0.5), (0, 0.0), (204, 0.3), (51, 0.0), (191.25, 0.25)]:
        out = encoder(torch.full((1, 3, 16, 16), float(value)))
        torch.testing.assert_close(out, torch.full_like(out, expected), atol=1e-6, rtol=0)
    uint8 = torch.full((1, 3, 16, 16), 255, dtype=torch.uint8)  # uint8 tensors are accepted too
    torch.testing.assert_close(encoder(uint8), torch.full((1, encoder.repr_dim), 0.5))


def test_pixel_encoder_bf16_runs_its_convolutions_in_bf16_only():
    torch.manual_seed(0)
    plain, fast = PixelEncoder((9, 84, 84)), PixelEncoder((9, 84, 84), bf16=True)
    fast.load_state_dict(plain.state_dict())
    obs = torch.randint(0, 256, (4, 9, 84, 84)).float()
    exact, rounded = plain(obs), fast(obs)
    assert rounded.dtype == torch.float32 and not torch.equal(exact, rounded)
    # bf16 keeps 8 bits of mantissa: about 1% of the output's scale after four convolutions
    assert (rounded - exact).abs().max() < 0.02 * exact.abs().max()
    rounded.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in fast.parameters())
    pixels = gym.spaces.Box(0, 255, (9, 84, 84), np.uint8)
    assert make_encoder(pixels, bf16=True).bf16 and not make_encoder(pixels).bf16


def test_flat_encoder_is_the_identity_and_flattens():
    encoder = FlatEncoder(6)
    x = torch.randn(4, 2, 3)
    assert encoder.repr_dim == 6 and not list(encoder.parameters())
    torch.testing.assert_close(encoder(x), x.reshape(4, 6))


def test_make_encoder_chooses_by_shape_and_dtype():
    pixels = make_encoder(gym.spaces.Box(0, 255, (9, 84, 84), np.uint8))
    assert isinstance(pixels, PixelEncoder) and pixels.repr_dim == 39200
    float_cube = make_encoder(gym.spaces.Box(0.0, 1.0, (2, 3, 4), np.float32))
    assert isinstance(float_cube, FlatEncoder) and float_cube.repr_dim == 24
    assert make_encoder(gym.spaces.Box(-1.0, 1.0, (5,), np.float32)).repr_dim == 5
    with pytest.raises(ValueError, match="Box"):
        make_encoder(gym.spaces.Discrete(3))


# ---------------------------------------------------------------------------------------------
# trunk, actor, critic, init


def test_weight_init_is_orthogonal_with_zero_biases():
    torch.manual_seed(0)
    linear, wide, conv, norm = (
        nn.Linear(20, 7),
        nn.Linear(7, 20),
        nn.Conv2d(3, 8, 3),
        nn.LayerNorm(5),
    )
    for module in (linear, wide, conv, norm):
        module.apply(weight_init)
    assert_orthonormal_rows(linear.weight)
    assert_orthonormal_rows(wide.weight)
    assert_orthonormal_rows(conv.weight, gain=2**0.5)  # ReLU gain on convolutions
    for module in (linear, wide, conv):
        assert torch.equal(module.bias, torch.zeros_like(module.bias))
    assert torch.equal(norm.weight, torch.ones(5))  # other modules keep their own init


def test_trunk_is_linear_layernorm_tanh():
    torch.manual_seed(0)
    trunk = Trunk(30, 50)
    x = torch.randn(8, 30)
    out = trunk(x)
    assert out.shape == (8, 50) and out.abs().max() < 1
    pre = torch.atanh(out.double())  # LayerNorm output: zero mean, unit variance per row
    torch.testing.assert_close(pre.mean(-1), torch.zeros(8, dtype=torch.double), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        pre.var(-1, unbiased=False), torch.ones(8, dtype=torch.double), atol=1e-3, rtol=0
    )


def test_actor_layers_shapes_and_init():
    torch.manual_seed(0)
    actor = DrQActor(40, 3, feature_dim=10, hidden_dim=32)
    assert isinstance(actor.middle, nn.Linear) and actor.middle.weight.shape == (32, 32)
    assert (actor.input.in_features, actor.head.out_features) == (10, 3)
    for layer in (actor.trunk[0], actor.input, actor.middle, actor.head):
        assert_orthonormal_rows(layer.weight)
    features = torch.randn(5, 40)
    mean, aux = actor.forward_with_aux(features)
    assert mean.shape == (5, 3) and float(aux) == 0.0
    h = F.relu(actor.input(actor.trunk(features)))
    torch.testing.assert_close(actor(features), actor.head(F.relu(actor.middle(h))))


class DoublingMiddle(nn.Module):
    """A middle that returns (output, aux loss), as MENTOR's mixture of experts does."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(32, 32)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return 2.0 * self.proj(h), h.new_tensor(3.0)


def test_actor_with_a_middle_returning_an_aux_loss():
    torch.manual_seed(0)
    middle = DoublingMiddle()
    actor = DrQActor(40, 3, feature_dim=10, hidden_dim=32, middle=middle)
    assert actor.middle is middle
    assert_orthonormal_rows(middle.proj.weight)  # the middle is initialised like the rest
    features = torch.randn(5, 40)
    mean, aux = actor.forward_with_aux(features)
    h = F.relu(actor.input(actor.trunk(features)))
    torch.testing.assert_close(mean, actor.head(F.relu(2.0 * middle.proj(h))))
    assert float(aux) == 3.0
    torch.testing.assert_close(actor(features), mean)


def test_critic_twin_heads():
    torch.manual_seed(0)
    critic = DrQCritic(40, 3, feature_dim=10, hidden_dim=32)
    features, action = torch.randn(6, 40), torch.rand(6, 3) * 2 - 1
    q1, q2 = critic(features, action)
    assert q1.shape == q2.shape == (6, 1) and not torch.allclose(q1, q2)
    h = torch.cat([critic.trunk(features), action], dim=-1)
    torch.testing.assert_close(q1, critic.q1(h))
    assert critic.q1[0].in_features == 13 and critic.q1[2].weight.shape == (32, 32)


def test_encoded_policy_chains_encoder_and_actor():
    torch.manual_seed(0)
    encoder = PixelEncoder((3, 16, 16))
    actor = DrQActor(encoder.repr_dim, 2, 10, 32)
    obs = images(n=2, c=3, size=16)
    torch.testing.assert_close(EncodedPolicy(encoder, actor)(obs), actor(encoder(obs)))
