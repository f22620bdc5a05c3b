"""DeepMind Control pixel and state envs (``env.id: dmc/<domain>-<task>``)."""

from __future__ import annotations

import numpy as np
import pytest

import rlkit  # noqa: F401  (fills the registry)
from rlkit.catalog import check_env
from rlkit.config import ConfigError, EnvConfig, ExperimentConfig
from rlkit.envs import make_env
from rlkit.envs.dmc import DMC_TASKS, DMCEnv, make_dmc_env
from rlkit.loops.online import env_attr


def _actions(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, dim)).astype(np.float32)


def test_task_list_matches_dm_control():
    from dm_control import suite

    assert list(DMC_TASKS) == [f"{d}-{t}" for d, t in suite.ALL_TASKS]


def test_pixels_shape_stack_and_fast_renderer_image():
    env = make_env(EnvConfig(id="dmc/cartpole-swingup", max_episode_steps=600))
    try:
        assert env.observation_space.shape == (9, 84, 84)
        assert env.action_space.dtype == np.float32
        assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
        # the replay finds the stack through make_env's TimeLimit
        assert env_attr(env, "frame_stack", 1) == 3
        assert env_attr(env, "frame_shape", None) == (3, 84, 84)
        obs, _ = env.reset(seed=3)
        assert obs.dtype == np.uint8 and obs.shape == (9, 84, 84)
        assert (obs[:3] == obs[3:6]).all() and (obs[3:6] == obs[6:]).all()
        assert obs.std() > 1  # an image, not a blank buffer
        obs, *_ = env.step(_actions(1, 1)[0])
        np.testing.assert_array_equal(obs[-3:], env.render().transpose(2, 0, 1))
        assert not (obs[-3:] == obs[:3]).all()  # the pole moved
    finally:
        env.close()


def test_state_variant_dimension_and_dtype():
    env = make_dmc_env("cartpole-swingup", pixels=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,) and obs.dtype == np.float32  # position 3 + velocity 2
    assert env.observation_space.shape == (5,)
    env.close()


def test_action_repeat_sums_two_raw_steps():
    actions = _actions(4, 1)
    raw = DMCEnv("cartpole-swingup", pixels=False)
    raw.reset(seed=5)
    expected = []
    for a in actions:
        expected.append(raw.step(a)[1] + raw.step(a)[1])
    env = make_dmc_env("cartpole-swingup", pixels=False, action_repeat=2)
    env.reset(seed=5)
    got = [env.step(a)[1] for a in actions]
    np.testing.assert_allclose(got, expected)
    assert max(got) > 0


def test_deterministic_given_seed_and_actions():
    actions = _actions(5, 1, seed=1)

    def rollout(seed: int) -> tuple[np.ndarray, list[float]]:
        env = make_dmc_env("cartpole-swingup")
        obs, _ = env.reset(seed=seed)
        rewards = []
        for a in actions:
            obs, reward, *_ = env.step(a)
            rewards.append(float(reward))
        env.close()
        return obs, rewards

    first, again, other = rollout(7), rollout(7), rollout(8)
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1]
    assert not np.array_equal(first[0], other[0])


def test_episode_is_500_agent_steps_and_truncated():
    env = make_dmc_env("cartpole-balance", pixels=False)
    env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
        steps += 1
    assert steps == 500 and truncated and not terminated


def test_quadruped_defaults_to_camera_2():
    env = DMCEnv("quadruped-walk", pixels=True)
    assert env._camera == 2
    env.close()


def test_bad_names_and_params_are_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'dmc/cartpole-swingup'"):
        check_env(ExperimentConfig(env={"id": "dmc/cartpole-swingupp"}, agent={"name": "sac"}), "t")
    bad = ExperimentConfig(
        env={"id": "dmc/cartpole-swingup", "kwargs": {"pixel": 1}}, agent={"name": "sac"}
    )
    with pytest.raises(ConfigError, match="pixel"):
        check_env(bad, "t")
    with pytest.raises(ValueError, match="allowed: acrobot-swingup"):
        DMCEnv("cartpole-jump")


def test_evaluation_video_has_one_frame_per_step_plus_reset(tmp_path):
    import imageio.v2 as imageio

    from rlkit.evaluation import evaluate

    env = make_env(EnvConfig(id="dmc/cartpole-swingup", max_episode_steps=5))
    try:
        result = evaluate(
            env, lambda obs: np.zeros((len(obs), 1), np.float32), 2, 0, tmp_path / "eval_0"
        )
    finally:
        env.close()
    assert result["length_mean"] == 5
    (video,) = tmp_path.iterdir()  # the first episode only
    assert video.stem == "eval_0" and video.suffix in (".mp4", ".gif")
    frames = imageio.mimread(video)
    assert len(frames) == 6 and np.asarray(frames[0]).shape[:2] == (84, 84)
