"""MENTOR's mixture-of-experts layer (Huang et al. 2025), the middle layer of its actor.

``MoE(dim)`` maps (B, dim) to (B, dim): a gate Linear(dim, 256) -> ReLU -> Dropout(0.1) ->
Linear(256, E) with a softmax picks the top-k of E experts per row (16 and 4 in MENTOR); the k
probabilities are renormalised to sum to 1 and weight the chosen experts' outputs. Each expert
is Linear(dim, 256) -> ReLU -> Linear(256, dim). ``forward`` returns ``(output, aux_loss)``,
which :class:`rlkit.networks.DrQActor` accepts as its ``middle``.

Differences from the authors' ``moe.py`` (emlynw/mentor 2005f05):

- **Sparse dispatch** (``sparse=True``, the default): each expert runs only on the rows routed
  to it (4/16 of the work at top-4 of 16); the authors run all 16 experts on every row and
  gather 4. Both are here and agree to float rounding (``sparse=False`` is the authors' dense
  form; tests check 1e-10 in float64). Under ``torch.compile`` (the attacks' compiled engine)
  the dense form is traced, as the sparse one has data-dependent shapes.
- **Renormalisation without the 1e-9**: the authors divide by ``sum + 1e-9``; the top-k of a
  softmax sums to at least k/E, so there is nothing to guard and the weights sum to 1 exactly
  (up to rounding). The outputs differ from theirs by a relative 1e-9 at most.
- **Auxiliary loss**: as the authors' code *applies* it, ``balance * Var(load) + entropy *
  mean H(gate)`` with both weights 1.0 and, in the agent, no scale (their configured
  ``aux_loss_scale: 0.002`` is never read); :class:`rlkit.agents.mentor.MentorAgent` offers the
  scale as ``aux_loss_scale`` (default 1.0 = the released behaviour). ``Var`` is the unbiased
  variance of the per-expert load (fraction of rows routing to each expert, from hard top-k
  one-hots, so it carries no gradient, as theirs); the entropy term is *minimised*, which
  sharpens the routing (theirs too).
- **Initialisation**: the authors' ``MoE`` initialises with Xavier, but their actor then
  re-applies DrQ-v2's orthogonal ``weight_init`` to every Linear, the MoE's included; the
  actor here does the same, so MoE layers start orthogonal as in the released agent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MoE(nn.Module):
    """Top-k mixture of experts, (B, dim) -> ((B, dim), aux loss).

    :param dim: input and output width (the actor's hidden width, 1024).
    :param num_experts: experts E (16).
    :param top_k: experts per row (4).
    :param expert_hidden: each expert's hidden width (256).
    :param gate_hidden: the gate's hidden width (256).
    :param dropout: dropout in the gate (0.1; off in eval mode).
    :param sparse: run each expert only on its rows (True) or all experts on all rows (False,
        the authors' dense form; same result).
    :param balance_weight: weight of the load-variance term in the aux loss (1.0).
    :param entropy_weight: weight of the gate-entropy term in the aux loss (1.0).
    """

    def __init__(
        self,
        dim: int,
        num_experts: int = 16,
        top_k: int = 4,
        expert_hidden: int = 256,
        gate_hidden: int = 256,
        dropout: float = 0.1,
        sparse: bool = True,
        balance_weight: float = 1.0,
        entropy_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"MoE: need 1 <= top_k <= num_experts, got {top_k} of {num_experts}")
        self.dim, self.num_experts, self.top_k = int(dim), int(num_experts), int(top_k)
        self.sparse = bool(sparse)
        self.balance_weight, self.entropy_weight = float(balance_weight), float(entropy_weight)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, expert_hidden), nn.ReLU(), nn.Linear(expert_hidden, dim))
            for _ in range(num_experts)
        )
        self.gate = nn.Sequential(
            nn.Linear(dim, gate_hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(gate_hidden, num_experts),
        )

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gate probabilities (B, E), chosen experts (B, k) and their renormalised weights (B, k).

        :param x: inputs (B, dim).
        """
        probs = F.softmax(self.gate(x), dim=-1)
        top_probs, top_index = torch.topk(probs, self.top_k, dim=-1)
        return probs, top_index, top_probs / top_probs.sum(dim=-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs, index, weights = self.route(x)
        # torch.compile (the attacks' compiled engine, fullgraph) cannot trace the sparse
        # form's data-dependent shapes; it traces the dense form, which gives the same output
        sparse = self.sparse and not torch.compiler.is_compiling()
        mix = self.mix_sparse if sparse else self.mix_dense
        return mix(x, index, weights), self.aux_loss(probs, index)

    def mix_dense(
        self, x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Every expert on every row, then the chosen k gathered (the authors' form).

        :param x: inputs (B, dim).
        :param index: chosen experts (B, k).
        :param weights: their weights (B, k).
        """
        outputs = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, E, dim)
        chosen = outputs.gather(1, index.unsqueeze(-1).expand(-1, -1, outputs.shape[-1]))
        return (chosen * weights.unsqueeze(-1)).sum(dim=1)

    def mix_sparse(
        self, x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        """Each expert on the rows routed to it only, summed back with the gate weights.

        :param x: inputs (B, dim).
        :param index: chosen experts (B, k).
        :param weights: their weights (B, k).
        """
        flat_expert = index.reshape(-1)
        order = torch.argsort(flat_expert, stable=True)
        rows = torch.div(order, self.top_k, rounding_mode="floor")
        row_weights = weights.reshape(-1)[order]
        counts = torch.bincount(flat_expert, minlength=self.num_experts).tolist()
        out = x.new_zeros(x.shape[0], self.dim)
        start = 0
        for expert, count in zip(self.experts, counts, strict=True):
            if count:  # an expert no row chose is not run (and not seen by dormant hooks)
                these = rows[start : start + count]
                contribution = expert(x[these]) * row_weights[start : start + count, None]
                out = out.index_add(0, these, contribution)
            start += count
        return out

    def aux_loss(self, probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``balance * Var(load) + entropy * mean_b H(probs_b)`` as in the authors' code.

        :param probs: gate probabilities (B, E).
        :param index: chosen experts (B, k).
        """
        one_hot = F.one_hot(index, num_classes=self.num_experts).to(probs.dtype)
        load = one_hot.sum(dim=(0, 1)) / probs.shape[0]
        entropy = -(probs * torch.log(probs + 1e-9)).sum(dim=-1).mean()
        return self.balance_weight * load.var() + self.entropy_weight * entropy
