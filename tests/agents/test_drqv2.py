"""DrQ-v2 agent: schedules, action scaling, acting, update known answers, state, policy view."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlkit.agents.drqv2 import DrQV2Agent, schedule
from rlkit.batch import Batch
from rlkit.io import load_torch, save_torch

OBS_SPACE = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT_SPACE = gym.spaces.Box(np.array([0.0, -1.0], np.float32), np.array([1.0, 3.0], np.float32))


def make_agent(seed: int = 0, **kwargs) -> DrQV2Agent:
    torch.manual_seed(seed)
    options = {
        "hidden_dim": 16,
        "batch_size": 8,
        "num_expl_steps": 10,
        "stddev_schedule": "linear(1.0,0.1,100)",
    }
    return DrQV2Agent(OBS_SPACE, ACT_SPACE, **{**options, **kwargs})


def make_batch(size: int = 8, seed: int = 0, discount: float = 0.99) -> Batch:
    g = torch.Generator().manual_seed(seed)
    low, high = torch.as_tensor(ACT_SPACE.low), torch.as_tensor(ACT_SPACE.high)
    return Batch(
        obs=torch.rand(size, 3, generator=g) * 2 - 1,
        action=low + torch.rand(size, 2, generator=g) * (high - low),
        reward=torch.randn(size, 1, generator=g),
        discount=torch.full((size, 1), discount),
        next_obs=torch.rand(size, 3, generator=g) * 2 - 1,
    )


def obs_batch(count: int = 16, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, 3)).astype(np.float32)


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# schedules


@pytest.mark.parametrize(
    ("spec", "step", "expected"),
    [
        ("linear(1.0,0.1,100)", 50, 0.55),
        ("linear(1.0,0.1,100)", 0, 1.0),
        ("linear(1.0,0.1,100)", 100, 0.1),
        ("linear(1.0,0.1,100)", 10_000, 0.1),
        ("linear( 1.0 , 0.1 , 100 )", 25, 0.775),
        ("linear(0,2,10)", 5, 1.0),
        (0.3, 12345, 0.3),
        (2, 0, 2.0),
    ],
)
def test_schedule_values(spec, step, expected):
    assert schedule(spec, step) == pytest.approx(expected)


@pytest.mark.parametrize(
    "spec", ["cosine(1.0,0.1,100)", "linear(1.0,0.1)", "fast", "linear(1.0,0.1,100"]
)
def test_bad_schedule_raises(spec):
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule(spec, 10)


# ---------------------------------------------------------------------------------------------
# construction and acting


def test_discrete_action_space_is_rejected():
    with pytest.raises(ValueError, match="continuous"):
        DrQV2Agent(OBS_SPACE, gym.spaces.Discrete(3))


def test_action_scaling_round_trip():
    agent = make_agent()
    np.testing.assert_allclose(
        agent.to_env_action(np.array([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]])),
        [[0.0, -1.0], [1.0, 3.0], [0.5, 1.0]],
    )
    actions = np.random.default_rng(0).uniform(ACT_SPACE.low, ACT_SPACE.high, (20, 2))
    np.testing.assert_allclose(
        agent.to_env_action(agent.to_unit_action(actions)), actions, atol=1e-6
    )


def test_eval_action_is_deterministic_tanh_mean_and_uses_no_randomness():
    agent = make_agent()
    obs = obs_batch()
    rng_before = torch.get_rng_state()
    action = agent.act(obs, step=0, explore=False)
    assert torch.equal(torch.get_rng_state(), rng_before)
    with torch.no_grad():
        expected = agent.to_env_action(torch.tanh(agent.actor(torch.as_tensor(obs))).numpy())
    np.testing.assert_allclose(action, expected, atol=1e-6)
    np.testing.assert_array_equal(agent.act(obs, explore=False), action)
    assert agent.act(obs[0], explore=False).shape == (1, 2)


def test_exploration_is_uniform_then_noisy_within_bounds():
    agent = make_agent()
    obs = np.repeat(obs_batch(1), 2000, axis=0)
    mean = agent.act(obs[:1], explore=False)[0]
    torch.manual_seed(0)
    early = agent.act(obs, step=5, explore=True)  # step < num_expl_steps: uniform in the box
    assert (early >= ACT_SPACE.low).all() and (early <= ACT_SPACE.high).all()
    np.testing.assert_allclose(early.mean(axis=0), (ACT_SPACE.low + ACT_SPACE.high) / 2, atol=0.1)
    late = agent.act(obs, step=100, explore=True)  # std 0.1 (unit scale) around the mean
    assert (late >= ACT_SPACE.low).all() and (late <= ACT_SPACE.high).all()
    unit_std = agent.to_unit_action(late).std(axis=0)
    assert unit_std == pytest.approx([0.1, 0.1], rel=0.25)
    np.testing.assert_allclose(np.median(late, axis=0), mean, atol=0.05)


# ---------------------------------------------------------------------------------------------
# updates


def test_update_without_bootstrap_has_known_critic_loss():
    """discount 0 (terminated): the target is the reward, with the action mapped to [-1, 1]."""
    agent = make_agent()
    batch = make_batch(discount=0.0)
    unit = torch.as_tensor(agent.to_unit_action(batch.action.numpy()))
    with torch.no_grad():
        q1, q2 = agent.critic(batch.obs, unit)
        expected = (F.mse_loss(q1, batch.reward) + F.mse_loss(q2, batch.reward)).item()
    metrics = agent.update(batch, step=50)
    assert metrics["critic_loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["q"] == pytest.approx(q1.mean().item(), rel=1e-5)
    assert metrics["stddev"] == pytest.approx(0.55)
    assert set(metrics) == {"critic_loss", "actor_loss", "q", "stddev"}


def test_update_moves_target_critic_by_tau():
    agent = make_agent(critic_target_tau=0.25)
    target_before = clone_state(agent.critic_target)
    actor_before = clone_state(agent.actor)
    agent.update(make_batch(), step=0)
    critic_after = clone_state(agent.critic)
    for name, value in agent.critic_target.state_dict().items():
        expected = target_before[name] + 0.25 * (critic_after[name] - target_before[name])
        torch.testing.assert_close(value, expected)
    assert any(not torch.equal(actor_before[k], v) for k, v in agent.actor.state_dict().items())


def test_state_dict_round_trip_continues_identically(tmp_path):
    agent = make_agent(seed=0)
    for step in range(3):
        agent.update(make_batch(seed=step), step)
    save_torch(tmp_path / "agent.pt", agent.state_dict())
    state = load_torch(tmp_path / "agent.pt")  # weights-only
    assert set(state) == {"actor", "critic", "critic_target", "actor_opt", "critic_opt"}
    copy = make_agent(seed=1)
    copy.load_state_dict(state)
    assert copy.actor_opt.state_dict()["state"], "Adam moments must be restored"
    results = []
    for candidate in (agent, copy):
        torch.manual_seed(7)
        results.append(candidate.update(make_batch(seed=9), 3))
    assert results[0] == results[1]
    for name in ("actor", "critic", "critic_target"):
        for (k, a), b in zip(
            getattr(agent, name).state_dict().items(),
            getattr(copy, name).state_dict().values(),
            strict=True,
        ):
            assert torch.equal(a, b), f"{name}.{k}"


def test_policy_only_load_copies_actor_only():
    trained = make_agent(seed=0)
    trained.update(make_batch(), 0)
    fresh = make_agent(seed=1)
    critic_before = clone_state(fresh.critic)
    fresh.load_state_dict(trained.state_dict(), policy_only=True)
    obs = obs_batch()
    np.testing.assert_array_equal(fresh.act(obs), trained.act(obs))
    assert all(torch.equal(critic_before[k], v) for k, v in fresh.critic.state_dict().items())


# ---------------------------------------------------------------------------------------------
# policy view


def test_policy_view_squash_equals_act_and_is_frozen_copy():
    agent = make_agent()
    agent.update(make_batch(), 0)
    obs = obs_batch(32)
    view = agent.policy_view()
    assert view.action_kind == "continuous" and view.squash_kind == "tanh"
    with torch.no_grad():
        output = view(torch.as_tensor(obs))
    assert output.shape == (32, 2)
    np.testing.assert_allclose(view.squash(output).numpy(), agent.act(obs), rtol=0, atol=1e-5)
    assert not any(p.requires_grad for p in view.parameters())
    agent.update(make_batch(seed=3), 1)  # later training does not change the view
    with torch.no_grad():
        assert torch.equal(view(torch.as_tensor(obs)), output)


def test_sa_penalty_joins_the_actor_loss_and_is_reported() -> None:
    from rlkit.agents.sa import sa_regularizer

    plain, regularised = make_agent(seed=3), make_agent(seed=3, sa_kappa=5.0, sa_eps=0.2)
    batch = make_batch()
    torch.manual_seed(0)
    metrics_plain = plain.update(batch, 50)
    torch.manual_seed(0)
    metrics = regularised.update(batch, 50)
    assert "sa_regularizer" not in metrics_plain and metrics["sa_regularizer"] > 0
    # the critics got the same update; the actors differ by the penalty's gradient
    for a, b in zip(plain.critic.parameters(), regularised.critic.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(plain.actor.parameters(), regularised.actor.parameters(), strict=True)
    )
    # the penalty is SA-DDPG's ||tanh(mu(s')) - tanh(mu(s))||^2 at the SGLD maximiser
    obs = batch.obs
    gen = torch.Generator().manual_seed(1)

    def divergence(actor, clean, moved):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            ref = torch.tanh(actor(clean))
        return ((torch.tanh(actor(moved)) - ref) ** 2).sum(-1)

    value = sa_regularizer(regularised.actor, obs, 0.2, 10, None, gen, divergence)
    torch.manual_seed(1)
    assert float(regularised.sa_penalty(obs)) == pytest.approx(float(value), rel=1e-5)
    with pytest.raises(ValueError, match="sa_kappa"):
        make_agent(sa_kappa=-1.0)
