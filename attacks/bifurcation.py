"""The bifurcation layer: policy output -> two "group logits" per action dimension.

* Discrete policies (logits over K action bins): ``g = [max_{i < split} z_i, max_{i >= split} z_i]``
  with ``split = K // 2`` by default (the authors' ``MaximumBifuricationWrapper``; their
  ``torch.split(logits, K // 2)`` only works for even K, here any ``0 < split < K`` is allowed).
* Continuous policies (action means a): ``g = [m1 * a + b1, m2 * a + b2]``, default
  ``[a, -a]`` (the authors' ``RegressorWrapper``/``RegressorLinearWrapper``).  For
  ``act_dim > 1`` the map is applied to each action dimension independently, giving
  (B, act_dim, 2); the GDL loss is then the sum of the per-dimension losses.

Outputs always have shape (B, D, 2) (D = 1 for discrete policies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def bifurcate_discrete(logits: torch.Tensor, split: int | None = None) -> torch.Tensor:
    """Group logits (B, 1, 2) = max over the lower and the upper bins.

    :param logits: action-bin logits (B, K), K >= 2.
    :param split: first bin of the upper group; None = K // 2.
    """
    k = logits.shape[-1]
    split = k // 2 if split is None else int(split)
    if not 0 < split < k:
        raise ValueError(f"bifurcation split must satisfy 0 < split < {k}, got {split}")
    lower = logits[..., :split].amax(dim=-1)
    upper = logits[..., split:].amax(dim=-1)
    return torch.stack([lower, upper], dim=-1).reshape(logits.shape[0], 1, 2)


def bifurcate_continuous(
    actions: torch.Tensor, m1: float = 1.0, b1: float = 0.0, m2: float = -1.0, b2: float = 0.0
) -> torch.Tensor:
    """Group logits (B, D, 2) = ``[m1 a + b1, m2 a + b2]`` per action dimension.

    :param actions: action means (B, D) (or (B,) for one dimension).
    :param m1: slope of group 0's logit.
    :param b1: offset of group 0's logit.
    :param m2: slope of group 1's logit.
    :param b2: offset of group 1's logit.
    """
    a = actions.reshape(actions.shape[0], -1)
    return torch.stack([m1 * a + b1, m2 * a + b2], dim=-1)


@dataclass(frozen=True)
class Bifurcation:
    """A configured bifurcation layer.

    :param action_kind: ``"continuous"`` or ``"discrete"``.
    :param split: discrete split index (None = K // 2).
    :param m1: continuous: slope of group 0's logit.
    :param b1: continuous: offset of group 0's logit.
    :param m2: continuous: slope of group 1's logit.
    :param b2: continuous: offset of group 1's logit.
    """

    action_kind: str = "continuous"
    split: int | None = None
    m1: float = 1.0
    b1: float = 0.0
    m2: float = -1.0
    b2: float = 0.0

    @classmethod
    def from_settings(cls, action_kind: str, settings: dict) -> Bifurcation:
        """The layer an attack's settings describe (``split``, ``m1``, ``b1``, ``m2``, ``b2``).

        :param action_kind: ``"continuous"`` or ``"discrete"``.
        :param settings: the attack's validated settings.
        """
        s = settings
        return cls(
            action_kind, s["split"], float(s["m1"]), float(s["b1"]), float(s["m2"]), float(s["b2"])
        )

    def group_affine(self, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous layers: group ``label``'s logit as ``slope * a + offset`` per element.

        :param label: group indices (0 or 1), any shape (e.g. (B, D)).
        :return: (slope, offset), float64 tensors shaped like ``label``.
        """
        if self.action_kind == "discrete":
            raise ValueError("group_affine is defined for continuous bifurcation layers only")
        upper = label.long() == 1

        def pick(if_upper: float, if_lower: float) -> torch.Tensor:
            values = torch.tensor([if_lower, if_upper], dtype=torch.float64, device=label.device)
            return values[upper.long()]

        return pick(self.m2, self.m1), pick(self.b2, self.b1)

    def discrete_cells(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Discrete layers on numpy logits (B, K): the group logits (B, 1, 2) and which bins tie
        for their group's maximum (B, K) bool (the layer's gradient is a function of that mask).

        :param logits: finite action-bin logits.
        """
        if self.action_kind != "discrete":
            raise ValueError("discrete_cells is defined for discrete bifurcation layers only")
        k = logits.shape[-1]
        split = k // 2 if self.split is None else int(self.split)
        lower = logits[:, :split].max(axis=1, keepdims=True)
        upper = logits[:, split:].max(axis=1, keepdims=True)
        ties = np.concatenate([logits[:, :split] == lower, logits[:, split:] == upper], axis=1)
        return np.concatenate([lower, upper], axis=1)[:, None, :], ties

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        """Map a policy output batch to group logits (B, D, 2).

        :param output: action means (B, D) or logits (B, K).
        """
        if self.action_kind == "discrete":
            return bifurcate_discrete(output, self.split)
        return bifurcate_continuous(output, self.m1, self.b1, self.m2, self.b2)
