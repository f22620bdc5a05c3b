"""The plug-in contract for attacks: a toy attack defined here, registered with one line, run by
``rlkit evaluate --attack`` like any built-in (settings typed, validated with file and key)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field

from rlkit.attacks import Attack
from rlkit.catalog import register_attack
from rlkit.cli import main
from rlkit.registry import ATTACKS
from rlkit.train import train


class ShiftSettings(BaseModel):
    """Settings of :class:`ShiftAttack`."""

    model_config = ConfigDict(extra="forbid")
    direction: float = Field(
        1.0, ge=-1.0, le=1.0, description="fraction of eps added to every feature"
    )
    action_kind: str = Field("continuous", description="filled in from the policy view")


class ShiftAttack(Attack):
    """Adds ``direction * eps`` to every unmasked feature (then projects and clips)."""

    settings_model = ShiftSettings

    def perturb(self, obs: torch.Tensor, t: torch.Tensor | None, bound) -> torch.Tensor:  # noqa: ANN001
        return bound.clip(obs + self.settings["direction"] * bound.eps_vec, obs)


if (
    "shift" not in ATTACKS
):  # the one registration line (guarded: test modules may be imported twice)
    register_attack("shift", ShiftAttack, "adds a constant fraction of eps (plug-in test)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin_attack")
    data = {
        "env": {"id": "Pendulum-v1", "max_episode_steps": 30},
        "agent": {
            "name": "drqv2",
            "net_arch": [16],
            "kwargs": {"num_expl_steps": 20, "batch_size": 8},
        },
        "train": {
            "total_steps": 60,
            "eval_every": 0,
            "checkpoint_every": 0,
            "replay_size": 100,
            "progress": False,
        },
        "eval": {"episodes": 1},
        "run": {"dir": str(folder / "run"), "tensorboard": False},
    }
    path = folder / "drq.yaml"
    path.write_text(yaml.safe_dump(data))
    return train(path).path


def attack_file(folder: Path, attacks: list[dict]) -> Path:
    path = folder / "attacks.yaml"
    path.write_text(
        yaml.safe_dump(
            {"attack": {"eps": [0.05], "episodes": 2, "stealth": False, "attacks": attacks}}
        )
    )
    return path


def test_registered_and_class_path_attacks_run_through_evaluate(run_dir, tmp_path):
    attacks = [
        {"name": "shift", "settings": {"direction": 1.0}},
        {
            "name": "tests.attacks.test_plugin_attack:ShiftAttack",
            "label": "by_path",
            "settings": {"direction": -0.5},
        },
    ]
    out = tmp_path / "out"
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                "--attack",
                str(attack_file(tmp_path, attacks)),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    with (out / "results.csv").open() as handle:
        rows = {r["attack"]: r for r in csv.DictReader(handle)}
    # Pendulum's angular velocity (bound 8) is never clipped: the shift reaches the full budget
    assert float(rows["shift"]["linf_max"]) == pytest.approx(0.05, rel=1e-5)
    assert float(rows["by_path"]["linf_max"]) == pytest.approx(0.025, rel=1e-5)
    assert float(rows["shift"]["action_mae"]) > 0


def test_plugin_attack_settings_are_validated(run_dir, tmp_path, capsys):
    path = attack_file(tmp_path, [{"name": "shift", "settings": {"direction": 3}}])
    capsys.readouterr()
    assert (
        main(["evaluate", str(run_dir), "--attack", str(path), "--out", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err
    assert "attack.attacks.0.settings.direction" in err and "less than or equal to 1" in err
    assert not (tmp_path / "o").exists()
