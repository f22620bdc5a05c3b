"""SB3Agent: model construction, weights-only state round trip, policy views (with
normalisation)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import stable_baselines3
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from rlkit.agents.sb3 import BUFFER_KEYS, SB3Agent
from rlkit.config import AgentConfig
from rlkit.evaluation import random_observations
from rlkit.io import load_arrays, load_torch, save_arrays, save_torch


def vec_env(env_id: str, seed: int = 0, normalize: bool = False):
    venv = DummyVecEnv([lambda: gym.make(env_id)])
    venv.seed(seed)
    return VecNormalize(venv, norm_obs=True, norm_reward=False) if normalize else venv


def spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    env = gym.make(env_id)
    return env.observation_space, env.action_space


def observations(env_id: str, count: int = 32, seed: int = 0) -> np.ndarray:
    return random_observations(gym.make(env_id), count, seed)


def assert_nested_equal(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_nested_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_nested_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


SAC_CONFIG = AgentConfig(
    name="sac", net_arch=[16, 16], kwargs={"learning_starts": 20, "batch_size": 16}
)


@pytest.fixture(scope="module")
def trained_sac() -> SB3Agent:
    """SAC after 60 steps (40 gradient updates) on Pendulum."""
    agent = SB3Agent("SAC", SAC_CONFIG, env=vec_env("Pendulum-v1"), seed=0, total_steps=60)
    agent.model.learn(60)
    return agent


# ---------------------------------------------------------------------------------------------
# construction


def test_model_kwargs_from_agent_config():
    cls = stable_baselines3.SAC
    config = AgentConfig(
        name="sac",
        net_arch=[8],
        learning_rate=0.01,
        kwargs={"gamma": 0.9, "policy_kwargs": {"log_std_init": -1.0}},
    )
    kwargs = SB3Agent._model_kwargs(cls, config, seed=3, device="cpu", total_steps=500)
    assert kwargs == {
        "seed": 3,
        "device": "cpu",
        "verbose": 0,
        "gamma": 0.9,
        "learning_rate": 0.01,
        "policy_kwargs": {"log_std_init": -1.0, "net_arch": [8]},
        "buffer_size": 1000,
    }
    assert (
        SB3Agent._model_kwargs(cls, AgentConfig(name="sac"), 0, "cpu", 5000)["buffer_size"] == 5000
    )
    assert (
        SB3Agent._model_kwargs(cls, AgentConfig(name="sac"), 0, "cpu", 10**8)["buffer_size"]
        == 1_000_000
    )
    explicit = AgentConfig(name="sac", kwargs={"buffer_size": 77})
    assert SB3Agent._model_kwargs(cls, explicit, 0, "cpu", 5000)["buffer_size"] == 77
    assert "buffer_size" not in SB3Agent._model_kwargs(
        stable_baselines3.PPO, AgentConfig(name="ppo"), 0, "cpu", 5000
    )


def test_agent_config_reaches_the_model():
    agent = SB3Agent(
        "SAC",
        AgentConfig(name="sac", net_arch=[12], learning_rate=0.005, kwargs={"gamma": 0.8}),
        spaces=spaces("Pendulum-v1"),
        total_steps=10,
    )
    assert agent.model.gamma == 0.8 and agent.model.learning_rate == 0.005
    assert agent.model.replay_buffer.buffer_size == 1000
    first = agent.model.actor.latent_pi[0]
    assert first.out_features == 12
    assert agent.action_kind == "continuous"
    assert (
        SB3Agent("PPO", AgentConfig(name="ppo"), spaces=spaces("CartPole-v1")).action_kind
        == "discrete"
    )


def test_needs_env_or_spaces():
    with pytest.raises(ValueError, match="needs an env"):
        SB3Agent("SAC", AgentConfig(name="sac"))


# ---------------------------------------------------------------------------------------------
# state round trip


def test_state_dict_round_trip_through_weights_only_files(trained_sac, tmp_path):
    state, arrays = trained_sac.state_dict(with_buffer=True)
    save_torch(tmp_path / "state.pt", state)
    save_arrays(tmp_path / "arrays.npz", arrays)
    restored = SB3Agent("SAC", SAC_CONFIG, spaces=spaces("Pendulum-v1"), seed=123, total_steps=60)
    restored.load_state_dict(
        load_torch(tmp_path / "state.pt"), load_arrays(tmp_path / "arrays.npz")
    )

    model, original = restored.model, trained_sac.model
    assert_nested_equal(model.get_parameters(), original.get_parameters())
    assert model.get_parameters()["actor.optimizer"]["state"], (
        "Adam moments must be part of the state"
    )
    assert torch.equal(model.log_ent_coef, original.log_ent_coef)
    assert (model.num_timesteps, model._n_updates, model._episode_num) == (
        60,
        original._n_updates,
        original._episode_num,
    )
    assert original._n_updates > 0
    buffer = model.replay_buffer
    assert (buffer.pos, buffer.full) == (original.replay_buffer.pos, original.replay_buffer.full)
    for key in BUFFER_KEYS:
        np.testing.assert_array_equal(
            getattr(buffer, key)[: buffer.pos],
            getattr(original.replay_buffer, key)[: buffer.pos],
            err_msg=key,
        )
    obs = observations("Pendulum-v1")
    np.testing.assert_array_equal(restored.act(obs), trained_sac.act(obs))


def test_state_dict_without_buffer(trained_sac):
    _, arrays = trained_sac.state_dict(with_buffer=False)
    assert not any(key.startswith("buffer_") for key in arrays)
    _, with_buffer = trained_sac.state_dict(with_buffer=True)
    assert len(with_buffer["buffer_rewards"]) == trained_sac.model.replay_buffer.pos > 0


def test_policy_only_load_leaves_training_state_alone(trained_sac):
    state, arrays = trained_sac.state_dict(with_buffer=True)
    restored = SB3Agent("SAC", SAC_CONFIG, spaces=spaces("Pendulum-v1"), seed=5, total_steps=60)
    restored.load_state_dict(state, arrays, policy_only=True)
    assert_nested_equal(restored.model.policy.state_dict(), trained_sac.model.policy.state_dict())
    assert restored.model.num_timesteps == 0 and restored.model.replay_buffer.pos == 0
    assert restored.model.actor.optimizer.state_dict()["state"] == {}
    obs = observations("Pendulum-v1")
    np.testing.assert_array_equal(restored.act(obs), trained_sac.act(obs))


# ---------------------------------------------------------------------------------------------
# policy views


VIEW_CASES = [
    ("SAC", "Pendulum-v1"),
    ("TD3", "Pendulum-v1"),
    ("DDPG", "Pendulum-v1"),
    ("PPO", "Pendulum-v1"),
    ("A2C", "Pendulum-v1"),
    ("PPO", "CartPole-v1"),
    ("A2C", "CartPole-v1"),
]


@pytest.mark.parametrize(("algo", "env_id"), VIEW_CASES, ids=[f"{a}-{e}" for a, e in VIEW_CASES])
def test_policy_view_squash_equals_act(algo, env_id):
    agent = SB3Agent(
        algo, AgentConfig(name=algo.lower(), net_arch=[16]), spaces=spaces(env_id), seed=1
    )
    if algo in ("PPO", "A2C") and env_id == "Pendulum-v1":
        with torch.no_grad():  # push means beyond the [-2, 2] bounds so that clipping matters
            agent.model.policy.action_net.weight.mul_(200.0)
    obs = observations(env_id)
    view = agent.policy_view()
    with torch.no_grad():
        output = view(torch.as_tensor(obs))
        actions = view.squash(output).numpy()
    expected = agent.act(obs)
    if env_id == "CartPole-v1":
        assert view.action_kind == "discrete" and output.shape == (len(obs), 2)
        np.testing.assert_array_equal(actions, expected)
    else:
        assert view.action_kind == "continuous" and output.shape == (len(obs), 1)
        np.testing.assert_allclose(actions.reshape(expected.shape), expected, rtol=0, atol=1e-5)
        if algo in ("PPO", "A2C"):
            assert view.squash_kind == "clip" and np.abs(expected).max() == pytest.approx(2.0)
        else:
            assert view.squash_kind == "tanh"
    assert not any(p.requires_grad for p in view.parameters())


def test_policy_view_is_a_frozen_copy(trained_sac):
    obs = torch.as_tensor(observations("Pendulum-v1"))
    view = trained_sac.policy_view()
    before = view(obs).clone()
    saved = {k: v.clone() for k, v in trained_sac.model.policy.state_dict().items()}
    with torch.no_grad():
        for param in trained_sac.model.actor.parameters():
            param.add_(1.0)
    try:
        assert torch.equal(view(obs), before)
    finally:
        trained_sac.model.policy.load_state_dict(saved)


def test_observation_normalisation_is_used_saved_and_folded_into_the_view():
    venv = vec_env("Pendulum-v1", normalize=True)
    agent = SB3Agent(
        "PPO",
        AgentConfig(name="ppo", net_arch=[16], kwargs={"n_steps": 32, "batch_size": 32}),
        env=venv,
        seed=2,
    )
    venv.reset()
    for _ in range(40):  # move the running statistics away from (0, 1)
        venv.step(np.array([venv.action_space.sample()]))
    mean, var = venv.obs_rms.mean.copy(), venv.obs_rms.var.copy()
    assert np.abs(mean).max() > 0.05
    obs = observations("Pendulum-v1")
    expected_normalised = np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10)
    np.testing.assert_allclose(agent.normalize(obs), expected_normalised, rtol=1e-5, atol=1e-6)
    actions = agent.act(obs)
    raw_actions, _ = agent.model.predict(obs, deterministic=True)
    assert not np.allclose(actions, raw_actions), "normalisation must change the actions"
    view = agent.policy_view()
    np.testing.assert_allclose(view.act(torch.as_tensor(obs)).numpy(), actions, atol=1e-5)

    state, arrays = agent.state_dict()
    np.testing.assert_array_equal(arrays["obs_mean"], mean)
    assert float(arrays["obs_count"]) == pytest.approx(venv.obs_rms.count)
    loaded = SB3Agent(
        "PPO",
        AgentConfig(name="ppo", net_arch=[16], kwargs={"n_steps": 32, "batch_size": 32}),
        spaces=spaces("Pendulum-v1"),
        seed=9,
    )
    loaded.load_state_dict(state, arrays, policy_only=True)
    np.testing.assert_array_equal(loaded.act(obs), actions)
    np.testing.assert_allclose(
        loaded.policy_view().act(torch.as_tensor(obs)).numpy(), actions, atol=1e-5
    )
