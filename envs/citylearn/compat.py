"""gym 0.25 compatibility helpers that import neither gym nor CityLearn."""

from __future__ import annotations

import sys


def silence_gym_banner() -> None:
    """Keep gym 0.25 from printing its "Gym has been unmaintained" banner when it is first imported.

    gym prints the notice that ``gym_notices`` lists for its version; this removes that entry (in
    memory) before gym is imported. stable-baselines3 imports gym whenever it is installed, so call
    this before importing stable-baselines3 to keep every command quiet. Cheap (gym is not
    imported); a no-op when gym is missing or already imported.
    """
    if "gym" in sys.modules:
        return
    try:
        from importlib.metadata import version

        gym_version = version("gym")
        import gym_notices.notices as notices
    except Exception:  # noqa: BLE001 - gym or gym_notices missing: no banner to silence
        return
    table = getattr(notices, "notices", None)
    if isinstance(table, dict):
        table.pop(gym_version, None)
