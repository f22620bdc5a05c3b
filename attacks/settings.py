"""Typed settings of the named attacks: one pydantic model per attack.

Each model's fields are the attack's settings: the field descriptions are their help text, the
defaults follow the authors' code (their myPGD: 100 sign steps from 0.01, halved every 25, delta
from 0, the observation bounds applied once at the end; their zero-masked DL/GDL loss; their
toggle phase; their continuous untargeted distance from the squashed clean action), and each
departure rlkit used to make is kept as a named value (the descriptions say which value is the
authors' and which was rlkit's former default).  Invalid values are rejected with ``"allowed:
..."`` messages; ``extra="forbid"`` rejects unknown settings.
:func:`rlkit.attacks.attacks.settings_model` maps attack names to these models;
``attack_settings`` and ``validate_settings`` are derived from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from .engines import AUTO_MLP_MAX_BATCH, ENGINES
from .losses import DISTANCES, OTHER_LOGITS
from .optim import CLIPS, DECAY_SCHEDULES

ACTION_KINDS = ("continuous", "discrete")
#: values of ``bifurcation_toggle``'s ``toggle_start``
TOGGLE_STARTS = ("away", "toward")
#: values of the continuous untargeted attacks' ``reference``
REFERENCES = ("squashed", "mean")


def _reject(allowed: str) -> PydanticCustomError:
    """The error of a setting whose value is not ``allowed``.

    :param allowed: what the setting accepts, e.g. ``"an integer >= 1"``.
    """
    return PydanticCustomError("invalid_setting", "allowed: {allowed}", {"allowed": allowed})


def _number(
    allowed: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    optional: bool = False,
) -> Callable[[Any], Any]:
    """A before-validator accepting (numpy) numbers within limits, not bools or strings.

    :param allowed: the message part saying what is accepted.
    :param integer: require an integer.
    :param low: lower limit (inclusive unless ``low_open``).
    :param high: inclusive upper limit.
    :param low_open: whether ``low`` is exclusive.
    :param optional: accept None.
    """

    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        ok_type = (int, np.integer) if integer else (int, float, np.integer, np.floating)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            raise _reject(allowed)
        value = int(value) if integer else float(value)
        if not math.isfinite(value):
            raise _reject(allowed)
        if low is not None and (value <= low if low_open else value < low):
            raise _reject(allowed)
        if high is not None and value > high:
            raise _reject(allowed)
        return value

    return check


def _choice(values: tuple[str, ...]) -> Callable[[Any], Any]:
    """A before-validator accepting one of ``values``.

    :param values: the allowed strings.
    """

    def check(value: Any) -> Any:
        if not isinstance(value, str) or value not in values:
            raise _reject(f"one of {list(values)}")
        return value

    return check


def _boolean(optional: bool = False) -> Callable[[Any], Any]:
    """A before-validator accepting true/false only (None too if ``optional``).

    :param optional: accept None (meaning "auto").
    """

    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, (bool, np.bool_)):
            raise _reject("true, false or null (auto)" if optional else "true or false")
        return bool(value)

    return check


def _required_target(value: Any) -> Any:
    """Reject a missing ``target``.

    :param value: the target setting.
    """
    if value is None:
        raise _reject(
            "an action (array/number, or a bin index for discrete policies) or a "
            "callable t -> target; the setting is required"
        )
    return value


ActionKind = Annotated[Literal["continuous", "discrete"], BeforeValidator(_choice(ACTION_KINDS))]
Distance = Annotated[Literal["mse", "mae", "huber"], BeforeValidator(_choice(DISTANCES))]
EngineName = Annotated[
    Literal["auto", "autograd", "compiled", "mlp"], BeforeValidator(_choice(ENGINES))
]
Schedule = Annotated[Literal["authors", "standard"], BeforeValidator(_choice(DECAY_SCHEDULES))]
Clip = Annotated[Literal["end", "none", "every_step"], BeforeValidator(_choice(CLIPS))]
OtherLogit = Annotated[Literal["zero", "neg_inf"], BeforeValidator(_choice(OTHER_LOGITS))]
ToggleStart = Annotated[Literal["away", "toward"], BeforeValidator(_choice(TOGGLE_STARTS))]
Reference = Annotated[Literal["squashed", "mean"], BeforeValidator(_choice(REFERENCES))]
StepSize = Annotated[float, BeforeValidator(_number("a finite number > 0", low=0.0, low_open=True))]
Iterations = Annotated[int, BeforeValidator(_number("an integer >= 1", integer=True, low=1))]
DecayEvery = Annotated[
    int, BeforeValidator(_number("an integer >= 0 (0 = never)", integer=True, low=0))
]
DecayRate = Annotated[
    float, BeforeValidator(_number("a number in (0, 1]", low=0.0, high=1.0, low_open=True))
]
Finite = Annotated[float, BeforeValidator(_number("a finite number"))]
Seed = Annotated[
    int | None,
    BeforeValidator(_number("an integer >= 0 or null", integer=True, low=0, optional=True)),
]
Split = Annotated[
    int | None,
    BeforeValidator(
        _number("an integer >= 1 or null (n_bins // 2)", integer=True, low=1, optional=True)
    ),
]
Flag = Annotated[bool, BeforeValidator(_boolean())]
AutoFlag = Annotated[bool | None, BeforeValidator(_boolean(optional=True))]
Target = Annotated[Any, AfterValidator(_required_target)]

_RANDOM_START_AUTO = (
    "start from a uniform point of the budget instead of delta = 0 (false: the authors', whose "
    "untargeted myPGD starts at delta = 0); null = auto: a random start where the distance is "
    "measured from the clean output itself and so has zero gradient at delta = 0 (reference "
    "'mean', or a continuous policy whose squash leaves its output as it is: squash 'none' or "
    "'clip', or no squash method), none otherwise and for discrete policies (rlkit's former "
    "default was null with reference 'mean')"
)
_RANDOM_START = "start from a uniform point of the budget instead of delta = 0"
_CLIP = (
    "when the observation bounds (the budget's low/high) apply: 'end' (the authors' "
    "my_pgd_linf: delta is only clamped to the budget inside the loop and obs + delta is clipped "
    "into the bounds once, after it; their runs named '...clipped'), 'none' (no bounds at all: "
    "the authors' headline runs fed the agent the unclipped obs + delta, up to eps outside "
    "[0, 1]) or 'every_step' (rlkit's former default, standard PGD: the start point and every "
    "iterate are clipped into the bounds)"
)
_OTHER_LOGIT = (
    "how the loss leaves the label's own logit out of its 'largest other' term: 'zero' (the "
    "authors' DLLoss/CWLoss multiply it by 0, so the term is max(0, largest other); they differ "
    "when every other logit is negative) or 'neg_inf' (the stated formula max_(j != y) z_j, "
    "rlkit's former default)"
)
_REFERENCE = (
    "continuous policies: the action the distance of the perturbed pre-squash mean is measured "
    "from: 'squashed' (the authors': the clean action as the env receives it, the policy view's "
    "squash of the clean mean; for their SAC the [0, 1] action low + (tanh(mean) + 1) / 2 * "
    "(high - low) that SB3's predict returns; a policy without a squash method: its own output) "
    "or 'mean' (rlkit's former reference: the clean pre-squash mean, whose distance has zero "
    "gradient at delta = 0)"
)


class AttackSettings(BaseModel):
    """Settings every attack has."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    action_kind: ActionKind = Field(
        "continuous",
        description="what the policy outputs: 'continuous' (action means) or "
        "'discrete' (action-bin logits); make_attack takes the policy's own action_kind "
        "attribute when it has one",
    )


class RandomSettings(AttackSettings):
    """Settings of ``random``: uniform noise in the budget."""

    positive_only: Flag = Field(
        False,
        description="sample U[0, eps) instead of U(-eps, eps) (true: the authors' random-noise "
        "baseline, obs + U[0, 1) * eps per feature; false: rlkit's symmetric noise; linf only)",
    )
    clip: Clip = Field(
        "end",
        description="whether the observation bounds (the budget's low/high) apply: 'end' or "
        "'every_step' (the same for a single draw: the noisy observation is clipped into the "
        "bounds, rlkit's former behaviour) or 'none' (the authors' random-noise baseline did not "
        "clip)",
    )
    seed: Seed = Field(None, description="seed of the attack's RNG; null = torch's global RNG")


class GradientSettings(AttackSettings):
    """Settings every gradient attack has."""

    seed: Seed = Field(
        None, description="seed of the attack's RNG (random starts); null = torch's global RNG"
    )
    engine: EngineName = Field(
        "auto",
        description="how gradients are computed: 'auto' (the MLP engine for plain MLP "
        f"policies on CPU batches of up to {AUTO_MLP_MAX_BATCH}, else autograd), 'autograd', "
        "'compiled' "
        "(torch.compile of the policy's forward and input gradient; compiles on first use) or "
        "'mlp' (hand-written MLP gradient; plain MLP policies only)",
    )
    clip: Clip = Field("end", description=_CLIP)


class DLFields(BaseModel):
    """The ``other_logit`` setting of attacks that use the difference-of-logits (DL/GDL) loss."""

    other_logit: OtherLogit = Field(
        "zero", description="discrete policies (DL loss on the logits): " + _OTHER_LOGIT
    )


class FGSMSettings(GradientSettings, DLFields):
    """Settings of ``fgsm``: one full-budget gradient step away from the clean action."""

    loss: Distance = Field(
        "mse",
        description="distance from the clean action (continuous "
        "policies): 'mse', 'mae' or 'huber' (delta 1)",
    )
    reference: Reference = Field("squashed", description=_REFERENCE)
    random_start: AutoFlag = Field(False, description=_RANDOM_START_AUTO)


class PGDFields(GradientSettings):
    """The PGD optimiser's settings (the authors' myPGD by default)."""

    step_size: StepSize = Field(
        0.01, description="initial step, in budget units (linf: the per-feature sign step)"
    )
    iterations: Iterations = Field(100, description="number of gradient steps")
    random_start: AutoFlag = Field(False, description=_RANDOM_START)
    decay_every: DecayEvery = Field(
        25, description="multiply the step by decay_rate every this many iterations (0 = never)"
    )
    decay_rate: DecayRate = Field(0.5, description="step decay factor, in (0, 1]")
    decay_schedule: Schedule = Field(
        "authors",
        description="'authors': decay after iterations 0, k, 2k, ... as the authors' "
        "loop does (0.01 once, then 0.005 x25, ...); 'standard': after k, 2k, ...",
    )


class PGDSettings(PGDFields, DLFields):
    """Settings of ``pgd``: untargeted PGD (difference of logits / distance from the clean
    action)."""

    loss: Distance = Field(
        "mse",
        description="distance from the clean action (continuous policies): 'mse' (the "
        "authors' MSELoss; their MAE and Huber runs gave identical perturbations), 'mae' or "
        "'huber' (delta 1)",
    )
    reference: Reference = Field("squashed", description=_REFERENCE)
    random_start: AutoFlag = Field(False, description=_RANDOM_START_AUTO)


class TargetedSettings(PGDFields, DLFields):
    """Settings of ``targeted_pgd``: PGD toward a target action or bin."""

    target: Target = Field(
        None,
        validate_default=True,
        description="the target: an action "
        "(array or number), a bin index for discrete policies, or a callable "
        "t -> target of the time step (required)",
    )
    loss: Distance = Field(
        "mse",
        description="distance to the target (continuous policies): "
        "'mse', 'mae' or 'huber' (delta 1)",
    )


class BifurcationSettings(PGDFields):
    """Settings of ``bifurcation``: the bifurcation layer + GDL loss (Broda-Milian et al. 2024)."""

    other_logit: OtherLogit = Field(
        "zero",
        description="GDL on the two group logits, "
        + _OTHER_LOGIT.replace("label's own logit", "label's own group logit")
        + "; with continuous groups [a, -a] and one action dimension both give the same sign "
        "steps",
    )

    split: Split = Field(
        None,
        description="discrete policies: first action bin of the upper group (null = n_bins // 2)",
    )
    m1: Finite = Field(1.0, description="continuous policies: slope of group 0's logit m1 a + b1")
    b1: Finite = Field(0.0, description="continuous policies: offset of group 0's logit")
    m2: Finite = Field(-1.0, description="continuous policies: slope of group 1's logit m2 a + b2")
    b2: Finite = Field(0.0, description="continuous policies: offset of group 1's logit")


class ToggleSettings(BifurcationSettings):
    """Settings of ``bifurcation_toggle``: GDL whose group alternates with the time step t."""

    toggle_start: ToggleStart = Field(
        "away",
        description="the phase of the toggle: 'away' (the authors' white-box toggle: at even t "
        "the GDL is maximised for group 0, i.e. it pushes away from group 0, at odd t away from "
        "group 1; their label [1, 0] fed to the untargeted loss) or 'toward' (rlkit's former "
        "toggle: at even t it pulls toward group 0, at odd t toward group 1)",
    )


class MADSettings(PGDFields):
    """Settings of ``mad``: maximise the KL between the clean and the perturbed policy."""

    log_std: Finite = Field(
        0.0,
        description="continuous policies: log standard deviation of "
        "the Gaussian policy the KL assumes",
    )
    random_start: AutoFlag = Field(
        True, description=_RANDOM_START + " (the KL has zero gradient at delta = 0)"
    )


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """The settings of ``model`` with their defaults, in field order.

    :param model: a settings model.
    """
    return {name: field.default for name, field in model.model_fields.items()}


def allowed_message(error: Mapping[str, Any]) -> str:
    """``"setting 'x': given V; allowed: ..."`` for one pydantic error of a settings model.

    :param error: an item of ``ValidationError.errors()``.
    """
    name = ".".join(str(p) for p in error.get("loc", ())) or "(settings)"
    msg = error.get("msg", "invalid")
    if not msg.startswith("allowed: "):
        msg = f"allowed: {msg[0].lower() + msg[1:]}" if msg else "invalid"
    return f"setting {name!r}: given {error.get('input')!r}; {msg}"
