"""DrM's dormant ratio and the sigmoids MENTOR derives from it (known answers)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rlkit.agents.dormant import dormant_ratio, exploration_std, perturb_factor, value_mix


def hand_built() -> nn.Sequential:
    """Linear(2->4) with rows giving |activity| 1, 1, 1, 0.01 on the input (1, 0); then ReLU and
    Linear(4->3) whose third unit is exactly 0."""
    first, second = nn.Linear(2, 4), nn.Linear(4, 3)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.01, 0.0]]))
        first.bias.zero_()
        second.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 0]]))
        second.bias.zero_()
    return nn.Sequential(first, nn.ReLU(), second)


def test_dormant_ratio_on_a_hand_built_network_before_activations():
    x = torch.tensor([[1.0, 0.0], [1.0, 5.0]])
    ratio, per_layer = dormant_ratio(hand_built(), x, threshold=0.025, post_relu=False)
    # layer 1: activity (1, 1, 1, 0.01), mean 0.7525: only 0.01 < 0.0188 is dormant -> 1/4
    # layer 2: relu kills unit 2 (-1); outputs (1, 2, 0): mean 1, unit 3 dormant -> 1/3
    assert per_layer == [0.25, pytest.approx(1 / 3)]
    assert ratio == pytest.approx(2 / 7)


def test_threshold_moves_the_count():
    x = torch.tensor([[1.0, 0.0]])
    _, per_layer = dormant_ratio(hand_built(), x, threshold=0.5, post_relu=False)
    assert per_layer == [0.25, pytest.approx(1 / 3)]  # 0.01 < 0.376; 1 and 1 are not
    _, per_layer = dormant_ratio(hand_built(), x, threshold=1.5, post_relu=False)
    assert per_layer[0] == 1.0  # every unit below 1.5 x 0.7525


def test_relu_fed_layers_count_their_post_relu_activity():
    x = torch.tensor([[1.0, 0.0], [1.0, 5.0]])
    ratio, per_layer = dormant_ratio(hand_built(), x, threshold=0.025)
    # layer 1 after its ReLU: activity (1, 0, 1, 0.01), mean 0.5025: 0 and 0.01 -> 2/4;
    # layer 2 (not followed by a ReLU) as before: 1/3
    assert per_layer == [0.5, pytest.approx(1 / 3)]
    assert ratio == pytest.approx(3 / 7)


def authors_style_ratio(net: nn.Module, x: torch.Tensor, threshold: float) -> float:
    """The authors' cal_dormant_ratio: hooks keep each Linear's output tensor itself, which
    an in-place ReLU after it then overwrites."""
    kept: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: kept.append(out))
        for m in net.modules()
        if isinstance(m, nn.Linear)
    ]
    with torch.no_grad():
        net(x)
    for handle in handles:
        handle.remove()
    dormant = total = 0
    for out in kept:
        activity = out.abs().mean(0)
        dormant += int((activity < activity.mean() * threshold).sum())
        total += activity.numel()
    return dormant / total


def test_equals_the_authors_hooks_under_in_place_relus():
    torch.manual_seed(0)
    layers = [nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 2)]
    ours = nn.Sequential(*layers)
    theirs = nn.Sequential(
        layers[0], nn.ReLU(inplace=True), layers[2], nn.ReLU(inplace=True), layers[4]
    )
    with torch.no_grad():
        layers[0].bias.fill_(-0.5)  # some units always negative: dormant only after the ReLU
    x = torch.randn(64, 6)
    expected = authors_style_ratio(theirs, x, 0.025)
    assert expected > 0
    assert dormant_ratio(ours, x, threshold=0.025)[0] == pytest.approx(expected)
    assert dormant_ratio(ours, x, threshold=0.025, post_relu=False)[0] < expected


def test_the_drq_actor_lists_its_relu_fed_layers():
    from rlkit.networks import DrQActor

    actor = DrQActor(5, 2, feature_dim=4, hidden_dim=8)
    assert actor.relu_fed_linears() == [actor.input, actor.middle]


def test_dormant_ratio_leaves_no_hooks_and_no_grad():
    net = hand_built()
    dormant_ratio(net, torch.ones(3, 2))
    assert all(not m._forward_hooks for m in net.modules())


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.2, 0.35, 1.0])
def test_exploration_std_and_lambda_formulas(beta):
    assert exploration_std(beta) == pytest.approx(0.8 / (1 + math.exp(-10 * (beta - 0.2))))
    assert exploration_std(beta, scale=1.0) == pytest.approx(1 / (1 + math.exp(-10 * (beta - 0.2))))
    assert value_mix(beta) == pytest.approx(0.6 / (1 + math.exp(50 * (beta - 0.2))))


def test_sigmoids_at_the_target_ratio_are_half():
    assert exploration_std(0.2, scale=0.8) == pytest.approx(0.4)
    assert value_mix(0.2, max_lambda=0.6) == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("beta", "alpha_max", "expected"),
    [(0.1, 1.0, 0.8), (0.0, 0.9, 0.9), (0.5, 1.0, 0.2), (0.45, 1.0, 0.2), (0.3, 0.95, 0.4)],
)
def test_perturb_factor_is_clipped(beta, alpha_max, expected):
    assert perturb_factor(beta, 2.0, 0.2, alpha_max) == pytest.approx(expected)
