"""Tests for rlkit.attacks.losses."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from rlkit.attacks import (
    action_distance,
    categorical_kl,
    difference_of_logits,
    gaussian_kl,
    group_difference_logits,
)


def test_difference_of_logits_known_values() -> None:
    logits = torch.tensor([[1.0, 3.0, 2.0], [-5.0, -1.0, -2.0]])
    label = torch.tensor([1, 0])
    # neg_inf: sample 0: max other = 2 - 3 = -1; sample 1: max other = -1 - (-5) = 4
    torch.testing.assert_close(
        difference_of_logits(logits, label, "neg_inf"), torch.tensor([-1.0, 4.0])
    )
    # zero (the default, the authors'): the label's logit becomes 0, which sample 1's others
    # (all negative) do not beat: 0 - (-5) = 5
    torch.testing.assert_close(difference_of_logits(logits, label), torch.tensor([-1.0, 5.0]))
    with pytest.raises(ValueError, match="other_logit"):
        difference_of_logits(logits, label, "zeros")


def test_difference_of_logits_zero_mask_is_the_authors_dlloss() -> None:
    # their DLLoss: max((1 - onehot) * z) - sum(onehot * z)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, generator=gen) - 0.5
    label = torch.randint(0, 5, (64,), generator=gen)
    onehot = torch.nn.functional.one_hot(label, 5)
    theirs = ((1 - onehot) * logits).amax(-1) - (onehot * logits).sum(-1)
    assert torch.equal(difference_of_logits(logits, label, "zero"), theirs)
    minus_inf = difference_of_logits(logits, label, "neg_inf")
    negative = (logits.masked_fill(onehot.bool(), -1.0) < 0).all(-1)  # others all < 0
    assert negative.any() and torch.equal(minus_inf[~negative], theirs[~negative])
    assert torch.all(minus_inf[negative] < theirs[negative])


def test_difference_of_logits_masks_with_minus_inf_or_zero() -> None:
    # all other logits negative: the authors' zero mask gives 0 - (-1) = 1
    logits = torch.tensor([[-1.0, -3.0]])
    assert difference_of_logits(logits, torch.tensor([0]), "neg_inf").item() == pytest.approx(-2.0)
    assert difference_of_logits(logits, torch.tensor([0])).item() == pytest.approx(1.0)


def test_difference_of_logits_gradient() -> None:
    for other in ("zero", "neg_inf"):
        logits = torch.tensor([[1.0, 3.0, 2.0]], requires_grad=True)
        difference_of_logits(logits, torch.tensor([1]), other).sum().backward()
        torch.testing.assert_close(logits.grad, torch.tensor([[0.0, -1.0, 1.0]]))
    # zero mask, every other logit negative: only the label's logit gets a gradient
    logits = torch.tensor([[-1.0, 3.0, -2.0]], requires_grad=True)
    difference_of_logits(logits, torch.tensor([1])).sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[0.0, -1.0, 0.0]]))


def test_group_difference_logits_sums_dimensions() -> None:
    groups = torch.tensor([[[2.0, -2.0], [-0.5, 0.5]]])  # (B=1, D=2, G=2)
    label = torch.tensor([[0, 1]])
    got = group_difference_logits(groups, label, "neg_inf")
    assert got.item() == pytest.approx(-4.0 - 1.0)
    # zero: max(0, -2) - 2 = -2 and max(0, -0.5) - 0.5 = -0.5
    assert group_difference_logits(groups, label).item() == pytest.approx(-2.0 - 0.5)
    flat = group_difference_logits(groups[:, 0], torch.tensor([1]))
    assert flat.shape == (1,) and flat.item() == pytest.approx(4.0)


def test_action_distances() -> None:
    a = torch.tensor([[0.0, 3.0]])
    ref = torch.tensor([[1.0, 1.0]])
    assert action_distance(a, ref, "mse").item() == pytest.approx((1 + 4) / 2)
    assert action_distance(a, ref, "mae").item() == pytest.approx((1 + 2) / 2)
    assert action_distance(a, ref, "huber").item() == pytest.approx((0.5 + 1.5) / 2)
    with pytest.raises(ValueError, match="mse"):
        action_distance(a, ref, "l7")


def test_categorical_kl_matches_torch() -> None:
    p = torch.tensor([[0.1, 2.0, -1.0], [0.0, 0.0, 0.0]])
    q = torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    expected = kl_divergence(Categorical(logits=p), Categorical(logits=q))
    torch.testing.assert_close(categorical_kl(p, q), expected)
    assert categorical_kl(p, q)[1].item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("log_std", [0.0, -0.7])
def test_gaussian_kl_matches_torch(log_std: float) -> None:
    mp = torch.tensor([[0.2, -1.0]])
    mq = torch.tensor([[0.5, 1.0]])
    std = torch.exp(torch.tensor(log_std))
    expected = kl_divergence(Normal(mp, std), Normal(mq, std)).sum(dim=1)
    torch.testing.assert_close(gaussian_kl(mp, mq, log_std), expected)
    if log_std == 0.0:
        assert gaussian_kl(mp, mq).item() == pytest.approx(0.5 * ((0.3**2) + 4.0))
