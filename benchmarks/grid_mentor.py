"""State-based MENTOR on the smart grid, attacked beside the SB3 controller on one report.

Each controller is evaluated clean and under ``configs/attacks/demo.yaml`` (random, PGD,
bifurcation at 0.01/0.03/0.05 and the calendar-masked bifurcation, 20 test days; an evaluation
already in the run's ``attacks/demo`` is reused), the comparison page comes from ``rlkit
report``, and for native (MENTOR) runs the pre-tanh actor output over test day 0 tells whether
the policy sits saturated at its action bounds (where no observation attack can move it).
Controllers (``configs/grid/mentor.yaml``, 30k steps; the PPO is the main job's run)::

    OMP_NUM_THREADS=1 rlkit train configs/grid/mentor.yaml run.dir=runs/grid/mentor
    OMP_NUM_THREADS=1 rlkit train configs/grid/mentor.yaml agent.kwargs.pre_tanh_penalty=0.001 \\
        run.dir=runs/grid/mentor_pen
    OMP_NUM_THREADS=1 python -m benchmarks.grid_mentor ppo=runs/demo mentor=runs/grid/mentor \\
        mentor_pen=runs/grid/mentor_pen

Writes ``benchmarks/results/grid_mentor.json`` and the page ``benchmarks/results/grid_mentor/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import RESULTS, write_result

NAME = "grid_mentor"
ATTACK = Path("configs/attacks/demo.yaml")


def evaluation(run: Path) -> dict[str, Any]:
    """The run's ``attacks/demo`` results, evaluating it first when they are missing.

    :param run: the run directory.
    """
    results = run / "attacks" / ATTACK.stem / "results.json"
    if not results.is_file():
        subprocess.run(
            [sys.executable, "-m", "rlkit.cli", "evaluate", str(run), "--attack", str(ATTACK)],
            check=True,
        )
    return json.loads(results.read_text())


def pre_tanh_range(run: Path) -> dict[str, list[float]] | None:
    """Min and max per action dimension of the actor's pre-tanh output over test day 0 (None
    for a policy without a tanh squash).

    :param run: the run directory.
    """
    from rlkit.loading import load_run

    loaded = load_run(run)
    if loaded.view.squash_kind != "tanh":
        return None
    env = loaded.make_env()
    try:
        obs, _ = env.reset(seed=loaded.seed)
        outputs, done = [], False
        while not done:
            x = torch.as_tensor(np.asarray(obs, np.float32)[None])
            with torch.no_grad():
                outputs.append(loaded.view(x)[0].numpy())
                action = loaded.view.squash(loaded.view(x))[0].numpy()
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    finally:
        env.close()
    z = np.asarray(outputs)
    return {
        "min": [round(float(v), 3) for v in z.min(axis=0)],
        "max": [round(float(v), 3) for v in z.max(axis=0)],
    }


def summary(run: Path) -> dict[str, Any]:
    """Clean return and cost, each attack's regrets at eps 0.05, and the pre-tanh range.

    :param run: the run directory.
    """
    result = evaluation(run)
    clean = result["clean"]
    attacks = {
        f"{row['attack']}@{row['eps']:g}": {
            "regret_return": row["regret_return"],
            "regret_cost_norm": row.get("regret_cost_norm"),
        }
        for row in result["rows"]
    }
    return {
        "run": str(run),
        "clean_return": clean["return"],
        "clean_cost_norm": clean.get("cost_norm"),
        "attacks": attacks,
        "pre_tanh": pre_tanh_range(run),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``NAME=RUN ...``.

    :param argv: arguments (default: sys.argv).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("controllers", nargs="+", help="NAME=RUN_DIR ...")
    args = parser.parse_args(argv)
    runs = {spec.split("=", 1)[0]: Path(spec.split("=", 1)[1]) for spec in args.controllers}
    figures = {name: summary(run) for name, run in runs.items()}
    page = RESULTS / NAME
    shutil.rmtree(page, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "rlkit.cli", "report", *map(str, runs.values()), "--out", str(page)]
        + ["--title", "Grid: SB3 PPO and MENTOR under attack"],
        check=True,
    )
    for name, fig in figures.items():
        worst = min(fig["attacks"].items(), key=lambda kv: kv[1]["regret_return"])
        print(
            f"{name}: clean return {fig['clean_return']:.1f}, cost_norm "
            f"{fig['clean_cost_norm']:.3f}; worst {worst[0]} {worst[1]['regret_return']:+.2f}; "
            f"pre-tanh {fig['pre_tanh']}"
        )
    print(f"wrote {write_result(NAME, figures, {'attack': str(ATTACK)})}")


if __name__ == "__main__":
    main()
