"""ATLA: the alternation schedule, one run directory with both models, attacks with its adversary,
and resuming mid-alternation."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rlkit.attacks.evaluation import evaluate_attacks
from rlkit.config import AttackConfig, ExperimentConfig
from rlkit.loading import load_run
from rlkit.loops.atla import ATLALoop
from rlkit.rundir import RunDir, read_meta
from rlkit.train import train

VICTIM_STEPS, ADVERSARY_STEPS, EPS = 64, 40, 0.1
TOTAL = 2 * (VICTIM_STEPS + ADVERSARY_STEPS)


def atla_config(run_dir: Path, **train: Any) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "env": {"id": "Pendulum-v1", "max_episode_steps": 30},
            "agent": {
                "name": "atla",
                "kwargs": {
                    "victim": {
                        "name": "ppo",
                        "net_arch": [16],
                        "kwargs": {"n_steps": 32, "batch_size": 32, "n_epochs": 1},
                    },
                    "adversary": {
                        "name": "sac",
                        "net_arch": [16],
                        "kwargs": {"learning_starts": 10, "batch_size": 16},
                    },
                    "victim_steps": VICTIM_STEPS,
                    "adversary_steps": ADVERSARY_STEPS,
                    "perturbation": "box",
                    "eps": EPS,
                },
            },
            "train": {
                "total_steps": TOTAL,
                "eval_every": 0,
                "checkpoint_every": 0,
                "progress": False,
                **train,
            },
            "eval": {"episodes": 1},
            "run": {"dir": str(run_dir), "tensorboard": False},
        }
    )


@pytest.fixture(scope="module")
def atla_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("atla") / "run"
    train(None, config=atla_config(run, checkpoint_every=20, keep_checkpoints=20))
    return run


def counters(folder: Path) -> tuple[int, int]:
    """(victim, adversary) env steps saved in a checkpoint or final folder."""
    from rlkit.io import load_torch

    victim = load_torch(folder / "victim" / "agent.pt")["counters"]["num_timesteps"]
    adversary = load_torch(folder / "adversary" / "agent.pt")["counters"]["num_timesteps"]
    return int(victim), int(adversary)


def test_phases_alternate_victim_first_with_cumulative_targets() -> None:
    loop = ATLALoop.__new__(ATLALoop)
    loop.config = atla_config(Path("unused"))
    loop.params = type("P", (), {**loop.config.agent.kwargs, "adversary_first": False})()
    assert list(loop.phases()) == [
        ("victim", 64),
        ("adversary", 40),
        ("victim", 128),
        ("adversary", 80),
    ]
    loop.params.adversary_first = True
    assert [who for who, _ in loop.phases()][:2] == ["adversary", "victim"]


def test_the_schedule_is_honoured_in_the_saved_counters(atla_run: Path) -> None:
    run = RunDir(atla_run)
    steps = []
    for folder in run.checkpoint_dirs():
        victim, adversary = counters(folder)
        assert read_meta(folder)["step"] == victim + adversary  # the run's step: both together
        steps.append((victim, adversary))
    # every checkpoint sits in a victim phase (the adversary at a phase end, the victim between
    # its last and next targets) or in an adversary phase (the victim at its target)
    for victim, adversary in steps:
        in_victim_phase = (
            adversary % ADVERSARY_STEPS == 0
            and adversary // ADVERSARY_STEPS * VICTIM_STEPS
            <= victim
            <= (adversary // ADVERSARY_STEPS + 1) * VICTIM_STEPS
        )
        k = victim // VICTIM_STEPS
        in_adversary_phase = (
            victim % VICTIM_STEPS == 0
            and (k - 1) * ADVERSARY_STEPS < adversary <= k * ADVERSARY_STEPS
        )
        assert in_victim_phase or in_adversary_phase, (victim, adversary)
    assert len({v for v, _ in steps}) > 2 and len({a for _, a in steps}) > 2
    assert counters(atla_run / "final") == (128, 80)
    with (atla_run / "metrics.csv").open() as handle:
        keys = next(csv.reader(handle))
    assert any(k.startswith("victim/") for k in keys) and any(
        k.startswith("adversary/") for k in keys
    )


def test_the_run_holds_both_models_and_its_adversary_attacks(atla_run: Path) -> None:
    final = atla_run / "final"
    for name in ("victim", "adversary"):
        assert (final / name / "sb3_model.zip").is_file()
    saved = json.loads((final / "perturbation.json").read_text())
    assert saved["perturbation"] == "box" and saved["eps"] == EPS
    loaded = load_run(atla_run)  # the victim, like any run
    assert loaded.view.action_kind == "continuous"
    config = AttackConfig(
        attacks=[{"name": "learned", "settings": {"adversary": str(atla_run)}}],
        eps=[EPS],
        episodes=1,
        stealth=False,
    )
    out = evaluate_attacks(loaded.make_env, loaded.view, config, seed=0, progress=False)
    assert 0 < out["rows"][0]["linf_max"] <= EPS + 1e-6


def test_a_run_resumes_mid_alternation(atla_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(atla_run, run)
    shutil.rmtree(run / "final")
    folders = RunDir(run).checkpoint_dirs()
    # keep a checkpoint inside the first adversary phase, drop the later ones
    inside = [f for f in folders if counters(f)[0] >= VICTIM_STEPS and 0 < counters(f)[1] < 40]
    assert inside, [counters(f) for f in folders]
    keep = inside[0]
    for folder in folders:
        if folder.name > keep.name:
            shutil.rmtree(folder)
    victim_before, adversary_before = counters(keep)
    train(None, config=atla_config(run, checkpoint_every=20, keep_checkpoints=20))
    assert counters(run / "final") == (128, 80)
    resumed = [counters(f) for f in RunDir(run).checkpoint_dirs() if f.name > keep.name]
    # the first checkpoint after the resume is still in the same adversary phase (the victim
    # did not restart its phase)
    assert resumed[0][0] == victim_before and resumed[0][1] > adversary_before
    assert np.isfinite(json.loads((run / "eval.json").read_text())["return_mean"])


@pytest.mark.parametrize(
    "path",
    [
        "configs/grid/atla.yaml",
        "configs/citylearn/atla.yaml",
        "configs/citylearn/atla_cpu.yaml",
        "configs/grid/learned_adversary.yaml",
    ],
)
def test_shipped_robust_training_configs_validate(path: str) -> None:
    from rlkit.config import load_config

    config = load_config(path)
    if config.agent.name == "atla":
        kwargs = config.agent.kwargs
        assert kwargs["victim"]["name"] == "ppo" and kwargs["adversary"]["name"] == "sac"
    else:
        assert config.env.id == "adversary" and config.env.kwargs["mask"] == ["calendar"]


@pytest.mark.parametrize(
    "path",
    [
        "configs/grid/ppo_adversarial.yaml",
        "configs/grid/ppo_sa.yaml",
        "configs/citylearn/ppo_discrete_adversarial.yaml",
        "configs/citylearn/ppo_discrete_sa.yaml",
    ],
)
def test_shipped_adversarial_and_sa_configs_validate(path: str) -> None:
    from rlkit.config import load_config

    config = load_config(path)
    if config.adversarial is not None:
        assert config.adversarial.attack.name == "bifurcation" and config.adversarial.eps == 0.05
    else:
        kwargs = config.agent.kwargs
        assert config.agent.name == "rlkit.agents.sa:SAPPO" and kwargs["sa_kappa"] == 0.1
        calendar = 6 if "citylearn" in path else 5
        assert kwargs["sa_scale"][:calendar] == [0.0] * calendar
        assert set(kwargs["sa_scale"][calendar:]) == {1.0}


def test_the_victim_can_start_from_an_sb3_zip(atla_run: Path, tmp_path: Path) -> None:
    # agent.init_from: ZIP (e.g. the authors' released PPO) gives the ATLA victim its policy
    zip_path = atla_run / "final" / "victim" / "sb3_model.zip"
    loop = ATLALoop(atla_config(tmp_path / "tuned"), RunDir(tmp_path / "tuned"))
    loop.build()
    loop.init_from(str(zip_path))
    obs = np.random.default_rng(0).uniform(-1, 1, (8, 3)).astype(np.float32)
    np.testing.assert_allclose(loop.agent.act(obs), load_run(atla_run).act(obs), atol=1e-6)
