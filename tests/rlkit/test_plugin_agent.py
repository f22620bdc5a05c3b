"""The plug-in contract for agents: a toy agent defined here, registered with one line, trained,
resumed and evaluated through the CLI like any built-in agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import yaml
from torch import nn

from rlkit.agent import Agent, UpdateSchedule
from rlkit.batch import Batch
from rlkit.catalog import register_agent
from rlkit.cli import main
from rlkit.io import load_torch, save_torch
from rlkit.policy import PolicyView
from rlkit.registry import AGENTS


class ToyAgent:
    """A linear deterministic policy regressed toward the actions that earned above-mean reward.

    :param observation_space: Box observations.
    :param action_space: Box actions.
    :param lr: step size of the regression.
    :param batch_size: transitions per update.
    :param device: torch device.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        lr: float = 0.01,
        batch_size: int = 16,
        device: str = "cpu",
    ) -> None:
        self.policy = nn.Linear(
            int(np.prod(observation_space.shape)), int(np.prod(action_space.shape))
        )
        self.optimizer = torch.optim.SGD(self.policy.parameters(), lr=lr)
        self.low, self.high = action_space.low, action_space.high
        self.schedule = UpdateSchedule(batch_size=batch_size, every=5, start=20)
        self.episodes = 0

    def act(self, obs: np.ndarray, step: int, explore: bool) -> np.ndarray:
        with torch.no_grad():
            mean = torch.tanh(self.policy(torch.as_tensor(obs, dtype=torch.float32))).numpy()
        noise = np.random.uniform(-0.5, 0.5, mean.shape) if explore else 0.0
        return np.clip(mean + noise, -1, 1) * self.high

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        good = (batch.reward >= batch.reward.mean()).float()
        predicted = torch.tanh(self.policy(batch.obs.float())) * torch.as_tensor(self.high)
        loss = (good * (predicted - batch.action) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def policy_view(self, live: bool = False) -> PolicyView:
        return PolicyView(self.policy, "continuous", "tanh", self.low, self.high)

    def save(self, folder: Path) -> None:
        save_torch(
            folder / "toy.pt",
            {
                "policy": self.policy.state_dict(),
                "opt": self.optimizer.state_dict(),
                "episodes": self.episodes,
            },
        )

    def load(self, folder: Path, policy_only: bool = False) -> None:
        state = load_torch(folder / "toy.pt")
        self.policy.load_state_dict(state["policy"])
        if not policy_only:
            self.optimizer.load_state_dict(state["opt"])
            self.episodes = state["episodes"]

    def on_episode_end(self, info: dict[str, Any]) -> None:
        self.episodes += 1


if "toy" not in AGENTS:  # the one registration line (guarded: test modules may be imported twice)
    register_agent("toy", ToyAgent, "a linear toy agent (plug-in test)", action_spaces=("Box",))


def config(tmp_path: Path, name: str = "toy", steps: int = 120) -> Path:
    data = {
        "env": {"id": "Pendulum-v1", "max_episode_steps": 40},
        "agent": {"name": name, "learning_rate": 0.05, "kwargs": {"batch_size": 8}},
        "train": {
            "total_steps": steps,
            "eval_every": 60,
            "eval_episodes": 1,
            "checkpoint_every": 60,
            "log_every": 5,
            "replay_size": 1000,
            "progress": False,
        },
        "eval": {"episodes": 2},
        "run": {"dir": str(tmp_path / "run"), "tensorboard": False},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_toy_agent_conforms_to_the_protocol():
    agent = ToyAgent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,)))
    assert isinstance(agent, Agent)


def test_toy_agent_trains_resumes_and_evaluates_through_the_cli(tmp_path, capsys):
    path = config(tmp_path)
    assert main(["train", str(path), "train.total_steps=60"]) == 0
    assert main(["train", str(path)]) == 0  # resumes from step 60 to 120
    run = tmp_path / "run"
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "train/loss" in header and "eval/return_mean" in header
    steps = [int(r.split(",")[0]) for r in rows[1:]]
    assert steps == sorted(steps) and steps[-1] == 120
    assert (
        load_torch(run / "final" / "toy.pt")["episodes"] == 3
    )  # 120 steps of 40: resumed counters
    assert json.loads((run / "final" / "meta.json").read_text())["loop"] == "online"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--episodes", "2", "--out", str(tmp_path / "ev")]) == 0
    result = json.loads((tmp_path / "ev" / "eval.json").read_text())
    trained = json.loads((run / "eval.json").read_text())
    assert result["return_mean"] == trained["return_mean"]


def test_agent_by_class_path_needs_no_registration(tmp_path):
    path = config(tmp_path, name="tests.rlkit.test_plugin_agent:ToyAgent", steps=40)
    assert main(["train", str(path), "train.eval_every=0", "train.checkpoint_every=0"]) == 0
    assert (tmp_path / "run" / "final" / "toy.pt").is_file()


def test_toy_agent_kwargs_are_typed(tmp_path, capsys):
    path = config(tmp_path)
    capsys.readouterr()
    assert main(["train", str(path), "agent.kwargs.batch_sise=4"]) == 2
    err = capsys.readouterr().err
    assert "agent.kwargs.batch_sise" in err and "did you mean 'agent.kwargs.batch_size'" in err
    assert not (tmp_path / "run").exists()
    assert main(["config-help", "--agent", "toy"]) == 0
    assert (
        "agent.kwargs.batch_size (default 16): transitions per update." in capsys.readouterr().out
    )
