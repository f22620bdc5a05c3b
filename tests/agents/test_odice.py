"""O-DICE: f*, weights, the projection, and the update equal to a transcription of the authors'."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from benchmarks.odice_reference import ReferenceODICE
from rlkit.agents.odice import ODICEAgent, f_star, policy_weight, project_out
from rlkit.batch import Batch

OBS, ACT = 5, 2


def spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    return (
        gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (ACT,), np.float32),
    )


def make_batch(n: int = 32, seed: int = 0, gamma: float = 0.99) -> tuple[Batch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    obs, next_obs = torch.randn(n, OBS, generator=g), torch.randn(n, OBS, generator=g)
    action = torch.rand(n, ACT, generator=g) * 2 - 1
    reward = torch.randn(n, 1, generator=g)
    terminal = (torch.rand(n, 1, generator=g) < 0.2).float()
    batch = Batch(obs, action, reward, gamma * (1 - terminal), next_obs)
    return batch, terminal.reshape(-1)


def test_f_star_values_by_hand() -> None:
    y = torch.tensor([0.0, 2.0, -4.0, -1.0])
    # chi-square: w = max(y/2 + 1, 0); y w - (w - 1)^2
    assert torch.allclose(f_star(y), torch.tensor([0.0, 3.0, -1.0, -0.75]))
    assert torch.allclose(f_star(y, "reverse_kl"), torch.exp(y - 1))


def test_policy_weight_is_relu_clipped_or_exp() -> None:
    y = torch.tensor([-1.0, 0.5, 250.0])
    assert torch.equal(policy_weight(y), torch.tensor([0.0, 0.5, 100.0]))
    assert torch.allclose(policy_weight(y, "reverse_kl", 1e9)[:2], torch.exp(y[:2] - 1))


def test_projection_is_orthogonal_to_the_forward_gradient() -> None:
    g = torch.Generator().manual_seed(3)
    gf, gb = torch.randn(50, generator=g), torch.randn(50, generator=g)
    orthogonal, coef = project_out(gf, gb)
    assert abs(float(torch.dot(orthogonal, gf))) < 1e-4
    assert torch.allclose(orthogonal + coef * gf, gb, atol=1e-6)
    # already orthogonal: unchanged, coefficient 0, so g0 + gf + gb is the true gradient
    gb_perp = gb - torch.dot(gb, gf) / torch.dot(gf, gf) * gf
    same, zero = project_out(gf, gb_perp)
    assert torch.allclose(same, gb_perp, atol=1e-6) and abs(float(zero)) < 1e-6
    # a zero forward gradient (f* flat) projects nothing
    kept, none = project_out(torch.zeros(50), gb)
    assert torch.equal(kept, gb) and float(none) == 0.0


def test_orthogonal_gradient_matches_the_formula_on_a_tiny_net() -> None:
    torch.manual_seed(0)
    agent = ODICEAgent(*spaces(), value_hidden=(4,), policy_hidden=(4,), batch_size=8)
    batch, _ = make_batch(8)
    params = agent.value_params
    before = [p.detach().clone() for p in params]
    obs, next_obs = batch.obs, batch.next_obs
    r, d = batch.reward.reshape(-1), batch.discount.reshape(-1)
    with torch.no_grad():
        tv, tn = agent.value_target(obs), agent.value_target(next_obs)
    v, vn = agent.value.both(obs), agent.value.both(next_obs)
    lam = agent.lam

    def flat(loss: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [g.reshape(-1) for g in torch.autograd.grad(loss, params, retain_graph=True)]
        )

    gf = flat(lam * f_star(r + d * tn - v).mean())
    gb = flat(lam * f_star(r + d * vn - tv).mean())
    g0 = flat((1 - lam) * v.mean())
    expected = g0 + gf + gb - (gf @ gb) / (gf @ gf) * gf
    # plain SGD with lr 1 makes the applied gradient visible in the parameter change
    agent.value_opt = torch.optim.SGD(params, lr=1.0)
    agent.update(batch, 0)
    applied = torch.cat([(b - p.detach()).reshape(-1) for b, p in zip(before, params, strict=True)])
    assert torch.allclose(applied, expected, atol=1e-5)


@pytest.mark.parametrize("rule", ["orthogonal", "true_gradient", "semi_gradient"])
def test_update_equals_the_authors_update(rule: str) -> None:
    torch.manual_seed(1)
    agent = ODICEAgent(*spaces(), update_rule=rule, value_hidden=(16, 16), policy_hidden=(16, 16))
    reference = ReferenceODICE(agent.value, agent.policy, rule)
    for step in range(3):
        batch, terminal = make_batch(32, seed=step)
        coef = reference.update(
            batch.obs, batch.action, batch.next_obs, batch.reward.reshape(-1), terminal
        )
        metrics = agent.update(batch, step)
        if rule == "orthogonal":
            assert float(metrics["parallel_coef"]) == pytest.approx(coef, rel=1e-4, abs=1e-6)
    for mine, theirs in (
        (agent.value, reference.vf),
        (agent.value_target, reference.vf_target),
        (agent.policy, reference.policy),
    ):
        for a, b in zip(mine.parameters(), theirs.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6), rule


@pytest.mark.parametrize("heads", [0, 2])
def test_policy_step_skips_zero_weights_exactly(heads: int) -> None:
    # zero-weight samples skip the policy on the CPU: the step must equal the full-batch
    # mean(weight * nll) step, also when every weight is zero or some are negative
    batch, _ = make_batch(64, seed=3)
    g = torch.Generator().manual_seed(4)
    shape = (heads, 64) if heads else (64,)
    weights = [torch.relu(torch.randn(shape, generator=g)), torch.zeros(shape)]
    weights.append(torch.randn(shape, generator=g) * (weights[0] > 0))  # negatives stay in
    for weight in weights:
        torch.manual_seed(2)
        agent = ODICEAgent(*spaces(), value_hidden=(8,), policy_hidden=(16, 16))
        torch.manual_seed(2)
        plain = ODICEAgent(*spaces(), value_hidden=(8,), policy_hidden=(16, 16))
        obs, action = batch.obs, batch.action
        loss = agent.policy_step(obs, action, weight)
        expected = (weight * -plain.policy.log_prob(obs, action)).mean()
        plain.policy_opt.zero_grad()
        expected.backward()
        plain.policy_opt.step()
        assert float(loss) == pytest.approx(float(expected), rel=1e-5, abs=1e-7)
        for a, b in zip(agent.policy.parameters(), plain.policy.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_metrics_stay_tensors_until_logged() -> None:
    agent = ODICEAgent(*spaces(), value_hidden=(8,), policy_hidden=(8,))
    metrics = agent.update(make_batch(16)[0], 0)
    assert {"value_loss", "policy_loss", "parallel_coef", "weight_max"} <= set(metrics)
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in metrics.values())


def test_save_load_and_view_act_on_raw_observations(tmp_path) -> None:
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
    act_space = gym.spaces.Box(np.array([0, -2], np.float32), np.array([1, 2], np.float32))
    agent = ODICEAgent(obs_space, act_space, value_hidden=(8,), policy_hidden=(8,))
    agent.set_obs_normalizer(np.full(OBS, 3.0), np.full(OBS, 2.0))
    agent.update(make_batch(16)[0], 0)
    obs = np.random.default_rng(0).normal(3.0, 2.0, (10, OBS)).astype(np.float32)
    actions = agent.act(obs)
    assert actions.shape == (10, 2)
    assert (actions >= act_space.low).all() and (actions <= act_space.high).all()
    view = agent.policy_view()
    assert np.allclose(view.act(torch.as_tensor(obs)).numpy(), actions, atol=1e-6)
    agent.save(tmp_path)
    other = ODICEAgent(obs_space, act_space, value_hidden=(8,), policy_hidden=(8,))
    other.load(tmp_path, policy_only=True)
    assert np.allclose(other.act(obs), actions)  # normaliser travelled with the policy
    other.load(tmp_path)
    for a, b in zip(other.value.parameters(), agent.value.parameters(), strict=True):
        assert torch.equal(a, b)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="lam"):
        ODICEAgent(*spaces(), lam=1.5)
    with pytest.raises(ValueError, match="Box"):
        ODICEAgent(spaces()[0], gym.spaces.Discrete(3))
