"""DiscreteActionWrapper mapping."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlkit.envs.grid import GridBatteryEnv
from rlkit.envs.wrappers import DiscreteActionWrapper


def test_single_battery_discrete_20_bins():
    env = DiscreteActionWrapper(
        GridBatteryEnv(profiles="synthetic", numba=False, battery_buses=[17], pv_buses=[17]),
        bins=20,
    )
    assert env.action_space == gym.spaces.Discrete(20)
    np.testing.assert_allclose(env.action(0), [-1.0])
    np.testing.assert_allclose(env.action(19), [1.0])
    np.testing.assert_allclose(env.action(10), [-1 + 20 / 19])
    np.testing.assert_allclose(env.levels(), np.linspace(-1, 1, 20))
    env.reset(seed=0, options={"start_day": 0})
    _, _, _, _, info = env.step(19)
    np.testing.assert_allclose(info["battery_p_mw"], [0.3])
    with pytest.raises(ValueError):
        env.action(20)


def test_multi_battery_multidiscrete_and_custom_bounds():
    env = DiscreteActionWrapper(GridBatteryEnv(profiles="synthetic", numba=False), bins=5)
    assert env.action_space == gym.spaces.MultiDiscrete([5] * 4)
    np.testing.assert_allclose(env.action([0, 1, 2, 4]), [-1.0, -0.5, 0.0, 1.0])
    box = gym.make("Pendulum-v1")  # Box(-2, 2, (1,))
    w = DiscreteActionWrapper(box, bins=3)
    np.testing.assert_allclose(w.action(1), [0.0])
    np.testing.assert_allclose(w.action(2), [2.0])
    with pytest.raises(ValueError):
        DiscreteActionWrapper(gym.make("CartPole-v1"))
