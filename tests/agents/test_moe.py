"""MENTOR's mixture of experts: routing, sparse == dense, aux loss, gradients for attacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rlkit.agents.moe import MoE


def moe_with_logits(logits: list[float], dim: int = 5) -> MoE:
    """An MoE whose gate outputs ``logits`` for every input (zero last-layer weights)."""
    torch.manual_seed(0)
    moe = MoE(dim, num_experts=len(logits), top_k=2, expert_hidden=3, gate_hidden=4)
    moe.eval()
    with torch.no_grad():
        moe.gate[-1].weight.zero_()
        moe.gate[-1].bias.copy_(torch.tensor(logits))
    return moe


def test_top_k_picks_the_largest_logits_and_renormalises():
    logits = [0.0, 3.0, 1.0, 2.0, -1.0, 0.5]
    moe = moe_with_logits(logits)
    with torch.no_grad():
        probs, index, weights = moe.route(torch.randn(4, 5))
    assert index.tolist() == [[1, 3]] * 4
    expected = np.array([math.exp(3.0), math.exp(2.0)]) / (math.exp(3.0) + math.exp(2.0))
    np.testing.assert_allclose(weights.numpy(), np.tile(expected, (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(weights.sum(-1).numpy(), 1.0, atol=1e-7)
    np.testing.assert_allclose(probs[0].numpy(), torch.softmax(torch.tensor(logits), 0), rtol=1e-6)


def test_output_is_the_weighted_sum_of_the_chosen_experts():
    moe = moe_with_logits([0.0, 3.0, 1.0, 2.0, -1.0, 0.5])
    x = torch.randn(3, 5)
    w1 = math.exp(3.0) / (math.exp(3.0) + math.exp(2.0))
    expected = w1 * moe.experts[1](x) + (1 - w1) * moe.experts[3](x)
    for sparse in (True, False):
        moe.sparse = sparse
        out, _ = moe(x)
        torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("top_k", [1, 3, 8])
def test_sparse_dispatch_equals_dense_in_float64(top_k):
    torch.manual_seed(3)
    moe = MoE(12, num_experts=8, top_k=top_k, expert_hidden=7, gate_hidden=9).double().eval()
    x = torch.randn(37, 12, dtype=torch.float64, requires_grad=True)
    outs, grads = [], []
    for sparse in (True, False):
        moe.sparse = sparse
        out, aux = moe(x)
        (out.square().sum() + aux).backward()
        outs.append(out.detach())
        grads.append(
            (
                x.grad.clone(),
                [
                    torch.zeros_like(p) if p.grad is None else p.grad.clone()
                    for p in moe.parameters()
                ],
            )
        )
        x.grad = None
        moe.zero_grad(set_to_none=True)  # an unchosen expert gets no gradient when sparse
    assert torch.allclose(outs[0], outs[1], rtol=0, atol=1e-10)
    assert torch.allclose(grads[0][0], grads[1][0], rtol=0, atol=1e-10)
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_aux_loss_equals_hand_computation():
    moe = MoE(4, num_experts=4, top_k=2, balance_weight=1.0, entropy_weight=1.0)
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.4, 0.1]])
    index = torch.tensor([[0, 1], [3, 2], [2, 0]])
    load = np.array([2, 1, 2, 1]) / 3.0  # times each expert is chosen / batch
    var = load.var(ddof=1)
    p = probs.numpy()
    entropy = float(-(p * np.log(p + 1e-9)).sum(1).mean())
    assert float(moe.aux_loss(probs, index)) == pytest.approx(var + entropy, rel=1e-6)
    moe.balance_weight, moe.entropy_weight = 0.5, 2.0
    assert float(moe.aux_loss(probs, index)) == pytest.approx(0.5 * var + 2 * entropy, rel=1e-6)


def test_gate_dropout_is_off_in_eval_and_on_in_train():
    torch.manual_seed(0)
    moe = MoE(6, num_experts=4, top_k=2, dropout=0.5)
    x = torch.randn(16, 6)
    moe.eval()
    assert torch.equal(moe(x)[0], moe(x)[0])
    moe.train()
    assert not torch.equal(moe(x)[0], moe(x)[0])


def test_unused_expert_is_not_run_by_sparse_dispatch():
    moe = moe_with_logits([5.0, 4.0, -9.0, -9.0, -9.0, -9.0])
    calls = []
    for i, expert in enumerate(moe.experts):
        expert.register_forward_hook(lambda _m, inp, _o, i=i: calls.append((i, inp[0].shape[0])))
    moe(torch.randn(7, 5))
    assert sorted(calls) == [(0, 7), (1, 7)]


def test_bad_top_k_is_rejected():
    with pytest.raises(ValueError, match="top_k"):
        MoE(4, num_experts=3, top_k=4)
