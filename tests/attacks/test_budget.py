"""Tests for rlkit.attacks.budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlkit.attacks import AttackBudget


def test_linf_projection_clamps_per_feature() -> None:
    budget = AttackBudget(0.1, mask=[1, 0, 1, 1], scale=[1.0, 1.0, 0.5, 2.0])
    delta = torch.tensor([[0.5, 0.5, -0.5, 0.15], [-0.05, -1.0, 0.01, -0.3]])
    out = budget.project(delta)
    expected = torch.tensor([[0.1, 0.0, -0.05, 0.15], [-0.05, 0.0, 0.01, -0.2]])
    torch.testing.assert_close(out, expected)


def test_per_feature_eps() -> None:
    budget = AttackBudget(0.05, mask=np.array([0, 1, 1]), scale=torch.tensor([1.0, 0.004, 1.0]))
    eps = budget.per_feature_eps(3, torch.zeros(1, dtype=torch.float64))
    assert eps.dtype == torch.float64
    torch.testing.assert_close(eps, torch.tensor([0.0, 0.0002, 0.05], dtype=torch.float64))


def test_l2_projection_onto_ball() -> None:
    budget = AttackBudget(1.0, norm="l2")
    delta = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    out = budget.project(delta)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8], [0.3, 0.4]]))


def test_l2_mask_and_scale_use_scaled_coordinates() -> None:
    budget = AttackBudget(1.0, norm="l2", mask=[1, 1, 0], scale=[2.0, 1.0, 1.0])
    delta = torch.tensor([[6.0, 4.0, 9.0]])  # scaled coords u = (3, 4), |u| = 5
    out = budget.project(delta)
    torch.testing.assert_close(out, torch.tensor([[1.2, 0.8, 0.0]]))
    bound = budget.bind(delta)
    assert bound.scaled_norm(out).item() == pytest.approx(1.0)
    torch.testing.assert_close(budget.project(out), out)  # idempotent


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_mask_zeroes_features(norm: str) -> None:
    budget = AttackBudget(0.5, norm=norm, mask=[0, 1, 0])
    out = budget.project(torch.full((4, 3), 0.2))
    assert torch.all(out[:, [0, 2]] == 0)
    torch.testing.assert_close(out[:, 1], torch.full((4,), 0.2))


def test_scale_shrinks_eps() -> None:
    budget = AttackBudget(0.03, scale=[1.0, 0.004, 0.016])
    out = budget.project(torch.ones(1, 3))
    torch.testing.assert_close(out, torch.tensor([[0.03, 0.03 * 0.004, 0.03 * 0.016]]))


def test_clip_applies_budget_then_bounds() -> None:
    budget = AttackBudget(0.2, low=0.0, high=1.0)
    obs = torch.tensor([[0.1, 0.5, 0.95]])
    adv = torch.tensor([[-0.5, 0.9, 1.5]])
    torch.testing.assert_close(budget.clip(adv, obs), torch.tensor([[0.0, 0.7, 1.0]]))


def test_per_feature_eps_is_rounded_once_like_the_authors_vector() -> None:
    # their eps vector: np.ones(n) * eps with some entries *= spread (float64), then a float32
    # tensor; eps * scale is taken in float64 and rounded once here too
    scale = np.array([1.0, 0.004, 0.016, 1.0, 0.3])
    for eps in (0.03, 0.05, 0.07):
        theirs = np.ones(5) * eps
        theirs[1:3] *= scale[1:3]
        theirs[4] *= scale[4]
        expected = torch.tensor(theirs, dtype=torch.float32)
        got = AttackBudget(eps, scale=scale).per_feature_eps(5, torch.zeros(1))
        assert torch.equal(got, expected)


def test_clip_without_bounds_projects_only() -> None:
    budget = AttackBudget(0.1, low=0.0, high=1.0)
    obs = torch.tensor([[0.05, 0.95]])
    adv = torch.tensor([[-0.5, 1.5]])
    torch.testing.assert_close(budget.clip(adv, obs), torch.tensor([[0.0, 1.0]]))
    torch.testing.assert_close(budget.clip(adv, obs, bounds=False), torch.tensor([[-0.05, 1.05]]))
    grid = AttackBudget(3.0, low=0.0, high=255.0, quantize=True).bind(obs)
    clean = torch.tensor([[1.0, 254.0]])
    inside = torch.tensor([[0.3, 254.9]])
    assert torch.equal(grid.quantize_grid(inside, clean), torch.tensor([[0.0, 255.0]]))
    outside = torch.tensor([[-1.6, 256.4]])  # an attack with clip: none
    got = grid.quantize_grid(outside, clean, bounds=False)
    assert torch.equal(got, torch.tensor([[-2.0, 256.0]]))


def test_clip_never_moves_clean_values_already_out_of_bounds() -> None:
    budget = AttackBudget(0.1, low=0.0, high=1.0, mask=[0, 1])
    obs = torch.tensor([[1.3, -0.2]])  # both outside [0, 1]
    adv = torch.tensor([[1.5, -0.25]])
    out = budget.clip(adv, obs)
    # masked feature untouched; the other may not move further out of the bounds
    torch.testing.assert_close(out, torch.tensor([[1.3, -0.2]]))


def test_per_feature_bounds_and_dtype_device() -> None:
    budget = AttackBudget(1.0, low=np.array([0.0, -1.0]), high=np.array([1.0, 0.0]))
    obs = torch.zeros(2, 2, dtype=torch.float64)
    out = budget.clip(obs + torch.tensor([[2.0, 2.0], [-2.0, -2.0]], dtype=torch.float64), obs)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=torch.float64))


def test_from_groups_builds_mask_and_scale() -> None:
    groups = {"calendar": slice(0, 2), "pv": [3], "load": slice(4, 6)}
    budget = AttackBudget.from_groups(
        0.03,
        groups,
        6,
        mask_groups=["calendar"],
        scale_groups={"pv": 0.004, "load": 0.5},
        low=0,
        high=1,
    )
    np.testing.assert_array_equal(budget.mask, [0, 0, 1, 1, 1, 1])
    np.testing.assert_allclose(budget.scale, [1, 1, 1, 0.004, 0.5, 0.5])
    eps = budget.per_feature_eps(6, torch.zeros(1))
    torch.testing.assert_close(eps, torch.tensor([0, 0, 0.03, 0.03 * 0.004, 0.015, 0.015]))


def test_from_groups_errors() -> None:
    with pytest.raises(ValueError, match="unknown feature group"):
        AttackBudget.from_groups(0.1, {"a": slice(0, 1)}, 3, mask_groups=["b"])
    with pytest.raises(ValueError, match="out of range"):
        AttackBudget.from_groups(0.1, {"a": [7]}, 3, mask_groups=["a"])
    with pytest.raises(ValueError, match=">= 0"):
        AttackBudget.from_groups(0.1, {"a": [0]}, 3, scale_groups={"a": -1.0})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eps": -0.1}, "eps"),
        ({"eps": float("nan")}, "eps"),
        ({"eps": "big"}, "eps"),
        ({"eps": 0.1, "norm": "l1"}, "norm"),
        ({"eps": 0.1, "mask": [0, 0.5]}, "mask"),
        ({"eps": 0.1, "mask": 1}, "mask"),
        ({"eps": 0.1, "scale": [1, -1]}, "scale"),
        ({"eps": 0.1, "mask": [1, 1], "scale": [1, 1, 1]}, "shape"),
        ({"eps": 0.1, "low": 1.0, "high": 0.0}, "low"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AttackBudget(**kwargs)


def test_shape_mismatch_with_observation() -> None:
    budget = AttackBudget(0.1, mask=[1, 0, 1])
    with pytest.raises(ValueError, match="does not match"):
        budget.project(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="batch"):
        budget.project(torch.zeros(3))


@settings(max_examples=60, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.0, 2.0),
    mask=st.lists(st.sampled_from([0.0, 1.0]), min_size=4, max_size=4),
    scale=st.lists(st.one_of(st.just(0.0), st.floats(1e-3, 3.0)), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_projection_is_inside_and_idempotent(
    norm: str, eps: float, mask: list, scale: list, seed: int
) -> None:
    budget = AttackBudget(eps, norm=norm, mask=mask, scale=scale)
    gen = torch.Generator().manual_seed(seed)
    delta = torch.randn(5, 4, generator=gen, dtype=torch.float64) * 3
    out = budget.project(delta)
    bound = budget.bind(out)
    assert torch.all(out[:, ~bound.active] == 0)
    assert torch.all(bound.scaled_norm(out) <= eps * (1 + 1e-9) + 1e-12)
    torch.testing.assert_close(budget.project(out), out)


def test_equality_compares_arrays_by_value() -> None:
    a = AttackBudget(0.1, mask=np.array([1, 0]), low=0.0)
    assert a == AttackBudget(0.1, mask=torch.tensor([1.0, 0.0]), low=0.0)
    assert a != AttackBudget(0.1, mask=[1, 1], low=0.0)
    assert a != AttackBudget(0.1, mask=[1, 0])


def test_infinite_bounds_are_allowed() -> None:
    budget = AttackBudget(0.5, low=[-np.inf, 0.0], high=[np.inf, 1.0])
    obs = torch.tensor([[100.0, 0.9]])
    torch.testing.assert_close(budget.clip(obs + 1.0, obs), torch.tensor([[100.5, 1.0]]))


# ----------------------------------------------------------------------------- images
C, H, W = 2, 4, 4


def test_image_masks_broadcast_per_channel_pixel_and_element() -> None:
    obs = torch.zeros(2, C, H, W)
    per_channel = AttackBudget(3.0, mask=np.array([1.0, 0.0]).reshape(C, 1, 1))
    bound = per_channel.bind(obs)
    assert bound.eps_vec.shape == (C, H, W)
    assert torch.all(bound.eps_vec[0] == 3.0) and torch.all(bound.eps_vec[1] == 0.0)
    pixel = np.ones((1, H, W))
    pixel[0, 0, 0] = 0.0
    per_pixel = AttackBudget(3.0, mask=pixel, scale=np.array([1.0, 2.0]).reshape(C, 1, 1))
    eps = per_pixel.bind(obs).eps_vec
    assert torch.all(eps[:, 0, 0] == 0) and eps[0, 1, 1] == 3.0 and eps[1, 1, 1] == 6.0
    element = AttackBudget(3.0, scale=np.full((C, H, W), 0.5), low=0, high=255)
    torch.testing.assert_close(
        element.project(torch.full((1, C, H, W), 9.0)), torch.full((1, C, H, W), 1.5)
    )
    with pytest.raises(ValueError, match="broadcast"):
        AttackBudget(1.0, mask=np.ones((3, 1, 1)), scale=np.ones((2, 1, 1)))
    with pytest.raises(ValueError, match="does not match"):
        AttackBudget(1.0, mask=np.ones((3, 1, 1))).bind(obs)


def test_quantize_rounds_within_eps_and_bounds() -> None:
    budget = AttackBudget(2.5, low=0, high=255, quantize=True)
    obs = torch.tensor([[[[10.0, 254.0], [0.0, 100.0]]]])  # (1, 1, 2, 2)
    adv = obs + torch.tensor([[[[2.5, 0.6], [-0.4, -2.5]]]])
    adv = budget.clip(adv, obs)  # 254.6 -> 255
    out = budget.bind(obs).quantize_grid(adv, obs)
    # 12.5 would round to 12 (half to even) - fine; 97.5 rounds to 98 (|delta| 2 <= 2.5)
    torch.testing.assert_close(out, torch.tensor([[[[12.0, 255.0], [0.0, 98.0]]]]))
    tight = AttackBudget(1.5, quantize=True).bind(obs)
    out = tight.quantize_grid(obs + 1.5, obs)  # round(1.5) = 2 > 1.5: truncated to 1
    torch.testing.assert_close(out, obs + 1.0)
    with pytest.raises(ValueError, match="integer-valued"):
        tight.quantize_grid(obs + 0.5, obs + 0.25)
    with pytest.raises(ValueError, match="quantize"):
        AttackBudget(1.0, quantize="yes")


def test_quantize_l2_keeps_the_norm() -> None:
    budget = AttackBudget(1.0, norm="l2", quantize=True).bind(torch.zeros(1, 2))
    obs = torch.zeros(1, 2)
    adv = obs + torch.tensor([[0.7, 0.7]])  # norm 0.99; rounding would give norm sqrt(2)
    torch.testing.assert_close(budget.quantize_grid(adv, obs), obs)


MASK_SHAPES = {"none": None, "channel": (C, 1, 1), "pixel": (1, H, W), "element": (C, H, W)}


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(["random", "fgsm", "pgd", "bifurcation"]),
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.0, 12.0),
    mask_shape=st.sampled_from(sorted(MASK_SHAPES)),
    scale_shape=st.sampled_from(sorted(MASK_SHAPES)),
    quantize=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_image_attacks_stay_in_budget_bounds_and_grid(
    name: str, norm: str, eps: float, mask_shape: str, scale_shape: str, quantize: bool, seed: int
) -> None:
    from torch import nn

    from rlkit.attacks import make_attack

    rng = np.random.default_rng(seed)
    mask = (
        None
        if MASK_SHAPES[mask_shape] is None
        else rng.integers(0, 2, MASK_SHAPES[mask_shape]).astype(float)
    )
    scale = (
        None
        if MASK_SHAPES[scale_shape] is None
        else rng.uniform(0.0, 2.0, MASK_SHAPES[scale_shape])
    )
    budget = AttackBudget(
        eps, norm=norm, mask=mask, scale=scale, low=0, high=255, quantize=quantize
    )
    torch.manual_seed(seed)
    policy = nn.Sequential(nn.Conv2d(C, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    obs = torch.from_numpy(rng.integers(0, 256, (3, C, H, W))).float()  # uint8 frames
    kind = "discrete" if seed % 2 else "continuous"
    extra: dict = (
        {"iterations": 4, "decay_every": 2, "step_size": 2.0}
        if name in ("pgd", "bifurcation")
        else {}
    )
    if name in ("pgd", "fgsm"):
        extra["random_start"] = bool(seed % 3)
    attack = make_attack(name, policy, budget, action_kind=kind, seed=seed, **extra)
    adv = attack(obs.to(torch.uint8))  # uint8 batches are accepted
    assert adv.shape == obs.shape and adv.dtype == torch.float32
    bound = budget.bind(obs)
    delta = (adv - obs).double()
    assert torch.all(delta[:, ~bound.active] == 0)
    slack = 2 * torch.finfo(torch.float32).eps * 255
    shrunk = delta.sign() * (delta.abs() - slack).clamp_min(0)
    assert torch.all(budget.bind(obs.double()).scaled_norm(shrunk) <= eps * (1 + 1e-6) + 1e-9)
    assert adv.min() >= 0 and adv.max() <= 255
    if quantize:
        assert torch.equal(adv, adv.round())
