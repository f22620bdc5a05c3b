"""Reference controllers for the grid env: no battery use, and a rule-based dispatcher."""

from __future__ import annotations

import numpy as np

OFF_PEAK_MAX = 0.3  # normalised price below which energy is cheap (80/300 with default prices)
PEAK_MIN = 0.99  # normalised price of the peak tariff


class IdleController:
    """Batteries never move: the same episode as without batteries (normalised KPIs = 1).

    :param n_batteries: action dimension.
    """

    def __init__(self, n_batteries: int) -> None:
        self.n = n_batteries

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Zero actions.

        :param obs: (N, obs_dim) observations.
        :return: (N, n_batteries) float32 zeros.
        """
        return np.zeros((len(obs), self.n), dtype=np.float32)


class RuleBasedController:
    """Charge on PV surplus or cheap energy, discharge at the peak tariff, otherwise hold.

    Reads the observation by feature name: ``price`` (normalised by the highest tariff) and
    ``net_import`` (normalised from [-B, B] to [0, 1], so < 0.5 means export / PV surplus).

    :param feature_names: the env's ``feature_names``.
    :param n_batteries: action dimension.
    :param power: action magnitude used when charging or discharging (fraction of rating).
    """

    def __init__(self, feature_names: list[str], n_batteries: int, power: float = 1.0) -> None:
        self.price = feature_names.index("price")
        self.net_import = feature_names.index("net_import")
        self.n, self.power = n_batteries, power

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations (the same set-point for every battery).

        :param obs: (N, obs_dim) observations.
        :return: (N, n_batteries) float32 actions in {-power, 0, +power}.
        """
        obs = np.asarray(obs, dtype=np.float32).reshape(len(obs), -1)
        price, net_import = obs[:, self.price], obs[:, self.net_import]
        charge = (price <= OFF_PEAK_MAX) | (net_import < 0.5)
        discharge = price >= PEAK_MIN
        action = np.where(discharge, -self.power, np.where(charge, self.power, 0.0))
        return np.repeat(action[:, None], self.n, axis=1).astype(np.float32)
