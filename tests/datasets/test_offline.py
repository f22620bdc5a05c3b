"""OfflineDataset: a DataSource sampling Batches of stored transitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlkit.batch import DataSource
from rlkit.datasets import OfflineDataset, Transitions


def toy(n: int = 50, obs_dtype: type = np.float32) -> Transitions:
    rng = np.random.default_rng(1)
    obs = (np.arange(n * 3).reshape(n, 3) % 200).astype(obs_dtype)
    terminals = np.zeros(n, dtype=bool)
    terminals[9::10] = True
    return Transitions(
        obs,
        rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        (obs + 1).astype(obs_dtype),
        terminals,
        np.zeros(n, dtype=bool),
        {"source": "toy"},
    )


def test_sample_shapes_dtypes_and_discounts() -> None:
    data = toy()
    source = OfflineDataset(data, gamma=0.9)
    assert isinstance(source, DataSource) and len(source) == 50
    batch = source.sample(64, np.random.default_rng(0))
    assert batch.obs.shape == batch.next_obs.shape == (64, 3)
    assert batch.action.shape == (64, 2)
    assert batch.reward.shape == batch.discount.shape == batch.extras["terminated"].shape == (64, 1)
    for tensor in (batch.obs, batch.action, batch.reward, batch.discount, batch.next_obs):
        assert tensor.dtype == torch.float32
    index = np.random.default_rng(0).integers(0, 50, 64)  # drawn once, exactly so
    np.testing.assert_array_equal(batch.obs.numpy(), data.observations[index])
    np.testing.assert_array_equal(batch.next_obs.numpy(), data.next_observations[index])
    np.testing.assert_array_equal(batch.action.numpy(), data.actions[index])
    np.testing.assert_array_equal(batch.reward.numpy()[:, 0], data.rewards[index])
    terminal = data.terminals[index]
    assert terminal.any() and not terminal.all()
    np.testing.assert_array_equal(batch.extras["terminated"].numpy()[:, 0], terminal)
    np.testing.assert_allclose(batch.discount.numpy()[:, 0], np.where(terminal, 0.0, 0.9))


def test_sampling_is_determined_by_the_generator() -> None:
    source = OfflineDataset(toy())
    a = source.sample(32, np.random.default_rng(7))
    b = source.sample(32, np.random.default_rng(7))
    c = source.sample(32, np.random.default_rng(8))
    assert torch.equal(a.obs, b.obs) and torch.equal(a.reward, b.reward)
    assert not torch.equal(a.obs, c.obs)
    rng = np.random.default_rng(3)
    source.sample(5, rng)
    expected = np.random.default_rng(3)
    expected.integers(0, 50, 5)
    assert rng.integers(1 << 30) == expected.integers(1 << 30)  # one draw, nothing else


def test_reward_scale_shift_and_zero_rewards() -> None:
    data = toy()
    rng = np.random.default_rng(0)
    index = np.random.default_rng(0).integers(0, 50, 16)
    scaled = OfflineDataset(data, reward_scale=2.5, reward_shift=-1.0).sample(16, rng)
    np.testing.assert_allclose(scaled.reward.numpy()[:, 0], data.rewards[index] * 2.5 - 1.0, 1e-6)
    zero = OfflineDataset(data, reward_scale=2.5, zero_rewards=True).sample(16, rng)
    assert torch.count_nonzero(zero.reward) == 0


def test_uint8_observations_stay_uint8() -> None:
    batch = OfflineDataset(toy(obs_dtype=np.uint8)).sample(8, np.random.default_rng(0))
    assert batch.obs.dtype == batch.next_obs.dtype == torch.uint8
    assert batch.action.dtype == torch.float32


def test_tensors_are_built_once_and_do_not_alias_the_arrays() -> None:
    data = toy()
    source = OfflineDataset(data)
    data.observations[:] = -1.0
    assert float(source.obs.min()) >= 0.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gamma"):
        OfflineDataset(toy(), gamma=1.5)
    empty = toy().select_episodes([])
    with pytest.raises(ValueError, match="no rows"):
        OfflineDataset(empty)
