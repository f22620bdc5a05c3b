"""Sweeps on a local Ray (one instance, 2 CPUs, shared by the module's tests): a 4-trial sweep
with its run directories and aggregated table, an interrupted sweep (its driver killed) that
resumes without rerunning finished trials, and ASHA stopping a trial designed to be bad.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from rlkit.config import load_config
from rlkit.rundir import RunDir
from rlkit.sweep import load_sweep, run_sweep
from rlkit.sweep.results import collect
from rlkit.sweep.trial import LOCK_FILE, STOPPED_FILE, final_step, metric_curve
from rlkit.train import train

ray = pytest.importorskip("ray")
pytest.importorskip("ray.tune")

ROOT = Path(__file__).resolve().parents[2]
#: The tiny SAC/Pendulum config (300 steps, 50-step episodes).
TINY: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "data" / "tiny_sac.yaml").read_text()
)


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as YAML to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep_file(tmp_path: Path, **keys: Any) -> Path:
    """A sweep file next to tmp_path/configs/base.yaml, its directory in tmp_path/sweep."""
    data = {"base": "base.yaml", "dir": str(tmp_path / "sweep"), **keys}
    return write_yaml(tmp_path / "configs" / "sweep.yaml", data)


def quiet() -> Console:
    """A console writing into a buffer (80 columns)."""
    return Console(file=io.StringIO(), width=80, color_system=None)


def wait_unlocked(run_dir: Path, timeout: float = 60.0) -> None:
    """Wait until no process holds the trial's lock (a killed driver's worker has stopped)."""
    import fcntl

    with (run_dir / LOCK_FILE).open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, f"{run_dir} is still being trained"
                time.sleep(0.2)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """One local Ray instance (2 CPUs, no dashboard) for the module; yields its address."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


def _csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV, without their empty cells."""
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def _checkpoint_step(run_dir: Path) -> int:
    """The newest checkpoint's step (-1 without one)."""
    found = RunDir(run_dir).checkpoint_dirs()
    return int(found[-1].name.split("_")[1]) if found else -1


def test_four_trial_sweep_on_local_ray(tmp_path: Path, local_ray: str) -> None:
    write_yaml(tmp_path / "configs" / "base.yaml", TINY)
    path = sweep_file(tmp_path, grid={"agent.learning_rate": [3e-4, 1e-3]}, seeds=[0, 1])
    outcome = run_sweep(path, console=quiet(), verbose=0)
    assert outcome.backend == "ray"
    names = [
        "learning_rate=0.0003,seed=0",
        "learning_rate=0.0003,seed=1",
        "learning_rate=0.001,seed=0",
        "learning_rate=0.001,seed=1",
    ]
    assert sorted(outcome.ran) == names
    assert [r.status for r in outcome.results] == ["done"] * 4
    root = tmp_path / "sweep"
    values: dict[str, list[float]] = {}
    for name in names:
        run = root / "trials" / name
        config = load_config(run / "config.yaml")
        lr = float(name.split(",")[0].split("=")[1])
        assert (config.agent.learning_rate, config.seed) == (lr, int(name[-1]))
        assert config.run.dir == str(run)
        assert final_step(run) == 300
        assert [s for s, _ in metric_curve(run, "eval/return_mean")] == [150, 300]
        # the intermediate evaluation reached Tune (what ASHA and PBT decide on)
        reported = [
            json.loads(line)
            for line in (root / "tune" / "grid" / name / "result.json").read_text().splitlines()
        ]
        first = reported[0]
        assert first["step"] == 150
        assert first["eval/return_mean"] == metric_curve(run, "eval/return_mean")[0][1]
        last_eval = metric_curve(run, "eval/return_mean")[-1][1]
        assert (
            reported[-1]["final/return_mean"]
            == json.loads((run / "eval.json").read_text())["return_mean"]
        )
        values.setdefault(name.rsplit(",", 1)[0], []).append(last_eval)
    # the aggregated table: mean, std, median, min over seeds, best mean first
    rows = _csv_rows(root / "aggregate.csv")
    expected = sorted(values, key=lambda g: -statistics.fmean(values[g]))
    assert [r["group"] for r in rows] == expected
    for row in rows:
        seeds = values[row["group"]]
        assert (row["trials"], row["done"]) == ("2", "2")
        assert float(row["mean"]) == pytest.approx(statistics.fmean(seeds))
        assert float(row["std"]) == pytest.approx(statistics.stdev(seeds))
        assert float(row["median"]) == pytest.approx(statistics.median(seeds))
        assert float(row["min"]) == min(seeds)
    per_trial = _csv_rows(root / "results.csv")
    assert [r["trial"] for r in per_trial] == names
    assert all(r["status"] == "done" and r["step"] == "300" for r in per_trial)
    summary = (root / "summary.md").read_text()
    assert "## Over seeds (completed trials), best first: eval/return_mean" in summary
    assert "- trials: 4 done" in summary
    assert (root / "sweep.png").is_file()


def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(
    tmp_path: Path, local_ray: str
) -> None:
    write_yaml(tmp_path / "configs" / "base.yaml", TINY)
    path = sweep_file(tmp_path, grid={"train.total_steps": [300, 900]}, max_concurrent=1)
    short, long = (
        tmp_path / "sweep" / "trials" / "total_steps=300,seed=0",
        (tmp_path / "sweep" / "trials" / "total_steps=900,seed=0"),
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "rlkit.cli", "sweep", str(path), "--address", local_ray],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 600  # generous: a loaded 2-core machine is slow
        while not (final_step(short) == 300 and _checkpoint_step(long) >= 300):
            assert driver.poll() is None, "the sweep ended before it could be interrupted"
            assert time.monotonic() < deadline, "the sweep did not get going"
            time.sleep(0.1)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    wait_unlocked(long)
    checkpoint_step = _checkpoint_step(long)
    first_attempt = [
        r for r in _csv_rows(long / "metrics.csv") if float(r["step"]) <= checkpoint_step
    ]
    finished_at = {p: p.stat().st_mtime_ns for p in (short / "eval.json", short / "final")}
    sweep = load_sweep(path)
    assert [r.status for r in collect(sweep)] == ["done", "partial"]

    outcome = run_sweep(path, console=quiet(), verbose=0)
    assert outcome.skipped == ["total_steps=300,seed=0"]
    assert outcome.ran == ["total_steps=900,seed=0"]
    assert {p: p.stat().st_mtime_ns for p in finished_at} == finished_at
    assert [r.status for r in outcome.results] == ["done", "done"]
    assert final_step(long) == 900
    assert not (long / STOPPED_FILE).exists()
    # resumed from its checkpoint (rows up to it are the first attempt's, wall-clock columns
    # included), not started over; every evaluation logged once
    resumed = [r for r in _csv_rows(long / "metrics.csv") if float(r["step"]) <= checkpoint_step]
    assert 300 <= checkpoint_step < 900
    assert resumed == first_attempt and any(r.get("time/fps") for r in resumed)
    evals = [s for s, _ in metric_curve(long, "eval/return_mean")]
    assert evals == list(range(150, 901, 150))


def test_asha_stops_a_trial_designed_to_be_bad(tmp_path: Path, local_ray: str) -> None:
    # bad by design: 10x longer episodes collect about 10x the (negative) Pendulum return
    base: dict[str, Any] = {
        **TINY,
        "train": {**TINY["train"], "total_steps": 400, "eval_every": 100, "checkpoint_every": 100},
    }
    write_yaml(tmp_path / "configs" / "base.yaml", base)
    path = sweep_file(
        tmp_path,
        grid={"env.max_episode_steps": [20, 200]},
        scheduler={"name": "asha", "grace_period": 200, "reduction_factor": 2},
        max_concurrent=1,
    )
    outcome = run_sweep(path, console=quiet(), verbose=0)
    good, bad = outcome.results
    assert (good.spec.name, good.status, good.step) == ("max_episode_steps=20,seed=0", "done", 400)
    assert (bad.spec.name, bad.status, bad.step) == ("max_episode_steps=200,seed=0", "stopped", 200)
    assert bad.value is not None and good.value is not None and bad.value < good.value
    run = tmp_path / "sweep" / "trials" / bad.spec.name
    stopped = json.loads((run / STOPPED_FILE).read_text())
    assert (stopped["scheduler"], stopped["step"]) == ("asha", 200)
    assert not (run / "final").exists()
    assert [d.name for d in RunDir(run).checkpoint_dirs()] == ["step_000000100"]
    rows = _csv_rows(tmp_path / "sweep" / "aggregate.csv")
    assert [(r["group"], r["done"]) for r in rows] == [
        ("max_episode_steps=20", "1"),
        ("max_episode_steps=200", "0"),
    ]
    # a stopped trial is finished for the sweep: running it again starts nothing
    again = run_sweep(path, console=quiet(), verbose=0)
    assert again.ran == [] and len(again.skipped) == 2
    # ... and its run directory is a valid rlkit run that resumes from its checkpoint
    before = [r for r in _csv_rows(run / "metrics.csv") if float(r["step"]) <= 100]
    train(None, config=load_config(run / "config.yaml"))
    assert final_step(run) == 400
    after = [r for r in _csv_rows(run / "metrics.csv") if float(r["step"]) <= 100]
    assert after == before


@pytest.mark.slow
def test_pbt_trials_take_over_a_better_trials_checkpoint_with_mutated_values(
    tmp_path: Path, local_ray: str
) -> None:
    base: dict[str, Any] = {
        **TINY,
        "train": {**TINY["train"], "total_steps": 300, "eval_every": 100, "checkpoint_every": 100},
    }
    write_yaml(tmp_path / "configs" / "base.yaml", base)
    path = sweep_file(
        tmp_path,
        grid={"env.max_episode_steps": [20, 200]},  # the second is bad by design (see ASHA)
        scheduler={
            "name": "pbt",
            "perturbation_interval": 100,
            "quantile_fraction": 0.5,
            "synch": True,
            "mutations": {"agent.learning_rate": {"loguniform": [1e-4, 1e-2]}},
        },
    )
    outcome = run_sweep(path, console=quiet(), verbose=0)
    assert [r.status for r in outcome.results] == ["done", "done"]
    restarts: dict[str, list[dict[str, Any]]] = {}
    for result in outcome.results:
        log = tmp_path / "sweep" / "trials" / result.spec.name / "pbt.jsonl"
        if log.is_file():
            restarts[result.spec.name] = [json.loads(line) for line in log.read_text().splitlines()]
    taken = [
        (name, line) for name, lines in restarts.items() for line in lines if line["from"] != name
    ]
    assert taken, "no trial took over another's checkpoint"
    assert all(line["step"] % 100 == 0 for lines in restarts.values() for line in lines)
    # each trial goes on with the values of its last restart (PBT copies the donor's values and
    # mutates them; a later restart from its own checkpoint may mutate them again)
    for name, lines in restarts.items():
        run = tmp_path / "sweep" / "trials" / name
        config = load_config(run / "config.yaml")
        assert config.agent.learning_rate == lines[-1]["params"]["agent.learning_rate"]
        assert config.env.max_episode_steps == lines[-1]["params"]["env.max_episode_steps"]
        assert config.seed == 0 and config.run.dir == str(run)
        assert final_step(run) == 300


@pytest.mark.slow
def test_optuna_search_proposes_trials_and_resumes_without_rerunning(
    tmp_path: Path, local_ray: str
) -> None:
    pytest.importorskip("optuna")
    write_yaml(tmp_path / "configs" / "base.yaml", TINY)
    path = sweep_file(
        tmp_path,
        samples={"agent.learning_rate": {"loguniform": [1e-4, 1e-2]}},
        num_samples=3,
        search={"name": "optuna", "seed": 1},
    )
    outcome = run_sweep(path, console=quiet(), verbose=0)
    assert [r.status for r in outcome.results] == ["done"] * 3
    for result in outcome.results:
        lr = result.spec.params["agent.learning_rate"]
        assert 1e-4 <= lr <= 1e-2
        config = load_config(tmp_path / "sweep" / "trials" / result.spec.name / "config.yaml")
        assert config.agent.learning_rate == lr
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "sweep").glob("trials/*/eval.json")}
    again = run_sweep(path, console=quiet(), verbose=0)
    assert sorted(again.skipped) == sorted(r.spec.name for r in outcome.results)
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert len(again.results) == 3
