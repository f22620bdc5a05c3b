"""Observation attacks: budgets, losses, the bifurcation layer, optimisers, named attacks and
gymnasium wrappers.

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
    attack_settings,
    frozen_policy,
    make_attack,
    validate_settings,
)
from .bifurcation import Bifurcation, bifurcate_continuous, bifurcate_discrete
from .budget import NORMS, AttackBudget, BoundBudget
from .losses import (
    action_distance,
    categorical_kl,
    difference_of_logits,
    gaussian_kl,
    group_difference_logits,
)
from .optim import fgsm, pgd, step_schedule
from .wrappers import AttackedObservation, AttackedVectorObservation

__all__ = [
    "ACTION_KINDS",
    "ATTACKS",
    "NORMS",
    "Attack",
    "AttackBudget",
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
    "step_schedule",
]
