"""Tests for the gymnasium attack wrappers."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch import nn

from rlkit.attacks import (
    AttackBudget,
    AttackedObservation,
    AttackedVectorObservation,
    make_attack,
)


class CounterEnv(gym.Env):
    """Tiny Box env: obs = [step / 10, 0.5, 0.5]; episodes last ``length`` steps."""

    def __init__(self, length: int = 3) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.t / 10, 0.5, 0.5], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {"source": "reset"}

    def step(self, action: Any):
        self.t += 1
        return self._obs(), 1.0, self.t >= self.length, False, {"source": "step"}


class RecordingAttack:
    """Adds 0.01 to every feature and records the time steps it was called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], list[int]]] = []

    def __call__(self, obs: torch.Tensor, t: Any = None) -> torch.Tensor:
        ts = [int(t)] if isinstance(t, int) else torch.as_tensor(t).tolist()
        self.calls.append((tuple(obs.shape), ts))
        return obs + 0.01


def test_single_env_records_and_time_steps() -> None:
    attack = RecordingAttack()
    env = AttackedObservation(CounterEnv(length=2), attack)
    obs, info = env.reset(seed=0)
    assert info["source"] == "reset"
    np.testing.assert_allclose(info["clean_obs"], [0.0, 0.5, 0.5])
    np.testing.assert_allclose(obs, [0.01, 0.51, 0.51], rtol=1e-6)
    np.testing.assert_array_equal(obs, info["perturbed_obs"])
    assert obs.dtype == np.float32
    assert info["distortion_linf"] == pytest.approx(0.01, rel=1e-4)
    assert info["distortion_l2"] == pytest.approx(0.01 * np.sqrt(3), rel=1e-4)
    _, _, term, _, info = env.step(np.zeros(1))
    assert info["source"] == "step" and not term
    np.testing.assert_allclose(info["clean_obs"], [0.1, 0.5, 0.5])
    _, _, term, _, _ = env.step(np.zeros(1))
    assert term
    env.reset()
    assert [c[1] for c in attack.calls] == [[0], [1], [2], [0]]
    assert all(c[0] == (1, 3) for c in attack.calls)


def test_single_env_pendulum_with_bifurcation_attack() -> None:
    env = gym.make("Pendulum-v1")
    space = env.observation_space
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    budget = AttackBudget(0.05, low=space.low, high=space.high)
    env = AttackedObservation(env, make_attack("bifurcation", policy, budget, iterations=10))
    obs, info = env.reset(seed=1)
    for _ in range(5):
        assert space.contains(obs)
        assert info["distortion_linf"] <= 0.05 + 1e-6
        with torch.no_grad():
            action = policy(torch.as_tensor(obs)[None]).numpy()[0].clip(-2, 2)
        obs, _, _, _, info = env.step(action)
    env.close()


def test_vector_env_next_step_counters_and_infos() -> None:
    attack = RecordingAttack()
    venv = SyncVectorEnv([lambda: CounterEnv(2), lambda: CounterEnv(3)])
    env = AttackedVectorObservation(venv, attack)
    obs, info = env.reset(seed=0)
    assert obs.shape == (2, 3)
    assert info["distortion_linf"].shape == (2,) and info["_distortion_linf"].all()
    assert info["clean_obs"].shape == (2, 3)
    for _ in range(5):
        obs, _, _, _, info = env.step(np.zeros((2, 1), dtype=np.float32))
        np.testing.assert_allclose(obs, info["clean_obs"] + 0.01, rtol=1e-6)
    ts = [c[1] for c in attack.calls]
    # env 0: 0 1 2(done) 0(reset obs) 1 2 ; env 1: 0 1 2 3(done) 0 1
    assert ts == [[0, 0], [1, 1], [2, 2], [0, 3], [1, 0], [2, 1]]
    assert all(c[0] == (2, 3) for c in attack.calls)  # one call per step for all envs
    # the counters match the env's own step counter in the clean observations
    assert np.allclose(info["clean_obs"][:, 0] * 10, ts[-1])
    env.close()


def test_vector_env_same_step_autoreset() -> None:
    attack = RecordingAttack()
    venv = SyncVectorEnv([lambda: CounterEnv(2)], autoreset_mode=AutoresetMode.SAME_STEP)
    env = AttackedVectorObservation(venv, attack)
    env.reset(seed=0)
    for _ in range(4):
        env.step(np.zeros((1, 1), dtype=np.float32))
    assert [c[1] for c in attack.calls] == [[0], [1], [0], [1], [0]]
    env.close()


def test_vector_cartpole_discrete_pgd() -> None:
    venv = SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(3)])
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    space = venv.single_observation_space
    budget = AttackBudget(0.1, norm="l2", low=space.low, high=space.high)
    attack = make_attack("pgd", policy, budget, action_kind="discrete", iterations=5)
    env = AttackedVectorObservation(venv, attack)
    obs, info = env.reset(seed=0)
    for _ in range(20):
        assert np.all(info["distortion_l2"] <= 0.1 + 1e-5)
        with torch.no_grad():
            actions = policy(torch.as_tensor(obs)).argmax(1).numpy()
        obs, _, _, _, info = env.step(actions)
        assert obs.shape == (3, 4) and info["perturbed_obs"].shape == (3, 4)
        assert all(space.contains(o) for o in obs)
    env.close()


class ImageCounterEnv(CounterEnv):
    """CounterEnv with uint8 frames (2, 3, 3) filled with ``10 * step``."""

    def __init__(self, length: int = 3) -> None:
        super().__init__(length)
        self.observation_space = gym.spaces.Box(0, 255, (2, 3, 3), np.uint8)

    def _obs(self) -> np.ndarray:
        return np.full((2, 3, 3), 10 * self.t, dtype=np.uint8)


def test_vector_env_image_observations() -> None:
    attack = RecordingAttack()
    env = AttackedVectorObservation(SyncVectorEnv([lambda: ImageCounterEnv(3)] * 2), attack)
    obs, info = env.reset(seed=0)
    assert obs.shape == (2, 2, 3, 3) and obs.dtype == np.float32
    assert info["clean_obs"].dtype == np.uint8 and attack.calls[0][0] == (2, 2, 3, 3)
    obs, *_, info = env.step(np.zeros((2, 1), np.float32))
    np.testing.assert_allclose(obs, 10.01, rtol=1e-6)
    np.testing.assert_allclose(info["distortion_linf"], [0.01, 0.01], rtol=1e-4)
    l2_all_pixels = [0.01 * np.sqrt(18)] * 2
    np.testing.assert_allclose(info["distortion_l2"], l2_all_pixels, rtol=1e-4)
    env.close()


def test_vector_env_single_episode_attacks_each_env_during_one_episode() -> None:
    attack = RecordingAttack()
    env = AttackedVectorObservation(
        SyncVectorEnv([lambda: CounterEnv(2), lambda: CounterEnv(3)]), attack, single_episode=True
    )
    obs, info = env.reset(seed=0)
    assert env.active.tolist() == [True, True]
    actions = np.zeros((2, 1), np.float32)
    obs, _, term, _, info = env.step(actions)  # t = 1 for both
    obs, _, term, _, info = env.step(actions)  # env 0 ends: its final obs is not attacked
    assert term.tolist() == [True, False] and env.active.tolist() == [False, True]
    assert info["_perturbed_obs"].tolist() == [False, True]
    assert info["_distortion_linf"].tolist() == [False, True]
    np.testing.assert_array_equal(obs[0], info["clean_obs"][0])  # passed through: [0.2, 0.5, 0.5]
    np.testing.assert_allclose(obs[0], [0.2, 0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(obs[1], [0.21, 0.51, 0.51], rtol=1e-6)
    assert info["distortion_linf"][0] == 0.0
    obs, _, term, _, info = env.step(actions)  # env 0 autoresets (not attacked), env 1 ends
    assert env.active.tolist() == [False, False] and not info["_perturbed_obs"].any()
    env.step(actions)
    # calls: both at t=0,1; then only env 1 at t=2; none afterwards
    assert attack.calls == [((2, 3), [0, 0]), ((2, 3), [1, 1]), ((1, 3), [2])]
    env.reset(seed=1)  # a reset starts the next episode of every env
    assert env.active.tolist() == [True, True] and attack.calls[-1] == ((2, 3), [0, 0])
    env.close()


def test_vector_env_disabled_autoreset_masked_reset() -> None:
    """A masked reset restarts only the masked counters and attacks only those envs; the others
    keep the perturbed observation they already had."""
    attack = RecordingAttack()
    venv = SyncVectorEnv(
        [lambda: CounterEnv(1), lambda: CounterEnv(3)], autoreset_mode=AutoresetMode.DISABLED
    )
    env = AttackedVectorObservation(venv, attack)
    env.reset(seed=0)
    obs, _, term, _, info = env.step(np.zeros((2, 1), np.float32))
    assert term.tolist() == [True, False]
    before = obs.copy()
    mask = np.array([True, False])
    obs, info = env.reset(options={"reset_mask": mask})
    assert attack.calls[-1] == ((1, 3), [0])  # only env 0, at its t = 0
    assert env.step_index.tolist() == [0, 1]
    assert info["_perturbed_obs"].tolist() == [True, False]
    np.testing.assert_allclose(obs[0], [0.01, 0.51, 0.51], rtol=1e-6)
    np.testing.assert_array_equal(obs[1], before[1])
    env.step(np.zeros((2, 1), np.float32))
    assert attack.calls[-1] == ((2, 3), [1, 2])
    env.close()
