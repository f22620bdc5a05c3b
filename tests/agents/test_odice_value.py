"""The fused O-DICE value gradient: equal to autograd's three gradients, eager and compiled."""

from __future__ import annotations

import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch

from benchmarks.odice_reference import ReferenceODICE
from rlkit.agents.odice import ODICEAgent, f_star
from rlkit.agents.odice_value import orthogonal_gradient
from rlkit.batch import Batch
from rlkit.networks import TwinValue

OBS = 5


def autograd_gradient(
    value: TwinValue, target: TwinValue, batch: tuple[torch.Tensor, ...], divergence: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The orthogonal gradient by three autograd passes, flattened, and its coefficient."""
    obs, next_obs, reward, discount = batch
    lam, eta = 0.6, 0.7
    params = list(value.parameters())
    with torch.no_grad():
        tv, tn = target(obs), target(next_obs)
    v, vn = value.both(obs), value.both(next_obs)

    def flat(loss: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        return torch.cat([g.reshape(-1) for g in grads])

    gf = flat(lam * f_star(reward + discount * tn - v, divergence).mean())  # type: ignore[arg-type]
    gb = flat(lam * eta * f_star(reward + discount * vn - tv, divergence).mean())  # type: ignore[arg-type]
    g0 = flat((1 - lam) * v.mean())
    coef = (gf @ gb) / (gf @ gf)
    return g0 + gf + gb - coef * gf, coef


def make_nets(hidden: list[int], layer_norm: bool, twin: bool) -> tuple[TwinValue, TwinValue]:
    nets = TwinValue(OBS, hidden, layer_norm, twin), TwinValue(OBS, hidden, layer_norm, twin)
    for net in nets:  # move LayerNorm off its identity initialisation
        for p in net.parameters():
            p.data.add_(0.1 * torch.randn_like(p))
    return nets


@pytest.mark.parametrize("divergence", ["chi_square", "reverse_kl"])
@pytest.mark.parametrize(("hidden", "layer_norm", "twin"), [
    ([16, 16], True, True), ([16], False, True), ([8, 16, 8], True, False),
    ([16, 16], False, False),
])  # fmt: skip
def test_fused_gradient_equals_three_autograd_passes(
    hidden: list[int], layer_norm: bool, twin: bool, divergence: str
) -> None:
    torch.manual_seed(0)
    value, target = make_nets(hidden, layer_norm, twin)
    g = torch.Generator().manual_seed(1)
    n = 24
    batch = (
        torch.randn(n, OBS, generator=g),
        torch.randn(n, OBS, generator=g),
        torch.randn(n, generator=g) * 2,
        0.99 * (torch.rand(n, generator=g) > 0.2).float(),
    )
    expected, expected_coef = autograd_gradient(value, target, batch, divergence)
    heads = [list(h.parameters()) for h in value.heads]
    targets = [list(h.parameters()) for h in target.heads]
    with torch.no_grad():
        grads, residual, coef, v = orthogonal_gradient(
            heads, targets, *batch, 0.6, 0.7, divergence, layer_norm
        )
    fused = torch.cat([grad.reshape(-1) for grad in grads])
    assert fused.shape == expected.shape
    assert torch.allclose(fused, expected, rtol=1e-4, atol=1e-6)
    assert float(coef) == pytest.approx(float(expected_coef), rel=1e-4)
    assert torch.allclose(v, value.both(batch[0]).detach(), atol=1e-6)
    with torch.no_grad():
        expected_res = batch[2] + batch[3] * target(batch[1]) - value.both(batch[0])
    assert torch.allclose(residual, expected_res, atol=1e-5)


@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler"
)
def test_compiled_update_equals_the_authors_update() -> None:
    spaces = (
        gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
    )
    torch.manual_seed(1)
    agent = ODICEAgent(*spaces, value_hidden=(16, 16), policy_hidden=(16, 16), compile_value=True)
    reference = ReferenceODICE(agent.value, agent.policy)
    g = torch.Generator().manual_seed(2)
    for step in range(3):
        obs, next_obs = torch.randn(32, OBS, generator=g), torch.randn(32, OBS, generator=g)
        action, reward = torch.rand(32, 2, generator=g) * 2 - 1, torch.randn(32, 1, generator=g)
        terminal = (torch.rand(32, 1, generator=g) < 0.2).float()
        batch = Batch(obs, action, reward, 0.99 * (1 - terminal), next_obs)
        coef = reference.update(obs, action, next_obs, reward.reshape(-1), terminal.reshape(-1))
        metrics = agent.update(batch, step)
        assert float(metrics["parallel_coef"]) == pytest.approx(coef, rel=1e-4, abs=1e-6)
    assert agent._gradient_fn is not None, "compiling fell back to the uncompiled update"
    for mine, theirs in ((agent.value, reference.vf), (agent.value_target, reference.vf_target)):
        for a, b in zip(mine.parameters(), theirs.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6)
