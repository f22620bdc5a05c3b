"""Adversarial training: the training-time attack follows the live policy, its probability and
start are honoured, and a run trains end to end on attacked observations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.env_util import make_vec_env

from rlkit.agents.sb3 import SB3Agent
from rlkit.attacks import AttackBudget, make_attack
from rlkit.config import (
    AdversarialConfig,
    AgentConfig,
    ConfigError,
    EnvConfig,
    ExperimentConfig,
    load_config,
)
from rlkit.envs import make_env
from rlkit.loops.adversarial import AdversarialVecEnv, LiveAttack
from rlkit.loops.common import TrainLoop
from rlkit.train import train

EPS = 0.3
ADVERSARIAL = {"attack": {"name": "pgd", "settings": {"iterations": 5}}, "eps": EPS}


def pendulum() -> Any:
    return make_env(EnvConfig(id="Pendulum-v1"))


def sac_agent(seed: int = 0) -> SB3Agent:
    venv = make_vec_env(
        lambda: pendulum(),
        n_envs=1,
        seed=seed,
    )
    config = AgentConfig(name="sac", net_arch=[16], kwargs={"learning_starts": 10})
    return SB3Agent("SAC", config, env=venv, seed=seed, total_steps=100)


def test_the_live_attack_follows_the_current_weights() -> None:
    agent = sac_agent()
    live = LiveAttack(AdversarialConfig(**ADVERSARIAL), seed=0)
    live.bind(agent, pendulum())
    obs = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (16, 3)), dtype=torch.float32)
    before = live.attack(obs).clone()
    with torch.no_grad():  # training moves the weights on
        for p in agent.model.actor.parameters():
            p.add_(torch.randn_like(p))
    after = live.attack(obs)
    assert not torch.allclose(before, after)
    # the same as an attack built now on a frozen copy of the current weights
    budget = AttackBudget(EPS, low=[-1, -1, -8], high=[1, 1, 8])
    fresh = make_attack("pgd", agent.policy_view(live=False), budget, iterations=5)
    torch.testing.assert_close(after, fresh(obs))
    assert all(p.requires_grad for p in agent.model.actor.parameters())  # restored after a call


@pytest.mark.parametrize(("probability", "start"), [(0.5, 0), (1.0, 60), (0.0, 0)])
def test_probability_and_start_step_are_honoured(probability: float, start: int) -> None:
    agent = sac_agent()
    config = AdversarialConfig(**ADVERSARIAL, probability=probability, start_step=start)
    live = LiveAttack(config, seed=1)
    venv = AdversarialVecEnv(
        make_vec_env(
            lambda: make_env(
                ExperimentConfig(env={"id": "Pendulum-v1"}, agent={"name": "sac"}).env
            ),
            n_envs=4,
            seed=0,
        ),
        live,
    )
    live.bind(agent, pendulum())
    venv.reset()
    for _ in range(99):
        venv.step(np.zeros((4, 1), dtype=np.float32))
    attackable = venv.steps - start
    assert venv.steps == 400
    assert venv.attacked_steps == pytest.approx(probability * attackable, abs=0.1 * attackable + 1)


def test_a_run_trains_on_attacked_observations(tmp_path: Path) -> None:
    captured: dict[str, Any] = {}
    original = TrainLoop.run_all

    def spy(loop: TrainLoop) -> Any:
        captured["loop"] = loop
        return original(loop)

    config = ExperimentConfig.model_validate(
        {
            "env": {"id": "Pendulum-v1", "max_episode_steps": 50},
            "agent": {"name": "sac", "net_arch": [16], "kwargs": {"learning_starts": 20}},
            "train": {
                "total_steps": 100,
                "eval_every": 0,
                "checkpoint_every": 0,
                "progress": False,
            },
            "eval": {"episodes": 1},
            "run": {"dir": str(tmp_path / "run"), "tensorboard": False},
            "adversarial": {**ADVERSARIAL, "probability": 1.0},
        }
    )
    TrainLoop.run_all = spy  # type: ignore[method-assign]
    try:
        train(None, config=config)
    finally:
        TrainLoop.run_all = original  # type: ignore[method-assign]
    venv = captured["loop"].venv
    assert isinstance(venv, AdversarialVecEnv)
    assert venv.attacked_steps == venv.steps >= 100
    buffer = captured["loop"].agent.model.replay_buffer
    stored = buffer.observations[: buffer.pos, 0]
    # the stored (attacked) observations are not unit-circle points any more: cos^2 + sin^2 != 1
    radius = stored[:, 0] ** 2 + stored[:, 1] ** 2
    assert np.abs(radius - 1).max() > 0.05


def test_adversarial_config_errors_name_the_key(tmp_path: Path, write_config: Any) -> None:
    data = {
        "env": {"id": "Pendulum-v1"},
        "agent": {"name": "sac"},
        "run": {"dir": str(tmp_path / "run")},
        "adversarial": {"attack": {"name": "pgdd"}, "eps": 0.1},
    }
    with pytest.raises(ConfigError, match="'adversarial.attack.name'.*did you mean 'pgd'"):
        load_config(write_config(data))
    data["adversarial"] = {"attack": {"name": "pgd", "settings": {"iters": 3}}, "eps": 0.1}
    with pytest.raises(ConfigError, match="adversarial.attack.settings"):
        load_config(write_config(data))
    data["adversarial"] = {"attack": {"name": "pgd"}, "eps": 0.1, "probability": 2}
    with pytest.raises(ConfigError, match="adversarial.probability"):
        load_config(write_config(data))


def test_an_adversarial_run_resumes(tmp_path: Path) -> None:
    from rlkit.rundir import RunDir, read_meta

    data = {
        "env": {"id": "Pendulum-v1", "max_episode_steps": 50},
        "agent": {"name": "sac", "net_arch": [16], "kwargs": {"learning_starts": 20}},
        "train": {"total_steps": 100, "eval_every": 0, "checkpoint_every": 50, "progress": False},
        "eval": {"episodes": 1},
        "run": {"dir": str(tmp_path / "run"), "tensorboard": False},
        "adversarial": {**ADVERSARIAL, "probability": 0.5},
    }
    train(None, config=ExperimentConfig.model_validate(data))
    data["train"] = {**data["train"], "total_steps": 200}
    train(None, config=ExperimentConfig.model_validate(data))
    run = RunDir(tmp_path / "run")
    assert [read_meta(f)["step"] for f in run.checkpoint_dirs()][-1] == 200
    assert read_meta(run.final)["step"] == 200


# ---------------------------------------------------------------------------------------------
# the native online loop (drqv2, mentor)


def native_config(folder: Path, total: int) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "env": {"id": "Pendulum-v1", "max_episode_steps": 25},  # step 40 falls mid-episode
            "agent": {
                "name": "drqv2",
                "net_arch": [16],
                "kwargs": {"num_expl_steps": 20, "batch_size": 8, "update_every_steps": 1},
            },
            "train": {
                "total_steps": total,
                "eval_every": 0,
                "checkpoint_every": 40,
                "replay_size": 200,
                "progress": False,
            },
            "eval": {"episodes": 1},
            "run": {"dir": str(folder), "tensorboard": False},
            "adversarial": {**ADVERSARIAL, "probability": 0.5, "start_step": 10},
        }
    )


def stored_observations(loop: Any) -> np.ndarray:
    batch = loop.buffer.sample(len(loop.buffer), np.random.default_rng(0))
    return batch.obs.numpy()


def test_the_online_loop_stores_what_the_attack_showed_the_agent(
    tmp_path: Path, train_loop
) -> None:
    loop = train_loop(native_config(tmp_path / "run", 80))
    obs = stored_observations(loop)
    radius = obs[:, 0] ** 2 + obs[:, 1] ** 2
    off_circle = np.abs(radius - 1) > 1e-4  # attacked observations leave the unit circle
    assert 0.25 < off_circle.mean() < 0.75  # about half of them, after step 10
    assert np.abs(obs[:, :2]).max() <= 1 + 1e-6  # inside the observation bounds


def test_an_online_adversarial_run_resumes_exactly(tmp_path: Path, train_loop) -> None:
    straight = train_loop(native_config(tmp_path / "straight", 80))
    train_loop(native_config(tmp_path / "resumed", 40))
    resumed = train_loop(native_config(tmp_path / "resumed", 80))
    for name, tensor in straight.agent.state_dict()["actor"].items():
        assert torch.equal(tensor, resumed.agent.state_dict()["actor"][name]), name
    np.testing.assert_array_equal(stored_observations(straight), stored_observations(resumed))


def test_online_adversarial_training_refuses_stacked_frames(tmp_path: Path) -> None:
    from rlkit.loops.online import OnlineLoop

    class Stacked:
        frame_stack = 3

    loop = OnlineLoop.__new__(OnlineLoop)
    loop.config, loop.buffer = native_config(tmp_path, 10), Stacked()
    with pytest.raises(ValueError, match="adversarial: .* stacks 3 frames"):
        loop._live_attack()
