"""Attack report files: results.csv/json, report.md and the PNG plots, from a real evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit.attacks.evaluation import STEALTH_SKIPPED, evaluate_attacks
from rlkit.attacks.report import (
    attack_columns,
    clean_columns,
    most_perturbed_features,
    most_perturbed_step,
    write_report,
)
from rlkit.config import AttackConfig
from rlkit.policy import PolicyView

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FourFeatureEnv(gym.Env):
    """6-step episodes of seeded observations in [0.2, 0.4]^4; reward ``-|a - obs[0]|``."""

    feature_names = ["x0", "x1", "y0", "y1"]
    obs_groups = {"x": slice(0, 2), "y": slice(2, 4)}
    observation_space = gym.spaces.Box(0.0, 1.0, (4,), dtype=np.float32)
    action_space = gym.spaces.Box(-10.0, 10.0, (1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._rng = np.random.default_rng(seed)
        self.t, self.total = 0, 0.0
        self.obs = self._rng.uniform(0.2, 0.4, 4).astype(np.float32)
        return self.obs.copy(), {}

    def step(self, action: Any):
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        reward = -abs(a - float(self.obs[0]))
        self.t += 1
        self.total += a
        self.obs = self._rng.uniform(0.2, 0.4, 4).astype(np.float32)
        done = self.t >= 6
        return (
            self.obs.copy(),
            reward,
            False,
            done,
            {"episode_kpis": {"cost": self.total}} if done else {},
        )


def view(kind: str) -> PolicyView:
    torch.manual_seed(0)
    if kind == "continuous":
        body = nn.Linear(4, 1, bias=False)
        with torch.no_grad():
            body.weight.copy_(torch.tensor([[1.0, -1.0, 0.5, -0.5]]))
        return PolicyView(body, "continuous", "none")
    body = nn.Linear(4, 4)
    with torch.no_grad():
        body.weight.zero_()
        body.weight[1, 0] = 1.0
        body.bias.copy_(torch.tensor([0.32, 0.0, -1.0, -1.0]))  # argmax flips near x0 = 0.32
    return PolicyView(body, "discrete", "argmax")


CONFIG = {
    "eps": [0.0, 0.1],
    "episodes": 2,
    "permutations": 20,
    "attacks": [
        {"name": "random", "settings": {"positive_only": True, "seed": 1}},
        {"name": "bifurcation", "label": "bif", "settings": {"iterations": 5}},
    ],
}
LABELS = ["random", "bif"]


@pytest.fixture(scope="module", params=["continuous", "discrete"])
def report(request, tmp_path_factory) -> tuple[dict[str, Any], Path, str]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = evaluate_attacks(
            FourFeatureEnv,
            view(request.param),
            AttackConfig.model_validate(CONFIG),
            seed=3,
            progress=False,
        )
    finally:
        torch.set_num_threads(before)
    # created by write_report
    out = tmp_path_factory.mktemp(f"report_{request.param}") / "nested" / "out"
    path = write_report(results, out, "Tiny report", {"source": "unit test"})
    assert path == out / "report.md"
    return results, out, request.param


def test_results_csv_has_one_row_per_clean_and_attack_eps(report):
    results, out, kind = report
    with (out / "results.csv").open() as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = list(reader)
    assert header[:2] == ["attack", "eps"]
    damage = "action_mae" if kind == "continuous" else "attack_success_rate"
    for col in (
        "return",
        "cost",
        "regret_return",
        "regret_cost",
        damage,
        "linf_mean",
        "mmd_p_value",
    ):
        assert col in header, col
    assert [(r["attack"], float(r["eps"])) for r in rows] == [("clean", 0.0)] + [
        (a, e) for a in LABELS for e in (0.0, 0.1)
    ]
    assert rows[0]["regret_return"] == ""  # the clean row has no regret
    for row, expected in zip(rows[1:], results["rows"], strict=True):
        assert float(row["regret_return"]) == pytest.approx(expected["regret_return"])
        assert float(row["linf_mean"]) == pytest.approx(expected["linf_mean"])
    assert float(rows[0]["return"]) == pytest.approx(results["clean"]["return"])


def test_results_json_round_trips(report):
    results, out, _ = report
    data = json.loads((out / "results.json").read_text())
    assert data["source"] == "unit test"
    assert (
        data["meta"]["seeds"] == [3, 4]
        and data["meta"]["feature_names"] == FourFeatureEnv.feature_names
    )
    assert data["clean"]["attack"] == "clean" and data["clean"]["return"] == pytest.approx(
        results["clean"]["return"]
    )
    assert len(data["rows"]) == 4
    for got, expected in zip(data["rows"], results["rows"], strict=True):
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert set(data["stealth"]) == {"random@0.0", "random@0.1", "bif@0.0", "bif@0.1"}


def test_report_markdown_has_clean_table_and_each_attack(report):
    results, out, kind = report
    text = (out / "report.md").read_text()
    assert text.startswith("# Tiny report")
    assert "## Clean" in text and "| metric | value |" in text
    clean_rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip()
        for line in text.split("## Under attack")[0].splitlines()
        if line.startswith("| ")
    }
    assert (
        clean_rows["return"] == f"{results['clean']['return']:.4g}"
        and clean_rows["cost"] == f"{results['clean']['cost']:.4g}"
    )
    assert list(clean_rows)[1:4] == ["return", "return_std", "cost"]  # header row first
    assert "## Under attack" in text
    damage = "action_mae" if kind == "continuous" else "attack_success_rate"
    assert damage in text
    headline, full = text.split("## Under attack")[1].split("### All columns")
    table = [
        line
        for line in headline.splitlines()
        if line.startswith("| ") and line.split("|")[1].strip() in LABELS
    ]
    assert [line.split("|")[1].strip() for line in table] == ["random", "random", "bif", "bif"]
    # every column of results.csv is in the full table, with the same values
    lines = [line for line in full.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    with (out / "results.csv").open() as handle:
        csv_columns = next(csv.reader(handle))
    assert sorted(header) == sorted(csv_columns)
    assert header[:4] == ["attack", "eps", "regret_return", "regret_cost"]
    cells = dict(zip(header, [c.strip() for c in lines[1].strip("|").split("|")], strict=True))
    first = results["rows"][0]
    assert cells["attack"] == "random" and cells["linf_max"] == f"{first['linf_max']:.4g}"
    assert "![regret_vs_eps](regret_vs_eps.png)" in text
    for label in LABELS:
        assert f"![timeseries_{label}](timeseries_{label}.png)" in text


def test_report_plots_are_pngs(report):
    _, out, _ = report
    names = ["regret_vs_eps.png", *[f"timeseries_{label}.png" for label in LABELS]]
    for name in names:
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data[:8] == PNG_MAGIC, name
    assert sorted(p.name for p in out.glob("*.png")) == sorted(names)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*names, "report.html", "report.md", "results.csv", "results.json"]
    )


def test_report_without_attack_rows_writes_tables_only(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = evaluate_attacks(
            FourFeatureEnv,
            view("continuous"),
            AttackConfig.model_validate(CONFIG),
            seed=0,
            progress=False,
        )
    finally:
        torch.set_num_threads(before)
    results = {**results, "rows": [], "stealth": {}}
    write_report(results, tmp_path, "empty", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "report.md",
        "results.csv",
        "results.json",
    ]
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("clean,0.0,")


@pytest.mark.parametrize("n_features", [0, 10])
def test_timeseries_feature_count_is_clipped(report, tmp_path, n_features):
    results, _, _ = report
    write_report(results, tmp_path, "features", {}, n_features=n_features)
    for label in LABELS:
        assert (tmp_path / f"timeseries_{label}.png").read_bytes()[:8] == PNG_MAGIC


def test_column_order_puts_headline_kpis_first():
    clean = {
        "attack": "clean",
        "eps": 0.0,
        "return": -1.0,
        "return_std": 0.1,
        "cost": 3.0,
        "cost_norm": 0.9,
        "vmin": 0.95,
        "zeta": 1.0,
        "linf_mean": 0.0,
    }
    assert clean_columns(clean) == [
        "return",
        "return_std",
        "cost_norm",
        "vmin",
        "cost",
        "zeta",
        "linf_mean",
    ]
    row = {
        "attack": "pgd",
        "eps": 0.1,
        "return": -2.0,
        "return_std": 0.2,
        "cost": 3.5,
        "cost_norm": 1.0,
        "regret_return": -1.0,
        "regret_cost": 0.5,
        "regret_cost_norm": 0.1,
        "regret_vmin": -0.01,
        "attack_success_rate": 0.5,
        "linf_mean": 0.1,
        "linf_max": 0.1,
        "mmd_p_value": 0.3,
    }
    assert attack_columns([row]) == [
        "attack",
        "eps",
        "regret_return",
        "regret_cost_norm",
        "regret_vmin",
        "regret_cost",
        "attack_success_rate",
        "linf_mean",
        "mmd_p_value",
        "return",
        "return_std",
        "cost",
        "cost_norm",
        "linf_max",
    ]


def test_most_perturbed_features_by_size_then_relative_size():
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.2, 0.8, (50, 6))
    clean[:, 4] = 0.5 + 0.001 * rng.standard_normal(50)  # a nearly flat feature
    delta = np.zeros((50, 6))
    delta[:, 5] = 0.02  # the largest perturbation
    delta[:, 1] = 0.01  # equal sizes: 1, 3 and 4 ...
    delta[:, 3] = -0.01
    delta[:, 4] = 0.01  # ... but 4 moves far more than its own spread
    fed = clean + delta
    assert most_perturbed_features(clean, fed, 3) == [5, 4, 1]
    assert most_perturbed_features(clean, fed, 10) == [5, 4, 1, 3]  # unperturbed 0 and 2 left out
    assert (
        most_perturbed_features(clean, clean, 3) == []
        and most_perturbed_features(clean, fed, 0) == []
    )
    bumped = fed.copy()
    bumped[17, 2] += 0.5
    assert most_perturbed_step(clean, bumped) == 17


class FrameEnv(gym.Env):
    """5-step episodes of seeded uint8 frames (3, 6, 6); reward ``-|a - mean / 255|``."""

    observation_space = gym.spaces.Box(0, 255, (3, 6, 6), dtype=np.uint8)
    action_space = gym.spaces.Box(-10.0, 10.0, (1,), dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._rng = np.random.default_rng(seed)
        self.t = 0
        self.frame = self._rng.integers(40, 216, (3, 6, 6)).astype(np.uint8)
        return self.frame.copy(), {}

    def step(self, action: Any):
        reward = -abs(float(np.asarray(action).reshape(-1)[0]) - float(self.frame.mean()) / 255)
        self.t += 1
        self.frame = self._rng.integers(40, 216, (3, 6, 6)).astype(np.uint8)
        done = self.t >= 5
        return (
            self.frame.copy(),
            reward,
            False,
            done,
            {"episode_kpis": {"cost": float(self.t)}} if done else {},
        )


def test_image_report_draws_frames_and_notes_skipped_stealth(tmp_path):
    linear = nn.Linear(108, 1, bias=False)
    with torch.no_grad():
        linear.weight.fill_(1.0 / (108 * 255))
    policy = PolicyView(nn.Sequential(nn.Flatten(), linear), "continuous", "none")
    config = AttackConfig.model_validate(
        {
            "eps": [8.0],
            "episodes": 2,
            "permutations": 20,
            "attacks": [{"name": "random", "settings": {"seed": 2}}],
        }
    )
    results = evaluate_attacks(FrameEnv, policy, config, seed=0, progress=False)
    write_report(results, tmp_path, "frames", {})
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["frames_random.png", "regret_vs_eps.png", "timeseries_random.png"]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    text = (tmp_path / "report.md").read_text()
    assert "![frames_random](frames_random.png)" in text and STEALTH_SKIPPED in text
    data = json.loads((tmp_path / "results.json").read_text())
    assert (
        data["meta"]["obs_shape"] == [3, 6, 6]
        and data["rows"][0]["stealth_note"] == STEALTH_SKIPPED
    )
    assert 0.0 < data["rows"][0]["linf_max"] <= 8.0 + 1e-4
