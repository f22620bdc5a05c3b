"""SA regularisation: the regulariser against a hand computation, PPO unchanged at kappa 0, a
run from a config by class path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from rlkit.agents.sa import SAPPO, sa_regularizer
from rlkit.config import ExperimentConfig
from rlkit.train import train

EPS = 0.1


def linear_ppo(env_id: str = "Pendulum-v1", **kwargs: object) -> SAPPO:
    """A PPO whose action mean is linear in the observation (no hidden layer)."""
    return SAPPO(
        "MlpPolicy",
        env_id,
        policy_kwargs={"net_arch": []},
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        seed=0,
        **kwargs,  # type: ignore[arg-type]
    )


def set_linear_gaussian(model: SAPPO, w: list[float], sigma: float) -> None:
    policy = model.policy
    with torch.no_grad():
        policy.action_net.weight.copy_(torch.tensor([w]))
        policy.action_net.bias.zero_()
        policy.log_std.fill_(float(np.log(sigma)))


def hand_sgld(w: np.ndarray, start: np.ndarray, radius: np.ndarray, steps: int) -> np.ndarray:
    """SA-PPO's sign steps on ((w . delta) / sigma)^2, by hand (the noise is negligible here)."""
    step = radius / steps
    delta = np.sign(start) * step
    for _ in range(steps):
        grad = 2 * (delta @ w)[:, None] * w  # d/d delta of (w . delta)^2 (sigma > 0 drops out)
        delta = np.clip(delta + np.sign(grad) * step, -radius, radius)
    return delta


@pytest.mark.parametrize("scale", [None, [1.0, 0.0, 0.5]])
def test_gaussian_regularizer_equals_a_hand_computation(scale: list[float] | None) -> None:
    model = linear_ppo()
    w, sigma = np.array([1.0, -2.0, 0.5]), 0.5
    set_linear_gaussian(model, list(w), sigma)
    obs = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (8, 3)), dtype=torch.float32)
    scale_t = None if scale is None else torch.tensor(scale)
    value = sa_regularizer(model.policy, obs, EPS, 10, scale_t, torch.Generator().manual_seed(0))
    start = torch.randn((8, 3), generator=torch.Generator().manual_seed(0)).numpy()
    radius = EPS * (np.ones(3) if scale is None else np.array(scale))
    delta = hand_sgld(w, start, radius, 10)
    expected = np.mean(((delta @ w) / sigma) ** 2)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-5)
    # never above the box's true maximum, (eps * sum |w_i| scale_i / sigma)^2
    assert float(value.detach()) <= (np.abs(w) @ radius / sigma) ** 2 + 1e-6


def test_categorical_regularizer_is_the_kl_near_the_best_corner() -> None:
    model = linear_ppo("CartPole-v1")
    net = model.policy.action_net
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 1.5], [-0.5, 1.0, 2.0, -1.0]]))
    obs = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (16, 4)), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    value = float(sa_regularizer(model.policy, obs, EPS, 10, None, gen).detach())
    # two actions: the KL grows with the change of the logit difference, so the box's maximum is
    # at a corner along d = w1 - w0; the sign steps end at least 0.9 eps along it
    with torch.no_grad():
        d = torch.sign(net.weight[1] - net.weight[0])
        log_p = torch.log_softmax(net(obs), -1).detach()

        def kl(x: torch.Tensor) -> torch.Tensor:
            return (log_p.exp() * (log_p - torch.log_softmax(net(x), -1))).sum(-1)

        def best(r: float) -> float:
            return float(torch.maximum(kl(obs + r * d), kl(obs - r * d)).mean())

    assert best(0.8 * EPS) < value <= best(EPS) + 1e-7


def test_kappa_zero_is_ppo_bit_for_bit() -> None:
    # each model seeds the global RNGs when built: build and train one after the other
    sa = linear_ppo(sa_kappa=0.0)
    sa.learn(128)
    plain = PPO(
        "MlpPolicy",
        "Pendulum-v1",
        policy_kwargs={"net_arch": []},
        n_steps=64,
        batch_size=32,
        n_epochs=2,
        seed=0,
    )
    plain.learn(128)
    for a, b in zip(sa.policy.parameters(), plain.policy.parameters(), strict=True):
        assert torch.equal(a, b)
    penalised = linear_ppo(sa_kappa=1.0)
    penalised.learn(128)
    moved = any(
        not torch.equal(a, b)
        for a, b in zip(penalised.policy.parameters(), plain.policy.parameters(), strict=True)
    )
    assert moved


def test_sappo_trains_from_a_config_by_class_path(tmp_path: Path) -> None:
    config = ExperimentConfig.model_validate(
        {
            "env": {"id": "Pendulum-v1", "max_episode_steps": 50},
            "agent": {
                "name": "rlkit.agents.sa:SAPPO",
                "net_arch": [16],
                "kwargs": {
                    "n_steps": 64,
                    "batch_size": 32,
                    "n_epochs": 1,
                    "sa_kappa": 0.5,
                    "sa_eps": 0.1,
                },
            },
            "train": {
                "total_steps": 128,
                "eval_every": 0,
                "checkpoint_every": 0,
                "progress": False,
            },
            "eval": {"episodes": 1},
            "run": {"dir": str(tmp_path / "run"), "tensorboard": False},
        }
    )
    train(None, config=config)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train/sa_regularizer" in header
    assert (tmp_path / "run" / "final" / "sb3_model.zip").is_file()


def test_sasac_kappa_zero_is_sac_and_the_penalty_moves_the_actor() -> None:
    from stable_baselines3 import SAC

    from rlkit.agents.sa import SASAC

    common = {
        "policy_kwargs": {"net_arch": [8]},
        "learning_starts": 16,
        "batch_size": 16,
        "seed": 0,
    }
    runs = {}
    for name, cls, extra in [
        ("sa0", SASAC, {"sa_kappa": 0.0}),
        ("sac", SAC, {}),
        ("sa1", SASAC, {"sa_kappa": 10.0, "sa_eps": 0.5}),
    ]:
        model = cls("MlpPolicy", "Pendulum-v1", **common, **extra)  # type: ignore[arg-type]
        model.learn(48)
        runs[name] = [p.detach().clone() for p in model.actor.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(runs["sa0"], runs["sac"], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(runs["sa1"], runs["sac"], strict=True))


def test_actor_divergence_is_the_squared_change_of_the_squashed_action() -> None:
    from stable_baselines3 import SAC

    from rlkit.agents.sa import actor_divergence

    actor = SAC("MlpPolicy", "Pendulum-v1", policy_kwargs={"net_arch": [8]}, seed=0).actor
    obs = torch.rand(5, 3)
    moved = obs + 0.3
    with torch.no_grad():
        expected = ((actor(moved, deterministic=True) - actor(obs, deterministic=True)) ** 2).sum(
            -1
        )
        mean_moved = actor.get_action_dist_params(moved)[0]
        mean_clean = actor.get_action_dist_params(obs)[0]
    torch.testing.assert_close(actor_divergence(actor, obs, moved).detach(), expected)
    # Pendulum's action bound is 2 but the actor's action is the [-1, 1] tanh
    by_hand = ((torch.tanh(mean_moved) - torch.tanh(mean_clean)) ** 2).sum(-1)
    torch.testing.assert_close(expected, by_hand)


def test_a_sappo_run_resumes(tmp_path: Path) -> None:
    from rlkit.rundir import RunDir, read_meta

    data = {
        "env": {"id": "Pendulum-v1", "max_episode_steps": 50},
        "agent": {
            "name": "rlkit.agents.sa:SAPPO",
            "net_arch": [16],
            "kwargs": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "sa_kappa": 0.5},
        },
        "train": {"total_steps": 128, "eval_every": 0, "checkpoint_every": 64, "progress": False},
        "eval": {"episodes": 1},
        "run": {"dir": str(tmp_path / "run"), "tensorboard": False},
    }
    train(None, config=ExperimentConfig.model_validate(data))
    data["train"] = {**data["train"], "total_steps": 256}
    train(None, config=ExperimentConfig.model_validate(data))
    assert read_meta(RunDir(tmp_path / "run").final)["step"] == 256
