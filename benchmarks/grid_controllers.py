"""Grid battery controllers: SAC, TD3, continuous PPO and discrete PPO (20 bins) against the
no-battery (idle) and rule-based controllers on the held-out test days.

Trains ``configs/grid/{sac,td3,ppo,ppo_discrete}.yaml`` (runs under benchmarks/runs/grid/), then
evaluates every controller on the same test days and writes
benchmarks/results/grid_controllers.json, a KPI table (printed) and the learning curves
(grid_controllers.png). These runs are also the victims of benchmarks/attack_reproduction.py.

    python -m benchmarks.grid_controllers [--only sac ppo_discrete] [--episodes 30]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.common import RESULTS, write_result  # noqa: E402
from rlkit.config import load_config  # noqa: E402
from rlkit.envs import make_env  # noqa: E402
from rlkit.envs.grid.baselines import IdleController, RuleBasedController  # noqa: E402
from rlkit.evaluation import EVAL_SEED_OFFSET, evaluate  # noqa: E402
from rlkit.loading import load_run  # noqa: E402
from rlkit.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONTROLLERS = (
    "sac",
    "td3",
    "ppo",
    "ppo_safe",
    "ppo_discrete",
    "ppo_discrete_safe",
)  # *_safe fine-tune the run before
KPIS = (
    "cost_norm",
    "daily_peak_norm",
    "ramping_norm",
    "consumption_norm",
    "voltage_violations",
    "voltage_violation_depth",
    "vmin",
    "losses_mwh",
)
RUNS = ROOT / "benchmarks" / "runs" / "grid"


def config_path(name: str) -> Path:
    """The config file of controller ``name``."""
    return ROOT / "configs" / "grid" / f"{name}.yaml"


def learning_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, eval return) pairs of a run."""
    with (run_dir / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("eval/return_mean")]
    return [(int(float(r["step"])), float(r["eval/return_mean"])) for r in rows]


def evaluate_baselines(episodes: int, seed: int) -> dict[str, dict]:
    """Idle and rule-based controllers on the test days."""
    config = load_config(config_path("sac"))
    env = make_env(config.env, {"split": "test"})
    n = env.action_space.shape[0]
    names = list(env.unwrapped.feature_names)
    out = {
        "idle (no battery)": evaluate(env, IdleController(n), episodes, seed),
        "rule-based": evaluate(env, RuleBasedController(names, n), episodes, seed),
    }
    env.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="+", default=list(CONTROLLERS), choices=CONTROLLERS)
    parser.add_argument("--episodes", type=int, default=30, help="test days per controller")
    parser.add_argument("--skip-train", action="store_true", help="evaluate existing runs only")
    args = parser.parse_args()
    seed = EVAL_SEED_OFFSET  # the seed every config's evaluation uses (seed 0 + offset)
    results = evaluate_baselines(args.episodes, seed)
    curves = {}
    for name in args.only:
        run_dir = RUNS / name
        if not args.skip_train:
            train(config_path(name), [f"run.dir={run_dir}", "train.progress=false"])
        loaded = load_run(run_dir)
        env = loaded.make_env()
        results[name] = evaluate(env, loaded.act, args.episodes, seed)
        env.close()
        curves[name] = learning_curve(run_dir)
        print(f"{name}: return {results[name]['return_mean']:.1f}")
    table = {
        name: {"return": r["return_mean"], **{k: r["kpis"].get(k) for k in KPIS}}
        for name, r in results.items()
    }
    idle, rule = table["idle (no battery)"], table["rule-based"]
    verdict = {
        name: {
            "beats_idle_cost": row["cost_norm"] < idle["cost_norm"],
            "beats_rule_cost": row["cost_norm"] < rule["cost_norm"],
            "beats_idle_voltage": row["voltage_violations"] <= idle["voltage_violations"],
            "beats_rule_voltage": row["voltage_violations"] <= rule["voltage_violations"],
        }
        for name, row in table.items()
        if name in CONTROLLERS
    }
    print(f"{'controller':<20}" + "".join(f"{k:>14}" for k in ("return", *KPIS)))
    for name, row in table.items():
        print(f"{name:<20}" + "".join(f"{row[k]:>14.4g}" for k in ("return", *KPIS)))
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in curves.items():
        ax.plot(*zip(*curve, strict=True), marker="o", label=name)
    ax.axhline(idle["return"], color="grey", ls=":", label="idle (no battery)")
    ax.axhline(rule["return"], color="black", ls="--", label="rule-based")
    ax.set_xscale("log")
    ax.set_xlabel("env steps (15-min steps; 96 per day)")
    ax.set_ylabel("eval return (test days)")
    ax.set_title("Grid battery controllers, IEEE 33-bus")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "grid_controllers.png", dpi=110)
    configs = {name: load_config(config_path(name)).model_dump(mode="json") for name in args.only}
    write_result(
        "grid_controllers",
        {"kpis": table, "verdict": verdict, "curves": curves, "test_days": args.episodes},
        configs,
    )


if __name__ == "__main__":
    main()
