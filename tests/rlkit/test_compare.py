"""``rlkit report``: the comparison page of several runs, from their files only (config.yaml,
eval.json, metrics.csv, attacks/*/results.json); seeds grouped into mean and spread; the page
checked in headless Chromium."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from rlkit.browser import BrowserError, find_chromium, ink, layout, read_png, screenshot, table_rows
from rlkit.cli import main
from rlkit.compare import (
    agent_label,
    build_page,
    comparison_findings,
    discover,
    group_runs,
    read_run,
    spread,
    strongest_settings,
    write_comparison,
)
from rlkit.config import ConfigError


def config(agent: str, seed: int, run_dir: str, bins: int | None = None) -> dict[str, Any]:
    return {
        "env": {"id": "grid", "kwargs": {"episode_days": 1}, "discrete_bins": bins},
        "agent": {"name": agent, "learning_rate": 0.0003, "init_from": None},
        "train": {"total_steps": 1000},
        "run": {"dir": run_dir},
        "seed": seed,
    }


def attack_rows(scale: float) -> list[dict[str, Any]]:
    return [
        {
            "attack": "random",
            "eps": 0.05,
            "regret_return": -0.1 * scale,
            "regret_cost_norm": 0.001 * scale,
            "mmd_p_value": 0.5,
        },
        {
            "attack": "bifurcation",
            "eps": 0.03,
            "regret_return": -2.0 * scale,
            "regret_cost_norm": 0.02 * scale,
            "mmd_p_value": 0.2,
        },
        {
            "attack": "bifurcation",
            "eps": 0.05,
            "regret_return": -5.0 * scale,
            "regret_cost_norm": 0.05 * scale,
            "mmd_p_value": 0.01,
        },
    ]


def make_run(
    path: Path,
    cfg: dict[str, Any] | None,
    ret: float,
    scale: float,
    curve: list[float] | None = None,
) -> Path:
    path.mkdir(parents=True)
    if cfg is not None:
        (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (path / "eval.json").write_text(
        json.dumps({"return_mean": ret, "return_std": 1.0, "kpis": {"cost_norm": ret / 100}})
    )
    if curve is not None:
        with (path / "metrics.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", "rollout/ep_rew_mean", "eval/return_mean"])
            for i, value in enumerate(curve):
                writer.writerow([100 * (i + 1), value - 5, ""])
                writer.writerow([100 * (i + 1), "", value])
    suite = path / "attacks" / "demo"
    suite.mkdir(parents=True)
    clean = {"attack": "clean", "eps": 0.0, "return": ret - 1, "cost_norm": 0.5}
    (suite / "results.json").write_text(json.dumps({"clean": clean, "rows": attack_rows(scale)}))
    (suite / "report.html").write_text("<html><body>run report</body></html>")
    return path


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root / "ppo_s0", config("ppo", 0, "runs/ppo_s0"), 50.0, 1.0, [10, 20, 30, 40])
    make_run(root / "ppo_s1", config("ppo", 1, "runs/ppo_s1"), 54.0, 2.0, [12, 24, 36, 48])
    make_run(root / "dppo", config("ppo", 0, "runs/dppo", bins=20), 40.0, 3.0, [5, 10, 15])
    make_run(root / "ppo_s0.old-20250101", config("ppo", 0, "x"), 0.0, 9.0)  # moved aside
    (root / "ppo_s0" / "checkpoints" / "step_1").mkdir(parents=True)
    bare = tmp_path / "bench" / "sac_victim"
    bare.mkdir(parents=True)
    (bare / "results.json").write_text(
        json.dumps({"clean": {"return": 58.0, "cost_norm": 0.74}, "rows": attack_rows(4.0)})
    )
    return tmp_path


def test_discover_finds_runs_and_skips_moved_aside_ones(runs):
    found = discover([runs / "runs", runs / "bench"])
    assert [p.name for p in found] == ["dppo", "ppo_s0", "ppo_s1", "sac_victim"]
    assert discover([runs / "runs" / "ppo_s0"]) == [runs / "runs" / "ppo_s0"]
    assert len(discover([runs / "runs", runs / "runs" / "ppo_s1"])) == 3  # no duplicates


def test_discover_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover([tmp_path / "missing"])
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no run directory in it"):
        discover([tmp_path / "empty"])


def test_read_run(runs):
    run = read_run(runs / "runs" / "ppo_s1")
    assert run.seed == 1 and run.steps == 1000
    assert run.clean["return"] == 54.0 and run.clean_source == "eval.json"
    assert list(run.attacks) == ["random@0.05", "bifurcation@0.03", "bifurcation@0.05"]
    assert run.attacks["bifurcation@0.05"]["regret_return"] == -10.0
    steps, values = run.curves["evaluation return"]
    assert list(steps) == [100, 200, 300, 400] and list(values) == [12, 24, 36, 48]
    assert list(run.curves["training episode return"][1]) == [7, 19, 31, 43]
    bare = read_run(runs / "bench" / "sac_victim")
    assert bare.config is None and bare.clean["return"] == 58.0
    assert bare.clean_source == "results.json" and bare.curves == {}


def test_seeds_group_into_one_controller(runs):
    controllers = group_runs([read_run(p) for p in discover([runs / "runs", runs / "bench"])])
    assert [c.label for c in controllers] == ["ppo 20 bins", "ppo", "sac_victim"]
    ppo = controllers[1]
    assert sorted(ppo.seeds) == [0, 1]
    s = spread([r.clean["return"] for r in ppo.runs])
    assert s.mean == 52.0 and s.std == 2.0 and s.n == 2


def test_same_label_different_configs_are_told_apart(tmp_path):
    a = make_run(tmp_path / "a", config("sac", 0, "a"), 1.0, 1.0)
    cfg = config("sac", 0, "b")
    cfg["agent"]["learning_rate"] = 0.001
    b = make_run(tmp_path / "b", cfg, 2.0, 1.0)
    labels = [c.label for c in group_runs([read_run(a), read_run(b)])]
    assert labels == ["sac [a]", "sac [b]"]


def test_agent_label():
    assert agent_label(None) is None
    assert agent_label({"agent": {"name": "mypkg.agents:Odice"}}) == "Odice"
    tuned = {"agent": {"name": "ppo", "init_from": "runs/x"}, "env": {"discrete_bins": 20}}
    assert agent_label(tuned) == "ppo 20 bins (fine-tuned)"


def test_strongest_settings():
    keys = ["random@0.01", "random@0.05", "pgd@0.03", "bif@0.05", "bif@0.01"]
    assert strongest_settings(keys) == ["random@0.05", "pgd@0.03", "bif@0.05"]


def test_comparison_json_and_page(runs):
    out = runs / "cmp"
    path = write_comparison([runs / "runs", runs / "bench"], out, title="Three <controllers>")
    assert path == out / "report.html"
    data = json.loads((out / "comparison.json").read_text())
    ppo = data["controllers"]["ppo"]
    assert ppo["clean"]["return"]["mean"] == 52.0 and ppo["clean"]["return"]["std"] == 2.0
    regret = ppo["regret"]["bifurcation@0.05"]["return"]
    assert regret["mean"] == -7.5 and regret["min"] == -10.0 and regret["max"] == -5.0
    assert data["controllers"]["sac_victim"]["regret"]["bifurcation@0.05"]["return"]["n"] == 1
    assert data["attacks"] == ["random@0.05", "bifurcation@0.03", "bifurcation@0.05"]
    text = path.read_text()
    assert "Three &lt;controllers&gt;" in text and "<script" not in text
    rows = table_rows(text)
    assert rows["runs"] == 4 and rows["clean"] == 3
    assert rows["regret-return"] == 3 and rows["regret-cost_norm"] == 3 and rows["stealth"] == 3
    assert text.count('<img src="data:image/png;base64,') == 2
    assert (out / "learning_curves.png").is_file() and (out / "regret_by_controller.png").is_file()
    assert 'href="../runs/ppo_s0/attacks/demo/report.html"' in text  # relative link
    assert "± 2" in text  # return 52 ± 2 over the two seeds


def test_comparison_findings(runs):
    controllers = group_runs([read_run(p) for p in discover([runs / "runs", runs / "bench"])])
    lines = comparison_findings(controllers)
    assert lines[0] == "Highest clean return: sac_victim (58)."
    assert lines[1] == (
        "Under random at eps 0.05: sac_victim loses the most return (-0.4), ppo the least (-0.15)."
    )
    assert lines[2] == (
        "Under bifurcation at eps 0.05: sac_victim loses the most return (-20), ppo the least "
        "(-7.5)."
    )


def test_findings_say_when_a_controller_loses_no_return():
    from rlkit.compare import _losers

    assert _losers([("mentor", 8e-14), ("ppo", 0.118)]) == (
        "no controller loses return (mentor +8e-14, ppo +0.118)"
    )
    assert _losers([("ppo", -9.2), ("mentor", 0.0)]) == (
        "ppo loses the most return (-9.2); mentor keeps it (0)"
    )
    assert _losers([("ppo", -9.2), ("mentor", 0.5)]) == (
        "ppo loses the most return (-9.2); mentor gains (+0.5)"
    )


def test_cli_report(runs, capsys):
    out = runs / "cli_out"
    assert main(["report", str(runs / "runs"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'} (2 controllers, 3 runs" in printed
    assert "- Under bifurcation at eps 0.05: ppo 20 bins loses the most return (-15)" in printed
    assert main(["report", str(runs / "nothing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (runs / "empty").mkdir()
    assert main(["report", str(runs / "empty"), "--out", str(out)]) == 2
    assert "no run directory in it" in capsys.readouterr().err


def test_learning_curve_band_uses_the_overlap(runs):
    from rlkit.compare import Controller, plot_learning_curves

    a, b = read_run(runs / "runs" / "ppo_s0"), read_run(runs / "runs" / "ppo_s1")
    png = plot_learning_curves([Controller("ppo", [a, b])])
    assert png is not None and png.startswith(b"\x89PNG")
    assert (
        plot_learning_curves([Controller("bare", [read_run(runs / "bench" / "sac_victim")])])
        is None
    )


# ----------------------------------------------------------------------------- in Chromium
@pytest.fixture
def rendered(runs, tmp_path):
    if find_chromium() is None:
        pytest.skip(
            "chromium is not installed (make setup installs Debian's chromium package; or "
            "apt-get install chromium): the page is not checked in a browser"
        )
    path = write_comparison([runs / "runs", runs / "bench"], runs / "cmp")
    try:
        page = layout(path)
        shot = screenshot(path, tmp_path / "compare.png", height=page.height)
    except BrowserError as err:
        pytest.skip(f"chromium cannot render here: {err}")
    return page, read_png(shot)


def test_browser_renders_the_comparison(rendered):
    page, pixels = rendered
    tables = {t["id"]: t for t in page.tables}
    assert tables["runs"]["rows"] == 4 and tables["clean"]["rows"] == 3
    assert tables["regret-return"]["rows"] == 3 and tables["stealth"]["rows"] == 3
    assert table_rows(page.dom)["clean"] == 3
    for name in ("runs", "clean", "regret-return", "regret-cost_norm", "stealth"):
        assert tables[name]["visible"] and ink(pixels, tables[name]) > 0.02, name
    assert len(page.images) == 2
    for image in page.images:
        assert image["complete"] and image["visible"] and image["natural_w"] > 300
        assert ink(pixels, image) > 0.02, image["alt"]
    assert np.mean(pixels[:, -20:].min(axis=2) < 235) < 0.001  # the padding stays blank


def test_different_episode_counts_are_flagged(tmp_path):
    a = make_run(tmp_path / "a", config("sac", 0, "a"), 1.0, 1.0)
    b = make_run(tmp_path / "b", config("td3", 0, "b"), 2.0, 1.0)
    for path, episodes in ((a, 20), (b, 40)):
        data = json.loads((path / "eval.json").read_text())
        (path / "eval.json").write_text(json.dumps({**data, "episodes": episodes}))
    controllers = group_runs([read_run(a), read_run(b)])
    assert [r.clean_episodes for c in controllers for r in c.runs] == [20, 40]
    assert comparison_findings(controllers)[0] == (
        "The runs were evaluated on different numbers of episodes (20, 40): compare their "
        "numbers with care (see the runs table)."
    )
    html = (write_comparison([a, b], tmp_path / "out")).read_text()
    assert "<th>clean episodes</th>" in html and '<td class="num" title="40.0">40</td>' in html


def test_robust_protocol_worst_case_and_median_agent(runs):
    from rlkit.compare import median_agent, robust_table, worst_returns

    controllers = group_runs([read_run(p) for p in discover([runs / "runs"])])
    ppo = next(c for c in controllers if c.label == "ppo")
    by_name = {r.name: r for r in ppo.runs}
    # clean return of the attack evaluation (ret - 1) plus the lowest regret at each budget
    assert worst_returns(by_name["ppo_s0"]) == {0.03: 49.0 - 2.0, 0.05: 49.0 - 5.0}
    assert worst_returns(by_name["ppo_s1"]) == {0.03: 53.0 - 4.0, 0.05: 53.0 - 10.0}
    # two runs: the upper of the two worst cases (43 and 44) is the median agent
    assert median_agent(ppo, 0.05).name == "ppo_s0"
    html = robust_table(controllers)
    assert "worst@0.05 median" in html and "ppo_s0" in html
    page, _ = build_page(controllers, runs, "t")
    assert "Robust-RL protocol" in page
