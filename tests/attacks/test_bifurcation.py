"""Tests for the bifurcation layer and the GDL (bifurcation) attacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlkit.attacks import (
    AttackBudget,
    Bifurcation,
    attack_settings,
    bifurcate_continuous,
    bifurcate_discrete,
    make_attack,
)

W = torch.tensor([[0.5, -1.0, 2.0, 0.0, -0.25]])


def linear_policy(weight: torch.Tensor, bias: float | torch.Tensor = 0.0) -> nn.Linear:
    """A linear policy a = weight @ s + bias."""
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32).expand(weight.shape[0]))
    return layer


# ----------------------------------------------------------------------------- the layer
def test_discrete_halves_known_logits() -> None:
    logits = torch.tensor([[1.0, 5.0, 2.0, 0.0], [-1.0, -2.0, -0.5, 3.0]])
    torch.testing.assert_close(
        bifurcate_discrete(logits), torch.tensor([[[5.0, 2.0]], [[-1.0, 3.0]]])
    )


def test_discrete_custom_and_odd_split() -> None:
    logits = torch.tensor([[1.0, 5.0, 2.0, 0.0, 4.0]])
    torch.testing.assert_close(bifurcate_discrete(logits), torch.tensor([[[5.0, 4.0]]]))  # 2|3
    torch.testing.assert_close(bifurcate_discrete(logits, split=1), torch.tensor([[[1.0, 5.0]]]))
    for bad in (0, 5):
        with pytest.raises(ValueError, match="split"):
            bifurcate_discrete(logits, split=bad)


def test_continuous_linear_maps() -> None:
    a = torch.tensor([[0.3], [-2.0]])
    torch.testing.assert_close(
        bifurcate_continuous(a), torch.tensor([[[0.3, -0.3]], [[-2.0, 2.0]]])
    )
    out = bifurcate_continuous(a, m1=2.0, b1=-1.0, m2=-2.0, b2=1.0)  # split at a = 0.5
    torch.testing.assert_close(out, torch.tensor([[[-0.4, 0.4]], [[-5.0, 5.0]]]))
    multi = Bifurcation("continuous")(torch.tensor([[1.0, -3.0]]))
    assert multi.shape == (1, 2, 2)
    torch.testing.assert_close(multi, torch.tensor([[[1.0, -1.0], [-3.0, 3.0]]]))


# ----------------------------------------------------------------------------- GDL attack
def test_defaults_are_the_authors() -> None:
    s = attack_settings("bifurcation")
    assert (s["iterations"], s["step_size"], s["decay_every"], s["decay_rate"]) == (
        100,
        0.01,
        25,
        0.5,
    )
    assert s["random_start"] is False
    assert (s["m1"], s["b1"], s["m2"], s["b2"], s["split"]) == (1.0, 0.0, -1.0, 0.0, None)
    assert (s["clip"], s["other_logit"], s["decay_schedule"]) == ("end", "zero", "authors")
    assert attack_settings("bifurcation_toggle")["toggle_start"] == "away"


def test_gdl_on_linear_policy_reaches_the_analytic_optimum() -> None:
    policy = linear_policy(W)
    s = torch.tensor([[0.1, 0.2, 0.15, 0.5, 0.4]])
    a = policy(s).item()
    eps = 0.05
    assert a > 0 and eps > a / W.abs().sum().item()  # large enough to flip the sign
    attack = make_attack("bifurcation", policy, AttackBudget(eps, low=-10.0, high=10.0))
    adv = attack(s)
    optimum = s - eps * torch.sign(W) * torch.sign(torch.tensor(a))
    torch.testing.assert_close(adv, optimum)
    assert policy(adv).item() < 0  # group flipped


def test_gdl_negative_action_flips_upward_with_mask_and_scale() -> None:
    policy = linear_policy(W, bias=-0.4)
    s = torch.tensor([[0.3, 0.1, 0.2, 0.5, 0.4]])
    assert policy(s).item() < 0
    budget = AttackBudget(0.2, mask=[1, 1, 0, 1, 1], scale=[1, 0.5, 1, 1, 1.2], low=-5, high=5)
    adv = make_attack("bifurcation", policy, budget)(s)
    eps_vec = budget.per_feature_eps(5, s)
    torch.testing.assert_close(adv, s + eps_vec * torch.sign(W))
    assert policy(adv).item() > 0


def test_gdl_respects_bounds() -> None:
    policy = linear_policy(W)
    s = torch.tensor([[0.01, 0.99, 0.5, 0.5, 0.0]])
    adv = make_attack("bifurcation", policy, AttackBudget(0.05, low=0.0, high=1.0))(s)
    torch.testing.assert_close(adv, (s - 0.05 * torch.sign(W)).clamp(0, 1))


def test_gdl_batch_uses_each_samples_own_group() -> None:
    policy = linear_policy(W)
    s = torch.tensor([[0.3, 0.1, 0.2, 0.5, 0.4], [0.0, 0.3, 0.0, 0.0, 0.0]])
    a = policy(s).detach().squeeze(1)
    assert a[0] > 0 > a[1]
    adv = make_attack("bifurcation", policy, AttackBudget(0.1))(s)
    expected = s - 0.1 * torch.sign(W) * torch.sign(a).unsqueeze(1)
    torch.testing.assert_close(adv, expected)


def test_gdl_custom_linear_maps_change_the_split_point() -> None:
    # g = [2a - 1, -2a + 1]: the groups split at a = 0.5
    policy = linear_policy(torch.tensor([[1.0, 0.0]]))
    s = torch.tensor([[0.55, 0.0], [0.45, 0.0]])
    attack = make_attack("bifurcation", policy, AttackBudget(0.1), m1=2.0, b1=-1.0, m2=-2.0, b2=1.0)
    adv = attack(s)
    torch.testing.assert_close(adv[:, 0], torch.tensor([0.45, 0.55]))


def test_gdl_multi_dimensional_actions_sum_losses() -> None:
    weight = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    policy = linear_policy(weight)
    s = torch.tensor([[0.02, -0.02, 0.0]])  # a = (0.02, -0.02)
    adv = make_attack("bifurcation", policy, AttackBudget(0.05))(s)
    # dims push features 0 and 1 apart; feature 2 gets opposite gradients that cancel
    torch.testing.assert_close(adv, torch.tensor([[-0.03, 0.03, 0.0]]))
    a_adv = policy(adv)
    assert a_adv[0, 0] < 0 < a_adv[0, 1]


def test_discrete_bifurcation_flips_group() -> None:
    torch.manual_seed(0)
    weight = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [-0.5, 1.0]])
    policy = linear_policy(weight)
    s = torch.tensor([[0.4, 0.5]])  # logits (0.4, 0.45, 0.5, 0.3): upper group (bin 2)
    assert policy(s).argmax().item() >= 2
    attack = make_attack("bifurcation", policy, AttackBudget(0.1), action_kind="discrete")
    adv = attack(s)
    assert policy(adv).argmax().item() < 2
    assert (adv - s).abs().max().item() <= 0.1 + 1e-6


def test_toggle_alternates_target_group() -> None:
    policy = linear_policy(W)
    s = torch.tensor([[0.3, 0.1, 0.2, 0.5, 0.4]] * 4)
    # the authors' phase: even t pushes away from group 0 (a down), odd t away from group 1
    attack = make_attack("bifurcation_toggle", policy, AttackBudget(0.05))
    adv = attack(s, t=torch.tensor([0, 1, 2, 7]))
    sign = torch.tensor([-1.0, 1.0, -1.0, 1.0]).unsqueeze(1)
    torch.testing.assert_close(adv, s + 0.05 * torch.sign(W) * sign)
    torch.testing.assert_close(attack(s[:1], t=3), s[:1] + 0.05 * torch.sign(W))
    with pytest.raises(ValueError, match="time step"):
        attack(s)
    # rlkit's former phase: even t pulls toward group 0 (a up)
    toward = make_attack("bifurcation_toggle", policy, AttackBudget(0.05), toggle_start="toward")
    torch.testing.assert_close(
        toward(s, t=torch.tensor([0, 1, 2, 7])), s - 0.05 * torch.sign(W) * sign
    )
    with pytest.raises(ValueError, match="toggle_start"):
        make_attack("bifurcation_toggle", policy, AttackBudget(0.05), toggle_start="up")


def test_toggle_discrete() -> None:
    weight = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    policy = linear_policy(weight)
    s = torch.tensor([[0.5, 0.45], [0.5, 0.45]])
    for start, expected in (("away", [1, 0]), ("toward", [0, 1])):
        attack = make_attack(
            "bifurcation_toggle",
            policy,
            AttackBudget(0.1),
            action_kind="discrete",
            toggle_start=start,
        )
        adv = attack(s, t=torch.tensor([0, 1]))
        groups = bifurcate_discrete(policy(adv)).argmax(-1).squeeze(1)
        assert groups.tolist() == expected, start


def test_clip_settings() -> None:
    policy = linear_policy(W)
    s = torch.tensor([[0.0, 1.0, 1.0, 0.5, 1.0]])  # a = 0.75 > 0
    budget = AttackBudget(0.05, low=0.0, high=1.0)
    free = s - 0.05 * torch.sign(W)  # the unbounded optimum: a is pushed down, out of [0, 1]
    outs = {}
    for clip in ("end", "none", "every_step"):
        outs[clip] = make_attack("bifurcation", policy, budget, clip=clip)(s)
    torch.testing.assert_close(outs["none"], free)  # the authors' headline runs: no bounds
    assert outs["none"].min() < 0 and outs["none"].max() > 1
    torch.testing.assert_close(outs["end"], free.clamp(0, 1))  # clipped once, after the loop
    assert outs["every_step"].min() >= 0 and outs["every_step"].max() <= 1
    with pytest.raises(ValueError, match="clip"):
        make_attack("bifurcation", policy, budget, clip="always")


def test_removed_clip_in_loop_names_its_replacement() -> None:
    with pytest.raises(ValueError, match="clip_in_loop.*replaced by 'clip'.*every_step"):
        make_attack("bifurcation", linear_policy(W), AttackBudget(0.05), clip_in_loop=False)


def test_other_logit_setting_discrete() -> None:
    # logits all negative except the clean bin's group: the zero mask lets the label's own logit
    # alone carry the gradient (the authors' DLLoss), neg_inf also raises the runner-up
    weight = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0], [0.0, -2.0]])
    policy = linear_policy(weight, bias=-0.5)
    s = torch.tensor([[0.9, 0.2]])  # logits (0.4, -1.4, -0.7, -0.9): group 0, others < 0
    outs = {}
    for other in ("zero", "neg_inf"):
        attack = make_attack(
            "bifurcation", policy, AttackBudget(0.05), action_kind="discrete", other_logit=other
        )
        outs[other] = attack(s)
    torch.testing.assert_close(outs["zero"], s - torch.tensor([[0.05, 0.0]]))  # only z_0 falls
    torch.testing.assert_close(outs["neg_inf"], s - torch.tensor([[0.05, 0.05]]))  # z_2 rises
