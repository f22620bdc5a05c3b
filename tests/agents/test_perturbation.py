"""S_top bookkeeping, the task-oriented blend, the reset blend and optimiser resets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rlkit.agents.perturbation import (
    STD_FLOOR,
    BestAgents,
    blend,
    fresh_like,
    is_blended,
    named_parameters,
    reset_optimizer,
)
from rlkit.networks import weight_init


def params(value: float) -> dict[str, torch.Tensor]:
    return {"net.w": torch.full((2, 3), value), "net.b": torch.full((3,), -value)}


def test_best_agents_fill_then_reject_lower_then_replace_lowest():
    best = BestAgents(3)
    for ret in (5.0, 1.0, 3.0):
        assert best.offer(ret, params(ret))
    assert best.returns == [5.0, 1.0, 3.0]
    assert not best.offer(0.5, params(0.5))  # lower than the lowest member
    assert not best.offer(1.0, params(1.0))  # a tie does not replace
    assert best.returns == [5.0, 1.0, 3.0]
    assert best.offer(4.0, params(4.0))  # replaces the lowest (1.0, slot 1)
    assert best.returns == [5.0, 4.0, 3.0]
    assert torch.equal(best.stacks["net.w"][1], torch.full((2, 3), 4.0))
    assert torch.equal(best.stacks["net.b"][1], torch.full((3,), -4.0))


def test_offer_copies_the_parameters():
    best, p = BestAgents(2), params(1.0)
    best.offer(1.0, p)
    p["net.w"].add_(10.0)
    assert torch.equal(best.stacks["net.w"][0], torch.full((2, 3), 1.0))


def test_statistics_mean_and_unbiased_std_by_hand_with_floor():
    best = BestAgents(10)
    members = [
        torch.tensor([1.0, 2.0, 5.0]),
        torch.tensor([3.0, 2.0, 1.0]),
        torch.tensor([2.0, 2.0, 3.0]),
    ]
    for i, m in enumerate(members):
        best.offer(float(i), {"x": m})
    mean, std = best.statistics("x")
    data = np.stack([m.numpy() for m in members])
    np.testing.assert_allclose(mean.numpy(), data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std.numpy(), np.maximum(data.std(0, ddof=1), STD_FLOOR), rtol=1e-6)
    assert std[1] == pytest.approx(STD_FLOOR)  # identical members: the floor


def test_single_member_has_floor_std_not_nan():
    best = BestAgents(4)
    best.offer(1.0, {"x": torch.tensor([2.0, -1.0])})
    mean, std = best.statistics("x")
    assert torch.equal(mean, torch.tensor([2.0, -1.0]))
    assert torch.all(std == STD_FLOOR)


def test_sample_is_mean_plus_std_times_seeded_normal():
    best = BestAgents(3)
    a, b = torch.tensor([[0.0, 4.0]]), torch.tensor([[2.0, 0.0]])
    best.offer(1.0, {"x": a, "y": a[0]})
    best.offer(2.0, {"x": b, "y": b[0]})
    drawn = best.sample(["x", "y"], torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    mean, std = torch.tensor([[1.0, 2.0]]), torch.tensor([[2**0.5, 8**0.5]])
    torch.testing.assert_close(drawn["x"], mean + std * torch.randn((1, 2), generator=g))
    torch.testing.assert_close(drawn["y"], mean[0] + std[0] * torch.randn((2,), generator=g))


def test_blend_is_alpha_theta_plus_one_minus_alpha_phi_everywhere():
    torch.manual_seed(0)
    nets = {"a": nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)), "b": nn.Linear(2, 2)}
    before = {k: v.detach().clone() for k, v in named_parameters(nets).items()}
    targets = {k: torch.randn_like(v) for k, v in before.items()}
    blend(nets, targets, 0.3)
    after = named_parameters(nets)
    assert set(after) == {"a.0.weight", "a.0.bias", "a.1.weight", "a.1.bias", "b.weight", "b.bias"}
    for k in before:
        torch.testing.assert_close(after[k].detach(), 0.3 * before[k] + 0.7 * targets[k])


def test_layernorm_can_be_left_out():
    nets = {"a": nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))}
    names = [n for n in named_parameters(nets) if is_blended(n, nets, layernorm=False)]
    assert names == ["a.0.weight", "a.0.bias"]


def test_fresh_like_reinitialises_a_copy_and_keeps_the_original():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    with torch.no_grad():
        net[0].bias.fill_(3.0)
        net[1].weight.fill_(5.0)
    fresh = fresh_like({"n": net}, weight_init)
    assert torch.all(fresh["n.0.bias"] == 0) and torch.all(fresh["n.1.weight"] == 1)
    w = fresh["n.0.weight"]
    torch.testing.assert_close(w @ w.T, torch.eye(4), atol=1e-5, rtol=0)  # orthogonal
    assert torch.all(net[0].bias == 3.0) and torch.all(net[1].weight == 5.0)


def test_reset_optimizer_forgets_adam_moments():
    layer = nn.Linear(2, 1)
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    layer(torch.ones(1, 2)).sum().backward()
    opt.step()
    assert len(opt.state) == 2
    reset_optimizer(opt)
    assert len(opt.state) == 0
    opt.step()  # still works: Adam starts its moments afresh
    assert int(opt.state[layer.weight]["step"]) == 1


def test_state_dict_round_trip():
    best = BestAgents(2)
    best.offer(1.5, params(1.0))
    other = BestAgents(9)
    other.load_state_dict(best.state_dict())
    assert other.capacity == 2 and other.returns == [1.5]
    assert torch.equal(other.stacks["net.w"], best.stacks["net.w"])
    assert other.nbytes() == 2 * (6 + 3) * 4
