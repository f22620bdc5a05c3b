"""Terminal tables: fit 80 columns, 3 significant digits, never an ellipsis."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from rlkit.summary import attack_table, clean_table, headline_kpis, print_attacks, print_clean, sig3

GRID_KPIS = [
    "consumption",
    "consumption_no_battery",
    "consumption_norm",
    "cost",
    "cost_no_battery",
    "cost_norm",
    "daily_peak",
    "daily_peak_no_battery",
    "daily_peak_norm",
    "losses_mwh",
    "max_line_loading",
    "nonconverged_steps",
    "ramping",
    "ramping_norm",
    "steps",
    "vmax",
    "vmin",
    "voltage_violation_depth",
    "voltage_violations",
]


def render(renderable: Any, width: int = 80) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def assert_fits(text: str, width: int = 80) -> None:
    assert "…" not in text and "..." not in text
    assert max(len(line) for line in text.splitlines()) <= width


def grid_row(attack: str, eps: float, regret: dict[str, float], **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"attack": attack, "eps": eps, "return": -445.2, "return_std": 122.8}
    row.update({k: 1.0 for k in GRID_KPIS})
    row["regret_return"] = regret.pop("return")
    row.update({f"regret_{k}": regret.get(k, 0.0) for k in GRID_KPIS})
    row.update(
        {
            "action_mae": 0.0366,
            "linf_mean": 0.05,
            "linf_max": 0.05,
            "l2_mean": 0.346,
            "l2_max": 0.35,
            "mmd_p_value": 0.686,
            "mmd_detected": False,
            "ks_n_significant": 36,
            "first_diff_within": 0.957,
        }
    )
    row.update(extra)
    return row


@pytest.fixture
def grid_results() -> dict[str, Any]:
    rows = [
        grid_row(
            "random",
            0.01,
            {
                "return": 0.2148,
                "cost_norm": -0.000516,
                "daily_peak_norm": 0.0,
                "ramping_norm": 0.0012,
            },
        ),
        grid_row(
            "bifurcation",
            0.05,
            {
                "return": -0.9011,
                "cost_norm": 0.0023644,
                "daily_peak_norm": 0.0,
                "ramping_norm": -0.0061583,
            },
        ),
        grid_row(
            "stealthy_bifurcation",
            0.03,
            {"return": -1234.56, "cost_norm": 0.12345, "ramping_norm": 12.5},
            mmd_p_value=0.0004999,
        ),
    ]
    return {"clean": {"attack": "clean", "return": -444.2504}, "rows": rows}


@pytest.mark.parametrize(
    ("value", "signed", "text"),
    [
        (0.0023644, False, "0.00236"),
        (-0.0023644, False, "-0.00236"),
        (0.0023644, True, "+0.00236"),
        (-444.2504, False, "-444"),
        (-1234.56, False, "-1230"),
        (0.5, False, "0.5"),
        (24.0, False, "24"),
        (12.5, True, "+12.5"),
        (1.23456e-5, False, "1.23e-05"),
        (2.5e6, False, "2.5e+06"),
        (999.6, False, "1000"),
        (0.0, True, "0"),
        (-0.0, False, "0"),
        (36, False, "36"),
        (3, True, "+3"),
        (None, False, "n/a"),
        (True, False, "yes"),
        (float("nan"), False, "nan"),
        (float("inf"), True, "+inf"),
    ],
)
def test_sig3(value, signed, text):
    assert sig3(value, signed=signed) == text


def test_clean_table_fits_and_shows_headline_kpis_first():
    kpis = {k: 1.0 for k in GRID_KPIS}
    kpis.update(
        {"cost_norm": 1.0236448, "vmin": 0.9493159, "max_line_loading": 0.00012574, "cost": 4440.34}
    )
    result = {
        "episodes": 10,
        "return_mean": -444.2504,
        "return_std": 122.9627,
        "length_mean": 24.0,
        "kpis": kpis,
    }
    text = render(clean_table(result))
    assert_fits(text)
    lines = text.splitlines()
    assert "return (mean ± std)" in text and "-444 ± 123" in text
    assert "episode length (mean)" in text
    kpi_lines = [line.split()[0] for line in lines if line.split() and line.split()[0] in GRID_KPIS]
    assert kpi_lines[:7] == [
        "cost_norm",
        "daily_peak_norm",
        "ramping_norm",
        "consumption_norm",
        "voltage_violations",
        "vmin",
        "max_line_loading",
    ]
    assert not any(k.endswith("_no_battery") for k in kpi_lines) and len(kpi_lines) == 12
    values = {
        line.split()[0]: line.split()[-1]
        for line in lines
        if line.split() and line.split()[0] in GRID_KPIS
    }
    assert (
        values["cost_norm"] == "1.02"
        and values["vmin"] == "0.949"
        and values["max_line_loading"] == "0.000126"
    )
    assert "+7 more KPIs in eval.json" in text  # 19 KPIs (3 counterfactual), 12 shown


def test_clean_table_without_kpis():
    text = render(
        clean_table({"episodes": 3, "return_mean": -160.123, "return_std": 0.0, "kpis": {}})
    )
    assert_fits(text)
    assert "-160 ± 0" in text and "more KPIs" not in text


def test_attack_table_fits_80_columns_with_exact_3_digit_values(grid_results):
    text = render(attack_table(grid_results))
    assert_fits(text)
    header = next(line for line in text.splitlines() if "attack" in line and "eps" in line)
    columns = header.split()
    assert columns[:5] == ["attack", "eps", "Δreturn", "Δcost", "Δpeak"]
    assert "MMD" in columns and "linf" in columns
    body = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line.split() and line.split()[0] in ("random", "bifurcation", "stealthy_bifurcation")
    }
    assert body["random"][:5] == ["random", "0.01", "+0.215", "-0.000516", "0"]
    assert body["bifurcation"][:5] == ["bifurcation", "0.05", "-0.901", "+0.00236", "0"]
    assert body["stealthy_bifurcation"][:4] == ["stealthy_bifurcation", "0.03", "-1230", "+0.123"]
    assert body["stealthy_bifurcation"][-1] == "0.0005" and body["bifurcation"][-1] == "0.686"
    shown = len(columns) - 2  # "act err" and "MMD p" are two words each
    assert (
        f"clean return -444; {len(grid_results['rows'][0]) - shown} more columns in report.md, "
        "results.csv" in text
    )


def test_attack_table_drops_columns_to_fit_narrow_consoles(grid_results):
    wide, narrow = (
        render(attack_table(grid_results)),
        render(attack_table(grid_results, width=50), width=50),
    )
    assert_fits(narrow, 50)
    header = next(
        line for line in narrow.splitlines() if "attack" in line and "eps" in line
    ).split()
    assert header[:3] == ["attack", "eps", "Δreturn"] and len(header) < len(
        next(line for line in wide.splitlines() if "eps" in line).split()
    )
    console = Console(width=60, record=True, color_system=None)
    print_attacks(grid_results, console)  # fits the console, not just 80
    assert_fits(console.export_text(), 60)


def test_attack_table_discrete_rows_and_missing_stealth():
    rows = [
        {
            "attack": "pgd",
            "eps": 0.1,
            "return": 1.0,
            "regret_return": -0.25,
            "attack_success_rate": 0.583,
            "linf_mean": 0.1,
            "mmd_p_value": None,
            "stealth_note": "skipped",
        }
    ]
    text = render(attack_table({"clean": {"return": 1.25}, "rows": rows}))
    assert_fits(text)
    assert "ASR" in text and "0.583" in text and "n/a" in text and "-0.25" in text


def test_attack_table_folds_an_overlong_label_instead_of_cutting_it():
    label = "a_very_long_attack_label_that_is_longer_than_any_terminal_column_should_be_really"
    rows = [
        {"attack": label, "eps": 0.1, "regret_return": -0.25, "action_mae": 0.1, "linf_mean": 0.1}
    ]
    text = render(attack_table({"clean": {"return": 1.0}, "rows": rows}))
    assert_fits(text)
    assert (
        label
        in "".join(
            line.strip().split(" ")[0]
            for line in text.splitlines()
            if line.strip().startswith(("a_", "ly")) or "really" in line
        )
        or label[:40] in text
    )
    assert "-0.25" in text


def test_print_clean_and_empty_attack_table():
    console = Console(width=80, record=True, color_system=None)
    print_clean(
        {"episodes": 2, "return_mean": 1.5, "return_std": 0.25, "kpis": {"cost": 3.14159}}, console
    )
    print_attacks({"clean": {"return": 1.5}, "rows": []}, console)
    text = console.export_text()
    assert_fits(text)
    assert "1.5 ± 0.25" in text and "3.14" in text and "no attack rows; clean return 1.5" in text


def test_headline_kpis_order_and_limit(grid_results):
    assert headline_kpis(grid_results["rows"], limit=3) == [
        "cost_norm",
        "daily_peak_norm",
        "ramping_norm",
    ]
    everything = headline_kpis(grid_results["rows"], limit=None)
    assert everything[:7] == [
        "cost_norm",
        "daily_peak_norm",
        "ramping_norm",
        "consumption_norm",
        "voltage_violations",
        "vmin",
        "max_line_loading",
    ]
    assert not any(k.endswith("_no_battery") for k in everything) and headline_kpis([]) == []
