"""Typed configuration of the smart-grid battery environment (``GridEnvConfig``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

BUILTIN_NETWORKS = ("case33bw", "cigre_mv")
EXAMPLE_SIMBENCH_CODES = ("1-MV-rural--0-sw", "1-LV-rural1--0-sw", "1-MV-urban--0-sw")


class RewardWeights(BaseModel):
    """Weights of the (negated) reward terms; see ``GridBatteryEnv`` for the formula."""

    model_config = ConfigDict(extra="forbid")

    cost: float = Field(
        0.1, ge=0, description="Weight per currency unit of energy cost (import at the ToU price)."
    )
    voltage: float = Field(
        100.0, ge=0, description="Weight per pu of summed voltage-band violation depth."
    )
    losses: float = Field(0.0, ge=0, description="Weight per MWh of network losses.")
    ramping: float = Field(
        0.0, ge=0, description="Weight per MW of |change in net import| between steps."
    )
    throughput: float = Field(
        0.0, ge=0, description="Weight per MWh of battery throughput sum(|p|)*dt."
    )
    nonconvergence: float = Field(
        100.0, ge=0, description="Penalty added when the power flow does not converge."
    )


class GridEnvConfig(BaseModel):
    """Configuration of ``GridBatteryEnv`` / ``GridBatteryVectorEnv``.

    Every field documents itself (the descriptions become CLI help). Unknown keys are rejected.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # --- network -------------------------------------------------------------------------------
    network: str | Callable[[], Any] = Field(
        "case33bw",
        description=(
            "Feeder: 'case33bw' (IEEE 33-bus), 'cigre_mv' (CIGRE MV with all DER), a SimBench code "
            "such as '1-MV-rural--0-sw', a path to a pandapower JSON file, or a callable returning "
            "a pandapower net."
        ),
    )
    load_scale: float = Field(
        0.8,
        gt=0,
        description="Feeder yearly peak load as a fraction of the network's nominal load "
        "(profiles are rescaled together so their coincident peak hits it).",
    )
    # --- assets ----------------------------------------------------------------------------------
    battery_buses: list[int] | None = Field(
        None,
        description="pandapower bus indices of the batteries; None = network default "
        "(case33bw: 17, 21, 24, 32; others: the 4 load buses farthest from the slack).",
    )
    battery_p_mw: float = Field(0.3, description="Battery power rating (MW, charge and discharge).")
    battery_e_mwh: float = Field(1.2, description="Battery energy capacity (MWh).")
    efficiency: float = Field(
        0.95, description="One-way efficiency in (0, 1], applied on charge and discharge."
    )
    soc_min: float = Field(0.1, description="Lower SOC limit (fraction of capacity).")
    soc_max: float = Field(0.9, description="Upper SOC limit (fraction of capacity).")
    initial_soc: float = Field(
        0.5, description="SOC at reset (fraction), must lie in [soc_min, soc_max]."
    )
    initial_soc_noise: float = Field(
        0.0, ge=0, description="Uniform +/- noise on the initial SOC (clipped to the limits)."
    )
    pv_buses: list[int] | None = Field(
        None, description="pandapower bus indices of added PV units; None = same as battery_buses."
    )
    pv_peak_mw: float = Field(
        0.5, description="Peak power of each added PV unit (MW); 0 disables PV."
    )
    # --- time series ---------------------------------------------------------------------------
    profiles: Literal["simbench", "synthetic"] = Field(
        "simbench",
        description="'simbench': real SimBench 2016 load/PV profiles (15 min, shipped offline); "
        "'synthetic': seeded residential/commercial shapes with AR(1) noise and cloudy "
        "clear-sky PV.",
    )
    profile_seed: int = Field(
        0, description="Seed of the synthetic profile generator (fixed data set)."
    )
    step_minutes: Literal[15, 60] = Field(
        15, description="Control time step in minutes (60 = hourly means)."
    )
    episode_days: int = Field(1, ge=1, le=365, description="Episode length in days.")
    split: Literal["train", "test"] = Field(
        "train", description="Day split: day d (0-based in the year) is a test day iff d % 5 == 4."
    )
    start_day: int | None = Field(
        None,
        ge=0,
        description="Fixed start day of every episode (overrides the split); None = random.",
    )
    prices: tuple[float, float, float] = Field(
        (80.0, 150.0, 300.0),
        description="Time-of-use price per MWh: off-peak (23-7h), shoulder (7-17h, 21-23h), "
        "peak (17-21h); weekends use shoulder instead of peak.",
    )
    price_forecast_hours: list[int] = Field(
        [1, 6], description="Horizons (hours) of the price forecasts in the observation."
    )
    # --- observation -----------------------------------------------------------------------------
    voltage_buses: Literal["assets", "all"] | list[int] = Field(
        "assets",
        description="Buses whose voltage is observed: 'assets' (battery and PV buses), 'all' "
        "(every in-service bus), or a list of pandapower bus indices. A min-voltage feature is "
        "always added.",
    )
    # --- reward / solver -----------------------------------------------------------------------
    reward_weights: RewardWeights = Field(
        default_factory=RewardWeights, description="Weights of the reward terms."
    )
    reward_baseline: Literal["none", "no_battery"] = Field(
        "none",
        description="'no_battery': reward cost and voltage terms relative to the same step "
        "without batteries (savings; same optimal policy, far less variance; needs "
        "counterfactual=True); 'none': absolute.",
    )
    v_min: float = Field(0.95, gt=0, description="Lower voltage band limit (pu).")
    v_max: float = Field(1.05, gt=0, description="Upper voltage band limit (pu).")
    backend: Literal["zbus", "pandapower"] = Field(
        "zbus",
        description="'zbus': batched fixed-point solver on pandapower's Ybus; "
        "'pandapower': runpp each step.",
    )
    numba: bool = Field(
        True,
        description="Use a numba kernel for small Z-bus batches (<= 8 rows) and numba in runpp; "
        "False avoids JIT compile time (tests).",
    )
    tol: float = Field(1e-10, gt=0, description="Z-bus convergence tolerance on max |dV| (pu).")
    max_iter: int = Field(100, ge=1, description="Z-bus iteration cap; more means non-converged.")
    counterfactual: bool = Field(
        True,
        description="Also solve the same episode without batteries (needed for normalised KPIs).",
    )

    @field_validator("efficiency")
    @classmethod
    def _check_eff(cls, v: float) -> float:
        if not 0.0 < v <= 1.0:
            raise ValueError(f"efficiency must be in (0, 1], got {v}")
        return v

    @field_validator("battery_p_mw", "battery_e_mwh")
    @classmethod
    def _check_positive(cls, v: float, info: Any) -> float:
        if not v > 0:
            raise ValueError(f"{info.field_name} must be positive, got {v}")
        return v

    @field_validator("pv_peak_mw")
    @classmethod
    def _check_pv(cls, v: float) -> float:
        if v < 0:
            raise ValueError(f"pv_peak_mw must be >= 0, got {v}")
        return v

    @field_validator("price_forecast_hours")
    @classmethod
    def _check_horizons(cls, v: list[int]) -> list[int]:
        if any(h < 1 or h > 48 for h in v):
            raise ValueError(f"price_forecast_hours must lie in [1, 48], got {v}")
        return v

    @field_validator("prices")
    @classmethod
    def _check_prices(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) < 0 or max(v) <= 0:
            raise ValueError(f"prices must be >= 0 with a positive maximum, got {v}")
        return v

    @field_validator("network")
    @classmethod
    def _check_network(cls, v: Any) -> Any:
        if isinstance(v, str) and not v.strip():
            raise ValueError("network must be a non-empty name, path or callable")
        return v

    @model_validator(mode="after")
    def _check_ranges(self) -> GridEnvConfig:
        if not 0.0 <= self.soc_min < self.soc_max <= 1.0:
            raise ValueError(
                "need 0 <= soc_min < soc_max <= 1, got "
                f"soc_min={self.soc_min}, soc_max={self.soc_max}"
            )
        if not self.soc_min <= self.initial_soc <= self.soc_max:
            raise ValueError(
                f"initial_soc={self.initial_soc} must lie in [soc_min, soc_max]="
                f"[{self.soc_min}, {self.soc_max}]"
            )
        if not self.v_min < 1.0 < self.v_max:
            raise ValueError(f"need v_min < 1 < v_max, got v_min={self.v_min}, v_max={self.v_max}")
        if self.start_day is not None and self.start_day + self.episode_days > 366:
            raise ValueError(
                f"profile window out of range: start_day={self.start_day} + episode_days="
                f"{self.episode_days} exceeds the 366 days of profile data (days 0..365)"
            )
        return self
