"""`agent.init_from`: a new run starts from another run's final policy (fine-tuning)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from rlkit.cli import main
from rlkit.loading import load_run
from rlkit.train import train


def _config(folder: Path, name: str, agent: dict, total_steps: int) -> Path:
    data = {
        "env": {"id": "Pendulum-v1"},
        "agent": agent,
        "train": {
            "total_steps": total_steps,
            "eval_every": 0,
            "checkpoint_every": 0,
            "progress": False,
        },
        "eval": {"episodes": 1},
        "run": {"dir": str(folder / name), "tensorboard": False},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "agent",
    [
        {"name": "drqv2", "net_arch": [16], "kwargs": {"num_expl_steps": 50, "batch_size": 16}},
        {"name": "sac", "net_arch": [16, 16], "kwargs": {"learning_starts": 50, "batch_size": 16}},
    ],
    ids=["drqv2", "sac"],
)
def test_init_from_starts_at_the_source_policy(tmp_path: Path, agent: dict):
    train(_config(tmp_path, "source", agent, 120))
    # no updates happen in the new run (exploration / learning_starts beyond its length)
    frozen = {
        **agent,
        "init_from": str(tmp_path / "source"),
        "kwargs": {
            **agent["kwargs"],
            "num_expl_steps" if agent["name"] == "drqv2" else "learning_starts": 10_000,
        },
    }
    train(_config(tmp_path, "tuned", frozen, 30))
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32)
    source, tuned = load_run(tmp_path / "source"), load_run(tmp_path / "tuned")
    np.testing.assert_allclose(tuned.act(obs), source.act(obs), atol=1e-6)
    fresh = {**frozen, "init_from": None}
    train(_config(tmp_path, "fresh", fresh, 30))
    assert not np.allclose(load_run(tmp_path / "fresh").act(obs), source.act(obs), atol=1e-3)


def test_init_from_a_missing_run_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = _config(tmp_path, "tuned", {"name": "sac", "init_from": str(tmp_path / "nope")}, 10)
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "agent.init_from" in err and "nope" in err
    assert not (tmp_path / "tuned").exists()


def test_init_from_an_sb3_zip_starts_at_its_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # e.g. fine-tuning the bifurcation authors' released PPO: only the zip's policy tensors
    agent = {
        "name": "sac",
        "net_arch": [16, 16],
        "kwargs": {"learning_starts": 50, "batch_size": 16},
    }
    train(_config(tmp_path, "source", agent, 120))
    zips = sorted((tmp_path / "source" / "final").glob("*.zip"))
    assert zips, "the run saves an SB3 zip"
    frozen = {
        **agent,
        "init_from": str(zips[0]),
        "kwargs": {**agent["kwargs"], "learning_starts": 10_000},
    }
    train(_config(tmp_path, "tuned", frozen, 30))
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32)
    source, tuned = load_run(tmp_path / "source"), load_run(tmp_path / "tuned")
    np.testing.assert_allclose(tuned.act(obs), source.act(obs), atol=1e-6)
    wide = {**frozen, "net_arch": [32, 32]}
    assert main(["train", str(_config(tmp_path, "wide", wide, 30))]) == 2
    assert "does not fit" in capsys.readouterr().err
    drq = {"name": "drqv2", "net_arch": [16], "init_from": str(zips[0])}
    assert main(["train", str(_config(tmp_path, "drq", drq, 30))]) == 2
    assert "SB3 agents only" in capsys.readouterr().err
