"""Meta-World v3 pixel and state envs (``env.id: metaworld/<task>``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rlkit  # noqa: F401  (fills the registry)
from rlkit.catalog import check_env
from rlkit.config import ConfigError, EnvConfig, ExperimentConfig
from rlkit.envs import make_env
from rlkit.envs.metaworld import METAWORLD_TASKS, MetaWorldEnv, make_metaworld_env


def _actions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 4)).astype(np.float32)


def test_task_list_matches_metaworld():
    import metaworld

    assert sorted(f"{t}-v3" for t in METAWORLD_TASKS) == sorted(metaworld.ALL_V3_ENVIRONMENTS)


def test_pixels_stack_success_key_and_fast_renderer_image():
    env = make_env(EnvConfig(id="metaworld/reach"))
    try:
        assert env.observation_space.shape == (9, 84, 84)
        assert env.action_space.shape == (4,) and env.action_space.dtype == np.float32
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.uint8 and (obs[:3] == obs[6:]).all() and obs.std() > 1
        obs, _, _, _, info = env.step(_actions(1)[0])
        assert isinstance(info["success"], bool)
        np.testing.assert_array_equal(obs[-3:], env.render().transpose(2, 0, 1))
    finally:
        env.close()


def test_state_variant_and_action_repeat_sum():
    actions = _actions(3)
    raw = MetaWorldEnv("reach", pixels=False)
    obs, _ = raw.reset(seed=2)
    assert obs.shape == (39,) and obs.dtype == np.float32
    expected = [raw.step(a)[1] + raw.step(a)[1] for a in actions]
    raw.close()
    env = make_metaworld_env("reach", pixels=False)
    env.reset(seed=2)
    got = [env.step(a)[1] for a in actions]
    env.close()
    np.testing.assert_allclose(got, expected)


def test_deterministic_given_seed_and_actions():
    actions = _actions(4, seed=3)

    def rollout(env: gym.Env, seed: int) -> np.ndarray:
        obs, _ = env.reset(seed=seed)
        for a in actions:
            obs, *_ = env.step(a)
        return obs

    used, fresh = (make_metaworld_env("reach", pixels=False) for _ in range(2))
    other = rollout(used, 5)  # a previous episode must not change the next one's goal
    np.testing.assert_array_equal(rollout(used, 4), rollout(fresh, 4))
    assert not np.array_equal(rollout(fresh, 4), other)
    used.close()
    fresh.close()


def test_episode_is_250_agent_steps_with_success_kpi():
    env = make_metaworld_env("reach", pixels=False, episode_steps=250)
    env.reset(seed=0)
    zero = np.zeros(4, dtype=np.float32)
    steps, done, info = 0, False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(zero)
        steps += 1
        done = terminated or truncated
    env.close()
    assert steps == 250 and truncated and not terminated
    assert info["episode_kpis"]["success"] in (0.0, 1.0)


def test_bad_task_names():
    with pytest.raises(ConfigError, match="did you mean 'metaworld/reach'"):
        check_env(ExperimentConfig(env={"id": "metaworld/reac"}, agent={"name": "sac"}), "t")
    with pytest.raises(ValueError, match="allowed: assembly"):
        MetaWorldEnv("reach-v3")
