"""O-DICE's orthogonal value gradient as one pure function, written for ``torch.compile``.

Why: the orthogonal rule needs three gradients of the value net, the forward ``gf`` (through
V(s)), the backward ``gb`` (through V(s')) and the linear term's ``g0`` (through V(s)), which
autograd gives as three backward passes. Each head's output is one scalar per sample, so the
backward of any per-sample cotangent ``u`` is ``u`` times the backward of a unit cotangent: one
unit backward over ``[s; s']`` gives every layer's per-sample derivatives, and each gradient is
then only its weighted sums (one product per layer). Run eagerly that is no faster than autograd
on the CPU: the step is bound by its elementwise passes (LayerNorm, ReLU and their backward)
over memory, not by its products. Compiled, the passes fuse into a few loops; see
:class:`~rlkit.agents.odice.ODICEAgent`'s ``compile_value``. The result is autograd's up to the
order of the sums (tested against it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Tensor = torch.Tensor
EPS = 1e-5  # nn.LayerNorm's default, which the value net uses


def _layer_norm(z: Tensor) -> tuple[Tensor, Tensor]:
    """``(normed, rstd)`` of a LayerNorm without its affine (biased variance, as torch)."""
    centred = z - z.mean(-1, keepdim=True)
    rstd = torch.rsqrt(centred.square().mean(-1, keepdim=True) + EPS)
    return centred * rstd, rstd


def _stack(params: Sequence[Sequence[Tensor]], layer_norm: bool) -> list[list[Tensor]]:
    """Per layer ``[W, b, (ln_w, ln_b)]`` stacked over the heads (heads, ...)."""
    stacked = [torch.stack(list(p)) for p in zip(*params, strict=True)]
    per_layer = 4 if layer_norm else 2
    hidden = (len(stacked) - 2) // per_layer
    layers = [stacked[i * per_layer : (i + 1) * per_layer] for i in range(hidden)]
    return [*layers, stacked[-2:]]


def _forward(layers: list[list[Tensor]], x: Tensor) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
    """Every head's value (heads, R) and, per hidden layer, (input, normed, rstd, hidden)."""
    h = x.expand(layers[0][0].shape[0], *x.shape)
    saved: list[tuple[Tensor, ...]] = []
    for layer in layers[:-1]:
        z = torch.bmm(h, layer[0].transpose(1, 2)) + layer[1].unsqueeze(1)  # add fused below
        normed, rstd = z, z.new_ones(())
        if len(layer) == 4:
            normed, rstd = _layer_norm(z)
            z = normed * layer[2].unsqueeze(1) + layer[3].unsqueeze(1)
        hidden = torch.relu(z)
        saved.append((h, normed, rstd, hidden))
        h = hidden
    weight, bias = layers[-1]
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2)).squeeze(-1), saved


def _unit_backward(
    layers: list[list[Tensor]], saved: list[tuple[Tensor, ...]]
) -> list[tuple[Tensor, Tensor | None]]:
    """Per hidden layer, the per-sample d V / d (Linear output) and d V / d (LayerNorm input
    after its affine), i.e. ``(d_linear, d_affine)`` (d_affine None without LayerNorm)."""
    grad_h = layers[-1][0]  # (heads, 1, hidden): d v / d h of the last hidden layer
    out: list[tuple[Tensor, Tensor | None]] = []
    for depth in range(len(saved) - 1, -1, -1):
        layer, (_, normed, rstd, hidden) = layers[depth], saved[depth]
        grad_a = torch.where(hidden > 0, grad_h, 0.0)
        grad_z, affine = grad_a, None
        if len(layer) == 4:
            affine = grad_a
            grad_n = grad_a * layer[2].unsqueeze(1)
            mean_n = grad_n.mean(-1, keepdim=True)
            mean_nn = (grad_n * normed).mean(-1, keepdim=True)
            grad_z = rstd * (grad_n - mean_n - normed * mean_nn)
        out.append((grad_z, affine))
        if depth:
            grad_h = torch.bmm(grad_z, layer[0])
    out.reverse()
    return out


def _weighted_sums(
    saved: list[tuple[Tensor, ...]],
    deltas: list[tuple[Tensor, Tensor | None]],
    rows: slice,
    weight: Tensor,
) -> list[Tensor]:
    """``sum_i weight_i d V(x_i) / d params`` over ``rows``, per stacked parameter."""
    col = weight.unsqueeze(1)  # (heads, 1, rows)
    grads = []
    for (inputs, normed, _, _), (grad_z, affine) in zip(saved, deltas, strict=True):
        delta = grad_z[:, rows]
        grads.append(torch.bmm((delta * weight.unsqueeze(-1)).transpose(1, 2), inputs[:, rows]))
        grads.append(torch.bmm(col, delta).squeeze(1))
        if affine is not None:
            grads.append(torch.bmm(col, (affine * normed)[:, rows]).squeeze(1))
            grads.append(torch.bmm(col, affine[:, rows]).squeeze(1))
    grads.append(torch.bmm(col, saved[-1][3][:, rows]))
    grads.append(weight.sum(1, keepdim=True))
    return grads


def _f_star_grad(residual: Tensor, divergence: str) -> Tensor:
    if divergence == "reverse_kl":
        return torch.exp(residual - 1.0)
    return torch.clamp_min(residual / 2.0 + 1.0, 0.0)


def orthogonal_gradient(
    params: Sequence[Sequence[Tensor]],
    target_params: Sequence[Sequence[Tensor]],
    obs: Tensor,
    next_obs: Tensor,
    reward: Tensor,
    discount: Tensor,
    lam: float,
    eta: float,
    divergence: str,
    layer_norm: bool,
) -> tuple[list[Tensor], Tensor, Tensor, Tensor]:
    """O-DICE's value gradient ``g0 + gf + (gb - c gf)``, ``c = <gf, gb> / |gf|^2``.

    :param params: per head, its parameters in ``head.parameters()`` order (an ``mlp``:
        Linear, LayerNorm if ``layer_norm``, ReLU, ..., Linear).
    :param target_params: the target net's, alike.
    :param obs: (B, d) normalised observations.
    :param next_obs: (B, d) next observations.
    :param reward: (B,) rewards.
    :param discount: (B,) gamma * (1 - terminal).
    :param lam: lambda.
    :param eta: scale of the backward gradient.
    :param divergence: ``chi_square`` or ``reverse_kl``.
    :param layer_norm: whether the hidden layers carry LayerNorm.
    :return: per head and parameter (``[head0's..., head1's...]``) the gradient, the forward
        residual (heads, B), ``c``, and V(s) (heads, B).
    """
    batch = obs.shape[0]
    both = torch.cat([obs, next_obs])
    layers = _stack(params, layer_norm)
    values, saved = _forward(layers, both)
    target = _forward(_stack(target_params, layer_norm), both)[0].min(dim=0).values
    v, v_next = values[:, :batch], values[:, batch:]
    forward_res = reward + discount * target[batch:] - v
    backward_res = reward + discount * v_next - target[:batch]
    count = v.numel()  # the losses are means over heads and samples
    deltas = _unit_backward(layers, saved)
    first, rest = slice(0, batch), slice(batch, None)
    gf = _weighted_sums(saved, deltas, first, -lam / count * _f_star_grad(forward_res, divergence))
    g0 = _weighted_sums(saved, deltas, first, torch.full_like(v, (1.0 - lam) / count))
    cotangent_b = lam * eta / count * _f_star_grad(backward_res, divergence) * discount
    gb = _weighted_sums(saved, deltas, rest, cotangent_b)
    flat_f, flat_b = torch.cat([g.reshape(-1) for g in gf]), torch.cat([g.reshape(-1) for g in gb])
    coef = torch.dot(flat_f, flat_b) / torch.clamp_min(torch.dot(flat_f, flat_f), 1e-10)
    total = [zero + back + (1.0 - coef) * fwd for zero, back, fwd in zip(g0, gb, gf, strict=True)]
    heads = len(params)
    per_head = [[g[head].reshape(p.shape) for g, p in zip(total, params[head], strict=True)]
                for head in range(heads)]  # fmt: skip
    return [g for grads in per_head for g in grads], forward_res, coef, v
