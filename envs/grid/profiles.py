"""Load / PV / price time series: real SimBench profiles or a seeded synthetic generator.

All series cover the 366 days of 2016 (the SimBench year) at 15-minute resolution
(35,136 steps) and are per-unit: load profiles are divided by their yearly maximum, PV profiles
are fractions of peak power. :func:`resample` averages them to 60 minutes.

Train/test split by day: day ``d`` (0-based) is a *test* day iff ``d % 5 == 4``; all other days are
training days (see :func:`split_days`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

STEPS_PER_DAY_15 = 96
N_DAYS = 366
N_STEPS_15 = STEPS_PER_DAY_15 * N_DAYS
FIRST_WEEKDAY = 4  # 2016-01-01 was a Friday (Monday = 0)
DEFAULT_LOAD_PROFILES = ("H0-A", "H0-B", "H0-C", "G1-A", "H0-G", "G0-A", "H0-L", "G4-A")


@dataclass
class ProfileTable:
    """Named per-unit profiles: ``data`` (n_steps, n_columns) float64 and ``names``."""

    data: np.ndarray
    names: list[str]

    def column(self, name: str) -> np.ndarray:
        """Return one column by name.

        :param name: column name.
        """
        return self.data[:, self.names.index(name)]


def _simbench_dir() -> str:
    import simbench

    base = os.path.join(os.path.dirname(simbench.__file__), "networks")
    path = os.path.join(base, "1-complete_data-mixed-all-0-sw")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"SimBench profile folder not found at {path}")
    return path


@functools.lru_cache(maxsize=1)
def simbench_load_profiles() -> ProfileTable:
    """All SimBench active-power load profiles (``<type>_pload`` columns), divided by their max."""
    import pandas as pd

    path = os.path.join(_simbench_dir(), "LoadProfile.csv")
    head = pd.read_csv(path, sep=";", nrows=1)
    cols = [c for c in head.columns if c.endswith("_pload")]
    df = pd.read_csv(path, sep=";", usecols=cols, dtype="float64")
    data = df.to_numpy()
    data = np.clip(data, 0.0, None) / np.maximum(data.max(axis=0), 1e-9)
    return ProfileTable(data, [c[: -len("_pload")] for c in cols])


@functools.lru_cache(maxsize=1)
def simbench_res_profiles() -> ProfileTable:
    """All SimBench renewable profiles (PV1..PV8, WP1.., ...), divided by their max."""
    import pandas as pd

    path = os.path.join(_simbench_dir(), "RESProfile.csv")
    head = pd.read_csv(path, sep=";", nrows=1)
    cols = [c for c in head.columns if c != "time"]
    data = pd.read_csv(path, sep=";", usecols=cols, dtype="float64").to_numpy()
    data = np.clip(data, 0.0, None) / np.maximum(data.max(axis=0), 1e-9)
    return ProfileTable(data, cols)


def _ar1(rng: np.random.Generator, n: int, cols: int, phi: float, sigma: float) -> np.ndarray:
    from scipy.signal import lfilter

    eps = rng.normal(0.0, sigma * np.sqrt(1 - phi**2), size=(n, cols))
    return lfilter([1.0], [1.0, -phi], eps, axis=0)


def _calendar() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.arange(N_STEPS_15)
    hour = (t % STEPS_PER_DAY_15) / 4.0
    day = t // STEPS_PER_DAY_15
    weekend = weekday(day) >= 5
    return hour, day, weekend


def synthetic_load_profiles(n_loads: int, seed: int = 0) -> np.ndarray:
    """Seeded synthetic load profiles (N_STEPS_15, n_loads), each with maximum 1.

    Each load mixes a residential shape (morning and evening peaks) and a commercial shape
    (daytime plateau, low on weekends) with a random share, a winter-high seasonal factor and
    multiplicative AR(1) noise (phi 0.9 per 15 min, sigma 0.08).

    :param n_loads: number of profiles.
    :param seed: generator seed.
    """
    rng = np.random.default_rng(seed)
    hour, day, weekend = _calendar()
    res = (
        0.35
        + 0.35 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2)
        + 0.65 * np.exp(-0.5 * ((hour - 19.0) / 2.0) ** 2)
    )
    res = res * np.where(weekend, 1.1, 1.0)
    plateau = 1 / (1 + np.exp(-(hour - 8) * 2)) * 1 / (1 + np.exp((hour - 18) * 2))
    com = 0.25 + 0.75 * plateau * np.where(weekend, 0.35, 1.0)
    season = 1 + 0.2 * np.cos(2 * np.pi * (day - 15) / N_DAYS)
    share = rng.beta(2.0, 5.0, size=n_loads)  # commercial share, mostly residential
    base = (res[:, None] * (1 - share) + com[:, None] * share) * season[:, None]
    noise = np.exp(_ar1(rng, N_STEPS_15, n_loads, 0.9, 0.08))
    prof = base * noise
    return prof / prof.max(axis=0)


def synthetic_pv_profiles(n_units: int, seed: int = 0) -> np.ndarray:
    """Seeded synthetic PV profiles (N_STEPS_15, n_units) as fractions of peak power.

    Clear-sky shape ``sin(pi (h - sunrise) / daylength) ** 1.5`` with seasonal day length and
    amplitude, times a shared cloud factor (daily clearness ~ Beta(5, 2) plus intra-day AR(1)
    fluctuations) and a small per-unit variation.

    :param n_units: number of PV units.
    :param seed: generator seed.
    """
    rng = np.random.default_rng(seed + 10_007)
    hour, day, _ = _calendar()
    season = np.cos(2 * np.pi * (day - 172) / N_DAYS)  # +1 at summer solstice
    half = 6.0 + 2.0 * season
    rise, sett = 12.5 - half, 12.5 + half
    x = np.clip((hour - rise) / (sett - rise), 0.0, 1.0)
    clear = np.sin(np.pi * x) ** 1.5 * (0.65 + 0.35 * season)
    clear_day = rng.beta(5.0, 2.0, size=N_DAYS)[day]
    fluct = _ar1(rng, N_STEPS_15, 1, 0.8, 0.15)[:, 0]
    cloud = np.clip(clear_day + fluct * (1 - clear_day), 0.05, 1.0)
    unit = np.clip(1 + _ar1(rng, N_STEPS_15, n_units, 0.7, 0.05), 0.8, 1.1)
    return np.clip(clear[:, None] * cloud[:, None] * unit, 0.0, 1.0)


def weekday(day: np.ndarray | int) -> np.ndarray:
    """Weekday (Monday = 0) of 0-based day(s) of 2016.

    :param day: day index or array of day indices.
    """
    return (np.asarray(day) + FIRST_WEEKDAY) % 7


def tou_prices(prices: tuple[float, float, float]) -> np.ndarray:
    """Time-of-use price per 15-minute step of the year (N_STEPS_15,).

    Weekdays: off-peak 23-7h, shoulder 7-17h and 21-23h, peak 17-21h; weekends: the peak window
    is charged at the shoulder price.

    :param prices: (off-peak, shoulder, peak) price per MWh.
    """
    hour, _, weekend = _calendar()
    off, shoulder, peak = prices
    out = np.full(N_STEPS_15, shoulder, dtype=float)
    out[(hour >= 23) | (hour < 7)] = off
    out[(hour >= 17) & (hour < 21) & ~weekend] = peak
    return out


def resample(series: np.ndarray, step_minutes: int) -> np.ndarray:
    """Average a 15-minute series (first axis) to ``step_minutes`` (15 or 60).

    :param series: array with time on axis 0 (length a multiple of 4 for 60 minutes).
    :param step_minutes: 15 (returned unchanged) or 60.
    """
    if step_minutes == 15:
        return series
    if step_minutes != 60:
        raise ValueError(f"step_minutes must be 15 or 60, got {step_minutes}")
    k = 4
    return series.reshape(series.shape[0] // k, k, *series.shape[1:]).mean(axis=1)


def split_days(split: str, episode_days: int) -> np.ndarray:
    """Valid episode start days of a split.

    Day ``d`` is a test day iff ``d % 5 == 4``. An episode belongs to the split of its start day and
    must end inside the year (start <= 366 - episode_days).

    :param split: 'train' or 'test'.
    :param episode_days: episode length in days.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    days = np.arange(0, N_DAYS - episode_days + 1)
    is_test = days % 5 == 4
    out = days[is_test] if split == "test" else days[~is_test]
    if len(out) == 0:
        raise ValueError(f"no {split} days for episode_days={episode_days}")
    return out
