"""MENTOR learning runs on the 2-core CPU: curves, JSON, PNG and a markdown table.

Every run is an ordinary, resumable ``rlkit train`` run directory under ``runs/mentor/``
(``<variant>_<task>_s<seed>``), trained in a subprocess (its log beside it, ``.log``). A
finished run (``eval.json`` at the run's final step) is skipped; an unfinished one resumes from
its newest checkpoint. So the commands below can be killed at any time and simply started again;
after each finished run, at the end, and with ``report``, the results are rebuilt from whatever
runs exist and the seeds the JSON already records (a fresh checkout has no ``runs/``: a seed
recorded as finished with the same settings is kept, and not trained again).
Stopping the harness (SIGTERM or Ctrl-C) stops its trainers too; a ``<run>.lock`` holding the
trainer's process id keeps a second harness from training the same run at the same time.

Sections (frames = agent steps x action repeat 2; 100k frames = 50k agent steps):

* ``states``: state-based ``dmc/cartpole-swingup`` and ``dmc/walker-walk`` (``--tasks``) for
  MENTOR (``configs/dmc/mentor_cartpole_swingup_state.yaml``, CPU-sized: width 256, experts
  64, batch 128), its two ablations (``agent.kwargs.moe=false``: a plain Linear middle layer;
  ``agent.kwargs.perturbation=none``: no task-oriented perturbation) and DrQ-v2
  (``configs/dmc/drqv2_cartpole_swingup_state.yaml`` at the same width 256 and batch 128), 3
  seeds, 100k frames (two perturbations fire, at 10k and 20k updates).
* ``pixels``: MENTOR on ``dmc/cartpole-swingup`` from pixels (the paper's encoder, CPU-sized
  heads: batch 64, width 256, experts 64), seed 0, 100k frames, plotted
  against DrQ-v2's published pixel curve (626 +/- 254 at 100k frames, 10 seeds);
  ``--pixel-variants mentor_pen`` adds rlkit's pre-tanh penalty, since the authors' loss
  saturates seed 0's pixel actor as it does the state one (``mentor_pen`` of ``states``); the
  committed curve of the default ``mentor`` stops at 20k frames, where that run was stopped.
* ``metaworld``: state-based MENTOR on Meta-World ``reach`` (v3; ``configs/metaworld/
  mentor_reach.yaml`` with ``env.kwargs.pixels=false`` and the DMC state config's CPU sizes,
  width 256, experts 64, batch 128), seed 0, 100k frames, reporting the evaluation success rate
  (``eval/success``: episodes with any successful step). Its preset perturbs every 50k
  updates, so no perturbation fires within 100k frames.
* ``report``: re-reads the runs only.

In the background, resuming when restarted (the same command again)::

    mkdir -p runs/mentor
    OMP_NUM_THREADS=1 MUJOCO_GL=egl nohup .venv/bin/python -m benchmarks.mentor_learning \\
        states >> runs/mentor/states.log 2>&1 &
    OMP_NUM_THREADS=1 MUJOCO_GL=egl nohup .venv/bin/python -m benchmarks.mentor_learning \\
        pixels --pixel-variants mentor_pen >> runs/mentor/pixels.log 2>&1 &
    OMP_NUM_THREADS=1 MUJOCO_GL=egl nohup .venv/bin/python -m benchmarks.mentor_learning \\
        metaworld >> runs/mentor/metaworld.log 2>&1 &
    .venv/bin/python -m benchmarks.mentor_learning report

Expected time on one free core of this CPU (measured update rates per CPU-second, one
thread): state MENTOR at width 256 / experts 64 / batch 128 about 30 updates/s, so about 15 min
per 100k-frame run (24k updates); its w/o-MoE ablation about 90/s and DrQ-v2 about 130/s at
that size (5 min); the whole ``states`` section (24 runs) about 4 h, 2 h with ``--jobs 2``;
``metaworld`` about 20 min; ``pixels`` (batch 64, width 256, bf16 encoder: about 4.4 updates
per CPU-second) about 1.7 h. Each run's wall-clock hours are added up in
``runs/mentor/<run>.hours.json`` and reported.

``--jobs 2`` trains two runs at once (one per core); ``--extra key=value ...`` adds overrides
to every run it trains, after the harness's own (e.g. ``train.eval_episodes=2`` for a quicker
check: the overrides are recorded in the JSON, the run names do not change, so use ``--runs``
to keep such runs apart). An update comes every 2 agent steps after the 2000 seed steps, so a
100k-frame run is 24k updates.

Paper-scale runs need a GPU (``train.device=cuda``; not run here, no GPU was available)::

    # cartpole-swingup from pixels, DrQ-v2's 1.1M frames (the config's 550k agent steps)
    rlkit train configs/dmc/mentor_cartpole_swingup.yaml train.device=cuda seed=0 \
        run.dir=runs/paper/mentor_cartpole-swingup_s0
    # a medium DMC task, the paper's 3.1M frames (e.g. hopper-hop, its ablation task)
    rlkit train configs/dmc/mentor_cartpole_swingup.yaml env.id=dmc/hopper-hop \
        train.total_steps=1550000 train.device=cuda seed=0 run.dir=runs/paper/mentor_hopper-hop_s0
    # Meta-World from pixels, the paper's 2.1M frames (the config's 1.05M agent steps)
    rlkit train configs/metaworld/mentor_reach.yaml train.device=cuda seed=0 \
        run.dir=runs/paper/mentor_reach_s0

Expected hours (estimates, not measured: DrQ-v2's own curve logs put 1M frames at 2.8-2.9 h on
the authors' GPU, and on this CPU MENTOR's pixel update costs about the same as DrQ-v2's, the
encoder dominating): about 3-4 h for 1.1M frames, 9-12 h for 3.1M frames, 90-120 h for the hard
tasks' 30.1M; Meta-World 2.1M frames about 6-9 h plus rendering (about 19 ms per frame with
the fast settings, about 5 h for 1.05M agent steps). A 1M-transition pixel replay holds about
21 GB of frames in RAM (each frame stored once).

Writes ``benchmarks/results/mentor_learning.json``, ``mentor_learning.png`` and
``mentor_learning.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, read_figures, results_lock, take_lock, write_result

NAME = "mentor_learning"
ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "mentor"
ACTION_REPEAT = 2
FRAMES = 100_000
EVAL_EVERY_FRAMES = 10_000  # DrQ-v2's and MENTOR's evaluation interval
# DrQ-v2's pixel curve on cartpole_swingup, from its repository's curves/*.csv (10 seeds):
# frames -> (mean, population std)
DRQV2_PIXEL_CARTPOLE_SWINGUP = {100_000: (626.0, 254.0), 200_000: (807.0, 29.0)}
MENTOR_STATE = "configs/dmc/mentor_cartpole_swingup_state.yaml"
DRQV2_STATE = "configs/dmc/drqv2_cartpole_swingup_state.yaml"
VARIANTS: dict[str, tuple[str, list[str]]] = {  # name -> (config, overrides)
    "mentor": (MENTOR_STATE, []),
    "mentor_no_moe": (MENTOR_STATE, ["agent.kwargs.moe=false"]),
    "mentor_no_tp": (MENTOR_STATE, ["agent.kwargs.perturbation=none"]),
    # DrQ-v2 at the MENTOR state config's CPU sizes, so the variants differ in MENTOR's parts only
    "drqv2": (DRQV2_STATE, ["agent.net_arch=[256]", "agent.kwargs.batch_size=128"]),
    # not in the default set: MENTOR with DrM's "awake" noise (the larger of the dormant std and
    # DrQ-v2's linear(1.0,0.1,500000) from awakening), which the authors kept for Adroit only
    "mentor_awake": (MENTOR_STATE, ["agent.kwargs.stddev_type=awake"]),
    # not in the default set: MENTOR with rlkit's pre-tanh penalty (1e-3 * mean(mu^2) on the
    # actor loss), against the one-sided saturation of benchmarks/mentor_saturation.py
    "mentor_pen": (MENTOR_STATE, ["agent.kwargs.pre_tanh_penalty=0.001"]),
}
DEFAULT_VARIANTS = ["mentor", "mentor_no_moe", "mentor_no_tp", "drqv2"]
# The pixel configs at CPU sizes (the paper's encoder, batch 64, width 256, experts and gate
# 64), with the encoder's convolutions in bf16 autocast (encoder_bf16, this CPU's AMX units; the
# authors ran float32): 4.4 updates per CPU-second (2.1 at batch 128, 0.29 at the paper's
# batch 256 and width 1024 in float32), so a 100k-frame run fits one 3-hour session (a fresh
# checkout keeps no runs/, and the attacks need the trained policy on disk).
CPU_PIXELS = [
    "agent.net_arch=[256]",
    "agent.kwargs.batch_size=64",
    "agent.kwargs.encoder_bf16=true",
]
PIXEL_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "mentor": (
        "configs/dmc/mentor_cartpole_swingup.yaml",
        [*CPU_PIXELS, "agent.kwargs.expert_hidden=64", "agent.kwargs.gate_hidden=64"],
    ),
    "drqv2": ("configs/dmc/drqv2_cartpole_swingup.yaml", CPU_PIXELS),
}
# MENTOR from pixels with rlkit's pre-tanh penalty: with the authors' loss, seed 0's pixel actor
# saturated as the state one did (pre-tanh mean +8.7 on every frame at 5k agent steps, +9.2 at
# 10k; evaluation return 75.1 at 10k and 20k frames, the cart pushed to one side)
PIXEL_VARIANTS["mentor_pen"] = (
    PIXEL_VARIANTS["mentor"][0],
    [*PIXEL_VARIANTS["mentor"][1], "agent.kwargs.pre_tanh_penalty=0.001"],
)
METAWORLD_VARIANTS: dict[str, tuple[str, list[str]]] = {
    # the pixel config on the 39-dim state, CPU-sized like the DMC state config
    "mentor": (
        "configs/metaworld/mentor_reach.yaml",
        [
            "env.kwargs.pixels=false",
            "agent.net_arch=[256]",
            "agent.kwargs.batch_size=128",
            "agent.kwargs.expert_hidden=64",
            "agent.kwargs.gate_hidden=64",
        ],
    ),
}


@dataclass
class Run:
    """One training run: a variant on a task with a seed.

    :param section: states, pixels or metaworld.
    :param variant: the variant's name.
    :param task: the env id after the family prefix (``cartpole-swingup``).
    :param env_id: the registered env id (``dmc/cartpole-swingup``).
    :param seed: the seed.
    :param config: config file, relative to the repository root.
    :param overrides: the variant's key.sub=value overrides (before the harness's own).
    :param frames: frames to train for.
    :param action_repeat: env frames per agent step.
    :param root: the folder of the run directories.
    :param extra: overrides from ``--extra``, applied last (they win).
    """

    section: str
    variant: str
    task: str
    env_id: str
    seed: int
    config: str
    overrides: list[str] = field(default_factory=list)
    frames: int = FRAMES
    action_repeat: int = ACTION_REPEAT
    root: Path = RUNS
    extra: list[str] = field(default_factory=list)

    @property
    def steps(self) -> int:
        """Agent steps to train for."""
        return self.frames // self.action_repeat

    @property
    def path(self) -> Path:
        """The run directory."""
        return self.root / f"{self.variant}_{self.task}_s{self.seed}"

    def command(self) -> list[str]:
        """The ``rlkit train`` command line."""
        every = max(1, EVAL_EVERY_FRAMES // self.action_repeat)
        return [
            sys.executable,
            "-m",
            "rlkit.cli",
            "train",
            str(ROOT / self.config),
            *self.overrides,
            f"env.id={self.env_id}",
            f"seed={self.seed}",
            f"train.total_steps={self.steps}",
            f"train.eval_every={every}",
            f"train.checkpoint_every={every}",
            "train.progress=false",
            f"run.dir={self.path}",
            *self.extra,
        ]


def finished(path: Path, steps: int) -> bool:
    """True when the run in ``path`` trained ``steps`` agent steps and was evaluated.

    :param path: the run directory.
    :param steps: its target step count.
    """
    eval_path = path / "eval.json"
    if not eval_path.is_file():
        return False
    try:
        return int(json.loads(eval_path.read_text()).get("step", -1)) >= steps
    except (ValueError, json.JSONDecodeError):
        return False


CHILDREN: set[subprocess.Popen[bytes]] = set()  # trainers running now (stopped with us)
STOPPING = threading.Event()  # set on SIGTERM/SIGINT: start no further run
STOPPED_BY: list[int] = []  # the signal that stopped the harness


def train_run(run: Run) -> int:
    """Train (or resume) one run in a subprocess unless it is finished or another harness is
    training it (its ``.lock`` names a live process); its log is appended.

    :param run: the run.
    :return: the exit status (0 when skipped).
    """
    if STOPPING.is_set():
        return 0
    if finished(run.path, run.steps):
        print(f"skip {run.path.name}: finished", flush=True)
        return 0
    run.root.mkdir(parents=True, exist_ok=True)
    lock = run.root / f"{run.path.name}.lock"
    if not take_lock(lock):
        print(f"skip {run.path.name}: being trained by process {lock.read_text()}", flush=True)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.setdefault("MUJOCO_GL", "egl")
    start = time.perf_counter()
    print(f"train {run.path.name} ({run.steps} steps)", flush=True)
    try:
        with (run.root / f"{run.path.name}.log").open("a") as log:
            log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(run.command())}\n")
            log.flush()
            child = subprocess.Popen(run.command(), cwd=ROOT, env=env, stdout=log, stderr=log)
            CHILDREN.add(child)
            status = child.wait()
            CHILDREN.discard(child)
    finally:
        lock.unlink(missing_ok=True)
    hours = (time.perf_counter() - start) / 3600
    add_hours(run, hours)
    print(f"done {run.path.name}: exit {status} after {hours:.2f} h", flush=True)
    return status


def stop_children(signum: int, frame: Any) -> None:
    """On SIGTERM/SIGINT: stop the trainers (they resume from their last checkpoint) and start
    no further run; the harness then writes the results and exits with ``128 + signum``.

    It does not wait for the trainers itself: the handler runs on the main thread, which may be
    inside ``Popen.wait`` holding that child's wait lock, and a second ``wait`` would deadlock.

    :param signum: the signal.
    :param frame: unused.
    """
    STOPPED_BY.append(signum)
    STOPPING.set()
    for child in list(CHILDREN):
        child.terminate()


def hours_path(run: Run) -> Path:
    """Where the wall-clock hours spent training ``run`` add up (beside its log).

    :param run: the run.
    """
    return run.root / f"{run.path.name}.hours.json"


def add_hours(run: Run, hours: float) -> None:
    """Add one training session's wall-clock hours to the run's total.

    :param run: the run.
    :param hours: the session's hours.
    """
    path = hours_path(run)
    total = json.loads(path.read_text()) if path.is_file() else {"hours": 0.0, "sessions": 0}
    total = {"hours": total["hours"] + hours, "sessions": total["sessions"] + 1}
    path.write_text(json.dumps(total))


def train_all(runs: Sequence[Run], jobs: int, after: Callable[[], Any] | None = None) -> list[int]:
    """Train every run, ``jobs`` at a time.

    :param runs: the runs.
    :param jobs: concurrent subprocesses.
    :param after: called (one at a time) after each run that trained, e.g. to rewrite the
        results, so a harness stopped later keeps every run it finished.
    """
    guard = threading.Lock()

    def one(run: Run) -> int:
        status = train_run(run)
        if after is not None and status == 0 and finished(run.path, run.steps):
            with guard:
                after()
        return status

    if jobs <= 1:
        return [one(run) for run in runs]
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(one, runs))


# ---------------------------------------------------------------------------------- reading


def eval_curve(path: Path, action_repeat: int = ACTION_REPEAT) -> dict[str, list[list[float]]]:
    """Evaluation columns of a run's metrics.csv as ``column -> [[frames, value], ...]``.

    :param path: the run directory.
    :param action_repeat: frames per agent step.
    """
    metrics = path / "metrics.csv"
    if not metrics.is_file():
        return {}
    curves: dict[str, list[list[float]]] = {}
    with metrics.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key and key.startswith("eval/") and value not in (None, ""):
                    frames = float(row["step"]) * action_repeat
                    curves.setdefault(key[len("eval/") :], []).append([frames, float(value)])
    return curves


def aggregate(curves: Sequence[Sequence[Sequence[float]]]) -> dict[str, list[float]]:
    """Mean and population std over seeds at each frame count every seed reached.

    Later rows for the same frame count (a resumed run re-evaluating) replace earlier ones.

    :param curves: per seed, ``[[frames, value], ...]``.
    :return: ``{"frames", "mean", "std", "n"}`` lists.
    """
    by_seed = [{float(f): float(v) for f, v in curve} for curve in curves if curve]
    if not by_seed:
        return {"frames": [], "mean": [], "std": [], "n": []}
    common = sorted(set.intersection(*(set(points) for points in by_seed)))
    values = np.array([[points[f] for f in common] for points in by_seed])
    return {
        "frames": common,
        "mean": values.mean(axis=0).tolist(),
        "std": values.std(axis=0).tolist(),
        "n": [len(by_seed)] * len(common),
    }


def success_key(curves: dict[str, Any]) -> str | None:
    """The evaluation column holding the success rate, if the env reports one.

    :param curves: a run's evaluation columns.
    """
    keys = sorted(k for k in curves if "success" in k)
    return keys[0] if keys else None


def summarize(runs: Sequence[Run], known: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per section, task and variant: seeds done, curves, aggregated curve, final figures.

    :param runs: every planned run (unstarted ones are listed as missing).
    :param known: the figures already in mentor_learning.json; a finished seed recorded there
        whose run directory is gone (a fresh checkout keeps no ``runs/``) is kept, not lost.
    """
    out: dict[str, Any] = {}
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.section, run.task, run.variant), []).append(run)
    for (section, task, variant), members in groups.items():
        stored = (known or {}).get(section, {}).get(task, {}).get(variant, {})
        facts = summarize_group(members, stored)
        out.setdefault(section, {}).setdefault(task, {})[variant] = facts
    for section, tasks in (known or {}).items():  # groups this command did not plan
        for task, variants in tasks.items():
            for variant, facts in variants.items():
                out.setdefault(section, {}).setdefault(task, {}).setdefault(variant, facts)
    return out


def stored_seeds(members: Sequence[Run], stored: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The finished seeds of a group's stored figures that were trained like ``members``.

    :param members: the group's runs (their config, overrides and frames must match).
    :param stored: the group's figures from an earlier report.
    """
    run = members[0]
    same = (
        stored.get("config") == run.config
        and stored.get("overrides") == run.overrides
        and stored.get("extra_overrides") == run.extra
        and stored.get("frames") == run.frames
    )
    if not same:
        return {}
    return {
        seed: facts
        for seed, facts in stored.get("per_seed", {}).items()
        if facts.get("status") == "finished"
    }


def recorded(run: Run, known: dict[str, Any]) -> bool:
    """True when ``run`` finished in an earlier session, with the same settings, and its
    directory is gone (a fresh checkout): its stored seed stands and it is not trained again.

    :param run: a planned run.
    :param known: the figures already in mentor_learning.json.
    """
    stored = known.get(run.section, {}).get(run.task, {}).get(run.variant, {})
    if run.path.is_dir() or str(run.seed) not in stored_seeds([run], stored):
        return False
    print(f"skip {run.path.name}: finished in an earlier session ({NAME}.json)", flush=True)
    return True


def summarize_group(members: Sequence[Run], stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """Figures of one (section, task, variant) over its seeds.

    :param members: the runs (one per seed).
    :param stored: this group's figures from an earlier report (see :func:`summarize`).
    """
    per_seed = stored_seeds(members, stored or {})
    for run in members:
        if not run.path.is_dir() and str(run.seed) in per_seed:
            continue  # finished in an earlier session; its directory is gone
        per_seed[str(run.seed)] = seed_facts(run)
    per_seed = dict(sorted(per_seed.items(), key=lambda item: int(item[0])))
    done = [f for f in per_seed.values() if f["status"] == "finished"]
    curves = [f["columns"] for f in per_seed.values()]
    skey = next((success_key(c) for c in curves if success_key(c)), None)
    facts: dict[str, Any] = {
        "config": members[0].config,
        "overrides": members[0].overrides,
        "extra_overrides": members[0].extra,
        "frames": members[0].frames,
        "seeds": {seed: f["status_text"] for seed, f in per_seed.items()},
        "seeds_finished": len(done),
        "return": aggregate([c.get("return_mean", []) for c in curves]),
        "per_seed": per_seed,
        "wall_hours": {seed: f["hours"] for seed, f in per_seed.items() if "hours" in f},
    }
    finals = [f["final_return"] for f in done]
    if finals:
        facts["final_return_mean"] = float(np.mean(finals))
        facts["final_return_std"] = float(np.std(finals))
        facts["final_returns"] = finals
    if skey is not None:
        facts["success"] = aggregate([c.get(skey, []) for c in curves])
    successes = [f["final_success"] for f in done if "final_success" in f]
    if successes:
        facts["final_success_mean"] = float(np.mean(successes))
    return facts


def seed_facts(run: Run) -> dict[str, Any]:
    """One run's status, evaluation columns, final return (and success) and hours, from disk.

    :param run: the run.
    """
    columns = eval_curve(run.path, run.action_repeat)
    facts: dict[str, Any] = {"columns": columns}
    if hours_path(run).is_file():
        facts["hours"] = json.loads(hours_path(run).read_text())["hours"]
    if finished(run.path, run.steps):
        result = json.loads((run.path / "eval.json").read_text())
        facts["final_return"] = float(result["return_mean"])
        kpis = result.get("kpis", {})
        key = next((k for k in sorted(kpis) if "success" in k), None)
        if key is not None:
            facts["final_success"] = float(kpis[key])
        facts["status"] = facts["status_text"] = "finished"
    elif columns:
        last = max(f for f, _ in columns.get("return_mean", [[0.0, 0.0]]))
        facts["status"], facts["status_text"] = "running", f"running ({int(last)} frames evaluated)"
    else:
        facts["status"] = facts["status_text"] = "not started"
    return facts


# ---------------------------------------------------------------------------------- writing


def plot(figures: dict[str, Any], path: Path) -> Path | None:
    """Mean +/- std return curves per variant, one panel per (section, task).

    :param figures: :func:`summarize` output.
    :param path: the PNG to write.
    """
    panels = [(s, t, v) for s, tasks in figures.items() for t, v in tasks.items()]
    panels = [p for p in panels if any(f["return"]["frames"] for f in p[2].values())]
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (section, task, variants) in zip(axes[0], panels, strict=True):
        for variant, facts in variants.items():
            curve = facts["return"]
            if not curve["frames"]:
                continue
            x, mean, std = (np.array(curve[k]) for k in ("frames", "mean", "std"))
            ax.plot(x, mean, label=f"{variant} (n={curve['n'][0]})")
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        if section == "pixels" and task == "cartpole-swingup":
            reach = max(max(f["return"]["frames"] or [0]) for f in variants.values())
            for frames, (published, spread) in DRQV2_PIXEL_CARTPOLE_SWINGUP.items():
                if frames <= max(reach, FRAMES) * 1.05:
                    ax.errorbar(frames, published, yerr=spread, fmt="k*", capsize=4, markersize=9)
            ax.plot([], [], "k*", label="DrQ-v2 published (10 seeds)")
        ax.set_title(f"{task} ({section})")
        ax.set_xlabel("frames")
        ax.set_ylabel("eval return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(figures: dict[str, Any]) -> str:
    """A table: section, task, variant, seeds finished, final return, success, last curve point.

    :param figures: :func:`summarize` output.
    """
    lines = [
        "| section | task | variant | seeds finished | final return (mean +/- std) "
        "| success | last evaluated (frames: mean +/- std, n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for section, tasks in figures.items():
        for task, variants in tasks.items():
            for variant, f in variants.items():
                final = (
                    f"{f['final_return_mean']:.1f} +/- {f['final_return_std']:.1f}"
                    if "final_return_mean" in f
                    else "-"
                )
                success = f"{f['final_success_mean']:.2f}" if "final_success_mean" in f else "-"
                curve = f["return"]
                last = (
                    f"{int(curve['frames'][-1])}: {curve['mean'][-1]:.1f} +/- "
                    f"{curve['std'][-1]:.1f}, {curve['n'][-1]}"
                    if curve["frames"]
                    else "-"
                )
                lines.append(
                    f"| {section} | {task} | {variant} | {f['seeds_finished']}/{len(f['seeds'])} "
                    f"| {final} | {success} | {last} |"
                )
    lines.append("")
    lines.append(
        "DrQ-v2 published (pixels, cartpole_swingup, 10 seeds): "
        + ", ".join(
            f"{k // 1000}k frames {m:.0f} +/- {s:.0f}"
            for k, (m, s) in DRQV2_PIXEL_CARTPOLE_SWINGUP.items()
        )
    )
    return "\n".join(lines) + "\n"


def report(runs: Sequence[Run], config: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the JSON, PNG and markdown from the runs on disk and the seeds recorded in the JSON
    (under the results lock), and print the table.

    :param runs: every planned run.
    :param config: the harness settings, stored in the JSON.
    """
    with results_lock():  # another harness (another section) may be rewriting them too
        figures = summarize(runs, read_figures(NAME))
        png = plot(figures, RESULTS / f"{NAME}.png")
        table = markdown(figures)
        (RESULTS / f"{NAME}.md").write_text("# MENTOR learning runs (CPU)\n\n" + table)
        path = write_result(NAME, figures, {**config, "plot": png.name if png else None})
    print(table)
    print(f"wrote {path}")
    return figures


# ---------------------------------------------------------------------------------- planning


def plan(args: argparse.Namespace) -> list[Run]:
    """Every run of every section with the command line's sizes.

    :param args: the parsed command line.
    """

    def runs_of(
        section: str,
        variants: dict[str, tuple[str, list[str]]],
        names: Sequence[str],
        family: str,
        task: str,
        seeds: Sequence[int],
        frames: int,
        prefix: str = "",
    ) -> list[Run]:
        out = []
        for variant in names:
            config, overrides = variants[variant]
            for seed in seeds:
                name, env_id = prefix + variant, f"{family}/{task}"
                out.append(Run(section, name, task, env_id, seed, config, overrides, frames))
                out[-1].root, out[-1].extra = args.runs, list(args.extra)
        return out

    runs: list[Run] = []
    for task in args.tasks:
        runs += runs_of("states", VARIANTS, args.variants, "dmc", task, args.seeds, args.frames)
    runs += runs_of(
        "pixels",
        PIXEL_VARIANTS,
        args.pixel_variants,
        "dmc",
        args.pixel_task,
        args.pixel_seeds,
        args.pixel_frames,
        prefix="pixels_",
    )
    runs += runs_of(
        "metaworld",
        METAWORLD_VARIANTS,
        ["mentor"],
        "metaworld",
        args.metaworld_task,
        args.metaworld_seeds,
        args.metaworld_frames,
        prefix="metaworld_",
    )
    return runs


def parser() -> argparse.ArgumentParser:
    """The command line (the sizes apply to every subcommand, so ``report`` finds the runs)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("states", "pixels", "metaworld", "report"))
    p.add_argument("--tasks", nargs="+", default=["cartpole-swingup", "walker-walk"])
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--frames", type=int, default=FRAMES)
    p.add_argument("--pixel-task", default="cartpole-swingup")
    p.add_argument("--pixel-variants", nargs="+", default=["mentor"], choices=list(PIXEL_VARIANTS))
    p.add_argument("--pixel-seeds", nargs="+", type=int, default=[0])
    p.add_argument("--pixel-frames", type=int, default=FRAMES)
    p.add_argument("--metaworld-task", default="reach")
    p.add_argument("--metaworld-seeds", nargs="+", type=int, default=[0])
    p.add_argument("--metaworld-frames", type=int, default=FRAMES)
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    p.add_argument("--runs", type=Path, default=RUNS, help="where the run directories live")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Train one section (skipping finished runs), then rebuild the report from every run.

    :param argv: command-line arguments.
    """
    args = parser().parse_args(argv)
    runs = plan(args)
    if args.command != "report":
        signal.signal(signal.SIGTERM, stop_children)
        signal.signal(signal.SIGINT, stop_children)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    config.pop("command")
    config["action_repeat"] = ACTION_REPEAT

    def rewrite() -> None:
        report(runs + state_runs_on_disk(args, runs), config)

    if args.command != "report":
        known = read_figures(NAME)
        todo = [r for r in runs if r.section == args.command and not recorded(r, known)]
        statuses = train_all(todo, args.jobs, after=rewrite)
        failed = sum(1 for s in statuses if s != 0)
        if failed and not STOPPING.is_set():
            print(f"{failed} run(s) failed: see runs/mentor/*.log", flush=True)
    rewrite()
    if STOPPED_BY:
        print("stopped: the same command resumes", flush=True)
        raise SystemExit(128 + STOPPED_BY[0])


def state_runs_on_disk(args: argparse.Namespace, planned: Sequence[Run]) -> list[Run]:
    """State runs of any variant and seed found under ``--runs`` for ``--tasks`` but not
    planned, so that a command training a few variants keeps the others in the report.

    :param args: the parsed command line.
    :param planned: the runs already planned.
    """
    known = {r.path for r in planned}
    found = []
    for variant, (config, overrides) in VARIANTS.items():
        for task in args.tasks:
            for path in sorted(args.runs.glob(f"{variant}_{task}_s*")):
                seed = path.name.rsplit("_s", 1)[1]
                if path in known or not path.is_dir() or not seed.isdigit():
                    continue
                run = Run("states", variant, task, f"dmc/{task}", int(seed), config, overrides)
                run.frames, run.root, run.extra = args.frames, args.runs, list(args.extra)
                found.append(run)
    return found


if __name__ == "__main__":
    main()
