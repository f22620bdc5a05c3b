"""``rlkit evaluate --attack`` writes report.html with the run's config, and ``rlkit report``
compares real run directories (a tiny SAC/Pendulum run trained here, two seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rlkit.browser import table_rows
from rlkit.cli import main
from rlkit.train import train

CONFIG = {
    "env": {"id": "Pendulum-v1"},
    "agent": {
        "name": "sac",
        "net_arch": [16, 16],
        "kwargs": {"learning_starts": 50, "batch_size": 32},
    },
    "train": {
        "total_steps": 400,
        "checkpoint_every": 0,
        "eval_every": 200,
        "eval_episodes": 1,
        "progress": False,
    },
    "eval": {"episodes": 1},
    "run": {"tensorboard": False},
}
ATTACKS = {
    "eps": [0.05],
    "episodes": 2,
    "permutations": 20,
    "attacks": [
        {"name": "random", "settings": {"seed": 0}},
        {"name": "bifurcation", "settings": {"iterations": 3}},
    ],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[list[Path], Path]:
    folder = tmp_path_factory.mktemp("report_cli")
    attack = folder / "tiny.yaml"
    attack.write_text(yaml.safe_dump({"attack": ATTACKS}))
    paths = []
    for seed in (0, 1):
        cfg = {**CONFIG, "seed": seed, "run": {**CONFIG["run"], "dir": str(folder / f"sac_{seed}")}}
        (folder / f"sac_{seed}.yaml").write_text(yaml.safe_dump(cfg))
        paths.append(train(folder / f"sac_{seed}.yaml").path)
    return paths, attack


def test_evaluate_writes_report_html_with_the_run_config(runs, capsys):
    (run, _), attack = runs
    assert main(["evaluate", str(run), "--attack", str(attack)]) == 0
    printed = capsys.readouterr().out
    out = run / "attacks" / "tiny"
    assert f"report: {out / 'report.html'}" in printed.replace("\n", "")
    assert "what this evaluation shows" in printed
    assert "At the same budget (eps 0.05)" in printed.replace("\n", " ")
    html = (out / "report.html").read_text()
    rows = table_rows(html)
    assert rows["regret"] == 2 and rows["stealth"] == 2
    assert "Run (config.yaml)" in html and "name: sac" in html and "Pendulum-v1" in html
    data = json.loads((out / "results.json").read_text())
    assert data["run_config"]["agent"]["name"] == "sac" and data["run_config"]["seed"] == 0


def test_report_compares_the_two_seeds(runs, tmp_path, capsys):
    (first, second), attack = runs
    assert main(["evaluate", str(second), "--attack", str(attack)]) == 0
    capsys.readouterr()
    out = tmp_path / "cmp"
    assert main(["report", str(first.parent), "--out", str(out), "--title", "SAC seeds"]) == 0
    printed = capsys.readouterr().out
    assert "(1 controllers, 2 runs" in printed
    data = json.loads((out / "comparison.json").read_text())
    sac = data["controllers"]["sac"]
    assert sac["seeds"] == [0, 1] and sac["clean"]["return"]["n"] == 2
    assert sac["regret"]["bifurcation@0.05"]["return"]["n"] == 2
    html = (out / "report.html").read_text()
    assert table_rows(html)["runs"] == 2 and table_rows(html)["clean"] == 1
    assert (out / "learning_curves.png").is_file()  # eval/return_mean every 200 steps
