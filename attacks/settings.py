"""Typed settings of the named attacks: one pydantic model per attack.

Each model's fields are the attack's settings: the field descriptions are their help text, the
defaults follow the authors' code (their myPGD: 100 sign steps from 0.01, halved every 25), and
invalid values are rejected with ``"allowed: ..."`` messages.  ``extra="forbid"`` rejects
unknown settings.  :func:`rlkit.attacks.attacks.settings_model` maps attack names to these
models; ``attack_settings`` and ``validate_settings`` are derived from them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from .engines import AUTO_MLP_MAX_BATCH, ENGINES
from .losses import DISTANCES
from .optim import DECAY_SCHEDULES

ACTION_KINDS = ("continuous", "discrete")


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
    "start from a uniform point of the budget instead of delta = 0; null = "
    "auto: random for continuous policies (the distance from the clean action "
    "has zero gradient at delta = 0), none for discrete ones"
)
_RANDOM_START = "start from a uniform point of the budget instead of delta = 0"


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
        description="sample U[0, eps) instead of U(-eps, eps) "
        "(the paper's positive-only noise; linf only)",
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


class FGSMSettings(GradientSettings):
    """Settings of ``fgsm``: one full-budget gradient step away from the clean action."""

    loss: Distance = Field(
        "mse",
        description="distance from the clean action (continuous "
        "policies): 'mse', 'mae' or 'huber' (delta 1)",
    )
    random_start: AutoFlag = Field(None, description=_RANDOM_START_AUTO)


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
    clip_in_loop: Flag = Field(
        True,
        description="clip to the observation bounds at every "
        "iteration; false: only at the end, as the authors' code",
    )


class PGDSettings(PGDFields):
    """Settings of ``pgd``: untargeted PGD (difference of logits / distance from the clean
    action)."""

    loss: Distance = Field(
        "mse",
        description="distance from the clean action (continuous "
        "policies): 'mse', 'mae' or 'huber' (delta 1)",
    )
    random_start: AutoFlag = Field(None, description=_RANDOM_START_AUTO)


class TargetedSettings(PGDFields):
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

    split: Split = Field(
        None,
        description="discrete policies: first action bin of the upper group (null = n_bins // 2)",
    )
    m1: Finite = Field(1.0, description="continuous policies: slope of group 0's logit m1 a + b1")
    b1: Finite = Field(0.0, description="continuous policies: offset of group 0's logit")
    m2: Finite = Field(-1.0, description="continuous policies: slope of group 1's logit m2 a + b2")
    b2: Finite = Field(0.0, description="continuous policies: offset of group 1's logit")


class ToggleSettings(BifurcationSettings):
    """Settings of ``bifurcation_toggle``: GDL toward the group t mod 2."""


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
