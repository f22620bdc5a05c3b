"""Collecting datasets from tiny trained runs: policy rollouts, random actions, replay buffers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from rlkit.config import ConfigError, load_config
from rlkit.datasets import DatasetError, Episode, load_dataset, load_episodes, write_minari
from rlkit.datasets.collect import (
    REF_RANDOM_EPISODES,
    collect_policy,
    collect_random,
    collect_replay,
    reference_returns,
)
from rlkit.envs import make_env
from rlkit.evaluation import EVAL_SEED_OFFSET, run_episode
from rlkit.io import load_arrays, save_arrays
from rlkit.loading import load_run

PENDULUM_STEPS = 200  # Pendulum-v1's time limit


def pendulum_rewards(obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Pendulum-v1's reward of each step from its observation and env-unit action."""
    theta = np.arctan2(obs[:, 1], obs[:, 0])
    torque = np.clip(actions[:, 0], -2.0, 2.0)
    return -(theta**2 + 0.1 * obs[:, 2] ** 2 + 0.001 * torque**2)


def spaces(run: Path) -> tuple[gym.Space, gym.Space]:
    env = make_env(load_config(run / "config.yaml").env)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def test_policy_episodes_are_the_rollouts(sac_run: Path, tmp_path: Path) -> None:
    episodes = collect_policy(sac_run, 2, seed=5)
    assert [len(e) for e in episodes] == [PENDULUM_STEPS] * 2
    assert [e.seed for e in episodes] == [5, 6]
    assert all(e.truncations[-1] and not e.terminations.any() for e in episodes)
    # the same policy run by rlkit's evaluation on the same seeds gives the same returns
    loaded = load_run(sac_run)
    env = make_env(loaded.env_config)
    expected = [run_episode(env, loaded.act, seed)["return"] for seed in (5, 6)]
    env.close()
    np.testing.assert_allclose([e.total_reward for e in episodes], expected, rtol=1e-12)
    # and the Minari dataset written from them holds exactly those returns
    path = write_minari("pendulum/expert-v0", episodes, *spaces(sac_run), root=tmp_path)
    back, _ = load_episodes(path)
    assert [e.total_reward for e in back] == [e.total_reward for e in episodes]
    transitions = load_dataset(path)
    assert len(transitions) == 2 * PENDULUM_STEPS
    np.testing.assert_allclose(transitions.episode_returns(), expected, rtol=1e-5)
    np.testing.assert_allclose(
        transitions.rewards, pendulum_rewards(transitions.observations, transitions.actions), 1e-4
    )


def test_action_noise_is_seeded_and_clipped(sac_run: Path) -> None:
    clean = collect_policy(sac_run, 1, seed=3)[0]
    noisy = collect_policy(sac_run, 1, noise=0.5, seed=3)[0]
    again = collect_policy(sac_run, 1, noise=0.5, seed=3)[0]
    np.testing.assert_array_equal(noisy.actions, again.actions)
    assert np.abs(noisy.actions).max() <= 2.0
    assert not np.array_equal(noisy.actions, clean.actions)
    np.testing.assert_array_equal(noisy.observations[0], clean.observations[0])  # same reset
    assert np.isclose(np.abs(noisy.actions).max(), 2.0)  # std 0.5 * 2 on a 2-wide half range


def test_policy_from_a_checkpoint(sac_run: Path) -> None:
    final = collect_policy(sac_run, 1, seed=0)[0]
    medium = collect_policy(sac_run, 1, seed=0, checkpoint="step_000000200")[0]
    assert not np.array_equal(final.actions, medium.actions)
    with pytest.raises(ConfigError, match=r"no checkpoint 'step_7' \(checkpoints: step_0+200, s"):
        load_run(sac_run, checkpoint="step_7")


def test_random_episodes(sac_run: Path) -> None:
    env_config = load_config(sac_run / "config.yaml").env
    a = collect_random(env_config, 2, seed=11)
    b = collect_random(env_config, 2, seed=11)
    assert [len(e) for e in a] == [PENDULUM_STEPS] * 2
    np.testing.assert_array_equal(a[1].actions, b[1].actions)
    assert np.abs(a[0].actions).max() <= 2.0 and np.abs(a[0].actions).max() > 1.0


def test_reference_returns(sac_run: Path, tmp_path: Path) -> None:
    config = load_config(sac_run / "config.yaml")
    ref_min, ref_max, how = reference_returns(sac_run)
    seed = config.seed + EVAL_SEED_OFFSET
    random = collect_random(config.env, REF_RANDOM_EPISODES, seed)
    assert ref_min == pytest.approx(np.mean([e.total_reward for e in random]))
    assert ref_max == json.loads((sac_run / "eval.json").read_text())["return_mean"]
    assert "eval.json" in how["ref_max_score"] and "10 episodes" in how["ref_min_score"]
    # a run without eval.json: the collected (final, noise-free) episodes, else an evaluation
    copy = tmp_path / "run"
    shutil.copytree(sac_run, copy)
    (copy / "eval.json").unlink()
    _, from_rollouts, how = reference_returns(copy, np.array([-100.0, -300.0]))
    assert from_rollouts == -200.0 and "collected episodes" in how["ref_max_score"]
    _, evaluated, how = reference_returns(copy)
    assert evaluated == pytest.approx(ref_max) and "run here" in how["ref_max_score"]


# -------------------------------------------------------------------------------- replay


def test_replay_of_an_sb3_checkpoint(sac_run: Path) -> None:
    arrays = load_arrays(sac_run / "checkpoints" / "step_000000200" / "agent.npz")
    stored = int(arrays["buffer_pos"])
    episodes = collect_replay(sac_run, "step_000000200")
    assert sum(len(e) for e in episodes) == stored == 200
    # insertion order: the buffer's own rows, actions back in env units
    obs = np.concatenate([e.observations[:-1] for e in episodes])
    actions = np.concatenate([e.actions for e in episodes])
    np.testing.assert_array_equal(obs, arrays["buffer_observations"][:, 0])
    np.testing.assert_allclose(actions, 2.0 * arrays["buffer_actions"][:, 0], atol=1e-6)
    assert np.abs(actions).max() > 1.0
    rewards = np.concatenate([e.rewards for e in episodes])
    np.testing.assert_allclose(rewards, pendulum_rewards(obs, actions), atol=1e-4)
    np.testing.assert_array_equal(rewards, arrays["buffer_rewards"][:, 0])
    assert len(episodes) == 1 and episodes[0].truncations[-1]  # one 200-step episode


def test_replay_until_a_step_and_the_open_last_episode(sac_run: Path, tmp_path: Path) -> None:
    episodes = collect_replay(sac_run, "step_000000300")
    assert [len(e) for e in episodes] == [200, 100]
    assert not (episodes[1].terminations[-1] or episodes[1].truncations[-1])  # still running
    partial = collect_replay(sac_run, "step_000000300", until_step=150)
    assert [len(e) for e in partial] == [150]
    np.testing.assert_array_equal(partial[0].observations, episodes[0].observations[:151])
    path = write_minari("medium-replay-v0", episodes, *spaces(sac_run), root=tmp_path)
    transitions = load_dataset(path)
    assert len(transitions) == 300 and transitions.metadata["partial_episodes"] == [1]
    assert len(transitions.episode_returns()) == 1
    with pytest.raises(DatasetError, match="--until-step 301: the buffer holds only 300 steps"):
        collect_replay(sac_run, "step_000000300", until_step=301)


def _edited_checkpoint(sac_run: Path, tmp_path: Path, **changes: np.ndarray | None) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(sac_run, copy)
    path = copy / "checkpoints" / "step_000000200" / "agent.npz"
    arrays = load_arrays(path)
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    save_arrays(path, arrays)
    return copy


def test_replay_refusals(sac_run: Path, tmp_path: Path) -> None:
    wrapped = _edited_checkpoint(
        sac_run, tmp_path, buffer_full=np.asarray(True), buffer_pos=np.asarray(50)
    )
    with pytest.raises(DatasetError, match="wrapped around"):
        collect_replay(wrapped, "step_000000200")
    with pytest.raises(DatasetError, match=r"no checkpoint 'final' \(checkpoints: step_"):
        collect_replay(sac_run, "final")
    shutil.rmtree(wrapped)
    keys = load_arrays(sac_run / "checkpoints" / "step_000000200" / "agent.npz")
    no_buffer = _edited_checkpoint(
        sac_run, tmp_path, **{k: None for k in keys if k.startswith("buffer_")}
    )
    with pytest.raises(DatasetError, match="holds no replay buffer"):
        collect_replay(no_buffer, "step_000000200")


def test_replay_of_a_native_run(drqv2_run: Path) -> None:
    meta = json.loads((drqv2_run / "checkpoints" / "step_000000200" / "meta.json").read_text())
    episodes = collect_replay(drqv2_run, "step_000000200")
    assert sum(len(e) for e in episodes) == meta["replay"]["size"] == 200
    e = episodes[0]
    assert isinstance(e, Episode) and e.truncations[-1]
    np.testing.assert_allclose(
        e.rewards, pendulum_rewards(e.observations[:-1], e.actions), atol=1e-4
    )
    assert [len(x) for x in collect_replay(drqv2_run, "step_000000300", until_step=250)] == [
        200,
        50,
    ]
