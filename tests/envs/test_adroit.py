"""Adroit hand envs (``env.id: adroit/<task>``), gymnasium-robotics on mujoco 3.3.0."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium_robotics")

import rlkit  # noqa: E402,F401  (fills the registry)
from rlkit.config import EnvConfig  # noqa: E402
from rlkit.envs import make_env  # noqa: E402
from rlkit.envs.adroit import GOAL_STEPS, AdroitEnv, make_adroit_env  # noqa: E402
from rlkit.loops.online import env_attr  # noqa: E402


def _actions(n: int, seed: int = 0, dim: int = 28) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, dim)).astype(np.float32)


def test_door_pixels_fused_with_24_dim_hand_state():
    env = make_env(EnvConfig(id="adroit/door"))
    try:
        spaces = env.observation_space
        assert spaces["pixels"].shape == (3, 84, 84) and spaces["state"].shape == (24,)
        assert env_attr(env, "frame_stack", None) == 1
        obs, _ = env.reset(seed=0)
        assert obs["pixels"].dtype == np.uint8 and obs["state"].dtype == np.float32
        qpos = env.unwrapped._env.unwrapped.data.qpos
        np.testing.assert_array_equal(obs["state"], qpos[4:28].astype(np.float32))
        obs, _, _, _, info = env.step(_actions(1)[0])
        np.testing.assert_array_equal(obs["pixels"], env.render().transpose(2, 0, 1))
        assert info["success"] is False and "goal_steps" in info
    finally:
        env.close()


def test_reward_rescale_and_action_repeat():
    actions = _actions(3, dim=26)
    raw = AdroitEnv("hammer", pixels=False, reward_rescale=False)
    raw.reset(seed=1)
    expected = [(raw.step(a)[1] + raw.step(a)[1]) / 100 for a in actions]
    raw.close()
    env = make_adroit_env("hammer", pixels=False)
    env.reset(seed=1)
    got = [env.step(a)[1] for a in actions]
    env.close()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_success_rule_counts_goal_steps():
    env = AdroitEnv("pen", pixels=False)
    env.reset(seed=0)
    env._goal_steps = GOAL_STEPS["pen"]  # one more goal step crosses the authors' threshold
    info = env.step(np.zeros(24, dtype=np.float32))[4]
    assert info["success"] == (info["goal_steps"] > 20)
    env.close()


def test_pen_episode_is_50_agent_steps_and_deterministic():
    def rollout() -> tuple[int, np.ndarray]:
        env = make_adroit_env("pen", pixels=False)
        obs, _ = env.reset(seed=3)
        steps = 0
        for a in _actions(60, dim=24):
            obs, _, terminated, truncated, info = env.step(a)
            steps += 1
            if terminated or truncated:
                break
        env.close()
        assert "episode_kpis" in info
        return steps, obs

    (steps, first), (_, again) = rollout(), rollout()
    assert steps == 50
    np.testing.assert_array_equal(first, again)


def test_frames_only_variant_is_a_uint8_box():
    env = make_adroit_env("door", hand_state=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 84, 84) and obs.dtype == np.uint8
    assert env.frame_stack == 1
    env.close()
