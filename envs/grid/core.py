"""Batched simulator shared by the single env and the native vector env.

``GridCore`` holds B independent feeders (same network and data, own clocks, SOCs, RNG draws and
load alterations) and advances all of them with one batched power-flow solve per step (2B rows
when the no-battery counterfactual is on).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import profiles as prof
from .config import GridEnvConfig
from .networks import add_assets, default_asset_buses, load_network, validate_buses
from .powerflow import PandapowerSolver, PFResult, ZBusSolver

V_OBS_LOW, V_OBS_HIGH = 0.8, 1.2
LOAD_OBS_HEADROOM = 1.5

KPI_BASE_KEYS = ("cost", "daily_peak", "consumption", "ramping")
KPI_OTHER_KEYS = (
    "voltage_violations",
    "voltage_violation_depth",
    "vmin",
    "vmax",
    "max_line_loading",
    "losses_mwh",
)


def _ratio(value: np.ndarray, base: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(base != 0, base, 1.0)
        out = np.where(base != 0, value / safe, np.where(value == 0, 1.0, np.inf))
    return out


class GridCore:
    """B feeders advanced together; see :class:`rlkit.envs.grid.env.GridBatteryEnv` for semantics.

    :param config: validated environment config.
    :param batch: number of feeders B.
    """

    def __init__(self, config: GridEnvConfig, batch: int) -> None:
        cfg = config
        self.cfg = cfg
        self.B = batch
        net = load_network(cfg.network)
        bb = cfg.battery_buses
        if bb is None:
            bb = default_asset_buses(net, cfg.network)
        pvb = cfg.pv_buses if cfg.pv_buses is not None else list(bb)
        if len(bb) == 0:
            raise ValueError("battery_buses must name at least one bus")
        validate_buses(net, bb, "battery_buses")
        validate_buses(net, pvb, "pv_buses")
        self.battery_buses = [int(b) for b in bb]
        self.pv_buses = [int(b) for b in pvb] if cfg.pv_peak_mw > 0 else []
        self.n_orig_sgen = len(net.sgen)
        st_pos, sg_pos = add_assets(
            net,
            self.battery_buses,
            cfg.battery_p_mw,
            cfg.battery_e_mwh,
            self.pv_buses,
            cfg.pv_peak_mw,
        )
        self.net = net
        self.nb = len(self.battery_buses)
        self.dt = cfg.step_minutes / 60.0
        self.steps_per_day = 24 * 60 // cfg.step_minutes
        self.T = cfg.episode_days * self.steps_per_day
        self.zb = ZBusSolver(net, use_numba=cfg.numba)
        self.pp_solver = None
        if cfg.backend == "pandapower":
            self.pp_solver = PandapowerSolver(net, use_numba=cfg.numba)
        self._build_profiles(st_pos, sg_pos)
        self._build_obs_layout()
        self._alloc_state()

    # ------------------------------------------------------------------ data
    def _build_profiles(self, st_pos: np.ndarray, sg_pos: np.ndarray) -> None:
        """Yearly per-element set points, bus injections and observation scales."""
        cfg, net = self.cfg, self.net
        p_raw = net.load["p_mw"].to_numpy(float)
        p_nom = p_raw * cfg.load_scale
        q_nom = net.load["q_mvar"].to_numpy(float) * cfg.load_scale
        lp, res_tab = self._unit_load_profiles()
        sg_prof, sg_nom = self._sgen_profiles(res_tab)
        # Profiles peak at 1 each, but their coincident peak is lower (diversity): rescale them
        # together so the feeder's yearly peak is load_scale x its nominal load.
        coincident = float((lp @ p_raw).max()) / max(float(p_raw.sum()), 1e-12)
        lp = lp / max(coincident, 1e-9)
        step = cfg.step_minutes
        lp = prof.resample(lp, step)
        sg_prof = prof.resample(sg_prof, step)
        self.price_year = prof.resample(prof.tou_prices(cfg.prices), step)
        self.price_max = float(max(cfg.prices))
        self.n_year = lp.shape[0]
        self.load_p_year = lp * p_nom
        self.load_q_year = lp * q_nom
        self.sgen_p_year = sg_prof * sg_nom
        self.sgen_q = net.sgen["q_mvar"].to_numpy(float)
        self.storage_p_fixed = net.storage["p_mw"].to_numpy(float).copy()
        self.batt_storage_pos = st_pos
        self._build_injections(st_pos)
        self._build_load_features(p_nom)
        self.pv_p_year = self.sgen_p_year[:, sg_pos] if len(sg_pos) else np.zeros((self.n_year, 0))
        self.import_bound = (
            LOAD_OBS_HEADROOM * np.abs(p_nom).sum()
            + self.nb * cfg.battery_p_mw
            + np.abs(sg_nom).sum()
            + np.abs(self.storage_p_fixed).sum()
            + 1e-6
        )
        self.days = prof.split_days(cfg.split, cfg.episode_days)
        # buses for metrics (supplied) and observed voltages
        zb = self.zb
        self.metric_int = zb.bus_int[zb.supplied]
        self.metric_all = np.array_equal(self.metric_int, np.arange(zb.n_int))

    def _unit_load_profiles(self) -> tuple[np.ndarray, prof.ProfileTable]:
        """Per-unit 15-minute load profiles (N_STEPS_15, n_load) and the PV/renewable table.

        SimBench: a load follows its own ``profile`` column when SimBench knows it, else the
        defaults in turn; synthetic: seeded shapes (8 PV columns ``PV1``..``PV8``).
        """
        cfg, net = self.cfg, self.net
        n_load = len(net.load)
        if cfg.profiles == "synthetic":
            lp = prof.synthetic_load_profiles(n_load, cfg.profile_seed)
            pv_names = [f"PV{i + 1}" for i in range(8)]
            return lp, prof.ProfileTable(prof.synthetic_pv_profiles(8, cfg.profile_seed), pv_names)
        tab = prof.simbench_load_profiles()
        names = list(net.load["profile"]) if "profile" in net.load.columns else [None] * n_load
        defaults = prof.DEFAULT_LOAD_PROFILES
        cols = []
        for i, nm in enumerate(names):
            known = isinstance(nm, str) and nm in tab.names
            cols.append(tab.names.index(nm if known else defaults[i % len(defaults)]))
        return tab.data[:, cols], prof.simbench_res_profiles()

    def _sgen_profiles(self, res_tab: prof.ProfileTable) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit profiles (N_STEPS_15, n_sgen) and nominal MW of every sgen.

        Added PV units and existing PV sgens follow the PV columns in turn; existing sgens with a
        known profile name follow it; the rest stay at their nominal output.
        """
        cfg, net = self.cfg, self.net
        n_sg, n_orig = len(net.sgen), self.n_orig_sgen
        sg_prof = np.ones((prof.N_STEPS_15, n_sg))
        sg_nom = net.sgen["p_mw"].to_numpy(float).copy()
        sg_nom[n_orig:] = cfg.pv_peak_mw
        sg_names = list(net.sgen["profile"]) if "profile" in net.sgen.columns else [None] * n_sg
        types = [str(t) for t in net.sgen["type"]] if "type" in net.sgen.columns else [""] * n_sg
        pv_count = 0
        for j in range(n_sg):
            nm = sg_names[j]
            if j < n_orig and isinstance(nm, str) and nm in res_tab.names:
                sg_prof[:, j] = res_tab.column(nm)
            elif j >= n_orig or "PV" in types[j].upper():
                sg_prof[:, j] = res_tab.column(f"PV{pv_count % 8 + 1}")
                pv_count += 1
        return sg_prof, sg_nom

    def _build_injections(self, st_pos: np.ndarray) -> None:
        """Bus-level injections of everything that does not depend on the agent."""
        zb = self.zb
        st0 = self.storage_p_fixed.copy()
        st0[st_pos] = 0.0
        sgen_q = np.broadcast_to(self.sgen_q, self.sgen_p_year.shape)
        self.s_year, self.s_i_year, self.s_z_year = zb.injections(
            self.load_p_year, self.load_q_year, self.sgen_p_year, sgen_q, st0
        )
        self.c_batt = zb.c_storage[st_pos] / zb.base_mva  # MW -> pu consumption
        self.c_bus = zb.c_bus / zb.base_mva

    def _build_load_features(self, p_nom: np.ndarray) -> None:
        """Active load per in-service load bus (observation ``load``) and its scale."""
        net = self.net
        n_load = len(net.load)
        load_buses = sorted({int(b) for b in net.load.loc[net.load["in_service"], "bus"]})
        self.load_buses = load_buses
        agg = np.zeros((n_load, len(load_buses)))
        inserv = net.load["in_service"].to_numpy(bool)
        scal = np.ones(n_load)
        if "scaling" in net.load.columns:
            scal = net.load["scaling"].to_numpy(float)
        for i, b in enumerate(net.load["bus"]):
            if inserv[i]:
                agg[i, load_buses.index(int(b))] = scal[i]
        self.load_bus_year = self.load_p_year @ agg
        nom = np.maximum(np.abs(p_nom * scal * inserv) @ np.abs(agg), 1e-6)
        self.load_bus_nom = nom * LOAD_OBS_HEADROOM
        self.bus_pos = {int(b): i for i, b in enumerate(net.bus.index)}
        self.load_bus_pos = np.array([self.bus_pos[b] for b in load_buses], dtype=np.int64)

    def _build_obs_layout(self) -> None:
        cfg = self.cfg
        names: list[str] = []
        groups: dict[str, slice] = {}

        def add(group: str, feats: list[str]) -> None:
            groups[group] = slice(len(names), len(names) + len(feats))
            names.extend(feats)

        add("calendar", ["tod_sin", "tod_cos", "doy_sin", "doy_cos", "weekend"])
        add("load", [f"load_p[bus{b}]" for b in self.load_buses])
        add("pv", [f"pv_p[bus{b}]" for b in self.pv_buses])
        add("soc", [f"soc[bus{b}]" for b in self.battery_buses])
        add("price", ["price"] + [f"price_+{h}h" for h in cfg.price_forecast_hours])
        if cfg.voltage_buses == "assets":
            vb = sorted(set(self.battery_buses) | set(self.pv_buses))
        elif cfg.voltage_buses == "all":
            vb = [int(b) for b, ok in zip(self.net.bus.index, self.zb.supplied, strict=True) if ok]
        else:
            vb = [int(b) for b in cfg.voltage_buses]
            validate_buses_exist(self.net, vb)
        self.v_obs_int = self.zb.bus_int[[self.bus_pos[b] for b in vb]]
        add("voltage", [f"vm[bus{b}]" for b in vb] + ["vm_min"])
        add("grid", ["net_import"])
        self.feature_names = names
        self.obs_groups = groups
        self.obs_dim = len(names)
        self.load_slice = groups["load"]
        self._build_exogenous()

    def _build_exogenous(self) -> None:
        """Exogenous features per step of the year: [calendar, load, pv] and [price, forecasts]."""
        cfg = self.cfg
        self.forecast_steps = [int(h * 60 // cfg.step_minutes) for h in cfg.price_forecast_hours]
        t_abs = np.arange(self.n_year)
        spd = self.steps_per_day
        tod = 2 * np.pi * (t_abs % spd) / spd
        day = t_abs // spd
        doy = 2 * np.pi * day / prof.N_DAYS
        cal = np.stack([np.sin(tod), np.cos(tod), np.sin(doy), np.cos(doy)], axis=1) * 0.5 + 0.5
        weekend = (prof.weekday(day) >= 5).astype(float)[:, None]
        load = self.load_bus_year / self.load_bus_nom
        pv = (self.pv_p_year / cfg.pv_peak_mw) if self.pv_buses else np.zeros((self.n_year, 0))
        self.exo_a = np.clip(np.concatenate([cal, weekend, load, pv], axis=1), 0.0, 1.0)
        pr = [self.price_year] + [np.roll(self.price_year, -h) for h in self.forecast_steps]
        self.exo_b = np.stack(pr, axis=1) / self.price_max

    def _alloc_state(self) -> None:
        B, nb = self.B, self.nb
        rows = 2 * B if self.cfg.counterfactual else B
        self.rows = rows
        self._rows_b = np.arange(B)
        self._rows_all = np.arange(rows)
        self.t = np.zeros(B, dtype=np.int64)
        self.start = np.zeros(B, dtype=np.int64)
        self.energy = np.zeros((B, nb))
        v_flat = np.r_[self.zb.v_slack.mean() * np.ones(self.zb.n_int)]
        self.v_state = np.broadcast_to(v_flat, (rows, self.zb.n_int)).astype(complex)
        self.vm_last = np.ones((rows, self.zb.n_int))
        self.p_imp_last = np.zeros(rows)
        self.alter: list[dict[int, np.ndarray]] = [{} for _ in range(B)]
        self.alter_rows: set[int] = set()
        self.kpi: dict[str, np.ndarray] = {}
        self.e_min = self.cfg.soc_min * self.cfg.battery_e_mwh
        self.e_max = self.cfg.soc_max * self.cfg.battery_e_mwh

    # ------------------------------------------------------------------ helpers
    def _alteration(self, rows: np.ndarray) -> np.ndarray | None:
        out = None
        if not self.alter_rows:
            return None
        for k, b in enumerate(rows):
            d = self.alter[b]
            if d:
                vec = d.get(int(self.t[b]))
                if vec is not None:
                    if out is None:
                        out = np.zeros((len(rows), len(self.net.bus)))
                    out[k] = vec
        return out

    def apply_load_alteration(self, row: int, delta_p_mw: Any, buses: Any, steps: Any) -> None:
        """Add ``delta_p_mw`` (MW consumption) at ``buses`` during absolute episode ``steps``.

        :param row: feeder index in the batch.
        :param delta_p_mw: scalar or array broadcastable to (len(buses),) or
            (len(steps), len(buses)).
        :param buses: pandapower bus indices.
        :param steps: episode step indices in [0, T).
        """
        buses = [int(b) for b in np.atleast_1d(buses)]
        steps = [int(s) for s in np.atleast_1d(steps)]
        for b in buses:
            if b not in self.bus_pos:
                raise ValueError(f"load alteration: bus {b} is not in the network")
        for s in steps:
            if not 0 <= s < self.T:
                raise ValueError(f"load alteration: step {s} outside the episode [0, {self.T})")
        delta = np.broadcast_to(np.asarray(delta_p_mw, float), (len(steps), len(buses)))
        pos = [self.bus_pos[b] for b in buses]
        for k, s in enumerate(steps):
            vec = self.alter[row].get(s)
            if vec is None:
                vec = np.zeros(len(self.net.bus))
                self.alter[row][s] = vec
            np.add.at(vec, pos, delta[k])
        self.alter_rows.add(int(row))

    def _solve(
        self,
        s: np.ndarray,
        idx: np.ndarray,
        state_rows: np.ndarray,
        storage_p: np.ndarray,
        alter: np.ndarray | None,
    ) -> PFResult:
        cfg = self.cfg
        if self.pp_solver is not None:
            st = np.broadcast_to(self.storage_p_fixed, (len(s), len(self.storage_p_fixed))).copy()
            st[:, self.batt_storage_pos] = storage_p
            return self.pp_solver.run(
                self.load_p_year[idx],
                self.load_q_year[idx],
                self.sgen_p_year[idx],
                np.broadcast_to(self.sgen_q, (len(s), len(self.sgen_q))),
                st,
                bus_p_mw=alter,
                max_iter=cfg.max_iter,
            )
        s_i = None if self.s_i_year is None else self.s_i_year[idx]
        s_z = None if self.s_z_year is None else self.s_z_year[idx]
        return self.zb.run_bus(
            s,
            s_i,
            s_z,
            v0=self.v_state[state_rows],
            tol=cfg.tol,
            max_iter=cfg.max_iter,
            with_vm=False,
            check_v0=False,
        )

    # ------------------------------------------------------------------ reset / step
    def reset_rows(
        self,
        rows: np.ndarray,
        rngs: list[np.random.Generator],
        start_days: list[int | None] | None = None,
    ) -> np.ndarray:
        """Reset feeders ``rows`` (draws: start day, then SOC noise, from each row's generator).

        :param rows: feeder indices.
        :param rngs: one generator per entry of ``rows``.
        :param start_days: optional explicit start day per row (None entries = config / random).
        :return: observations (len(rows), obs_dim) float32.
        """
        rows = np.asarray(rows, dtype=np.int64)
        for k, b in enumerate(rows):
            self._reset_row(int(b), rngs[k], None if start_days is None else start_days[k])
        self._init_kpis()
        krows = np.r_[rows, rows + self.B] if self.cfg.counterfactual else rows
        for key in self.kpi:
            self.kpi[key][krows] = 0.0
        self.kpi["vmin"][krows] = np.inf
        self.kpi["vmax"][krows] = -np.inf
        self.kpi["day_peak_running"][krows] = -np.inf
        self._measure_idle(rows)
        return self._obs(rows)

    def _reset_row(self, b: int, rng: np.random.Generator, start_day: int | None) -> None:
        """Draw the start day (unless given or fixed) and the initial SOC of feeder ``b``."""
        cfg = self.cfg
        sd = cfg.start_day if start_day is None else start_day
        if sd is None:
            sd = int(rng.choice(self.days))
        elif not 0 <= sd <= prof.N_DAYS - cfg.episode_days:
            raise ValueError(
                f"profile window out of range: start_day={sd} with episode_days="
                f"{cfg.episode_days} (valid 0..{prof.N_DAYS - cfg.episode_days})"
            )
        soc = cfg.initial_soc
        if cfg.initial_soc_noise > 0:
            soc = soc + rng.uniform(-cfg.initial_soc_noise, cfg.initial_soc_noise, size=self.nb)
        soc = np.clip(soc, cfg.soc_min, cfg.soc_max)
        self.energy[b] = soc * cfg.battery_e_mwh
        self.start[b] = sd * self.steps_per_day
        self.t[b] = 0
        self.alter[b] = {}
        self.alter_rows.discard(b)

    def _measure_idle(self, rows: np.ndarray) -> None:
        """Initial measurement of ``rows`` (and their counterfactuals): step 0, batteries idle."""
        idx = self.start[rows]
        res = self._solve(self.s_year[idx], idx, rows, np.zeros((len(rows), self.nb)), None)
        vm_int = np.nan_to_num(np.abs(res.state), nan=1.0) if res.state is not None else None
        for rr in [rows, rows + self.B] if self.cfg.counterfactual else [rows]:
            if res.state is not None:
                ok = res.converged
                self.v_state[rr[ok]] = res.state[ok]
                self.vm_last[rr[ok]] = vm_int[ok]
            else:
                self.vm_last[rr] = self._vm_int_from_pp(res.vm)
            self.p_imp_last[rr] = np.nan_to_num(res.p_import_mw)

    def _vm_int_from_pp(self, vm_pp: np.ndarray) -> np.ndarray:
        out = np.ones((vm_pp.shape[0], self.zb.n_int))
        ok = self.zb.supplied
        out[:, self.zb.bus_int[ok]] = np.nan_to_num(vm_pp[:, ok], nan=1.0)
        return out

    def _init_kpis(self) -> None:
        if self.kpi:
            return
        keys = list(KPI_BASE_KEYS + KPI_OTHER_KEYS) + ["day_peak_running", "nonconverged_steps"]
        self.kpi = {k: np.zeros(self.rows) for k in keys}

    def project(self, action: np.ndarray) -> np.ndarray:
        """Map actions in [-1, 1] to feasible battery powers (MW, + = charging) for all feeders.

        :param action: (B, nb) raw actions (clipped to [-1, 1]).
        """
        cfg = self.cfg
        a = np.asarray(action, float).reshape(self.B, self.nb)
        if not np.isfinite(a).all():
            a = np.nan_to_num(a, nan=0.0)
        p = np.minimum(np.maximum(a, -1.0), 1.0) * cfg.battery_p_mw
        eta, dt = cfg.efficiency, self.dt
        upper = np.maximum((self.e_max - self.energy) * (1.0 / (eta * dt)), 0.0)
        lower = np.minimum((self.e_min - self.energy) * (eta / dt), 0.0)
        return np.minimum(np.maximum(p, lower), upper)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every feeder by one step.

        :param action: (B, nb) actions in [-1, 1].
        :return: ``(obs, reward, truncated, info)`` with per-feeder arrays; the callers add
            ``episode_kpis`` (:meth:`episode_kpis`) for finished rows.
        """
        B = self.B
        p_b = self.project(action)
        self._charge(p_b)
        idx = self.start + self.t
        res = self._solve(*self._step_injections(p_b, idx))
        conv = res.converged
        all_conv = bool(conv.all())
        vm_int, p_imp, losses, loading = self._measurements(res, all_conv)
        depth, n_viol, vmin, vmax = self._voltage_metrics(vm_int)
        price = self.price_year[idx]
        imp_pos = np.maximum(p_imp, 0.0)
        cost, ramp = self._cost_and_ramp(price, imp_pos, p_imp)
        conv_b = conv[:B]
        reward = self._reward(p_b, cost, depth, losses, ramp, conv_b, all_conv)
        self._accumulate(imp_pos, cost, ramp, vmin, vmax, n_viol, depth, loading, losses, conv)
        info = {
            "cost": cost[:B],
            "net_import_mw": p_imp[:B],
            "losses_mw": losses[:B],
            "vmin": vmin[:B],
            "vmax": vmax[:B],
            "n_violations": n_viol[:B],
            "violation_depth": depth[:B],
            "max_line_loading": loading[:B],
            "converged": conv_b,
            "battery_p_mw": p_b,
            "soc": self.energy / self.cfg.battery_e_mwh,
            "price": price,
            "step": self.t.copy(),
        }
        self.t += 1
        truncated = self.t >= self.T
        if not all_conv:
            truncated = truncated | ~conv_b
        obs = self._obs(self._rows_b)
        return obs, reward, truncated, info

    def _charge(self, p_b: np.ndarray) -> None:
        """Move the stored energy by battery powers ``p_b`` over one step (within the limits)."""
        eta, dt = self.cfg.efficiency, self.dt
        e = self.energy + np.where(p_b > 0, p_b * (eta * dt), p_b * (dt / eta))
        self.energy = np.minimum(np.maximum(e, self.e_min), self.e_max)

    def _step_injections(
        self, p_b: np.ndarray, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Any]:
        """Arguments of :meth:`_solve` for one step: the B feeder rows (then their B no-battery
        counterfactual rows when configured), with this step's load alterations."""
        B = self.B
        s_base = self.s_year[idx]
        alter = self._alteration(self._rows_b)
        if alter is not None:
            s_base = s_base - alter @ self.c_bus
        if not self.cfg.counterfactual:
            return s_base - p_b @ self.c_batt, idx, self._rows_all, p_b, alter
        s = np.empty((self.rows, s_base.shape[1]), complex)
        s[:B] = s_base - p_b @ self.c_batt
        s[B:] = s_base
        idx2 = np.concatenate([idx, idx])
        pb2 = np.concatenate([p_b, np.zeros_like(p_b)])
        alt2 = None if alter is None else np.concatenate([alter, alter])
        return s, idx2, self._rows_all, pb2, alt2

    def _measurements(
        self, res: PFResult, all_conv: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Internal |V|, import, losses and line loading of a solve; rows that did not converge
        keep their last voltages and import (losses and loading 0) and their warm start."""
        conv = res.converged
        if res.state is not None:
            vm_int = np.abs(res.state)
            if all_conv:
                self.v_state = res.state
            else:
                self.v_state[conv] = res.state[conv]
        else:
            vm_int = self._vm_int_from_pp(res.vm)
        p_imp, losses, loading = res.p_import_mw, res.losses_mw, res.max_line_loading
        if not all_conv:
            vm_int = np.where(conv[:, None], vm_int, self.vm_last)
            p_imp = np.where(conv, np.nan_to_num(p_imp), self.p_imp_last)
            losses = np.where(conv, np.nan_to_num(losses), 0.0)
            loading = np.where(conv, np.nan_to_num(loading), 0.0)
        self.vm_last = vm_int
        return vm_int, p_imp, losses, loading

    def _voltage_metrics(
        self, vm_int: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row over supplied buses: violation depth (pu), violating buses, min and max |V|."""
        cfg = self.cfg
        vm = vm_int if self.metric_all else vm_int[:, self.metric_int]
        dev = np.maximum(vm - cfg.v_max, 0.0) + np.maximum(cfg.v_min - vm, 0.0)
        return dev.sum(axis=1), np.count_nonzero(dev, axis=1), vm.min(axis=1), vm.max(axis=1)

    def _cost_and_ramp(
        self, price: np.ndarray, imp_pos: np.ndarray, p_imp: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Energy cost and |change in import| per row (0 on an episode's first step)."""
        first = self.t == 0
        if self.cfg.counterfactual:
            price = np.concatenate([price, price])
            first = np.concatenate([first, first])
        cost = price * imp_pos * self.dt
        ramp = np.where(first, 0.0, np.abs(p_imp - self.p_imp_last))
        self.p_imp_last = p_imp
        return cost, ramp

    def _reward(
        self,
        p_b: np.ndarray,
        cost: np.ndarray,
        depth: np.ndarray,
        losses: np.ndarray,
        ramp: np.ndarray,
        conv_b: np.ndarray,
        all_conv: bool,
    ) -> np.ndarray:
        """Reward of the B feeders (formula in :class:`~rlkit.envs.grid.env.GridBatteryEnv`)."""
        cfg, B, dt = self.cfg, self.B, self.dt
        w = cfg.reward_weights
        reward = -(w.cost * cost[:B] + w.voltage * depth[:B])
        if cfg.reward_baseline == "no_battery" and cfg.counterfactual:
            # subtract what the feeder would have cost without batteries: an offset the policy
            # cannot change (same optimum), which removes the load's variance from the return
            reward = reward + w.cost * cost[B:] + w.voltage * depth[B:]
        if w.losses:
            reward -= w.losses * losses[:B] * dt
        if w.ramping:
            reward -= w.ramping * ramp[:B]
        if w.throughput:
            reward -= w.throughput * np.abs(p_b).sum(axis=1) * dt
        if not all_conv:
            reward = reward - w.nonconvergence * (~conv_b)
        return reward

    def _accumulate(
        self,
        imp_pos: np.ndarray,
        cost: np.ndarray,
        ramp: np.ndarray,
        vmin: np.ndarray,
        vmax: np.ndarray,
        n_viol: np.ndarray,
        depth: np.ndarray,
        loading: np.ndarray,
        losses: np.ndarray,
        conv: np.ndarray,
    ) -> None:
        k, dt = self.kpi, self.dt
        k["cost"] += cost
        k["consumption"] += imp_pos * dt
        k["ramping"] += ramp
        k["voltage_violations"] += n_viol
        k["voltage_violation_depth"] += depth
        np.minimum(k["vmin"], vmin, out=k["vmin"])
        np.maximum(k["vmax"], vmax, out=k["vmax"])
        np.maximum(k["max_line_loading"], loading, out=k["max_line_loading"])
        k["losses_mwh"] += losses * dt
        run = np.maximum(k["day_peak_running"], imp_pos)
        end_of_day = (self.t + 1) % self.steps_per_day == 0
        if end_of_day.any():
            eod = end_of_day
            if self.cfg.counterfactual:
                eod = np.concatenate([end_of_day, end_of_day])
            k["daily_peak"] += np.where(eod, run, 0.0)
            run = np.where(eod, -np.inf, run)
        k["day_peak_running"] = run
        k["nonconverged_steps"] += ~conv

    def episode_kpis(self, row: int) -> dict[str, float]:
        """Episode KPIs of feeder ``row`` so far (call on its final step).

        :param row: feeder index.
        """
        k = self.kpi
        steps = int(self.t[row])
        out: dict[str, float] = {}
        sets = [("", row)]
        if self.cfg.counterfactual:
            sets.append(("_no_battery", row + self.B))
        full_days = steps // self.steps_per_day
        for suf, r in sets:
            peak_sum = k["daily_peak"][r]
            partial = k["day_peak_running"][r]
            n_days = max(full_days, 1)
            if np.isfinite(partial):  # partial last day (truncated episode)
                peak_sum = peak_sum + partial
                n_days = full_days + 1
            out["daily_peak" + suf] = float(peak_sum / n_days)
            for key in ("cost", "consumption", "ramping") + KPI_OTHER_KEYS:
                out[key + suf] = float(k[key][r])
        if self.cfg.counterfactual:
            for key in KPI_BASE_KEYS:
                ratio = _ratio(np.array(out[key]), np.array(out[key + "_no_battery"]))
                out[key + "_norm"] = float(ratio)
        out["steps"] = float(steps)
        out["nonconverged_steps"] = float(k["nonconverged_steps"][row])
        return out

    # ------------------------------------------------------------------ observation
    def _obs(self, rows: np.ndarray) -> np.ndarray:
        idx = (self.start[rows] + self.t[rows]) % self.n_year
        exo_a = self.exo_a[idx]
        alter = self._alteration(rows)
        if alter is not None:
            sl = self.load_slice
            load = exo_a[:, sl] + alter[:, self.load_bus_pos] / self.load_bus_nom
            exo_a[:, sl] = np.clip(load, 0.0, 1.0)
        soc = self.energy[rows] / self.cfg.battery_e_mwh
        vm_rows = self.vm_last[rows]
        vm_metric = vm_rows if self.metric_all else vm_rows[:, self.metric_int]
        vmin = vm_metric.min(axis=1, keepdims=True)
        volt = np.concatenate([vm_rows[:, self.v_obs_int], vmin], axis=1)
        volt = (volt - V_OBS_LOW) * (1.0 / (V_OBS_HIGH - V_OBS_LOW))
        volt = np.minimum(np.maximum(volt, 0.0), 1.0)
        grid = (self.p_imp_last[rows] + self.import_bound) * (0.5 / self.import_bound)
        grid = np.minimum(np.maximum(grid, 0.0), 1.0)
        obs = np.concatenate([exo_a, soc, self.exo_b[idx], volt, grid[:, None]], axis=1)
        return obs.astype(np.float32)


def validate_buses_exist(net: Any, buses: list[int]) -> None:
    """Raise ValueError if a voltage bus is unknown.

    :param net: pandapower net.
    :param buses: pandapower bus indices.
    """
    idx = set(int(b) for b in net.bus.index)
    bad = [b for b in buses if b not in idx]
    if bad:
        raise ValueError(
            f"voltage_buses: buses {bad} are not in the network (valid: {min(idx)}..{max(idx)})"
        )
