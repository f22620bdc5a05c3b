"""n-step replay buffer: known answers for sums, discounts, episode ends and wraparound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlkit.batch import Batch
from rlkit.replay import ReplayBuffer

GAMMA = 0.5


def fill(buffer: ReplayBuffer, rewards: list[float], ends: dict[int, str] | None = None, start: int = 0) -> None:
    """Add transitions ``i`` with obs=i, action=-i, next_obs=i+0.5 and reward ``rewards[i]``.

    :param ends: transition index -> "terminated" or "truncated".
    """
    ends = ends or {}
    for i, reward in enumerate(rewards, start=start):
        buffer.add(np.array([i], np.float32), np.array([-i], np.float32), reward, np.array([i + 0.5], np.float32),
                   ends.get(i) == "terminated", ends.get(i) == "truncated")


def by_first_obs(batch: Batch) -> dict[int, tuple[float, float, float]]:
    """{transition index: (reward, discount, next_obs)} from a sampled batch (obs identifies it)."""
    out: dict[int, tuple[float, float, float]] = {}
    for obs, reward, discount, next_obs in zip(batch.obs[:, 0], batch.reward[:, 0], batch.discount[:, 0], batch.next_obs[:, 0], strict=True):
        out[int(obs)] = (float(reward), float(discount), float(next_obs))
    return out


def sample_all(buffer: ReplayBuffer, n_step: int, seed: int = 0) -> dict[int, tuple[float, float, float]]:
    """Sample until every stored transition appeared as a batch start."""
    result = by_first_obs(buffer.sample(400, np.random.default_rng(seed), n_step=n_step, gamma=GAMMA))
    assert len(result) == len(buffer)
    return result


@pytest.fixture
def episodes() -> ReplayBuffer:
    """Episode A: 0,1,2 (2 terminated); episode B: 3,4 (4 truncated); episode C: 5 (ongoing)."""
    buffer = ReplayBuffer(10, (1,), (1,))
    fill(buffer, [1, 2, 3, 4, 5, 6], {2: "terminated", 4: "truncated"})
    return buffer


def test_three_step_returns_and_discounts(episodes):
    got = sample_all(episodes, n_step=3)
    expected = {
        0: (1 + 0.5 * 2 + 0.25 * 3, 0.0, 2.5),  # runs into termination: no bootstrap
        1: (2 + 0.5 * 3, 0.0, 2.5),
        2: (3, 0.0, 2.5),
        3: (4 + 0.5 * 5, 0.25, 4.5),  # truncation: sum stops at the episode end, still bootstraps
        4: (5, 0.5, 4.5),
        5: (6, 0.5, 5.5),  # newest transition: the sum stops there
    }
    for index, values in expected.items():
        assert got[index] == pytest.approx(values), index


def test_one_step_discount_is_gamma_times_not_terminated(episodes):
    got = sample_all(episodes, n_step=1)
    for index, reward in enumerate([1, 2, 3, 4, 5, 6]):
        discount = 0.0 if index == 2 else GAMMA
        assert got[index] == pytest.approx((reward, discount, index + 0.5))


def test_batch_shapes_and_types(episodes):
    batch = episodes.sample(7, np.random.default_rng(1), n_step=2, gamma=GAMMA)
    assert batch.obs.shape == (7, 1) and batch.action.shape == (7, 1)
    assert batch.reward.shape == (7, 1) and batch.discount.shape == (7, 1)
    assert all(t.dtype == torch.float32 for t in (batch.obs, batch.action, batch.reward, batch.discount, batch.next_obs))
    assert torch.equal(batch.action, -batch.obs)
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.reward, batch.reward)


def test_empty_buffer_cannot_be_sampled():
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, (1,), (1,)).sample(1, np.random.default_rng(0))


def test_wraparound_keeps_the_newest_transitions():
    buffer = ReplayBuffer(4, (1,), (1,))
    fill(buffer, [10, 11, 12, 13, 14, 15])
    assert len(buffer) == 4 and buffer.pos == 2
    arrays = buffer.state_arrays()
    np.testing.assert_array_equal(arrays["buffer_obs"][:, 0], [2, 3, 4, 5])
    np.testing.assert_array_equal(arrays["buffer_reward"], [12, 13, 14, 15])
    np.testing.assert_array_equal(buffer.recent_actions(3)[:, 0], [-3, -4, -5])
    got = sample_all(buffer, n_step=3)
    assert set(got) == {2, 3, 4, 5}
    assert got[2] == pytest.approx((12 + 0.5 * 13 + 0.25 * 14, 0.125, 4.5))
    assert got[3] == pytest.approx((13 + 0.5 * 14 + 0.25 * 15, 0.125, 5.5))
    assert got[4] == pytest.approx((14 + 0.5 * 15, 0.25, 5.5))  # never wraps into the oldest (2)
    assert got[5] == pytest.approx((15, 0.5, 5.5))


def test_state_arrays_round_trip_same_and_larger_capacity():
    buffer = ReplayBuffer(4, (1,), (1,))
    fill(buffer, [10, 11, 12, 13, 14, 15], {3: "terminated", 4: "truncated"})
    arrays = buffer.state_arrays()
    assert set(arrays) == {f"buffer_{k}" for k in ReplayBuffer.KEYS}
    for capacity in (4, 9):
        restored = ReplayBuffer(capacity, (1,), (1,))
        restored.load_state_arrays(arrays)
        assert len(restored) == 4 and restored.pos == 4 % capacity
        for key, value in restored.state_arrays().items():
            np.testing.assert_array_equal(value, arrays[key])
        np.testing.assert_array_equal(restored.recent_actions(2), buffer.recent_actions(2))
        assert sample_all(restored, n_step=3, seed=5) == sample_all(buffer, n_step=3, seed=5)
    bigger = ReplayBuffer(9, (1,), (1,))
    bigger.load_state_arrays(arrays)
    fill(bigger, [16], start=6)  # continues after the restored transitions
    np.testing.assert_array_equal(bigger.state_arrays()["buffer_obs"][:, 0], [2, 3, 4, 5, 6])


def test_load_into_smaller_capacity_is_refused():
    buffer = ReplayBuffer(4, (1,), (1,))
    fill(buffer, [1, 2, 3])
    with pytest.raises(ValueError, match="more than the capacity 2"):
        ReplayBuffer(2, (1,), (1,)).load_state_arrays(buffer.state_arrays())


def test_same_generator_state_gives_same_batch(episodes):
    a = episodes.sample(5, np.random.default_rng(3), n_step=2)
    b = episodes.sample(5, np.random.default_rng(3), n_step=2)
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values(), strict=True))


def reference_nstep(rewards, terminated, truncated, start: int, n_step: int, gamma: float) -> tuple[float, float, int]:
    """Plain-loop n-step return of logical transition ``start`` (oldest first lists)."""
    total, discount, last = 0.0, 1.0, start
    for k in range(n_step):
        i = start + k
        if i >= len(rewards):
            break
        total += discount * rewards[i]
        discount *= gamma
        last = i
        if terminated[i]:
            return total, 0.0, last
        if truncated[i]:
            break
    return total, discount, last


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(1, 8),
    steps=st.lists(st.tuples(st.integers(-5, 5), st.sampled_from(["", "", "terminated", "truncated"])), min_size=1, max_size=20),
    n_step=st.integers(1, 4),
)
def test_nstep_matches_reference_implementation(capacity, steps, n_step):
    buffer = ReplayBuffer(capacity, (1,), (1,))
    fill(buffer, [float(r) for r, _ in steps], {i: end for i, (_, end) in enumerate(steps) if end})
    arrays = buffer.state_arrays()
    stored = arrays["buffer_obs"][:, 0].astype(int).tolist()
    assert stored == list(range(len(steps)))[-capacity:]
    batch = buffer.sample(64, np.random.default_rng(0), n_step=n_step, gamma=GAMMA)
    for obs, reward, discount, next_obs in zip(batch.obs[:, 0], batch.reward[:, 0], batch.discount[:, 0], batch.next_obs[:, 0], strict=True):
        start = stored.index(int(obs))
        total, disc, last = reference_nstep(arrays["buffer_reward"], arrays["buffer_terminated"], arrays["buffer_truncated"], start, n_step, GAMMA)
        assert (float(reward), float(discount), float(next_obs)) == pytest.approx((total, disc, stored[last] + 0.5))
