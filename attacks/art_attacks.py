"""The bifurcation authors' other attacks, run through adversarial-robustness-toolbox (ART).

Broda-Milian, Al-Mallah and Dagdougui (2024) ran, besides their own bifurcated PGD, these attacks
with ART 1.16 on their CityLearn victims (RMC-AIvsAI/A-Novel-Bifurcation-Method-for-Observation-
Perturbation-Attacks-on-Reinforcement-Learning-Agents); each is rebuilt here on ART's own classes
(``pip install 'rlkit[art]'``), as an rlkit attack usable from an attack config::

    attack:
      eps: [0.05]
      attacks:
        - {name: art_apgd, mask: [calendar]}                       # uAPGD DLloss 05 eps
        - {name: art_acg, eps: [0.03], mask: [calendar, pv, load]} # uACG 03 (SAC)
        - {name: art_dynamic_eps, eps: [0.07], mask: [calendar]}   # dynamic_untargeted_acg
        - {name: art_optimal_bb, eps: [1.0], settings: {adversary: /tmp/authors/adv.zip}}
        - {name: art_snooping_fgm, settings: {dataset: /tmp/authors/baseline_obs-a.csv}}

=====================  =========================================  ==============================
name                   class                                      the authors' run
=====================  =========================================  ==============================
``art_apgd``           :class:`ARTAutoPGD` (``AutoProjectedGradi-  ``uAPGD DLloss 05 eps``
                       entDescent``)                              (20-bin PPO)
``art_acg``            :class:`ARTAutoCG` (``AutoConjugate-       ``uACG_binary_SAC_05_eps``,
                       Gradient``)                                ``..._03_eps``, ``bifurcated_
                                                                  uACG_DLloss_03_...``
``art_dynamic_eps``    :class:`ARTDynamicEps` (ACG or APGD per    ``dynamic_untargeted_acg``
                       candidate eps)                             (ATLA PPO), ``untargeted_acg``
``art_optimal_bb``     :class:`ARTOptimalBB`                      ``Optimal myBB no init``,
                       (``BrendelBethgeAttack``)                  ``optimal_BB``
``art_snooping_fgm``   :class:`ARTSnoopingFGM`                    imitator FGM (5 runs), the
                       (``FastGradientMethod`` on a proxy)        snooping eps-vs-ASR runs
=====================  =========================================  ==============================

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

Losses (``loss``): ``cw`` = the authors' ``CWLoss`` as written (the clean logit is multiplied by
0, so the "other" term is ``max(0, g_other)``: their "DLloss" columns); ``gdl`` = the stated
GDL ``g_other - g_y``; ``cross_entropy`` and ``difference_logits_ratio`` = ART's built-in
losses (DLR needs at least 3 classes: bins, not groups).

The ``seed`` setting seeds numpy's global RNG (ART's random restarts use it) for each call and
observation, then restores it; null leaves numpy's RNG alone, as ART does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rlkit.attacks import Attack
from rlkit.attacks.bifurcation import Bifurcation
from rlkit.attacks.budget import AttackBudget, BoundBudget

from .art_support import (
    ClassHead,
    InputMap,
    art_loss_type,
    art_norm,
    fit_proxy,
    load_observations,
    make_classifier,
    make_loss,
    make_proxy,
    numpy_seed,
    onehot,
    policy_output,
    quiet_tqdm,
    require_art,
    set_clip,
)

__all__ = [
    "ARTAutoCG",
    "ARTAutoPGD",
    "ARTDynamicEps",
    "ARTOptimalBB",
    "ARTSnoopingFGM",
]

ACTION_KINDS = ("continuous", "discrete")
Loss = Literal["cw", "gdl", "cross_entropy", "difference_logits_ratio"]
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
_LOSS = (
    "'cw' (the authors' CWLoss as written: their 'DLloss'), 'gdl' (the stated group "
    "difference of logits), 'cross_entropy' or 'difference_logits_ratio' (ART's; needs "
    ">= 3 classes)"
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


class BBSettings(ARTSettings):
    """Settings of the optimally targeted Brendel-Bethge attack (``Optimal myBB no init``)."""

    adversary: Any = Field(
        None,
        validate_default=True,
        description=(
            "where the target actions come from (required): the path of an SB3 zip of the "
            "adversary policy (the authors' "
            "default_adversary_PPO_..._20_bins_default_rwd_480.zip, a PPO trained on the "
            "victim's env with the reward +consumption), or a callable obs batch -> "
            "target class indices (B,) or policy outputs (B, k)"
        ),
    )
    adversary_algo: str | None = Field(
        None, description="the adversary zip's SB3 algorithm (null = read from the zip)"
    )
    classes: Classes | None = Field(
        None,
        description=_CLASSES + "; null = 'actions' for "
        "discrete policies (the authors: target bins), 'groups' for "
        "continuous ones",
    )
    steps: int = Field(1000, ge=1, description="Brendel-Bethge iterations (the authors: 1000)")
    overshoot: float = Field(1.1, ge=1.0, description="boundary overshoot (the authors: 1.1)")
    lr: float = Field(1e-3, gt=0, description="trust-region radius (the authors: 1e-3)")
    lr_decay: float = Field(0.5, gt=0, le=1, description="trust-region decay (the authors: 0.5)")
    lr_num_decay: int = Field(20, ge=1, description="number of decays (the authors: 20)")
    momentum: float = Field(0.8, ge=0, le=1, description="boundary-estimate momentum (0.8)")
    binary_search_steps: int = Field(
        10,
        ge=1,
        description="bisection steps from the starting point toward the clean observation (10)",
    )
    init_size: int = Field(
        1_000_000,
        ge=1,
        description="random samples drawn (at most) to find "
        "a starting point of the target class (the authors: 1,000,000)",
    )
    init_batch: int = Field(
        10_000,
        ge=1,
        description="random samples per batch of that search "
        "(the authors: 10,000; the search stops at the first batch with a "
        "hit)",
    )
    min_margin: float = Field(
        1e-4,
        ge=0,
        description=(
            "after Brendel-Bethge, step back toward the starting point until the target logit "
            "leads the others by at least this much (the boundary point ART returns can fall back "
            "across the boundary through float rounding, e.g. in a different batch size); "
            "0 = ART's result as is"
        ),
    )
    init_region: Literal["box", "budget"] = Field(
        "box",
        description=(
            "where starting points are drawn: 'box' (uniformly in the observation bounds, the "
            "authors; the eps ball when the budget has no bounds) or 'budget' (in the eps ball: "
            "the result then stays in the budget)"
        ),
    )

    @field_validator("adversary")
    @classmethod
    def _required(cls, value: Any) -> Any:
        if value is None:
            raise ValueError(
                "allowed: the path of an SB3 zip or a callable obs -> targets; the "
                "setting is required"
            )
        if not (isinstance(value, (str, os.PathLike)) or callable(value)):
            raise ValueError("allowed: the path of an SB3 zip or a callable obs -> targets")
        return value


class SnoopingSettings(ARTSettings):
    """Settings of black-box snooping: an imitation proxy attacked with FGM, transferred."""

    objective: Literal["actions", "groups", "toggle"] | None = Field(
        None,
        description=(
            "'actions' (untargeted FGM, cross-entropy on the proxy's bins: the authors' imitator "
            "FGM, discrete only), 'groups' (untargeted, CW loss on the proxy's bifurcation groups) "
            "or 'toggle' (targeted at group t mod 2, CW loss: their eps-vs-ASR runs); null = "
            "'actions' for discrete victims, 'toggle' for continuous ones"
        ),
    )
    dataset: str | None = Field(
        None,
        description=(
            "observations the proxy is fitted on before the first call (.npy, .npz with 'obs', or "
            ".csv like the authors' baseline_obs-a.csv): the authors fitted it on one clean "
            "episode of the victim; labels are the victim's deterministic actions on them. "
            "null = warm-up"
        ),
    )
    warmup_steps: int = Field(
        168,
        ge=0,
        description=(
            "without a dataset: calls (time steps) passed through clean while the (observation, "
            "action) pairs are recorded; the proxy is fitted after them (168 = a week of hours)"
        ),
    )
    refit_every: int = Field(
        0,
        ge=0,
        description=(
            "refit the proxy every this many attacked calls on every pair observed so far (the "
            "perturbed observation the victim saw and its action); 0 = fit once"
        ),
    )
    hidden: list[int] | None = Field(
        None,
        description=(
            "proxy hidden widths; null = the authors' (discrete [300, 493], continuous [464, 192])"
        ),
    )
    activation: Literal["tanh", "relu"] | None = Field(
        None, description=("proxy activation; null = the authors' (discrete tanh, continuous relu)")
    )
    dropout: list[float] | None = Field(
        None,
        description=(
            "dropout after each hidden layer; null = the authors' (discrete [0.388, 0.145], "
            "continuous [0.25, 0.45])"
        ),
    )
    optimizer: Literal["rmsprop", "sgd", "adam"] | None = Field(
        None,
        description=("proxy optimiser; null = the authors' (discrete RMSprop, continuous SGD)"),
    )
    lr: float | None = Field(
        None,
        gt=0,
        description="proxy learning rate; null = the authors' (discrete 3.3e-4, continuous 0.0622)",
    )
    batch_size: int | None = Field(
        None, ge=1, description="proxy minibatch; null = the authors' (discrete 64, continuous 8)"
    )
    epochs: int = Field(1000, ge=1, description="proxy training epochs (the authors: 1000)")
    shuffle: bool = Field(
        False, description="shuffle the pairs each epoch (the authors: no, a time series)"
    )

    @field_validator("hidden")
    @classmethod
    def _widths(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and any(v < 1 for v in values):
            raise ValueError("allowed: a list of integers >= 1")
        return values

    @field_validator("dropout")
    @classmethod
    def _rates(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and any(not 0 <= v < 1 for v in values):
            raise ValueError("allowed: a list of probabilities in [0, 1)")
        return values

    @model_validator(mode="after")
    def _has_data(self) -> SnoopingSettings:
        if self.dataset is None and self.warmup_steps == 0:
            raise ValueError(
                "allowed: a dataset, or warmup_steps >= 1 (the proxy needs observed pairs)"
            )
        return self


_PROXY_DEFAULTS = {
    # optuna/proxy policy 20 bin PPO 500 + "train snooping classifier.ipynb"
    "discrete": {
        "hidden": [300, 493],
        "activation": "tanh",
        "dropout": [0.388, 0.145],
        "optimizer": "rmsprop",
        "lr": 3.3e-4,
        "batch_size": 64,
        "keep_best": False,
    },
    # optuna/proxy PPO continuous 3-26-5 + "train snooping regressor.ipynb" ("imitator best")
    "continuous": {
        "hidden": [464, 192],
        "activation": "relu",
        "dropout": [0.25, 0.45],
        "optimizer": "sgd",
        "lr": 0.0622,
        "batch_size": 8,
        "keep_best": True,
    },
}


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


class ARTOptimalBB(_ARTAttack):
    """The optimally targeted attack: Brendel-Bethge (ART) toward the adversary policy's action.

    ``attack optimally targeted mybb.ipynb`` (``Optimal myBB no init``, ATLA PPO) and ``20 bin
    PPO 500 results/attack targeted mybb.ipynb`` (``optimal_BB``): at each step the target is
    ``adversary.predict(clean_obs, deterministic=True)``, the bin chosen by a PPO trained on the
    victim's env to *maximise* consumption (``Train_PPO_adversary_default_reward.py``: reward
    = +net consumption); ``utils.define_attack`` wraps the 20-bin policy (not bifurcated) in a
    ``PyTorchClassifier`` with clip_values (0, 1) and their modified ART 1.16 Brendel-Bethge
    (``modules/KBMproject/mybb.py``) runs targeted, linf, overshoot 1.1, 1000 steps, lr 1e-3
    halved 20 times, momentum 0.8, 10 bisection steps, ``init_size`` 1,000,000.

    Their changes to ART, rebuilt here around ART's own ``BrendelBethgeAttack`` (which is given
    the starting point): the starting point is searched in batches of 10,000 uniform samples of
    the box, stopping at the first batch with one of the target class (here the closest of them,
    in linf, is taken: their ``np.linalg.norm`` without ``axis`` made it the first); when none is
    found the clean observation is returned (ART would fail).  When the target already is the
    clean action nothing is done.  Brendel-Bethge is a minimal-norm attack with no radius: the
    authors' runs were unbounded (their masks were passed to ``generate``, which Brendel-Bethge
    ignores).  Here the result is projected into the budget; run with ``eps: [1.0]`` and no
    mask to reproduce the unbounded attack on [0, 1] observations, or ``init_region: budget``
    to search only inside the eps ball.  It is slow (the authors: 3.5 s per step, 9 h 40 min
    per year): evaluate it on a shorter episode, e.g. ``env.kwargs.episode_time_steps: 168``.

    After each call :attr:`last_targets` (B,) holds the targets and :attr:`last_start_distance`
    (B,) the plain linf distance of each starting point (NaN: no search, or none found).
    """

    settings_model = BBSettings
    default_classes = {"discrete": "actions", "continuous": "groups"}

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """As :class:`_ARTAttack`; the adversary is loaded at the first call."""
        super().__init__(name, policy, budget, settings)
        self._adversary: Callable[[torch.Tensor], Any] | None = None
        self.last_targets: np.ndarray | None = None
        self.last_start_distance: np.ndarray | None = None

    def adversary(self, obs: torch.Tensor) -> Callable[[torch.Tensor], Any]:
        """The adversary policy (an SB3 zip is loaded once, as a frozen policy view).

        :param obs: a batch (gives the observation size).
        """
        if self._adversary is None:
            source = self.settings["adversary"]
            if isinstance(source, (str, os.PathLike)):
                self._adversary = load_adversary(
                    os.fspath(source),
                    self.action_kind,
                    obs,
                    int(policy_output(self.policy, obs[:1]).shape[1]),
                    self.settings["adversary_algo"],
                )
            else:
                self._adversary = source
        return self._adversary

    def targets(self, obs: torch.Tensor) -> torch.Tensor:
        """Target class (B,) per observation, from the adversary on the clean observations.

        :param obs: clean batch.
        """
        with torch.no_grad():
            out = self.adversary(obs)(obs)
        if isinstance(out, (tuple, list)):
            out = out[0]
        out = torch.as_tensor(out, device=obs.device)
        if not out.is_floating_point() or out.dim() == 1:
            return out.reshape(-1).long()
        return self.head()(out.reshape(out.shape[0], -1).float()).argmax(dim=-1)

    def init_box(
        self, x0: torch.Tensor, bound: BoundBudget, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per active feature, the box starting points are drawn from.

        :param x0: clean flat observation (n_flat,).
        :param bound: the budget.
        :param active: active feature indices.
        """
        base = x0[active]
        low = bound.low.reshape(-1)[active] if bound.low is not None else None
        high = bound.high.reshape(-1)[active] if bound.high is not None else None
        if self.settings["init_region"] == "box" and low is not None and high is not None:
            return torch.minimum(low, base), torch.maximum(high, base)
        radius = bound.eps_vec.reshape(-1)[active]
        lo, hi = base - radius, base + radius
        if low is not None:
            lo = torch.maximum(lo, torch.minimum(low, base))
        if high is not None:
            hi = torch.minimum(hi, torch.maximum(high, base))
        return lo, hi

    def starting_point(
        self,
        imap: InputMap,
        x0: torch.Tensor,
        lo: torch.Tensor,
        hi: torch.Tensor,
        target: int,
        row: int,
    ) -> np.ndarray | None:
        """A random point of the box classified as ``target``, closest to ``x0`` (linf), or None.

        :param imap: the input map (absolute inputs, base set to this observation).
        :param x0: the clean active features (n_active,).
        :param lo: lower corner of the box.
        :param hi: upper corner.
        :param target: the target class.
        :param row: the observation's row (seed material).
        """
        s = self.settings
        entropy = self.entropy(row)
        gen = torch.Generator(device=x0.device)
        if entropy is not None:
            gen.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
        else:
            gen.seed()
        left = int(s["init_size"])
        with torch.no_grad():
            while left > 0:
                n = min(int(s["init_batch"]), left)
                left -= n
                cand = lo + torch.rand(
                    n, len(lo), generator=gen, device=x0.device, dtype=lo.dtype
                ) * (hi - lo)
                hits = cand[imap(cand).argmax(dim=1) == target]
                if len(hits):
                    dist = (hits - x0).abs().amax(dim=1)
                    return hits[int(dist.argmin())].cpu().numpy().astype(np.float32)
        return None

    def bb(self, classifier: Any, norm: str) -> Any:
        """The (cached) ART Brendel-Bethge attack.

        :param classifier: the ART classifier.
        :param norm: the budget's norm.
        """
        key = (id(classifier), norm)
        if key not in self._art:
            from art.attacks.evasion import BrendelBethgeAttack

            s = self.settings
            self._art[key] = BrendelBethgeAttack(
                estimator=classifier,
                norm=art_norm(norm),
                targeted=True,
                overshoot=float(s["overshoot"]),
                steps=int(s["steps"]),
                lr=float(s["lr"]),
                lr_decay=float(s["lr_decay"]),
                lr_num_decay=int(s["lr_num_decay"]),
                momentum=float(s["momentum"]),
                binary_search_steps=int(s["binary_search_steps"]),
                init_size=1,
                batch_size=1,
            )
        return self._art[key]

    def perturb(
        self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget
    ) -> torch.Tensor:
        """Targeted Brendel-Bethge on each observation, then project into the budget.

        :param obs: clean batch (B, *shape).
        :param t: unused.
        :param bound: the budget bound to ``obs``.
        """
        targets = self.targets(obs)
        self.last_targets = targets.cpu().numpy()
        clean = self.classes_of(obs)
        if bound.eps <= 0 or not bool(bound.active.any()):
            return self.finish(obs.clone(), obs, bound, targets, targeted=True)
        flat = obs.reshape(obs.shape[0], -1)
        imap, classifier = self.input_map(obs, bound, "absolute", clip_values=(0.0, 1.0))
        attack = self.bb(classifier, bound.norm)
        out = flat.clone()
        self.last_start_distance = np.full(obs.shape[0], np.nan)
        for i in range(obs.shape[0]):
            target = int(targets[i])
            if target == int(clean[i]):
                continue
            imap.set_base(flat[i : i + 1])
            x0 = flat[i, imap.active]
            lo, hi = self.init_box(flat[i], bound, imap.active)
            start = self.starting_point(imap, x0, lo, hi, target, i)
            if start is None:
                continue
            self.last_start_distance[i] = float(np.abs(start - x0.cpu().numpy()).max())
            low = float(torch.minimum(lo.min(), x0.min()))
            high = float(torch.maximum(hi.max(), x0.max()))
            set_clip(attack, low, high)
            with quiet_tqdm(), numpy_seed(self.entropy(i)):
                u = attack.generate(
                    x0.cpu().numpy()[None].astype(np.float32),
                    y=onehot(np.array([target]), classifier.nb_classes),
                    starting_points=start[None],
                )
            out[i : i + 1] = self.repair(imap, bound, obs[i : i + 1], u, start, target)
        return self.finish(out.reshape(obs.shape), obs, bound, targets, targeted=True)

    def repair(
        self,
        imap: InputMap,
        bound: BoundBudget,
        obs: torch.Tensor,
        u: np.ndarray,
        start: np.ndarray,
        target: int,
    ) -> torch.Tensor:
        """Brendel-Bethge's result, moved into the budget and bounds and given a margin.

        The result is clipped into the budget (Brendel-Bethge minimises the plain linf norm
        within the scalar box it is given, not the budget's per-feature radii); when the
        starting point itself is inside the budget, the point is then moved along the segment
        toward it (the whole segment stays inside) until the target logit leads by
        ``min_margin``.

        :param imap: the input map (base set to this observation).
        :param bound: the budget.
        :param obs: the clean observation (1, *shape).
        :param u: ART's result (1, n_active).
        :param start: the starting point (n_active,).
        :param target: the target class.
        :return: the flat perturbed observation (1, n_flat).
        """
        shape = obs.shape
        with torch.no_grad():
            x = clip_gently(
                bound, imap.full(torch.as_tensor(u, device=obs.device)).reshape(shape), obs
            ).reshape(1, -1)
            x_start = imap.full(torch.as_tensor(start, device=obs.device)[None])
            inside = torch.equal(
                clip_gently(bound, x_start.reshape(shape), obs).reshape(1, -1), x_start
            )
        if not inside:
            return x
        u_t = self.with_margin(imap, imap.to_inputs(x)[0], imap.to_inputs(x_start)[0], target)
        with torch.no_grad():
            return imap.full(u_t[None])

    def with_margin(
        self, imap: InputMap, u: torch.Tensor, start: torch.Tensor, target: int
    ) -> torch.Tensor:
        """The point of the segment from ``u`` (ART's result) to ``start`` closest to ``u`` whose
        target logit leads by ``min_margin`` (``u`` itself when the margin is 0 or none does).

        :param imap: the input map (base set).
        :param u: Brendel-Bethge's result (n_active,).
        :param start: its starting point, inside the target class.
        :param target: the target class.
        """
        margin = float(self.settings["min_margin"])
        if margin <= 0:
            return u
        steps = torch.cat([torch.zeros(1), 2.0 ** -torch.arange(20, -1, -1)]).to(u)
        points = u + steps[:, None] * (start - u)
        with torch.no_grad():
            logits = imap(points)
        lead = logits[:, target] - logits.masked_fill(
            torch.nn.functional.one_hot(torch.tensor(target), logits.shape[1])
            .bool()
            .to(logits.device),
            float("-inf"),
        ).amax(dim=1)
        good = torch.nonzero(lead >= margin).reshape(-1)
        return points[int(good[0])] if len(good) else u


def load_adversary(
    path: str, action_kind: str, obs: torch.Tensor, n_outputs: int, algo: str | None
) -> Callable[[torch.Tensor], Any]:
    """An SB3 adversary zip as a frozen policy view (SB3 1.8 zips of the authors load too).

    :param path: the zip.
    :param action_kind: the victim's kind (the adversary acts in the same action space).
    :param obs: a batch (gives the observation size).
    :param n_outputs: bins of a discrete victim.
    :param algo: SB3 algorithm (None = read from the zip).
    """
    from rlkit.agents.sb3 import SB3Agent
    from rlkit.envs.citylearn.authors import load_authors_model

    if not os.path.isfile(path):
        raise ValueError(f"setting 'adversary': no such file {path!r}")
    model = load_authors_model(
        path,
        action_kind,
        algo=algo,
        bins=n_outputs,  # type: ignore[arg-type]
        n_features=int(np.prod(obs.shape[1:])),
    )
    view = SB3Agent.from_model(model).policy_view()
    return view.to(obs.device)


class ARTSnoopingFGM(_ARTAttack):
    """Black-box snooping: FGM (ART ``FastGradientMethod``) on an imitation proxy, transferred.

    The authors (``train snooping classifier.ipynb`` / ``train snooping regressor.ipynb``,
    hyper-parameters from their optuna studies ``optuna/proxy*/optimize_immitator.py``) fitted
    an MLP proxy by supervised learning on one clean episode of the victim (8,759 (observation,
    action) pairs, ``baseline_obs-a.csv``): discrete 31-300-tanh-493-tanh-20 with dropout
    0.388/0.145, RMSprop 3.3e-4, batch 64, 1000 epochs, cross-entropy; continuous
    31-464-relu-192-relu-1 with dropout 0.25/0.45, SGD 0.0622, batch 8, Huber loss, the best
    epoch kept.  They then attacked the proxy with FGM (linf; ``5 run imitator FGM``: eps 0.05,
    cross-entropy with the proxy's own predictions as labels, no mask) and fed the perturbed
    observation to the victim; their eps-vs-ASR runs put the bifurcation layer on the proxy and
    targeted group ``t mod 2`` with CWLoss (``attack untargeted snooping FGM eps vs ASR.ipynb``,
    ``attack untargeted continuous snooping FGM eps vs MAE.ipynb``).

    Where the pairs come from (the choice documented here): with ``dataset`` the proxy is fitted
    before the first call on those observations (the authors' clean episode), labelled with the
    victim's deterministic action (its bin, or for continuous victims its pre-squash mean, a
    one-to-one function of a tanh-squashed action); without it the attack first watches
    ``warmup_steps`` calls (returning them clean, recording what the victim sees and does) and
    fits the proxy on them; ``refit_every`` refits it on everything observed so far.
    :attr:`proxy` is the fitted proxy, :attr:`proxy_metrics` its training score, and
    :meth:`agreement` its agreement with the victim on given observations.
    """

    settings_model = SnoopingSettings

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """As :class:`_ARTAttack`; resolve the objective."""
        super().__init__(name, policy, budget, settings)
        objective = settings.get("objective") or (
            "actions" if self.action_kind == "discrete" else "toggle"
        )
        if objective == "actions" and self.action_kind != "discrete":
            raise ValueError(
                "setting 'objective'='actions' needs a discrete policy; use 'groups' or 'toggle'"
            )
        self.objective: str = objective
        self.classes = "actions" if objective == "actions" else "groups"
        self.proxy: torch.nn.Module | None = None
        self.proxy_metrics: dict[str, float] = {}
        self.fits = 0
        self._seen: list[torch.Tensor] = []
        self._attacked_calls = 0

    # ------------------------------------------------------------------ the proxy
    def proxy_config(self) -> dict[str, Any]:
        """The proxy's hyper-parameters (settings, the authors' defaults where null)."""
        defaults = _PROXY_DEFAULTS[self.action_kind]
        s = self.settings
        return {
            key: (s[key] if s.get(key) is not None else value) for key, value in defaults.items()
        }

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        """What the attacker records as the victim's action on observations ``x``.

        :param x: observations (N, *shape).
        """
        with torch.no_grad():
            out = policy_output(self.policy, x)
        return out.argmax(dim=-1) if self.action_kind == "discrete" else out.float()

    def fit(self, observations: torch.Tensor) -> dict[str, float]:
        """Fit a fresh proxy on ``observations`` labelled by the victim.

        :param observations: (N, *shape) observations the attacker has seen.
        """
        cfg = self.proxy_config()
        x = observations.reshape(observations.shape[0], -1).float()
        y = self.labels(observations)
        n_out = int(policy_output(self.policy, observations[:1]).shape[1])

        def make() -> torch.nn.Module:
            return make_proxy(x.shape[1], n_out, cfg["hidden"], cfg["activation"], cfg["dropout"])

        shape = tuple(observations.shape[1:])
        proxy, metrics = fit_proxy(
            make,
            x,
            y,
            classify=self.action_kind == "discrete",
            optimizer=cfg["optimizer"],
            lr=float(cfg["lr"]),
            batch_size=int(cfg["batch_size"]),
            epochs=int(self.settings["epochs"]),
            keep_best=bool(cfg["keep_best"]),
            shuffle=bool(self.settings["shuffle"]),
            seed=self.settings.get("seed"),
        )
        self.proxy = _Unflatten(proxy, shape)
        self.proxy_metrics = metrics
        self.fits += 1
        return metrics

    def agreement(self, observations: torch.Tensor) -> float:
        """Fraction of ``observations`` where the proxy's class equals the victim's.

        Classes are the bins for discrete victims and the groups for continuous ones.

        :param observations: (N, *shape).
        """
        if self.proxy is None:
            raise RuntimeError("the proxy is not fitted yet")
        victim = self.classes_of(observations)
        proxy = self.classes_of(observations, self.proxy)
        return float((victim == proxy).float().mean())

    # ------------------------------------------------------------------ the attack
    def perturb(
        self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget
    ) -> torch.Tensor:
        """Watch (warm-up) or attack the proxy with FGM and hand the perturbation to the victim.

        :param obs: clean batch (B, *shape).
        :param t: time steps (needed by ``objective: toggle``).
        :param bound: the budget bound to ``obs``.
        """
        s = self.settings
        if self.proxy is None and s["dataset"] is not None:
            data = load_observations(s["dataset"], int(np.prod(obs.shape[1:])))
            self.fit(torch.as_tensor(data, device=obs.device).reshape(-1, *obs.shape[1:]))
        clean = self.classes_of(obs)
        if self.proxy is None:  # warm-up: watch
            self._seen.append(obs.detach().clone())
            out = self.finish(obs.clone(), obs, bound, clean)
            if self.calls >= s["warmup_steps"]:
                self.fit(torch.cat(self._seen))
            return out
        if self.objective == "toggle" and t is None:
            raise ValueError("art_snooping_fgm with objective 'toggle' needs the time step t")
        if bound.eps <= 0 or not bool(bound.active.any()):
            adv = obs.clone()
        else:
            adv = self.fgm(obs, t, bound)
        out = self.finish(adv, obs, bound, clean)
        self._attacked_calls += 1
        if s["refit_every"]:
            self._seen.append(out.detach().clone())
            if self._attacked_calls % s["refit_every"] == 0:
                self.fit(torch.cat(self._seen))
        return out

    def fgm(self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget) -> torch.Tensor:
        """FGM on the proxy for the whole batch (un-clipped candidate).

        :param obs: clean batch.
        :param t: time steps (toggle).
        :param bound: the budget.
        """
        from art.attacks.evasion import FastGradientMethod

        batch = obs.shape[0]
        flat = obs.reshape(batch, -1)
        loss = "cross_entropy" if self.objective == "actions" else "cw"
        imap, classifier = self.input_map(
            obs, bound, "delta", network=self.proxy, key=self.fits, loss=loss
        )
        key = ("fgm", id(classifier), bound.norm, float(bound.eps))
        if key not in self._art:
            self._art[key] = FastGradientMethod(
                estimator=classifier,
                norm=art_norm(bound.norm),
                eps=float(bound.eps),
                targeted=self.objective == "toggle",
                num_random_init=0,
                batch_size=batch,
            )
        attack = self._art[key]
        attack.batch_size = batch  # rows must stay aligned with the bases
        imap.set_base(flat)
        set_clip(attack, *self.delta_clip(imap, bound, flat))
        u0 = np.zeros((batch, len(imap.active)), dtype=np.float32)
        y = None
        if self.objective == "toggle":
            assert t is not None
            y = onehot((t.cpu().numpy() % 2).astype(int), classifier.nb_classes)
        u = attack.generate(u0, y=y)
        with torch.no_grad():
            return imap.full(torch.as_tensor(u, device=obs.device)).reshape(obs.shape)


class _Unflatten(torch.nn.Module):
    """A flat-input proxy taking observations of any shape (flattens them first)."""

    def __init__(self, body: torch.nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.body = body
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(x.shape[0], -1))
