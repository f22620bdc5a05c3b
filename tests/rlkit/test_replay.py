"""Replay buffer: n-step known answers, frame stacks, the ring, append-only checkpoints."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlkit.batch import Batch, DataSource
from rlkit.replay import ReplayBuffer

GAMMA = 0.5
FLAT = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)


def flat_buffer(capacity: int, nstep: int = 1, **kwargs) -> ReplayBuffer:
    return ReplayBuffer(capacity, FLAT, FLAT, nstep=nstep, gamma=GAMMA, **kwargs)


def fill(
    buffer: ReplayBuffer, rewards: list[float], ends: dict[int, str] | None = None, start: int = 0
) -> None:
    """Add transitions ``i`` with obs=i, action=-i and reward ``rewards[i]``.

    next_obs is i+1 (the next transition's obs) within an episode and the true final obs
    i+0.5 at an episode end; the next episode then starts at obs i+1.

    :param ends: transition index -> "terminated" or "truncated".
    """
    ends = ends or {}
    for i, reward in enumerate(rewards, start=start):
        end = ends.get(i, "")
        next_obs = i + 0.5 if end else i + 1.0
        buffer.add(
            np.array([i], np.float32),
            np.array([-i], np.float32),
            reward,
            np.array([next_obs], np.float32),
            end == "terminated",
            end == "truncated",
        )


def by_first_obs(batch: Batch) -> dict[int, tuple[float, float, float]]:
    """{transition index: (reward, discount, next_obs)} from a sampled batch (obs identifies it)."""
    out: dict[int, tuple[float, float, float]] = {}
    for obs, reward, discount, next_obs in zip(
        batch.obs[:, 0], batch.reward[:, 0], batch.discount[:, 0], batch.next_obs[:, 0], strict=True
    ):
        out[int(obs)] = (float(reward), float(discount), float(next_obs))
    return out


def sample_all(buffer: ReplayBuffer, seed: int = 0) -> dict[int, tuple[float, float, float]]:
    """Sample until every stored transition appeared as a batch start."""
    result = by_first_obs(buffer.sample(400, np.random.default_rng(seed)))
    assert len(result) == len(buffer)
    return result


def episodes(nstep: int) -> ReplayBuffer:
    """Episode A: 0,1,2 (2 terminated); episode B: 3,4 (4 truncated); episode C: 5 (ongoing)."""
    buffer = flat_buffer(10, nstep)
    fill(buffer, [1, 2, 3, 4, 5, 6], {2: "terminated", 4: "truncated"})
    return buffer


def batches_equal(a: Batch, b: Batch) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(vars(a).values(), vars(b).values(), strict=True)
        if isinstance(x, torch.Tensor)
    )


# ---------------------------------------------------------------------------------- n-step sums


def test_three_step_returns_and_discounts():
    got = sample_all(episodes(nstep=3))
    expected = {
        0: (1 + 0.5 * 2 + 0.25 * 3, 0.0, 2.5),  # runs into termination: no bootstrap
        1: (2 + 0.5 * 3, 0.0, 2.5),
        2: (3, 0.0, 2.5),
        3: (
            4 + 0.5 * 5,
            0.25,
            4.5,
        ),  # truncation: stops at the episode end, bootstraps from its final obs
        4: (5, 0.5, 4.5),
        5: (6, 0.5, 6.0),  # newest transition: the sum stops there
    }
    for index, values in expected.items():
        assert got[index] == pytest.approx(values), index


def test_one_step_discount_is_gamma_times_not_terminated():
    got = sample_all(episodes(nstep=1))
    for index, reward in enumerate([1, 2, 3, 4, 5, 6]):
        discount = 0.0 if index == 2 else GAMMA
        next_obs = index + 0.5 if index in (2, 4) else index + 1.0
        assert got[index] == pytest.approx((reward, discount, next_obs))


def test_batch_shapes_and_types():
    buffer = episodes(nstep=2)
    assert isinstance(buffer, DataSource)
    batch = buffer.sample(7, np.random.default_rng(1))
    assert batch.obs.shape == (7, 1) and batch.action.shape == (7, 1)
    assert batch.reward.shape == (7, 1) and batch.discount.shape == (7, 1)
    assert all(
        t.dtype == torch.float32
        for t in (batch.obs, batch.action, batch.reward, batch.discount, batch.next_obs)
    )
    assert torch.equal(batch.action, -batch.obs)
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.reward, batch.reward)


def test_discrete_actions_are_int64():
    buffer = ReplayBuffer(5, FLAT, gym.spaces.Discrete(4))
    for i in range(3):
        buffer.add(
            np.array([i], np.float32), i + 1, 0.0, np.array([i + 1], np.float32), False, False
        )
    batch = buffer.sample(4, np.random.default_rng(0))
    assert batch.action.dtype == torch.int64 and batch.action.shape == (4,)
    assert torch.equal(batch.action, batch.obs[:, 0].long() + 1)
    np.testing.assert_array_equal(buffer.recent_actions(2), [2, 3])


def test_empty_buffer_cannot_be_sampled():
    with pytest.raises(ValueError, match="empty"):
        flat_buffer(3).sample(1, np.random.default_rng(0))


def test_same_generator_state_gives_same_batch():
    buffer = episodes(nstep=2)
    assert batches_equal(
        buffer.sample(5, np.random.default_rng(3)), buffer.sample(5, np.random.default_rng(3))
    )


def test_obs_that_does_not_continue_the_episode_is_refused():
    buffer = flat_buffer(5)
    fill(buffer, [1.0])
    with pytest.raises(ValueError, match="not the previous transition's next_obs"):
        buffer.add(
            np.array([7], np.float32),
            np.array([0], np.float32),
            0.0,
            np.array([8], np.float32),
            False,
            False,
        )
    with pytest.raises(ValueError, match="shape"):
        buffer.add(
            np.zeros(2, np.float32),
            np.array([0], np.float32),
            0.0,
            np.zeros(2, np.float32),
            False,
            False,
        )


# ----------------------------------------------------------------------------- ring buffer


def test_wraparound_keeps_the_newest_transitions():
    buffer = flat_buffer(4, nstep=3)
    fill(buffer, [10, 11, 12, 13, 14, 15])
    assert len(buffer) == 4
    np.testing.assert_array_equal(buffer.recent_actions(3)[:, 0], [-3, -4, -5])
    with pytest.raises(ValueError, match="recent actions"):
        buffer.recent_actions(5)
    got = sample_all(buffer)
    assert set(got) == {2, 3, 4, 5}
    assert got[2] == pytest.approx((12 + 0.5 * 13 + 0.25 * 14, 0.125, 5.0))
    assert got[3] == pytest.approx((13 + 0.5 * 14 + 0.25 * 15, 0.125, 6.0))
    assert got[4] == pytest.approx((14 + 0.5 * 15, 0.25, 6.0))  # never wraps into the oldest (2)
    assert got[5] == pytest.approx((15, 0.5, 6.0))


def test_memory_stays_bounded_after_many_wraps():
    buffer = flat_buffer(6, chunk_size=3)
    fill(buffer, [0.0] * 1000, {i: "truncated" for i in range(0, 1000, 7)})
    assert len(buffer) == 6
    # 6 live transitions span at most 3 chunks of 3 rows; their frames (plus one first frame per
    # episode) at most 4 chunks: 3 * 3 * (4 + 4 + 1 + 1 + 8) + 4 * 3 * 4 bytes.
    assert buffer.nbytes <= 3 * 3 * 18 + 4 * 3 * 4
    assert set(sample_all(buffer)) == set(range(994, 1000))


# ------------------------------------------------------------------- equal to the old buffer


class LegacyReplayBuffer:
    """rlkit's previous buffer (obs and next_obs both stored as float32), kept as the reference."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.obs, self.next_obs, self.action = (
            np.zeros((capacity, 1), np.float32) for _ in range(3)
        )
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, bool)
        self.truncated = np.zeros(capacity, bool)
        self.pos = self.size = 0

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        i = self.pos
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.terminated[i], self.truncated[i] = next_obs, terminated, truncated
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size, rng, n_step, gamma):
        oldest = (self.pos - self.size) % self.capacity
        logical = rng.integers(0, self.size, size=batch_size)
        reward = np.zeros(batch_size, dtype=np.float64)
        discount = np.ones(batch_size, dtype=np.float64)
        active = np.ones(batch_size, dtype=bool)
        last = (oldest + logical) % self.capacity
        for k in range(n_step):
            idx = (oldest + logical + k) % self.capacity
            valid = active & (logical + k < self.size)
            reward[valid] += discount[valid] * self.reward[idx[valid]]
            discount[valid] *= gamma
            last[valid] = idx[valid]
            ended = self.terminated[idx] | self.truncated[idx]
            discount[valid & self.terminated[idx]] = 0.0
            active = valid & ~ended
        first = (oldest + logical) % self.capacity
        as_t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        return Batch(
            as_t(self.obs[first]),
            as_t(self.action[first]),
            as_t(reward)[:, None],
            as_t(discount)[:, None],
            as_t(self.next_obs[last]),
        )


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(1, 8),
    chunk_size=st.integers(1, 5),
    steps=st.lists(
        st.tuples(st.floats(-5, 5, width=32), st.sampled_from(["", "", "terminated", "truncated"])),
        min_size=1,
        max_size=25,
    ),
    n_step=st.integers(1, 4),
    gamma=st.floats(0.0, 1.0),
)
def test_flat_obs_sample_equals_the_old_buffer(capacity, chunk_size, steps, n_step, gamma):
    buffer = ReplayBuffer(capacity, FLAT, FLAT, nstep=n_step, gamma=gamma, chunk_size=chunk_size)
    legacy = LegacyReplayBuffer(capacity)
    for target in (buffer, legacy):
        fill(target, [r for r, _ in steps], {i: end for i, (_, end) in enumerate(steps) if end})
    assert len(buffer) == legacy.size
    new = buffer.sample(64, np.random.default_rng(0))
    old = legacy.sample(64, np.random.default_rng(0), n_step, gamma)
    assert batches_equal(new, old)


# ---------------------------------------------------------------------------- stacked pixels


class StackedPixelEnv:
    """A fake pixel env with DrQ-v2 frame stacking: obs (K*C, H, W) uint8, oldest frame first.

    Frame number ``f`` (counted over the env's life) is written into its pixels: channel 0 holds
    ``f % 256``, channel 1 ``f // 256``. Reset repeats the first frame K times; episodes end
    terminated with probability 0.1 per step or truncated after ``limit`` steps.
    """

    K, C, H, W = 3, 2, 4, 5

    def __init__(self, seed: int, limit: int = 9) -> None:
        self.rng = np.random.default_rng(seed)
        self.limit, self.frames_made, self.t = limit, 0, 0
        self.stack: list[np.ndarray] = []

    @classmethod
    def spaces(cls) -> tuple[gym.spaces.Box, gym.spaces.Box]:
        obs = gym.spaces.Box(0, 255, (cls.K * cls.C, cls.H, cls.W), np.uint8)
        return obs, gym.spaces.Box(-1e9, 1e9, (1,), np.float32)

    def _frame(self) -> np.ndarray:
        frame = np.empty((self.C, self.H, self.W), np.uint8)
        frame[0], frame[1] = self.frames_made % 256, self.frames_made // 256
        self.frames_made += 1
        return frame

    def reset(self) -> np.ndarray:
        self.t, first = 0, self._frame()
        self.stack = [first] * self.K
        return np.concatenate(self.stack)

    def step(self) -> tuple[np.ndarray, float, bool, bool]:
        self.t += 1
        self.stack = [*self.stack[1:], self._frame()]
        terminated = bool(self.rng.random() < 0.1)
        return (
            np.concatenate(self.stack),
            float(self.rng.normal()),
            terminated,
            not terminated and self.t >= self.limit,
        )


def play(buffer: ReplayBuffer, env: StackedPixelEnv, steps: int, record: list[tuple]) -> None:
    """Run ``steps`` transitions into ``buffer``; append (obs, reward, next_obs, terminated,
    truncated) to ``record``. The action is the transition's global number, to identify it."""
    obs = env.reset() if not record or record[-1][3] or record[-1][4] else record[-1][2]
    for _ in range(steps):
        next_obs, reward, terminated, truncated = env.step()
        buffer.add(
            obs, np.array([len(record)], np.float32), reward, next_obs, terminated, truncated
        )
        record.append((obs, reward, next_obs, terminated, truncated))
        obs = env.reset() if terminated or truncated else next_obs


def reference_nstep(
    record: list[tuple], start: int, n_step: int, gamma: float
) -> tuple[float, float, int]:
    """Plain-loop n-step (reward, discount, last transition) of transition ``start``."""
    total, discount, last = 0.0, 1.0, start
    for i in range(start, min(start + n_step, len(record))):
        _, reward, _, terminated, truncated = record[i]
        total += discount * float(np.float32(reward))  # stored as float32, summed in float64
        discount *= gamma
        last = i
        if terminated:
            return total, 0.0, last
        if truncated:
            break
    return total, discount, last


def check_against_record(
    buffer: ReplayBuffer, record: list[tuple], seed: int = 0, batch_size: int = 300
) -> set[int]:
    """Every sampled obs/next_obs/reward/discount equals what the env gave; returns the indices."""
    batch = buffer.sample(batch_size, np.random.default_rng(seed))
    assert batch.obs.dtype == torch.uint8 and batch.next_obs.dtype == torch.uint8
    assert batch.obs.shape == (batch_size, *buffer.obs_shape)
    seen = set()
    for row in range(batch_size):
        t = int(batch.action[row, 0])
        assert len(record) - len(buffer) <= t < len(record)
        reward, discount, last = reference_nstep(record, t, buffer.nstep, buffer.gamma)
        np.testing.assert_array_equal(batch.obs[row].numpy(), record[t][0])
        np.testing.assert_array_equal(batch.next_obs[row].numpy(), record[last][2])
        assert (float(batch.reward[row, 0]), float(batch.discount[row, 0])) == pytest.approx(
            (reward, discount)
        )
        seen.add(t)
    return seen


def pixel_buffer(capacity: int, nstep: int = 3, chunk_size: int = 8) -> ReplayBuffer:
    obs_space, action_space = StackedPixelEnv.spaces()
    return ReplayBuffer(
        capacity,
        obs_space,
        action_space,
        nstep=nstep,
        gamma=0.9,
        frame_stack=StackedPixelEnv.K,
        chunk_size=chunk_size,
    )


@pytest.mark.parametrize("capacity", [500, 37])
def test_frame_stacks_are_rebuilt_exactly(capacity):
    buffer, record = pixel_buffer(capacity), []
    play(buffer, StackedPixelEnv(seed=1), 300, record)
    assert len(buffer) == min(300, capacity)
    seen = check_against_record(buffer, record)
    starts = [t for t in seen if t == 0 or record[t - 1][3] or record[t - 1][4]]
    assert starts, "episode starts (padded stacks) were sampled"
    assert any(record[t][4] for t in seen), "truncations (true final obs) were sampled"


def test_each_frame_is_stored_once():
    buffer, record = pixel_buffer(1000, chunk_size=1000), []
    play(buffer, StackedPixelEnv(seed=2), 400, record)
    episodes_started = 1 + sum(1 for r in record[:-1] if r[3] or r[4])
    frame_bytes = StackedPixelEnv.C * StackedPixelEnv.H * StackedPixelEnv.W
    assert buffer._frames.end == 400 + StackedPixelEnv.K * episodes_started
    frames_chunk = 1000 * frame_bytes
    assert buffer._frames.nbytes == frames_chunk  # one chunk allocated, uint8
    assert buffer.nbytes == frames_chunk + 1000 * (4 + 4 + 1 + 1 + 8)


def test_truncated_episode_bootstraps_from_its_true_final_obs():
    buffer, record = pixel_buffer(100, nstep=1), []
    play(buffer, StackedPixelEnv(seed=3, limit=4), 60, record)
    batch = buffer.sample(400, np.random.default_rng(0))
    truncated = [row for row in range(400) if record[int(batch.action[row, 0])][4]]
    assert truncated
    for row in truncated:
        t = int(batch.action[row, 0])
        np.testing.assert_array_equal(batch.next_obs[row].numpy(), record[t][2])
        # The true final frame is not the first frame of the next episode's obs.
        if t + 1 < len(record):
            assert not np.array_equal(batch.next_obs[row].numpy(), record[t + 1][0])
        assert float(batch.discount[row, 0]) == pytest.approx(0.9)


def test_next_obs_must_shift_the_stack():
    buffer = pixel_buffer(10)
    obs = np.zeros(buffer.obs_shape, np.uint8)
    with pytest.raises(ValueError, match="shifted by one frame"):
        buffer.add(
            obs, np.zeros(1, np.float32), 0.0, np.full(buffer.obs_shape, 7, np.uint8), False, False
        )


# ------------------------------------------------------------------------------- checkpoints


def segment_files(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in store.iterdir()}


def test_save_load_round_trip_gives_identical_future(tmp_path):
    buffer, record = pixel_buffer(50), []
    env = StackedPixelEnv(seed=4)
    play(buffer, env, 80, record)
    manifest = buffer.save(tmp_path)
    restored = pixel_buffer(50, chunk_size=5)  # another chunk size reads the same files
    restored.load(tmp_path, manifest)
    assert len(restored) == len(buffer) and restored.transitions_added == 80
    np.testing.assert_array_equal(restored.recent_actions(7), buffer.recent_actions(7))
    assert batches_equal(
        restored.sample(64, np.random.default_rng(9)), buffer.sample(64, np.random.default_rng(9))
    )
    # Both continue with the same transitions and stay equal.
    twin_env, twin_record = StackedPixelEnv(seed=4), []
    play(pixel_buffer(50), twin_env, 80, twin_record)
    play(buffer, env, 30, record)
    play(restored, twin_env, 30, twin_record)
    assert batches_equal(
        restored.sample(64, np.random.default_rng(2)), buffer.sample(64, np.random.default_rng(2))
    )
    check_against_record(restored, twin_record)


def test_second_save_writes_only_the_new_rows(tmp_path):
    buffer, record = pixel_buffer(1000, chunk_size=10), []
    env = StackedPixelEnv(seed=5)
    play(buffer, env, 35, record)
    first = buffer.save(tmp_path)
    before = segment_files(tmp_path)
    frames_first = first["frames"]["end"]
    play(buffer, env, 20, record)
    second = buffer.save(tmp_path)
    new = {name: size for name, size in segment_files(tmp_path).items() if name not in before}
    # Transitions 35..54 split at the chunk boundaries 40 and 50; frames likewise.
    new_steps = sorted(s for s in second["transitions"]["segments"] if s[2] in new)
    assert [(a, b) for a, b, _ in new_steps] == [(35, 40), (40, 50), (50, 55)]
    new_frames = sorted(s for s in second["frames"]["segments"] if s[2] in new)
    assert new_frames[0][0] == frames_first and new_frames[-1][1] == second["frames"]["end"]
    assert len(new) == len(new_steps) + len(new_frames)
    frame_bytes = StackedPixelEnv.C * StackedPixelEnv.H * StackedPixelEnv.W
    frames_written = sum(b - a for a, b, _ in new_frames)
    assert frames_written == second["frames"]["end"] - frames_first
    # Roughly the raw rows: npz adds a fixed header per array.
    assert sum(new.values()) < frames_written * frame_bytes + 20 * 18 + len(new) * 1500
    assert segment_files(tmp_path).items() >= before.items()  # nothing rewritten
    assert buffer.save(tmp_path) == second and len(segment_files(tmp_path)) == len(before) + len(
        new
    )


def test_load_from_an_older_manifest_ignores_newer_chunks(tmp_path):
    buffer, record = pixel_buffer(40), []
    env = StackedPixelEnv(seed=6)
    play(buffer, env, 30, record)
    old = buffer.save(tmp_path)
    old_batch = buffer.sample(50, np.random.default_rng(1))
    play(buffer, env, 30, record)  # wraps: the oldest rows of `old` are overwritten in memory
    buffer.save(tmp_path)
    restored = pixel_buffer(40)
    restored.load(tmp_path, old)
    assert len(restored) == 30 and restored.transitions_added == 30
    assert batches_equal(restored.sample(50, np.random.default_rng(1)), old_batch)
    check_against_record(restored, record[:30])


def test_wrapped_chunks_get_new_file_names(tmp_path):
    buffer, record = pixel_buffer(16, chunk_size=8), []
    env = StackedPixelEnv(seed=7)
    play(buffer, env, 16, record)
    first = buffer.save(tmp_path)
    play(buffer, env, 16, record)  # every transition of `first` is overwritten
    second = buffer.save(tmp_path)
    names = lambda m, log: {s[2] for s in m[log]["segments"]}  # noqa: E731
    assert not names(first, "transitions") & names(second, "transitions")
    # Frames are shared only where the new oldest transition still needs them.
    shared = [s for s in second["frames"]["segments"] if s[2] in names(first, "frames")]
    assert all(end > second["frames"]["first"] for _, end, _ in shared)
    assert shared == [s for s in first["frames"]["segments"] if s[1] > second["frames"]["first"]]
    on_disk = set(segment_files(tmp_path))
    assert all(
        names(m, log) <= on_disk for m in (first, second) for log in ("transitions", "frames")
    )


def test_prune_store_removes_unreferenced_files_only(tmp_path):
    buffer, record = pixel_buffer(16, chunk_size=8), []
    env = StackedPixelEnv(seed=8)
    manifests = []
    for _ in range(3):
        play(buffer, env, 12, record)
        manifests.append(buffer.save(tmp_path))
    (tmp_path / "notes.txt").write_text("not a segment")
    (tmp_path / "frames_other.npz").write_bytes(b"not ours either")
    (tmp_path / ".frames_000000000000_000000000008_abcd0123.npz.x1y2.npz").write_bytes(b"torn")
    everything = set(segment_files(tmp_path))
    ReplayBuffer.prune_store(tmp_path, manifests)
    assert set(segment_files(tmp_path)) == everything - {
        ".frames_000000000000_000000000008_abcd0123.npz.x1y2.npz"
    }
    ReplayBuffer.prune_store(tmp_path, manifests[1:])
    left = set(segment_files(tmp_path))
    used = {
        s[2] for m in manifests[1:] for log in ("transitions", "frames") for s in m[log]["segments"]
    }
    assert left == used | {"notes.txt", "frames_other.npz"}
    assert everything - left, "the first checkpoint's dead chunks were removed"
    for manifest in manifests[1:]:
        restored = pixel_buffer(16)
        restored.load(tmp_path, manifest)
        check_against_record(restored, record[: manifest["transitions"]["end"]])


def test_resumed_timeline_never_overwrites_an_abandoned_one(tmp_path):
    buffer, record = pixel_buffer(64), []
    env = StackedPixelEnv(seed=9)
    play(buffer, env, 20, record)
    base = buffer.save(tmp_path)
    play(buffer, env, 20, record)
    abandoned = buffer.save(tmp_path)
    fork, fork_record = pixel_buffer(64), list(record[:20])
    fork.load(tmp_path, base)
    other = StackedPixelEnv(seed=99)  # continues the episode with other frames and rewards
    other.stack, other.frames_made = list(np.split(record[19][2], StackedPixelEnv.K)), 5000
    play(fork, other, 20, fork_record)
    check_against_record(fork, fork_record)
    fork.save(tmp_path)
    again = pixel_buffer(64)
    again.load(tmp_path, abandoned)
    check_against_record(again, record)


def test_save_into_a_new_store_writes_everything_live(tmp_path):
    buffer, record = pixel_buffer(30, chunk_size=8), []
    play(buffer, StackedPixelEnv(seed=10), 50, record)
    buffer.save(tmp_path / "a")
    manifest = buffer.save(tmp_path / "b")
    restored = pixel_buffer(30)
    restored.load(tmp_path / "b", manifest)
    check_against_record(restored, record)


def test_load_checks_capacity_and_spaces(tmp_path):
    buffer = flat_buffer(4)
    fill(buffer, [1, 2, 3])
    manifest = buffer.save(tmp_path)
    with pytest.raises(ValueError, match="more than the capacity 2"):
        flat_buffer(2).load(tmp_path, manifest)
    with pytest.raises(ValueError, match="obs_dtype"):
        ReplayBuffer(4, gym.spaces.Box(0, 255, (1,), np.uint8), FLAT).load(tmp_path, manifest)
    bigger = flat_buffer(9)
    bigger.load(tmp_path, manifest)
    fill(bigger, [4, 5], start=3)  # continues the open episode after the restored transitions
    assert set(sample_all(bigger)) == {0, 1, 2, 3, 4}
    (tmp_path / manifest["transitions"]["segments"][0][2]).unlink()
    with pytest.raises(FileNotFoundError, match="lacks transitions_"):
        flat_buffer(4).load(tmp_path, manifest)


# ------------------------------------------------------------- Dict observations (pixels + state)


class DictPixelEnv(StackedPixelEnv):
    """:class:`StackedPixelEnv` whose observations are ``{"pixels": stack, "state": (2,)}`` with a
    fresh random state per observation (the true final one differs from the next reset's)."""

    def __init__(self, seed: int, limit: int = 9, frame_stack: int = 3) -> None:
        super().__init__(seed, limit)
        self.K = frame_stack
        self.states = np.random.default_rng(seed + 1000)

    @classmethod
    def dict_space(cls, frame_stack: int) -> gym.spaces.Dict:
        pixels = gym.spaces.Box(0, 255, (frame_stack * cls.C, cls.H, cls.W), np.uint8)
        state = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        return gym.spaces.Dict({"pixels": pixels, "state": state})

    def _state(self) -> np.ndarray:
        return self.states.normal(size=2).astype(np.float32)

    def reset(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {"pixels": super().reset(), "state": self._state()}

    def step(self) -> tuple[dict[str, np.ndarray], float, bool, bool]:  # type: ignore[override]
        pixels, reward, terminated, truncated = super().step()
        return {"pixels": pixels, "state": self._state()}, reward, terminated, truncated


def dict_buffer(capacity: int, frame_stack: int = 3, chunk_size: int = 8) -> ReplayBuffer:
    return ReplayBuffer(
        capacity,
        DictPixelEnv.dict_space(frame_stack),
        StackedPixelEnv.spaces()[1],
        nstep=3,
        gamma=0.9,
        frame_stack=frame_stack,
        chunk_size=chunk_size,
    )


def check_dict_against_record(buffer: ReplayBuffer, record: list[tuple], seed: int = 0) -> set:
    """Sampled pixels, states, next pixels and next states equal what the env gave (n-step)."""
    batch = buffer.sample(300, np.random.default_rng(seed))
    assert set(batch.extras) == {"state", "next_state"}
    assert batch.extras["state"].dtype == torch.float32 and batch.extras["state"].shape == (300, 2)
    seen = set()
    for row in range(300):
        t = int(batch.action[row, 0])
        reward, discount, last = reference_nstep(record, t, buffer.nstep, buffer.gamma)
        obs, next_obs = record[t][0], record[last][2]
        np.testing.assert_array_equal(batch.obs[row].numpy(), obs["pixels"])
        np.testing.assert_array_equal(batch.extras["state"][row].numpy(), obs["state"])
        np.testing.assert_array_equal(batch.next_obs[row].numpy(), next_obs["pixels"])
        np.testing.assert_array_equal(batch.extras["next_state"][row].numpy(), next_obs["state"])
        assert (float(batch.reward[row, 0]), float(batch.discount[row, 0])) == pytest.approx(
            (reward, discount)
        )
        seen.add(t)
    return seen


@pytest.mark.parametrize(("frame_stack", "capacity"), [(1, 500), (1, 37), (3, 500), (3, 37)])
def test_dict_obs_sample_pixels_and_states_as_given(frame_stack, capacity):
    buffer, record = dict_buffer(capacity, frame_stack), []
    play(buffer, DictPixelEnv(seed=5, frame_stack=frame_stack), 300, record)
    assert buffer.obs_shape == (frame_stack * StackedPixelEnv.C, StackedPixelEnv.H, 5)
    seen = check_dict_against_record(buffer, record)
    ends = [t for t in seen if record[t][3] or record[t][4]]
    assert ends, "episode ends (true final states) were sampled"
    # each frame once; the states ride in the same rows
    starts = 1 + sum(1 for r in record[:-1] if r[3] or r[4])
    assert buffer._frames.end == 300 + frame_stack * starts


def test_dict_obs_n_step_next_state_by_hand():
    """Episode 0: obs 0,1,2 (2 terminated); episode 1 starts at 3 (3 truncated): the n-step next
    state of transition 1 is transition 2's final state, of 3 its true final state."""
    space = gym.spaces.Dict(
        {
            "pixels": gym.spaces.Box(0, 255, (1, 2, 2), np.uint8),
            "state": gym.spaces.Box(-9, 9, (1,), np.float32),
        }
    )
    buffer = ReplayBuffer(10, space, FLAT, nstep=3, gamma=GAMMA)

    def obs(i: float) -> dict[str, np.ndarray]:
        return {"pixels": np.full((1, 2, 2), int(i * 10), np.uint8), "state": np.array([i], "f4")}

    for i, (next_i, term, trunc) in enumerate([(1, 0, 0), (2, 0, 0), (2.5, 1, 0), (3.5, 0, 1)]):
        start = i if i < 3 else 3
        buffer.add(obs(start), np.array([i], "f4"), 1.0, obs(next_i), bool(term), bool(trunc))
    batch = buffer.sample(64, np.random.default_rng(0))
    found = {
        int(a): (float(s), float(ns), int(nx[0, 0, 0]), float(d))
        for a, s, ns, nx, d in zip(
            batch.action[:, 0],
            batch.extras["state"][:, 0],
            batch.extras["next_state"][:, 0],
            batch.next_obs,
            batch.discount[:, 0],
            strict=True,
        )
    }
    assert found == {
        0: (0.0, 2.5, 25, 0.0),
        1: (1.0, 2.5, 25, 0.0),
        2: (2.0, 2.5, 25, 0.0),
        3: (3.0, 3.5, 35, GAMMA),
    }


def batches_and_extras_equal(a: Batch, b: Batch) -> bool:
    same_extras = a.extras.keys() == b.extras.keys() and all(
        torch.equal(v, b.extras[k]) for k, v in a.extras.items()
    )
    return batches_equal(a, b) and same_extras


def test_dict_save_load_resume_and_prune(tmp_path):
    buffer, record = dict_buffer(50, frame_stack=1), []
    env = DictPixelEnv(seed=6, frame_stack=1)
    play(buffer, env, 80, record)
    manifest = buffer.save(tmp_path)
    assert manifest["image_key"] == "pixels" and manifest["side"] == {"state": [2]}
    frames_file = tmp_path / manifest["frames"]["segments"][-1][2]
    assert set(np.load(frames_file).files) == {"frame", "side_state"}
    restored = dict_buffer(50, frame_stack=1, chunk_size=5)
    restored.load(tmp_path, manifest)
    assert batches_and_extras_equal(
        restored.sample(64, np.random.default_rng(9)), buffer.sample(64, np.random.default_rng(9))
    )
    twin_env, twin_record = DictPixelEnv(seed=6, frame_stack=1), []
    play(dict_buffer(50, frame_stack=1), twin_env, 80, twin_record)
    play(buffer, env, 30, record)
    play(restored, twin_env, 30, twin_record)  # continues the restored open episode
    assert batches_and_extras_equal(
        restored.sample(64, np.random.default_rng(2)), buffer.sample(64, np.random.default_rng(2))
    )
    check_dict_against_record(restored, twin_record)
    latest = restored.save(tmp_path)
    ReplayBuffer.prune_store(tmp_path, [latest])
    again = dict_buffer(50, frame_stack=1)
    again.load(tmp_path, latest)
    check_dict_against_record(again, twin_record)
    assert len(list(tmp_path.iterdir())) == len(latest["frames"]["segments"]) + len(
        latest["transitions"]["segments"]
    )


def test_dict_obs_refusals(tmp_path):
    buffer, record = dict_buffer(20, frame_stack=1), []
    play(buffer, DictPixelEnv(seed=7, frame_stack=1), 3, record)
    last = record[-1][2]
    with pytest.raises(ValueError, match="must be a dict with keys"):
        buffer.add(last["pixels"], np.zeros(1, "f4"), 0.0, last["pixels"], False, False)
    assert not (record[-1][3] or record[-1][4])  # the episode is open (seed 7)
    moved = {"pixels": last["pixels"], "state": last["state"] + 1}  # same frames, other state
    with pytest.raises(ValueError, match="not the previous transition's next_obs"):
        buffer.add(moved, np.zeros(1, "f4"), 0.0, moved, False, False)
    manifest = buffer.save(tmp_path)
    box = ReplayBuffer(20, DictPixelEnv.dict_space(1)["pixels"], StackedPixelEnv.spaces()[1])
    assert "image_key" not in box.save(tmp_path / "box")  # a Box manifest is as before
    with pytest.raises(ValueError, match="image_key"):
        box.load(tmp_path, manifest)
    two_images = gym.spaces.Dict({"a": DictPixelEnv.dict_space(1)["pixels"]} | {"b": box_space()})
    with pytest.raises(ValueError, match="exactly one image key"):
        ReplayBuffer(5, two_images, FLAT)
    nested = gym.spaces.Dict({"pixels": box_space(), "m": gym.spaces.Box(0, 1, (2, 2), np.float32)})
    with pytest.raises(ValueError, match="'m' must be a flat float Box"):
        ReplayBuffer(5, nested, FLAT)


def box_space() -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, (3, 4, 4), np.uint8)
