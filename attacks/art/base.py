"""The shared base of the ART attacks: the settings every one has, the victim as an ART
classifier, the final clipping.

How the victim becomes an ART classifier: the policy view's output goes through a class head,
either the bifurcation layer (``classes: groups``: two group logits, the authors'
``MaximumBifuricationWrapper`` for bins, ``RegressorLinearWrapper`` for SAC's pre-tanh mean) or,
for discrete victims, the bin logits themselves (``classes: actions``), and ART sees only the
unmasked features, in budget units (``delta / scale``; see :mod:`rlkit.attacks.art_support`).
ART's uniform ``eps`` is therefore exactly the budget's per-feature radius ``eps * scale``, masked
features can never move (ART's ``mask`` argument does not cover the random restarts of AutoPGD
and ACG, so the authors' masked AutoPGD/ACG runs did perturb calendar features by up to eps at
the restarts; here they do not), and every result goes through ``bound.clip`` (budget, then the
observation bounds).  ART runs in numpy on the CPU, one observation at a time (as the authors
ran it, ``batch_size=1``): these attacks are much slower than rlkit's own PGD (see the report).

The ``seed`` setting seeds numpy's global RNG (ART's random restarts use it) for each call and
observation, then restores it; null leaves numpy's RNG alone, as ART does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from rlkit.attacks import Attack
from rlkit.attacks.art_support import (
    ClassHead,
    InputMap,
    make_classifier,
    make_loss,
    policy_output,
    require_art,
)
from rlkit.attacks.bifurcation import Bifurcation
from rlkit.attacks.budget import AttackBudget, BoundBudget

ACTION_KINDS = ("continuous", "discrete")
Classes = Literal["groups", "actions"]

# ------------------------------------------------------------------------------------ settings
_ACTION_KIND = (
    "what the policy outputs: 'continuous' (action means) or 'discrete' (bin "
    "logits); null = the policy view's own action_kind (else continuous)"
)
_SEED = (
    "seed numpy's global RNG (ART's random restarts / searches) for each call and "
    "observation, restoring it after; null = numpy's global RNG as ART uses it"
)
_CLASSES = (
    "what ART classifies: 'groups' (the bifurcation layer's two group logits) or "
    "'actions' (the discrete policy's bin logits)"
)


class ARTSettings(BaseModel):
    """Settings every ART attack has: the victim's kind, the bifurcation layer, the seed."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    action_kind: Literal["continuous", "discrete"] | None = Field(None, description=_ACTION_KIND)
    seed: int | None = Field(None, ge=0, description=_SEED)
    split: int | None = Field(
        None,
        ge=1,
        description="discrete policies: first bin of the upper "
        "group (null = n_bins // 2, the authors' halves)",
    )
    m1: float = Field(
        1.0,
        description="continuous policies: slope of group 0's logit m1 a + b1 "
        "(a = the pre-squash action mean)",
    )
    b1: float = Field(0.0, description="continuous policies: offset of group 0's logit")
    m2: float = Field(-1.0, description="continuous policies: slope of group 1's logit m2 a + b2")
    b2: float = Field(0.0, description="continuous policies: offset of group 1's logit")
    action_index: int = Field(
        0,
        ge=0,
        description="continuous policies with several action "
        "dimensions: the dimension whose groups are attacked",
    )

    @field_validator("m1", "b1", "m2", "b2")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("allowed: a finite number")
        return value


# ------------------------------------------------------------------------------------- attacks
def clip_gently(bound: BoundBudget, adv: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """``bound.clip(adv, obs)``, but values already inside the budget and bounds are kept as
    they are.

    ``bound.clip`` recomputes ``obs + project(adv - obs)``, which rounds; a minimal-norm
    adversarial example (Brendel-Bethge) sits on the decision boundary, and that rounding can
    undo it.  Linf: per element; l2: per sample.

    :param bound: the budget.
    :param adv: candidate perturbed observations.
    :param obs: clean observations.
    """
    clipped = bound.clip(adv, obs)
    delta = adv - obs
    ok = bound.active | (delta == 0)
    if bound.low is not None:
        ok &= adv >= torch.minimum(bound.low, obs)
    if bound.high is not None:
        ok &= adv <= torch.maximum(bound.high, obs)
    if bound.norm == "linf":
        ok &= delta.abs() <= bound.eps_vec
    else:
        inside = bound.scaled_norm(delta) <= bound.eps
        ok = ok.flatten(1).all(dim=1) & inside
        ok = ok.view(-1, *([1] * (adv.dim() - 1))).expand_as(adv)
    return torch.where(ok, adv, clipped)


class _ARTAttack(Attack):
    """Shared plumbing: the victim's kind, the class head, input maps, seeds, statistics.

    After each call :attr:`last_success` (B,) says which observations changed the victim's class
    (its bin for ``classes: actions``, its group otherwise; targeted attacks: reached the
    target), and :attr:`calls` counts the calls.
    """

    settings_model: ClassVar[type[BaseModel]] = ARTSettings
    default_classes: ClassVar[dict[str, str]] = {"discrete": "groups", "continuous": "groups"}

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """Check ART is installed, resolve the victim's kind and the classes."""
        require_art()
        super().__init__(name, policy, budget, settings)
        declared = getattr(policy, "action_kind", None)
        given = settings.get("action_kind")
        if declared in ACTION_KINDS:
            if given not in (None, declared):
                raise ValueError(
                    f"setting 'action_kind'={given!r} contradicts the policy's "
                    f"action_kind={declared!r}"
                )
            self.action_kind = declared
        else:
            self.action_kind = given or "continuous"
        self.settings["action_kind"] = self.action_kind
        classes = settings.get("classes") or self.default_classes[self.action_kind]
        if classes == "actions" and self.action_kind != "discrete":
            raise ValueError(
                "setting 'classes'='actions' needs a discrete policy (bin logits); "
                "use 'groups' for continuous policies"
            )
        self.classes: str = classes
        self.calls = 0
        self.last_success: np.ndarray | None = None
        self._maps: dict[Any, tuple[InputMap, Any]] = {}
        self._art: dict[Any, Any] = {}

    # ------------------------------------------------------------------ classes
    def layer(self) -> Bifurcation:
        """The configured bifurcation layer."""
        return Bifurcation.from_settings(self.action_kind, self.settings)

    def head(self) -> ClassHead:
        """Policy output -> class logits (groups or bins)."""
        return ClassHead(self.classes, self.layer(), self.settings["action_index"])

    def class_logits(
        self, x: torch.Tensor, network: Callable[[torch.Tensor], Any] | None = None
    ) -> torch.Tensor:
        """Class logits (B, C) of observations ``x`` (B, *shape), without gradients.

        :param x: observations.
        :param network: the network (default: the victim policy).
        """
        with torch.no_grad():
            return self.head()(policy_output(network or self.policy, x))

    def classes_of(
        self, x: torch.Tensor, network: Callable[[torch.Tensor], Any] | None = None
    ) -> torch.Tensor:
        """Class (B,) of each observation: its group or its bin.

        :param x: observations (B, *shape).
        :param network: the network (default: the victim policy).
        """
        return self.class_logits(x, network).argmax(dim=-1)

    # ------------------------------------------------------------------ plumbing
    def input_map(
        self,
        obs: torch.Tensor,
        bound: BoundBudget,
        mode: str,
        network: Callable[[torch.Tensor], Any] | None = None,
        key: Any = None,
        loss: str = "cw",
        clip_values: tuple[float, float] | None = None,
    ) -> tuple[InputMap, Any]:
        """The (cached) input map and ART classifier for this observation shape.

        :param obs: a batch (gives the shape).
        :param bound: the budget bound to it (active features, scale).
        :param mode: ``"delta"`` or ``"absolute"`` (see :class:`InputMap`).
        :param network: the attacked network (default: the victim).
        :param key: extra cache key (e.g. a refitted proxy).
        :param loss: the classifier loss (``make_loss``).
        :param clip_values: scalar clip values given to the classifier.
        """
        shape = tuple(obs.shape[1:])
        cache = (shape, mode, key, loss)
        if cache not in self._maps:
            active = torch.nonzero(bound.active.reshape(-1)).reshape(-1)
            scale = (
                bound.scale.reshape(-1)[active]
                if mode == "delta"
                else torch.ones(len(active), device=obs.device)
            )
            imap = InputMap(network or self.policy, self.head(), shape, active, scale, mode)
            imap.to(obs.device)
            imap.set_base(obs[:1].reshape(1, -1))
            n_classes = int(imap(torch.zeros(1, len(active), device=obs.device)).shape[1])
            classifier = make_classifier(imap, make_loss(loss), n_classes, len(active), clip_values)
            self._maps[cache] = (imap, classifier)
        return self._maps[cache]

    def entropy(self, row: int) -> list[int] | None:
        """Seed material for observation ``row`` of the current call (None without a seed).

        :param row: the row in the batch.
        """
        seed = self.settings.get("seed")
        return None if seed is None else [int(seed), self.calls, int(row)]

    @staticmethod
    def delta_clip(
        imap: InputMap, bound: BoundBudget, x0: torch.Tensor
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """ART clip values in delta units for clean rows ``x0`` (N, n_flat) (None: unbounded).

        The box is widened to contain the clean value (as ``bound.clip`` does).

        :param imap: the input map (active features, scale).
        :param bound: the budget.
        :param x0: clean flat observations.
        """
        if bound.low is None and bound.high is None:
            return None, None
        act = imap.active
        base = x0[:, act]
        lo = torch.full_like(base, -math.inf)
        hi = torch.full_like(base, math.inf)
        if bound.low is not None:
            lo = torch.minimum(bound.low.reshape(-1)[act] - base, torch.zeros_like(base))
        if bound.high is not None:
            hi = torch.maximum(bound.high.reshape(-1)[act] - base, torch.zeros_like(base))
        scale = imap.scale
        return (lo / scale).cpu().numpy(), (hi / scale).cpu().numpy()

    def finish(
        self,
        adv: torch.Tensor,
        obs: torch.Tensor,
        bound: BoundBudget,
        reference: torch.Tensor,
        targeted: bool = False,
    ) -> torch.Tensor:
        """Clip ``adv`` into the budget and bounds, record :attr:`last_success`, count the call.

        :param adv: candidate perturbed observations (B, *shape).
        :param obs: clean observations.
        :param bound: the budget.
        :param reference: clean classes (untargeted) or targets (targeted), (B,).
        :param targeted: success = reaching ``reference`` instead of leaving it.
        """
        out = clip_gently(bound, adv.to(obs.dtype), obs)
        cls = self.classes_of(out)
        hit = cls == reference if targeted else cls != reference
        self.last_success = hit.cpu().numpy()
        self.calls += 1
        return out
