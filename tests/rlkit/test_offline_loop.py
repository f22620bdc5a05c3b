"""The offline loop end to end: a D4RL-format file -> O-DICE / BC run -> resume -> evaluation
and attacks on the offline policy, plus the config checks of offline agents."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch

from rlkit.cli import main
from rlkit.config import ConfigError, load_config
from rlkit.loading import load_run
from rlkit.train import train

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "offline" / "odice_pendulum.yaml"
SMALL = [
    "agent.kwargs.policy_hidden=[32,32]",
    "agent.kwargs.batch_size=64",
    "train.eval_every=0",
    "train.checkpoint_every=100",
    "train.log_every=50",
    "train.progress=false",
    "eval.episodes=2",
    "run.tensorboard=false",
]


def write_pendulum_file(path: Path, episodes: int = 4, seed: int = 0) -> Path:
    """A D4RL-format file of random Pendulum-v1 episodes (200 steps, ended by timeouts)."""
    env = gym.make("Pendulum-v1")
    env.action_space.seed(seed)
    rows: dict[str, list] = {k: [] for k in ("observations", "actions", "rewards", "timeouts")}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = env.action_space.sample()
            next_obs, reward, terminated, truncated, _ = env.step(action)
            for key, value in zip(rows, (obs, action, reward, truncated), strict=True):
                rows[key].append(value)
            obs, done = next_obs, terminated or truncated
    with h5py.File(path, "w") as handle:
        for key, values in rows.items():
            handle[key] = np.asarray(values, dtype=bool if key == "timeouts" else np.float32)
        handle["terminals"] = np.zeros(len(rows["rewards"]), dtype=bool)
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pendulum_file(tmp_path_factory.mktemp("data") / "pendulum.hdf5")


def overrides(data: Path, run: Path, steps: int, agent: str = "odice") -> list[str]:
    return [
        f"dataset.path={data}",
        f"run.dir={run}",
        f"train.total_steps={steps}",
        f"agent.name={agent}",
        *SMALL,
        *(["agent.kwargs.value_hidden=[32,32]"] if agent == "odice" else []),
    ]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "final" / "agent.pt", weights_only=True)["policy"]


def test_odice_trains_from_a_d4rl_file_and_resumes_exactly(data_file: Path, tmp_path: Path) -> None:
    straight = train(CONFIG, overrides(data_file, tmp_path / "straight", 200))
    train(CONFIG, overrides(data_file, tmp_path / "split", 100))
    resumed = train(CONFIG, overrides(data_file, tmp_path / "split", 200))
    for key, value in weights(straight.path).items():
        assert torch.equal(value, weights(resumed.path)[key]), key
    result = json.loads((straight.path / "eval.json").read_text())
    assert result["step"] == 200 and result["episodes"] == 2
    assert -2000 < result["return_mean"] < 0  # Pendulum returns are negative
    header = (straight.path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/value_loss", "train/policy_loss", "train/parallel_coef"} <= set(header)
    assert "time/updates_per_s" in header


def test_bc_runs_on_the_same_loop(data_file: Path, tmp_path: Path) -> None:
    run = train(CONFIG, overrides(data_file, tmp_path / "bc", 100, agent="bc"))
    loaded = load_run(run.path)
    obs = np.zeros((3, 3), dtype=np.float32)
    actions = loaded.act(obs)
    assert actions.shape == (3, 1) and np.all(np.abs(actions) <= 2.0)
    # the differentiable view gives the same action as the agent
    assert np.allclose(loaded.view.act(torch.as_tensor(obs)).numpy(), actions, atol=1e-6)


def test_offline_policy_is_attacked_like_any_other(data_file: Path, tmp_path: Path) -> None:
    run = train(CONFIG, overrides(data_file, tmp_path / "attacked", 100))
    attack = tmp_path / "attack.yaml"
    attack.write_text(
        "attack:\n  attacks: [{name: random}, {name: pgd, settings: {iterations: 3}}]\n"
        "  eps: [0.5]\n  episodes: 1\n  stealth: false\n"
    )
    out = tmp_path / "out"
    assert main(["evaluate", str(run.path), "--attack", str(attack), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    text = json.dumps(results)
    assert "pgd" in text and "random" in text


def test_offline_config_errors(data_file: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="key 'dataset' is required"):
        load_config(None, data={"env": {"id": "Pendulum-v1"}, "agent": {"name": "odice"}})
    with pytest.raises(ConfigError, match="learns online"):
        load_config(
            None,
            data={"dataset": {"path": "x", "env": "Pendulum-v1"}, "agent": {"name": "sac"}},
        )
    with pytest.raises(ConfigError, match="differs from env.id"):
        load_config(
            None,
            data={
                "env": {"id": "CartPole-v1"},
                "dataset": {"path": "x", "env": "Pendulum-v1"},
                "agent": {"name": "bc"},
            },
        )
    missing = tmp_path / "missing.hdf5"
    code = main(["train", str(CONFIG), *overrides(missing, tmp_path / "none", 10)])
    err = capsys.readouterr().err
    assert code == 2 and "missing.hdf5" in err and "Traceback" not in err
