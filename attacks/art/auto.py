"""AutoPGD, Auto Conjugate Gradient and the dynamic minimal-eps search (``art_apgd``,
``art_acg``, ``art_dynamic_eps``): ART's ``AutoProjectedGradientDescent`` and
``AutoConjugateGradient``, untargeted, on the bifurcated (or binned) victim.

Losses (``loss``): ``cw`` = the authors' ``CWLoss`` as written (the clean logit is multiplied by
0, so the "other" term is ``max(0, g_other)``: their "DLloss" columns); ``gdl`` = the stated
GDL ``g_other - g_y``; ``cross_entropy`` and ``difference_logits_ratio`` = ART's built-in
losses (DLR needs at least 3 classes: bins, not groups).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from rlkit.attacks.art_support import (
    InputMap,
    art_loss_type,
    art_norm,
    numpy_seed,
    onehot,
    policy_output,
    set_clip,
)
from rlkit.attacks.budget import AttackBudget, BoundBudget

from .base import _CLASSES, ARTSettings, Classes, _ARTAttack, clip_gently

Loss = Literal["cw", "gdl", "cross_entropy", "difference_logits_ratio"]

# ------------------------------------------------------------------------------------ settings
_LOSS = (
    "'cw' (the authors' CWLoss as written: their 'DLloss'), 'gdl' (the stated group "
    "difference of logits), 'cross_entropy' or 'difference_logits_ratio' (ART's; needs "
    ">= 3 classes)"
)


class AutoSettings(ARTSettings):
    """Settings of ART's AutoPGD / AutoConjugateGradient (the authors' uAPGD / uACG runs)."""

    classes: Classes = Field("groups", description=_CLASSES)
    loss: Loss = Field("cw", description=_LOSS)
    max_iter: int = Field(20, ge=1, description="iterations per restart (the authors: 20)")
    nb_random_init: int = Field(
        50,
        ge=1,
        description="random restarts in the eps ball (the "
        "authors: 50; ART always starts from a random point)",
    )
    eps_step: float | None = Field(
        None, gt=0, description="initial step in budget units; null = step_ratio * eps"
    )
    step_ratio: float = Field(
        2.0,
        gt=0,
        description="initial step as a multiple of eps when eps_step is null (the authors: 2 eps)",
    )
    clip: Literal["every_step", "end"] = Field(
        "every_step",
        description="'every_step': give ART the observation bounds (its clip_values, the authors' "
        "(0, 1)), applied inside its loop; 'end': only the result is clipped into the bounds "
        "(as the gradient attacks' clip setting; 'none' is not offered: ART's internals clip)",
    )


class DynamicSettings(AutoSettings):
    """Settings of the dynamic minimal-eps search (the authors' ``dynamic_distortion``)."""

    classes: Classes | None = Field(  # type: ignore[assignment]
        None,
        description=_CLASSES + "; null = 'actions' for "
        "discrete policies (the authors' 20-class ACG), 'groups' for "
        "continuous ones",
    )
    loss: Loss | None = Field(  # type: ignore[assignment]
        None,
        description=_LOSS + "; null = 'difference_logits_ratio' for "
        "'actions' with >= 3 bins (the authors), else 'cw'",
    )
    method: Literal["acg", "apgd"] = Field(
        "acg",
        description="the ART attack run at each "
        "candidate eps: 'acg' (AutoConjugateGradient, the "
        "authors) or 'apgd' (AutoProjectedGradientDescent)",
    )
    eps_candidates: list[float] = Field(
        [0.01, 0.03, 0.05, 0.07],
        min_length=1,
        description=(
            "candidate radii; those above the budget's eps are dropped (run with eps: [0.07] "
            "for the authors' search); none left = the budget's eps alone"
        ),
    )
    search: Literal["binary", "linear"] = Field(
        "binary",
        description=(
            "'binary': the authors' bisection over the sorted candidates (first the middle one; "
            "finds the smallest flipping eps when flipping is monotone in eps); 'linear': try them "
            "in increasing order, stop at the first that flips"
        ),
    )
    max_iter: int = Field(10, ge=1, description="iterations per restart (the authors: 500 / 50)")
    eps_step: float | None = Field(
        0.1,
        gt=0,
        description="initial step in budget units "
        "(the authors left ART's default 0.1 for every eps); null = "
        "step_ratio * eps (their 5-run variant: 2 eps)",
    )

    clip: Literal["every_step", "end"] = Field(
        "end",
        description="'every_step': give ART the observation bounds (its clip_values); the "
        "authors' dynamic classifier had none ('end': rlkit clips only the result into the bounds)",
    )

    @field_validator("eps_candidates")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if any(not math.isfinite(v) or v <= 0 for v in values):
            raise ValueError("allowed: a list of finite numbers > 0")
        return values


# ------------------------------------------------------------------------------------- attacks
class _AutoAttack(_ARTAttack):
    """AutoPGD / ACG, untargeted, on each observation of the batch."""

    settings_model = AutoSettings
    method: ClassVar[str] = "apgd"

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """As :class:`_ARTAttack`; resolve the loss."""
        super().__init__(name, policy, budget, settings)
        loss = settings.get("loss")
        if loss == "difference_logits_ratio" and self.classes == "groups":
            raise ValueError(
                "setting 'loss'='difference_logits_ratio' needs >= 3 classes (ART's "
                "DLR): use classes='actions' (bins) or loss='cw' for the two groups"
            )
        self._loss: str | None = loss

    def loss_for(self, obs: torch.Tensor) -> str:
        """The loss (null setting: DLR on >= 3 bins, else the authors' CW loss).

        :param obs: a batch (gives the number of bins).
        """
        if self._loss is None:
            bins = int(policy_output(self.policy, obs[:1]).shape[1])
            self._loss = (
                "difference_logits_ratio" if self.classes == "actions" and bins >= 3 else "cw"
            )
        return self._loss

    @property
    def loss_name(self) -> str | None:
        """The resolved loss (None until the first call when the setting is null)."""
        return self._loss

    def art_attack(
        self, imap: InputMap, classifier: Any, eps: float, norm: str, method: str | None = None
    ) -> Any:
        """The (cached) ART attack at radius ``eps`` (budget units).

        :param imap: the input map.
        :param classifier: its ART classifier.
        :param eps: the radius.
        :param norm: the budget's norm.
        :param method: ``"apgd"`` or ``"acg"`` (default: the class's).
        """
        method = method or self.method
        key = (id(classifier), method, round(float(eps), 12), norm)
        if key not in self._art:
            from art.attacks.evasion import AutoConjugateGradient, AutoProjectedGradientDescent

            s = self.settings
            n_classes = classifier.nb_classes
            if self.loss_name == "difference_logits_ratio" and n_classes < 3:
                raise ValueError(
                    "setting 'loss'='difference_logits_ratio' needs >= 3 classes "
                    f"(ART's DLR); this classifier has {n_classes}: use "
                    "classes='actions' on a policy with >= 3 bins, or loss='cw'"
                )
            step = s["eps_step"] if s["eps_step"] is not None else s["step_ratio"] * eps
            cls = AutoProjectedGradientDescent if method == "apgd" else AutoConjugateGradient
            self._art[key] = cls(
                estimator=classifier,
                norm=art_norm(norm),
                eps=float(eps),
                eps_step=float(step),
                max_iter=int(s["max_iter"]),
                targeted=False,
                nb_random_init=int(s["nb_random_init"]),
                batch_size=1,
                loss_type=art_loss_type(self.loss_name or "cw"),
                verbose=False,
            )
        return self._art[key]

    def attack_row(
        self,
        flat: torch.Tensor,
        row: int,
        label: int,
        bound: BoundBudget,
        imap: InputMap,
        classifier: Any,
        eps: float,
        method: str | None = None,
    ) -> torch.Tensor:
        """ART's adversarial example for observation ``row`` at radius ``eps`` (1, n_flat).

        :param flat: clean flat observations (B, n_flat).
        :param row: the row.
        :param label: its clean class.
        :param bound: the budget.
        :param imap: the input map.
        :param classifier: its classifier.
        :param eps: the radius (budget units).
        :param method: ``"apgd"`` or ``"acg"``.
        """
        attack = self.art_attack(imap, classifier, eps, bound.norm, method)
        x0 = flat[row : row + 1]
        imap.set_base(x0)
        low, high = (
            self.delta_clip(imap, bound, x0)
            if self.settings["clip"] == "every_step"
            else (None, None)
        )
        set_clip(attack, low, high)
        u0 = np.zeros((1, len(imap.active)), dtype=np.float32)
        y = onehot(np.array([label]), classifier.nb_classes)
        with numpy_seed(self.entropy(row)):
            u = attack.generate(u0, y=y)
        with torch.no_grad():
            return imap.full(torch.as_tensor(u, device=flat.device))

    def perturb(
        self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget
    ) -> torch.Tensor:
        """AutoPGD/ACG on each observation, then clip into the budget.

        :param obs: clean batch (B, *shape).
        :param t: unused.
        :param bound: the budget bound to ``obs``.
        """
        clean = self.classes_of(obs)
        if bound.eps <= 0 or not bool(bound.active.any()):
            return self.finish(obs.clone(), obs, bound, clean)
        flat = obs.reshape(obs.shape[0], -1)
        imap, classifier = self.input_map(obs, bound, "delta", loss=self.loss_for(obs))
        rows = [
            self.attack_row(flat, i, int(clean[i]), bound, imap, classifier, bound.eps)
            for i in range(obs.shape[0])
        ]
        return self.finish(torch.cat(rows).reshape(obs.shape), obs, bound, clean)


class ARTAutoPGD(_AutoAttack):
    """Untargeted AutoPGD (ART ``AutoProjectedGradientDescent``) on the bifurcated victim.

    The authors' ``uAPGD DLloss 05 eps`` column of the 20-bin PPO (``attack bifurcated discrete
    APGD.ipynb``, ``20 bin PPO 500 results/uAPGD DLloss 05 eps parameters.json``): the
    ``MaximumBifuricationWrapper`` groups, their ``CWLoss`` (``loss_type=None``), eps 0.05,
    ``eps_step`` 2 eps, 50 restarts of 20 iterations, linf, calendar masked, clip_values (0, 1),
    one observation per call, labelled with the clean action's group.  ART's restart loop stops
    at the first restart that flips the group; an observation it cannot flip keeps its last
    random restart point.
    """

    method = "apgd"


class ARTAutoCG(_AutoAttack):
    """Untargeted Auto Conjugate Gradient (ART ``AutoConjugateGradient``) on the bifurcated victim.

    The authors' ``uACG_binary_SAC_05_eps`` / ``uACG_binary_SAC_03_eps`` (SAC,
    ``attack bifurcated untargeted ACG on SAC.ipynb``: ``RegressorLinearWrapper`` on the pre-tanh
    mean, m = (1, 0, -1, 0)) and ``bifurcated_uACG_DLloss_03_mask_time_solar_and_consumption``
    (SAC and 20-bin PPO, ``attack ACG bifurcation on discrete agent.ipynb``): CWLoss, eps_step
    2 eps, 50 restarts of 20 iterations, linf, clip_values (0, 1).  Their non-bifurcated
    ``untageted_AC_5%_eps`` (20 bins, ``attack untargeted ACG.ipynb``) is ``classes: actions,
    loss: difference_logits_ratio``.
    """

    method = "acg"


class ARTDynamicEps(_AutoAttack):
    """The authors' dynamic distortion: per observation, the smallest candidate eps that flips.

    ``utilities.dynamic_distortion`` (used by ``eval_untargeted_dynamic_distortion_attack``,
    ``attack untargeted dynamic acg.ipynb``: the ``dynamic_untargeted_acg`` column of the ATLA
    PPO) runs one ART attack per candidate eps over the *sorted* list [0.01, 0.03, 0.05, 0.07]
    as a bisection: try the middle candidate; if it changes the victim's action keep it and
    search the smaller ones, else search the larger ones.  When no candidate succeeds it returns
    the *clean* observation (the agent acts unperturbed; that step counts as a failure, eps
    NaN).  Their attack: ACG on the 20-bin classifier (not bifurcated), ART's
    ``difference_logits_ratio`` loss, 50 restarts of 10 iterations, ``eps_step`` left at ART's
    0.1, calendar masked, no clip_values (``clip: end``).

    After each call :attr:`last_eps` (B,) holds the eps used per observation (NaN = none).
    """

    settings_model = DynamicSettings
    default_classes = {"discrete": "actions", "continuous": "groups"}

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """As :class:`_AutoAttack`; the inner method comes from the settings."""
        super().__init__(name, policy, budget, settings)
        self.method = settings["method"]  # type: ignore[misc]
        self.last_eps: np.ndarray | None = None

    def candidates(self, eps: float) -> list[float]:
        """The sorted candidate radii allowed by a budget of radius ``eps``.

        :param eps: the budget's radius.
        """
        kept = sorted(float(e) for e in self.settings["eps_candidates"] if e <= eps * (1 + 1e-9))
        return kept or [float(eps)]

    def perturb(
        self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget
    ) -> torch.Tensor:
        """The minimal-eps search on each observation.

        :param obs: clean batch (B, *shape).
        :param t: unused.
        :param bound: the budget bound to ``obs``.
        """
        clean = self.classes_of(obs)
        batch = obs.shape[0]
        self.last_eps = np.full(batch, np.nan)
        if bound.eps <= 0 or not bool(bound.active.any()):
            return self.finish(obs.clone(), obs, bound, clean)
        flat = obs.reshape(batch, -1)
        imap, classifier = self.input_map(obs, bound, "delta", loss=self.loss_for(obs))
        out = obs.clone()
        for i in range(batch):
            label = int(clean[i])

            def attempt(eps: float, i: int = i, label: int = label) -> torch.Tensor | None:
                x = self.attack_row(flat, i, label, bound, imap, classifier, eps)
                x = clip_gently(bound, x.reshape(1, *obs.shape[1:]), obs[i : i + 1])
                return x if int(self.classes_of(x)[0]) != label else None

            chosen, sample = self.search(self.candidates(bound.eps), attempt)
            if sample is not None:
                out[i : i + 1] = sample
                self.last_eps[i] = chosen
        return self.finish(out, obs, bound, clean)

    def search(
        self, candidates: list[float], attempt: Callable[[float], torch.Tensor | None]
    ) -> tuple[float, torch.Tensor | None]:
        """Find the smallest flipping candidate (``attempt(eps)`` = the flipped sample or None).

        :param candidates: sorted radii.
        :param attempt: runs the attack at one radius.
        :return: (the eps used, the sample) or (nan, None) when none flips.
        """
        chosen, sample = math.nan, None
        if self.settings["search"] == "linear":
            for eps in candidates:
                x = attempt(eps)
                if x is not None:
                    return eps, x
            return chosen, sample
        left = list(candidates)
        while left:
            mid = len(left) // 2
            x = attempt(left[mid])
            if x is not None:
                chosen, sample = left[mid], x
                left = left[:mid]
            else:
                left = left[mid + 1 :]
        return chosen, sample
