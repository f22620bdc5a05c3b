"""Per-sample attack losses (all return shape (B,), larger = better for the attacker unless noted).

* :func:`difference_of_logits` - the DL / Carlini-Wagner loss without margin or clamp:
  ``max_{j != y} z_j - z_y``, with the clean logit masked as the authors' ``DLLoss``/``CWLoss``
  do (``other_logit="zero"``: multiplied by 0, so the "other" term is ``max(0, max_{j != y}
  z_j)``) or with ``-inf`` (``"neg_inf"``: the stated formula).  Applied to bifurcated group
  logits it is the paper's Group Difference Logits (GDL) loss, see
  :func:`group_difference_logits`.
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

import numpy as np
import torch
import torch.nn.functional as F

DISTANCES = ("mse", "mae", "huber")
#: how :func:`difference_of_logits` masks the label's own logit out of the "largest other" term
OTHER_LOGITS = ("zero", "neg_inf")


def difference_of_logits(
    logits: torch.Tensor, label: torch.Tensor, other_logit: str = "zero"
) -> torch.Tensor:
    """Largest other logit minus the logit of ``label``, along the last dimension.

    ``other_logit`` says how the label's own logit is kept out of the "largest other" term:

    * ``"zero"`` (the authors' ``DLLoss``/``CWLoss``: ``max((1 - onehot) * z) - sum(onehot *
      z)``): it is replaced by 0, so the term is ``max(0, max_{j != y} z_j)``; the two differ
      whenever every other logit is negative (then the loss is ``-z_y`` and only the label's
      logit gets a gradient).  Ties with that 0 split the gradient evenly, as torch's ``max``
      does in their code;
    * ``"neg_inf"`` (the stated formula, rlkit's definition until the authors' became the
      default): it is replaced by ``-inf``, so the term is ``max_{j != y} z_j``.

    :param logits: tensor (..., K) with K >= 2.
    :param label: integer tensor (...) of class indices in [0, K).
    :param other_logit: ``"zero"`` or ``"neg_inf"``.
    :return: the loss, shape (...).
    """
    if logits.shape[-1] < 2:
        raise ValueError("difference_of_logits needs at least 2 logits")
    if other_logit not in OTHER_LOGITS:
        raise ValueError(f"other_logit must be one of {list(OTHER_LOGITS)}, got {other_logit!r}")
    label = label.long().unsqueeze(-1)
    own = logits.gather(-1, label).squeeze(-1)
    fill = 0.0 if other_logit == "zero" else float("-inf")
    others = logits.scatter(-1, label, fill)
    return others.amax(dim=-1) - own


def difference_of_logits_cells(
    logits: np.ndarray, label: np.ndarray, other_logit: str = "zero"
) -> np.ndarray:
    """Which entries tie for :func:`difference_of_logits`' "largest other" term, (..., K) bool.

    The label's own slot holds its fill (0 or -inf), as in the loss.  For a fixed label the
    loss's gradient is a function of this mask alone (torch's ``amax`` splits the gradient
    evenly over ties), so it names the cell of an ordinal loss far more coarsely than the full
    order of the logits; finite logits only.

    :param logits: (..., K) logits.
    :param label: (...) class indices.
    :param other_logit: ``"zero"`` or ``"neg_inf"``.
    """
    others = np.array(logits, copy=True).reshape(-1, logits.shape[-1])
    others[np.arange(len(others)), np.asarray(label).reshape(-1)] = (
        0.0 if other_logit == "zero" else -np.inf
    )
    return (others == others.max(axis=1, keepdims=True)).reshape(logits.shape)


def group_difference_logits(
    groups: torch.Tensor, label: torch.Tensor, other_logit: str = "zero"
) -> torch.Tensor:
    """GDL loss: :func:`difference_of_logits` on group logits, summed over action dimensions.

    :param groups: group logits (B, G) or (B, D, G) (one set of G groups per action dimension).
    :param label: group index per sample (B,) or per sample and dimension (B, D).
    :param other_logit: ``"zero"`` (the authors') or ``"neg_inf"``, see
        :func:`difference_of_logits`.
    :return: the loss, shape (B,).
    """
    loss = difference_of_logits(groups, label, other_logit)
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
    :param kinks: for a loss that is piecewise affine in each output (with ``degree=None``):
        ``kinks(*args) -> (slope, offset)``, two tensors shaped like the output (B, k).  The
        loss must be a sum over the output dimensions ``j`` of functions of ``z[:, j]`` alone,
        each affine wherever ``slope[:, j] * z[:, j] + offset[:, j]`` keeps its sign (below
        zero, at zero, above zero), e.g. GDL with ``other_logit="zero"`` on continuous groups,
        ``max(0, g_other) - g_own`` with ``g_other = m a + b``: its kink is where ``m a + b``
        changes sign.  The output gradient is then constant on each side (and at the kink), so
        the MLP engine takes those three from torch once per call and its numba kernel picks
        one per output at every iteration.  None = no such structure.
    :param ordinal: ``fn`` is affine on each cell where the order of the outputs and 0 (ties
        included) is fixed, for fixed ``args``: maxima and minima over subsets of the outputs
        and 0, and sums of them, e.g. the difference of logits and GDL on discrete group
        maxima.  The output gradient is then a function of the order alone, so the MLP engine
        asks torch for it once per order it meets instead of at every iteration.
    :param cells: for an ordinal loss, a coarser partition: ``cells(z, *args) -> (B, ...)``
        numpy arrays on numpy ``z`` and ``args``, such that two finite points of one sample
        with equal rows have equal output gradients (e.g. the tie sets of each maximum the loss
        takes, :func:`difference_of_logits_cells`).  The MLP engine then keys its cache by
        these instead of the whole order, so it asks torch far less often.
    """

    fn: Callable[..., torch.Tensor]
    prepare: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
    degree: int | None = None
    kinks: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    ordinal: bool = False
    cells: Callable[..., np.ndarray] | None = None

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
