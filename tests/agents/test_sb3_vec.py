"""GymnasiumVecEnv: the batched grid env as a stable-baselines3 VecEnv (SAME_STEP autoreset)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from rlkit.agents.sb3_vec import GymnasiumVecEnv
from rlkit.envs.grid import GridBatteryEnv, GridBatteryVectorEnv

pytestmark = pytest.mark.filterwarnings(
    "ignore:The `render_mode` attribute is not defined:UserWarning"
)

KW = dict(profiles="synthetic", numba=False, episode_days=1, step_minutes=60, initial_soc_noise=0.2)
STEPS = 24  # one day of hourly steps


def test_reset_and_one_episode_match_seeded_single_envs():
    seed = 11
    venv = GymnasiumVecEnv(GridBatteryVectorEnv(2, **KW))
    envs = [GridBatteryEnv(**KW) for _ in range(2)]
    assert venv.num_envs == 2
    assert venv.observation_space == envs[0].observation_space
    assert venv.action_space == envs[0].action_space
    venv.seed(seed)  # SB3 convention: copy i gets seed + i
    obs = venv.reset()
    n_features = envs[0].observation_space.shape[0]
    assert obs.shape == (2, n_features) and obs.dtype == np.float32
    single = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    np.testing.assert_array_equal(obs, np.stack(single))
    assert venv._seeds == [None, None]  # seeds are used once

    rng = np.random.default_rng(0)
    totals = np.zeros(2)
    for step in range(1, STEPS + 1):
        actions = rng.uniform(-1, 1, (2, 4)).astype(np.float32)
        obs, rewards, dones, infos = venv.step(actions)
        assert rewards.dtype == np.float32 and rewards.shape == (2,) and dones.shape == (2,)
        totals += rewards
        expected_obs = []
        for i, env in enumerate(envs):
            o, r, _, truncated, _ = env.step(actions[i])
            assert rewards[i] == pytest.approx(r, rel=1e-6)
            assert truncated == (step == STEPS)
            if truncated:
                np.testing.assert_allclose(infos[i]["terminal_observation"], o, atol=1e-6)
                o, _ = env.reset()  # continues the copy's RNG, as the vector env's autoreset does
            expected_obs.append(o)
        if step < STEPS:
            assert not dones.any()
            assert infos == [{}, {}]
        else:
            assert dones.all()
            for i in range(2):
                info = infos[i]
                assert info["TimeLimit.truncated"] is True
                assert info["episode"]["l"] == STEPS
                assert info["episode"]["r"] == pytest.approx(totals[i], rel=1e-5)
                assert info["episode"]["t"] >= 0.0
                # the returned observation already starts the next episode
                assert not np.array_equal(obs[i], info["terminal_observation"])
        np.testing.assert_allclose(obs, np.stack(expected_obs), atol=1e-6)
    assert ((obs >= 0.0) & (obs <= 1.0)).all()

    # the episode counters restart: the next episode is again 24 steps
    for step in range(1, STEPS + 1):
        _, _, dones, infos = venv.step(np.zeros((2, 4), np.float32))
        assert dones.all() == (step == STEPS)
    assert [info["episode"]["l"] for info in infos] == [STEPS, STEPS]
    venv.close()


def test_vecenv_attribute_helpers():
    inner = GridBatteryVectorEnv(2, **KW)
    venv = GymnasiumVecEnv(inner)
    assert venv.get_attr("num_envs") == [2, 2]
    assert venv.get_attr("feature_names", indices=[1]) == [inner.feature_names]
    assert venv.env_is_wrapped(gym.Wrapper) == [False, False]
    venv.set_attr("custom_flag", 3)
    assert inner.custom_flag == 3
    venv.close()


def test_ppo_learns_on_the_vector_grid():
    import torch
    from stable_baselines3 import PPO

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        venv = GymnasiumVecEnv(GridBatteryVectorEnv(2, **KW))
        model = PPO(
            "MlpPolicy",
            venv,
            n_steps=32,
            batch_size=32,
            n_epochs=1,
            seed=0,
            device="cpu",
            policy_kwargs={"net_arch": [8]},
        )
        model.learn(64)
        assert model.num_timesteps >= 64
        # one 32-step rollout per env crosses the 24-step episode end: Monitor-style info is logged
        assert len(model.ep_info_buffer) >= 2
        assert all(info["l"] == STEPS for info in model.ep_info_buffer)
        venv.close()
    finally:
        torch.set_num_threads(before)


def test_construction_reads_render_mode_without_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        venv = GymnasiumVecEnv(GridBatteryVectorEnv(1, **KW))
    assert venv.render_mode is None


def test_next_step_autoreset_is_refused():
    venv = gym.vector.SyncVectorEnv(
        [lambda: gym.make("Pendulum-v1")], autoreset_mode=AutoresetMode.NEXT_STEP
    )
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    with pytest.raises(ValueError, match="SAME_STEP"):
        GymnasiumVecEnv(venv)
    venv.close()
