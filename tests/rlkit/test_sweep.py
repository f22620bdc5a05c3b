"""Sweep files (validation, trial planning) and the sequential fallback (no Ray): run
directories, the aggregated table, resuming, the attack stage and the robust-RL summary.

The Ray Tune tests (a local Ray: 4-trial sweep, interrupted sweep, ASHA) are in
``test_sweep_ray.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from rlkit.cli import main
from rlkit.config import ConfigError, load_config
from rlkit.rundir import RunDir
from rlkit.sweep import load_sweep, plan_trials, run_sweep
from rlkit.sweep.results import print_results
from rlkit.sweep.spec import SweepConfig, safe_name, short_keys
from rlkit.sweep.trial import ReportSink, trial_metrics

#: A SAC/Pendulum config that trains in about a second (50-step episodes, 300 steps).
TINY: dict[str, Any] = yaml.safe_load(
    (Path(__file__).parent / "data" / "tiny_sac.yaml").read_text()
)
ATTACK = {
    "attack": {
        "eps": [0.05, 0.2],
        "episodes": 2,
        "stealth": False,
        "attacks": [{"name": "random"}, {"name": "fgsm"}],
    }
}


def write_yaml(path: Path, data: dict[str, Any] | str) -> Path:
    """Write ``data`` (a mapping or YAML text) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """The tiny base config in tmp_path/configs/base.yaml."""
    return write_yaml(tmp_path / "configs" / "base.yaml", TINY)


def sweep_file(tmp_path: Path, **keys: Any) -> Path:
    """A sweep file next to the base config, its directory in tmp_path/sweep."""
    data = {"base": "base.yaml", "dir": str(tmp_path / "sweep"), **keys}
    return write_yaml(tmp_path / "configs" / "sweep.yaml", data)


def quiet() -> Console:
    """A console writing into a buffer (80 columns)."""
    return Console(file=io.StringIO(), width=80, color_system=None)


# ---------------------------------------------------------------------------------------------
# validation: exit 2, one message naming the file and the key, nothing written


BAD = [
    ({"grids": {"agent.learning_rate": [0.001]}}, "unknown key 'grids' (did you mean 'grid'?)"),
    ({"grid": {}}, "key 'grid': empty"),
    ({"grid": {"agent.learning_rate": []}}, "key 'grid.agent.learning_rate': empty list"),
    (
        {"grid": {"agent.learning_rat": [0.001]}},
        "key 'grid.agent.learning_rat': value 0.001 is rejected: unknown key "
        "'agent.learning_rat' (did you mean 'agent.learning_rate'?)",
    ),
    (
        {"grid": {"agent.learning_rate": [0.001, 5]}},
        "key 'grid.agent.learning_rate': value 5 is rejected: key 'agent.learning_rate': given 5",
    ),
    (
        {"grid": {"agent.kwargs.batch_sise": [64]}},
        "key 'grid.agent.kwargs.batch_sise': value 64 is rejected",
    ),
    ({"grid": {"seed": [1, 2]}}, "key 'grid.seed': set by the sweep for each trial"),
    ({"grid": {"run.dir": ["x"]}}, "key 'grid.run.dir': set by the sweep"),
    ({"seeds": []}, "key 'seeds': give at least one seed"),
    ({"seeds": [1, 1]}, "key 'seeds': expected distinct whole numbers >= 0, got [1, 1]"),
    (
        {"samples": {"agent.learning_rate": {"loguniform": [0, 0.1]}}},
        "key 'samples.agent.learning_rate': loguniform: low must be > 0",
    ),
    (
        {"samples": {"agent.learning_rate": {"uniform": [0.1, 0.01]}}},
        "key 'samples.agent.learning_rate': uniform: expected [low, high] with low < high",
    ),
    (
        {"samples": {"agent.learning_rate": {"uniform": [0.01, 0.1], "choice": [0.1]}}},
        "give exactly one of uniform, loguniform, choice, randint (given: uniform, choice)",
    ),
    (
        {"samples": {"agent.learning_rate": {"uniform": [0.5, 2.0]}}},
        "key 'samples.agent.learning_rate': value 2.0 is rejected",
    ),
    ({"scheduler": {"name": "hyperband"}}, "key 'scheduler.name': given 'hyperband'; allowed:"),
    ({"scheduler": {"name": "asha"}}, "key 'scheduler.grace_period' is required"),
    (
        {"scheduler": {"name": "asha", "grace_perod": 10}},
        "unknown key 'scheduler.grace_perod' (did you mean 'scheduler.grace_period'?)",
    ),
    (
        {"scheduler": {"name": "asha", "grace_period": 300}},
        "key 'scheduler.grace_period': given 300; expected fewer env steps than "
        "train.total_steps (300)",
    ),
    (
        {"scheduler": {"name": "asha", "grace_period": 100}, "metric": "final/return_mean"},
        "key 'metric': 'final/return_mean' is known only when a trial ends",
    ),
    (
        {
            "scheduler": {
                "name": "pbt",
                "perturbation_interval": 100,
                "mutations": {"agent.learning_rate": {"uniform": [0.001, 0.01]}},
            }
        },
        "key 'scheduler.perturbation_interval': given 100; expected a multiple of "
        "train.checkpoint_every (150)",
    ),
    (
        {"search": {"name": "optuna"}, "grid": {"agent.learning_rate": [0.001]}},
        "key 'grid': not used with search 'optuna'",
    ),
    ({"search": {"name": "optuna"}}, "key 'samples': search 'optuna' needs a search space"),
    (
        {
            "search": {"name": "optuna"},
            "samples": {"agent.learning_rate": {"loguniform": [0.0001, 0.01]}},
            "seeds": [0, 1],
        },
        "key 'seeds': search 'optuna' tunes one seed",
    ),
    ({"metric": "return"}, "key 'metric': given 'return'; expected a metrics.csv column"),
    ({"metric": "attack/worst@0.05"}, "key 'metric': 'attack/worst@0.05' needs an 'attack'"),
    ({"mode": "maximum"}, "key 'mode': given 'maximum'"),
    ({"trial": {"threads": 0}}, "key 'trial.threads': given 0"),
    ({"attack": {"config": "nothere.yaml"}}, "key 'attack.config': file 'nothere.yaml' not found"),
    ({"base": "nothere.yaml"}, "key 'base': file 'nothere.yaml' not found"),
    ({"overrides": ["train.total_step=5"]}, "key 'overrides': unknown key 'train.total_step'"),
]


@pytest.mark.parametrize(("keys", "expected"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_sweep_files_are_rejected_before_anything_starts(
    tmp_path: Path, base: Path, capsys: pytest.CaptureFixture[str], keys: dict, expected: str
) -> None:
    path = sweep_file(tmp_path, **keys)
    assert main(["sweep", str(path), "--sequential"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rlkit: error: {path}: "), err
    assert expected in err, err
    assert not (tmp_path / "sweep").exists()


def test_base_config_with_errors_names_the_base_file_and_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = {**TINY, "agent": {**TINY["agent"], "learnin_rate": 0.1}}
    write_yaml(tmp_path / "configs" / "base.yaml", broken)
    path = sweep_file(tmp_path, grid={"agent.learning_rate": [0.001]})
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"rlkit: error: {path}: key 'base': {tmp_path / 'configs' / 'base.yaml'}: unknown key "
        "'agent.learnin_rate' (did you mean 'agent.learning_rate'?); allowed keys here: name, "
        "net_arch, learning_rate, kwargs, init_from"
    )
    assert not (tmp_path / "sweep").exists()


def test_a_value_only_building_the_env_rejects_is_caught_before_anything_starts(
    tmp_path: Path, base: Path
) -> None:
    path = sweep_file(tmp_path, grid={"env.kwargs": [{"g": 9.81, "gravity_typo": 1}]})
    with pytest.raises(ConfigError, match="key 'env': cannot build env 'Pendulum-v1'"):
        load_sweep(path)
    assert not (tmp_path / "sweep").exists()


def test_attack_budget_must_be_one_the_attacks_run(tmp_path: Path, base: Path) -> None:
    write_yaml(tmp_path / "configs" / "attack.yaml", ATTACK)
    path = sweep_file(tmp_path, attack={"config": "attack.yaml", "robust": True, "budget": 0.1})
    with pytest.raises(ConfigError, match=r"key 'attack.budget': given 0.1; the attacks run at "):
        load_sweep(path)


def test_a_trial_folder_left_with_another_config_is_rejected(tmp_path: Path, base: Path) -> None:
    path = sweep_file(tmp_path, grid={"agent.learning_rate": [0.001]})
    sweep = load_sweep(path)
    spec = sweep.trials[0]
    other = load_config(base, [*sweep.trial_overrides(spec), "agent.net_arch=[8]"])
    RunDir(sweep.trials_dir / spec.name).create(yaml.safe_dump(other.model_dump(mode="json")))
    with pytest.raises(ConfigError, match=r"exists in .* with a different agent section"):
        load_sweep(path)


def test_every_shipped_sweep_file_is_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "configs" / "sweeps"
    files = sorted(root.glob("*.yaml"))
    assert files
    for path in files:
        sweep = load_sweep(path, check_env=False)
        assert sweep.uses_search or sweep.trials, path


# ---------------------------------------------------------------------------------------------
# planning


def test_grid_times_seeds_with_stable_readable_names() -> None:
    config = SweepConfig.model_validate(
        {
            "base": "x.yaml",
            "grid": {"agent.learning_rate": [3e-4, 1e-3], "agent.net_arch": [[64, 64], [256]]},
            "seeds": [0, 1, 2],
        }
    )
    trials = plan_trials(config)
    assert len(trials) == 12
    assert len({t.name for t in trials}) == 12
    assert trials[0].name == "learning_rate=0.0003,net_arch=64-64,seed=0"
    assert trials[0].params == {"agent.learning_rate": 3e-4, "agent.net_arch": [64, 64]}
    assert trials[0].group == "learning_rate=0.0003,net_arch=64-64"
    assert [t.seed for t in trials[:3]] == [0, 1, 2]
    assert len({t.group for t in trials}) == 4
    assert [t.name for t in plan_trials(config)] == [t.name for t in trials]


def test_random_samples_are_seeded_in_range_and_shared_by_seeds() -> None:
    data = {
        "base": "x.yaml",
        "samples": {
            "agent.learning_rate": {"loguniform": [1e-4, 1e-2]},
            "agent.kwargs.tau": {"uniform": [0.001, 0.05]},
            "agent.kwargs.batch_size": {"choice": [32, 64]},
            "agent.kwargs.gradient_steps": {"randint": [1, 4]},
        },
        "num_samples": 5,
        "seeds": [0, 1],
        "search": {"seed": 3},
    }
    trials = plan_trials(SweepConfig.model_validate(data))
    assert len(trials) == 10
    assert trials[0].name.startswith("sample=000,learning_rate=")
    for first, second in zip(trials[::2], trials[1::2], strict=True):
        assert first.params == second.params and (first.seed, second.seed) == (0, 1)
    for t in trials:
        assert 1e-4 <= t.params["agent.learning_rate"] <= 1e-2
        assert 0.001 <= t.params["agent.kwargs.tau"] <= 0.05
        assert t.params["agent.kwargs.batch_size"] in (32, 64)
        assert t.params["agent.kwargs.gradient_steps"] in (1, 2, 3)
    again = plan_trials(SweepConfig.model_validate(data))
    assert [t.params for t in again] == [t.params for t in trials]
    other = plan_trials(SweepConfig.model_validate({**data, "search": {"seed": 4}}))
    assert [t.params for t in other] != [t.params for t in trials]


def test_names_are_safe_and_short_keys_disambiguate() -> None:
    assert short_keys(["agent.learning_rate", "agent.kwargs.tau"]) == {
        "agent.learning_rate": "learning_rate",
        "agent.kwargs.tau": "tau",
    }
    assert short_keys(["env.kwargs.split", "eval.env_kwargs.split"]) == {
        "env.kwargs.split": "kwargs.split",
        "eval.env_kwargs.split": "env_kwargs.split",
    }
    assert safe_name("a/b c=1") == "a-b-c=1"
    long = safe_name("x" * 300)
    assert len(long) == 120 and long != safe_name("x" * 301)


def test_trial_configs_are_base_plus_values_seed_and_run_dir(tmp_path: Path, base: Path) -> None:
    path = sweep_file(
        tmp_path,
        overrides=["train.total_steps=200"],
        grid={"agent.learning_rate": [0.001], "agent.kwargs.tau": [0.01]},
        seeds=[4],
    )
    sweep = load_sweep(path)
    (spec,) = sweep.trials
    config = load_config(base, sweep.trial_overrides(spec))
    assert config.agent.learning_rate == 0.001
    assert config.agent.kwargs == {"learning_starts": 100, "batch_size": 32, "tau": 0.01}
    assert config.seed == 4
    assert config.train.total_steps == 200 and config.train.progress is False
    assert config.run.dir == str(
        tmp_path / "sweep" / "trials" / "learning_rate=0.001,tau=0.01,seed=4"
    )
    assert sweep.total_steps == 200


# ---------------------------------------------------------------------------------------------
# the report sink


class _Recorder:
    def __init__(self) -> None:
        self.reports: list[tuple[dict[str, float], Path | None]] = []

    def report(self, metrics: dict[str, float], checkpoint: Path | None = None) -> None:
        self.reports.append((dict(metrics), checkpoint))


def test_report_sink_reports_evaluation_rows_with_the_latest_values() -> None:
    recorder = _Recorder()
    sink = ReportSink(recorder, "eval/return_mean", total_steps=300)
    sink.write(50, {"train/loss": 2.0})
    sink.write(100, {"eval/return_mean": -500.0})
    sink.write(150, {"train/loss": 1.0})
    sink.write(200, {"eval/return_mean": -400.0})
    sink.write(300, {"eval/return_mean": -300.0})  # left to the final report
    sink.close()
    assert [r for r, _ in recorder.reports] == [
        {"train/loss": 2.0, "eval/return_mean": -500.0, "step": 100.0},
        {"train/loss": 1.0, "eval/return_mean": -400.0, "step": 200.0},
    ]


def test_report_sink_for_pbt_waits_for_a_checkpoint(tmp_path: Path) -> None:
    recorder = _Recorder()
    exported: list[int] = []
    ready = {"step": -1}

    def export(min_step: int) -> Path | None:
        if ready["step"] < min_step:
            return None
        exported.append(min_step)
        folder = tmp_path / f"export_{min_step}"
        folder.mkdir()
        return folder

    sink = ReportSink(recorder, "eval/return_mean", total_steps=1000, export=export)
    sink.write(100, {"eval/return_mean": -5.0})
    assert recorder.reports == []
    ready["step"] = 100  # the loop checkpoints right after the evaluation
    sink.write(120, {"train/loss": 1.0})
    assert [(r["step"], r["eval/return_mean"]) for r, _ in recorder.reports] == [(100.0, -5.0)]
    assert recorder.reports[0][1] == tmp_path / "export_100"
    assert not (tmp_path / "export_100").exists()  # removed once reported
    assert exported == [100]


# ---------------------------------------------------------------------------------------------
# the sequential fallback, end to end (with an attack stage and the robust summary)


@pytest.fixture(scope="module")
def robust_sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-seed sweep with an attack stage, run sequentially once."""
    tmp = tmp_path_factory.mktemp("robust")
    write_yaml(tmp / "configs" / "base.yaml", TINY)
    write_yaml(tmp / "configs" / "attack.yaml", ATTACK)
    path = sweep_file(
        tmp,
        grid={"agent.learning_rate": [0.001]},
        seeds=[0, 1],
        attack={"config": "attack.yaml", "robust": True, "budget": 0.2},
        metric="attack/worst@0.2",
    )
    console = quiet()
    outcome = run_sweep(path, sequential=True, console=console)
    return {"path": path, "outcome": outcome, "out": console.file.getvalue(), "root": tmp / "sweep"}


def test_sequential_sweep_writes_run_directories_and_attack_results(
    robust_sweep: dict[str, Any],
) -> None:
    outcome = robust_sweep["outcome"]
    root: Path = robust_sweep["root"]
    assert outcome.backend == "sequential"
    assert outcome.ran == ["learning_rate=0.001,seed=0", "learning_rate=0.001,seed=1"]
    for name, seed in (("learning_rate=0.001,seed=0", 0), ("learning_rate=0.001,seed=1", 1)):
        run = root / "trials" / name
        config = load_config(run / "config.yaml")
        assert (config.seed, config.agent.learning_rate, config.run.dir) == (seed, 0.001, str(run))
        assert json.loads((run / "final" / "meta.json").read_text())["step"] == 300
        assert json.loads((run / "eval.json").read_text())["episodes"] == 2
        results = json.loads((run / "attacks" / "attack" / "results.json").read_text())
        assert {(r["attack"], r["eps"]) for r in results["rows"]} == {
            ("random", 0.05),
            ("random", 0.2),
            ("fgsm", 0.05),
            ("fgsm", 0.2),
        }
        metrics = trial_metrics(run, "attack")
        assert metrics["attack/natural"] == results["clean"]["return"]
        at = [r["return"] for r in results["rows"] if r["eps"] == 0.2]
        assert metrics["attack/worst@0.2"] == min(at)
        assert metrics["attack/fgsm@0.2"] in at


def test_robust_summary_aggregates_natural_and_worst_case_over_seeds(
    robust_sweep: dict[str, Any],
) -> None:
    outcome = robust_sweep["outcome"]
    root: Path = robust_sweep["root"]
    (group,) = outcome.groups
    worst = [r.metrics["attack/worst@0.2"] for r in outcome.results]
    natural = [r.metrics["attack/natural"] for r in outcome.results]
    assert group.done == 2
    assert group.stats["mean"] == pytest.approx(statistics.fmean(worst))  # the metric
    assert group.robust["worst"]["median"] == pytest.approx(statistics.median(worst))
    assert group.robust["worst"]["min"] == min(worst)
    assert group.robust["natural"]["median"] == pytest.approx(statistics.median(natural))
    with (root / "aggregate.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["worst_median"]) == pytest.approx(statistics.median(worst))
    assert float(row["natural_mean"]) == pytest.approx(statistics.fmean(natural))
    summary = (root / "summary.md").read_text()
    assert "## Robust summary: natural return and worst case over attacks at eps 0.2" in summary
    assert "robust summary at eps 0.2" in robust_sweep["out"]
    console = quiet()
    print_results(outcome.sweep, outcome.results, outcome.groups, console)
    lines = console.file.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any(line.split()[:2] == ["learning_rate=0.001", "2"] for line in lines if line.strip())


def test_running_a_finished_sequential_sweep_again_runs_nothing(
    robust_sweep: dict[str, Any],
) -> None:
    root: Path = robust_sweep["root"]
    before = {p: p.stat().st_mtime_ns for p in root.glob("trials/*/eval.json")}
    outcome = run_sweep(robust_sweep["path"], sequential=True, console=quiet())
    assert outcome.ran == []
    assert len(outcome.skipped) == 2
    assert {p: p.stat().st_mtime_ns for p in root.glob("trials/*/eval.json")} == before
    assert [r.status for r in outcome.results] == ["done", "done"]


def test_without_ray_plain_sweeps_run_sequentially_and_schedulers_say_how_to_install(
    tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rlkit.sweep.ray_backend as backend

    monkeypatch.setattr(backend, "ray_available", lambda: False)
    path = sweep_file(
        tmp_path, overrides=["train.total_steps=150"], grid={"agent.learning_rate": [0.001]}
    )
    console = quiet()
    outcome = run_sweep(path, console=console)
    assert outcome.backend == "sequential"
    assert "Ray is not installed (install it with: pip install 'rlkit[ray]'" in (
        console.file.getvalue().replace("\n", " ")
    )
    assert [r.status for r in outcome.results] == ["done"]
    asha = sweep_file(tmp_path, scheduler={"name": "asha", "grace_period": 100})
    assert main(["sweep", str(asha)]) == 2
    err = capsys.readouterr().err
    assert f"{asha}: key 'scheduler.name': needs Ray Tune, which is not installed" in err
    assert "pip install 'rlkit[ray]'" in err
    assert main(["sweep", str(path), "--address", "auto"]) == 2
    assert "--address auto: Ray is not installed" in capsys.readouterr().err


def test_results_csv_has_one_row_per_trial_with_values(robust_sweep: dict[str, Any]) -> None:
    root: Path = robust_sweep["root"]
    with (root / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["trial"] for r in rows] == [
        "learning_rate=0.001,seed=0",
        "learning_rate=0.001,seed=1",
    ]
    for row in rows:
        run = root / "trials" / row["trial"]
        final = json.loads((run / "eval.json").read_text())
        assert row["status"] == "done" and row["step"] == "300"
        assert float(row["agent.learning_rate"]) == 0.001
        assert float(row["final/return_mean"]) == final["return_mean"]
        assert math.isfinite(float(row["attack/worst@0.05"]))
    assert (root / "sweep.png").stat().st_size > 1000
