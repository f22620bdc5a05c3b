"""Observation attacks: budgets, losses, the bifurcation layer, optimisers, engines (autograd,
compiled, MLP), named attacks and gymnasium wrappers.

    from rlkit.attacks import AttackBudget, make_attack, AttackedObservation
    budget = AttackBudget.from_groups(0.03, {"calendar": slice(0, 6)}, 31, mask_groups=["calendar"],
                                      low=0.0, high=1.0)
    attack = make_attack("bifurcation", policy, budget, action_kind="discrete")
    env = AttackedObservation(env, attack)
"""

from .attacks import (
    ACTION_KINDS,
    ATTACKS,
    Attack,
    GradientAttack,
    attack_settings,
    frozen_policy,
    make_attack,
    settings_model,
    validate_settings,
)
from .bifurcation import Bifurcation, bifurcate_continuous, bifurcate_discrete
from .budget import NORMS, AttackBudget, BoundBudget
from .engines import (
    AUTO_MLP_MAX_BATCH,
    ENGINES,
    AttackTask,
    AutogradEngine,
    CompiledEngine,
    CompileUnavailable,
    Engine,
    MLPEngine,
)
from .losses import (
    OutputLoss,
    action_distance,
    categorical_kl,
    difference_of_logits,
    gaussian_kl,
    group_difference_logits,
)
from .optim import Optimiser, fgsm, pgd, step_schedule
from .wrappers import AttackedObservation, AttackedVectorObservation

__all__ = [
    "ACTION_KINDS",
    "ATTACKS",
    "AUTO_MLP_MAX_BATCH",
    "ENGINES",
    "NORMS",
    "Attack",
    "AttackBudget",
    "AttackTask",
    "AutogradEngine",
    "CompileUnavailable",
    "CompiledEngine",
    "Engine",
    "GradientAttack",
    "MLPEngine",
    "Optimiser",
    "OutputLoss",
    "AttackedObservation",
    "AttackedVectorObservation",
    "Bifurcation",
    "BoundBudget",
    "action_distance",
    "attack_settings",
    "validate_settings",
    "bifurcate_continuous",
    "bifurcate_discrete",
    "categorical_kl",
    "difference_of_logits",
    "fgsm",
    "frozen_policy",
    "gaussian_kl",
    "group_difference_logits",
    "make_attack",
    "pgd",
    "settings_model",
    "step_schedule",
]
