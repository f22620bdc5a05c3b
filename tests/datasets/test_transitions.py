"""Transitions: episodes, selection, concatenation, the return-range reward scale, obs stats."""

from __future__ import annotations

import numpy as np
import pytest

from rlkit.datasets import (
    DatasetError,
    Transitions,
    observation_stats,
    reward_scale_return_range,
)


def make(
    rewards: list[float],
    terminals: list[int],
    timeouts: list[int] | None = None,
    **metadata: object,
) -> Transitions:
    """Transitions whose observation i is [i, -i] and next observation [i+1, -(i+1)]."""
    n = len(rewards)
    obs = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)
    return Transitions(
        obs,
        np.arange(n, dtype=np.float32)[:, None],
        np.asarray(rewards, dtype=np.float32),
        obs + np.array([1, -1], dtype=np.float32),
        np.asarray(terminals, dtype=bool),
        np.asarray(timeouts if timeouts is not None else [0] * n, dtype=bool),
        {"source": "toy", **metadata},
    )


def test_both_flags_count_as_terminal_only() -> None:
    t = make([1, 2, 3], [0, 1, 0], [0, 1, 1])
    assert t.terminals.tolist() == [False, True, False]
    assert t.timeouts.tolist() == [False, False, True]
    assert t.episode_ends().tolist() == [1, 2]


def test_rows_of_different_lengths_are_refused() -> None:
    t = make([1, 2, 3], [0, 0, 1])
    with pytest.raises(DatasetError, match=r"toy: key 'rewards': has 2 rows, 'observations' has 3"):
        Transitions(
            t.observations,
            t.actions,
            t.rewards[:2],
            t.next_observations,
            t.terminals,
            t.timeouts,
            {"source": "toy"},
        )


def test_episode_returns_leave_out_the_trailing_partial_episode() -> None:
    t = make([1, 2, 3, 4, 5, 6], [0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0])
    # episodes: [0, 1] terminal, [2, 3] timeout, rows 4-5 have no end flag: not an episode
    assert t.episode_bounds() == [(0, 2), (2, 4)]
    np.testing.assert_array_equal(t.episode_returns(), [3.0, 7.0])
    marked = make([1, 2, 3, 4], [0, 1, 0, 0], [0, 0, 0, 1], partial_episodes=[1])
    np.testing.assert_array_equal(marked.episode_returns(), [3.0])
    np.testing.assert_array_equal(marked.episode_returns(include_partial=True), [3.0, 7.0])


def test_select_episodes() -> None:
    t = make([1, 2, 3, 4, 5, 6], [0, 1, 0, 0, 0, 1], [0, 0, 0, 1, 0, 0], partial_episodes=[1])
    picked = t.select_episodes([2, 1])
    assert picked.observations[:, 0].tolist() == [4, 5, 2, 3]
    assert picked.terminals.tolist() == [False, True, False, False]
    assert picked.timeouts.tolist() == [False, False, False, True]
    assert picked.metadata["partial_episodes"] == [1]
    assert picked.metadata["selected_episodes"] == [2, 1]
    assert t.metadata["partial_episodes"] == [1]  # the original is untouched
    assert t.select_episodes([-1]).rewards.tolist() == [5.0, 6.0]
    with pytest.raises(DatasetError, match=r"key 'episodes': episode 3 does not exist.*3 episodes"):
        t.select_episodes([3])


def test_concatenate_keeps_episodes_apart_and_merges_metadata() -> None:
    a = make([1, 2, 3], [0, 1, 0], env_id="Hopper-v5", ref_min_score=0.0, ref_max_score=1.0)
    b = make([10, 20], [0, 1], env_id="Hopper-v5", ref_min_score=0.0, ref_max_score=1.0)
    a.metadata["dropped"], a.metadata["dropped_reason"] = 2, "timeouts"
    both = Transitions.concatenate([a, b])
    assert len(both) == 5
    # a's last row had no end flag: it becomes a timeout, listed as partial, not merged with b
    assert both.timeouts.tolist() == [False, False, True, False, False]
    assert both.episode_ends().tolist() == [1, 2, 4]
    assert both.metadata["partial_episodes"] == [1]
    np.testing.assert_array_equal(both.episode_returns(), [3.0, 30.0])
    assert both.metadata["env_id"] == "Hopper-v5"
    assert (both.metadata["ref_min_score"], both.metadata["ref_max_score"]) == (0.0, 1.0)
    assert both.metadata["dropped"] == 2
    assert [p["transitions"] for p in both.metadata["parts"]] == [3, 2]
    c = make([1], [1], env_id="Walker2d-v5", ref_min_score=5.0, ref_max_score=6.0)
    mixed = Transitions.concatenate([b, c])
    assert mixed.metadata["env_id"] is None and mixed.metadata["ref_min_score"] is None
    assert any("reference scores" in note for note in mixed.metadata["notes"])


def test_concatenate_refuses_other_shapes() -> None:
    a = make([1, 2], [0, 1])
    b = Transitions(
        np.zeros((1, 3), np.float32),
        np.zeros((1, 1), np.float32),
        np.zeros(1, np.float32),
        np.zeros((1, 3), np.float32),
        np.ones(1, bool),
        np.zeros(1, bool),
        {"source": "other"},
    )
    with pytest.raises(DatasetError, match=r"other: key 'observations': rows of shape \(3,\)"):
        Transitions.concatenate([a, b])


def test_return_range_scale_by_hand() -> None:
    # rewards 1..7, a terminal at index 1, episodes capped at 3 steps:
    # [1, 2] (terminal) = 3; [3, 4, 5] (3 steps) = 12; [6, 7] trailing partial: ignored
    t = make([1, 2, 3, 4, 5, 6, 7], [0, 1, 0, 0, 0, 0, 0])
    assert reward_scale_return_range(t, max_episode_steps=3) == pytest.approx(3 / (12 - 3))
    # a cap reached exactly at a terminal counts once: [1, 2, 3] = 6 then [4] = 4
    t = make([1, 2, 3, 4], [0, 0, 1, 1])
    assert reward_scale_return_range(t, max_episode_steps=3) == pytest.approx(3 / (6 - 4))


def test_return_range_ignores_timeouts_unlike_episode_returns() -> None:
    # two 2-step episodes cut by timeouts, then a terminal one: the authors' counter (cap 3) sees
    # [1, 2, 3] = 6 and [4, 5, 6] (terminal) = 15, not the episodes [1, 2], [3, 4], [5, 6]
    t = make([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 1], [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(t.episode_returns(), [3.0, 7.0, 11.0])
    assert reward_scale_return_range(t, max_episode_steps=3) == pytest.approx(3 / (15 - 6))


def test_return_range_undefined() -> None:
    with pytest.raises(DatasetError, match="toy: key 'rewards': no complete episode"):
        reward_scale_return_range(make([1, 2], [0, 0]), max_episode_steps=5)
    with pytest.raises(DatasetError, match="every episode has the same return 3"):
        reward_scale_return_range(make([1, 2, 1, 2], [0, 1, 0, 1]))


def test_observation_stats() -> None:
    t = make([0.0] * 4, [0, 0, 0, 1])
    mean, std = observation_stats(t)
    # observations [i, -i] for i = 0..3: mean (1.5, -1.5), population std sqrt(1.25)
    np.testing.assert_allclose(mean, [1.5, -1.5])
    np.testing.assert_allclose(std, [np.sqrt(1.25) + 1e-3] * 2, rtol=1e-6)
    assert mean.dtype == std.dtype == np.float32
