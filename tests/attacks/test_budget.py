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
    budget = AttackBudget.from_groups(0.03, groups, 6, mask_groups=["calendar"],
                                      scale_groups={"pv": 0.004, "load": 0.5}, low=0, high=1)
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
def test_projection_is_inside_and_idempotent(norm: str, eps: float, mask: list, scale: list,
                                             seed: int) -> None:
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
