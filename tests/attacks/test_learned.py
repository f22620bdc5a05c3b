"""The learned adversary: perturbation maps inside the budget, the authors' scaled sum bit for bit,
trace statistics, and a trained adversary attacking through the evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlkit.attacks import AttackBudget
from rlkit.attacks.evaluation import evaluate_attacks
from rlkit.attacks.learned import LearnedAttack, Perturbation, trace_scale
from rlkit.catalog import build_attack
from rlkit.config import AttackConfig, ExperimentConfig
from rlkit.envs.adversary import AdversaryEnv, make_adversary_env
from rlkit.loading import load_run
from rlkit.train import train

N = 6
LOW, HIGH = np.zeros(N), np.ones(N)


def budget(eps: float = 0.1, **kwargs: Any) -> AttackBudget:
    return AttackBudget(eps, mask=[0, 1, 1, 1, 1, 1], low=LOW, high=HIGH, **kwargs)


def test_trace_scale_is_the_authors_mean_of_max_and_mean_step_change() -> None:
    trace = np.array([[0.0, 1.0], [0.5, 1.0], [0.25, 0.0]])  # |diffs|: [.5, 0], [.25, 1]
    assert trace_scale(trace, "mean").tolist() == [0.375, 0.5]
    assert trace_scale(trace).tolist() == [(0.5 + 0.375) / 2, (1.0 + 0.5) / 2]
    # differences never cross episodes
    assert trace_scale([trace[:2], trace[2:] + 9, trace[:2]], "mean").tolist() == [0.5, 0.0]
    with pytest.raises(ValueError, match="two or more steps"):
        trace_scale(trace[:1])


@pytest.mark.parametrize("kind", ["scaled_sum", "box", "sum", "replace"])
def test_every_perturbation_stays_in_the_budget_and_the_bounds(kind: str) -> None:
    rng = np.random.default_rng(0)
    scale = np.array([1.0, 1.0, 0.5, 2.0, 1.0, 0.0])  # the last feature: scale 0 = inactive
    feature_scale = rng.uniform(0.1, 2.0, N)
    p = Perturbation.from_budget(kind, budget(0.1, scale=scale), N, feature_scale)
    assert p.active.tolist() == [1, 2, 3, 4]
    radius = 0.1 * scale[p.active] * (feature_scale[p.active] if kind == "scaled_sum" else 1)
    np.testing.assert_allclose(p.radius, radius)
    obs = rng.uniform(0, 1, (500, N)).astype(np.float32)
    actions = rng.uniform(-5, 5, (500, p.action_dim))  # far outside the action space
    out = p.apply(obs, actions)
    delta = out.astype(np.float64) - obs
    assert out.dtype == np.float32
    assert np.all(np.abs(delta[:, p.active]) <= radius + 1e-6)
    assert np.all(delta[:, [0, 5]] == 0)  # masked and zero-scale features untouched
    assert out.min() >= 0 and out.max() <= 1
    assert np.abs(delta).max() > 0.5 * radius.min()  # it does perturb


def test_scaled_sum_equals_the_authors_bscaledsum_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    mask = np.arange(1, N)
    max_perturbation = rng.uniform(0.0, 0.3, N)[mask] / 2  # float64, as their mean_diff[mask] / 2
    obs = rng.uniform(0, 1, (200, N)).astype(np.float32)
    actions = rng.uniform(-1, 1, (200, mask.size)).astype(np.float32)
    theirs = []
    for o, a in zip(obs, actions, strict=True):
        x = o.copy()
        x[mask] += a * max_perturbation  # their in-place float32 add
        theirs.append(np.clip(x, LOW.astype(np.float32), HIGH.astype(np.float32)))
    scale = np.zeros(N)
    scale[mask] = max_perturbation
    p = Perturbation.from_budget("scaled_sum", budget(1.0), N, feature_scale=scale)
    assert np.array_equal(p.apply(obs, actions), np.stack(theirs))


def test_bad_perturbation_requests_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="needs feature_scale"):
        Perturbation.from_budget("scaled_sum", budget(), N)
    with pytest.raises(ValueError, match="one per feature"):
        Perturbation.from_budget("scaled_sum", budget(), N, [1.0, 2.0])
    with pytest.raises(ValueError, match="norm linf"):
        Perturbation.from_budget("box", budget(norm="l2"), N)
    with pytest.raises(ValueError, match="perturbation must be one of"):
        Perturbation.from_budget("shift", budget(), N)
    p = Perturbation.from_budget("box", budget(), N)
    with pytest.raises(ValueError, match="5 active features"):
        p.apply(np.zeros((1, N), np.float32), np.zeros((1, 3)))


# ---------------------------------------------------------------------------------------------
# a trained adversary against a trained victim (Pendulum: tiny and fast)

TINY = {
    "env": {"id": "Pendulum-v1", "max_episode_steps": 40},
    "agent": {"name": "sac", "net_arch": [16, 16], "kwargs": {"learning_starts": 50}},
    "train": {"total_steps": 120, "eval_every": 0, "checkpoint_every": 0, "progress": False},
    "eval": {"episodes": 1},
    "run": {"tensorboard": False},
}
EPS = 0.2


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("learned")
    victim = root / "victim"
    train(None, config=ExperimentConfig.model_validate({**TINY, "run": {"dir": str(victim)}}))
    adversary = root / "adversary"
    env = {"id": "adversary", "kwargs": {"victim": str(victim), "perturbation": "box", "eps": EPS}}
    config = {**TINY, "env": {**env, "max_episode_steps": 40}, "run": {"dir": str(adversary)}}
    train(None, config=ExperimentConfig.model_validate(config))
    return {"victim": victim, "adversary": adversary}


def test_adversary_env_feeds_the_victim_the_perturbed_observation(runs: dict[str, Path]) -> None:
    env = make_adversary_env(victim=str(runs["victim"]), perturbation="box", eps=EPS)
    assert isinstance(env, AdversaryEnv)
    assert env.action_space.shape == (3,) and env.action_space.high.tolist() == [1, 1, 1]
    victim = load_run(runs["victim"]).act
    obs, _ = env.reset(seed=3)
    action = np.array([1.0, -1.0, 0.5], dtype=np.float32)
    seen = np.clip(obs + action * EPS, env.observation_space.low, env.observation_space.high)
    _, reward, _, _, info = env.step(action)
    np.testing.assert_allclose(info["perturbed_obs"], seen, atol=1e-6)
    assert reward == -info["victim_reward"]
    # the same victim action as the victim acting on the perturbed observation itself
    inner = make_adversary_env(victim=str(runs["victim"]), perturbation="box", eps=EPS).env
    inner.reset(seed=3)
    _, victim_reward, _, _, _ = inner.step(victim(seen[None].astype(np.float32))[0])
    assert victim_reward == pytest.approx(info["victim_reward"])


def test_learned_attack_from_a_run_stays_in_budget_and_spares_the_first_step(
    runs: dict[str, Path],
) -> None:
    victim = load_run(runs["victim"])
    attack = {"name": "learned", "settings": {"adversary": str(runs["adversary"])}}
    config = AttackConfig(attacks=[attack], eps=[EPS], episodes=2, stealth=False)
    out = evaluate_attacks(victim.make_env, victim.view, config, seed=0, progress=False)
    row = out["rows"][0]
    assert 0 < row["linf_max"] <= EPS + 1e-6
    trace = out["traces"][("learned", EPS)]
    for fed, clean in zip(trace.fed_obs, trace.clean_obs, strict=True):
        assert np.array_equal(fed[0], clean[0])  # the authors' victim wrapper: reset obs clean
        assert np.abs(np.asarray(fed[1:]) - np.asarray(clean[1:])).max() > 0
    assert "regret_return" in row


def test_learned_attack_loads_a_foreign_sb3_zip(tmp_path: Path) -> None:
    from gymnasium import spaces
    from stable_baselines3 import SAC

    from rlkit.agents.sb3 import SpacesEnv

    env = SpacesEnv(spaces.Box(0, 1, (N,), np.float32), spaces.Box(-1, 1, (5,), np.float32))
    model = SAC("MlpPolicy", env, policy_kwargs={"net_arch": [8]}, seed=0)
    model.save(tmp_path / "adversary.zip")
    settings = {"adversary": str(tmp_path / "adversary.zip"), "feature_scale": [0.5] * N}
    attack = build_attack("learned", torch.nn.Linear(N, 1), budget(0.2), settings)
    assert isinstance(attack, LearnedAttack)
    obs = np.random.default_rng(2).uniform(0, 1, (4, N)).astype(np.float32)
    out = attack(torch.as_tensor(obs), t=1).numpy()
    action, _ = model.predict(obs, deterministic=True)
    expected = obs.astype(np.float64)
    expected[:, 1:] += action * 0.2 * 0.5
    np.testing.assert_allclose(out, np.clip(expected, 0, 1), atol=1e-6)
    assert np.array_equal(attack(torch.as_tensor(obs), t=0).numpy(), obs)


def test_learned_attack_config_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such run directory or model zip"):
        build_attack("learned", torch.nn.Linear(N, 1), budget(), {"adversary": "nowhere"})
    (tmp_path / "adversary.zip").write_bytes(b"not a zip")
    attack = build_attack(
        "learned", torch.nn.Linear(N, 1), budget(), {"adversary": str(tmp_path / "adversary.zip")}
    )
    with pytest.raises(ValueError, match="needs feature_scale"):
        attack(torch.zeros(1, N), t=1)
    with pytest.raises(ValueError, match="victim 'nowhere': not found"):
        make_adversary_env(victim="nowhere", env={"id": "Pendulum-v1"})
    with pytest.raises(ValueError, match="not an rlkit run directory; give env"):
        make_adversary_env(victim=str(tmp_path))
