"""O-DICE against its true- and semi-gradient variants and BC on rlkit's offline datasets, and
rlkit's update speed against a plain transcription of the authors' update.

    # updates/s side by side in one process, one thread, medians over repeats
    OMP_NUM_THREADS=1 python -m benchmarks.odice speed
    # learning: every (dataset, algorithm, seed) is a normal, resumable run directory under
    # benchmarks/runs/offline/; re-running skips finished runs
    MINARI_DATASETS_PATH=runs/minari OMP_NUM_THREADS=1 python -m benchmarks.odice learn \
        --datasets rlkit/grid/mixed-v0 rlkit/hopper/medium-replay-v0 --steps 20000

The CPU budget: the policy is 2x256 here (the authors' 2x1024 costs ~2.5x per update), and runs
are far shorter than the authors' 1M updates; both are recorded in the results. Writes
benchmarks/results/odice_speed.json and benchmarks/results/odice.json (+ odice.png).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from benchmarks.common import RESULTS, write_result
from benchmarks.odice_reference import ReferenceODICE
from rlkit.agents.odice import ODICEAgent
from rlkit.batch import Batch
from rlkit.train import train

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "runs" / "offline"
ALGOS = {  # name -> config overrides
    "odice": ["agent.name=odice", "agent.kwargs.update_rule=orthogonal"],
    "true_gradient": ["agent.name=odice", "agent.kwargs.update_rule=true_gradient"],
    "semi_gradient": ["agent.name=odice", "agent.kwargs.update_rule=semi_gradient"],
    "bc": ["agent.name=bc"],
}
BASE = {
    "hopper": "odice_hopper.yaml",
    "halfcheetah": "odice_halfcheetah.yaml",
    "grid": "odice_grid.yaml",
    "pendulum": "odice_pendulum.yaml",
}


# ------------------------------------------------------------------------------------- speed


def _batches(obs_dim: int, act_dim: int, count: int = 16, size: int = 256) -> list[Batch]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        terminal = (torch.rand(size, 1, generator=g) < 0.01).float()
        out.append(
            Batch(
                torch.randn(size, obs_dim, generator=g),
                torch.rand(size, act_dim, generator=g) * 2 - 1,
                torch.randn(size, 1, generator=g),
                0.99 * (1 - terminal),
                torch.randn(size, obs_dim, generator=g),
                {"terminated": terminal},
            )
        )
    return out


def speed(repeats: int, updates: int) -> dict[str, Any]:
    """Updates/s of rlkit's O-DICE and the transcription, alternating, Hopper-sized inputs.

    :param repeats: timed rounds per side (the median is reported).
    :param updates: updates per round.
    """
    torch.set_num_threads(1)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (11,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    batches = _batches(11, 3)
    figures: dict[str, Any] = {}
    for hidden in (256, 1024):
        agent = ODICEAgent(obs_space, act_space, policy_hidden=(hidden, hidden))
        reference = ReferenceODICE(agent.value, agent.policy)
        zero: list[torch.Tensor] = []

        def ours(i: int, agent: ODICEAgent = agent, zero: list[torch.Tensor] = zero) -> None:
            metrics = agent.update(batches[i % len(batches)], i)
            zero.append(metrics["weight_zero_fraction"])

        def theirs(i: int, reference: ReferenceODICE = reference) -> None:
            b = batches[i % len(batches)]
            terminal = b.extras["terminated"].reshape(-1)
            reference.update(b.obs, b.action, b.next_obs, b.reward.reshape(-1), terminal)

        rates: dict[str, list[float]] = {"rlkit": [], "reference": []}
        for step in (ours, theirs):
            for i in range(5):
                step(i)  # warm-up
        for _ in range(repeats):
            for name, step in (("rlkit", ours), ("reference", theirs)):
                start = time.perf_counter()
                for i in range(updates):
                    step(i)
                rates[name].append(updates / (time.perf_counter() - start))
        mine, ref = statistics.median(rates["rlkit"]), statistics.median(rates["reference"])
        figures[f"policy_{hidden}x2"] = {
            "rlkit_updates_per_s": mine,
            "reference_updates_per_s": ref,
            "ratio": mine / ref,
            "weight_zero_fraction": float(torch.stack(zero).mean()),
            "rounds": rates,
        }
        print(
            f"policy 2x{hidden}: rlkit {mine:.1f} updates/s, reference {ref:.1f}: {mine / ref:.2f}x"
        )
    return figures


# ------------------------------------------------------------------------------------- learning


def domain(dataset: str) -> str:
    """The base-config key of a dataset id (``rlkit/hopper/medium-v0`` -> ``hopper``)."""
    for key in BASE:
        if key in dataset:
            return key
    raise SystemExit(f"no base config for dataset {dataset!r} (known domains: {', '.join(BASE)})")


def run_dir(dataset: str, algo: str, seed: int) -> Path:
    """Where one run lives."""
    return RUNS / dataset.replace("/", "_") / algo / f"seed{seed}"


def finished(run: Path, steps: int) -> bool:
    """True when ``run`` already trained ``steps`` updates and was evaluated."""
    path = run / "eval.json"
    return path.is_file() and json.loads(path.read_text()).get("step") == steps


def curve(run: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of an evaluation column of metrics.csv."""
    with (run / "metrics.csv").open() as handle:
        return [(int(r["step"]), float(r[key])) for r in csv.DictReader(handle) if r.get(key)]


def learn(args: argparse.Namespace) -> dict[str, Any]:
    """Train every (dataset, algorithm, seed), then tabulate final scores and curves.

    :param args: the parsed command line.
    """
    figures: dict[str, Any] = {}
    for dataset in args.datasets:
        for algo in args.algos:
            base = ROOT / "configs" / "offline" / BASE[domain(dataset)]
            if algo == "bc" and (base.parent / base.name.replace("odice", "bc")).is_file():
                base = base.parent / base.name.replace("odice", "bc")  # no O-DICE kwargs
            for seed in args.seeds:
                run = run_dir(dataset, algo, seed)
                if args.summarize_only or finished(run, args.steps):
                    continue
                train(
                    base,
                    [
                        *ALGOS[algo],
                        f"dataset.path={dataset}",
                        f"agent.kwargs.policy_hidden=[{args.hidden},{args.hidden}]",
                        f"train.total_steps={args.steps}",
                        f"train.eval_every={args.eval_every}",
                        f"train.checkpoint_every={args.eval_every}",
                        f"seed={seed}",
                        f"run.dir={run}",
                        "train.progress=false",
                    ],
                )
        figures[dataset] = summarize(dataset, args)
    return figures


def summarize(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    """Final score (normalised when the dataset has reference returns) per algorithm."""
    out: dict[str, Any] = {}
    for algo in args.algos:
        finals, curves, key = [], [], None
        for seed in args.seeds:
            if not finished(run_dir(dataset, algo, seed), args.steps):
                continue  # still training (the command resumes it)
            result = json.loads((run_dir(dataset, algo, seed) / "eval.json").read_text())
            score = result["kpis"].get("normalized_score", result["return_mean"])
            finals.append(float(score))
            key = "eval/normalized_score" if "normalized_score" in result["kpis"] else None
            curves.append(curve(run_dir(dataset, algo, seed), key or "eval/return_mean"))
        if not finals:
            continue
        out[algo] = {
            "metric": "normalized_score" if key else "return_mean",
            "seeds_done": len(finals),
            "final_mean": float(np.mean(finals)),
            "final_std": float(np.std(finals)),
            "per_seed": finals,
            "curves": curves,
        }
        print(f"{dataset:<30} {algo:<14} {np.mean(finals):8.1f} +- {np.std(finals):6.1f}")
    return out


def plot(figures: dict[str, Any]) -> None:
    """Mean evaluation curve per algorithm and dataset (odice.png)."""
    figures = {dataset: algos for dataset, algos in figures.items() if algos}
    if not figures:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(figures), figsize=(5 * len(figures), 3.6), squeeze=False)
    for ax, (dataset, algos) in zip(axes[0], figures.items(), strict=True):
        for algo, facts in algos.items():
            steps = [s for s, _ in facts["curves"][0]]
            values = np.array([[v for _, v in c[: len(steps)]] for c in facts["curves"]])
            ax.plot(steps, values.mean(0), label=algo)
            ax.fill_between(steps, values.min(0), values.max(0), alpha=0.15)
        ax.set_title(dataset)
        ax.set_xlabel("updates")
        ax.set_ylabel(next(iter(algos.values()))["metric"])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "odice.png", dpi=110)


def main() -> None:
    """``speed`` or ``learn``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_speed = sub.add_parser("speed")
    p_speed.add_argument("--repeats", type=int, default=5)
    p_speed.add_argument("--updates", type=int, default=30)
    p_learn = sub.add_parser("learn")
    p_learn.add_argument("--datasets", nargs="+", required=True)
    p_learn.add_argument("--algos", nargs="+", default=list(ALGOS), choices=list(ALGOS))
    p_learn.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p_learn.add_argument("--steps", type=int, default=20_000)
    p_learn.add_argument("--eval-every", type=int, default=2_000)
    p_learn.add_argument("--hidden", type=int, default=256, help="policy width (authors: 1024)")
    p_learn.add_argument(
        "--summarize-only", action="store_true", help="tabulate the finished runs, train nothing"
    )
    args = parser.parse_args()
    if args.command == "speed":
        write_result("odice_speed", speed(args.repeats, args.updates), vars(args))
    else:
        fresh = learn(args)
        path = RESULTS / "odice.json"
        known = json.loads(path.read_text())["figures"] if path.is_file() else {}
        figures = {**known, **fresh}
        plot(figures)
        write_result("odice", figures, vars(args))


if __name__ == "__main__":
    main()
