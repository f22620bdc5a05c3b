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


# ---------------------------------------------------------------------------------------------
# pixel form: DrQ-v2's encoder, random shifts, encoder trained by the critic only

PIX_SPACE = gym.spaces.Box(0, 255, (6, 24, 24), np.uint8)  # small frames keep the tests fast
FRAMES_84 = gym.spaces.Box(0, 255, (9, 84, 84), np.uint8)


def make_pixel_agent(seed: int = 0, space: gym.spaces.Box = PIX_SPACE, **kwargs) -> DrQV2Agent:
    torch.manual_seed(seed)
    options = {"hidden_dim": 32, "feature_dim": 8, "batch_size": 4, "num_expl_steps": 10}
    return DrQV2Agent(space, ACT_SPACE, **{**options, **kwargs})


def frames(count: int = 4, seed: int = 0, space: gym.spaces.Box = PIX_SPACE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *space.shape), dtype=np.uint8)


def pixel_batch(size: int = 4, seed: int = 0, discount: float = 0.99) -> Batch:
    g = torch.Generator().manual_seed(seed)
    low, high = torch.as_tensor(ACT_SPACE.low), torch.as_tensor(ACT_SPACE.high)
    return Batch(
        obs=torch.as_tensor(frames(size, seed)),  # uint8, as the replay buffer stores them
        action=low + torch.rand(size, 2, generator=g) * (high - low),
        reward=torch.randn(size, 1, generator=g),
        discount=torch.full((size, 1), discount),
        next_obs=torch.as_tensor(frames(size, seed + 100)),
    )


def test_pixel_and_state_forms_are_chosen_by_the_observation_space():
    from rlkit.networks import FlatEncoder, PixelEncoder, RandomShift

    pixels, states = make_pixel_agent(space=FRAMES_84), make_agent()
    assert pixels.pixels and isinstance(pixels.encoder, PixelEncoder)
    assert pixels.encoder.repr_dim == 39200 and pixels.actor.trunk[0].in_features == 39200
    assert isinstance(pixels.aug, RandomShift) and pixels.aug.pad == 4
    assert pixels.encoder_opt is not None
    assert not states.pixels and isinstance(states.encoder, FlatEncoder)
    assert states.encoder_opt is None and isinstance(states.aug, torch.nn.Identity)
    defaults = DrQV2Agent(OBS_SPACE, ACT_SPACE)  # DrQ-v2's widths
    assert defaults.actor.input.out_features == 1024 and defaults.actor.trunk[0].out_features == 50
    assert defaults.schedule.start == 2000 and defaults.schedule.every == 2


def test_pixel_act_encodes_uint8_frames():
    agent = make_pixel_agent()
    obs = frames(3)
    with torch.no_grad():
        features = agent.encoder(torch.as_tensor(obs).float())
        expected = agent.to_env_action(torch.tanh(agent.actor(features)).numpy())
    np.testing.assert_allclose(agent.act(obs), expected, atol=1e-6)
    assert agent.act(obs[0]).shape == (1, 2)


def test_pixel_update_known_critic_loss_on_shifted_frames():
    """discount 0: the critic loss is the MSE to the reward of Q on the encoded, randomly
    shifted frames, the shifts drawn first from torch's RNG."""
    agent = make_pixel_agent()
    batch = pixel_batch(discount=0.0)
    unit = torch.as_tensor(agent.to_unit_action(batch.action.numpy()))
    torch.manual_seed(5)
    offsets = torch.randint(0, 9, (4, 2))
    with torch.no_grad():
        shifted = agent.aug.shift(batch.obs.float(), offsets)
        q1, q2 = agent.critic(agent.encoder(shifted), unit)
        expected = (F.mse_loss(q1, batch.reward) + F.mse_loss(q2, batch.reward)).item()
    torch.manual_seed(5)
    metrics = agent.update(batch, step=50)
    assert metrics["critic_loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["q"] == pytest.approx(q1.mean().item(), rel=1e-5)


def test_bf16_encoder_update_stays_close_to_float32():
    """encoder_bf16: the same update as float32 up to bf16 rounding (critic loss within 2%),
    float32 weights afterwards; states have no encoder to round."""
    exact, fast = make_pixel_agent(), make_pixel_agent(encoder_bf16=True)
    assert fast.encoder.bf16 and not exact.encoder.bf16
    batch = pixel_batch(discount=0.0)
    losses = []
    for agent in (exact, fast):
        torch.manual_seed(5)
        losses.append(agent.update(batch, step=50)["critic_loss"])
    assert losses[1] == pytest.approx(losses[0], rel=0.02) and losses[1] != losses[0]
    assert all(p.dtype == torch.float32 for p in fast.encoder.parameters())


def test_encoder_learns_from_the_critic_loss_only():
    """A full update and a critic-only update (same RNG) leave the encoder identical: the actor
    loss sees detached features. The critic, encoder and actor all move."""
    full, critic_only = make_pixel_agent(seed=2), make_pixel_agent(seed=2)
    critic_only.update_actor = lambda features, raw, std: (torch.zeros(()), {})  # type: ignore[method-assign]
    encoder_before, critic_before = clone_state(full.encoder), clone_state(full.critic)
    actor_before = clone_state(full.actor)
    for agent in (full, critic_only):
        torch.manual_seed(0)
        agent.update(pixel_batch(), step=50)
    for name, value in full.encoder.state_dict().items():
        assert torch.equal(value, critic_only.encoder.state_dict()[name]), name
        assert not torch.equal(value, encoder_before[name]), f"encoder {name} did not move"
    assert all(p.grad is not None for p in full.encoder.parameters())
    for name, grad in zip(
        dict(full.encoder.named_parameters()), critic_only.encoder.parameters(), strict=True
    ):
        assert torch.equal(dict(full.encoder.named_parameters())[name].grad, grad.grad), name
    assert any(not torch.equal(critic_before[k], v) for k, v in full.critic.state_dict().items())
    assert any(not torch.equal(actor_before[k], v) for k, v in full.actor.state_dict().items())


def test_clipped_sample_is_drqv2s_truncated_normal():
    from rlkit.agents.drqv2 import BOUND_EPS, clipped_sample

    mean = torch.tensor([[-0.999999, 0.0, 0.5, 0.999999]], requires_grad=True)
    torch.manual_seed(0)
    out = clipped_sample(mean, std=0.0)
    torch.testing.assert_close(out, mean.detach().clamp(-1 + BOUND_EPS, 1 - BOUND_EPS))
    out.sum().backward()  # straight-through: the clamp passes the gradient unchanged
    torch.testing.assert_close(mean.grad, torch.ones_like(mean))
    wide = clipped_sample(torch.zeros(1000, 1), std=1e6, clip=0.3)
    np.testing.assert_allclose(wide.abs().numpy(), 0.3, rtol=1e-6)  # every noise at the clip
    assert 400 < int((wide > 0).sum()) < 600
    unclipped = clipped_sample(torch.zeros(1000, 1), std=1e6)
    assert unclipped.abs().max() == pytest.approx(1 - BOUND_EPS)


def test_pixel_state_round_trip_continues_identically(tmp_path):
    agent = make_pixel_agent(seed=0)
    for step in range(2):
        agent.update(pixel_batch(seed=step), step)
    agent.save(tmp_path)
    state = load_torch(tmp_path / "agent.pt")  # weights-only
    assert set(state) == {
        "actor", "critic", "critic_target", "actor_opt", "critic_opt", "encoder", "encoder_opt"
    }  # fmt: skip
    copy = make_pixel_agent(seed=1)
    copy.load(tmp_path)
    assert copy.encoder_opt is not None and copy.encoder_opt.state_dict()["state"]
    obs = frames(5, seed=3)
    np.testing.assert_array_equal(copy.act(obs), agent.act(obs))
    results = []
    for candidate in (agent, copy):
        torch.manual_seed(7)
        results.append(candidate.update(pixel_batch(seed=9), 3))
    assert results[0] == results[1]
    for (k, a), b in zip(
        agent.encoder.state_dict().items(), copy.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k


def test_pixel_policy_only_load_takes_encoder_and_actor():
    trained = make_pixel_agent(seed=0)
    trained.update(pixel_batch(), 0)
    fresh = make_pixel_agent(seed=1)
    critic_before = clone_state(fresh.critic)
    fresh.load_state_dict(trained.state_dict(), policy_only=True)
    obs = frames(4, seed=2)
    np.testing.assert_array_equal(fresh.act(obs), trained.act(obs))
    assert all(torch.equal(critic_before[k], v) for k, v in fresh.critic.state_dict().items())


@pytest.fixture(scope="module")
def pixel_view_agent() -> DrQV2Agent:
    agent = make_pixel_agent(seed=4, space=FRAMES_84)
    g = torch.Generator().manual_seed(0)
    batch = Batch(
        obs=torch.as_tensor(frames(2, 0, FRAMES_84)),
        action=torch.rand(2, 2, generator=g),
        reward=torch.randn(2, 1, generator=g),
        discount=torch.full((2, 1), 0.99),
        next_obs=torch.as_tensor(frames(2, 1, FRAMES_84)),
    )
    agent.update(batch, 0)
    return agent


def test_pixel_policy_view_equals_act_on_raw_frames(pixel_view_agent):
    agent = pixel_view_agent
    obs = frames(3, seed=5, space=FRAMES_84)
    view = agent.policy_view()
    assert (view.action_kind, view.squash_kind) == ("continuous", "tanh")
    with torch.no_grad():
        output = view(torch.as_tensor(obs).float())  # uint8-range floats, scaled inside
    assert output.shape == (3, 2)
    np.testing.assert_allclose(view.squash(output).numpy(), agent.act(obs), rtol=0, atol=1e-5)
    assert not any(p.requires_grad for p in view.parameters())
    live = agent.policy_view(live=True)
    assert live.body.encoder is agent.encoder and live.body.actor is agent.actor


def test_pixel_policy_view_gradient_and_attack_engines(pixel_view_agent):
    from rlkit.attacks.attacks import make_attack
    from rlkit.attacks.budget import AttackBudget

    view = pixel_view_agent.policy_view()
    obs = torch.as_tensor(frames(2, seed=6, space=FRAMES_84)).float().requires_grad_(True)
    view(obs).square().sum().backward()
    assert obs.grad is not None and torch.isfinite(obs.grad).all()
    assert obs.grad.abs().sum() > 0
    clean = obs.detach()
    budget = AttackBudget(8.0, low=0.0, high=255.0)
    attack = make_attack("pgd", view, budget, engine="autograd", iterations=3, random_start=False)
    adv = attack(clean)
    assert attack.engine_stats["autograd_calls"] == 1
    assert 0 < (adv - clean).abs().max() <= 8.0 + 1e-4 and adv.min() >= 0 and adv.max() <= 255
    with torch.no_grad():
        assert not torch.equal(view(adv), view(clean))


@pytest.mark.slow
def test_pixel_policy_view_compiled_engine_matches_autograd():
    from rlkit.attacks.attacks import make_attack
    from rlkit.attacks.budget import AttackBudget
    from rlkit.attacks.engines import CompiledEngine, compile_unavailable

    if compile_unavailable():
        pytest.skip(compile_unavailable())
    agent = make_pixel_agent(seed=4)  # small frames: the compile dominates either way
    agent.update(pixel_batch(), 0)
    view = agent.policy_view()
    clean = torch.as_tensor(frames(2, seed=6)).float()
    budget = AttackBudget(8.0, low=0.0, high=255.0)
    kw = {"iterations": 3, "random_start": False}
    attack = make_attack("pgd", view, budget, engine="compiled", **kw)
    # dynamo traces the view as inductor would; aot_eager skips the slow C++ codegen
    attack.engines["compiled"] = CompiledEngine(backend="aot_eager")
    compiled = attack(clean)
    assert attack.engine_stats["compiled_calls"] == 1
    auto = make_attack("pgd", view, budget, engine="autograd", **kw)(clean)
    assert (compiled - clean).abs().max() > 0
    # the same signed-gradient steps up to float noise in the compiled kernels
    assert (compiled - auto).abs().gt(1e-3).float().mean() < 0.01


# ---------------------------------------------------------------------------------------------
# end to end on a tiny synthetic pixel env: the online loop trains, checkpoints and resumes


def test_pixel_run_trains_and_resumes_exactly(tmp_path, pixel_run):
    whole = pixel_run(tmp_path / "whole")
    pixel_run(tmp_path / "split", ["train.total_steps=20"])
    resumed = pixel_run(tmp_path / "split")
    final = load_torch(whole.final / "agent.pt")
    assert {"encoder", "encoder_opt"} <= set(final)
    again = load_torch(resumed.final / "agent.pt")
    for name in ("encoder", "actor", "critic", "critic_target"):
        for key, value in final[name].items():
            assert torch.equal(value, again[name][key]), f"{name}.{key}"
    first = load_torch(whole.checkpoints / f"step_{20:09d}" / "agent.pt")
    assert not torch.equal(
        first["encoder"]["convnet.0.weight"], final["encoder"]["convnet.0.weight"]
    )


@pytest.mark.parametrize(
    "name", ["drqv2_cartpole_swingup.yaml", "drqv2_cartpole_swingup_state.yaml"]
)
def test_dmc_configs_carry_drqv2s_settings(name):
    """The issue's settings: feature 50, hidden 1024, n-step 3, gamma 0.99, batch 256, lr 1e-4,
    tau 0.01, 4000 seed frames (2000 steps at action repeat 2), an update every 2 steps."""
    from pathlib import Path

    import yaml

    from rlkit.registry import AGENTS

    data = yaml.safe_load((Path(__file__).parents[2] / "configs" / "dmc" / name).read_text())
    agent = data["agent"]
    params = AGENTS.get("drqv2").params_model().model_validate(agent["kwargs"])
    assert (agent["name"], agent["learning_rate"], agent["net_arch"]) == ("drqv2", 1e-4, [1024])
    assert data["env"]["id"] == "dmc/cartpole-swingup"
    assert data["env"]["kwargs"]["action_repeat"] == 2
    expected = {
        "feature_dim": 50,
        "nstep": 3,
        "discount": 0.99,
        "batch_size": 256,
        "critic_target_tau": 0.01,
        "num_expl_steps": 2000,
        "update_every_steps": 2,
        "stddev_clip": 0.3,
        "stddev_schedule": "linear(1.0,0.1,100000)",
    }
    assert {key: getattr(params, key) for key in expected} == expected
    assert params.aug_pad == 4 and data["env"]["kwargs"].get("pixels", True) == (
        "state" not in name
    )
