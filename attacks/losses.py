"""Per-sample attack losses (all return shape (B,), larger = better for the attacker unless noted).

* :func:`difference_of_logits` - the DL / Carlini-Wagner loss without margin or clamp:
  ``max_{j != y} z_j - z_y``.  Applied to bifurcated group logits it is the paper's
  Group Difference Logits (GDL) loss, see :func:`group_difference_logits`.
* :func:`action_distance` - MSE / MAE / Huber distance between two action batches.
* :func:`categorical_kl`, :func:`gaussian_kl` - KL divergences used by the MAD attack.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DISTANCES = ("mse", "mae", "huber")


def difference_of_logits(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Largest other logit minus the logit of ``label``, along the last dimension.

    Args:
        logits: tensor (..., K) with K >= 2.
        label: integer tensor (...) of class indices in [0, K).

    The other logits are masked with ``-inf`` (not multiplied by zero as in the authors'
    ``CWLoss``/``DLLoss``, which makes the "largest other" ``max(0, z_j)`` whenever all other
    logits are negative); this is the stated formula.
    """
    if logits.shape[-1] < 2:
        raise ValueError("difference_of_logits needs at least 2 logits")
    label = label.long().unsqueeze(-1)
    own = logits.gather(-1, label).squeeze(-1)
    others = logits.scatter(-1, label, float("-inf"))
    return others.amax(dim=-1) - own


def group_difference_logits(groups: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """GDL loss: :func:`difference_of_logits` on group logits, summed over action dimensions.

    Args:
        groups: group logits (B, G) or (B, D, G) (one set of G groups per action dimension).
        label: group index per sample (B,) or per sample and dimension (B, D).
    """
    loss = difference_of_logits(groups, label)
    return loss if loss.dim() == 1 else loss.flatten(1).sum(dim=1)


def action_distance(action: torch.Tensor, reference: torch.Tensor,
                    kind: str = "mse") -> torch.Tensor:
    """Per-sample distance between action batches, averaged over action dimensions.

    Args:
        action: actions (B, act_dim).
        reference: reference actions broadcastable to ``action``.
        kind: ``"mse"`` (squared error), ``"mae"`` (absolute error) or ``"huber"`` (delta = 1).
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

    Args:
        logits_p: reference (clean) logits (B, K).
        logits_q: perturbed logits (B, K).
    """
    logp = F.log_softmax(logits_p, dim=-1)
    logq = F.log_softmax(logits_q, dim=-1)
    return (logp.exp() * (logp - logq)).sum(dim=-1)


def gaussian_kl(mean_p: torch.Tensor, mean_q: torch.Tensor, log_std: float | torch.Tensor = 0.0
                ) -> torch.Tensor:
    """KL between diagonal Gaussians sharing a fixed ``log_std``, summed over action dims.

    Args:
        mean_p: reference (clean) means (B, act_dim).
        mean_q: perturbed means (B, act_dim).
        log_std: shared log standard deviation (scalar or per action dimension).

    With equal covariances the KL is ``sum((mean_p - mean_q)^2 / (2 sigma^2))``: a scaled squared
    distance (log_std = 0 gives half the squared Euclidean distance).
    """
    var = torch.exp(2 * torch.as_tensor(log_std, dtype=mean_p.dtype, device=mean_p.device))
    return (((mean_p - mean_q) ** 2) / (2 * var)).flatten(1).sum(dim=1)
