"""Per-sample attack losses (all return shape (B,), larger = better for the attacker unless noted).

* :func:`difference_of_logits` - the DL / Carlini-Wagner loss without margin or clamp:
  ``max_{j != y} z_j - z_y``.  Applied to bifurcated group logits it is the paper's
  Group Difference Logits (GDL) loss, see :func:`group_difference_logits`.
* :func:`action_distance` - MSE / MAE / Huber distance between two action batches.
* :func:`categorical_kl`, :func:`gaussian_kl` - KL divergences used by the MAD attack.

These torch definitions are the only definition of each loss: every attack engine
(:mod:`rlkit.attacks.engines`) evaluates them, or differentiates them with torch autograd, through
an :class:`OutputLoss` that names the loss of the policy output an attack maximises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

DISTANCES = ("mse", "mae", "huber")


def difference_of_logits(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Largest other logit minus the logit of ``label``, along the last dimension.

    The other logits are masked with ``-inf`` (not multiplied by zero as in the authors'
    ``CWLoss``/``DLLoss``, which makes the "largest other" ``max(0, z_j)`` whenever all other
    logits are negative); this is the stated formula.

    :param logits: tensor (..., K) with K >= 2.
    :param label: integer tensor (...) of class indices in [0, K).
    :return: the loss, shape (...).
    """
    if logits.shape[-1] < 2:
        raise ValueError("difference_of_logits needs at least 2 logits")
    label = label.long().unsqueeze(-1)
    own = logits.gather(-1, label).squeeze(-1)
    others = logits.scatter(-1, label, float("-inf"))
    return others.amax(dim=-1) - own


def group_difference_logits(groups: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """GDL loss: :func:`difference_of_logits` on group logits, summed over action dimensions.

    :param groups: group logits (B, G) or (B, D, G) (one set of G groups per action dimension).
    :param label: group index per sample (B,) or per sample and dimension (B, D).
    :return: the loss, shape (B,).
    """
    loss = difference_of_logits(groups, label)
    return loss if loss.dim() == 1 else loss.flatten(1).sum(dim=1)


def action_distance(
    action: torch.Tensor, reference: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """Per-sample distance between action batches, averaged over action dimensions.

    :param action: actions (B, act_dim).
    :param reference: reference actions broadcastable to ``action``.
    :param kind: ``"mse"`` (squared error), ``"mae"`` (absolute error) or ``"huber"``
        (delta = 1).
    :return: the distance, shape (B,).
    """
    reference = torch.broadcast_to(reference, action.shape)
    if kind == "mse":
        err = (action - reference) ** 2
    elif kind == "mae":
        err = (action - reference).abs()
    elif kind == "huber":
        err = F.huber_loss(action, reference, reduction="none", delta=1.0)
    else:
        raise ValueError(f"distance kind must be one of {list(DISTANCES)}, got {kind!r}")
    return err.flatten(1).mean(dim=1)


def categorical_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(softmax(logits_p) || softmax(logits_q)) per sample.

    :param logits_p: reference (clean) logits (B, K).
    :param logits_q: perturbed logits (B, K).
    :return: the divergence, shape (B,).
    """
    logp = F.log_softmax(logits_p, dim=-1)
    logq = F.log_softmax(logits_q, dim=-1)
    return (logp.exp() * (logp - logq)).sum(dim=-1)


def gaussian_kl(
    mean_p: torch.Tensor, mean_q: torch.Tensor, log_std: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """KL between diagonal Gaussians sharing a fixed ``log_std``, summed over action dims.

    With equal covariances the KL is ``sum((mean_p - mean_q)^2 / (2 sigma^2))``: a scaled squared
    distance (log_std = 0 gives half the squared Euclidean distance).

    :param mean_p: reference (clean) means (B, act_dim).
    :param mean_q: perturbed means (B, act_dim).
    :param log_std: shared log standard deviation (scalar or per action dimension).
    :return: the divergence, shape (B,).
    """
    var = torch.exp(2 * torch.as_tensor(log_std, dtype=mean_p.dtype, device=mean_p.device))
    return (((mean_p - mean_q) ** 2) / (2 * var)).flatten(1).sum(dim=1)


# --------------------------------------------------------------------------- attack objectives
@dataclass(frozen=True)
class OutputLoss:
    """The per-sample objective an attack maximises, as a function of the policy output.

    An engine computes the clean output ``clean = policy(obs)`` (B, k) with its *own* forward
    pass, gets the loss's per-sample tensors ``args = prepare(clean)`` and maximises
    ``fn(policy(obs + delta), *args)``.  Using the engine's own clean output makes a loss that is
    zero-gradient at the clean point (a distance from the clean action) exactly zero-gradient
    there on every engine, rather than the sign of rounding noise between two forward passes.

    :param fn: ``fn(z, *args) -> (B,)``: the loss of the policy output ``z`` (B, k); a
        :func:`functools.partial` of a module-level function with hashable keywords, so the
        compiled engine can cache its compiled gradient by :attr:`key`.
    :param prepare: ``prepare(clean) -> args``: per-sample tensors (batch first) from the clean
        output, e.g. its argmax label, the clean action itself or a target.
    :param degree: ``fn`` is a polynomial of this degree in ``z`` for fixed ``args``: 1 (affine:
        the output gradient is constant, e.g. GDL on two continuous groups ``[a, -a]``) or 2
        (quadratic: the gradient is affine in ``z``, e.g. the MSE distance or the Gaussian KL);
        None = neither.  It lets the MLP engine take the gradient (and Hessian) from torch once
        per call instead of at every iteration.
    """

    fn: Callable[..., torch.Tensor]
    prepare: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
    degree: int | None = None

    @property
    def key(self) -> Any:
        """A hashable identity of :attr:`fn` (function and keywords of a partial, else the id)."""
        fn = self.fn
        if isinstance(fn, partial) and not fn.args:
            try:
                key = (fn.func, tuple(sorted(fn.keywords.items())))
                hash(key)
                return key
            except TypeError:
                pass
        return ("id", id(fn))

    def value(self, z: torch.Tensor, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The per-sample loss (B,) at outputs ``z``.

        :param z: policy outputs (B, k).
        :param args: the tensors from :attr:`prepare`.
        """
        return self.fn(z, *args)

    def output_gradient(self, z: torch.Tensor, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Gradient of the summed loss w.r.t. the policy output, by torch autograd.

        :param z: policy outputs (B, k) (detached).
        :param args: the tensors from :attr:`prepare`, rows matching ``z``.
        :return: ``d sum(fn(z, *args)) / dz``, shape and dtype of ``z``.
        """
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            loss = self.fn(z, *args)
            (grad,) = torch.autograd.grad(loss.sum(), z, allow_unused=True)
        return torch.zeros_like(z) if grad is None else grad

    def output_hessian(self, z: torch.Tensor, args: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Per-sample Hessian of the loss w.r.t. the policy output, by torch autograd.

        The samples do not interact, so the Hessian of the summed loss is block diagonal; this
        returns the blocks, one backward pass per output dimension.

        :param z: policy outputs (B, k) (detached).
        :param args: the tensors from :attr:`prepare`, rows matching ``z``.
        :return: ``H[b, j, l] = d^2 fn(z, *args)[b] / dz[b, j] dz[b, l]``, shape (B, k, k).
        """
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.fn(z, *args).sum(), z, create_graph=True)
            rows = []
            for j in range(z.shape[1]):
                if not grad.requires_grad:  # the gradient does not depend on z
                    rows.append(torch.zeros_like(z))
                    continue
                (row,) = torch.autograd.grad(
                    grad[:, j].sum(), z, retain_graph=True, allow_unused=True
                )
                rows.append(torch.zeros_like(z) if row is None else row)
        return torch.stack(rows, dim=1).detach()
