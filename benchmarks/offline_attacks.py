"""Offline grid controllers under attack: O-DICE and BC trained from the logged grid data
(rlkit/grid/mixed-v0, benchmarks/offline_datasets.py), beside the SB3 PPO controller whose logs
are part of that data, all attacked with configs/attacks/offline_grid.yaml on the test days.

    MINARI_DATASETS_PATH=runs/minari OMP_NUM_THREADS=1 python -m benchmarks.offline_attacks

The offline runs are the seed-0 runs of ``benchmarks.odice learn --datasets rlkit/grid/mixed-v0``
(trained here if missing). Writes benchmarks/results/offline_attacks.json: per controller, the
clean KPIs and, per attack and budget, return, cost and peak regrets and the MMD verdict.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from benchmarks.common import write_result
from benchmarks.odice import ALGOS, ROOT, run_dir
from benchmarks.offline_datasets import GRID_RUN
from rlkit.cli import main as rlkit_main
from rlkit.train import train

ATTACKS = ROOT / "configs" / "attacks" / "offline_grid.yaml"
DATASET = "rlkit/grid/mixed-v0"
KPIS = ("return", "cost_norm", "daily_peak_norm", "ramping_norm")


def ensure_offline_run(algo: str, steps: int, hidden: int) -> Path:
    """The seed-0 offline run of ``algo`` on the grid data (trained when missing)."""
    run = run_dir(DATASET, algo, 0)
    train(
        ROOT / "configs" / "offline" / "odice_grid.yaml",
        [
            *ALGOS[algo],
            f"dataset.path={DATASET}",
            f"agent.kwargs.policy_hidden=[{hidden},{hidden}]",
            f"train.total_steps={steps}",
            "train.eval_every=2000",
            "train.checkpoint_every=2000",
            f"run.dir={run}",
            "train.progress=false",
        ],
    )
    return run


def attack(run: Path, name: str) -> dict[str, Any]:
    """Evaluate ``run`` under the attack config; summarise clean and attacked KPIs."""
    out = ROOT / "benchmarks" / "runs" / "offline" / "attacks" / name
    if not (out / "results.json").is_file():  # delete the folder to attack again
        code = rlkit_main(["evaluate", str(run), "--attack", str(ATTACKS), "--out", str(out)])
        if code != 0:
            raise SystemExit(f"rlkit evaluate {run} failed with exit status {code}")
    results = json.loads((out / "results.json").read_text())
    clean = {k: results["clean"][k] for k in KPIS if k in results["clean"]}
    rows = {}
    for row in results["rows"]:
        key = f"{row['attack']}@{row['eps']}"
        verdict = results.get("stealth", {}).get(key, {})
        rows[key] = {
            **{f"{k}_regret": row[k] - clean[k] for k in KPIS if k in row and k in clean},
            "mmd_p": verdict.get("mmd_p_value"),
            "detected": verdict.get("detected"),
        }
    return {"run": str(run.relative_to(ROOT)), "clean": clean, "attacked": rows}


def main() -> None:
    """Train what is missing, attack the three controllers, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="offline updates")
    parser.add_argument("--hidden", type=int, default=256, help="policy width")
    args = parser.parse_args()
    figures = {
        "sb3_ppo": attack(GRID_RUN, "sb3_ppo"),
        **{
            algo: attack(ensure_offline_run(algo, args.steps, args.hidden), algo)
            for algo in ("odice", "bc")
        },
    }
    for name, facts in figures.items():
        worst = max(facts["attacked"].items(), key=lambda kv: -kv[1].get("return_regret", 0.0))
        print(
            f"{name:<8} clean return {facts['clean']['return']:8.2f}  worst {worst[0]}: "
            f"{worst[1].get('return_regret', float('nan')):+.2f}"
        )
    write_result(
        "offline_attacks", figures, {**vars(args), "attacks": str(ATTACKS.relative_to(ROOT))}
    )


if __name__ == "__main__":
    main()
