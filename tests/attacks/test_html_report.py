"""report.html of an attack evaluation: its content from the DOM, and its rendering in Chromium
(tables counted in the rendered DOM, every figure drawn and not blank, in a screenshot)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlkit.attacks.evaluation import evaluate_attacks
from rlkit.attacks.html_report import build_html, regret_cell
from rlkit.attacks.report import write_report
from rlkit.browser import BrowserError, find_chromium, ink, layout, read_png, screenshot
from rlkit.browser import table_rows as dom_table_rows
from rlkit.config import AttackConfig
from rlkit.policy import PolicyView

STEPS_PER_DAY = 12


class DayEnv(gym.Env):
    """One-day episodes of 12 steps, 4 named features in two groups; the policy sees x1 - y1."""

    feature_names = ["x0", "x1", "y0", "y1"]
    obs_groups = {"x": slice(0, 2), "y": slice(2, 4)}
    observation_space = gym.spaces.Box(0.0, 1.0, (4,), dtype=np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), dtype=np.float32)
    steps_per_day = STEPS_PER_DAY

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._rng = np.random.default_rng(seed)
        self.t, self.cost = 0, 0.0
        self.obs = self._rng.uniform(0.3, 0.7, 4).astype(np.float32)
        return self.obs.copy(), {}

    def step(self, action: Any):
        a = float(np.asarray(action, dtype=np.float64).reshape(-1)[0])
        target = float(self.obs[1] - self.obs[3])
        self.cost += abs(a - target)
        self.t += 1
        self.obs = self._rng.uniform(0.3, 0.7, 4).astype(np.float32)
        done = self.t >= STEPS_PER_DAY
        kpis = {"cost": 1.0 + self.cost, "daily_peak": 2.0 + abs(a)} if done else None
        return (
            self.obs.copy(),
            -abs(a - target),
            False,
            done,
            {"episode_kpis": kpis} if done else {},
        )


def policy() -> PolicyView:
    body = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        body.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, -1.0]]))  # x0 and y0 have no gradient
    return PolicyView(body, "continuous", "none")


CONFIG = {
    "eps": [0.05, 0.1],
    "episodes": 4,
    "permutations": 50,
    "attacks": [
        {"name": "random", "settings": {"positive_only": True, "seed": 1}},
        {"name": "pgd", "settings": {"iterations": 5, "random_start": None}},
        {"name": "bifurcation", "settings": {"iterations": 5}},
    ],
}
N_ROWS = 6  # 3 attacks x 2 budgets


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    config = AttackConfig.model_validate(CONFIG)
    results = evaluate_attacks(DayEnv, policy(), config, seed=7, progress=False)
    out = tmp_path_factory.mktemp("html_report")
    context = {
        "source": "runs/<toy> & co",
        "attack_config": config.model_dump(mode="json"),
        "run_config": {"agent": {"name": "ppo"}, "env": {"id": "toy"}, "train": {"total_steps": 9}},
    }
    write_report(results, out, "Toy <attack> report", context)
    return results, out


def test_report_html_is_written_beside_report_md(report):
    _, out = report
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [
        "regret_vs_eps.png",
        "timeseries_bifurcation.png",
        "timeseries_pgd.png",
        "timeseries_random.png",
    ]
    assert "## What this evaluation shows" in (out / "report.md").read_text()


def test_page_is_self_contained_and_escaped(report):
    _, out = report
    text = (out / "report.html").read_text()
    assert "<script" not in text and "<link" not in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing from the network
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == 4  # embedded PNGs
    assert "Toy &lt;attack&gt; report" in text and "runs/&lt;toy&gt; &amp; co" in text
    assert "<attack>" not in text


def test_tables_rows_from_the_file(report):
    results, out = report
    rows = dom_table_rows((out / "report.html").read_text())
    assert rows["regret"] == N_ROWS == len(results["rows"])
    assert rows["stealth"] == N_ROWS
    # clean table: return, return_std and the env's KPIs (cost, daily_peak)
    assert rows["clean"] == 4
    assert rows["facts"] >= 7


def test_findings_and_verdicts_on_the_page(report):
    results, out = report
    text = (out / "report.html").read_text()
    assert "What this evaluation shows" in text
    assert "At the same budget (eps 0.1)" in text
    for r in results["rows"]:
        verdict = "detected" if r["mmd_p_value"] < 0.05 else "not detected"
        assert f"{r['attack']} at eps 0.1" in text or r["eps"] != 0.1
        assert verdict in text
    assert text.count('class="badge detected"') + text.count('class="badge undetected"') == (
        2 * N_ROWS  # MMD verdict in the regret and the stealth table
        + N_ROWS  # first-difference MMD verdict in the stealth table
    )
    assert "Calibration: the MMD test on the clean episodes split in two" in text


def test_time_series_show_the_most_perturbed_features(report):
    _, out = report
    text = (out / "report.html").read_text()

    def shown(attack: str) -> list[str]:
        caption = re.search(rf"{attack}: action of the clean run vs the attacked run[^<]*", text)
        assert caption is not None and "features shown" in caption.group(0)
        return caption.group(0).split("mean |perturbation|): ")[1].rstrip(".").split(", ")

    # the bifurcation attack starts from delta = 0 and moves only x1 and y1 (x0 and y0 have no
    # gradient): those two are plotted, not the first columns
    assert sorted(shown("bifurcation")) == ["x1", "y1"]
    # random noise and PGD's random start move every feature: the 3 largest are plotted
    assert len(shown("random")) == 3 and len(shown("pgd")) == 3


def test_config_sections(report):
    _, out = report
    text = (out / "report.html").read_text()
    assert "Run (config.yaml)" in text and "total_steps: 9" in text
    assert "iterations: 5" in text  # the attack settings


def test_build_html_from_results_json_without_traces(report):
    import json

    _, out = report
    data = json.loads((out / "results.json").read_text())
    html = build_html(data, "from json", {"source": data["source"]}, [])
    assert dom_table_rows(html)["regret"] == N_ROWS
    assert "<img" not in html


def test_regret_cell_shading():
    assert regret_cell("return", -10.0, 50.0).cls == "num bad"  # 20% of the return lost
    assert regret_cell("return", -1.0, 50.0).cls == "num worse"
    assert regret_cell("cost_norm", -0.1, 0.8).cls == "num good"
    assert regret_cell("cost_norm", 0.1, 0.8).cls == "num bad"
    assert regret_cell("vmin", -0.001, 0.97).cls == "num worse"  # a lower minimum voltage hurts
    assert regret_cell("cost_norm", 0.0, 0.8).cls == "num"


# ----------------------------------------------------------------------------- in Chromium
@pytest.fixture(scope="module")
def rendered(report, tmp_path_factory):
    if find_chromium() is None:
        pytest.skip(
            "chromium is not installed (make setup installs Debian's chromium package; or "
            "apt-get install chromium): the page is not checked in a browser"
        )
    _, out = report
    try:
        page = layout(out / "report.html")
        shot = screenshot(
            out / "report.html", tmp_path_factory.mktemp("shot") / "report.png", height=page.height
        )
    except BrowserError as err:
        pytest.skip(f"chromium cannot render here: {err}")
    return page, read_png(shot)


def test_browser_counts_table_rows(rendered, report):
    page, _ = rendered
    tables = {t["id"]: t for t in page.tables}
    assert tables["regret"]["rows"] == N_ROWS and tables["stealth"]["rows"] == N_ROWS
    assert tables["clean"]["rows"] == 4
    assert dom_table_rows(page.dom)["regret"] == N_ROWS  # the rendered DOM agrees
    for name in ("facts", "clean", "regret", "stealth"):
        assert tables[name]["visible"], name
    hidden = [t for t in page.tables if not t["visible"]]
    assert len(hidden) == 1  # the one folded table: every column of results.csv


def test_browser_draws_every_image(rendered):
    page, pixels = rendered
    assert pixels.shape[0] == min(page.height, 16000) and pixels.shape[1] == 1280
    assert len(page.images) == 4
    for image in page.images:
        assert image["complete"] and image["natural_w"] > 300 and image["natural_h"] > 150
        assert image["visible"] and image["w"] > 300 and image["h"] > 150
        assert ink(pixels, image) > 0.02, image["alt"]  # lines, axes and labels drawn


def test_browser_tables_carry_ink_and_blank_space_does_not(rendered):
    page, pixels = rendered
    for table in page.tables:
        if table["visible"]:
            assert ink(pixels, table) > 0.02, table["id"]
    right_margin = {"x": 1258, "y": 0, "w": 22, "h": min(page.height, 16000)}  # body padding
    assert ink(pixels, right_margin) < 0.001


def test_p_cell_and_env_text():
    from rlkit.attacks.html_report import _env_text, p_cell

    assert p_cell(0.0, 1000).text == "< 0.001" and p_cell(0.0, None).text == "0"
    assert p_cell(0.179, 1000).text == "0.179"
    env = {"id": "grid", "kwargs": {"network": "case33bw", "episode_days": 1}, "n_envs": 8}
    assert _env_text(env) == "grid (network=case33bw, episode_days=1; 8 envs)"
    assert _env_text({"id": "Pendulum-v1"}) == "Pendulum-v1"
