"""Benchmark harnesses keep finished seeds recorded in their committed JSON when the run
directories are gone (a fresh checkout has no ``runs/``), and drop them when the setup differs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from benchmarks import mentor_learning, odice


def _odice_args(steps: int = 10_000, hidden: int = 256) -> argparse.Namespace:
    return argparse.Namespace(algos=["odice"], seeds=[0, 1], steps=steps, hidden=hidden)


def _odice_known(data: dict) -> dict:
    seed = {"final": 50.0, "normalized": True, "curve": [[2000, 10.0], [10000, 50.0]]}
    entry = {"steps": 10_000, "policy_hidden": 256, "dataset": data, "seeds": {"1": seed}}
    return {"odice": entry}


def test_odice_keeps_a_stored_seed_whose_run_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(odice, "RUNS", tmp_path)
    data = {"transitions": 100, "return_mean": 1.5}
    out = odice.summarize("rlkit/x/medium-v0", _odice_args(), _odice_known(data), data)
    assert out["odice"]["seeds_done"] == 1
    assert out["odice"]["final_mean"] == 50.0
    assert odice.stored_seed(_odice_known(data), "odice", 1, _odice_args(), data) is not None
    assert odice.stored_seed(_odice_known(data), "odice", 0, _odice_args(), data) is None


@pytest.mark.parametrize(
    ("args", "data"),
    [
        (_odice_args(steps=20_000), {"transitions": 100, "return_mean": 1.5}),
        (_odice_args(hidden=1024), {"transitions": 100, "return_mean": 1.5}),
        (_odice_args(), {"transitions": 100, "return_mean": 2.5}),  # regenerated data differs
    ],
)
def test_odice_drops_a_stored_seed_trained_differently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: argparse.Namespace, data: dict
) -> None:
    monkeypatch.setattr(odice, "RUNS", tmp_path)
    known = _odice_known({"transitions": 100, "return_mean": 1.5})
    assert odice.stored_seed(known, "odice", 1, args, data) is None
    # nothing matches: the old entry stays as it was, labelled with its own settings
    assert odice.summarize("rlkit/x/medium-v0", args, known, data)["odice"] == known["odice"]


def _mentor_runs(root: Path) -> list[mentor_learning.Run]:
    runs = []
    for seed in (0, 1):
        run = mentor_learning.Run("states", "mentor", "t", "dmc/t", seed, "c.yaml", ["a=1"])
        run.root = root
        runs.append(run)
    return runs


def _mentor_stored(frames: int = mentor_learning.FRAMES) -> dict:
    finished = {
        "status": "finished",
        "status_text": "finished",
        "final_return": 300.0,
        "columns": {"return_mean": [[10000.0, 100.0], [100000.0, 300.0]]},
    }
    return {
        "config": "c.yaml",
        "overrides": ["a=1"],
        "extra_overrides": [],
        "frames": frames,
        "per_seed": {"0": finished},
    }


def test_mentor_report_keeps_a_finished_seed_whose_run_is_gone(tmp_path: Path) -> None:
    runs = _mentor_runs(tmp_path)
    facts = mentor_learning.summarize_group(runs, _mentor_stored())
    assert facts["seeds"] == {"0": "finished", "1": "not started"}
    assert facts["final_returns"] == [300.0]
    assert facts["return"]["mean"] == [100.0, 300.0]


def test_mentor_report_prefers_the_run_on_disk_and_drops_other_settings(tmp_path: Path) -> None:
    runs = _mentor_runs(tmp_path)
    runs[0].path.mkdir()  # restarted in this session: its directory wins over the record
    assert mentor_learning.summarize_group(runs, _mentor_stored())["seeds_finished"] == 0
    other = mentor_learning.summarize_group(_mentor_runs(tmp_path / "x"), _mentor_stored(50_000))
    assert other["seeds_finished"] == 0


def test_mentor_report_keeps_groups_it_did_not_plan(tmp_path: Path) -> None:
    known = {"states": {"t": {"mentor_pen": _mentor_stored()}}}
    out = mentor_learning.summarize(_mentor_runs(tmp_path), known)
    assert out["states"]["t"]["mentor_pen"]["per_seed"]["0"]["final_return"] == 300.0
    assert set(out["states"]["t"]) == {"mentor", "mentor_pen"}


def test_mentor_does_not_retrain_a_recorded_seed(tmp_path: Path) -> None:
    runs = _mentor_runs(tmp_path)
    known = {"states": {"t": {"mentor": _mentor_stored()}}}
    assert [mentor_learning.recorded(run, known) for run in runs] == [True, False]
    runs[0].path.mkdir()  # restarted here: the directory decides, not the record
    assert not mentor_learning.recorded(runs[0], known)
    other = {"states": {"t": {"mentor": _mentor_stored(50_000)}}}
    assert not mentor_learning.recorded(_mentor_runs(tmp_path / "x")[0], other)


@pytest.mark.parametrize("jobs", [1, 2])
def test_mentor_rewrites_the_results_after_each_finished_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    runs = _mentor_runs(tmp_path)
    monkeypatch.setattr(mentor_learning, "train_run", lambda run: 0)
    monkeypatch.setattr(mentor_learning, "finished", lambda path, steps: path.name.endswith("s1"))
    calls: list[int] = []
    assert mentor_learning.train_all(runs, jobs, after=lambda: calls.append(1)) == [0, 0]
    assert calls == [1]  # seed 1 finished; seed 0 stopped early (no rewrite)


def test_a_run_lock_is_held_by_a_live_process_only(tmp_path: Path) -> None:
    from benchmarks.common import take_lock

    lock = tmp_path / "run.lock"
    assert take_lock(lock) and lock.read_text() == str(os.getpid())
    assert not take_lock(lock)  # held by this (live) process
    lock.write_text("999999999")  # a process that does not exist
    assert take_lock(lock)
