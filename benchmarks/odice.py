"""O-DICE against its true- and semi-gradient variants and BC on rlkit's offline datasets, and
rlkit's update speed against a plain transcription of the authors' update.

    # updates/s side by side in one process, one thread, medians over repeats: rlkit's default
    # update, rlkit with compile_value, the transcription; policy 2x256 and the authors' 2x1024,
    # on batches where 73% of the policy weights are zero and on batches where none is (~4 min)
    OMP_NUM_THREADS=1 python -m benchmarks.odice speed --repeats 7
    # learning: every (dataset, algorithm, seed) is a normal, resumable run directory under
    # benchmarks/runs/offline/; re-running skips finished runs, and the same command started
    # again on the other core shares the work (a run in training holds <run>.lock)
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

from benchmarks.common import RESULTS, read_figures, results_lock, take_lock, write_result
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


def _batches(
    obs_dim: int, act_dim: int, count: int = 16, size: int = 256, reward_shift: float = 0.0
) -> list[Batch]:
    """Random transitions; ``reward_shift`` 10 makes every TD residual, so every policy weight,
    positive (no sample for the policy step to skip)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        terminal = (torch.rand(size, 1, generator=g) < 0.01).float()
        out.append(
            Batch(
                torch.randn(size, obs_dim, generator=g),
                torch.rand(size, act_dim, generator=g) * 2 - 1,
                torch.randn(size, 1, generator=g) + reward_shift,
                0.99 * (1 - terminal),
                torch.randn(size, obs_dim, generator=g),
                {"terminated": terminal},
            )
        )
    return out


def matmul_flops(step: Any, calls: int = 16) -> float:
    """Mean FLOPs of the matrix products (forward and backward) in one ``step(i)`` call, as
    torch's FLOP counter sees them: on one CPU core the update is bound by these products, so
    their ratio bounds the speed-up of one side over the other.

    :param step: one update, called with the batch index.
    :param calls: updates counted (over the batches, as zero-weight skipping varies with them).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        for i in range(calls):
            step(i)
    return counter.get_total_flops() / calls


SPEED_CASES = {  # name -> (policy width, reward shift)
    "policy_256x2": (256, 0.0),
    "policy_1024x2": (1024, 0.0),
    "policy_256x2_no_zero_weights": (256, 10.0),
    "policy_1024x2_no_zero_weights": (1024, 10.0),
}


def _timed_rounds(steps: dict[str, Any], repeats: int, updates: int) -> dict[str, list[float]]:
    """Updates/s of each side per round, the sides alternating within every round."""
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for i in range(updates):
                step(i)
            rates[name].append(updates / (time.perf_counter() - start))
    return rates


def speed_case(width: int, reward_shift: float, repeats: int, updates: int) -> dict[str, Any]:
    """One row of the speed table: rlkit (default and ``compile_value``) vs the reference.

    :param width: policy hidden width (two layers).
    :param reward_shift: added to the rewards (10: no zero policy weights).
    :param repeats: timed rounds per side.
    :param updates: updates per round.
    """
    obs_space = gym.spaces.Box(-np.inf, np.inf, (11,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    batches = _batches(11, 3, reward_shift=reward_shift)
    agents = []
    for compile_value in (False, True):
        torch.manual_seed(0)  # the same initial weights on every side
        agents.append(
            ODICEAgent(
                obs_space, act_space, policy_hidden=(width, width), compile_value=compile_value
            )
        )
    agent, compiled = agents
    reference = ReferenceODICE(agent.value, agent.policy)
    zero: list[torch.Tensor] = []

    def ours(i: int) -> None:
        zero.append(agent.update(batches[i % len(batches)], i)["weight_zero_fraction"])

    def ours_compiled(i: int) -> None:
        compiled.update(batches[i % len(batches)], i)

    def theirs(i: int) -> None:
        b = batches[i % len(batches)]
        terminal = b.extras["terminated"].reshape(-1)
        reference.update(b.obs, b.action, b.next_obs, b.reward.reshape(-1), terminal)

    start = time.perf_counter()
    ours_compiled(0)
    compile_s = time.perf_counter() - start
    steps = {"rlkit": ours, "rlkit_compiled": ours_compiled, "reference": theirs}
    for step in steps.values():
        for i in range(5):
            step(i)  # warm-up
    flops = {name: matmul_flops(steps[name]) for name in ("rlkit", "reference")}
    rates = _timed_rounds(steps, repeats, updates)
    median = {name: statistics.median(r) for name, r in rates.items()}
    ref = median["reference"]
    return {
        "rlkit_updates_per_s": median["rlkit"],
        "rlkit_compiled_updates_per_s": median["rlkit_compiled"],
        "reference_updates_per_s": ref,
        "ratio": median["rlkit"] / ref,
        "compiled_ratio": median["rlkit_compiled"] / ref,
        "compile_s": compile_s,
        "rlkit_flops_per_update": flops["rlkit"],
        "reference_flops_per_update": flops["reference"],
        "flop_ratio": flops["reference"] / flops["rlkit"],
        "weight_zero_fraction": float(torch.stack(zero).mean()),
        "rounds": rates,
    }


def speed(repeats: int, updates: int) -> dict[str, Any]:
    """Updates/s of rlkit's O-DICE, with and without ``compile_value``, and the transcription,
    alternating, Hopper-sized inputs, batch 256, one thread.

    :param repeats: timed rounds per side (the median is reported).
    :param updates: updates per round.
    """
    torch.set_num_threads(1)
    figures: dict[str, Any] = {}
    for name, (width, shift) in SPEED_CASES.items():
        row = figures[name] = speed_case(width, shift, repeats, updates)
        print(
            f"{name}: rlkit {row['rlkit_updates_per_s']:.1f} updates/s ({row['ratio']:.2f}x),"
            f" compiled {row['rlkit_compiled_updates_per_s']:.1f} ({row['compiled_ratio']:.2f}x),"
            f" reference {row['reference_updates_per_s']:.1f};"
            f" zero weights {row['weight_zero_fraction']:.0%}",
            flush=True,
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


def fingerprint(dataset: str) -> dict[str, Any] | None:
    """What identifies the data a run learned from: its size and mean return, as recorded in
    benchmarks/results/offline_datasets.json (None when the dataset is not recorded there).

    Datasets are regenerated from seeded runs in each session; a stored score is only reused
    while the regenerated data describes the same (same transitions and mean return).
    """
    for facts in read_figures("offline_datasets").values():
        if isinstance(facts, dict) and dataset in facts:
            data = facts[dataset]
            return {"transitions": data["transitions"], "return_mean": data["return_mean"]}
    return None


def stored_seed(
    known: dict[str, Any], algo: str, seed: int, args: argparse.Namespace, data: Any
) -> dict[str, Any] | None:
    """A seed's stored result when it was trained like this command would train it."""
    entry = known.get(algo, {})
    same = (
        entry.get("steps") == args.steps
        and entry.get("policy_hidden") == args.hidden
        and entry.get("dataset") == data
    )
    return entry.get("seeds", {}).get(str(seed)) if same else None


def learn(args: argparse.Namespace) -> None:
    """Train every (dataset, algorithm, seed) not yet scored; after each run, add its score and
    curve to benchmarks/results/odice.json (+ odice.png).

    Scores accumulate there per seed, so a later session adds seeds without retraining the ones
    already recorded, and a stopped command keeps every run it finished. The file is re-read and
    merged under a lock before each write, and a run being trained holds ``<run>.lock``, so two
    ``learn`` processes (one per core) can work through the same command at once.

    :param args: the parsed command line.
    """
    for dataset in args.datasets:
        data = fingerprint(dataset)
        known = read_figures("odice").get(dataset, {})
        for algo in args.algos:
            base = ROOT / "configs" / "offline" / BASE[domain(dataset)]
            if algo == "bc" and (base.parent / base.name.replace("odice", "bc")).is_file():
                base = base.parent / base.name.replace("odice", "bc")  # no O-DICE kwargs
            for seed in args.seeds:
                run = run_dir(dataset, algo, seed)
                stored = stored_seed(known, algo, seed, args, data)
                if args.summarize_only or finished(run, args.steps) or stored:
                    continue
                lock = run.parent / f"{run.name}.lock"
                run.parent.mkdir(parents=True, exist_ok=True)
                if not take_lock(lock):  # another learn process is training it
                    continue
                try:
                    if not finished(run, args.steps):  # (it may have finished meanwhile)
                        train(base, overrides(dataset, algo, seed, args))
                finally:
                    lock.unlink(missing_ok=True)
                record(dataset, args, data)
        record(dataset, args, data)


def overrides(dataset: str, algo: str, seed: int, args: argparse.Namespace) -> list[str]:
    """The config overrides of one run.

    :param dataset: dataset id.
    :param algo: a key of :data:`ALGOS`.
    :param seed: the seed.
    :param args: the parsed command line.
    """
    return [
        *ALGOS[algo],
        f"dataset.path={dataset}",
        f"agent.kwargs.policy_hidden=[{args.hidden},{args.hidden}]",
        f"train.total_steps={args.steps}",
        f"train.eval_every={args.eval_every}",
        f"train.checkpoint_every={args.eval_every}",
        f"seed={seed}",
        f"run.dir={run_dir(dataset, algo, seed)}",
        "train.progress=false",
    ]


def record(dataset: str, args: argparse.Namespace, data: Any) -> None:
    """Add a dataset's finished seeds to odice.json (+ odice.png), merged with the file as it is
    now, under the results lock.

    :param dataset: dataset id.
    :param args: the parsed command line.
    :param data: the dataset's fingerprint.
    """
    with results_lock():
        figures = read_figures("odice")
        figures[dataset] = summarize(dataset, args, figures.get(dataset, {}), data)
        plot(figures)
        write_result("odice", figures, vars(args))


def scored_seed(run: Path) -> dict[str, Any]:
    """A finished run's final score (normalised where the data has reference returns), curve."""
    result = json.loads((run / "eval.json").read_text())
    normalized = "normalized_score" in result["kpis"]
    score = result["kpis"]["normalized_score"] if normalized else result["return_mean"]
    key = "eval/normalized_score" if normalized else "eval/return_mean"
    return {"final": float(score), "normalized": normalized, "curve": curve(run, key)}


def summarize(
    dataset: str, args: argparse.Namespace, known: dict[str, Any], data: Any
) -> dict[str, Any]:
    """Final score per algorithm over the seeds finished on disk or stored in ``known``.

    :param dataset: dataset id.
    :param args: the parsed command line (steps and policy width the scores must match).
    :param known: this dataset's figures already in odice.json.
    :param data: the dataset's fingerprint.
    """
    out: dict[str, Any] = dict(known)
    for algo in args.algos:
        seeds: dict[str, Any] = {}
        for seed in sorted({*args.seeds, *map(int, known.get(algo, {}).get("seeds", {}))}):
            run = run_dir(dataset, algo, seed)
            if finished(run, args.steps):
                seeds[str(seed)] = scored_seed(run)
            elif stored := stored_seed(known, algo, seed, args, data):
                seeds[str(seed)] = stored
        if not seeds:
            continue
        finals = [s["final"] for s in seeds.values()]
        normalized = next(iter(seeds.values()))["normalized"]
        out[algo] = {
            "metric": "normalized_score" if normalized else "return_mean",
            "steps": args.steps,
            "policy_hidden": args.hidden,
            "dataset": data,
            "seeds": seeds,
            "seeds_done": len(finals),
            "final_mean": float(np.mean(finals)),
            "final_std": float(np.std(finals)),
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
            curves = [seed["curve"] for seed in facts["seeds"].values()]
            steps = [s for s, _ in curves[0]]
            values = np.array([[v for _, v in c[: len(steps)]] for c in curves])
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
        learn(args)


if __name__ == "__main__":
    main()
