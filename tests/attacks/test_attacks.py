"""Tests for the named attacks, the optimisers and make_attack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rlkit.attacks import (
    ATTACKS,
    AttackBudget,
    attack_settings,
    categorical_kl,
    make_attack,
    pgd,
    step_schedule,
)
from rlkit.policy import PolicyView


def linear_policy(weight: torch.Tensor, bias: float = 0.0) -> nn.Linear:
    """A linear policy (means or logits) = weight @ s + bias."""
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.fill_(bias)
    return layer


def mlp(n_in: int, n_out: int, seed: int) -> nn.Sequential:
    """A small random tanh MLP."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 16), nn.Tanh(), nn.Linear(16, n_out))


def few_steps(name: str, **extra: object) -> dict:
    """Fast settings (5 iterations) for attacks that iterate; plus a target if needed."""
    keys = attack_settings(name)
    out: dict = {k: v for k, v in {"iterations": 5, "decay_every": 2}.items() if k in keys}
    out.update(extra)
    return out


# ----------------------------------------------------------------------------- registry
def test_registry_and_settings() -> None:
    assert set(ATTACKS) == {
        "random",
        "fgsm",
        "pgd",
        "targeted_pgd",
        "bifurcation",
        "bifurcation_toggle",
        "mad",
    }
    assert all(isinstance(d, str) and d for d in ATTACKS.values())
    s = attack_settings("pgd")
    assert s["action_kind"] == "continuous" and s["loss"] == "mse" and s["iterations"] == 100
    s["iterations"] = 3  # a copy
    assert attack_settings("pgd")["iterations"] == 100
    assert attack_settings("mad")["random_start"] is True
    assert attack_settings("random")["positive_only"] is False


def test_unknown_names_and_settings_suggest() -> None:
    policy = linear_policy(torch.ones(1, 2))
    with pytest.raises(ValueError, match="did you mean 'bifurcation'"):
        make_attack("bifurcaton", policy, AttackBudget(0.1))
    with pytest.raises(ValueError, match="did you mean 'step_size'.*allowed"):
        make_attack("pgd", policy, AttackBudget(0.1), stepsize=0.1)
    with pytest.raises(ValueError, match="attack_settings|allowed"):
        attack_settings("nope")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("pgd", {"iterations": 0}, "iterations"),
        ("pgd", {"iterations": 2.5}, "iterations"),
        ("pgd", {"step_size": -1.0}, "step_size"),
        ("pgd", {"decay_rate": 1.5}, "decay_rate"),
        ("pgd", {"decay_schedule": "cosine"}, "decay_schedule"),
        ("pgd", {"loss": "l3"}, "loss"),
        ("pgd", {"action_kind": "hybrid"}, "action_kind"),
        ("pgd", {"random_start": "yes"}, "random_start"),
        ("random", {"positive_only": 1}, "positive_only"),
        ("targeted_pgd", {}, "target"),
        ("bifurcation", {"split": 0}, "split"),
        ("bifurcation", {"m1": "a"}, "m1"),
    ],
)
def test_bad_setting_values(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_attack(name, linear_policy(torch.ones(1, 2)), AttackBudget(0.1), **kwargs)


def test_action_kind_from_policy_attribute() -> None:
    policy = linear_policy(torch.ones(3, 2))
    policy.action_kind = "discrete"
    assert make_attack("pgd", policy, AttackBudget(0.1)).action_kind == "discrete"
    with pytest.raises(ValueError, match="contradicts"):
        make_attack("pgd", policy, AttackBudget(0.1), action_kind="continuous")


def test_budget_from_mapping_and_bad_budget() -> None:
    policy = linear_policy(torch.ones(1, 2))
    attack = make_attack("random", policy, {"eps": 0.1, "norm": "l2"})
    assert attack.budget.norm == "l2"
    with pytest.raises(ValueError, match="AttackBudget"):
        make_attack("random", policy, 0.1)


# ----------------------------------------------------------------------------- policy state
def test_policy_state_is_restored_and_no_param_grads() -> None:
    policy = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    policy.train()
    policy[0].eval()  # mixed sub-module modes must survive
    policy[2].weight.requires_grad_(False)
    seen = []
    policy.register_forward_pre_hook(lambda m, i: seen.append(m.training))
    attack = make_attack("pgd", policy, AttackBudget(0.1), iterations=3)
    obs = torch.rand(4, 3, requires_grad=True)
    out = attack(obs)
    assert not out.requires_grad and out.grad_fn is None
    assert seen and not any(seen)  # ran in eval mode
    assert policy.training and not policy[0].training and policy[1].training
    assert policy[0].weight.requires_grad and not policy[2].weight.requires_grad
    assert all(p.grad is None for p in policy.parameters())
    assert obs.grad is None


def test_one_forward_per_iteration_for_the_whole_batch() -> None:
    calls = []
    net = mlp(4, 1, 0)

    def policy(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        return net(x)

    attack = make_attack("pgd", policy, AttackBudget(0.1), iterations=7, random_start=True)
    attack(torch.rand(32, 4))
    assert calls == [32] * 8  # clean pass + 7 iterations


def test_returns_same_shape_dtype_and_accepts_numpy() -> None:
    attack = make_attack("bifurcation", mlp(3, 1, 1), AttackBudget(0.1), iterations=3)
    obs = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    out = attack(obs)
    assert isinstance(out, torch.Tensor) and out.shape == (5, 3) and out.dtype == torch.float32
    policy64 = mlp(3, 1, 1).double()
    out64 = make_attack("bifurcation", policy64, AttackBudget(0.1), iterations=3)(
        torch.rand(2, 3, dtype=torch.float64)
    )
    assert out64.dtype == torch.float64


def test_tuple_policy_output_uses_first_element() -> None:
    net = linear_policy(torch.tensor([[1.0, -1.0]]))
    attack = make_attack("bifurcation", lambda x: (net(x), torch.zeros(1)), AttackBudget(0.1))
    s = torch.tensor([[0.2, 0.0]])
    torch.testing.assert_close(attack(s), torch.tensor([[0.1, 0.1]]))


# ----------------------------------------------------------------------------- FGSM / PGD
def test_fgsm_discrete_linear_equals_analytic_sign_step() -> None:
    weight = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.0, 3.0], [0.0, 0.0, 0.0]])
    policy = linear_policy(weight)
    s = torch.tensor([[1.0, 1.0, 1.0]])  # logits (2, 2.5, 0): clean 1, runner-up 0
    budget = AttackBudget(0.1, mask=[1, 1, 0], scale=[1.0, 0.5, 1.0])
    adv = make_attack("fgsm", policy, budget, action_kind="discrete")(s)
    grad = weight[0] - weight[1]  # d(z_0 - z_1)/ds
    expected = s + budget.per_feature_eps(3, s) * torch.sign(grad)
    torch.testing.assert_close(adv, expected)


def test_fgsm_l2_step_is_normalised_gradient() -> None:
    weight = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    policy = linear_policy(weight)
    s = torch.tensor([[0.0, 0.0]])  # logits (0, 0): argmax 0 -> maximise z_1 - z_0
    adv = make_attack("fgsm", policy, AttackBudget(0.5, norm="l2"), action_kind="discrete")(s)
    torch.testing.assert_close(adv, torch.tensor([[-0.3, -0.4]]))


def test_step_schedule_authors_and_standard() -> None:
    authors = step_schedule(0.01, 100, 25, 0.5, "authors")
    assert authors[0] == 0.01 and authors[1:26] == [0.005] * 25
    assert authors[-1] == pytest.approx(0.000625) and authors[76:] == [authors[-1]] * 24
    standard = step_schedule(0.01, 100, 25, 0.5, "standard")
    assert standard[:25] == [0.01] * 25 and standard[25] == 0.005
    assert standard[-1] == pytest.approx(0.00125)
    assert step_schedule(0.1, 3, 0, 0.5) == [0.1] * 3
    with pytest.raises(ValueError):
        step_schedule(0.1, 3, 1, 0.5, "cosine")


@pytest.mark.parametrize("schedule", ["authors", "standard"])
def test_pgd_moves_by_the_decayed_steps(schedule: str) -> None:
    # linear objective, huge budget: each sign step moves every feature by the step size
    w = torch.tensor([1.0, -2.0, 0.5])
    obs = torch.zeros(2, 3)
    budget = AttackBudget(100.0).bind(obs)
    out = pgd(
        lambda x: x @ w,
        obs,
        budget,
        step_size=0.04,
        iterations=12,
        decay_every=4,
        decay_rate=0.5,
        decay_schedule=schedule,
    )
    total = sum(step_schedule(0.04, 12, 4, 0.5, schedule))
    torch.testing.assert_close(out, (total * torch.sign(w)).expand(2, 3))


def test_pgd_l2_steps_along_normalised_gradient() -> None:
    obs = torch.zeros(1, 2)
    budget = AttackBudget(10.0, norm="l2").bind(obs)
    out = pgd(
        lambda x: x @ torch.tensor([3.0, 4.0]),
        obs,
        budget,
        step_size=0.5,
        iterations=3,
        decay_every=0,
    )
    torch.testing.assert_close(out, torch.tensor([[0.9, 1.2]]))


def test_pgd_quadratic_stops_near_optimum() -> None:
    # maximise -(x - 0.3)^2: decaying sign steps end within the last step of the optimum
    obs = torch.zeros(1, 1)
    budget = AttackBudget(1.0).bind(obs)
    out = pgd(
        lambda x: -((x - 0.3) ** 2).sum(1),
        obs,
        budget,
        step_size=0.1,
        iterations=40,
        decay_every=5,
        decay_rate=0.5,
        decay_schedule="standard",
    )
    assert abs(out.item() - 0.3) < 0.1 * 0.5**7 + 1e-6


def test_untargeted_pgd_continuous_moves_action() -> None:
    policy = mlp(4, 2, 3)  # no squash method: its output is the action, so random_start=None
    obs = torch.rand(16, 4)  # (auto) starts at random, where the distance has a gradient
    kw = {"seed": 0, "iterations": 20, "random_start": None}
    attack = make_attack("pgd", policy, AttackBudget(0.2, low=0.0, high=1.0), **kw)
    assert attack.random_start()
    adv = attack(obs)
    with torch.no_grad():
        moved = (policy(adv) - policy(obs)).abs().sum(1)
    assert torch.all(moved > 0)
    # reproducible with a seed
    attack2 = make_attack("pgd", policy, AttackBudget(0.2, low=0.0, high=1.0), **kw)
    torch.testing.assert_close(attack2(obs), adv)
    # the default (the authors': from delta = 0) has nothing to follow on such a policy
    assert torch.equal(make_attack("pgd", policy, AttackBudget(0.2), iterations=5)(obs), obs)


def tanh_view(seed: int, low: float = 0.0, high: float = 1.0, squash: str = "tanh") -> PolicyView:
    """A SAC-like view: pre-tanh mean of a small MLP, actions in [low, high]."""
    return PolicyView(
        mlp(4, 1, seed), "continuous", squash, np.array([low], np.float32), np.array([high])
    )


def test_untargeted_reference_squashed_is_the_env_action() -> None:
    view = tanh_view(4)
    obs = torch.rand(8, 4, generator=torch.Generator().manual_seed(0))
    attack = make_attack("pgd", view, AttackBudget(0.05), iterations=10, decay_every=3)
    assert not attack.random_start()  # the authors' start: delta = 0
    loss = attack.loss(None)
    with torch.no_grad():
        clean = view(obs)
    (ref,) = loss.prepare(clean)
    expected = 0.0 + 0.5 * (torch.tanh(clean) + 1.0) * (1.0 - 0.0)  # SB3's unscale_action
    assert torch.equal(ref, expected)
    # the distance between the mean and the squashed action: a gradient at delta = 0
    assert not torch.equal(attack(obs), obs)
    # rlkit's former reference: the clean mean, zero gradient at delta = 0
    mean = make_attack("pgd", view, AttackBudget(0.05), iterations=10, reference="mean")
    assert torch.equal(mean(obs), obs)
    assert make_attack(
        "pgd", view, AttackBudget(0.05), reference="mean", random_start=None
    ).random_start()
    assert not make_attack("pgd", view, AttackBudget(0.05), random_start=None).random_start()
    clip = make_attack("fgsm", tanh_view(4, squash="clip"), AttackBudget(0.05), random_start=None)
    assert clip.random_start()  # a clip squash leaves the mean alone inside the bounds


def test_untargeted_pgd_discrete_changes_argmax() -> None:
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    policy = linear_policy(weight)
    obs = torch.tensor([[0.55, 0.5], [0.4, 0.45]])
    adv = make_attack("pgd", policy, AttackBudget(0.05), action_kind="discrete")(obs)
    assert policy(adv).argmax(1).tolist() == [1, 0]


# ----------------------------------------------------------------------------- targeted
def test_targeted_pgd_reaches_reachable_continuous_target() -> None:
    policy = linear_policy(torch.tensor([[1.0, -1.0, 0.5]]))
    obs = torch.zeros(3, 3)
    attack = make_attack(
        "targeted_pgd",
        policy,
        AttackBudget(0.2),
        target=0.3,
        iterations=200,
        step_size=0.02,
        decay_every=50,
    )
    adv = attack(obs)
    assert torch.allclose(policy(adv), torch.full((3, 1), 0.3), atol=1e-2)


def test_targeted_pgd_time_dependent_target() -> None:
    policy = linear_policy(torch.tensor([[1.0, 1.0]]))
    obs = torch.zeros(2, 2)
    attack = make_attack(
        "targeted_pgd",
        policy,
        AttackBudget(0.2),
        target=lambda t: torch.where(t % 2 == 0, 0.2, -0.2),
        iterations=200,
        step_size=0.02,
        decay_every=50,
    )
    adv = attack(obs, t=torch.tensor([4, 5]))
    assert torch.allclose(policy(adv).squeeze(1), torch.tensor([0.2, -0.2]), atol=2e-2)
    with pytest.raises(ValueError, match="time step"):
        attack(obs)


def test_targeted_pgd_discrete_bin() -> None:
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    policy = linear_policy(weight)
    obs = torch.tensor([[0.6, 0.5]])
    attack = make_attack(
        "targeted_pgd", policy, AttackBudget(0.1), target=1, action_kind="discrete"
    )
    assert policy(attack(obs)).argmax(1).item() == 1
    bad = make_attack("targeted_pgd", policy, AttackBudget(0.1), target=5, action_kind="discrete")
    with pytest.raises(ValueError, match="bin indices"):
        bad(obs)


# ----------------------------------------------------------------------------- random, MAD
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_stays_in_budget(norm: str) -> None:
    budget = AttackBudget(0.1, norm=norm, mask=[1, 0, 1, 1], scale=[1, 1, 0.5, 2])
    obs = torch.rand(200, 4)
    adv = make_attack("random", mlp(4, 1, 0), budget, seed=1)(obs)
    delta = adv - obs
    assert torch.all(delta[:, 1] == 0)
    assert torch.all(budget.bind(obs).scaled_norm(delta) <= 0.1 + 1e-6)
    assert delta.abs().max() > 0


def test_random_positive_only_is_non_negative_and_seeded() -> None:
    budget = AttackBudget(0.05)
    obs = torch.rand(500, 3)
    attack = make_attack("random", mlp(3, 1, 0), budget, positive_only=True, seed=3)
    delta = attack(obs) - obs
    assert torch.all(delta >= 0) and torch.all(delta < 0.05 + 1e-7)
    assert delta.mean().item() == pytest.approx(0.025, abs=0.003)
    again = make_attack("random", mlp(3, 1, 0), budget, positive_only=True, seed=3)
    torch.testing.assert_close(again(obs) - obs, delta)


def test_mad_increases_kl_discrete() -> None:
    policy = mlp(4, 5, 7)
    obs = torch.rand(64, 4)
    adv = make_attack(
        "mad", policy, AttackBudget(0.1), action_kind="discrete", seed=0, iterations=20
    )(obs)
    rnd = make_attack("random", policy, AttackBudget(0.1), seed=0)(obs)
    with torch.no_grad():
        kl_mad = categorical_kl(policy(obs), policy(adv))
        kl_rnd = categorical_kl(policy(obs), policy(rnd))
    assert torch.all(kl_mad > 0)
    assert kl_mad.mean() > kl_rnd.mean()


def test_mad_continuous_increases_action_distance() -> None:
    policy = mlp(4, 2, 8)
    obs = torch.rand(64, 4)
    adv = make_attack("mad", policy, AttackBudget(0.1), seed=0, iterations=20, log_std=-1.0)(obs)
    with torch.no_grad():
        assert torch.all((policy(adv) - policy(obs)).norm(dim=1) > 0)


# ----------------------------------------------------------------------------- property test
def _attack_settings(name: str, kind: str, n_out: int) -> dict:
    """Settings that make ``name`` runnable on a policy with ``n_out`` outputs."""
    extra: dict = {"action_kind": kind}
    if name == "targeted_pgd":
        extra["target"] = 0 if kind == "discrete" else np.zeros(n_out)
    if name in ("random", "mad", "pgd", "fgsm"):
        extra["seed"] = 0
    return few_steps(name, **extra)


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(ATTACKS)),
    kind=st.sampled_from(["continuous", "discrete"]),
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.0, 1.0),
    mask=st.lists(st.sampled_from([0.0, 1.0]), min_size=5, max_size=5),
    scale=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 2.0)), min_size=5, max_size=5),
    bounded=st.booleans(),
    random_start=st.booleans(),
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 6),
)
def test_every_attack_stays_in_budget_and_bounds(
    name: str,
    kind: str,
    norm: str,
    eps: float,
    mask: list,
    scale: list,
    bounded: bool,
    random_start: bool,
    seed: int,
    batch: int,
) -> None:
    n_out = 4 if kind == "discrete" else 2
    policy = mlp(5, n_out, seed)
    low, high = (np.full(5, -0.5), np.full(5, 1.0)) if bounded else (None, None)
    budget = AttackBudget(eps, norm=norm, mask=mask, scale=scale, low=low, high=high)
    gen = torch.Generator().manual_seed(seed)
    obs = torch.rand(batch, 5, generator=gen) * 1.5 - 0.5  # inside [-0.5, 1]
    extra = _attack_settings(name, kind, n_out)
    if "random_start" in attack_settings(name):
        extra["random_start"] = random_start
    attack = make_attack(name, policy, budget, **extra)
    adv = attack(obs, t=torch.arange(batch))
    assert adv.shape == obs.shape and torch.isfinite(adv).all()
    delta = (adv - obs).double()
    bound = budget.bind(obs.double())
    assert torch.all(delta[:, ~bound.active] == 0)
    # allow the float32 rounding of obs + delta (a couple of ulps of the observation)
    slack = 2 * torch.finfo(torch.float32).eps * torch.maximum(obs.abs(), adv.abs()).double()
    shrunk = delta.sign() * (delta.abs() - slack).clamp_min(0)
    assert torch.all(bound.scaled_norm(shrunk) <= eps * (1 + 1e-6) + 1e-12)
    if bounded:
        assert adv.min() >= -0.5 and adv.max() <= 1.0
