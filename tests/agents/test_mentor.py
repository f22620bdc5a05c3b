"""MENTOR agent: presets, schedules from beta, the perturbation on every parameter, S_top through
episode ends, the policy view (and attacks through the sparse MoE), save/load and exact resume."""

from __future__ import annotations

import csv
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rlkit.agents.dormant import exploration_std, value_mix
from rlkit.agents.mentor import MentorAgent, expectile_loss, noisy_action
from rlkit.agents.moe import MoE
from rlkit.agents.perturbation import STD_FLOOR, named_parameters
from rlkit.batch import Batch
from rlkit.io import load_torch
from rlkit.networks import EncodedPolicy

OBS = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
ACT = gym.spaces.Box(np.array([0.0, -2.0], np.float32), np.array([1.0, 2.0], np.float32))
SMALL = {
    "feature_dim": 8,
    "hidden_dim": 16,
    "expert_hidden": 6,
    "gate_hidden": 5,
    "num_experts": 4,
    "top_k": 2,
    "batch_size": 8,
    "num_expl_steps": 0,
}


def make_agent(seed: int = 0, obs_space: gym.spaces.Box = OBS, **kwargs) -> MentorAgent:
    torch.manual_seed(seed)
    return MentorAgent(obs_space, ACT, **{**SMALL, **kwargs})


def make_batch(seed: int = 0, size: int = 8, obs_shape: tuple[int, ...] = (4,)) -> Batch:
    g = torch.Generator().manual_seed(seed)
    low, high = torch.as_tensor(ACT.low), torch.as_tensor(ACT.high)
    return Batch(
        obs=torch.rand(size, *obs_shape, generator=g) * 2 - 1,
        action=low + torch.rand(size, 2, generator=g) * (high - low),
        reward=torch.randn(size, 1, generator=g),
        discount=torch.full((size, 1), 0.99),
        next_obs=torch.rand(size, *obs_shape, generator=g) * 2 - 1,
    )


def snapshot(agent: MentorAgent) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in named_parameters(agent.blend_nets()).items()}


# ---------------------------------------------------------------------------------------------
# construction, presets, schedules


def test_actor_has_the_moe_middle_and_the_ablation_a_linear():
    agent = make_agent()
    assert isinstance(agent.actor.middle, MoE) and len(agent.actor.middle.experts) == 4
    plain = make_agent(moe=False)
    assert isinstance(plain.actor.middle, torch.nn.Linear)
    assert plain.actor.middle.weight.shape == (16, 16)


def test_paper_sized_moe_has_the_authors_parameter_count():
    moe = MoE(1024)
    experts = 16 * (1024 * 256 + 256 + 256 * 1024 + 1024)
    gate = 1024 * 256 + 256 + 256 * 16 + 16
    assert sum(p.numel() for p in moe.parameters()) == experts + gate  # about 8.7M


@pytest.mark.parametrize(
    ("preset", "scale", "mode", "lam", "expectile", "every", "alpha_max", "nstep", "gamma"),
    [
        ("dmc", 0.8, "dormant", 0.6, 0.9, 10_000, 1.0, 3, 0.99),
        ("metaworld", 1.0, "fixed", 0.5, 0.9, 50_000, 0.95, 10, 0.97),
        ("adroit", 1.0, "dormant", 0.6, 0.7, 50_000, 0.9, 3, 0.99),
    ],
)
def test_presets(preset, scale, mode, lam, expectile, every, alpha_max, nstep, gamma):
    agent = make_agent(preset=preset)
    s = agent.settings
    assert (s["std_scale"], s["lambda_mode"], s["target_lambda"]) == (scale, mode, lam)
    assert (s["expectile"], s["perturb_every"], s["alpha_max"]) == (expectile, every, alpha_max)
    assert (agent.schedule.nstep, agent.schedule.gamma) == (nstep, gamma)
    assert agent.schedule.every == 2 and agent.schedule.batch_size == 8


def test_explicit_arguments_beat_the_preset_and_metaworld_critic_is_regularised():
    agent = make_agent(preset="metaworld", expectile=0.6, nstep=3)
    assert agent.settings["expectile"] == 0.6 and agent.schedule.nstep == 3
    kinds = {type(m).__name__ for m in agent.critic.q1}
    assert {"Dropout", "LayerNorm"} <= kinds
    assert "Dropout" not in {type(m).__name__ for m in make_agent().critic.q1}


def test_adroit_update_noise_wakes_up_as_the_authors_awake_std():
    agent = make_agent(preset="adroit", num_expl_steps=100)
    assert make_agent().settings["stddev_type"] == "dormant"
    assert agent.settings["stddev_type"] == "awake"
    agent.beta = 0.1  # below the target 0.2, but still in the seed steps: not awake yet
    assert agent.update_stddev(100) == agent.stddev and agent.awaken_step is None
    assert agent.update_stddev(150) == 1.0 and agent.awaken_step == 150  # linear(1.0,0.1,...)
    agent.beta = 0.5  # awake for good: max(dormant std, schedule since 150)
    dormant = 1.0 / (1.0 + np.exp(-10 * (0.5 - 0.2)))
    assert agent.update_stddev(250_150) == pytest.approx(max(dormant, 0.55))
    agent.beta = 0.0
    assert agent.update_stddev(250_150) == pytest.approx(0.55)
    assert agent.update_stddev(900_000) == pytest.approx(max(agent.stddev, 0.1))
    state = agent.state_dict()
    twin = make_agent(preset="adroit", num_expl_steps=100)
    twin.load_state_dict(state)
    assert twin.awaken_step == 150  # resumes awake


@pytest.mark.parametrize("beta", [0.0, 0.15, 0.2, 0.6])
def test_stddev_lambda_and_alpha_follow_beta(beta):
    agent = make_agent()
    agent.beta = beta
    assert agent.stddev == pytest.approx(0.8 / (1 + np.exp(-10 * (beta - 0.2))))
    assert agent.lambda_ == pytest.approx(0.6 / (1 + np.exp(50 * (beta - 0.2))))
    assert agent.alpha == pytest.approx(min(max(0.2, 1 - 2 * beta), 1.0))
    mw = make_agent(preset="metaworld")
    mw.beta = beta
    assert mw.lambda_ == 0.5 and mw.stddev == pytest.approx(exploration_std(beta, 1.0))
    assert mw.alpha == pytest.approx(min(max(0.2, 1 - 2 * beta), 0.95))


def test_expectile_loss_by_hand():
    diff = torch.tensor([1.0, -2.0])  # V above Q weighs 1 - tau, below weighs tau
    assert float(expectile_loss(diff, 0.9)) == pytest.approx((0.1 * 1 + 0.9 * 4) / 2)


def test_noisy_action_clamps_with_a_straight_through_gradient():
    torch.manual_seed(0)
    mean = torch.tensor([[0.99, -0.99]], requires_grad=True)
    action = noisy_action(mean, std=10.0, clip=0.3)
    assert torch.all(action.abs() <= 1.0) and torch.all((action - mean).abs() <= 0.3 + 1e-6)
    action.sum().backward()
    assert torch.equal(mean.grad, torch.ones_like(mean))


# ---------------------------------------------------------------------------------------------
# acting and updating


def test_exploration_uniform_then_sigma_from_beta():
    agent = make_agent(num_expl_steps=5)
    obs = np.zeros((2000, 4), np.float32)
    greedy = agent.act(obs[:1], 0, explore=False)
    torch.manual_seed(1)
    uniform = agent.act(obs, 0, explore=True)
    assert np.all(uniform >= ACT.low) and np.all(uniform <= ACT.high)
    assert uniform[:, 1].std() == pytest.approx(4 / np.sqrt(12), rel=0.05)  # U(-2, 2)
    agent.beta = 0.2  # sigma = 0.4 in [-1, 1] units: 0.8 in env units for the second dimension
    noisy = agent.act(obs, 10, explore=True)
    centred = noisy[:, 1] - greedy[0, 1]
    assert np.abs(centred).std() < 1.0 and centred.std() == pytest.approx(0.8, rel=0.08)


def test_update_reports_and_uses_beta_and_keeps_eval_mode():
    agent = make_agent()
    metrics = agent.update(make_batch(), 100)
    for key in ("critic_loss", "actor_loss", "value_loss", "aux_loss", "dormant_ratio", "lambda"):
        assert np.isfinite(metrics[key])
    assert metrics["stddev"] == pytest.approx(exploration_std(agent.beta))
    assert metrics["lambda"] == pytest.approx(value_mix(agent.beta))
    assert not any(m.training for m in agent.actor.modules())


def test_pre_tanh_penalty_is_opt_in_and_pulls_a_saturated_actor_back():
    with pytest.raises(ValueError, match="pre_tanh_penalty"):
        make_agent(pre_tanh_penalty=-1.0)
    assert make_agent().pre_tanh_penalty == 0.0  # the authors' actor loss by default
    batch, c = make_batch(), 1e-3
    for penalty in (0.0, c):
        # a saturated actor (head bias -20) and a critic flat in the action (all weights 0;
        # its update then moves the output bias only), no aux loss, no clip, no gate dropout:
        # the actor's only gradient is the penalty's, 2 c mu / (B A) per pre-tanh mean
        agent = make_agent(
            pre_tanh_penalty=penalty, aux_loss_scale=0.0, actor_grad_clip=0.0, gate_dropout=0.0
        )
        with torch.no_grad():
            agent.actor.head.bias.fill_(-20.0)
            for p in list(agent.critic.parameters()) + list(agent.critic_target.parameters()):
                p.zero_()
            mu = agent.actor(agent.features(batch.obs.numpy()))
        grads: list[torch.Tensor] = []
        bias = agent.actor.head.bias
        agent.actor_opt.register_step_pre_hook(
            lambda opt, *_, grads=grads, bias=bias: grads.append(bias.grad.clone())
        )
        before = agent.actor.head.bias.detach().clone()
        agent.update(batch, 100)
        expected = 2 * penalty * mu.sum(0) / mu.numel()
        assert torch.allclose(grads[0], expected, rtol=1e-5, atol=1e-12)
        moved = agent.actor.head.bias.detach() - before
        if penalty:
            assert bool((moved > 0).all())  # Adam's first step: +lr toward 0
        else:
            assert bool((moved == 0).all())  # no gradient at all: stuck at -20


def test_actor_gradient_is_clipped_to_the_authors_norm():
    agent = make_agent(lr=1.0)  # Adam's first step moves each weight by ~lr whatever the grad;
    agent.update(make_batch(), 100)  # so check the clipped norm itself, with a hook on step()
    grads = []
    agent.actor_opt.register_step_pre_hook(
        lambda opt, *_: grads.append(
            torch.linalg.vector_norm(
                torch.stack(
                    [
                        torch.linalg.vector_norm(p.grad)
                        for p in agent.actor.parameters()
                        if p.grad is not None
                    ]
                )
            )
        )
    )
    agent.update(make_batch(1), 100)
    assert float(grads[0]) <= 0.001 * (1 + 1e-4)


@pytest.mark.parametrize("bf16", [False, True])
def test_pixel_update_trains_encoder_through_the_critic_only(bf16: bool):
    pix = gym.spaces.Box(0, 255, (6, 16, 16), np.uint8)
    agent = make_agent(obs_space=pix, encoder_bf16=bf16)
    assert agent.encoder.bf16 == bf16
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (8, 6, 16, 16), generator=g, dtype=torch.uint8)
    batch = Batch(frames, torch.zeros(8, 2), torch.ones(8, 1), torch.full((8, 1), 0.9), frames)
    before = [p.detach().clone() for p in agent.encoder.parameters()]
    agent.update(batch, 100)
    assert any(
        not torch.equal(a, p) for a, p in zip(before, agent.encoder.parameters(), strict=True)
    )
    assert agent.act(frames[:2].numpy(), 100).shape == (2, 2)


def test_sa_penalty_joins_the_actor_loss_in_eval_mode_and_is_reported() -> None:
    from rlkit.agents.sa import sa_regularizer, tanh_mean_divergence

    plain, regularised = make_agent(seed=3), make_agent(seed=3, sa_kappa=5.0, sa_eps=0.2)
    batch = make_batch()
    torch.manual_seed(0)
    metrics_plain = plain.update(batch, 50)
    torch.manual_seed(0)
    metrics = regularised.update(batch, 50)
    assert "sa_regularizer" not in metrics_plain and metrics["sa_regularizer"] > 0
    # value nets and critics got the same update; the actors differ by the penalty's gradient
    for name in ("value", "critic"):
        for a, b in zip(
            getattr(plain, name).parameters(), getattr(regularised, name).parameters(), strict=True
        ):
            torch.testing.assert_close(a, b)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(plain.actor.parameters(), regularised.actor.parameters(), strict=True)
    )
    # SA-DDPG's divergence at the SGLD maximiser, the actor without its gate dropout
    regularised.set_training(True)
    body = EncodedPolicy(regularised.encoder, regularised.actor)
    regularised.actor.eval()
    expected = sa_regularizer(body, batch.obs, 0.2, 10, None, torch.Generator().manual_seed(1),
                              tanh_mean_divergence)  # fmt: skip
    regularised.actor.train()
    torch.manual_seed(1)
    assert float(regularised.sa_penalty(batch.obs)) == pytest.approx(float(expected), rel=1e-5)
    assert regularised.actor.training  # restored, whichever mode it was in
    regularised.set_training(False)
    regularised.sa_penalty(batch.obs)
    assert not regularised.actor.training
    with pytest.raises(ValueError, match="sa_kappa"):
        make_agent(sa_kappa=-1.0)
    fused = gym.spaces.Dict({"pixels": gym.spaces.Box(0, 255, (3, 16, 16), np.uint8), "state": OBS})
    with pytest.raises(ValueError, match="sa_kappa needs Box"):
        make_agent(obs_space=fused, sa_kappa=1.0)


# ---------------------------------------------------------------------------------------------
# perturbation and S_top


def stored_agents(agent: MentorAgent, count: int = 3) -> list[dict[str, torch.Tensor]]:
    """Offer ``count`` distinct parameter sets to the agent's S_top via episode ends."""
    members = []
    for i in range(count):
        torch.manual_seed(100 + i)
        with torch.no_grad():
            for p in named_parameters(agent.blend_nets()).values():
                p.copy_(torch.randn_like(p))
        members.append(snapshot(agent))
        agent.on_episode_end({"episode_return": float(i), "episode_length": 10})
    return members


@pytest.mark.parametrize(("beta", "alpha"), [(0.1, 0.8), (0.7, 0.2), (0.0, 1.0)])
def test_task_oriented_perturbation_blends_every_parameter_by_hand(beta, alpha):
    agent = make_agent()
    agent.update(make_batch(), 100)  # optimiser state to reset
    members = stored_agents(agent)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in named_parameters(agent.blend_nets()).values():
            p.copy_(torch.randn_like(p))
    theta = snapshot(agent)
    agent.beta = beta
    used = agent.perturb(torch.Generator().manual_seed(9))
    assert used == pytest.approx(alpha)
    after = snapshot(agent)
    g = torch.Generator().manual_seed(9)
    for name in theta:  # the stored order is named_parameters' order, the draw order too
        stack = torch.stack([m[name] for m in members])
        mean, std = stack.mean(0), stack.std(0).clamp(min=STD_FLOOR)
        phi = mean + std * torch.randn(mean.shape, generator=g)
        torch.testing.assert_close(after[name], alpha * theta[name] + (1 - alpha) * phi)
        if alpha < 1:
            assert not torch.equal(after[name], theta[name]), name
    prefixes = {n.split(".")[0] for n in theta}
    assert prefixes == {"actor", "critic", "critic_target", "value"}
    assert any(".experts.3." in n for n in theta) and any(".gate." in n for n in theta)
    assert all(len(opt.state) == 0 for opt in agent.optimisers().values())
    assert agent.perturbations == 1


def test_perturbation_fires_every_k_updates():
    agent = make_agent(perturb_every=3)
    stored_agents(agent, 2)
    counts = [agent.update(make_batch(i), 100)["perturbations"] for i in range(7)]
    assert counts == [0, 0, 1, 1, 1, 2, 2]


def test_reset_perturbation_blends_toward_a_fresh_init():
    agent = make_agent(perturbation="reset")
    agent.beta = 0.3  # alpha 0.4
    with torch.no_grad():
        agent.critic.trunk[0].bias.fill_(1.0)
        agent.critic.trunk[1].weight.fill_(3.0)  # LayerNorm: fresh value 1
    before = snapshot(agent)
    agent.perturb()
    after = snapshot(agent)
    torch.testing.assert_close(after["critic.trunk.0.bias"], torch.full((8,), 0.4))
    torch.testing.assert_close(after["critic.trunk.1.weight"], torch.full((8,), 0.4 * 3 + 0.6))
    assert all(not torch.equal(after[k], before[k]) for k in before if before[k].dim() == 2)
    assert len(agent.best) == 0  # reset mode keeps no S_top
    agent.on_episode_end({"episode_return": 1.0})
    assert len(agent.best) == 0


def test_no_perturbation_ablation_never_changes_weights_outside_updates():
    agent = make_agent(perturbation="none", perturb_every=1)
    agent.update(make_batch(), 100)
    assert agent.perturbations == 0


def test_best_agents_through_episode_ends_keep_the_highest_returns():
    agent = make_agent(best_agents=2)
    for ret in (3.0, 1.0, 0.5, 2.0):
        agent.on_episode_end({"episode_return": ret})
    assert sorted(agent.best.returns) == [2.0, 3.0]
    per_member = sum(p.numel() for p in named_parameters(agent.blend_nets()).values())
    assert agent.best.nbytes() == 2 * 4 * per_member


def test_empty_best_set_skips_the_blend_but_resets_optimisers():
    agent = make_agent()
    agent.update(make_batch(), 100)
    before = snapshot(agent)
    agent.perturb()
    assert all(torch.equal(before[k], v) for k, v in snapshot(agent).items())
    assert all(len(opt.state) == 0 for opt in agent.optimisers().values())


# ---------------------------------------------------------------------------------------------
# policy view, attacks, persistence


def test_policy_view_equals_act_and_is_deterministic():
    agent = make_agent(gate_dropout=0.5)
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 4)).astype(np.float32)
    view = agent.policy_view()
    x = torch.as_tensor(obs)
    np.testing.assert_allclose(view.squash(view(x)).numpy(), agent.act(obs), rtol=1e-5, atol=1e-6)
    assert torch.equal(view(x), view(x))
    live = agent.policy_view(live=True)
    agent.update(make_batch(), 100)
    np.testing.assert_allclose(live.squash(live(x)).detach().numpy(), agent.act(obs), atol=1e-6)
    assert not torch.allclose(view(x), live(x))


@pytest.mark.parametrize(
    "engine",
    ["autograd", pytest.param("compiled", marks=pytest.mark.slow)],  # compiles ~80 s
)
def test_attack_engines_differentiate_through_the_sparse_moe(engine):
    from rlkit.attacks import AttackBudget, make_attack

    agent = make_agent()
    assert agent.actor.middle.sparse
    view = agent.policy_view()
    obs = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (6, 4)).astype(np.float32))
    x = obs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(view(x).square().sum(), x)
    assert torch.all(torch.isfinite(grad)) and grad.abs().sum() > 0
    attack = make_attack("fgsm", view, AttackBudget(eps=0.1), engine=engine)
    moved = attack(obs)
    assert attack.engine_stats[f"{engine}_calls"] == 1
    assert torch.all(torch.isfinite(moved)) and not torch.equal(moved, obs)
    assert float((moved - obs).abs().max()) <= 0.1 + 1e-6


def test_save_load_round_trip_continues_identically(tmp_path):
    agent = make_agent(perturb_every=2)
    stored_agents(agent, 2)
    agent.update(make_batch(0), 100)
    agent.save(tmp_path)
    assert set(load_torch(tmp_path / "agent.pt")) >= {"best", "counters", "value_opt"}
    twin = make_agent(seed=9, perturb_every=2)
    twin.load(tmp_path)
    assert twin.best.returns == agent.best.returns and twin.n_updates == 1
    outs = []
    for a in (agent, twin):
        torch.manual_seed(3)
        outs.append([a.update(make_batch(i), 100) for i in range(1, 4)])
    assert outs[0] == outs[1]
    for k, v in snapshot(agent).items():
        assert torch.equal(v, snapshot(twin)[k]), k


def test_policy_only_load_copies_encoder_and_actor(tmp_path):
    agent = make_agent()
    agent.update(make_batch(), 100)
    agent.save(tmp_path)
    twin = make_agent(seed=4)
    twin.load(tmp_path, policy_only=True)
    obs = np.zeros((3, 4), np.float32)
    np.testing.assert_array_equal(twin.act(obs), agent.act(obs))
    assert not torch.equal(twin.critic.trunk[0].weight, agent.critic.trunk[0].weight)


# ---------------------------------------------------------------------------------------------
# end to end: rlkit train, then resume


N = 60
RUN = {
    "env": {"id": "Pendulum-v1", "max_episode_steps": 20},
    "agent": {
        "name": "mentor",
        "kwargs": {**SMALL, "num_expl_steps": 20, "perturb_every": 8, "best_agents": 3},
    },
    "train": {
        "total_steps": 2 * N,
        "eval_every": N,
        "eval_episodes": 1,
        "checkpoint_every": N,
        "progress": False,
    },
    "eval": {"episodes": 1},
    "run": {"tensorboard": False},
    "seed": 3,
}


def train_to(folder: Path, total: int) -> Path:
    from rlkit.train import train

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump({**RUN, "run": {**RUN["run"], "dir": str(folder / "run")}}))
    return Path(train(path, [f"train.total_steps={total}"]).path)


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as handle:
        return [
            {k: v for k, v in r.items() if not k.startswith("time/")}
            for r in csv.DictReader(handle)
        ]


def final_state(run: Path) -> dict:
    return load_torch(next(run.rglob("final/agent.pt")))


def test_train_then_resume_equals_training_in_one_go(tmp_path):
    straight = train_to(tmp_path / "straight", 2 * N)
    train_to(tmp_path / "resumed", N)
    resumed = train_to(tmp_path / "resumed", 2 * N)
    assert rows(resumed) == rows(straight)
    a, b = final_state(straight), final_state(resumed)
    assert a["counters"] == b["counters"] and a["counters"]["perturbations"] >= 2
    assert torch.equal(a["best"]["returns"], b["best"]["returns"])
    for net in ("actor", "critic", "critic_target", "value"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), (net, k)
    for k, v in a["best"]["stacks"].items():
        assert torch.equal(v, b["best"]["stacks"][k]), k


# ---------------------------------------------------------------------------------------------
# pixels fused with a proprioceptive state (Adroit, as the authors' mentor_adroit.py)

FUSED = gym.spaces.Dict(
    {
        "pixels": gym.spaces.Box(0, 255, (3, 16, 16), np.uint8),
        "state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
    }
)


def fused_batch(seed: int = 0, size: int = 8) -> Batch:
    g = torch.Generator().manual_seed(seed)
    batch = make_batch(seed, size, (3, 16, 16))
    batch.obs = torch.randint(0, 256, (size, 3, 16, 16), generator=g, dtype=torch.uint8)
    batch.next_obs = torch.randint(0, 256, (size, 3, 16, 16), generator=g, dtype=torch.uint8)
    batch.extras = {
        "state": torch.randn(size, 3, generator=g),
        "next_state": torch.randn(size, 3, generator=g),
    }
    return batch


def fused_obs(seed: int = 0, size: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "pixels": rng.integers(0, 256, (size, 3, 16, 16), dtype=np.uint8),
        "state": rng.normal(size=(size, 3)).astype(np.float32),
    }


def by_hand_fused_trunk(trunk: torch.nn.Module, pixels: torch.Tensor, state: torch.Tensor):
    """The authors' Actor/Critic/VNetwork front: trunk, then StateEncoder (written out)."""
    lin, ln = trunk.trunk[0], trunk.trunk[1]
    h = torch.tanh(
        torch.nn.functional.layer_norm(lin(pixels), ln.normalized_shape, ln.weight, ln.bias)
    )
    enc, fus = trunk.state.state_encoder, trunk.state.fusion
    s = enc[2](torch.relu(enc[0](state)))
    return fus[2](torch.relu(fus[0](h + s)))


def test_fused_networks_put_the_state_after_each_trunk_as_the_authors():
    agent = make_agent(obs_space=FUSED)
    pixels = torch.rand(5, agent.encoder.repr_dim)
    state = torch.randn(5, 3)
    features = torch.cat([pixels, state], dim=-1)
    action = torch.rand(5, 2) * 2 - 1
    actor, critic, value = agent.actor, agent.critic, agent.value
    h = by_hand_fused_trunk(actor.trunk, pixels, state)
    mean = actor.head(torch.relu(actor.middle(torch.relu(actor.input(h)))[0]))
    torch.testing.assert_close(actor(features), mean)
    hq = torch.cat([by_hand_fused_trunk(critic.trunk, pixels, state), action], dim=-1)
    q1, q2 = critic(features, action)
    torch.testing.assert_close(q1, critic.q1(hq))
    torch.testing.assert_close(q2, critic.q2(hq))
    torch.testing.assert_close(
        value(features), value.v(by_hand_fused_trunk(value.trunk, pixels, state))
    )
    # each network has its own fusion: state 3 -> hidden 16 -> feature 8, 8 -> 16 -> 8
    sizes = [tuple(p.shape) for p in actor.trunk.state.parameters()]
    assert sizes == [(16, 3), (16,), (8, 16), (8,), (16, 8), (16,), (8, 16), (8,)]
    assert actor.trunk.state is not critic.trunk.state is not value.trunk.state
    names = agent.blended_names()
    for net in ("actor", "critic", "critic_target", "value"):
        assert f"{net}.trunk.state.state_encoder.0.weight" in names  # perturbation blends them


def test_fused_act_takes_a_dict_batch_and_uses_the_state():
    agent = make_agent(obs_space=FUSED)
    obs = fused_obs()
    with torch.no_grad():
        pixels = agent.encoder(torch.as_tensor(obs["pixels"]))
        mean = torch.tanh(agent.actor(torch.cat([pixels, torch.as_tensor(obs["state"])], -1)))
    np.testing.assert_allclose(agent.act(obs), agent.to_env_action(mean.numpy()), rtol=1e-6)
    moved = {**obs, "state": obs["state"] + 1.0}
    assert not np.allclose(agent.act(moved), agent.act(obs))
    with pytest.raises(ValueError, match="dict batches"):
        agent.act(obs["pixels"])


def fused_update_metrics(agent: MentorAgent, batch: Batch) -> dict[str, float]:
    twin = make_agent(obs_space=FUSED, **FUSED_PROBE)
    twin.load_state_dict(agent.state_dict())
    torch.manual_seed(11)
    return twin.update(batch, 100)


FUSED_PROBE = {"lambda_mode": "fixed", "target_lambda": 0.0, "std_scale": 0.0}


def test_fused_update_reads_state_for_q_and_next_state_for_the_target():
    """With lambda 0 and no noise, Q depends on (obs, state) only and the TD target on
    (next_obs, next_state) only: moving one state moves exactly one of the two."""
    agent = make_agent(obs_space=FUSED, **FUSED_PROBE)
    batch = fused_batch()
    base = fused_update_metrics(agent, batch)
    assert base == fused_update_metrics(agent, batch)  # same seed, same update
    moved = fused_batch()
    moved.extras["state"] = moved.extras["state"] + 1.0
    now = fused_update_metrics(agent, moved)
    assert now["q"] != base["q"] and now["target_q"] == base["target_q"]
    moved = fused_batch()
    moved.extras["next_state"] = moved.extras["next_state"] + 1.0
    then = fused_update_metrics(agent, moved)
    assert then["q"] == base["q"] and then["target_q"] != base["target_q"]
    plain = fused_batch()
    plain.extras = {}
    with pytest.raises(ValueError, match="lacks extras"):
        agent.update(plain, 100)


def test_fused_update_trains_each_fusion_and_round_trips(tmp_path):
    agent = make_agent(obs_space=FUSED)
    before = snapshot(agent)
    agent.update(fused_batch(), 100)
    after = snapshot(agent)
    for net in ("actor", "critic", "value"):
        key = f"{net}.trunk.state.state_encoder.0.weight"
        assert not torch.equal(before[key], after[key]), key
    agent.save(tmp_path)
    state = load_torch(tmp_path / "agent.pt")
    assert set(state) == set(make_agent().state_dict()) | {"encoder_opt"}  # same format
    twin = make_agent(seed=5, obs_space=FUSED)
    twin.load(tmp_path)
    obs = fused_obs(1)
    np.testing.assert_array_equal(twin.act(obs), agent.act(obs))
    torch.manual_seed(2)
    a = agent.update(fused_batch(3), 101)
    torch.manual_seed(2)
    assert twin.update(fused_batch(3), 101) == a


def test_fused_policy_view_attacks_pixels_with_the_state_as_context():
    agent = make_agent(obs_space=FUSED)
    agent.update(fused_batch(), 100)
    view = agent.policy_view()
    obs = fused_obs(2)
    pixels = torch.as_tensor(obs["pixels"]).float().requires_grad_(True)
    with pytest.raises(ValueError, match="set_context"):
        view(pixels)
    view.body.set_context(torch.as_tensor(obs["state"]))
    out = view(pixels)
    np.testing.assert_allclose(view.squash(out).detach().numpy(), agent.act(obs), rtol=1e-5)
    out.sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0  # gradients reach the pixels


def test_drqv2_refuses_fused_observations_clearly():
    from rlkit.agents.drqv2 import DrQV2Agent

    with pytest.raises(ValueError, match="supported by mentor only"):
        DrQV2Agent(FUSED, ACT)


ADROIT_SMALL = [
    "env.kwargs.size=16",
    "agent.net_arch=[16]",
    "agent.kwargs.feature_dim=8",
    "agent.kwargs.expert_hidden=6",
    "agent.kwargs.gate_hidden=5",
    "agent.kwargs.num_experts=4",
    "agent.kwargs.top_k=2",
    "agent.kwargs.batch_size=8",
    "agent.kwargs.num_expl_steps=10",
    "agent.kwargs.perturb_every=6",
    "agent.kwargs.best_agents=2",
    "train.replay_size=500",
    "train.log_every=10",
    "train.checkpoint_every=30",
    "train.eval_every=60",
    "train.eval_episodes=1",
    "eval.episodes=1",
    "run.tensorboard=false",
    "train.progress=false",
]


def train_adroit(folder: Path, total: int) -> Path:
    from rlkit.train import train

    config = Path(__file__).parents[2] / "configs" / "adroit" / "mentor_door.yaml"
    overrides = [*ADROIT_SMALL, f"train.total_steps={total}", f"run.dir={folder}"]
    return Path(train(config, overrides).path)


@pytest.mark.slow
def test_adroit_door_config_trains_fused_pixels_and_state_and_resumes_exactly(tmp_path):
    pytest.importorskip("gymnasium_robotics")
    straight = train_adroit(tmp_path / "straight", 60)
    train_adroit(tmp_path / "resumed", 30)
    resumed = train_adroit(tmp_path / "resumed", 60)
    assert rows(resumed) == rows(straight)
    a, b = final_state(straight), final_state(resumed)
    assert a["actor"]["trunk.state.state_encoder.0.weight"].shape == (16, 24)  # the hand state
    assert a["encoder"]["convnet.0.weight"].shape[1] == 3  # one RGB frame
    assert a["counters"] == b["counters"]
    assert (a["counters"]["n_updates"], a["counters"]["perturbations"]) == (26, 4)  # 10..60 by 2
    for net in ("encoder", "actor", "critic", "critic_target", "value"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), (net, k)
