"""GridBatteryVectorEnv equals N seeded single envs; gymnasium vector conventions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from rlkit.envs.grid import ENV_ID, GridBatteryEnv, GridBatteryVectorEnv

KW = dict(profiles="synthetic", numba=False, step_minutes=60, initial_soc_noise=0.2)


def test_vector_equals_single_envs_across_autoreset():
    n, seed = 3, 7
    venv = GridBatteryVectorEnv(n, **KW)
    envs = [GridBatteryEnv(**KW) for _ in range(n)]
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.single_observation_space == envs[0].observation_space
    assert venv.single_action_space == envs[0].action_space
    assert venv.observation_space.shape == (n, *envs[0].observation_space.shape)
    vo, vinfo = venv.reset(seed=seed)
    so = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    np.testing.assert_array_equal(vo, np.stack(so))
    assert [e.core.start[0] for e in envs] == list(venv.core.start)
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(30):  # episodes are 24 steps: crosses one autoreset
        act = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
        vo, vr, vterm, vtrunc, vinfo = venv.step(act)
        for i, e in enumerate(envs):
            o, r, term, trunc, info = e.step(act[i])
            # equal up to the solver tolerance (batched rows may take extra fixed-point iterations)
            assert vr[i] == pytest.approx(r, rel=1e-8) and vterm[i] == term and vtrunc[i] == trunc
            assert vinfo["vmin"][i] == pytest.approx(info["vmin"], abs=1e-9)
            assert vinfo["cost"][i] == pytest.approx(info["cost"], rel=1e-8)
            if trunc:
                finished += 1
                np.testing.assert_allclose(vinfo["final_obs"][i], o, atol=1e-6)
                assert vinfo["_final_info"][i]
                k = vinfo["final_info"]["episode_kpis"]
                for key, val in info["episode_kpis"].items():
                    assert k[key][i] == pytest.approx(val, rel=1e-8, abs=1e-9), key
                o, _ = e.reset()
            np.testing.assert_allclose(vo[i], o, atol=1e-6)
    assert finished == n


def test_vector_load_alteration_and_make_vec():
    venv = GridBatteryVectorEnv(2, **KW)
    venv.reset(seed=0, options={"start_day": 5})
    venv.apply_load_alteration(0.6, buses=[32], steps=[0], env_indices=[1])
    _, _, _, _, info = venv.step(np.zeros((2, 4)))
    assert info["vmin"][1] < info["vmin"][0]
    # same start day and idle batteries: the import differs by the extra load plus extra losses
    extra = 0.6 + info["losses_mw"][1] - info["losses_mw"][0]
    d_imp = info["net_import_mw"][1] - info["net_import_mw"][0]
    assert d_imp == pytest.approx(extra, abs=1e-9)
    # and copy 1 is what a single env with the same alteration sees
    single = GridBatteryEnv(**KW)
    single.reset(seed=1, options={"start_day": 5})
    single.apply_load_alteration(0.6, buses=[32], steps=[0])
    _, _, _, _, ref = single.step(np.zeros(4))
    assert info["vmin"][1] == pytest.approx(ref["vmin"], abs=1e-9)
    assert info["net_import_mw"][1] == pytest.approx(ref["net_import_mw"], abs=1e-9)
    v2 = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", **KW)
    obs, _ = v2.reset(seed=0)
    assert obs.shape == (2, len(venv.feature_names))
