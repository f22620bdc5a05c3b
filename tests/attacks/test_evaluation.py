"""Attack evaluation: episodes through the vector-env attack wrapper, trace summaries, budgets
from groups, end to end, and equality with the lock-step reference loop evaluation used before.

Everything runs on a tiny deterministic env (4 features in [0, 1], a few steps per episode) and
hand-built linear policy views, so every summary value is known in closed form; the reference
comparison also runs on the grid env (one day of hourly steps).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from pydantic import ValidationError
from torch import nn

from rlkit.attacks import AttackedVectorObservation, make_attack
from rlkit.attacks.budget import AttackBudget
from rlkit.attacks.evaluation import (
    STEALTH_SKIPPED,
    HoldAfterEpisode,
    Trace,
    build_budget,
    evaluate_attacks,
    identity_attack,
    run_episodes,
    summarize_trace,
)
from rlkit.attacks.stealth import split_by_day_null, stealth_report
from rlkit.config import AttackConfig, AttackSpec, ConfigError
from rlkit.envs import feature_names
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
        self.observation_space = gym.spaces.Box(
            0.0 if bounded else -np.inf, high, (4,), dtype=np.float32
        )
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
    low, high = (
        (np.array([-10.0], np.float32), np.array([10.0], np.float32))
        if squash == "clip"
        else (None, None)
    )
    return PolicyView(body, "continuous", squash, low, high)


def discrete_view() -> PolicyView:
    """Logits ``[0.5, x0, -1, -1]``: argmax 0 while ``x0 < 0.5`` (always, clean), else 1."""
    body = nn.Linear(4, 4)
    with torch.no_grad():
        body.weight.zero_()
        body.weight[1, 0] = 1.0
        body.bias.copy_(torch.tensor([0.5, 0.0, -1.0, -1.0]))
    return PolicyView(body, "discrete", "argmax")


def hand_loop(
    env: gym.Env, view: PolicyView, seed: int
) -> tuple[list[np.ndarray], list[float], dict[str, float]]:
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
    return lambda obs, t=None: obs + c


def run_batch(make: Any, view: PolicyView, seeds: list[int], attack: Any = None) -> Trace:
    """``run_episodes`` on a SyncVectorEnv of held sub-envs (``attack=None``: identity)."""
    venv = SyncVectorEnv([lambda: HoldAfterEpisode(make()) for _ in seeds])
    env = AttackedVectorObservation(venv, attack or identity_attack, single_episode=True)
    try:
        return run_episodes(env, view, seeds)
    finally:
        venv.close()


def reference_batch(envs: list[gym.Env], view: PolicyView, seeds: list[int], perturb: Any) -> Trace:
    """The lock-step loop evaluation used before the wrapper path (kept verbatim as reference):
    one list of envs, the batch of running episodes perturbed each step, finished ones dropped."""
    n = len(envs)
    trace = Trace(*([[] for _ in range(n)] for _ in range(5)), kpis=[{} for _ in range(n)])
    obs = [
        np.asarray(env.reset(seed=s)[0], dtype=np.float32)
        for env, s in zip(envs, seeds, strict=True)
    ]
    active = list(range(n))
    t = 0
    while active:
        clean = torch.as_tensor(np.stack([obs[i] for i in active]))
        fed = perturb(clean, t) if perturb is not None else clean
        with torch.no_grad():
            actions = view.squash(view(fed)).cpu().numpy()
            clean_actions = (
                view.squash(view(clean)).cpu().numpy() if perturb is not None else actions
            )
        still = []
        for row, i in enumerate(active):
            trace.clean_obs[i].append(clean[row].numpy())
            trace.fed_obs[i].append(fed[row].numpy())
            trace.actions[i].append(actions[row])
            trace.clean_actions[i].append(clean_actions[row])
            next_obs, reward, terminated, truncated, info = envs[i].step(actions[row])
            trace.rewards[i].append(float(reward))
            obs[i] = np.asarray(next_obs, dtype=np.float32)
            if terminated or truncated:
                trace.kpis[i] = {k: float(v) for k, v in (info.get("episode_kpis") or {}).items()}
            else:
                still.append(i)
        active = still
        t += 1
    return trace


def reference_evaluate(
    make_env: Any, view: PolicyView, config: AttackConfig, seed: int
) -> dict[str, Any]:
    """The evaluation before the wrapper path, on :func:`reference_batch` (rows and null)."""
    from rlkit.attacks.evaluation import _stealth_columns, steps_per_day

    n = config.episodes
    envs = [make_env() for _ in range(n)]
    seeds = [seed + i for i in range(n)]
    names, per_day = feature_names(envs[0]), steps_per_day(envs[0])
    blockwise = config.mmd_permutation != "rows" and per_day is not None
    clean = reference_batch(envs, view, seeds, None)
    clean_episodes = [np.asarray(o) for o in clean.clean_obs]
    rows, traces = [], {"clean": clean}
    for spec in config.attacks:
        for eps in spec.eps or config.eps:
            attack = make_attack(spec.name, view, build_budget(spec, eps, envs[0]), **spec.settings)
            trace = reference_batch(envs, view, seeds, lambda obs, t, a=attack: a(obs, t=t))
            row = {
                "attack": spec.key,
                "eps": eps,
                **summarize_trace(trace, clean, view.action_kind),
            }
            if config.stealth:
                report = stealth_report(
                    clean_episodes,
                    [np.asarray(o) for o in trace.fed_obs],
                    feature_names=names,
                    permutations=config.permutations,
                    seed=seed,
                    block_steps=per_day if blockwise else None,
                    paired=config.mmd_permutation == "paired_days",
                )
                row.update(_stealth_columns(report))
            rows.append(row)
            traces[(spec.key, eps)] = trace
    null = None
    if config.stealth and per_day and sum(len(o) for o in clean_episodes) // per_day >= 4:
        null = split_by_day_null(
            clean_episodes,
            per_day,
            repeats=50,
            permutations=config.permutations,
            seed=seed,
            max_samples=2000,
            blockwise=blockwise,
        ).to_dict()
    clean_row = {"attack": "clean", "eps": 0.0, **summarize_trace(clean, None, view.action_kind)}
    return {"clean": clean_row, "rows": rows, "traces": traces, "null": null}


def assert_same_traces(got: Trace, expected: Trace) -> None:
    for name in ("clean_obs", "fed_obs", "actions", "clean_actions"):
        assert [len(e) for e in getattr(got, name)] == [len(e) for e in getattr(expected, name)], (
            name
        )
        for i in range(len(expected.rewards)):
            np.testing.assert_array_equal(
                got.stacked(name, i), expected.stacked(name, i), err_msg=name
            )
    assert got.rewards == expected.rewards
    assert got.kpis == expected.kpis


# ---------------------------------------------------------------------------------------------
# run_episodes


@pytest.mark.parametrize("squash", ["none", "clip"])
def test_run_episodes_clean_equals_hand_loop_with_unequal_lengths(squash):
    view = continuous_view(squash)
    seeds = [10, 11, 12]  # lengths 4, 5, 3
    trace = run_batch(lambda: TinyEnv(length=3, variable=True), view, seeds)
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
        np.testing.assert_array_equal(
            trace.stacked("actions", i), trace.stacked("clean_actions", i)
        )


def test_run_episodes_attack_sees_running_batch_and_time():
    calls: list[tuple[int, list[int]]] = []

    def perturb(obs: torch.Tensor, t: Any) -> torch.Tensor:
        calls.append((obs.shape[0], torch.as_tensor(t).reshape(-1).tolist()))
        return obs + 0.01

    seeds = [10, 11, 12]  # lengths 4, 5, 3: batch shrinks as episodes end; final obs not attacked
    trace = run_batch(lambda: TinyEnv(length=3, variable=True), continuous_view(), seeds, perturb)
    assert calls == [(3, [0, 0, 0]), (3, [1, 1, 1]), (3, [2, 2, 2]), (2, [3, 3]), (1, [4])]
    for i in range(3):
        delta = trace.stacked("fed_obs", i) - trace.stacked("clean_obs", i)
        np.testing.assert_allclose(delta, 0.01, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# summarize_trace


def test_summary_of_clean_trace_against_itself_has_zero_regret():
    seeds = [0, 1, 2]
    trace = run_batch(TinyEnv, continuous_view(), seeds)
    row = summarize_trace(trace, trace, "continuous")
    returns = [sum(r) for r in trace.rewards]
    assert row["return"] == pytest.approx(np.mean(returns))
    assert row["return_std"] == pytest.approx(np.std(returns))
    assert row["action_sum"] == pytest.approx(np.mean([k["action_sum"] for k in trace.kpis]))
    assert row["steps"] == 5.0
    assert (
        row["regret_return"] == 0.0
        and row["regret_action_sum"] == 0.0
        and row["regret_steps"] == 0.0
    )
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
    clean = run_batch(TinyEnv, view, seeds)
    attacked = run_batch(TinyEnv, view, seeds, add_constant(c))
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
    def flip_even_steps(obs: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = obs.clone()
        out[t % 2 == 0, 0] = 1.0  # logit 1 = 1.0 > 0.5: argmax 0 -> 1
        return out

    seeds = [10, 11, 12]  # lengths 4, 5, 3: flipped steps 2 + 3 + 2 of 12
    view = discrete_view()
    clean = run_batch(lambda: TinyEnv(length=3, variable=True), view, seeds)
    assert all(int(a) == 0 for ep in clean.actions for a in ep)
    attacked = run_batch(lambda: TinyEnv(length=3, variable=True), view, seeds, flip_even_steps)
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
    np.testing.assert_allclose(
        l2.per_feature_eps(4, torch.zeros(1)).numpy(), [0.4, 0.4, 0.2, 0.2], atol=1e-7
    )


def test_build_budget_unbounded_space_has_no_bounds():
    budget = build_budget(AttackSpec(name="random"), 0.1, TinyEnv(bounded=False))
    assert budget.low is None and budget.high is None
    np.testing.assert_array_equal(budget.mask, np.ones(4))


@pytest.mark.parametrize("field", ["mask", "scale"])
def test_build_budget_unknown_group_names_group_and_available_groups(field):
    spec = AttackSpec(
        name="random",
        **({"mask": ["calender"]} if field == "mask" else {"scale": {"calender": 0.5}}),
    )
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


#: the stealth options of the reference loop (rlkit's procedure against the clean run)
RLKIT_STEALTH = {
    "mmd_procedure": "rlkit",
    "mmd_reference": "clean_run",
    "mmd_null": "days",
    "difference_mmd": False,
}


def attack_config(**kwargs: Any) -> AttackConfig:
    data = {
        "eps": [0.0, 0.1],
        "episodes": 3,
        "permutations": 50,
        **RLKIT_STEALTH,
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
    assert [(r["attack"], r["eps"]) for r in rows] == [
        ("random", 0.0),
        ("random", 0.1),
        ("bifurcation", 0.0),
        ("bifurcation", 0.1),
    ]
    assert results["clean"]["attack"] == "clean" and results["clean"]["eps"] == 0.0
    assert results["meta"]["episodes"] == 3 and results["meta"]["seeds"] == [5, 6, 7]
    assert results["meta"]["feature_names"] == TinyEnv.feature_names
    assert results["meta"]["steps_per_day"] is None and results["meta"]["mmd_null"] is None
    assert set(results["traces"]) == {"clean", *[(r["attack"], r["eps"]) for r in rows]}
    assert set(results["stealth"]) == {
        "random@0.0",
        "random@0.1",
        "bifurcation@0.0",
        "bifurcation@0.1",
    }
    clean = run_batch(TinyEnv, continuous_view(), [5, 6, 7])
    assert results["clean"]["return"] == summarize_trace(clean, None, "continuous")["return"]
    assert results["meta"]["obs_shape"] == [4] and results["meta"]["stealth_note"] is None


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
    out = evaluate_attacks(
        lambda: TinyEnv(length=4), discrete_view(), config, seed=0, progress=False
    )
    assert len(out["rows"]) == 2 and out["stealth"] == {}
    for row in out["rows"]:
        assert "mmd_p_value" not in row and "attack_success_rate" in row
        assert 0.0 <= row["attack_success_rate"] <= 1.0
        assert row["linf_max"] <= 0.2 + 1e-6


class NoRunEnv(TinyEnv):
    def reset(self, **kwargs: Any):
        raise AssertionError("an episode started before the budgets were validated")


def test_evaluate_attacks_validates_budgets_before_running():
    config = AttackConfig.model_validate(
        {
            "eps": [0.1],
            "attacks": [{"name": "random"}, {"name": "random", "label": "r2", "mask": ["nope"]}],
        }
    )
    with pytest.raises(ConfigError, match="'r2'.*'nope'"):
        evaluate_attacks(NoRunEnv, continuous_view(), config, seed=0, episodes=2, progress=False)


def test_duplicate_attack_keys_are_rejected():
    data = {"eps": [0.1], "attacks": [{"name": "random"}, {"name": "random", "mask": ["a"]}]}
    with pytest.raises(ValidationError, match="more than once"):
        AttackConfig.model_validate(data)
    data["attacks"][1]["label"] = "random_masked"
    assert [a.key for a in AttackConfig.model_validate(data).attacks] == ["random", "random_masked"]


# ---------------------------------------------------------------------------------------------
# the wrapper path gives the numbers of the lock-step reference loop, bit for bit

REFERENCE_ATTACKS = [
    {"name": "random", "settings": {"positive_only": True}},  # unseeded: the global torch RNG
    {"name": "pgd", "settings": {"iterations": 10}},
    {"name": "bifurcation", "settings": {"iterations": 10}},
    {"name": "bifurcation_toggle", "settings": {"iterations": 5}},
]


def assert_same_evaluation(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["clean"] == expected["clean"]
    assert got["rows"] == expected["rows"]  # every float equal, not approximately
    assert got["meta"]["mmd_null"] == expected["null"]
    assert set(got["traces"]) == set(expected["traces"])
    for key, trace in expected["traces"].items():
        assert_same_traces(got["traces"][key], trace)


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_evaluate_attacks_equals_reference_loop_with_unequal_lengths(kind):
    view = continuous_view() if kind == "continuous" else discrete_view()
    config = attack_config(attacks=REFERENCE_ATTACKS)
    make = lambda: TinyEnv(length=3, variable=True)  # noqa: E731  lengths 4, 5, 3
    torch.manual_seed(0)
    expected = reference_evaluate(make, view, config, seed=10)
    torch.manual_seed(0)
    got = evaluate_attacks(make, view, config, seed=10, progress=False)
    assert [len(r) for r in got["traces"]["clean"].rewards] == [4, 5, 3]
    assert_same_evaluation(got, expected)
    rnd = got["rows"][1]
    assert rnd["attack"] == "random" and rnd["eps"] == 0.1 and rnd["linf_max"] > 0.05


def test_evaluate_attacks_equals_reference_loop_on_grid_env():
    from rlkit.envs.grid import GridBatteryEnv

    kw = dict(
        profiles="synthetic",
        numba=False,
        episode_days=1,
        step_minutes=60,
        initial_soc_noise=0.2,
        split="test",
    )
    probe = GridBatteryEnv(**kw)
    n = probe.observation_space.shape[0]
    torch.manual_seed(1)
    body = nn.Sequential(nn.Linear(n, 16), nn.Tanh(), nn.Linear(16, 4))
    view = PolicyView(body, "continuous", "tanh", probe.action_space.low, probe.action_space.high)
    config = AttackConfig.model_validate(
        {
            "eps": [0.05],
            "episodes": 2,
            "permutations": 50,
            "mmd_permutation": "days",
            **RLKIT_STEALTH,
            "attacks": [
                {"name": "random", "settings": {"positive_only": True}},
                {"name": "bifurcation", "mask": ["calendar"], "settings": {"iterations": 10}},
            ],
        }
    )
    torch.manual_seed(0)
    expected = reference_evaluate(lambda: GridBatteryEnv(**kw), view, config, seed=100)
    torch.manual_seed(0)
    got = evaluate_attacks(lambda: GridBatteryEnv(**kw), view, config, seed=100, progress=False)
    assert_same_evaluation(got, expected)
    assert got["meta"]["steps_per_day"] == 24
    assert [len(r) for r in got["traces"]["clean"].rewards] == [24, 24]
    assert got["clean"]["steps"] == 24.0 and "cost_norm" in got["clean"]
    bif = got["rows"][1]
    assert (
        bif["attack"] == "bifurcation" and bif["linf_max"] <= 0.05 + 1e-6 and bif["action_mae"] > 0
    )
    calendar = probe.unwrapped.obs_groups["calendar"]
    delta = got["traces"][("bifurcation", 0.05)].stacked("fed_obs", 0) - got["traces"][
        "clean"
    ].stacked("clean_obs", 0)
    assert np.all(delta[:, calendar] == 0)  # masked group untouched


class CountingEnv(TinyEnv):
    """TinyEnv that counts its resets and steps and accepts an unseeded reset."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resets = self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.resets += 1
        return super().reset(seed=1000 if seed is None else seed, options=options)

    def step(self, action: Any):
        self.steps += 1
        return super().step(action)


def test_finished_episodes_hold_still():
    """Held sub-envs are neither reset nor stepped after their episode: no wasted env work."""
    venv = SyncVectorEnv(
        [lambda: HoldAfterEpisode(CountingEnv(length=3, variable=True)) for _ in range(3)]
    )
    trace = run_episodes(
        AttackedVectorObservation(venv, identity_attack, single_episode=True),
        continuous_view(),
        [10, 11, 12],
    )
    inner = [env.unwrapped for env in venv.envs]
    assert [e.steps for e in inner] == [4, 5, 3] == [len(r) for r in trace.rewards]
    assert [e.resets for e in inner] == [1, 1, 1]
    assert [k["steps"] for k in trace.kpis] == [4, 5, 3]
    venv.close()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_any_vector_env_and_autoreset_mode_gives_the_same_evaluation(mode):
    """A plain vector env (its sub-envs autoreset and run on) gives the same rows; SAME_STEP
    reads the KPIs from ``final_info``."""
    config = attack_config(attacks=REFERENCE_ATTACKS[:3])
    make = lambda: CountingEnv(length=3, variable=True)  # noqa: E731
    torch.manual_seed(0)
    default = evaluate_attacks(make, continuous_view(), config, seed=10, progress=False)
    torch.manual_seed(0)
    plain = evaluate_attacks(
        None,
        continuous_view(),
        config,
        seed=10,
        progress=False,
        make_vector_env=lambda k: SyncVectorEnv([make for _ in range(k)], autoreset_mode=mode),
    )
    assert plain["rows"] == default["rows"] and plain["clean"] == default["clean"]
    assert [k["steps"] for k in plain["traces"]["clean"].kpis] == [4, 5, 3]


def test_run_episodes_needs_single_episode_mode():
    venv = SyncVectorEnv([TinyEnv])
    with pytest.raises(ValueError, match="single_episode=True"):
        run_episodes(AttackedVectorObservation(venv, identity_attack), continuous_view(), [0])
    with pytest.raises(ValueError, match="1 seeds for 2"):
        run_episodes(
            AttackedVectorObservation(
                SyncVectorEnv([TinyEnv, TinyEnv]), identity_attack, single_episode=True
            ),
            continuous_view(),
            [0],
        )


# ---------------------------------------------------------------------------------------------
# image observations


class ImageEnv(gym.Env):
    """uint8 frames (3, 4, 4) in [50, 200] drawn from the reset seed; ``3 + seed % 2`` steps;
    reward ``-|a - mean(frame) / 255|``."""

    observation_space = gym.spaces.Box(0, 255, (3, 4, 4), dtype=np.uint8)
    action_space = gym.spaces.Box(-10.0, 10.0, (1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._rng = np.random.default_rng(seed)
        self.T, self.t = 3 + (seed or 0) % 2, 0
        self.frame = self._rng.integers(50, 201, (3, 4, 4)).astype(np.uint8)
        return self.frame.copy(), {}

    def step(self, action: Any):
        reward = -abs(float(np.asarray(action).reshape(-1)[0]) - float(self.frame.mean()) / 255)
        self.t += 1
        self.frame = self._rng.integers(50, 201, (3, 4, 4)).astype(np.uint8)
        done = self.t >= self.T
        return (
            self.frame.copy(),
            reward,
            False,
            done,
            {"episode_kpis": {"steps": float(self.t)}} if done else {},
        )


def image_view() -> PolicyView:
    """action = mean(frame) / 255."""
    linear = nn.Linear(48, 1, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0 / (48 * 255))
    return PolicyView(nn.Sequential(nn.Flatten(), linear), "continuous", "none")


def test_build_budget_for_images_is_uniform_with_pixel_bounds():
    budget = build_budget(AttackSpec(name="random", norm="l2"), 4.0, ImageEnv())
    assert (
        budget.eps == 4.0 and budget.norm == "l2" and budget.mask is None and budget.scale is None
    )
    assert (
        np.shape(budget.low) == (3, 4, 4) and np.all(budget.low == 0) and np.all(budget.high == 255)
    )


def test_image_observations_traces_distortion_and_skipped_stealth():
    config = AttackConfig.model_validate(
        {
            "eps": [3.0],
            "episodes": 2,
            "permutations": 20,
            "attacks": [{"name": "random", "settings": {"positive_only": True, "seed": 0}}],
        }
    )
    out = evaluate_attacks(ImageEnv, image_view(), config, seed=4, progress=False)
    meta = out["meta"]
    assert meta["obs_shape"] == [3, 4, 4] and meta["feature_names"] is None
    assert (
        meta["stealth_note"] == STEALTH_SKIPPED
        and meta["mmd_null"] is None
        and out["stealth"] == {}
    )
    clean, trace = out["traces"]["clean"], out["traces"][("random", 3.0)]
    assert [len(r) for r in trace.rewards] == [3, 4]  # seeds 4, 5
    assert (
        clean.stacked("clean_obs", 0).shape == (3, 3, 4, 4)
        and clean.stacked("clean_obs", 0).dtype == np.uint8
    )
    first = ImageEnv().reset(seed=4)[0]
    np.testing.assert_array_equal(trace.stacked("clean_obs", 0)[0], first)
    deltas = [
        trace.stacked("fed_obs", i).astype(np.float64) - trace.stacked("clean_obs", i)
        for i in range(2)
    ]
    steps = np.concatenate([d.reshape(len(d), -1) for d in deltas])
    assert steps.shape == (7, 48) and steps.min() >= 0.0 and 0.0 < steps.max() <= 3.0 + 1e-5
    row = out["rows"][0]
    assert row["linf_mean"] == pytest.approx(np.abs(steps).max(axis=1).mean(), rel=1e-6)
    assert row["linf_max"] == pytest.approx(np.abs(steps).max(), rel=1e-6)
    assert row["l2_mean"] == pytest.approx(np.linalg.norm(steps, axis=1).mean(), rel=1e-6)
    assert row["action_mae"] == pytest.approx(np.mean(steps.sum(axis=1) / (48 * 255)), rel=1e-4)
    assert row["mmd_p_value"] is None and row["stealth_note"] == STEALTH_SKIPPED
    assert out["clean"]["linf_max"] == 0.0 and out["clean"]["steps"] == 3.5
    fed_actions = np.concatenate([trace.stacked("actions", i)[:, 0] for i in range(2)])
    fed_means = np.concatenate(
        [trace.stacked("fed_obs", i).reshape(-1, 48).mean(axis=1) for i in range(2)]
    )
    np.testing.assert_allclose(fed_actions, fed_means / 255, rtol=1e-5)


def test_default_stealth_is_the_papers_procedure_on_the_attacked_trace(monkeypatch):
    """Defaults: the paper's MMD between the clean and perturbed observations of the same trace,
    its 12/12 hour-split null, and the first-difference MMD."""
    import rlkit.attacks.evaluation as evaluation

    seen: list[dict[str, Any]] = []
    real = evaluation.stealth_report

    def spy(clean: Any, attacked: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append({"clean": clean, **kwargs})
        return real(clean, attacked, **kwargs)

    monkeypatch.setattr(evaluation, "stealth_report", spy)
    config = AttackConfig.model_validate(
        {
            "eps": [0.1],
            "episodes": 2,
            "permutations": 20,
            "attacks": [{"name": "random", "settings": {"seed": 0}}],
        }
    )
    got = evaluate_attacks(
        lambda: TinyEnv(length=3), continuous_view(), config, seed=0, progress=False
    )
    (call,) = seen
    assert call["procedure"] == "paper" and call["difference_mmd"] is True
    trace = got["traces"][("random", 0.1)]
    for clean, own in zip(call["clean"], trace.clean_obs, strict=True):
        np.testing.assert_array_equal(clean, np.asarray(own))
    row = got["rows"][0]
    assert 0.0 <= row["mmd_diff_p_value"] <= 1.0
    assert got["stealth"]["random@0.1"]["procedure"] == "paper"


def test_action_units_are_stated():
    from rlkit.attacks.evaluation import action_units

    assert (
        action_units(continuous_view("clip"))
        == "env action units [-10, 10] (after the policy's squash)"
    )
    assert action_units(continuous_view()) == "the policy's own output units"
    assert action_units(discrete_view()).startswith("bin indices")
