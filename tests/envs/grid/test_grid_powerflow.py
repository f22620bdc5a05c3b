"""Z-bus power flow against pandapower's Newton-Raphson (runpp, numba=False)."""

from __future__ import annotations

import copy

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from rlkit.envs.grid.networks import load_network
from rlkit.envs.grid.powerflow import ZBusSolver, get_solver, solve

TOL = 1e-6


def _compare(net, p, q, sgen_p=None, storage_p=None, n_check=30):
    res = ZBusSolver(copy.deepcopy(net)).run(p, q, sgen_p, None, storage_p)
    assert res.converged.all()
    ref = copy.deepcopy(net)
    worst = 0.0
    for r in range(min(n_check, len(p))):
        ref.load["p_mw"] = p[r]
        ref.load["q_mvar"] = q[r]
        if sgen_p is not None:
            ref.sgen["p_mw"] = sgen_p[r]
        if storage_p is not None:
            ref.storage["p_mw"] = storage_p[r]
        pp.runpp(ref, numba=False)
        vm = ref.res_bus["vm_pu"].to_numpy()
        worst = max(worst, float(np.nanmax(np.abs(vm - res.vm[r]))))
        assert np.array_equal(np.isnan(vm), np.isnan(res.vm[r]))
        assert abs(ref.res_ext_grid["p_mw"].sum() - res.p_import_mw[r]) < 1e-5
        if len(ref.res_line):
            assert abs(np.nanmax(ref.res_line["loading_percent"]) - res.max_line_loading[r]) < 1e-3
    assert worst < TOL, worst
    return worst


def _random_loads(net, n, rng):
    f = rng.uniform(0.3, 2.0, size=(n, len(net.load)))
    return net.load["p_mw"].to_numpy() * f, net.load["q_mvar"].to_numpy() * f


@pytest.mark.slow
def test_case33bw_matches_runpp():
    net = pn.case33bw()
    rng = np.random.default_rng(0)
    p, q = _random_loads(net, 300, rng)
    _compare(net, p, q, n_check=100)


def test_cigre_mv_der_matches_runpp():
    net = pn.create_cigre_network_mv(with_der="all")
    rng = np.random.default_rng(1)
    p, q = _random_loads(net, 200, rng)
    sg = net.sgen["p_mw"].to_numpy() * rng.uniform(0.0, 1.5, size=(200, len(net.sgen)))
    st = net.storage["p_mw"].to_numpy() * rng.uniform(-1.0, 1.0, size=(200, len(net.storage)))
    _compare(net, p, q, sg, st, n_check=30)


def test_simbench_lv_matches_runpp():
    net = load_network("1-LV-rural1--0-sw")
    rng = np.random.default_rng(2)
    p, q = _random_loads(net, 200, rng)
    _compare(net, p, q, n_check=30)


def test_solve_api_shapes_and_cache():
    net = pn.case33bw()
    p = np.tile(net.load["p_mw"].to_numpy(), (3, 1))
    q = np.tile(net.load["q_mvar"].to_numpy(), (3, 1))
    vm, conv = solve(net, p, q)
    assert vm.shape == (3, len(net.bus)) and conv.shape == (3,) and conv.all()
    assert get_solver(net) is get_solver(net)
    # nominal case33bw: vmin 0.9131 at bus 17 (Baran-Wu)
    assert abs(vm[0].min() - 0.9131) < 1e-3 and int(np.argmin(vm[0])) == 17


def test_nonconvergence_flagged_without_nan():
    net = pn.case33bw()
    p = net.load["p_mw"].to_numpy()[None] * np.array([[1.0], [60.0]])
    q = net.load["q_mvar"].to_numpy()[None] * np.array([[1.0], [60.0]])
    vm, conv = solve(net, p, q, max_iter=50)
    assert conv[0] and not conv[1]
    assert np.isfinite(vm).all()


def test_numba_kernel_matches_numpy():
    pytest.importorskip("numba")
    net = pn.case33bw()
    zb = ZBusSolver(net)
    rng = np.random.default_rng(3)
    p, q = _random_loads(net, 4, rng)
    s = zb.injections(p, q)[0]
    v_np, c_np, _ = zb.solve_bus(s)
    zb.use_numba = True
    v_nb, c_nb, _ = zb.solve_bus(s)
    assert c_np.all() and c_nb.all()
    assert np.abs(v_np - v_nb).max() < 1e-9
