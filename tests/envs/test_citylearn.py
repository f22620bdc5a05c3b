"""CityLearn 2.0.0 env (``env.id: citylearn``): spaces, groups, KPIs against CityLearn itself,
seeding.

The reference in the KPI tests is the authors' own construction (``modules/KBMproject/utilities.py``
of the bifurcation paper's repository): a raw full-year ``CityLearnEnv`` wrapped in CityLearn's
wrappers and driven through the old gym API, evaluated with CityLearn's ``evaluate()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from pydantic import ValidationError

from rlkit.envs.citylearn import CityLearnEnvConfig, make_citylearn_env

SHORT = 48
PAPER_GROUPS = {
    "calendar": list(range(0, 6)),
    "weather": list(range(6, 22)),
    "carbon_intensity": [22],
    "non_shiftable_load": [23],
    "solar_generation": [24],
    "electrical_storage_soc": [25],
    "net_electricity_consumption": [26],
    "electricity_pricing": [27, 28, 29, 30],
}


@pytest.fixture(scope="module")
def cl():
    pytest.importorskip("citylearn")
    from rlkit.envs.citylearn.env import import_citylearn

    return import_citylearn()


@pytest.fixture(scope="module")
def discrete_env(cl):
    return make_citylearn_env(episode_time_steps=SHORT)


@pytest.fixture(scope="module")
def continuous_env(cl):
    return make_citylearn_env(action="continuous", episode_time_steps=SHORT)


def authors_env(cl, action: str, bins: int = 20):
    """The authors' full-year env, built as in their utilities.py (old gym API)."""
    schema = cl.DataSet.get_schema("citylearn_challenge_2022_phase_2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = cl.CityLearnEnv(schema, central_agent=True, buildings=["Building_6"], random_seed=42)
        if action == "discrete":
            env = cl.DiscreteActionWrapper(raw, bin_sizes=[{"electrical_storage": bins}])
            env = cl.StableBaselines3Wrapper(cl.NormalizedObservationWrapper(env))
        else:
            env = cl.StableBaselines3Wrapper(cl.NormalizedSpaceWrapper(raw))
    return raw, env


def run(env, actions, seed=None):
    obs, info = env.reset(seed=seed)
    observations, rewards = [obs], []
    for t, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        assert not truncated
        assert terminated == (t == len(actions) - 1)
    return np.array(observations), np.array(rewards), info


# --- without CityLearn -----------------------------------------------------------------------
def test_config_defaults_and_validation():
    config = CityLearnEnvConfig()
    assert config.schema == "citylearn_challenge_2022_phase_2"
    assert config.buildings == ["Building_6"]
    assert (config.action, config.bins, config.random_seed) == ("discrete", 20, 42)
    assert config.episode_time_steps is None and config.reward == "default"
    assert all(field.description for field in CityLearnEnvConfig.model_fields.values())
    with pytest.raises(ValidationError, match="extra"):
        CityLearnEnvConfig(bin=20)
    with pytest.raises(ValidationError):
        CityLearnEnvConfig(action="box")
    with pytest.raises(ValidationError):
        CityLearnEnvConfig(bins=1)
    with pytest.raises(ValidationError):
        CityLearnEnvConfig(episode_time_steps=9000)


def test_missing_citylearn_says_how_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "citylearn" or m.startswith("citylearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "citylearn", None)  # makes `import citylearn` fail
    with pytest.raises(ValueError, match=r"pip install --no-deps CityLearn==2\.0\.0") as err:
        make_citylearn_env(episode_time_steps=SHORT)
    assert "gym==0.25.2" in str(err.value)


# --- with CityLearn --------------------------------------------------------------------------
def test_spaces(discrete_env, continuous_env):
    import gymnasium as gym

    for env in (discrete_env, continuous_env):
        assert env.observation_space == gym.spaces.Box(0.0, 1.0, (31,), np.float32)
        obs, info = env.reset(seed=0)
        assert obs.dtype == np.float32 and obs.shape == (31,)
        assert env.observation_space.contains(obs) and info["time_step"] == 0
        assert env.steps_per_day == 24 and env.episode_steps == SHORT
    assert discrete_env.action_space == gym.spaces.Discrete(20)
    assert continuous_env.action_space == gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    assert make_citylearn_env(episode_time_steps=2, bins=8).action_space == gym.spaces.Discrete(8)


def test_groups_and_feature_names(discrete_env):
    names = discrete_env.feature_names
    assert len(names) == 31 and len(set(names)) == 31
    assert names[:6] == [
        "month_cos",
        "month_sin",
        "day_type_cos",
        "day_type_sin",
        "hour_cos",
        "hour_sin",
    ]
    assert names[24] == "solar_generation" and names[26] == "net_electricity_consumption"
    groups = discrete_env.obs_groups
    assert list(groups) == list(PAPER_GROUPS)
    index = np.arange(31)
    for name, members in PAPER_GROUPS.items():
        assert index[groups[name]].tolist() == members, name
    covered = np.concatenate([index[g] for g in groups.values()])
    assert sorted(covered.tolist()) == list(range(31))  # every feature in exactly one group
    from rlkit.envs.factory import feature_groups, feature_names

    assert feature_groups(discrete_env) == groups and feature_names(discrete_env) == names


def test_several_buildings(cl):
    env = make_citylearn_env(buildings=["Building_6", "Building_7"], episode_time_steps=2)
    assert env.observation_space.shape == (39,) and env.action_space.nvec.tolist() == [20, 20]
    assert env.feature_names[23] == "Building_6/non_shiftable_load"
    assert env.obs_groups["solar_generation"] == [24, 32] and env.obs_groups["calendar"] == slice(
        0, 6
    )
    env.reset(seed=0)
    assert env.step(np.array([3, 15]))[0].shape == (39,)


def test_gym_is_quiet(cl):
    """No gym banner nor old-step-API warnings, even with stable-baselines3 (which imports gym)."""
    code = (
        "import rlkit.envs.citylearn as c, stable_baselines3; "
        "e = c.make_citylearn_env(episode_time_steps=2, action='continuous'); e.reset(); "
        "e.step(e.action_space.sample())"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "unmaintained" not in out.stderr and "WARN" not in out.stderr, out.stderr


@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_short_episode_matches_citylearn(cl, action, discrete_env, continuous_env):
    """48 steps of the env = the first 48 hours of the authors' full-year env: obs, rewards,
    KPIs."""
    from rlkit.envs.citylearn.env import district_kpis

    env = discrete_env if action == "discrete" else continuous_env
    rng = np.random.default_rng(1)
    if action == "discrete":
        actions = rng.integers(0, 20, SHORT)
        raw_actions = [np.array([a]) for a in actions]
    else:
        actions = rng.random((SHORT, 1), dtype=np.float32)
        raw_actions = list(actions)
    observations, rewards, info = run(env, actions, seed=3)

    raw, ref = authors_env(cl, action)
    ref_obs, ref_rewards = [ref.reset()], []
    for a in raw_actions:
        obs, reward, done, _ = ref.step(a)
        ref_obs.append(obs)
        ref_rewards.append(reward)
    assert not done  # the reference runs on: the year has 8,759 steps
    np.testing.assert_array_equal(observations, np.array(ref_obs))
    np.testing.assert_array_equal(rewards, np.array(ref_rewards, dtype=float))

    kpis = info["episode_kpis"]
    frame = raw.evaluate(
        baseline_condition=cl.EvaluationCondition.WITHOUT_STORAGE_BUT_WITH_PARTIAL_LOAD_AND_PV
    )
    expected = frame.pivot(index="cost_function", columns="name", values="value")[
        "District"
    ].dropna()
    assert kpis == {k: float(v) for k, v in expected.items()}
    assert kpis == district_kpis(raw, cl)
    for name in (
        "cost_total",
        "daily_peak_average",
        "electricity_consumption_total",
        "ramping_average",
    ):
        assert isinstance(kpis[name], float) and np.isfinite(kpis[name])


def test_reset_is_deterministic(cl, discrete_env):
    actions = np.random.default_rng(2).integers(0, 20, SHORT)
    first = run(discrete_env, actions, seed=0)
    second = run(discrete_env, actions, seed=12345)
    third = run(discrete_env, actions)
    other_seed = run(make_citylearn_env(episode_time_steps=SHORT, random_seed=0), actions, seed=0)
    for again in (second, third, other_seed):
        np.testing.assert_array_equal(first[0], again[0])
        np.testing.assert_array_equal(first[1], again[1])
        assert first[2]["episode_kpis"] == again[2]["episode_kpis"]


def test_step_contract(cl, discrete_env, continuous_env):
    discrete_env.reset(seed=0)
    with pytest.raises(ValueError):
        discrete_env.step(20)
    continuous_env.reset(seed=0)
    with pytest.raises(ValueError):
        continuous_env.step(np.zeros(2, np.float32))
    for _ in range(SHORT):
        *_, terminated, truncated, info = discrete_env.step(np.int64(3))
    assert terminated and not truncated and "episode_kpis" in info
    with pytest.raises(RuntimeError, match="reset"):
        discrete_env.step(3)


def test_gymnasium_checker_and_rewards(cl):
    from gymnasium.utils.env_checker import check_env

    env = make_citylearn_env(episode_time_steps=4, reward="solar_penalty")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    default = make_citylearn_env(episode_time_steps=4)
    assert run(env, [19] * 4)[1].tolist() != run(default, [19] * 4)[1].tolist()
    assert type(env.citylearn_env.reward_function).__name__ == "SolarPenaltyReward"


def test_unknown_schema_or_building(cl):
    with pytest.raises(ValueError, match="Building_6"):
        make_citylearn_env(buildings=["Building_1"])
    with pytest.raises(ValueError, match="citylearn_challenge_2022_phase_2"):
        make_citylearn_env(schema="no_such_dataset")


@pytest.mark.parametrize(("action", "algo"), [("discrete", "PPO"), ("continuous", "SAC")])
def test_load_authors_model_custom_objects(
    cl, tmp_path, action, algo, discrete_env, continuous_env
):
    """The loader's custom_objects path on a zip saved here (the authors' files are not bundled)."""
    import stable_baselines3 as sb3

    from rlkit.envs.citylearn.authors import infer_algorithm, load_authors_model

    env = discrete_env if action == "discrete" else continuous_env
    kwargs = (
        {"n_steps": 16, "batch_size": 16}
        if algo == "PPO"
        else {"learning_starts": 10, "buffer_size": 100}
    )
    model = getattr(sb3, algo)(
        "MlpPolicy", env, policy_kwargs={"net_arch": [8]}, device="cpu", **kwargs
    )
    model.save(tmp_path / "victim.zip")
    assert infer_algorithm(tmp_path / "victim.zip") == algo.lower()
    loaded = load_authors_model(tmp_path / "victim.zip", action)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )
    assert loaded.action_space == env.action_space


AUTHORS_DIR = os.environ.get("RLKIT_AUTHORS_DIR")


@pytest.mark.slow
@pytest.mark.skipif(
    not AUTHORS_DIR, reason="set RLKIT_AUTHORS_DIR to a folder with the authors' victim zips"
)
@pytest.mark.parametrize(
    ("file", "action", "cost"),
    [
        (
            "default_PPO_citylearn_challenge_2022_phase_2_Building_6_20_bins_500.zip",
            "discrete",
            0.787803,
        ),
        (
            "SAC_citylearn_challenge_2022_phase_2_Building_6_default_rwd_MARLISA_hyperparams_500.zip",
            "continuous",
            0.798446,
        ),
    ],
)
def test_authors_victims_reproduce_clean_cost(cl, file, action, cost):
    """A deterministic year of the authors' victims gives their clean cost_total (about 15-30 s
    each)."""
    from rlkit.envs.citylearn.authors import load_authors_model

    path = os.path.join(AUTHORS_DIR, file)
    if not os.path.isfile(path):
        pytest.skip(f"{path} missing")
    model = load_authors_model(path, action)
    env = make_citylearn_env(action=action)
    obs, _ = env.reset(seed=0)
    terminated = False
    while not terminated:
        obs, _, terminated, _, info = env.step(model.predict(obs, deterministic=True)[0])
    assert abs(info["episode_kpis"]["cost_total"] - cost) < 1e-4
