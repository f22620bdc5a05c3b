"""The table-building logic of benchmarks/paper_reproduction.py, on tiny made-up author files."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.paper_reproduction import (
    KPIS,
    VICTIMS,
    Victim,
    compare_victim,
    load_config_specs,
    markdown_report,
    read_authors,
    stealth_plan,
)
from rlkit.config import AttackSpec

FOLDER = "results"
VICTIM = Victim(
    key="sac",
    title="toy SAC",
    folder=FOLDER,
    env_config="configs/citylearn/authors_sac.yaml",
    attack_config="configs/attacks/paper_sac.yaml",
    action_metric="mae",
    action_files=("MAEs.csv",),
    diff_mmd_files=("diff.csv",),
    aliases={"bif_5%": ("bif_05",)},
    first_diff={"bif_5%": 0.97},
)
CLEAN = {
    "cost_total": 0.8,
    "daily_peak_average": 0.9,
    "electricity_consumption_total": 0.88,
    "ramping_average": 1.09,
    "zero_net_energy": 1.1,
}


def _write(folder: Path) -> None:
    folder.mkdir()
    kpis = ["cost_function,baseline,bif_5%,pgd_col"]
    attacked = {
        "cost_total": 1.4,
        "daily_peak_average": 1.9,
        "electricity_consumption_total": 1.3,
        "ramping_average": 2.0,
        "zero_net_energy": 1.2,
    }
    for k, v in CLEAN.items():
        kpis.append(f"{k},{v},{attacked[k]},{v + 0.2}")
    (folder / "KPIs.csv").write_text("\n".join(kpis) + "\n")
    # pandas leftovers and padded cells, as in their files
    (folder / "MAEs.csv").write_text(" ,Unnamed: 0 , bif_5% ,pgd_col\n0 , 0 , 0.48 ,0.27\n")
    (folder / "MMDs.csv").write_text(",MMD,p_value\nbif_05,0.0005,0.0001\nbif_05,0.1,0.5\n")
    (folder / "diff.csv").write_text(",MMD,p_value\nbif_05,0.003,0.0\n")


def _row(label: str, regret: float, mae: float, **extra: float) -> dict:
    row = {"attack": label, "eps": 0.05, "action_mae": mae, "linf_max": 0.05, **extra}
    for k in CLEAN:
        row[k] = CLEAN[k] + regret
        row[f"regret_{k}"] = regret
    return row


def test_read_compare_and_render(tmp_path: Path) -> None:
    _write(tmp_path / FOLDER)
    theirs = read_authors(tmp_path, VICTIM)
    assert theirs.kpis["baseline"]["cost_total"] == 0.8
    assert theirs.action == {"bif_5%": 0.48, "pgd_col": 0.27}
    assert theirs.mmd == {"bif_05": 0.0001}  # first occurrence wins
    specs = [
        AttackSpec(name="bifurcation", label="bif_5%", eps=[0.05]),
        AttackSpec(name="pgd", label="pgd_col", eps=[0.05]),
        AttackSpec(name="bifurcation", label="not_theirs", eps=[0.03]),
    ]
    assert stealth_plan(specs[0], theirs, VICTIM, "reported") == (True, True)
    assert stealth_plan(specs[1], theirs, VICTIM, "reported") == (False, False)
    assert stealth_plan(specs[1], theirs, VICTIM, "all") == (True, True)
    clean_row = {**CLEAN, "cost_total": 0.80005}
    bif = {k: 0.0 for k in CLEAN}
    bif.update(
        cost_total=0.6,
        daily_peak_average=1.0,
        electricity_consumption_total=0.42,
        ramping_average=0.91,
        zero_net_energy=0.1,
    )
    rows = {
        "bif_5%": {
            **_row(
                "bif_5%", 0.0, 0.4786, mmd_p_value=0.0, mmd_diff_p_value=0.0, first_diff_within=0.95
            ),
            **{f"regret_{k}": v + 0.0002 for k, v in bif.items()},
        },
        "pgd_col": _row("pgd_col", 0.25, 0.3),
        "not_theirs": _row("not_theirs", 0.1, 0.1),
    }
    result = compare_victim(theirs, VICTIM, specs, clean_row, rows)
    clean = result["clean"]
    assert clean["met"] and clean["kpis"]["cost_total"]["diff"] == pytest.approx(5e-5)
    first, second, third = result["columns"]
    assert first["regret"]["cost_total"]["theirs"] == pytest.approx(0.6)
    assert first["regret"]["cost_total"]["diff"] == pytest.approx(0.0002)
    assert first["met"] is True and first["target"] == 1e-3
    assert first["mae"] == {"theirs": 0.48, "rlkit": 0.4786, "diff": pytest.approx(-0.0014)}
    assert first["mmd_p"]["theirs"] == 0.0001 and first["diff_mmd_p"]["theirs"] == 0.0
    assert first["first_diff_within"]["theirs"] == 0.97
    assert second["target"] is None and second["met"] is None  # pgd carries no target
    assert second["regret"]["ramping_average"]["diff"] == pytest.approx(0.05)
    assert third["in_their_kpis"] is False and third["regret"]["cost_total"]["theirs"] is None
    assert result["targets_met"] == {"clean": True, "deterministic_columns": "1/1", "missed": []}
    # a miss is reported
    rows["bif_5%"]["regret_ramping_average"] += 0.01
    missed = compare_victim(theirs, VICTIM, specs, clean_row, rows)
    assert missed["targets_met"]["missed"] == ["bif_5%"]
    text = markdown_report({"sac": result})
    assert "`bif_5%`" in text and "met" in text and "not in their KPIs.csv" in text
    assert all(k in result["columns"][0]["regret"] for k in KPIS)


def test_missing_folder_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="authors' repository"):
        read_authors(tmp_path, VICTIM)


@pytest.mark.parametrize("key", sorted(VICTIMS))
def test_configs_load_with_their_labels(key: str) -> None:
    specs = load_config_specs(VICTIMS[key])
    labels = [s.key for s in specs]
    assert len(labels) == len(set(labels)) >= 6
    assert any(s.name == "bifurcation" and not s.mask and s.eps == [0.05] for s in specs)
