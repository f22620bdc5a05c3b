"""``rlkit evaluate`` end to end on a tiny SAC/Pendulum run: attacks, --model zips, bad inputs.

The run is trained once per module (200 steps); every test reads it.
"""

from __future__ import annotations

import csv
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from rlkit.cli import main
from rlkit.config import ConfigError, load_config
from rlkit.evaluation import EVAL_SEED_OFFSET
from rlkit.loading import load_run, sb3_algo_of_zip
from rlkit.rundir import RunDir
from rlkit.train import train

CONFIG = {
    "env": {"id": "Pendulum-v1"},
    "agent": {"name": "sac", "kwargs": {"learning_starts": 50, "batch_size": 32}},
    "train": {"total_steps": 100, "checkpoint_every": 0, "eval_every": 0, "progress": False},
    "eval": {"episodes": 5},
    "run": {"tensorboard": False},
    "seed": 0,
}
OVERRIDES = [
    "train.total_steps=200",
    "agent.net_arch=[16,16]",
    "eval.episodes=1",
    "train.eval_episodes=1",
]
ATTACKS = {
    "eps": [0.0, 0.05],
    "episodes": 3,
    "permutations": 20,
    "plot_features": 2,
    "attacks": [
        {"name": "random", "settings": {"seed": 0}},
        {"name": "pgd", "settings": {"iterations": 3}},
    ],
}


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("evaluate_cli")
    config_path = write_yaml(
        folder / "sac.yaml", {**CONFIG, "run": {**CONFIG["run"], "dir": str(folder / "run")}}
    )
    run = train(config_path, OVERRIDES)
    return run.path


@pytest.fixture(scope="module")
def attack_yaml(tmp_path_factory) -> Path:
    return write_yaml(tmp_path_factory.mktemp("attack_cfg") / "tiny.yaml", {"attack": ATTACKS})


@pytest.fixture(scope="module")
def run_results(run_dir, attack_yaml, tmp_path_factory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("run_results") / "out"
    code = main(
        [
            "evaluate",
            str(run_dir),
            "--attack",
            str(attack_yaml),
            "--eps",
            "0.0,0.05",
            "--episodes",
            "1",
            "--out",
            str(out),
        ]
    )
    return code, out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_trained_run_is_as_configured(run_dir):
    config = load_config(RunDir(run_dir).config_path)
    assert (
        config.seed == 0 and config.agent.net_arch == [16, 16] and config.train.total_steps == 200
    )
    assert (run_dir / "final" / "sb3_model.zip").is_file()
    assert config.env.max_episode_steps is None  # Pendulum's own 200-step limit, as for --model


def test_evaluate_run_with_attacks_writes_results(run_results):
    code, out = run_results
    assert code == 0
    rows = read_csv(out / "results.csv")
    assert len(rows) == 1 + 2 * len(ATTACKS["attacks"])
    assert [(r["attack"], float(r["eps"])) for r in rows] == [
        ("clean", 0.0),
        ("random", 0.0),
        ("random", 0.05),
        ("pgd", 0.0),
        ("pgd", 0.05),
    ]
    for row in rows[1:]:
        if float(row["eps"]) == 0.0:
            assert float(row["linf_max"]) == 0.0 and float(row["l2_max"]) == 0.0, row["attack"]
            assert float(row["regret_return"]) == 0.0 and float(row["action_mae"]) == 0.0
        else:
            assert 0.0 < float(row["linf_max"]) <= 0.05 + 1e-6
            assert 0.0 <= float(row["mmd_p_value"]) <= 1.0
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["episodes"] == 1 and data["meta"]["seeds"] == [EVAL_SEED_OFFSET]
    assert data["attack_config"]["eps"] == [0.0, 0.05]
    assert {p.name for p in out.glob("*.png")} == {
        "regret_vs_eps.png",
        "timeseries_random.png",
        "timeseries_pgd.png",
    }
    assert "random" in (out / "report.md").read_text()


def test_evaluate_run_clean_only_matches_attack_clean_row(run_dir, run_results, tmp_path):
    """Without --attack: eval.json from the agent's own act(); same seed as the attack run's clean
    row."""
    assert main(["evaluate", str(run_dir), "--episodes", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["episodes"] == 1 and result["length_mean"] == 200.0
    clean = read_csv(run_results[1] / "results.csv")[0]
    assert result["return_mean"] == pytest.approx(float(clean["return"]), rel=1e-4)
    assert result["return_mean"] < 0  # Pendulum rewards are <= 0


def test_sb3_algo_of_zip_reads_json_only(run_dir, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("sb3_algo_of_zip must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    assert sb3_algo_of_zip(run_dir / "final" / "sb3_model.zip") == "sac"


def test_sb3_algo_of_zip_hand_made_archives(tmp_path):
    def archive(module: str) -> Path:
        path = tmp_path / f"{module.replace('.', '_')}.zip"
        with zipfile.ZipFile(path, "w") as handle:
            handle.writestr("data", json.dumps({"policy_class": {"__module__": module}}))
        return path

    assert sb3_algo_of_zip(archive("stable_baselines3.ppo.policies")) == "ppo"
    assert sb3_algo_of_zip(archive("stable_baselines3.td3.policies")) == "td3"
    with pytest.raises(ConfigError, match="--algo"):
        sb3_algo_of_zip(archive("my_package.policies"))


def test_evaluate_model_zip_matches_run_dir(run_dir, attack_yaml, run_results, tmp_path):
    _, out_run = run_results
    zip_path = tmp_path / "model.zip"
    zip_path.write_bytes((run_dir / "final" / "sb3_model.zip").read_bytes())
    out = tmp_path / "out2"
    code = main(
        [
            "evaluate",
            "--model",
            str(zip_path),
            "--env",
            "Pendulum-v1",
            "--attack",
            str(attack_yaml),
            "--episodes",
            "1",
            "--seed",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    model_rows = read_csv(out / "results.csv")
    run_rows = read_csv(out_run / "results.csv")
    assert len(model_rows) == len(run_rows)
    assert float(model_rows[0]["return"]) == pytest.approx(float(run_rows[0]["return"]), rel=1e-6)
    data = json.loads((out / "results.json").read_text())
    assert data["meta"]["seeds"] == [EVAL_SEED_OFFSET] and data["source"] == str(zip_path)


def test_model_zip_view_equals_run_view(run_dir):
    from rlkit.loading import load_sb3_zip

    loaded_run = load_run(run_dir)
    loaded_zip = load_sb3_zip(run_dir / "final" / "sb3_model.zip", "Pendulum-v1")
    assert loaded_run.seed == loaded_zip.seed == 0
    obs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, -3.0], [-0.6, 0.8, 7.5]])
    with torch.no_grad():
        torch.testing.assert_close(loaded_run.view(obs), loaded_zip.view(obs))
        torch.testing.assert_close(
            loaded_run.view.squash(loaded_run.view(obs)),
            loaded_zip.view.squash(loaded_zip.view(obs)),
        )


# ---------------------------------------------------------------------------------------------
# bad inputs: exit status 2 and one clear line on stderr


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("rlkit: error: ")
    return err[0]


@pytest.mark.parametrize(
    ("eps", "fragment"), [("abc", "comma-separated numbers"), ("-1", ">= 0"), ("0.1,x", "'0.1,x'")]
)
def test_bad_eps(run_dir, attack_yaml, capsys, eps, fragment):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--attack", str(attack_yaml), "--eps", eps]) == 2
    line = error_line(capsys)
    assert "--eps" in line and fragment in line


def test_unknown_attack_name_suggests(run_dir, tmp_path, capsys):
    bad = write_yaml(
        tmp_path / "bad.yaml", {"attack": {**ATTACKS, "attacks": [{"name": "bifurcaton"}]}}
    )
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                "--attack",
                str(bad),
                "--episodes",
                "1",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    line = error_line(capsys)
    assert (
        "attack.attacks.0.name" in line
        and "bifurcaton" in line
        and "did you mean" in line
        and "'bifurcation'" in line
    )
    assert not (tmp_path / "o").exists()


def test_unknown_attack_setting(run_dir, tmp_path, capsys):
    bad = write_yaml(
        tmp_path / "bad.yaml",
        {"attack": {**ATTACKS, "attacks": [{"name": "pgd", "settings": {"iteratons": 3}}]}},
    )
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--attack", str(bad), "--episodes", "1"]) == 2
    line = error_line(capsys)
    assert "iteratons" in line and "attack.attacks.0.settings" in line and "iterations" in line


def test_unknown_attack_config_key(run_dir, tmp_path, capsys):
    bad = write_yaml(tmp_path / "bad.yaml", {"attack": {**ATTACKS, "episode": 2}})
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--attack", str(bad)]) == 2
    assert "episode" in error_line(capsys)


def test_mask_group_on_env_without_groups(run_dir, tmp_path, capsys):
    bad = write_yaml(
        tmp_path / "bad.yaml",
        {"attack": {**ATTACKS, "attacks": [{"name": "random", "mask": ["calendar"]}]}},
    )
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                "--attack",
                str(bad),
                "--episodes",
                "1",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    line = error_line(capsys)
    assert "'calendar'" in line and "no groups" in line
    assert not (tmp_path / "o").exists()


def test_missing_run_dir(tmp_path, capsys):
    missing = tmp_path / "no_such_run"
    capsys.readouterr()
    assert main(["evaluate", str(missing)]) == 2
    line = error_line(capsys)
    assert str(missing) in line and "not an rlkit run directory" in line
    assert not missing.exists()


def test_missing_attack_file(run_dir, tmp_path, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--attack", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in error_line(capsys)


def test_model_without_env(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run_dir / "final" / "sb3_model.zip")]) == 2
    assert "--model needs --env" in error_line(capsys)


def test_model_file_missing(tmp_path, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "gone.zip"), "--env", "Pendulum-v1"]) == 2
    line = error_line(capsys)
    assert "gone.zip" in line and "not found" in line


def test_no_run_dir_and_no_model(capsys):
    capsys.readouterr()
    assert main(["evaluate"]) == 2
    assert "run directory" in error_line(capsys)


@pytest.mark.parametrize("eps", ["inf", "nan"])
def test_non_finite_eps_exits_2(run_dir, attack_yaml, tmp_path, capsys, eps):
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                "--attack",
                str(attack_yaml),
                "--eps",
                eps,
                "--episodes",
                "1",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "--eps" in error_line(capsys)


def test_bad_attack_setting_value_exits_2(run_dir, tmp_path, capsys):
    bad = write_yaml(
        tmp_path / "bad.yaml",
        {"attack": {**ATTACKS, "attacks": [{"name": "pgd", "settings": {"iterations": 0}}]}},
    )
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                "--attack",
                str(bad),
                "--episodes",
                "1",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "iterations" in error_line(capsys)


@pytest.mark.parametrize("algo", ["PPO", "A2C", "TD3", "DDPG", "SAC"])
def test_algorithm_told_apart_from_saved_data(tmp_path, algo):
    """PPO/A2C (one policy class) and TD3/DDPG (another) are told apart from the zip's JSON."""
    import stable_baselines3

    cls = getattr(stable_baselines3, algo)
    env_id = "CartPole-v1" if algo in ("PPO", "A2C") else "Pendulum-v1"
    kwargs = {} if algo in ("PPO", "A2C") else {"buffer_size": 10}
    cls("MlpPolicy", env_id, policy_kwargs={"net_arch": [8]}, **kwargs).save(tmp_path / "m.zip")
    assert sb3_algo_of_zip(tmp_path / "m.zip") == algo.lower()


def test_model_that_is_not_a_zip(tmp_path, capsys):
    fake = tmp_path / "model.zip"
    fake.write_text("not a zip")
    capsys.readouterr()
    assert main(["evaluate", "--model", str(fake), "--env", "Pendulum-v1"]) == 2
    line = error_line(capsys)
    assert str(fake) in line and "not a zip archive" in line


def test_model_with_env_of_other_observation_shape(run_dir, capsys):
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(run_dir / "final" / "sb3_model.zip"),
                "--env",
                "CartPole-v1",
            ]
        )
        == 2
    )
    line = error_line(capsys)
    assert "observes shape (3,)" in line and "(4,)" in line


def test_episodes_zero_is_refused(run_dir, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["evaluate", str(run_dir), "--episodes", "0"])
    assert info.value.code == 2
    line = error_line(capsys)
    assert "--episodes" in line and ">= 1" in line


def test_corrupt_final_model_on_evaluate(run_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "final" / "agent.pt").write_bytes(b"PK\x03\x04 truncated")
    capsys.readouterr()
    assert main(["evaluate", str(copy), "--episodes", "1"]) == 2
    line = error_line(capsys)
    assert str(copy / "final") in line and "cannot be read" in line
    assert (copy / "eval.json").read_text() != ""  # the run's files are untouched


def test_model_with_config_and_overrides(run_dir, tmp_path):
    """--model --config FILE key=value: the env comes from the config (here a 50-step limit)."""
    config = write_yaml(
        tmp_path / "env.yaml", {"env": {"id": "Pendulum-v1"}, "eval": {"episodes": 2}, "seed": 0}
    )
    out = tmp_path / "o"
    zip_path = str(run_dir / "final" / "sb3_model.zip")
    assert (
        main(
            [
                "evaluate",
                "--model",
                zip_path,
                "--config",
                str(config),
                "env.max_episode_steps=50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "eval.json").read_text())
    assert result["episodes"] == 2 and result["length_mean"] == 50.0


def test_config_overrides_without_model_are_refused(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "env.max_episode_steps=5"]) == 2
    assert "--config and key=value overrides" in error_line(capsys)
