"""Perturbation budgets for observation attacks.

A budget is defined in the environment's *raw* observation space (normalisation, if any, lives
inside the policy view).  It is the set of perturbations

    B = { delta : delta_i = 0 where mask_i * scale_i == 0,
                  || delta_A / scale_A ||_p <= eps }      (A = the active features, p = inf or 2)

i.e. ``eps`` is measured in *scaled coordinates* ``u = delta / scale``.  For ``linf`` this is
exactly the per-feature box ``|delta_i| <= eps * scale_i * mask_i`` used by the bifurcation-attack
authors (eps = 0 on calendar features, eps shrunk on badly normalised ones).  For ``l2`` it is an
axis-aligned ellipsoid; :meth:`AttackBudget.project` projects in the scaled coordinates
(``u <- u * min(1, eps / ||u||_2)``, then ``delta = u * scale``).  That map is idempotent, returns
points inside ``B`` and leaves points of ``B`` unchanged; with a uniform scale it is the exact
Euclidean projection onto the ball.

Observation bounds (``low``/``high``) are applied after the projection, when the attack's
``clip`` setting says (``"end"``: once, on the result, as the authors' code; ``"every_step"``:
also on every PGD iterate; ``"none"``: never, as the authors' headline runs, which fed the agent
observations up to eps outside [0, 1]).  Where they apply the attacker never pushes a feature
outside the bounds, but a *clean* value already outside them is not moved either: the box is
widened per sample to ``[min(low, obs), max(high, obs)]``.  Because clipping into a box
that contains the clean observation only shrinks each ``|delta_i|``, the result stays in both the
bounds and the budget, and masked features are never touched.

Observations may have any shape (B, *shape): flat feature vectors (B, n) or images (B, C, H, W).
``mask``, ``scale``, ``low`` and ``high`` are arrays broadcastable to one observation's shape:
per feature (n,), per channel (C, 1, 1), per pixel (1, H, W) or per element (C, H, W).
Pixel observations in 0..255 take ``low=0, high=255``; with ``quantize=True`` the attacked
observation is put back on the integer grid at the end (see :meth:`BoundBudget.quantize_grid`),
so a uint8 env sees integers, and the rounding keeps it inside the budget and the bounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

NORMS = ("linf", "l2")

ArrayLike = Any  # float | Sequence[float] | np.ndarray | torch.Tensor


def _to_numpy(value: ArrayLike, name: str) -> np.ndarray:
    """Convert a scalar/array/tensor ``value`` (called ``name`` in errors) to a float64 array."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"budget {name} must be numeric, got {value!r}") from exc
    if np.isnan(arr).any():
        raise ValueError(f"budget {name} contains NaN")
    return arr


@dataclass
class AttackBudget:
    """An observation-perturbation budget.

    :param eps: radius (>= 0) in the raw observation space (scaled coordinates, see module doc).
    :param norm: ``"linf"`` or ``"l2"``.
    :param mask: 0/1 array broadcastable to one observation (0 = the attacker may not touch the
        element: a feature, a channel, a pixel); None = all 1.
    :param scale: non-negative multiplier of ``eps``, broadcastable like ``mask``; None = all 1.
    :param low: lower observation bound to clip into (scalar or broadcastable array); None = none.
    :param high: upper observation bound, like ``low`` (e.g. 255 for uint8 frames).
    :param quantize: round the final perturbed observation to the integer grid (for uint8
        observations: the clean ones must be integers), staying within ``eps`` and the bounds.
    """

    eps: float
    norm: str = "linf"
    mask: ArrayLike | None = None
    scale: ArrayLike | None = None
    low: ArrayLike | None = None
    high: ArrayLike | None = None
    quantize: bool = False

    def __post_init__(self) -> None:
        """Validate the fields; raise ValueError with a clear message on bad input."""
        try:
            eps = float(self.eps)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"budget eps must be a number, got {self.eps!r}") from exc
        if not np.isfinite(eps) or eps < 0:
            raise ValueError(f"budget eps must be finite and >= 0, got {self.eps!r}")
        self.eps = eps
        if self.norm not in NORMS:
            raise ValueError(f"budget norm must be one of {list(NORMS)}, got {self.norm!r}")
        if self.mask is not None:
            mask = _to_numpy(self.mask, "mask")
            if mask.ndim == 0:
                raise ValueError("budget mask must be a per-feature array, got a scalar")
            if not np.isin(mask, (0.0, 1.0)).all():
                raise ValueError("budget mask values must be 0 or 1 (0 = untouchable feature)")
        if self.scale is not None:
            scale = _to_numpy(self.scale, "scale")
            if not np.isfinite(scale).all() or (scale < 0).any():
                raise ValueError("budget scale values must be finite and >= 0")
        if self.mask is not None and self.scale is not None:
            m, s = np.shape(_to_numpy(self.mask, "mask")), np.shape(_to_numpy(self.scale, "scale"))
            try:
                np.broadcast_shapes(m, s)
            except ValueError as exc:
                raise ValueError(
                    f"budget mask shape {m} and scale shape {s} do not broadcast together"
                ) from exc
        if not isinstance(self.quantize, (bool, np.bool_)):
            raise ValueError(f"budget quantize must be true or false, got {self.quantize!r}")
        self.quantize = bool(self.quantize)
        for name in ("low", "high"):
            value = getattr(self, name)
            if value is not None:
                _to_numpy(value, name)
        if self.low is not None and self.high is not None:
            low, high = _to_numpy(self.low, "low"), _to_numpy(self.high, "high")
            try:
                bad = bool(
                    (np.broadcast_to(low, np.broadcast_shapes(low.shape, high.shape)) > high).any()
                )
            except ValueError as exc:
                raise ValueError(
                    f"budget low shape {low.shape} and high shape {high.shape} do not broadcast "
                    "together"
                ) from exc
            if bad:
                raise ValueError("budget low must be <= high everywhere")

    def __eq__(self, other: object) -> bool:
        """Field-wise equality (arrays compared by value, numpy or torch alike)."""
        if not isinstance(other, AttackBudget):
            return NotImplemented
        if (self.eps, self.norm, self.quantize) != (other.eps, other.norm, other.quantize):
            return False
        for name in ("mask", "scale", "low", "high"):
            a, b = getattr(self, name), getattr(other, name)
            if (a is None) != (b is None):
                return False
            if a is not None and not np.array_equal(_to_numpy(a, name), _to_numpy(b, name)):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]  # mutable, array-valued

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_groups(
        cls,
        eps: float,
        feature_groups: Mapping[str, slice | Sequence[int]],
        n_features: int,
        mask_groups: Sequence[str] = (),
        scale_groups: Mapping[str, float] | None = None,
        norm: str = "linf",
        low: ArrayLike | None = None,
        high: ArrayLike | None = None,
        quantize: bool = False,
    ) -> AttackBudget:
        """Build a budget whose mask/scale come from named feature groups.

        :param eps: budget radius.
        :param feature_groups: group name -> slice (or list of indices) into the feature vector.
        :param n_features: length of the observation vector.
        :param mask_groups: names of groups the attacker may not touch (eps = 0 there).
        :param scale_groups: group name -> multiplier of eps for that group (e.g.
            ``{"pv": 0.004}``).
        :param norm: ``"linf"`` or ``"l2"``.
        :param low: lower observation bound.
        :param high: upper observation bound.
        :param quantize: round the result to the integer grid (see the class).
        """
        if int(n_features) != n_features or n_features <= 0:
            raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
        scale_groups = dict(scale_groups or {})
        if isinstance(mask_groups, str):
            mask_groups = [mask_groups]
        unknown = [g for g in [*mask_groups, *scale_groups] if g not in feature_groups]
        if unknown:
            raise ValueError(
                f"unknown feature group(s) {unknown}; known groups: {sorted(feature_groups)}"
            )
        index = np.arange(n_features)

        def members(name: str) -> np.ndarray:
            sel = feature_groups[name]
            try:
                idx = index[sel] if isinstance(sel, slice) else index[np.asarray(sel, dtype=int)]
            except IndexError as exc:
                raise ValueError(
                    f"feature group {name!r} = {sel!r} is out of range for {n_features} features"
                ) from exc
            return idx

        mask = np.ones(n_features)
        for name in mask_groups:
            mask[members(name)] = 0.0
        scale = np.ones(n_features)
        for name, factor in scale_groups.items():
            if not np.isfinite(factor) or factor < 0:
                raise ValueError(f"scale for group {name!r} must be >= 0, got {factor!r}")
            scale[members(name)] *= float(factor)
        return cls(
            eps=eps, norm=norm, mask=mask, scale=scale, low=low, high=high, quantize=quantize
        )

    # ------------------------------------------------------------------ tensor views
    def bind(self, like: torch.Tensor) -> BoundBudget:
        """Return the budget as tensors matching ``like``.

        :param like: an observation batch (B, *shape) (gives shape, dtype and device).
        """
        return BoundBudget(self, like)

    def per_feature_eps(self, n_features: int | Sequence[int], like: torch.Tensor) -> torch.Tensor:
        """Per-feature linf radius ``eps * scale * mask`` as a tensor.

        :param n_features: feature count (or shape) of one observation.
        :param like: tensor whose dtype/device the result takes.
        """
        shape = (n_features,) if isinstance(n_features, int) else tuple(n_features)
        template = torch.zeros((1, *shape), dtype=like.dtype, device=like.device)
        return self.bind(template).eps_vec

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """Project a perturbation batch into the budget.

        :param delta: perturbations (B, *shape).
        """
        return self.bind(delta).project(delta)

    def clip(self, obs_adv: torch.Tensor, obs: torch.Tensor, bounds: bool = True) -> torch.Tensor:
        """Return ``obs_adv`` moved into the budget around ``obs`` and into the bounds.

        :param obs_adv: candidate perturbed observations (B, *shape).
        :param obs: clean observations, same shape.
        :param bounds: False: into the budget only.
        """
        return self.bind(obs).clip(obs_adv, obs, bounds)


class BoundBudget:
    """An :class:`AttackBudget` converted to tensors of one dtype/device/feature shape.

    Built once per attack call so the PGD loop does no host->device conversions.

    :param budget: the budget.
    :param like: an observation batch (B, *shape): the tensors take one sample's shape, the
        batch's float dtype and its device.
    """

    def __init__(self, budget: AttackBudget, like: torch.Tensor) -> None:
        """Convert ``budget`` to tensors shaped like one sample of ``like``."""
        if like.dim() < 2:
            raise ValueError(
                "observations must be a batch of shape (B, n_features), "
                f"got shape {tuple(like.shape)}"
            )
        self.budget = budget
        self.norm = budget.norm
        self.eps = budget.eps
        self.quantize = budget.quantize
        feat = tuple(like.shape[1:])
        kw: dict[str, Any] = {
            "dtype": like.dtype if like.is_floating_point() else torch.float32,
            "device": like.device,
        }

        def per_feature(value: ArrayLike | None, default: float, name: str) -> torch.Tensor:
            """``value`` broadcast to one observation's shape (``default`` where None)."""
            if value is None:
                return torch.full(feat, default, **kw)
            t = torch.as_tensor(_to_numpy(value, name), **kw)
            try:
                return torch.broadcast_to(t, feat).clone()
            except RuntimeError as exc:
                raise ValueError(
                    f"budget {name} shape {tuple(t.shape)} does not match observation "
                    f"features {feat}"
                ) from exc

        self.scale = per_feature(budget.scale, 1.0, "scale")
        mask = per_feature(budget.mask, 1.0, "mask")
        self.active = (mask * self.scale) > 0
        # eps * scale in float64, then rounded once to the batch's dtype (as the authors build
        # their per-feature eps vector: a float64 numpy product cast to a float32 tensor)
        scale64 = (
            np.ones(feat)
            if budget.scale is None
            else np.broadcast_to(_to_numpy(budget.scale, "scale"), feat)
        )
        eps_vec = torch.as_tensor(self.eps * scale64).to(dtype=self.scale.dtype, device=like.device)
        self.eps_vec = torch.where(self.active, eps_vec, torch.zeros_like(self.scale))
        self.safe_scale = torch.where(self.active, self.scale, torch.ones_like(self.scale))
        self.low = None if budget.low is None else per_feature(budget.low, 0.0, "low")
        self.high = None if budget.high is None else per_feature(budget.high, 0.0, "high")

    def scaled_norm(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample budget norm of ``delta`` in scaled coordinates (inactive features ignored).

        :param delta: perturbations (B, *shape).
        """
        u = (delta * self.active / self.safe_scale).flatten(1)
        if self.norm == "linf":
            return u.abs().amax(dim=1)
        return u.norm(dim=1)

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        """Project ``delta`` into the budget (see the module doc for the l2 rule).

        :param delta: perturbations (B, *shape).
        """
        if self.norm == "linf":
            return torch.maximum(torch.minimum(delta, self.eps_vec), -self.eps_vec)
        delta = delta * self.active
        norms = self.scaled_norm(delta)
        factor = torch.where(
            norms > self.eps, self.eps / norms.clamp_min(1e-30), torch.ones_like(norms)
        )
        return delta * factor.view(-1, *([1] * (delta.dim() - 1)))

    def clip_bounds(self, obs_adv: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Clip ``obs_adv`` into ``[min(low, obs), max(high, obs)]`` per feature.

        :param obs_adv: candidate perturbed observations.
        :param obs: clean observations.
        """
        if self.low is not None:
            obs_adv = torch.maximum(obs_adv, torch.minimum(self.low, obs))
        if self.high is not None:
            obs_adv = torch.minimum(obs_adv, torch.maximum(self.high, obs))
        return obs_adv

    def clip(self, obs_adv: torch.Tensor, obs: torch.Tensor, bounds: bool = True) -> torch.Tensor:
        """Project ``obs_adv - obs`` into the budget, then clip into the bounds.

        :param obs_adv: candidate perturbed observations.
        :param obs: clean observations.
        :param bounds: False: project only, the bounds do not apply (an attack's ``clip:
            none``).
        """
        out = obs + self.project(obs_adv - obs)
        return self.clip_bounds(out, obs) if bounds else out

    def random_delta(
        self, obs: torch.Tensor, generator: torch.Generator | None, positive_only: bool = False
    ) -> torch.Tensor:
        """Sample a perturbation inside the budget.

        :param obs: clean batch (gives shape, dtype, device).
        :param generator: torch RNG (None = global RNG).
        :param positive_only: linf only: sample U[0, eps_i) instead of U(-eps_i, eps_i).
        """
        rand = torch.rand(obs.shape, generator=generator, dtype=obs.dtype, device=obs.device)
        if self.norm == "linf":
            if positive_only:
                return rand * self.eps_vec
            return (2 * rand - 1) * self.eps_vec
        # l2: uniform point in the (scaled) ball: direction * eps * U^(1/d)
        normal = torch.randn(obs.shape, generator=generator, dtype=obs.dtype, device=obs.device)
        u = normal * self.active
        if positive_only:
            u = u.abs()
        d = int(self.active.sum().item())
        norms = u.flatten(1).norm(dim=1).clamp_min(1e-30)
        radius = self.eps * rand.flatten(1)[:, 0] ** (1.0 / max(d, 1))
        shape = (-1, *([1] * (obs.dim() - 1)))
        return self.project(u / norms.view(shape) * radius.view(shape) * self.safe_scale)

    def quantize_grid(
        self, obs_adv: torch.Tensor, obs: torch.Tensor, bounds: bool = True
    ) -> torch.Tensor:
        """Round ``obs_adv`` to the integer grid, staying within the budget and the bounds.

        ``obs`` must be integer-valued (uint8 frames as floats).  Each element becomes
        ``obs + round(delta)``; where that would leave the per-element linf radius or the bounds
        it becomes ``obs + trunc(delta)`` instead (rounded toward the clean value, so its
        ``|delta|`` only shrinks and it stays between ``obs`` and ``obs_adv``, both inside the
        bounds); under an l2 budget a sample whose rounded norm exceeds ``eps`` is truncated as a
        whole.  ``obs_adv`` should already be in the budget (the attacks' final
        :meth:`clip`).

        :param obs_adv: perturbed observations inside the budget and bounds.
        :param obs: integer-valued clean observations.
        :param bounds: False: ignore the bounds (an attack's ``clip: none``), keep the budget.
        :raises ValueError: ``obs`` is not on the integer grid.
        """
        if not torch.equal(obs, obs.round()):
            raise ValueError(
                "budget quantize=True needs integer-valued observations (e.g. "
                "uint8 frames); these have fractional values"
            )
        delta = obs_adv - obs
        rounded, toward = delta.round(), delta.trunc()
        x = obs + rounded
        bad = torch.zeros_like(delta, dtype=torch.bool)
        if bounds and self.low is not None:
            bad |= x < torch.minimum(self.low, obs)
        if bounds and self.high is not None:
            bad |= x > torch.maximum(self.high, obs)
        if self.norm == "linf":
            bad |= rounded.abs() > self.eps_vec
        bad |= ~self.active & (rounded != 0)
        q = torch.where(bad, toward, rounded)
        if self.norm == "l2":
            over = self.scaled_norm(q) > self.eps
            q = torch.where(over.view(-1, *([1] * (q.dim() - 1))), toward, q)
        return obs + q
