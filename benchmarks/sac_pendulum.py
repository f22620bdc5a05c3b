"""Learning check: SAC on Pendulum-v1 reaches mean eval return >= -200 within 20k steps.

rl-zoo reports about -157 at 20k steps. Trains ``configs/gym/pendulum_sac.yaml`` through the
rlkit CLI code path for 3 seeds, then writes benchmarks/results/sac_pendulum.json and a curve PNG.
The curve evaluates 5 fixed episodes every 2k steps; the final figure is the clean evaluation of
the final model over 50 episodes (eval.json), since 5 episodes of Pendulum vary by +-40.

    python -m benchmarks.sac_pendulum [--seeds 0 1 2] [--steps 20000]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, write_result  # noqa: E402
from rlkit.train import train  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gym" / "pendulum_sac.yaml"
TARGET = -200.0
REFERENCE = -157.0


def eval_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, eval return mean) pairs from a run's metrics.csv."""
    with (run_dir / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("eval/return_mean")]
    return [(int(float(r["step"])), float(r["eval/return_mean"])) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--out", default="benchmarks/runs/sac_pendulum")
    parser.add_argument("--final-episodes", type=int, default=50)
    args = parser.parse_args()
    curves, finals = {}, {}
    for seed in args.seeds:
        overrides = [
            f"seed={seed}",
            f"train.total_steps={args.steps}",
            f"run.dir={args.out}/seed{seed}",
            "train.progress=false",
            f"eval.episodes={args.final_episodes}",
        ]
        run = train(CONFIG, overrides)
        curves[seed] = eval_curve(run.path)
        finals[seed] = json.loads(run.eval_path.read_text())["return_mean"]
        print(f"seed {seed}: final eval return {finals[seed]:.1f}")
    mean_final = float(np.mean(list(finals.values())))
    fig, ax = plt.subplots(figsize=(6, 4))
    for seed, curve in curves.items():
        ax.plot(*zip(*curve, strict=True), marker="o", label=f"seed {seed}")
    ax.axhline(TARGET, color="red", ls="--", label="target -200")
    ax.axhline(REFERENCE, color="grey", ls=":", label="rl-zoo -157")
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval return (5 episodes)")
    ax.set_title("SAC on Pendulum-v1 (rlkit)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "sac_pendulum.png", dpi=110)
    figures = {
        "final_eval_return": finals,
        "mean_final_eval_return": mean_final,
        "target": TARGET,
        "reference_rl_zoo": REFERENCE,
        "passed": bool(all(v >= TARGET for v in finals.values())),
        "curves": {str(k): v for k, v in curves.items()},
    }
    figures["curve_eval_episodes"] = 5
    figures["final_eval_episodes"] = args.final_episodes
    write_result(
        "sac_pendulum",
        figures,
        {"config": str(CONFIG.name), "steps": args.steps, "seeds": args.seeds},
    )
    print(
        f"mean final eval return {mean_final:.1f} (target >= {TARGET}); passed={figures['passed']}"
    )


if __name__ == "__main__":
    main()
