"""Typed attack settings: one pydantic model per attack, the source of the settings API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ValidationError

from rlkit.attacks import ATTACKS, AttackBudget, attack_settings, make_attack, settings_model
from rlkit.attacks.attacks import validate_settings

# the defaults, written out (the models must keep them): the authors' procedure
PGD = {
    "step_size": 0.01,
    "iterations": 100,
    "decay_every": 25,
    "decay_rate": 0.5,
    "decay_schedule": "authors",
    "clip": "end",
    "seed": None,
    "engine": "auto",
}
BIFURCATION = {
    "split": None,
    "m1": 1.0,
    "b1": 0.0,
    "m2": -1.0,
    "b2": 0.0,
    "other_logit": "zero",
}
DEFAULTS = {
    "random": {"action_kind": "continuous", "positive_only": False, "clip": "end", "seed": None},
    "fgsm": {
        "action_kind": "continuous",
        "loss": "mse",
        "reference": "squashed",
        "other_logit": "zero",
        "random_start": False,
        "clip": "end",
        "seed": None,
        "engine": "auto",
    },
    "pgd": {
        "action_kind": "continuous",
        "loss": "mse",
        "reference": "squashed",
        "other_logit": "zero",
        **PGD,
        "random_start": False,
    },
    "targeted_pgd": {
        "action_kind": "continuous",
        "target": None,
        "loss": "mse",
        "other_logit": "zero",
        **PGD,
        "random_start": False,
    },
    "bifurcation": {"action_kind": "continuous", **BIFURCATION, **PGD, "random_start": False},
    "bifurcation_toggle": {
        "action_kind": "continuous",
        **BIFURCATION,
        **PGD,
        "random_start": False,
        "toggle_start": "away",
    },
    "mad": {"action_kind": "continuous", "log_std": 0.0, **PGD, "random_start": True},
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_models_hold_the_defaults_and_help(name: str) -> None:
    model = settings_model(name)
    assert issubclass(model, BaseModel)
    assert model.model_config["extra"] == "forbid"
    assert attack_settings(name) == DEFAULTS[name]
    for field, info in model.model_fields.items():
        assert info.description and len(info.description) > 10, field
    schema = model.model_json_schema()  # what config-help renders
    assert set(schema["properties"]) == set(DEFAULTS[name])
    with pytest.raises(ValidationError):
        model.model_validate({"no_such_setting": 1})


def test_validate_settings_messages_name_the_setting_and_the_rule() -> None:
    cases = [
        ("pgd", {"iterations": 0}, "'iterations': given 0; allowed: an integer >= 1"),
        ("pgd", {"iterations": "3"}, "'iterations': given '3'; allowed: an integer"),
        ("pgd", {"step_size": float("inf")}, "'step_size'.*finite number > 0"),
        ("pgd", {"decay_rate": 0.0}, r"'decay_rate'.*\(0, 1\]"),
        ("pgd", {"engine": "fast"}, r"'engine'.*one of \['auto', 'autograd', 'compiled', 'mlp'\]"),
        ("pgd", {"clip": True}, r"'clip'.*one of \['end', 'none', 'every_step'\]"),
        ("pgd", {"clip_in_loop": True}, "'clip_in_loop'.*replaced by 'clip'"),
        ("pgd", {"other_logit": "inf"}, r"'other_logit'.*\['zero', 'neg_inf'\]"),
        ("pgd", {"reference": "clean"}, r"'reference'.*\['squashed', 'mean'\]"),
        ("bifurcation_toggle", {"toggle_start": 0}, r"'toggle_start'.*\['away', 'toward'\]"),
        ("pgd", {"random_start": "yes"}, "'random_start'.*true, false or null"),
        ("pgd", {"seed": -1}, "'seed'.*>= 0"),
        ("mad", {"log_std": "a"}, "'log_std'.*finite number"),
        ("targeted_pgd", {}, "'target'.*required"),
        ("bifurcation", {"split": 0}, "'split'.*>= 1"),
    ]
    for name, settings, match in cases:
        with pytest.raises(ValueError, match=match):
            validate_settings(name, settings)
    with pytest.raises(ValueError, match="did you mean 'decay_rate'"):
        validate_settings("pgd", {"decay_rat": 0.5})


def test_values_are_normalised_and_numpy_numbers_accepted() -> None:
    merged = validate_settings(
        "pgd",
        {
            "step_size": 1,
            "iterations": np.int64(7),
            "decay_rate": np.float32(0.25),
            "random_start": np.bool_(True),
        },
    )
    assert merged["step_size"] == 1.0 and isinstance(merged["step_size"], float)
    assert merged["iterations"] == 7 and type(merged["iterations"]) is int
    assert merged["random_start"] is True


def test_callable_and_array_targets_pass_through() -> None:
    def target(t: torch.Tensor) -> torch.Tensor:
        return t.float()

    assert validate_settings("targeted_pgd", {"target": target})["target"] is target
    array = np.array([0.1, -0.2])
    assert validate_settings("targeted_pgd", {"target": array})["target"] is array
    attack = make_attack(
        "targeted_pgd", torch.nn.Linear(2, 1), AttackBudget(0.1), target=target, iterations=2
    )
    attack(torch.zeros(3, 2), t=torch.arange(3))


def test_attack_classes_carry_their_models() -> None:
    policy = torch.nn.Linear(2, 2)
    for name in ATTACKS:
        extra = {"target": 0.0} if name == "targeted_pgd" else {}
        attack = make_attack(name, policy, AttackBudget(0.1), **extra)
        assert type(attack).settings_model is settings_model(name)
        assert set(attack.settings) == set(DEFAULTS[name])
