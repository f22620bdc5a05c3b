"""Batched AC power flow for radial/meshed distribution feeders.

Two backends share one result type (:class:`PFResult`):

* :class:`ZBusSolver` (fast, default): pandapower builds the network once (``runpp`` with
  ``numba=False``); we take the internal admittance matrix ``Ybus`` (trafos with tap/shift, shunts,
  bus fusion by closed switches, out-of-service elements removed are all already in it) and solve
  N independent injection scenarios at once with the exact fixed-point Z-bus iteration

      V_L <- w + Z conj(S(V_L) / V_L),   Z = inv(Y_LL),   w = -Z Y_Ls V_s

  in complex128 until ``max |dV| < tol``. ``S(V)`` supports pandapower's ZIP loads
  (``const_z_*_percent`` / ``const_i_*_percent``). Sign convention of the inputs follows pandapower:
  loads and storage positive = consumption, sgens positive = generation.
* :class:`PandapowerSolver` (reference): ``pp.runpp`` per scenario.

Networks with voltage-controlled generators (``net.gen`` in service) are not supported by the
Z-bus backend (it has no PV buses); use the pandapower backend for those.
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandapower as pp

try:  # numba is optional
    import numba as _nb
except ImportError:  # pragma: no cover - numba missing
    _nb = None


NUMBA_MAX_ROWS = 8  # above this many scenarios the BLAS (zgemm) path is faster


@dataclass
class PFResult:
    """Batched power-flow result (N scenarios).

    :ivar vm: (N, n_bus) |V| (pu) in ``net.bus`` order (NaN for unsupplied buses), or None.
    :ivar converged: (N,) bool.
    :ivar p_import_mw: (N,) active power drawn from the external grid.
    :ivar losses_mw: (N,) active power absorbed by branches and shunts.
    :ivar max_line_loading: (N,) highest line loading (percent).
    :ivar state: (N, n_int) internal complex voltages for warm starts, or None.
    """

    vm: np.ndarray | None
    converged: np.ndarray
    p_import_mw: np.ndarray
    losses_mw: np.ndarray
    max_line_loading: np.ndarray
    state: np.ndarray | None = None


def _column(df: Any, name: str, default: float) -> np.ndarray:
    if name in df.columns:
        return np.nan_to_num(df[name].to_numpy(dtype=float), nan=default)
    return np.full(len(df), default)


def _incidence(net: Any, element: str, lookup: np.ndarray, n_int: int) -> np.ndarray:
    """Dense (n_elements, n_internal_buses) matrix with scaling*in_service at each element's bus."""
    df = net[element]
    mat = np.zeros((len(df), n_int))
    if len(df) == 0:
        return mat
    buses = lookup[df["bus"].to_numpy(dtype=np.int64)]
    weight = _column(df, "scaling", 1.0) * df["in_service"].to_numpy(dtype=bool)
    ok = buses < n_int
    mat[np.flatnonzero(ok), buses[ok]] = weight[ok]
    return mat


def _element_pq(net: Any, element: str) -> tuple[np.ndarray, np.ndarray]:
    df = net[element]
    return _column(df, "p_mw", 0.0), _column(df, "q_mvar", 0.0)


def prepare_net(net: Any) -> None:
    """Run ``pp.runpp(net, numba=False)`` so that ``net._ppc`` holds the internal model.

    :param net: pandapower network; its result tables are overwritten.
    """
    try:
        pp.runpp(net, numba=False)
    except Exception as exc:  # pandapower raises several types
        raise ValueError(
            f"pandapower could not solve the network at its nominal operating point ({exc}); "
            "the Z-bus solver needs one converged run to extract Ybus"
        ) from exc


class ZBusSolver:
    """Batched fixed-point Z-bus power flow on the admittance matrix pandapower builds.

    Construct once per network topology; then call :meth:`run` (full result) or use the module
    function :func:`solve`.

    :param net: pandapower network (topology and impedances are frozen at this point).
    :param use_numba: run the iteration in a numba kernel for small batches (<= NUMBA_MAX_ROWS
        scenarios; larger batches use BLAS); falls back to numpy if numba is missing.
    :param prepared: ``net`` was already solved by ``runpp`` with its current topology.
    """

    def __init__(self, net: Any, *, use_numba: bool = False, prepared: bool = False) -> None:
        if not prepared:
            prepare_net(net)
        if "gen" in net and len(net.gen) and net.gen["in_service"].any():
            raise ValueError(
                "the zbus backend does not support voltage-controlled generators (net.gen); "
                "use backend='pandapower'"
            )
        ppci = net._ppc["internal"]
        ybus = ppci["Ybus"].tocsr()
        self.base_mva = float(ppci["baseMVA"])
        n_int = ybus.shape[0]
        self.n_int = n_int
        lookup = np.asarray(net._pd2ppc_lookups["bus"], dtype=np.int64)
        self._map_buses(net, lookup)
        self._reduce(ppci, ybus.toarray())
        self._prepare_elements(net, lookup)
        # everything else already in ppci (wards, motors, ...) = total - controlled elements
        bus = ppci["bus"]
        s_total = -(bus[:, 2] + 1j * bus[:, 3]) / self.base_mva  # PD, QD columns
        s_ctrl = self.injections(
            *self.load_pq, *self.sgen_pq, *self.storage_pq, constant_only=True
        )[0]
        self.s_other = s_total - s_ctrl
        # lines: from/to current rows for loading (ppc branch rows -> ppci rows)
        self._prepare_lines(net, ppci, n_int)
        self.use_numba = bool(use_numba and _nb is not None)

    def _map_buses(self, net: Any, lookup: np.ndarray) -> None:
        """``bus_int``: ``net.bus`` position -> internal index (``n_int`` = unsupplied)."""
        n_int = self.n_int
        self.n_bus = len(net.bus)
        bus_int = np.full(self.n_bus, n_int, dtype=np.int64)
        pos = np.arange(self.n_bus)
        idx = net.bus.index.to_numpy(dtype=np.int64)
        valid = idx < len(lookup)
        bus_int[pos[valid]] = lookup[idx[valid]]
        bus_int[(bus_int < 0) | (bus_int >= n_int)] = n_int
        self.bus_int = bus_int
        self.supplied = bus_int < n_int
        self.c_bus = np.zeros((self.n_bus, n_int))
        self.c_bus[np.flatnonzero(self.supplied), bus_int[self.supplied]] = 1.0

    def _reduce(self, ppci: dict, yd: np.ndarray) -> None:
        """Slack split of the dense ``Ybus`` ``yd``: ``Z = inv(Y_LL)``, ``w = -Z Y_Ls V_s``."""
        ref = np.asarray(ppci["ref"], dtype=np.int64)
        pv = np.asarray(ppci["pv"], dtype=np.int64)
        if len(pv):
            raise ValueError("the zbus backend does not support PV buses; use backend='pandapower'")
        self.ref = ref
        self.non_ref = np.setdiff1d(np.arange(self.n_int), ref)
        v_solved = np.asarray(ppci["V"], dtype=complex)
        self.v_slack = v_solved[ref].copy()
        y_ll = yd[np.ix_(self.non_ref, self.non_ref)]
        y_ls = yd[np.ix_(self.non_ref, ref)]
        self.Z = np.linalg.inv(y_ll)
        self.ZT = np.ascontiguousarray(self.Z.T)
        self.w = -self.Z @ (y_ls @ self.v_slack)
        self.y_ref = yd[ref]  # (n_ref, n_int)

    def _prepare_elements(self, net: Any, lookup: np.ndarray) -> None:
        """Incidences and set points of loads, sgens and storage; the ZIP fractions of loads."""
        n_int = self.n_int
        # pu injections = -(p + jq) / baseMVA for consumers
        self.c_load = _incidence(net, "load", lookup, n_int)
        self.c_sgen = _incidence(net, "sgen", lookup, n_int)
        self.c_storage = _incidence(net, "storage", lookup, n_int)
        self.load_pq = _element_pq(net, "load")
        self.sgen_pq = _element_pq(net, "sgen")
        self.storage_pq = _element_pq(net, "storage")
        self.n_sgen, self.n_storage = len(self.c_sgen), len(self.c_storage)
        zp = _column(net.load, "const_z_p_percent", 0.0) / 100
        ip = _column(net.load, "const_i_p_percent", 0.0) / 100
        zq = _column(net.load, "const_z_q_percent", 0.0) / 100
        iq = _column(net.load, "const_i_q_percent", 0.0) / 100
        self.zip = bool(np.any(np.abs(np.r_[zp, ip, zq, iq]) > 0)) and bool(
            net._options.get("voltage_depend_loads", True)
        )
        self._zip_frac = (zp, ip, zq, iq)

    def _prepare_lines(self, net: Any, ppci: dict, n_int: int) -> None:
        self.n_line = 0
        lk = net._pd2ppc_lookups.get("branch", {})
        if "line" not in lk or len(net.line) == 0:
            self.yf = np.zeros((n_int, 0), complex)
            self.yt = np.zeros((n_int, 0), complex)
            self.i_base_ft = np.zeros(0)
            self._finish_outputs()
            return
        f, t = lk["line"]
        branch_is = np.asarray(ppci["branch_is"], dtype=bool)
        ppci_row = np.cumsum(branch_is) - 1
        rows = np.arange(f, t)
        keep = branch_is[rows]
        line_pos = np.flatnonzero(keep)
        int_rows = ppci_row[rows[keep]]
        yf = ppci["Yf"].tocsr()[int_rows].toarray()
        yt = ppci["Yt"].tocsr()[int_rows].toarray()
        self.yf = np.ascontiguousarray(yf.T)
        self.yt = np.ascontiguousarray(yt.T)
        line = net.line.iloc[line_pos]
        vn = net.bus.loc[line["from_bus"].to_numpy(), "vn_kv"].to_numpy(dtype=float)
        vn_t = net.bus.loc[line["to_bus"].to_numpy(), "vn_kv"].to_numpy(dtype=float)
        df = _column(line, "df", 1.0)
        par = _column(line, "parallel", 1.0)
        lim = line["max_i_ka"].to_numpy(dtype=float) * df * par
        # percent loading = |I_pu| * baseMVA / (sqrt3 * vn) / limit * 100
        i_base_f = self.base_mva / (np.sqrt(3) * vn) / lim * 100
        i_base_t = self.base_mva / (np.sqrt(3) * vn_t) / lim * 100
        self.n_line = len(line_pos)
        self.i_base_ft = np.concatenate([i_base_f, i_base_t])
        self._finish_outputs()

    def _finish_outputs(self) -> None:
        # one matmul gives slack currents and line from/to currents: V @ [Y_ref^T | Yf^T | Yt^T]
        self.out_mat = np.ascontiguousarray(
            np.concatenate([self.y_ref.T, self.yf, self.yt], axis=1)
        )
        self.n_ref = len(self.ref)

    # ------------------------------------------------------------------------------------------
    def injections(
        self,
        p_mw: np.ndarray,
        q_mvar: np.ndarray,
        sgen_p_mw: np.ndarray | None = None,
        sgen_q_mvar: np.ndarray | None = None,
        storage_p_mw: np.ndarray | None = None,
        storage_q_mvar: np.ndarray | None = None,
        *,
        constant_only: bool = False,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Per-bus complex injections (pu, generation positive) from per-element set points.

        :param p_mw: load active power (MW), shape (N, n_load) or (n_load,), ``net.load`` order.
        :param q_mvar: load reactive power (Mvar), same shape and order as ``p_mw``.
        :param sgen_p_mw: sgen active power (``net.sgen`` order); None = net values.
        :param sgen_q_mvar: sgen reactive power (``net.sgen`` order); None = net values.
        :param storage_p_mw: storage active power (positive = charging); None = net values.
        :param storage_q_mvar: storage reactive power; None = net values.
        :param constant_only: ignore ZIP fractions (treat every load as constant power).
        :return: ``(s_const, s_current, s_impedance)``; the last two are None without ZIP loads.
        """
        p = np.atleast_2d(np.asarray(p_mw, dtype=float))
        q = np.atleast_2d(np.asarray(q_mvar, dtype=float))
        sg_p = self.sgen_pq[0] if sgen_p_mw is None else np.asarray(sgen_p_mw, dtype=float)
        sg_q = self.sgen_pq[1] if sgen_q_mvar is None else np.asarray(sgen_q_mvar, dtype=float)
        st_p = self.storage_pq[0] if storage_p_mw is None else np.asarray(storage_p_mw, dtype=float)
        st_q = self.storage_pq[1]
        if storage_q_mvar is not None:
            st_q = np.asarray(storage_q_mvar, dtype=float)
        inv = 1.0 / self.base_mva
        s_i = s_z = None
        if self.zip and not constant_only:
            zp, ip, zq, iq = self._zip_frac
            pc = p * (1 - zp - ip)
            qc = q * (1 - zq - iq)
            s_i = -((p * ip) @ self.c_load + 1j * ((q * iq) @ self.c_load)) * inv
            s_z = -((p * zp) @ self.c_load + 1j * ((q * zq) @ self.c_load)) * inv
        else:
            pc, qc = p, q
        s = -(pc @ self.c_load + 1j * (qc @ self.c_load)) * inv
        if self.n_sgen:
            sg_p, sg_q = np.atleast_2d(sg_p), np.atleast_2d(sg_q)
            s = s + (sg_p @ self.c_sgen + 1j * (sg_q @ self.c_sgen)) * inv
        if self.n_storage:
            st_p, st_q = np.atleast_2d(st_p), np.atleast_2d(st_q)
            s = s - (st_p @ self.c_storage + 1j * (st_q @ self.c_storage)) * inv
        if not constant_only:
            s = s + self.s_other
        return s, s_i, s_z

    def solve_bus(
        self,
        s_bus: np.ndarray,
        s_i: np.ndarray | None = None,
        s_z: np.ndarray | None = None,
        *,
        v0: np.ndarray | None = None,
        tol: float = 1e-10,
        max_iter: int = 100,
        check_v0: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Solve for all internal bus voltages given internal per-bus injections.

        :param s_bus: (N, n_int) constant-power injections (pu, generation positive).
        :param s_i: optional (N, n_int) constant-current part (pu at |V| = 1).
        :param s_z: optional (N, n_int) constant-impedance part (pu at |V| = 1).
        :param v0: optional (N, n_int) warm start.
        :param tol: convergence tolerance on max |dV| (pu).
        :param max_iter: iteration cap.
        :param check_v0: replace non-finite / collapsed warm starts by the no-load voltage.
        :return: ``(V, converged, iterations)`` with V (N, n_int) complex.
        """
        if s_bus.ndim == 1:
            s_bus = s_bus[None]
        n = s_bus.shape[0]
        nr = self.non_ref
        sl = s_bus[:, nr]
        si = None if s_i is None else np.atleast_2d(s_i)[:, nr]
        sz = None if s_z is None else np.atleast_2d(s_z)[:, nr]
        if v0 is None:
            vl = np.broadcast_to(self.w, sl.shape).copy()
        else:
            vl = np.atleast_2d(v0)[:, nr]  # fancy indexing copies
            if check_v0:
                bad = ~np.all(np.isfinite(vl) & (np.abs(vl) > 0.3), axis=1)
                if bad.any():
                    vl[bad] = self.w
        if self.use_numba and si is None and n <= NUMBA_MAX_ROWS:
            conv, it = _zbus_kernel(self.ZT, self.w, sl, vl, tol, max_iter)
        else:
            vl, conv, it = _zbus_numpy(self.ZT, self.w, sl, si, sz, vl, tol, max_iter)
        v = np.empty((n, self.n_int), complex)
        v[:, nr] = vl
        v[:, self.ref] = self.v_slack
        return v, conv, it

    def vm_from_state(self, v: np.ndarray) -> np.ndarray:
        """Voltage magnitudes (N, n_bus) in ``net.bus`` order (NaN = unsupplied).

        :param v: (N, n_int) internal complex voltages.
        """
        vm = np.abs(v)
        vm = np.concatenate([vm, np.full((vm.shape[0], 1), np.nan)], axis=1)
        return vm[:, self.bus_int]

    def run(
        self,
        p_mw: np.ndarray,
        q_mvar: np.ndarray,
        sgen_p_mw: np.ndarray | None = None,
        sgen_q_mvar: np.ndarray | None = None,
        storage_p_mw: np.ndarray | None = None,
        *,
        bus_p_mw: np.ndarray | None = None,
        v0: np.ndarray | None = None,
        tol: float = 1e-10,
        max_iter: int = 100,
    ) -> PFResult:
        """Solve N scenarios and compute the derived quantities.

        :param p_mw: (N, n_load) load active power (MW) in ``net.load`` order.
        :param q_mvar: (N, n_load) load reactive power (Mvar) in ``net.load`` order.
        :param sgen_p_mw: (N, n_sgen) sgen active power or None (= net values).
        :param sgen_q_mvar: (N, n_sgen) sgen reactive power or None (= net values).
        :param storage_p_mw: (N, n_storage) storage set points (positive = charging) or None.
        :param bus_p_mw: (N, n_bus) extra constant-power consumption per bus (``net.bus`` order).
        :param v0: warm start (``PFResult.state`` of an earlier call) or None.
        :param tol: convergence tolerance (pu).
        :param max_iter: iteration cap.
        """
        s, s_i, s_z = self.injections(p_mw, q_mvar, sgen_p_mw, sgen_q_mvar, storage_p_mw)
        if bus_p_mw is not None:
            s = s - np.atleast_2d(bus_p_mw) @ self.c_bus / self.base_mva
        return self.run_bus(s, s_i, s_z, v0=v0, tol=tol, max_iter=max_iter)

    def run_bus(
        self,
        s: np.ndarray,
        s_i: np.ndarray | None = None,
        s_z: np.ndarray | None = None,
        *,
        v0: np.ndarray | None = None,
        tol: float = 1e-10,
        max_iter: int = 100,
        with_vm: bool = True,
        check_v0: bool = True,
    ) -> PFResult:
        """Like :meth:`run` but from internal per-bus injections (see :meth:`injections`).

        :param s: (N, n_int) constant-power injections (pu).
        :param s_i: (N, n_int) constant-current injections (pu at |V| = 1) or None.
        :param s_z: (N, n_int) constant-impedance injections (pu at |V| = 1) or None.
        :param v0: warm start or None.
        :param tol: convergence tolerance (pu).
        :param max_iter: iteration cap.
        :param with_vm: also map magnitudes to ``net.bus`` order (else ``PFResult.vm`` is None).
        :param check_v0: validate the warm start (see :meth:`solve_bus`).
        """
        v, conv, _ = self.solve_bus(
            s, s_i, s_z, v0=v0, tol=tol, max_iter=max_iter, check_v0=check_v0
        )
        vm_int = np.abs(v)
        s_eff = s
        if s_i is not None:
            s_eff = s + s_i * vm_int + s_z * vm_int**2
        cur = v @ self.out_mat
        nref = self.n_ref
        p_imp = (v[:, self.ref] * np.conj(cur[:, :nref])).real.sum(axis=1) * self.base_mva
        losses = p_imp + s_eff.real.sum(axis=1) * self.base_mva
        if self.n_line:
            max_load = (np.abs(cur[:, nref:]) * self.i_base_ft).max(axis=1)
        else:
            max_load = np.zeros(len(v))
        vm = self.vm_from_state(v) if with_vm else None
        return PFResult(vm, conv, p_imp, losses, max_load, v)


def _zbus_numpy(
    zt: np.ndarray,
    w: np.ndarray,
    s: np.ndarray,
    s_i: np.ndarray | None,
    s_z: np.ndarray | None,
    v: np.ndarray,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, int]:
    n = v.shape[0]
    conv = np.zeros(n, dtype=bool)
    it = 0
    s_conj = np.conj(s)
    with np.errstate(all="ignore"):
        for it in range(1, max_iter + 1):  # noqa: B007 - returned
            if s_i is None:
                cur = s_conj / np.conj(v)
            else:
                vm = np.abs(v)
                cur = np.conj(s + s_i * vm + s_z * vm * vm) / np.conj(v)
            v_new = cur @ zt
            v_new += w
            err = np.abs(v_new - v).max(axis=1)
            v = v_new
            conv = err < tol
            if conv.all():
                break
    finite = np.isfinite(v).all(axis=1)
    conv &= finite
    v[~finite] = w
    return v, conv, it


def _zbus_kernel_py(zt, w, s, v, tol, max_iter):  # noqa: ANN001, ANN202 - numba kernel
    """Per-row Z-bus iteration, in place on ``v``; returns (converged, max iterations)."""
    n, m = v.shape
    conv = np.zeros(n, dtype=np.bool_)
    cur = np.empty(m, dtype=np.complex128)
    total = 0
    for r in range(n):
        it_used = max_iter
        for it in range(max_iter):
            for j in range(m):
                cur[j] = (s[r, j] / v[r, j]).conjugate()
            err = 0.0
            for k in range(m):
                acc = w[k]
                for j in range(m):
                    acc += cur[j] * zt[j, k]
                d = abs(acc - v[r, k])
                if not d <= err:  # also catches NaN
                    err = d if d == d else np.inf
                v[r, k] = acc
            if err < tol:
                conv[r] = True
                it_used = it + 1
                break
        if not conv[r]:
            for k in range(m):
                if not (
                    v[r, k].real == v[r, k].real
                    and v[r, k].imag == v[r, k].imag
                    and abs(v[r, k]) < 1e6
                ):
                    for kk in range(m):
                        v[r, kk] = w[kk]
                    break
        total = max(total, it_used)
    return conv, total


_zbus_kernel = _nb.njit(cache=True)(_zbus_kernel_py) if _nb is not None else _zbus_kernel_py


class PandapowerSolver:
    """Reference backend: one ``pp.runpp`` per scenario on a private copy of the network.

    :param net: pandapower network (copied).
    :param use_numba: passed to ``runpp``.
    """

    def __init__(self, net: Any, *, use_numba: bool = False) -> None:
        self.net = copy.deepcopy(net)
        self.use_numba = use_numba
        self.zb = ZBusSolver(self.net)  # only for injection bookkeeping / losses
        self.n_bus = len(self.net.bus)
        for b in self.net.bus.index:  # zero loads that carry bus-level alterations
            pp.create_load(self.net, bus=b, p_mw=0.0, name="rlkit_alteration")
        self._first = True

    def run(
        self,
        p_mw: np.ndarray,
        q_mvar: np.ndarray,
        sgen_p_mw: np.ndarray | None = None,
        sgen_q_mvar: np.ndarray | None = None,
        storage_p_mw: np.ndarray | None = None,
        *,
        bus_p_mw: np.ndarray | None = None,
        v0: np.ndarray | None = None,
        tol: float = 1e-10,
        max_iter: int = 100,
    ) -> PFResult:
        """Solve N scenarios with ``pp.runpp`` (arguments as :meth:`ZBusSolver.run`).

        :param p_mw: (N, n_load) load active power set points.
        :param q_mvar: (N, n_load) load reactive power set points.
        :param sgen_p_mw: (N, n_sgen) active power or None.
        :param sgen_q_mvar: (N, n_sgen) reactive power or None.
        :param storage_p_mw: (N, n_storage) or None.
        :param bus_p_mw: (N, n_bus) extra consumption per bus or None.
        :param v0: ignored.
        :param tol: ignored (pandapower's default tolerance is used).
        :param max_iter: passed to runpp as ``max_iteration``.
        """
        net = self.net
        p = np.atleast_2d(p_mw)
        q = np.atleast_2d(q_mvar)
        n = p.shape[0]
        per_row = [
            None if x is None else np.atleast_2d(x) for x in (sgen_p_mw, sgen_q_mvar, storage_p_mw)
        ]
        vm = np.full((n, self.n_bus), np.nan)
        conv = np.zeros(n, dtype=bool)
        p_imp = np.zeros(n)
        losses = np.zeros(n)
        loading = np.zeros(n)
        extra = np.zeros((n, self.n_bus)) if bus_p_mw is None else np.atleast_2d(bus_p_mw)
        for r in range(n):
            sg_p, sg_q, st_p = (None if x is None else x[r] for x in per_row)
            self._set_scenario(p[r], q[r], extra[r], sg_p, sg_q, st_p)
            if not self._runpp(max_iter):
                continue
            conv[r] = True
            vm[r] = net.res_bus["vm_pu"].to_numpy()
            p_imp[r] = net.res_ext_grid["p_mw"].sum()
            inj = self.zb.injections(p[r], q[r], sg_p, sg_q, st_p, constant_only=True)[0]
            losses[r] = p_imp[r] + inj.real.sum() * self.zb.base_mva - extra[r].sum()
            if len(net.res_line):
                loading[r] = np.nan_to_num(net.res_line["loading_percent"].to_numpy()).max()
        return PFResult(vm, conv, p_imp, losses, loading, None)

    def _set_scenario(
        self,
        p: np.ndarray,
        q: np.ndarray,
        extra: np.ndarray,
        sg_p: np.ndarray | None,
        sg_q: np.ndarray | None,
        st_p: np.ndarray | None,
    ) -> None:
        """Write one scenario's set points into the private net (None = leave as is)."""
        net = self.net
        net.load["p_mw"] = np.concatenate([p, extra])
        net.load["q_mvar"] = np.concatenate([q, np.zeros(self.n_bus)])
        if sg_p is not None:
            net.sgen["p_mw"] = sg_p
        if sg_q is not None:
            net.sgen["q_mvar"] = sg_q
        if st_p is not None:
            net.storage["p_mw"] = st_p

    def _runpp(self, max_iter: int) -> bool:
        """``runpp`` warm-started from the last converged result; False when it fails."""
        try:
            pp.runpp(
                self.net,
                numba=self.use_numba,
                max_iteration=max(max_iter, 10),
                init="auto" if self._first else "results",
            )
        except Exception:
            self._first = True
            return False
        self._first = False
        return True


_SOLVERS: dict[int, tuple[Any, ZBusSolver]] = {}


def get_solver(net: Any, *, use_numba: bool = False) -> ZBusSolver:
    """Return the cached :class:`ZBusSolver` of ``net`` (built on first use).

    :param net: pandapower network; the cache is keyed by object identity, so rebuild the net after
        changing its topology or impedances.
    :param use_numba: use the numba kernel.
    """
    key = id(net)
    hit = _SOLVERS.get(key)
    if hit is not None and hit[0]() is net:
        hit[1].use_numba = bool(use_numba and _nb is not None)
        return hit[1]
    solver = ZBusSolver(net, use_numba=use_numba)
    try:
        ref: Any = weakref.ref(net)
    except TypeError:  # pragma: no cover
        ref = lambda: net  # noqa: E731
    _SOLVERS[key] = (ref, solver)
    return solver


def solve(
    net: Any,
    p_mw: np.ndarray,
    q_mvar: np.ndarray,
    *,
    sgen_p_mw: np.ndarray | None = None,
    sgen_q_mvar: np.ndarray | None = None,
    storage_p_mw: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    use_numba: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched AC power flow of N load scenarios on ``net`` with the Z-bus solver.

    :param net: pandapower network (its solver is built once and cached).
    :param p_mw: (N, n_load) load active power (MW) in ``net.load`` order (``scaling`` and
        ``in_service`` of the net are applied as pandapower does).
    :param q_mvar: (N, n_load) load reactive power (Mvar), same order and conventions.
    :param sgen_p_mw: (N, n_sgen) static generator active power or None (= net values).
    :param sgen_q_mvar: (N, n_sgen) static generator reactive power or None (= net values).
    :param storage_p_mw: (N, n_storage) storage set points, positive = charging, or None.
    :param tol: convergence tolerance on max |dV| (pu).
    :param max_iter: iteration cap.
    :param use_numba: use the numba kernel.
    :return: ``(vm_pu, converged)``: vm_pu (N, n_bus) in ``net.bus`` order (NaN for unsupplied
        buses), converged (N,) bool.
    """
    solver = get_solver(net, use_numba=use_numba)
    res = solver.run(p_mw, q_mvar, sgen_p_mw, sgen_q_mvar, storage_p_mw, tol=tol, max_iter=max_iter)
    return res.vm, res.converged
