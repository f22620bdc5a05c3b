"""Sweep scaling: 8 tiny trials one after another vs on a local Ray with 2 workers.

The same sweep (SAC on Pendulum-v1, 50-step episodes, ``--steps`` env steps per trial, one
torch thread per trial, 8 trials = 2 learning rates x 4 seeds) runs three times, side by side in
one process, each into a fresh sweep directory:

* ``sequential``: ``rlkit sweep --sequential`` (no Ray: the trials run in this process);
* ``ray_1``: a local Ray (2 CPUs), one trial at a time (``--max-concurrent 1``);
* ``ray_2``: the same Ray, two trials at a time.

Reported: the wall time of each (the trials only; Ray's start-up is timed on its own),
the speed-up ``sequential / ray_2`` (close to 2x on a quiet 2-core machine when a trial lasts
long against Ray's overhead) and Ray's overhead per trial, ``(ray_1 - sequential) / trials``:
actor start-up (workers are reused between trials), Tune's bookkeeping and the result reports.
The trials are deterministic, so the three runs also check that Ray gives the same returns.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_scaling.py [--steps 2000] [--trials 8]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sweep_scaling.py --quick   # no result file
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `rlkit` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402
from rich.console import Console  # noqa: E402

from benchmarks.common import write_result  # noqa: E402
from rlkit.sweep import SweepOutcome, run_sweep  # noqa: E402

LEARNING_RATES = [3e-4, 1e-3]


def tiny_config(steps: int) -> dict[str, Any]:
    """The trial config: SAC on Pendulum-v1, short episodes, evaluation every steps/2.

    :param steps: env steps per trial.
    """
    return {
        "env": {"id": "Pendulum-v1", "max_episode_steps": 50},
        "agent": {
            "name": "sac",
            "net_arch": [64, 64],
            "kwargs": {"learning_starts": 100, "batch_size": 64},
        },
        "train": {
            "total_steps": steps,
            "eval_every": steps // 2,
            "eval_episodes": 1,
            "checkpoint_every": steps // 2,
            "progress": False,
        },
        "eval": {"episodes": 2},
        "run": {"tensorboard": False},
    }


def write_sweep(folder: Path, name: str, steps: int, trials: int) -> Path:
    """A sweep file (and its base config) whose directory is ``folder/name``.

    :param folder: where the files and the sweep directory go.
    :param name: the sweep's name.
    :param steps: env steps per trial.
    :param trials: number of trials (a multiple of the learning rates).
    """
    base = folder / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_config(steps), sort_keys=False))
    sweep = {
        "base": "base.yaml",
        "grid": {"agent.learning_rate": LEARNING_RATES},
        "seeds": list(range(trials // len(LEARNING_RATES))),
        "trial": {"cpus": 1, "threads": 1},
        "dir": str(folder / name),
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def returns(outcome: SweepOutcome) -> list[float | None]:
    """The final return of every trial, in plan order."""
    return [r.metrics.get("final/return_mean") for r in outcome.results]


def timed(path: Path, **kwargs: Any) -> tuple[float, SweepOutcome]:
    """Run a sweep and time it (the trials: ``SweepOutcome.seconds``).

    :param path: the sweep file.
    :param kwargs: more arguments of :func:`rlkit.sweep.run_sweep`.
    """
    console = Console(file=io.StringIO(), width=80)
    outcome = run_sweep(path, console=console, verbose=0, **kwargs)
    done = [r.status for r in outcome.results]
    if done.count("done") != len(done):
        raise RuntimeError(f"{path}: not every trial finished: {done}")
    return outcome.seconds, outcome


def run(steps: int, trials: int) -> dict[str, Any]:
    """Measure the three runs.

    :param steps: env steps per trial.
    :param trials: number of trials.
    """
    import ray

    folder = Path(tempfile.mkdtemp(prefix="rlkit-sweep-scaling-"))
    try:
        load_before = os.getloadavg()
        sequential_s, sequential = timed(
            write_sweep(folder, "sequential", steps, trials), sequential=True
        )
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        init_s = time.perf_counter() - t0
        try:
            ray1_s, ray1 = timed(write_sweep(folder, "ray_1", steps, trials), max_concurrent=1)
            ray2_s, ray2 = timed(write_sweep(folder, "ray_2", steps, trials), max_concurrent=2)
        finally:
            ray.shutdown()
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "trials": trials,
        "sequential_s": sequential_s,
        "ray_init_s": init_s,
        "ray_1_worker_s": ray1_s,
        "ray_2_workers_s": ray2_s,
        "speedup_2_workers": sequential_s / ray2_s,
        "speedup_2_workers_with_init": sequential_s / (ray2_s + init_s),
        "ray_speedup_2_over_1": ray1_s / ray2_s,
        "sequential_s_per_trial": sequential_s / trials,
        "ray_overhead_s_per_trial": (ray1_s - sequential_s) / trials,
        "same_returns": returns(sequential) == returns(ray1) == returns(ray2),
        "load_average_1min_before": load_before[0],
        "load_average_1min_after": load_after[0],
    }


def table(f: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of the printed table."""
    n = f["trials"]
    return [
        (f"{n} trials sequentially (no Ray)", f"{f['sequential_s']:.1f} s"),
        ("local Ray start-up (2 CPUs)", f"{f['ray_init_s']:.1f} s"),
        (f"{n} trials on Ray, 1 worker", f"{f['ray_1_worker_s']:.1f} s"),
        (f"{n} trials on Ray, 2 workers", f"{f['ray_2_workers_s']:.1f} s"),
        ("speed-up sequential / Ray 2 workers", f"{f['speedup_2_workers']:.2f}x"),
        ("  ... counting Ray's start-up", f"{f['speedup_2_workers_with_init']:.2f}x"),
        ("speed-up Ray 1 / 2 workers", f"{f['ray_speedup_2_over_1']:.2f}x"),
        ("one trial, sequentially", f"{f['sequential_s_per_trial']:.2f} s"),
        ("Ray's overhead per trial", f"{f['ray_overhead_s_per_trial']:+.2f} s"),
        ("same returns in all three runs", str(f["same_returns"])),
        (
            "load average (1 min) before / after",
            f"{f['load_average_1min_before']:.2f} / {f['load_average_1min_after']:.2f}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="env steps per trial")
    parser.add_argument("--trials", type=int, default=8, help="trials (a multiple of 2)")
    parser.add_argument(
        "--quick", action="store_true", help="4 trials of 300 steps, no result file"
    )
    args = parser.parse_args()
    if args.quick:
        args.steps, args.trials = 300, 4
    if args.trials < 2 or args.trials % len(LEARNING_RATES):
        parser.error(f"--trials: expected a multiple of {len(LEARNING_RATES)}")
    figures = run(args.steps, args.trials)
    rows = table(figures)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if not args.quick:
        config = {
            "trials": args.trials,
            "steps_per_trial": args.steps,
            "env": "Pendulum-v1 (max_episode_steps 50)",
            "agent": "sac, net_arch [64, 64], batch 64, learning_starts 100",
            "learning_rates": LEARNING_RATES,
            "seeds": list(range(args.trials // len(LEARNING_RATES))),
            "ray": {"num_cpus": 2, "reuse_actors": True, "trial_cpus": 1, "torch_threads": 1},
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }
        print(write_result("sweep_scaling", figures, config))


if __name__ == "__main__":
    main()
