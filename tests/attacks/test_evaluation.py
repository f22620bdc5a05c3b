"""Attack evaluation: lock-step episodes, trace summaries, budgets from groups, end to end.

Everything runs on a tiny deterministic env (4 features in [0, 1], a few steps per episode) and
hand-built linear policy views, so every summary value is known in closed form.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from rlkit.attacks.budget import AttackBudget
from rlkit.attacks.evaluation import (
    Trace,
    build_budget,
    evaluate_attacks,
    run_batch,
    summarize_trace,
)
from rlkit.config import AttackConfig, AttackSpec, ConfigError
from rlkit.policy import PolicyView

W = [1.0, -1.0, 0.5, -0.5]  # continuous view: action = W . obs


class TinyEnv(gym.Env):
    """Observations drawn from the reset seed (independent of actions), in [0.2, 0.4]^4.

    Reward ``-|a - target(obs)|`` with ``target = obs[0] + obs[1] - obs[2]``; the episode lasts
    ``length`` steps (``3 + seed % 3`` when ``variable``). Final info: ``episode_kpis`` with the sum
    of actions and the step count.
    """

    feature_names = ["a0", "a1", "b0", "b1"]
    obs_groups = {"a": slice(0, 2), "b": slice(2, 4)}

    def __init__(self, length: int = 5, variable: bool = False, bounded: bool = True) -> None:
        super().__init__()
        high = 1.0 if bounded else np.inf
        self.observation_space = gym.spaces.Box(0.0 if bounded else -np.inf, high, (4,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-10.0, 10.0, (1,), dtype=np.float32)
        self.length, self.variable = length, variable

    def _draw(self) -> np.ndarray:
        return self._rng.uniform(0.2, 0.4, 4).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._rng = np.random.default_rng(seed)
        self.T = self.length + (seed % 3 if self.variable else 0)
        self.t, self.action_sum = 0, 0.0
        self.obs = self._draw()
        return self.obs.copy(), {}

    def step(self, action: Any):
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        target = float(self.obs[0] + self.obs[1] - self.obs[2])
        reward = -abs(a - target)
        self.t += 1
        self.action_sum += a
        self.obs = self._draw()
        done = self.t >= self.T
        info = {"episode_kpis": {"action_sum": self.action_sum, "steps": self.t}} if done else {}
        return self.obs.copy(), reward, False, done, info


def continuous_view(squash: str = "none") -> PolicyView:
    body = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        body.weight.copy_(torch.tensor([W]))
    low, high = (np.array([-10.0], np.float32), np.array([10.0], np.float32)) if squash == "clip" else (None, None)
    return PolicyView(body, "continuous", squash, low, high)


def discrete_view() -> PolicyView:
    """Logits ``[0.5, x0, -1, -1]``: argmax 0 while ``x0 < 0.5`` (always, clean), 1 when x0 > 0.5."""
    body = nn.Linear(4, 4)
    with torch.no_grad():
        body.weight.zero_()
        body.weight[1, 0] = 1.0
        body.bias.copy_(torch.tensor([0.5, 0.0, -1.0, -1.0]))
    return PolicyView(body, "discrete", "argmax")


def hand_loop(env: gym.Env, view: PolicyView, seed: int) -> tuple[list[np.ndarray], list[float], dict[str, float]]:
    """One episode, one observation at a time: observations, rewards, KPIs."""
    obs, _ = env.reset(seed=seed)
    observations, rewards = [], []
    while True:
        observations.append(obs)
        with torch.no_grad():
            action = view.squash(view(torch.as_tensor(obs[None]))).numpy()[0]
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            return observations, rewards, info["episode_kpis"]


def add_constant(c: float):
    return lambda obs, t: obs + c


# ---------------------------------------------------------------------------------------------
# run_batch


@pytest.mark.parametrize("squash", ["none", "clip"])
def test_run_batch_clean_equals_hand_loop_with_unequal_lengths(squash):
    view = continuous_view(squash)
    seeds = [10, 11, 12]  # lengths 4, 5, 3
    trace = run_batch([TinyEnv(length=3, variable=True) for _ in seeds], view, seeds, None)
    assert [len(r) for r in trace.rewards] == [4, 5, 3]
    for i, seed in enumerate(seeds):
        observations, rewards, kpis = hand_loop(TinyEnv(length=3, variable=True), view, seed)
        n = len(rewards)
        for name in ("clean_obs", "fed_obs", "actions", "clean_actions"):
            assert len(getattr(trace, name)[i]) == n, name
        np.testing.assert_array_equal(trace.stacked("clean_obs", i), np.stack(observations))
        np.testing.assert_array_equal(trace.stacked("fed_obs", i), np.stack(observations))
        np.testing.assert_allclose(trace.rewards[i], rewards, rtol=1e-6, atol=1e-7)
        assert trace.kpis[i]["steps"] == n
        assert trace.kpis[i]["action_sum"] == pytest.approx(kpis["action_sum"], abs=1e-6)
        expected_actions = np.stack(observations) @ np.array(W, np.float32)
        np.testing.assert_allclose(trace.stacked("actions", i)[:, 0], expected_actions, atol=1e-6)
        np.testing.assert_array_equal(trace.stacked("actions", i), trace.stacked("clean_actions", i))


def test_run_batch_perturb_sees_active_batch_and_time():
    calls: list[tuple[int, int]] = []

    def perturb(obs: torch.Tensor, t: int) -> torch.Tensor:
        calls.append((obs.shape[0], t))
        return obs + 0.01

    seeds = [10, 11, 12]  # lengths 4, 5, 3: batch shrinks as episodes end
    trace = run_batch([TinyEnv(length=3, variable=True) for _ in seeds], continuous_view(), seeds, perturb)
    assert calls == [(3, 0), (3, 1), (3, 2), (2, 3), (1, 4)]
    for i in range(3):
        delta = trace.stacked("fed_obs", i) - trace.stacked("clean_obs", i)
        np.testing.assert_allclose(delta, 0.01, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# summarize_trace


def test_summary_of_clean_trace_against_itself_has_zero_regret():
    seeds = [0, 1, 2]
    trace = run_batch([TinyEnv() for _ in seeds], continuous_view(), seeds, None)
    row = summarize_trace(trace, trace, "continuous")
    returns = [sum(r) for r in trace.rewards]
    assert row["return"] == pytest.approx(np.mean(returns))
    assert row["return_std"] == pytest.approx(np.std(returns))
    assert row["action_sum"] == pytest.approx(np.mean([k["action_sum"] for k in trace.kpis]))
    assert row["steps"] == 5.0
    assert row["regret_return"] == 0.0 and row["regret_action_sum"] == 0.0 and row["regret_steps"] == 0.0
    assert row["action_mae"] == 0.0
    assert row["linf_mean"] == row["linf_max"] == row["l2_mean"] == row["l2_max"] == 0.0


def test_summary_constant_perturbation_gives_known_distortion_action_error_and_regret():
    """A view with weights 0.75: a constant shift c of every feature moves each action by 3c."""
    c = 0.04
    body = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        body.weight.fill_(0.75)
    view = PolicyView(body, "continuous", "none")
    seeds = [3, 4]
    clean = run_batch([TinyEnv() for _ in seeds], view, seeds, None)
    attacked = run_batch([TinyEnv() for _ in seeds], view, seeds, add_constant(c))
    row = summarize_trace(attacked, clean, "continuous")
    assert row["linf_mean"] == pytest.approx(c, abs=1e-6)
    assert row["linf_max"] == pytest.approx(c, abs=1e-6)
    assert row["l2_mean"] == pytest.approx(2 * c, abs=1e-6)  # sqrt(4) * c
    assert row["action_mae"] == pytest.approx(0.75 * 4 * c, abs=1e-6)
    expected = []
    for i in range(len(seeds)):
        obs = clean.stacked("clean_obs", i).astype(np.float64)
        target = obs[:, 0] + obs[:, 1] - obs[:, 2]
        attacked_return = -np.abs(0.75 * (obs.sum(axis=1) + 4 * c) - target).sum()
        expected.append(attacked_return + np.abs(0.75 * obs.sum(axis=1) - target).sum())
    assert row["regret_return"] == pytest.approx(np.mean(expected), abs=1e-5)
    assert row["regret_action_sum"] == pytest.approx(0.75 * 4 * c * 5, abs=1e-5)


def test_discrete_attack_success_rate_is_fraction_of_flipped_steps():
    def flip_even_steps(obs: torch.Tensor, t: int) -> torch.Tensor:
        out = obs.clone()
        if t % 2 == 0:
            out[:, 0] = 1.0  # logit 1 = 1.0 > 0.5: argmax 0 -> 1
        return out

    seeds = [10, 11, 12]  # lengths 4, 5, 3: flipped steps 2 + 3 + 2 of 12
    view = discrete_view()
    clean = run_batch([TinyEnv(length=3, variable=True) for _ in seeds], view, seeds, None)
    assert all(int(a) == 0 for ep in clean.actions for a in ep)
    attacked = run_batch([TinyEnv(length=3, variable=True) for _ in seeds], view, seeds, flip_even_steps)
    row = summarize_trace(attacked, clean, "discrete")
    assert row["attack_success_rate"] == pytest.approx(7 / 12)
    assert "action_mae" not in row
    flipped = np.concatenate([clean.stacked("clean_obs", i)[::2, 0] for i in range(3)])
    assert row["linf_max"] == pytest.approx(1.0 - flipped.min(), abs=1e-6)  # obs[0] pushed to 1.0
    assert row["linf_mean"] == pytest.approx((1.0 - flipped).sum() / 12, abs=1e-6)
    # actions are ints passed to the env; flipped steps act 1 instead of 0
    assert row["regret_action_sum"] == pytest.approx(7 / 3)


def test_summarize_handles_trace_built_by_hand():
    trace = Trace(
        clean_obs=[[np.zeros(2, np.float32)] * 2],
        fed_obs=[[np.array([0.3, -0.4], np.float32), np.zeros(2, np.float32)]],
        actions=[[np.array([1.0]), np.array([2.0])]],
        clean_actions=[[np.array([1.5]), np.array([2.0])]],
        rewards=[[1.0, 2.0]],
        kpis=[{"k": 4.0}],
    )
    row = summarize_trace(trace, None, "continuous")
    assert row["return"] == 3.0 and row["k"] == 4.0 and "regret_return" not in row
    assert row["action_mae"] == pytest.approx(0.25)
    assert row["linf_mean"] == pytest.approx(0.2) and row["linf_max"] == pytest.approx(0.4)
    assert row["l2_mean"] == pytest.approx(0.25) and row["l2_max"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# build_budget


def test_build_budget_maps_groups_to_per_feature_eps_and_bounds():
    spec = AttackSpec(name="random", mask=["a"], scale={"b": 0.5})
    budget = build_budget(spec, 0.1, TinyEnv())
    assert isinstance(budget, AttackBudget)
    assert budget.eps == 0.1 and budget.norm == "linf"
    np.testing.assert_array_equal(budget.mask, [0, 0, 1, 1])
    np.testing.assert_array_equal(budget.scale, [1, 1, 0.5, 0.5])
    eps = budget.per_feature_eps(4, torch.zeros(1))
    np.testing.assert_allclose(eps.numpy(), [0.0, 0.0, 0.05, 0.05], atol=1e-7)
    np.testing.assert_array_equal(budget.low, np.zeros(4))
    np.testing.assert_array_equal(budget.high, np.ones(4))
    l2 = build_budget(AttackSpec(name="random", norm="l2", scale={"a": 2.0}), 0.2, TinyEnv())
    assert l2.norm == "l2"
    np.testing.assert_allclose(l2.per_feature_eps(4, torch.zeros(1)).numpy(), [0.4, 0.4, 0.2, 0.2], atol=1e-7)


def test_build_budget_unbounded_space_has_no_bounds():
    budget = build_budget(AttackSpec(name="random"), 0.1, TinyEnv(bounded=False))
    assert budget.low is None and budget.high is None
    np.testing.assert_array_equal(budget.mask, np.ones(4))


@pytest.mark.parametrize("field", ["mask", "scale"])
def test_build_budget_unknown_group_names_group_and_available_groups(field):
    spec = AttackSpec(name="random", **({"mask": ["calender"]} if field == "mask" else {"scale": {"calender": 0.5}}))
    with pytest.raises(ConfigError) as err:
        build_budget(spec, 0.1, TinyEnv())
    message = str(err.value)
    assert "'calender'" in message and "a, b" in message and "'random'" in message


def test_build_budget_env_without_groups_says_so():
    env = gym.make("Pendulum-v1")
    with pytest.raises(ConfigError, match="'calendar'.*no groups"):
        build_budget(AttackSpec(name="pgd", mask=["calendar"]), 0.1, env)
    env.close()


# ---------------------------------------------------------------------------------------------
# evaluate_attacks end to end


def attack_config(**kwargs: Any) -> AttackConfig:
    data = {
        "eps": [0.0, 0.1],
        "episodes": 3,
        "permutations": 50,
        "attacks": [
            {"name": "random", "settings": {"positive_only": True, "seed": 0}},
            {"name": "bifurcation", "settings": {"iterations": 10}},
        ],
    }
    return AttackConfig.model_validate({**data, **kwargs})


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return evaluate_attacks(TinyEnv, continuous_view(), attack_config(), seed=5, progress=False)


def test_evaluate_attacks_rows_and_meta(results):
    rows = results["rows"]
    assert [(r["attack"], r["eps"]) for r in rows] == [("random", 0.0), ("random", 0.1), ("bifurcation", 0.0), ("bifurcation", 0.1)]
    assert results["clean"]["attack"] == "clean" and results["clean"]["eps"] == 0.0
    assert results["meta"]["episodes"] == 3 and results["meta"]["seeds"] == [5, 6, 7]
    assert results["meta"]["feature_names"] == TinyEnv.feature_names
    assert results["meta"]["steps_per_day"] is None and results["meta"]["mmd_null"] is None
    assert set(results["traces"]) == {"clean", *[(r["attack"], r["eps"]) for r in rows]}
    assert set(results["stealth"]) == {"random@0.0", "random@0.1", "bifurcation@0.0", "bifurcation@0.1"}
    clean = run_batch([TinyEnv() for _ in range(3)], continuous_view(), [5, 6, 7], None)
    assert results["clean"]["return"] == pytest.approx(summarize_trace(clean, None, "continuous")["return"])


def test_evaluate_attacks_eps_zero_is_harmless(results):
    for row in results["rows"]:
        if row["eps"] == 0.0:
            assert row["regret_return"] == 0.0 and row["regret_action_sum"] == 0.0, row["attack"]
            assert row["linf_max"] == 0.0 and row["l2_max"] == 0.0 and row["action_mae"] == 0.0


def test_evaluate_attacks_budget_respected_and_damage(results):
    by_key = {(r["attack"], r["eps"]): r for r in results["rows"]}
    bif, rnd = by_key[("bifurcation", 0.1)], by_key[("random", 0.1)]
    assert 0.0 < bif["linf_mean"] <= 0.1 + 1e-6 and bif["linf_max"] <= 0.1 + 1e-6
    assert bif["action_mae"] > 0.01
    assert 0.0 < rnd["linf_max"] <= 0.1 + 1e-6
    # positive_only: every perturbation is >= 0
    trace = results["traces"][("random", 0.1)]
    for i in range(3):
        assert (trace.stacked("fed_obs", i) - trace.stacked("clean_obs", i) >= -1e-7).all()


def test_evaluate_attacks_stealth_columns(results):
    for row in results["rows"]:
        for col in ("mmd_p_value", "mmd_detected", "ks_n_significant", "first_diff_within"):
            assert col in row, col
        assert 0.0 <= row["mmd_p_value"] <= 1.0
        assert isinstance(row["mmd_detected"], bool)


def test_evaluate_attacks_discrete_view_and_no_stealth():
    config = attack_config(eps=[0.2], stealth=False, episodes=2)
    out = evaluate_attacks(lambda: TinyEnv(length=4), discrete_view(), config, seed=0, progress=False)
    assert len(out["rows"]) == 2 and out["stealth"] == {}
    for row in out["rows"]:
        assert "mmd_p_value" not in row and "attack_success_rate" in row
        assert 0.0 <= row["attack_success_rate"] <= 1.0
        assert row["linf_max"] <= 0.2 + 1e-6


class NoRunEnv(TinyEnv):
    def reset(self, **kwargs: Any):
        raise AssertionError("an episode started before the budgets were validated")


def test_evaluate_attacks_validates_budgets_before_running():
    config = AttackConfig.model_validate({"eps": [0.1], "attacks": [{"name": "random"}, {"name": "random", "label": "r2", "mask": ["nope"]}]})
    with pytest.raises(ConfigError, match="'r2'.*'nope'"):
        evaluate_attacks(NoRunEnv, continuous_view(), config, seed=0, episodes=2, progress=False)


def test_duplicate_attack_keys_are_rejected():
    data = {"eps": [0.1], "attacks": [{"name": "random"}, {"name": "random", "mask": ["a"]}]}
    with pytest.raises(ValidationError, match="more than once"):
        AttackConfig.model_validate(data)
    data["attacks"][1]["label"] = "random_masked"
    assert [a.key for a in AttackConfig.model_validate(data).attacks] == ["random", "random_masked"]
