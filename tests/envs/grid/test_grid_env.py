"""GridBatteryEnv behaviour: spaces, projection, KPIs, hooks, errors."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pandapower as pp
import pytest
from gymnasium.utils import seeding

from rlkit.envs.grid import (
    ENV_ID,
    GRID_PARAMS_MODEL,
    GridBatteryEnv,
    GridEnvConfig,
    make_grid_env,
)
from rlkit.envs.grid.profiles import split_days

FAST = dict(profiles="synthetic", numba=False)


def make(**kw):
    return GridBatteryEnv(**{**FAST, **kw})


def run_episode(env, policy, seed=0, options=None):
    obs, _ = env.reset(seed=seed, options=options)
    infos, obss, rews = [], [obs], []
    while True:
        obs, r, term, trunc, info = env.step(policy(obs))
        assert not term
        infos.append(info)
        obss.append(obs)
        rews.append(r)
        if trunc:
            return obss, rews, infos


def runpp_reference(env, battery_p_mw):
    """pandapower ``runpp`` on the state of the step just taken, built from the profile arrays."""
    core = env.core
    idx = core.start[0] + core.t[0] - 1
    net = copy.deepcopy(env.net)
    net.load["p_mw"], net.load["q_mvar"] = core.load_p_year[idx], core.load_q_year[idx]
    net.sgen["p_mw"] = core.sgen_p_year[idx]
    storage = core.storage_p_fixed.copy()
    storage[core.batt_storage_pos] = battery_p_mw
    net.storage["p_mw"] = storage
    pp.runpp(net, numba=False)
    return net


def assert_matches_runpp(env, info):
    ref = runpp_reference(env, info["battery_p_mw"])
    assert info["converged"]
    assert info["vmin"] == pytest.approx(np.nanmin(ref.res_bus["vm_pu"]), abs=1e-6)
    assert info["vmax"] == pytest.approx(np.nanmax(ref.res_bus["vm_pu"]), abs=1e-6)
    assert info["net_import_mw"] == pytest.approx(ref.res_ext_grid["p_mw"].sum(), abs=1e-6)
    loading = np.nanmax(ref.res_line["loading_percent"])
    assert info["max_line_loading"] == pytest.approx(loading, abs=1e-4)


def test_spaces_features_and_groups():
    env = make()
    assert env.observation_space.shape == (len(env.feature_names),)
    # case33bw: 32 load buses, 4 PV, 4 batteries, price + 2 forecasts, 4 asset voltages + vm_min
    sizes = dict(calendar=5, load=32, pv=4, soc=4, price=3, voltage=5, grid=1)
    assert {k: sl.stop - sl.start for k, sl in env.obs_groups.items()} == sizes
    assert len(env.feature_names) == 54
    covered = np.zeros(len(env.feature_names), dtype=int)
    for sl in env.obs_groups.values():
        covered[sl] += 1
    assert (covered == 1).all()
    assert set(env.obs_groups) == {"calendar", "load", "pv", "soc", "price", "voltage", "grid"}
    assert env.action_space.shape == (4,)
    assert env.battery_buses == [17, 21, 24, 32]


def test_obs_in_unit_box_and_soc_limits_random_actions():
    env = make(initial_soc_noise=0.3, step_minutes=60, episode_days=3)
    rng = np.random.default_rng(0)
    obss, rews, infos = run_episode(env, lambda o: rng.uniform(-1, 1, 4))
    assert len(infos) == 72
    obs = np.array(obss)
    assert obs.min() >= 0.0 and obs.max() <= 1.0 and np.isfinite(obs).all()
    soc = np.array([i["soc"] for i in infos])
    assert soc.min() >= 0.1 - 1e-12 and soc.max() <= 0.9 + 1e-12
    assert np.all(np.isfinite(rews))
    sl = env.obs_groups["soc"]
    np.testing.assert_allclose(obs[1:, sl], soc, atol=1e-6)
    # the SOC path follows from the dispatched powers: +eta p dt charging, +p dt / eta discharging
    p = np.array([i["battery_p_mw"] for i in infos])
    moved = np.where(p > 0, p * 0.95, p / 0.95) / 1.2
    np.testing.assert_allclose(soc, obs[0, sl] + np.cumsum(moved, axis=0), atol=1e-6)


def test_action_projection_hand_computed():
    # 15 min, eta 0.95, E=1.2 MWh, soc 0.5 -> E=0.6; limits 0.12 .. 1.08 MWh
    env = make(initial_soc=0.5)
    env.reset(seed=0, options={"start_day": 0})
    _, _, _, _, info = env.step(np.array([0.5, -0.5, 0.0, 1.0]))
    np.testing.assert_allclose(info["battery_p_mw"], [0.15, -0.15, 0.0, 0.3])
    e = 0.6 + np.array([0.95 * 0.15 * 0.25, -0.15 * 0.25 / 0.95, 0.0, 0.95 * 0.3 * 0.25])
    np.testing.assert_allclose(info["soc"], e / 1.2)
    # near the lower limit a full discharge is cut to what the SOC allows
    env = make(initial_soc=0.11)
    env.reset(seed=0, options={"start_day": 0})
    _, _, _, _, info = env.step(-np.ones(4))
    p_exp = -(0.11 * 1.2 - 0.1 * 1.2) * 0.95 / 0.25
    np.testing.assert_allclose(info["battery_p_mw"], p_exp)
    np.testing.assert_allclose(info["soc"], 0.1)
    # near the upper limit a full charge is cut
    env = make(initial_soc=0.89)
    env.reset(seed=0, options={"start_day": 0})
    _, _, _, _, info = env.step(np.ones(4))
    np.testing.assert_allclose(info["battery_p_mw"], (0.9 - 0.89) * 1.2 / (0.95 * 0.25))
    np.testing.assert_allclose(info["soc"], 0.9)


def test_zero_action_kpis_equal_counterfactual_and_hand_sums():
    env = make(step_minutes=60, episode_days=2)
    _, _, infos = run_episode(env, lambda o: np.zeros(4), options={"start_day": 10})
    k = infos[-1]["episode_kpis"]
    for key in ("cost", "daily_peak", "consumption", "ramping"):
        assert k[key + "_norm"] == pytest.approx(1.0, abs=1e-9)
        assert k[key] == pytest.approx(k[key + "_no_battery"], rel=1e-9)
    imp = np.array([i["net_import_mw"] for i in infos])
    price = np.array([i["price"] for i in infos])
    assert k["cost"] == pytest.approx(np.sum(price * np.maximum(imp, 0) * 1.0), rel=1e-9)
    assert k["consumption"] == pytest.approx(np.maximum(imp, 0).sum(), rel=1e-9)
    assert k["ramping"] == pytest.approx(np.abs(np.diff(imp)).sum(), rel=1e-9)
    assert k["daily_peak"] == pytest.approx(np.maximum(imp, 0).reshape(2, 24).max(axis=1).mean())
    assert k["voltage_violations"] == sum(i["n_violations"] for i in infos)
    assert k["voltage_violation_depth"] == pytest.approx(sum(i["violation_depth"] for i in infos))
    assert k["vmin"] == pytest.approx(min(i["vmin"] for i in infos))
    assert k["losses_mwh"] == pytest.approx(sum(i["losses_mw"] for i in infos))
    assert k["steps"] == 48


def test_battery_discharge_at_peak_reduces_peak_and_violations():
    env = make(step_minutes=60, initial_soc=0.9)

    def policy(obs):  # discharge during the evening peak price
        return -np.ones(4) if obs[env.obs_groups["price"]][0] > 0.99 else np.zeros(4)

    _, _, infos = run_episode(env, policy, options={"start_day": 12})  # a Wednesday
    k = infos[-1]["episode_kpis"]
    # peak 17-21h: full 0.3 MW for 3 hours (0.3 / 0.95 MWh each), then what is left above SOC 0.1
    p = np.array([i["battery_p_mw"][0] for i in infos])
    left = 0.9 * 1.2 - 3 * 0.3 / 0.95 - 0.1 * 1.2
    expected = np.zeros(24)
    expected[17:20], expected[20] = -0.3, -left * 0.95
    np.testing.assert_allclose(p, expected, atol=1e-12)
    # the normalised KPIs are ratios to the same day with idle batteries
    _, _, idle = run_episode(
        make(step_minutes=60), lambda o: np.zeros(4), options={"start_day": 12}
    )
    base = idle[-1]["episode_kpis"]
    for key in ("cost", "daily_peak", "consumption", "voltage_violation_depth"):
        assert k[key + "_no_battery"] == pytest.approx(base[key], rel=1e-9), key
    assert k["cost_norm"] == pytest.approx(k["cost"] / base["cost"], rel=1e-9)
    assert k["daily_peak_norm"] == pytest.approx(k["daily_peak"] / base["daily_peak"], rel=1e-9)
    assert k["daily_peak_norm"] < 1.0
    assert k["cost_norm"] < 1.0
    assert k["voltage_violation_depth"] <= k["voltage_violation_depth_no_battery"]


def test_load_alteration_changes_voltages():
    a, b, c = make(), make(), make()
    for env in (a, b, c):
        env.reset(seed=0, options={"start_day": 3})
    b.apply_load_alteration(0.5, buses=[17], steps=[2])
    c.apply_load_alteration(-0.02, buses=17, steps=2)
    # load feature scale: 1.5 x nominal load of bus 17 (0.09 MW) x load_scale 0.8
    scale = 1.5 * 0.09 * 0.8
    for t in range(3):
        oa, _, _, _, ia = a.step(np.zeros(4))
        ob, _, _, _, ib = b.step(np.zeros(4))
        oc, _, _, _, ic = c.step(np.zeros(4))
        if t < 2:
            assert ia["vmin"] == ib["vmin"]
            if t == 1:  # the altered load is visible in the observation of step 2
                j = b.feature_names.index("load_p[bus17]")
                assert ob[j] == 1.0  # clipped: 0.5 MW is 4.6 x the scale
                assert oc[j] == pytest.approx(oa[j] - 0.02 / scale, abs=1e-6)
                assert 0.0 < oc[j] < oa[j] < 1.0
    assert ib["vmin"] < ia["vmin"] < ic["vmin"]
    # energy balance: the import grows by the extra load plus the extra losses
    for alt, delta in ((ib, 0.5), (ic, -0.02)):
        extra = delta + alt["losses_mw"] - ia["losses_mw"]
        assert alt["net_import_mw"] - ia["net_import_mw"] == pytest.approx(extra, abs=1e-9)
    with pytest.raises(ValueError, match="not in the network"):
        a.apply_load_alteration(0.1, buses=[99], steps=[0])
    with pytest.raises(ValueError, match="outside the episode"):
        a.apply_load_alteration(0.1, buses=[17], steps=[500])


def test_nonconvergence_is_flagged_penalised_truncated():
    env = make()
    env.reset(seed=0, options={"start_day": 0})
    env.apply_load_alteration(200.0, buses=[17, 32], steps=[1])
    _, r0, _, tr0, info0 = env.step(np.zeros(4))
    assert not tr0
    obs, r, term, trunc, info = env.step(np.zeros(4))
    assert info["converged"] is False
    assert trunc and not term
    assert np.isfinite(obs).all() and obs.min() >= 0 and obs.max() <= 1
    # the last measurement is kept (import, voltages), and the non-convergence penalty is added
    assert info["net_import_mw"] == info0["net_import_mw"] and info["vmin"] == info0["vmin"]
    assert r == pytest.approx(-(0.1 * info["cost"] + 100 * info["violation_depth"]) - 100.0)
    assert np.isfinite(r) and r < r0 - 50
    assert info["episode_kpis"]["nonconverged_steps"] == 1
    assert all(np.isfinite(v) for v in info["episode_kpis"].values())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(network="case99"), "allowed values"),
        (dict(battery_buses=[17, 99]), "bus 99 is not in the network"),
        (dict(battery_buses=[0]), "slack"),
        (dict(battery_e_mwh=-1.0), "battery_e_mwh must be positive"),
        (dict(soc_min=0.8, soc_max=0.2), "soc_min < soc_max"),
        (dict(efficiency=1.5), "efficiency must be in"),
        (dict(initial_soc=0.95), "initial_soc"),
        (dict(start_day=365, episode_days=2), "out of range"),
        (dict(step_minutes=30), "step_minutes"),
        (dict(voltage_buses=[5, 77]), "voltage_buses"),
        (dict(bogus=1), "bogus"),
        (dict(pv_peak_mw=-0.1), "pv_peak_mw"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_registration_factory_and_field_docs():
    assert GRID_PARAMS_MODEL is GridEnvConfig
    for name, field in GridEnvConfig.model_fields.items():
        assert field.description, name
    env = gym.make(ENV_ID, **FAST)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert isinstance(make_grid_env(**FAST), GridBatteryEnv)
    assert "network" in GridEnvConfig.model_json_schema()["properties"]
    import pandapower.networks as pn

    env_c = make(network=pn.case33bw, battery_buses=[17])
    assert env_c.action_space.shape == (1,)
    with pytest.raises(ValueError, match="expected a pandapower net"):
        make(network=lambda: 3)
    from gymnasium.utils.env_checker import check_env

    check_env(make(), skip_render_check=True)


def test_split_rule_and_start_days():
    for split in ("test", "train"):
        env = make(split=split)
        days = split_days(split, 1)
        assert ((days % 5 == 4) == (split == "test")).all()
        assert len(days) == (73 if split == "test" else 366 - 73)
        for s in range(5):
            _, info = env.reset(seed=s)
            # the start day is the first draw of the episode's generator
            assert info["start_day"] == days[seeding.np_random(s)[0].choice(len(days))]


def test_pandapower_backend_matches_zbus():
    kw = dict(step_minutes=60, start_day=40)
    a, b = make(**kw), make(backend="pandapower", **kw)
    oa, _ = a.reset(seed=0)
    ob, _ = b.reset(seed=0)
    np.testing.assert_allclose(oa, ob, atol=1e-5)
    rng = np.random.default_rng(0)
    for _ in range(4):
        act = rng.uniform(-1, 1, 4)
        oa, ra, _, _, ia = a.step(act)
        ob, rb, _, _, ib = b.step(act)
        np.testing.assert_allclose(oa, ob, atol=1e-5)
        assert ra == pytest.approx(rb, abs=1e-4)
        assert ia["losses_mw"] == pytest.approx(ib["losses_mw"], abs=1e-6)


@pytest.mark.slow
def test_simbench_profiles_and_other_networks():
    env = GridBatteryEnv(numba=False)  # default: real SimBench profiles on case33bw
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    _, _, _, _, info = env.step(np.array([1.0, -1.0, 0.5, 0.0]))
    assert_matches_runpp(env, info)
    cig = GridBatteryEnv(network="cigre_mv", battery_p_mw=1.0, battery_e_mwh=4.0, numba=False)
    o, _ = cig.reset(seed=0)
    _, _, _, _, info = cig.step(np.ones(cig.action_space.shape))
    assert_matches_runpp(cig, info)
    lv = GridBatteryEnv(
        network="1-LV-rural1--0-sw",
        battery_p_mw=0.01,
        battery_e_mwh=0.04,
        pv_peak_mw=0.01,
        numba=False,
    )
    o, _ = lv.reset(seed=0)
    assert lv.observation_space.contains(o) and len(lv.battery_buses) == 4
    _, _, _, _, info = lv.step(-np.ones(4))
    assert_matches_runpp(lv, info)
