"""Reference grid controllers (idle, rule-based) and the shared discrete action wrapper."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlkit.envs.grid import GridBatteryEnv
from rlkit.envs.grid.baselines import OFF_PEAK_MAX, PEAK_MIN, IdleController, RuleBasedController
from rlkit.envs.wrappers import DiscreteActionWrapper

KW = dict(profiles="synthetic", numba=False, step_minutes=60, episode_days=1)


@pytest.fixture(scope="module")
def env() -> GridBatteryEnv:
    return GridBatteryEnv(**KW)


def run_day(env: gym.Env, controller, seed: int) -> tuple[int, list[dict], int]:
    obs, reset_info = env.reset(seed=seed)
    infos = []
    while True:
        action = controller(obs[None])[0]
        obs, _, terminated, truncated, info = env.step(action)
        infos.append(info)
        if terminated or truncated:
            return len(infos), infos, reset_info["start_day"]


def tariff(day: int, hour: int) -> float:
    """Default time-of-use price: off-peak 23-7h, peak 17-21h on weekdays, else shoulder."""
    weekend = (day + 4) % 7 >= 5  # 2016-01-01 was a Friday
    if hour >= 23 or hour < 7:
        return 80.0
    return 300.0 if 17 <= hour < 21 and not weekend else 150.0


@pytest.mark.parametrize("seed", [0, 3])
def test_idle_controller_has_unit_normalised_kpis(env, seed):
    steps, infos, day = run_day(env, IdleController(4), seed)
    kpis = infos[-1]["episode_kpis"]
    assert steps == 24 and kpis["steps"] == 24.0
    np.testing.assert_array_equal(np.asarray([i["battery_p_mw"] for i in infos]), 0.0)
    for key in ("cost", "daily_peak", "consumption", "ramping"):
        assert kpis[f"{key}_norm"] == pytest.approx(1.0, abs=1e-12), key
        assert kpis[key] == pytest.approx(kpis[f"{key}_no_battery"], rel=1e-12), key
    # the import is the day's load minus PV (from the profile arrays) plus the network losses
    core = env.unwrapped.core
    idx = core.start[0] + np.arange(24)
    losses = np.array([i["losses_mw"] for i in infos])
    imp = core.load_p_year[idx].sum(axis=1) - core.sgen_p_year[idx].sum(axis=1) + losses
    np.testing.assert_allclose([i["net_import_mw"] for i in infos], imp, atol=1e-9)
    price = np.array([tariff(day, h) for h in range(24)])
    np.testing.assert_array_equal([i["price"] for i in infos], price)
    pos = np.maximum(imp, 0.0)
    assert kpis["cost_no_battery"] == pytest.approx((price * pos).sum(), rel=1e-9)
    assert kpis["daily_peak_no_battery"] == pytest.approx(pos.max(), rel=1e-9)
    assert kpis["consumption_no_battery"] == pytest.approx(pos.sum(), rel=1e-9)
    assert kpis["ramping_no_battery"] == pytest.approx(np.abs(np.diff(imp)).sum(), rel=1e-9)


def test_idle_controller_shape():
    action = IdleController(3)(np.ones((5, 7), np.float32))
    assert action.shape == (5, 3) and action.dtype == np.float32 and not action.any()


def test_rule_based_controller_on_hand_built_observations(env):
    names = env.feature_names
    price, net = names.index("price"), names.index("net_import")
    cases = [  # (price, net_import) -> action
        (0.2, 0.7, +1),  # off-peak price: charge
        (OFF_PEAK_MAX, 0.7, +1),  # boundary is inclusive
        (0.5, 0.3, +1),  # PV surplus (export): charge
        (0.5, 0.7, 0),  # shoulder price, importing: hold
        (0.98, 0.5, 0),  # net_import exactly 0.5 is no surplus; 0.98 is below the peak level
        (PEAK_MIN, 0.7, -1),  # peak tariff: discharge
        (1.0, 0.7, -1),
        (1.0, 0.2, -1),  # discharge wins over a PV surplus at the peak
    ]
    obs = np.full((len(cases), len(names)), 0.5, np.float32)
    for row, (p, n, _) in enumerate(cases):
        obs[row, price], obs[row, net] = p, n
    controller = RuleBasedController(names, n_batteries=4, power=0.5)
    action = controller(obs)
    assert action.shape == (len(cases), 4) and action.dtype == np.float32
    expected = np.array([0.5 * sign for *_, sign in cases], np.float32)
    np.testing.assert_array_equal(action, np.repeat(expected[:, None], 4, axis=1))
    # other features (price forecasts, calendar, ...) are ignored
    noisy = obs.copy()
    others = [i for i in range(len(names)) if i not in (price, net)]
    noisy[:, others] = np.random.default_rng(0).uniform(0, 1, (len(cases), len(others)))
    np.testing.assert_array_equal(controller(noisy), action)


def test_rule_based_controller_needs_named_features():
    with pytest.raises(ValueError):
        RuleBasedController(["a", "b"], 1)


def day_actions(env: GridBatteryEnv, day: int) -> list[int]:
    """Rule-based actions (battery 0) over one day, checking the rule at every hour."""
    names = env.feature_names
    controller = RuleBasedController(names, 4)
    obs, _ = env.reset(seed=1, options={"start_day": day})
    seen = []
    for _ in range(24):
        action = controller(obs[None])[0]
        assert (action == action[0]).all()
        p, n = obs[names.index("price")], obs[names.index("net_import")]
        expected = -1.0 if p >= PEAK_MIN else 1.0 if (p <= OFF_PEAK_MAX or n < 0.5) else 0.0
        assert action[0] == expected
        seen.append(int(action[0]))
        obs, _, _, truncated, _ = env.step(action)
    assert truncated
    return seen


def test_rule_based_controller_follows_tariff_over_a_day(env):
    """Off-peak (23-7h) charges, the weekday evening peak (17-21h) discharges, otherwise hold or
    charge on a PV surplus; weekends have no peak tariff."""
    weekday = day_actions(env, 3)  # 2016-01-04, a Monday
    assert weekday[:7] == [1] * 7 and weekday[23] == 1
    assert weekday[17:21] == [-1] * 4
    assert set(weekday[7:17] + weekday[21:23]) <= {0, 1} and 0 in weekday[7:17]
    weekend = day_actions(env, 2)  # 2016-01-03, a Sunday
    assert -1 not in weekend and weekend[:7] == [1] * 7


def test_shared_discrete_wrapper_drives_every_battery(env):
    wrapped = DiscreteActionWrapper(GridBatteryEnv(**KW), bins=20, shared=True)
    assert wrapped.action_space == gym.spaces.Discrete(20)
    levels = -1.0 + 2.0 * np.arange(20) / 19
    np.testing.assert_allclose(wrapped.levels(), levels)
    for k in range(20):
        action = wrapped.action(k)
        assert action.shape == (4,) and action.dtype == np.float32
        np.testing.assert_allclose(action, np.full(4, levels[k]), atol=1e-7)
    np.testing.assert_array_equal(wrapped.action(np.array([7])), wrapped.action(7))
    with pytest.raises(ValueError, match="outside"):
        wrapped.action(20)
    # through the env: with equal initial SOCs every battery moves by the same power
    wrapped.reset(seed=0)
    rating = wrapped.unwrapped.config.battery_p_mw
    for k in (19, 0, 12):
        _, _, _, _, info = wrapped.step(k)
        np.testing.assert_allclose(info["battery_p_mw"], np.full(4, levels[k] * rating), atol=1e-9)
    unshared = DiscreteActionWrapper(GridBatteryEnv(**KW), bins=5)
    assert unshared.action_space == gym.spaces.MultiDiscrete([5] * 4)
