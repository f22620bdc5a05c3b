"""Single-feeder gymnasium environment ``GridBatteryEnv`` (``rlkit/GridBattery-v0``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from .config import GridEnvConfig
from .core import GridCore


def build_config(config: GridEnvConfig | dict | None, kwargs: dict[str, Any]) -> GridEnvConfig:
    """Merge a config (model or dict) with keyword overrides and validate.

    :param config: base config, a dict of fields, or None (defaults).
    :param kwargs: field overrides.
    """
    if config is None:
        base: dict[str, Any] = {}
    elif isinstance(config, GridEnvConfig):
        base = {
            k: getattr(config, k) for k in type(config).model_fields if k in config.model_fields_set
        }
    elif isinstance(config, dict):
        base = dict(config)
    else:
        raise TypeError(f"config must be GridEnvConfig, dict or None, got {type(config).__name__}")
    base.update(kwargs)
    return GridEnvConfig.model_validate(base)


class GridBatteryEnv(gym.Env):
    """Battery dispatch on a distribution feeder solved by AC power flow.

    **Time.** One step = ``step_minutes`` (15 or 60); an episode covers ``episode_days`` days that
    start on a random day of the chosen split (test days: ``day % 5 == 4``) or on ``start_day``.
    ``reset(options={"start_day": d})`` fixes the start day for one episode. The episode ends with
    ``truncated=True`` after ``episode_days`` days (time limit: the grid keeps running) or at the
    first power flow that does not converge; ``terminated`` is always False.

    **Action.** ``Box(-1, 1, (n_batteries,))``; ``a * battery_p_mw`` MW, positive = charging,
    projected onto what the SOC allows in this step: with one-way efficiency ``eta`` and step ``dt``
    hours, ``p <= (E_max - E) / (eta dt)`` and ``p >= -(E - E_min) eta / dt``; the energy then moves
    by ``eta p dt`` when charging and ``p dt / eta`` when discharging.

    **Observation.** Flat ``Box(0, 1)`` float32 with fixed per-feature bounds; names in
    ``feature_names`` and groups in ``obs_groups``:

    * ``calendar``: sin/cos of time of day and day of year mapped by ``(x + 1) / 2``, weekend flag.
    * ``load``: active load per load bus (incl. physical alterations) / (1.5 x nominal x
      load_scale).
    * ``pv``: added PV units' output / peak.
    * ``soc``: battery SOC (fraction of capacity).
    * ``price``: current ToU price and forecasts at ``price_forecast_hours``, / max price.
    * ``voltage``: measured |V| after the previous step at ``voltage_buses`` and the feeder
      minimum, mapped from [0.8, 1.2] pu.
    * ``grid``: net import of the previous step, mapped from [-B, B] with
      ``B = 1.5 sum(P_load) + sum(battery P) + sum(sgen P) + sum(|fixed storage P|)``.

    Load, PV and price features describe the interval the action applies to; voltages and import
    are the last measurement (at reset: the power flow of step 0 with idle batteries). Values
    outside the bounds are clipped.

    **Reward** (negated weighted sum, weights in ``reward_weights``)::

        r = -( w_cost * price * max(P_import, 0) * dt
             + w_voltage * sum_buses((v - v_max)+ + (v_min - v)+)
             + w_losses * P_loss * dt + w_ramping * |P_import - P_import_prev|
             + w_throughput * sum|p_batt| * dt ) - w_nonconvergence * [not converged]

    Exported power earns nothing. Ramping is 0 on the first step of an episode. With
    ``reward_baseline="no_battery"`` the cost and voltage terms of the same step without batteries
    are added back, so the reward is the saving the batteries make (same optimal policy).

    **Info** every step: ``cost``, ``net_import_mw``, ``losses_mw``, ``vmin``, ``vmax``,
    ``n_violations``, ``violation_depth``, ``max_line_loading`` (%), ``converged``,
    ``battery_p_mw``, ``soc``, ``price``, ``step``. On the final step ``episode_kpis``: ``cost``,
    ``daily_peak`` (mean over days of the max import), ``consumption`` (MWh of positive import),
    ``ramping`` (sum |delta import| over the episode), each with ``*_no_battery`` (same episode,
    same loads and alterations, batteries idle) and ``*_norm`` (ratio to it); plus
    ``voltage_violations`` (bus-steps), ``voltage_violation_depth`` (pu, summed), ``vmin``,
    ``vmax``, ``max_line_loading``, ``losses_mwh`` (each also ``*_no_battery``), ``steps`` and
    ``nonconverged_steps``.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: GridEnvConfig | dict | None = None, **kwargs: Any) -> None:
        """Create the environment.

        :param config: a :class:`GridEnvConfig` (or dict of its fields); None = defaults.
        :param kwargs: field overrides, e.g. ``network="cigre_mv"``.
        """
        super().__init__()
        self.config = build_config(config, kwargs)
        self.core = GridCore(self.config, 1)
        n = self.core.obs_dim
        self.observation_space = gym.spaces.Box(0.0, 1.0, (n,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.core.nb,), dtype=np.float32)
        self.feature_names: list[str] = list(self.core.feature_names)
        self.obs_groups: dict[str, slice] = dict(self.core.obs_groups)
        self.episode_steps = self.core.T
        self.steps_per_day = self.core.steps_per_day
        self._needs_reset = True

    @property
    def net(self) -> Any:
        """The pandapower network (with the added ``rlkit_battery``/``rlkit_pv`` elements)."""
        return self.core.net

    @property
    def battery_buses(self) -> list[int]:
        """pandapower bus indices of the batteries (action order)."""
        return list(self.core.battery_buses)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode.

        :param seed: RNG seed (start-day and SOC draws).
        :param options: ``{"start_day": int}`` to fix this episode's first day.
        """
        super().reset(seed=seed)
        sd = None if not options else options.get("start_day")
        obs = self.core.reset_rows(np.array([0]), [self.np_random], [sd])
        self._needs_reset = False
        info = {
            "start_day": int(self.core.start[0] // self.core.steps_per_day),
            "soc": self.core.energy[0] / self.config.battery_e_mwh,
        }
        return obs[0], info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply one battery dispatch.

        :param action: array (n_batteries,) in [-1, 1].
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (episode over or not started)")
        obs, rew, trunc, info_b = self.core.step(np.asarray(action, dtype=float).reshape(1, -1))
        info: dict[str, Any] = {}
        for k, v in info_b.items():
            val = v[0]
            info[k] = val if isinstance(val, np.ndarray) else val.item()
        truncated = bool(trunc[0])
        if truncated:
            info["episode_kpis"] = self.core.episode_kpis(0)
            self._needs_reset = True
        return obs[0], float(rew[0]), False, truncated, info

    def apply_load_alteration(self, delta_p_mw: Any, buses: Any, steps: Any) -> None:
        """Physically change consumption (a load-altering attack) in the current episode.

        Adds ``delta_p_mw`` MW of constant-power consumption (negative = less) at each pandapower
        bus in ``buses`` during the absolute episode step indices ``steps``. Alterations add up and
        are cleared at the next reset; they also appear in the ``load`` observations of buses with
        loads and in the no-battery counterfactual.

        :param delta_p_mw: scalar, (len(buses),) or (len(steps), len(buses)) MW.
        :param buses: pandapower bus index or indices.
        :param steps: episode step index or indices in [0, episode_steps).
        """
        self.core.apply_load_alteration(0, delta_p_mw, buses, steps)
