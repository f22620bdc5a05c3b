"""The learned adversary ("optimal attack", Zhang et al. ICLR 2021): an RL policy whose action is
the perturbation.

An adversary observes the clean observation and outputs one value per *active* feature (the
features the budget lets it touch: ``mask * scale > 0``); a :class:`Perturbation` maps that
action to the perturbed observation. The maps are those of the bifurcation paper's authors
(``modules/KBMproject/ATLA.py`` in RMC-AIvsAI/A-Novel-Bifurcation-Method-for-Observation-
Perturbation-Attacks-on-Reinforcement-Learning-Agents), each kept inside rlkit's budget:

=============  ==========================================  ====================================
perturbation   perturbed observation (active features)     the authors'
=============  ==========================================  ====================================
``scaled_sum`` ``obs + a * eps * scale * feature_scale``,   ``BScaledSum``: ``obs + a *
(default)      a in [-1, 1]                                max_perturbation``
``box``        ``obs + a * eps * scale``, a in [-1, 1]     (plain epsilon box, rlkit's)
``sum``        ``obs + clip(a, -r, r)``, a in the obs       ``BSum``: ``obs + a`` (unbounded
               bounds                                      but for the obs bounds)
``replace``    ``obs + clip(a - obs, -r, r)``, a in the    ``BReplace``: ``a`` (unbounded but
               obs bounds                                  for the obs bounds)
=============  ==========================================  ====================================

(``r = eps * scale`` per feature.) The result is clipped into the observation bounds, as theirs
(``np.clip`` to the observation space), unless ``clip: none``.

``feature_scale`` is the per-feature statistic of a clean trace, :func:`trace_scale`. The
authors' "mean diff" vector (their "baseline observation analysis.ipynb") is
``df.diff().abs().agg(['max', 'mean']).mean()``: the average of the *maximum* and the *mean*
absolute consecutive-step difference, not the mean alone (``statistic="authors"``, the default;
``"mean"`` is the plain mean). Their released adversary ("SAC adversary BScaledSum mean diff
1-15-15") was evaluated with ``max_perturbation = mean_diff / 2`` (their "Evaluate Learned
Adversary.ipynb"; their saved trace of it against the 20-bin PPO shows the same half-width on
every exogenous feature): here ``eps: 0.5`` with that ``feature_scale``. Their victim wrapper
(``VictimATLAWrapper``) perturbs observations returned by ``step`` only, so the first observation
of an episode is clean (``attack_reset: false``, the default).

Two defects of their wrapper are not reproduced: ``BSum``/``BScaledSum`` add the perturbation to
the stored observation in place, so the logged ``mean_perturbation_size`` is the amount clipped
away, not the perturbation (rlkit's distortion statistics measure the perturbation itself).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .attacks import Attack
from .budget import AttackBudget, BoundBudget
from .settings import AttackSettings

PerturbationKind = Literal["scaled_sum", "box", "sum", "replace"]
Statistic = Literal["authors", "mean"]
PERTURBATIONS: tuple[str, ...] = ("scaled_sum", "box", "sum", "replace")
#: an ATLA run's adversary perturbation, beside its final models
PERTURBATION_FILE = "perturbation.json"

__all__ = [
    "PERTURBATIONS",
    "LearnedAttack",
    "LearnedSettings",
    "Perturbation",
    "load_adversary",
    "trace_scale",
]


class PerturbationFields(BaseModel):
    """The learned adversary's perturbation map and budget, as the ``adversary`` env and the
    ``atla`` agent take them."""

    model_config = ConfigDict(extra="forbid")

    perturbation: PerturbationKind = Field(
        "scaled_sum", description="scaled_sum (the authors' BScaledSum), box, sum or replace"
    )
    eps: float = Field(1.0, ge=0, description="budget radius (times scale and feature_scale)")
    mask: list[str] = Field(
        default_factory=list, description="observation groups the adversary may not touch"
    )
    scale: dict[str, float] = Field(default_factory=dict, description="per-group factor on eps")
    feature_scale: list[float] | None = Field(
        None,
        description="per-feature multipliers of scaled_sum; null: trace_scale of one clean "
        "episode of the victim (seed 0), saved with the run",
    )
    statistic: Statistic = Field(
        "authors",
        description="trace statistic of feature_scale: authors ((max + mean) / 2 of the "
        "absolute step changes, their 'mean diff') or mean",
    )


def trace_scale(
    episodes: np.ndarray | Sequence[np.ndarray], statistic: Statistic = "authors"
) -> np.ndarray:
    """Per-feature size of consecutive-step changes in clean traces.

    :param episodes: one trace (T, n) or a list of them (differences never cross episodes).
    :param statistic: ``"authors"``: (max + mean) / 2 of ``|obs[t+1] - obs[t]|`` (their "mean
        diff"); ``"mean"``: the mean.
    :return: float64 array (n,).
    """
    traces = [episodes] if isinstance(episodes, np.ndarray) else list(episodes)
    diffs = [np.abs(np.diff(np.asarray(t, dtype=np.float64), axis=0)) for t in traces]
    diffs = [d for d in diffs if len(d)]
    if not diffs:
        raise ValueError("trace_scale needs at least one trace with two or more steps")
    steps = np.concatenate(diffs, axis=0)
    mean = steps.mean(axis=0)
    if statistic == "mean":
        return mean
    if statistic == "authors":
        return (steps.max(axis=0) + mean) / 2.0
    raise ValueError(f"statistic must be 'authors' or 'mean', got {statistic!r}")


@dataclass
class Perturbation:
    """Maps an adversary's action to a perturbed observation, inside a linf budget.

    :param kind: one of :data:`PERTURBATIONS`.
    :param active: indices of the features the adversary acts on (flat observations).
    :param base_radius: float64 per-active-feature half-width ``eps * scale``; ``radius`` is
        that times ``feature_scale`` for ``scaled_sum`` (:meth:`set_feature_scale`).
    :param n_features: observation size.
    :param low: lower observation bounds (n,) or None.
    :param high: upper observation bounds (n,) or None.
    :param clip: clip into the bounds (widened to contain the clean observation).
    """

    kind: str
    active: np.ndarray
    base_radius: np.ndarray
    n_features: int
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    clip: bool = True

    def __post_init__(self) -> None:
        self.radius = self.base_radius.copy()

    @classmethod
    def from_budget(
        cls,
        kind: str,
        budget: AttackBudget,
        n_features: int,
        feature_scale: Sequence[float] | np.ndarray | None = None,
        clip: bool = True,
        deferred: bool = False,
    ) -> Perturbation:
        """Build the map of ``kind`` for ``budget`` on observations of ``n_features``.

        :param kind: one of :data:`PERTURBATIONS`.
        :param budget: a linf budget (eps, mask, scale, bounds).
        :param n_features: observation size.
        :param feature_scale: per-feature multipliers (n,) or (active,), required by
            ``scaled_sum``.
        :param clip: clip into the budget's bounds.
        :param deferred: scaled_sum without feature_scale yet (set it before use).
        :raises ValueError: unknown kind, an l2 budget, or a missing / mis-sized feature_scale.
        """
        if kind not in PERTURBATIONS:
            raise ValueError(f"perturbation must be one of {list(PERTURBATIONS)}, got {kind!r}")
        if budget.norm != "linf":
            raise ValueError("a learned adversary's perturbation is a per-feature box: norm linf")
        scale = _per_feature(budget.scale, n_features)
        active = np.flatnonzero(_per_feature(budget.mask, n_features) * scale)
        low = None if budget.low is None else _per_feature(budget.low, n_features)
        high = None if budget.high is None else _per_feature(budget.high, n_features)
        perturbation = cls(kind, active, (budget.eps * scale)[active], n_features, low, high, clip)
        if kind == "scaled_sum" and not (feature_scale is None and deferred):
            perturbation.set_feature_scale(feature_scale)
        return perturbation

    def set_feature_scale(self, feature_scale: Sequence[float] | np.ndarray | None) -> None:
        """Set scaled_sum's per-feature multipliers (``radius = base_radius * feature_scale``).

        :param feature_scale: one value per feature or per active feature.
        :raises ValueError: missing or mis-sized.
        """
        if feature_scale is None:
            raise ValueError(
                "perturbation 'scaled_sum' needs feature_scale (per-feature sizes of a clean "
                "trace, see rlkit.attacks.learned.trace_scale), or use 'box'"
            )
        fs = np.asarray(feature_scale, dtype=np.float64).reshape(-1)
        if fs.size == self.n_features:
            fs = fs[self.active]
        if fs.size != self.active.size:
            raise ValueError(
                f"feature_scale has {fs.size} values; give one per feature ({self.n_features}) "
                f"or per active feature ({self.active.size})"
            )
        self.radius = self.base_radius * fs

    @property
    def action_dim(self) -> int:
        """Size of the adversary's action: one value per active feature."""
        return int(self.active.size)

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds of the adversary's action: [-1, 1] (scaled_sum, box) or the observation
        bounds of the active features (sum, replace; [-1, 1] where they are infinite)."""
        ones = np.ones(self.action_dim, dtype=np.float32)
        if self.kind in ("scaled_sum", "box"):
            return -ones, ones
        low = -ones if self.low is None else self.low[self.active].astype(np.float32)
        high = ones if self.high is None else self.high[self.active].astype(np.float32)
        return np.where(np.isfinite(low), low, -1.0), np.where(np.isfinite(high), high, 1.0)

    def apply(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Perturbed observations for a batch (float64 sums, as the authors' in-place add into
        a float32 array, then the observation dtype).

        :param obs: clean observations (B, n).
        :param action: adversary actions (B, action_dim).
        """
        clean = np.asarray(obs)
        x = clean.astype(np.float64)
        a = np.asarray(action, dtype=np.float64).reshape(x.shape[0], -1)
        if a.shape[1] != self.action_dim:
            raise ValueError(
                f"the adversary gives {a.shape[1]} values per step, the budget has "
                f"{self.action_dim} active features; use the mask it was trained with"
            )
        active = x[:, self.active]
        if self.kind in ("scaled_sum", "box"):
            delta = np.clip(a, -1.0, 1.0) * self.radius
        elif self.kind == "sum":
            delta = np.clip(a, -self.radius, self.radius)
        else:
            delta = np.clip(a - active, -self.radius, self.radius)
        x[:, self.active] = active + delta
        out = x.astype(clean.dtype if clean.dtype.kind == "f" else np.float32)
        if self.clip:
            if self.low is not None:
                out = np.maximum(out, np.minimum(self.low, clean).astype(out.dtype))
            if self.high is not None:
                out = np.minimum(out, np.maximum(self.high, clean).astype(out.dtype))
        return out


def _per_feature(value: Any, n_features: int) -> np.ndarray:
    """A budget field as a float64 array (n,) (all ones when None)."""
    if value is None:
        return np.ones(n_features)
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n_features,)).copy()


# ---------------------------------------------------------------------------------------------
# loading adversaries


def load_adversary(
    path: str | Path,
    n_features: int,
    action_bounds: tuple[np.ndarray, np.ndarray],
    algo: str | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Load an adversary: an rlkit run directory (trained on the ``adversary`` env) or a
    stable-baselines3 zip trained elsewhere (a trusted file: SB3 zips hold pickles).

    :param path: the run directory or the zip.
    :param n_features: observation size (the victim's).
    :param action_bounds: the adversary's action bounds (for the zip's action space).
    :param algo: SB3 algorithm of a zip (read from the zip when None).
    :return: ``act(obs (B, n)) -> actions (B, k)``, deterministic.
    :raises ValueError: not found, or not loadable.
    """
    from gymnasium import spaces

    from rlkit.config import ConfigError
    from rlkit.loading import _sb3_agent, load_run, sb3_algo_of_zip

    path = Path(path)
    if (path / "final" / PERTURBATION_FILE).is_file():  # an ATLA run: its adversary's SB3 zip
        path = path / "final" / "adversary" / "sb3_model.zip"
    try:
        if path.is_dir():
            loaded = load_run(path)
            return loaded.act
        if not path.is_file():
            raise ValueError(f"adversary {str(path)!r}: no such run directory or model zip")
        low, high = action_bounds
        observation_space = spaces.Box(-np.inf, np.inf, (n_features,), dtype=np.float32)
        action_space = spaces.Box(low, high, dtype=np.float32)
        name = (algo or sb3_algo_of_zip(path)).lower()
        agent = _sb3_agent(path, name, observation_space, action_space, None)
    except ConfigError as err:
        raise ValueError(f"adversary {str(path)!r}: {err}") from None
    return lambda obs: agent.act(obs)


class LearnedSettings(AttackSettings):
    """Settings of ``learned``: a trained adversary policy outputs the perturbation."""

    adversary: str = Field(
        description="the adversary: an rlkit run directory (trained on the 'adversary' env) or a "
        "stable-baselines3 zip trained elsewhere (a trusted file)"
    )
    algo: str | None = Field(None, description="SB3 algorithm of a zip (read from it when null)")

    @field_validator("adversary")
    @classmethod
    def _exists(cls, value: str) -> str:
        if not Path(value).exists():
            raise ValueError(f"adversary {value!r}: no such run directory or model zip")
        return value

    perturbation: PerturbationKind | None = Field(
        None,
        description="how the adversary's action becomes the perturbation: scaled_sum (the "
        "authors' BScaledSum: a * eps * scale * feature_scale), box (a * eps * scale), sum, "
        "replace; null: the adversary run's own (scaled_sum for a zip)",
    )
    feature_scale: list[float] | None = Field(
        None,
        description="per-feature multipliers of scaled_sum (one per feature or per active "
        "feature), e.g. rlkit.attacks.learned.trace_scale of a clean trace; null: the "
        "adversary run's own",
    )
    clip: Literal["end", "none"] = Field(
        "end", description="clip into the observation bounds ('end', as the authors) or not"
    )
    attack_reset: bool = Field(
        False,
        description="also perturb an episode's first observation (false: the authors' victim "
        "wrapper perturbs only observations returned by step)",
    )


class LearnedAttack(Attack):
    """A trained adversary's perturbation, inside the budget (see the module doc).

    The victim ``policy`` is not differentiated (only its device is used): the adversary acts on
    the clean observation.
    """

    settings_model = LearnedSettings

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """Load the adversary named by ``settings['adversary']`` (see :class:`LearnedSettings`)."""
        super().__init__(name, policy, budget, settings)
        self._act: Callable[[np.ndarray], np.ndarray] | None = None
        self._maps: dict[int, Perturbation] = {}
        self._own = _run_perturbation(Path(settings["adversary"]))

    def perturbation_for(self, n_features: int) -> Perturbation:
        """The map for observations of ``n_features`` (built once).

        :param n_features: observation size.
        """
        if n_features not in self._maps:
            kind = self.settings.get("perturbation") or self._own.get("perturbation", "scaled_sum")
            scale = self.settings.get("feature_scale") or self._own.get("feature_scale")
            clip = self.settings.get("clip", "end") != "none"
            self._maps[n_features] = Perturbation.from_budget(
                kind, self.budget, n_features, scale, clip
            )
        return self._maps[n_features]

    def run(self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget) -> torch.Tensor:
        """Perturb ``obs`` (B, n) with the adversary's action; no gradients are taken.

        :param obs: clean batch.
        :param t: per-sample time steps (t == 0 stays clean unless ``attack_reset``).
        :param bound: unused (the map holds the budget).
        """
        if obs.dim() != 2:
            raise ValueError("the learned adversary attacks flat observations (B, n_features)")
        perturbation = self.perturbation_for(int(obs.shape[1]))
        if self._act is None:
            self._act = load_adversary(
                self.settings["adversary"],
                int(obs.shape[1]),
                perturbation.action_bounds(),
                self.settings.get("algo"),
            )
        clean = obs.detach().cpu().numpy()
        adv = perturbation.apply(clean, self._act(clean))
        if t is not None and not self.settings.get("attack_reset", False):
            first = (t.detach().cpu().numpy() == 0).reshape(-1)
            adv[first] = clean[first]
        return torch.as_tensor(adv, device=obs.device, dtype=obs.dtype)


def _run_perturbation(path: Path) -> dict[str, Any]:
    """The perturbation an rlkit adversary run was trained with (its env kwargs), or {}.

    :param path: the adversary (a run directory or a zip).
    """
    saved = path / "final" / PERTURBATION_FILE
    if saved.is_file():  # an ATLA run
        data = json.loads(saved.read_text())
        return {"perturbation": data["perturbation"], "feature_scale": data["feature_scale"]}
    config_path = path / "config.yaml"
    if not (path.is_dir() and config_path.is_file()):
        return {}
    from rlkit.config import load_config

    config = load_config(config_path)
    if config.env.id != "adversary":
        raise ValueError(
            f"adversary {str(path)!r}: the run was trained on env {config.env.id!r}, not on the "
            "'adversary' env"
        )
    from rlkit.envs.adversary import AdversaryEnvConfig, resolved_feature_scale

    env_config = AdversaryEnvConfig.model_validate(config.env.kwargs)
    out: dict[str, Any] = {"perturbation": env_config.perturbation}
    if env_config.perturbation == "scaled_sum":
        out["feature_scale"] = resolved_feature_scale(env_config)
    return out
