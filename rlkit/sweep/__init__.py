"""``rlkit sweep``: many seeds, configs and attack budgets, on Ray Tune or one after another.

* :mod:`rlkit.sweep.spec`: the sweep file (a typed model), its validation, the trials;
* :mod:`rlkit.sweep.trial`: one trial (train, attack, report) and its run directory's state;
* :mod:`rlkit.sweep.ray_backend`: the trials on Ray Tune (local or a cluster);
* :mod:`rlkit.sweep.runner`: :func:`run_sweep` (Ray, or the sequential fallback);
* :mod:`rlkit.sweep.results`: the tables, ``results.csv``, ``summary.md`` and the plot.

The runner is imported on first use (it pulls in torch), so ``rlkit --help`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlkit.sweep.spec import Sweep, SweepConfig, TrialSpec, load_sweep, plan_trials

if TYPE_CHECKING:
    from rlkit.sweep.runner import SweepOutcome, run_sweep, sweep_command

__all__ = [
    "Sweep",
    "SweepConfig",
    "SweepOutcome",
    "TrialSpec",
    "load_sweep",
    "plan_trials",
    "run_sweep",
    "sweep_command",
]
_RUNNER = ("SweepOutcome", "run_sweep", "sweep_command")


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        from rlkit.sweep import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'rlkit.sweep' has no attribute {name!r}")
