"""The plain-language lines of an attack evaluation, from rows whose numbers are known."""

from __future__ import annotations

import pytest

from rlkit.attacks.findings import (
    attack_line,
    change_phrase,
    comparison_line,
    detection_phrase,
    findings,
    largest_shared_eps,
    null_line,
    p_text,
    primary_kpi,
    undetected_line,
)

CLEAN = {"attack": "clean", "eps": 0.0, "return": 50.0, "cost_norm": 0.8, "daily_peak_norm": 1.0}


def row(attack: str, eps: float, ret: float, cost: float, peak: float, p: float | None) -> dict:
    return {
        "attack": attack,
        "eps": eps,
        "regret_return": ret,
        "regret_cost_norm": cost,
        "regret_daily_peak_norm": peak,
        "action_mae": 0.25,
        "mmd_p_value": p,
        "mmd_diff_p_value": 0.5 if p is not None else None,
        "first_diff_within": 0.9,
    }


ROWS = [
    row("random", 0.05, -0.5, 0.004, 0.0, 0.6),
    row("pgd", 0.05, -10.0, 0.08, 0.2, 0.01),
    row("bifurcation", 0.03, -8.0, 0.06, 0.01, 0.2),
    row("bifurcation", 0.05, -20.0, 0.16, 0.05, 0.0),
    row("stealthy", 0.03, -6.0, 0.04, 0.0, 0.3),
]
STEALTH = {
    f"{r['attack']}@{r['eps']}": {"alpha": 0.05, "mmd": {"permutations": 1000}} for r in ROWS
}


def test_primary_kpi_is_the_cost():
    assert primary_kpi(ROWS) == "cost_norm"
    assert primary_kpi([{"regret_return": 1.0, "regret_vmin": 0.1}]) == "vmin"
    assert primary_kpi([{"regret_return": 1.0}]) is None


def test_change_phrase_relative_and_absolute():
    assert change_phrase("cost", 0.16, 0.8) == "raises cost by 20% (0.8 -> 0.96)"
    assert change_phrase("the return", -20.0, 50.0) == "lowers the return by 20 (40%)"
    assert (
        change_phrase("voltage violations", 2.5, 0.0) == "raises voltage violations by 2.5 (from 0)"
    )
    assert change_phrase("cost", 0.0, 0.8) == "leaves cost unchanged"
    assert change_phrase("the return", 1.99e-13, 6.48) == "leaves the return unchanged"
    assert change_phrase("the return", 1e-4, 6.48).startswith("raises the return by 0.0001")


def test_no_comparison_of_rounding_noise():
    rows = [
        {"attack": name, "eps": 0.05, "regret_return": value}
        for name, value in (("random", 1.99e-13), ("pgd", 1.99e-13), ("bifurcation", 8.4e-8))
    ]
    line = comparison_line(rows, {"return": 6.48}, None)
    assert line is not None and "no attack changes the return by a millionth" in line
    rows[2]["regret_return"] = -0.5  # one real effect: the usual comparison
    assert "bifurcation does the most damage" in (
        comparison_line(rows, {"return": 6.48}, None) or ""
    )


def test_p_text_reads_zero_as_below_one_over_permutations():
    assert p_text(0.0, 1000) == "p < 0.001"
    assert p_text(0.0) == "p = 0"
    assert p_text(0.179, 1000) == "p = 0.179"


def test_attack_line_says_effect_and_verdict():
    line = attack_line(ROWS[3], CLEAN, "cost_norm", STEALTH)
    assert line == (
        "bifurcation at eps 0.05: raises cost by 20% (0.8 -> 0.96) and lowers the return by 20 "
        "(40%); moves the action by 0.25 on average; detected by MMD at alpha 0.05 (p < 0.001); "
        "the first-difference MMD does not detect it (p = 0.5); step-to-step changes stay within "
        "the clean range on 90% of steps."
    )
    assert "not detected by MMD at alpha 0.05 (p = 0.3)" in attack_line(
        ROWS[4], CLEAN, "cost_norm", STEALTH
    )


def test_detection_phrase_uses_alpha():
    assert detection_phrase(ROWS[2], alpha=0.05).startswith("not detected by MMD at alpha 0.05")
    assert detection_phrase(ROWS[2], alpha=0.25).startswith("detected by MMD at alpha 0.25")
    assert detection_phrase({"attack": "a", "eps": 0.1}) == "stealth not measured"


def test_comparison_at_the_largest_shared_budget():
    assert largest_shared_eps(ROWS) == 0.05
    line = comparison_line(ROWS, CLEAN, "cost_norm")
    assert line is not None
    assert line.startswith(
        "At the same budget (eps 0.05) bifurcation does the most damage: lowers the return by 20 "
        "(40%), 2x as much as pgd (10) and 40x random (0.5); it raises cost by 20%, 2x as much as "
        "pgd (10%) and 40x random (0.5%)"
    )
    # pgd raises the peak most: the line says so instead of hiding it
    assert line.endswith("the largest rise in cost comes from bifurcation, in daily peak from pgd.")
    assert comparison_line(ROWS[2:3], CLEAN, "cost_norm") is None  # one attack: no comparison


def test_undetected_settings_most_damaging_first():
    line = undetected_line(ROWS, CLEAN, "cost_norm", STEALTH)
    assert line == (
        "Not detected by MMD at alpha 0.05: 3 of 5 settings, the most damaging first: "
        "bifurcation eps 0.03 (cost +7.5%, return -8, p = 0.2); stealthy eps 0.03 (cost +5%, "
        "return -6, p = 0.3); random eps 0.05 (cost +0.5%, return -0.5, p = 0.6)."
    )
    caught = [dict(r, mmd_p_value=0.0) for r in ROWS]
    assert undetected_line(caught, CLEAN, "cost_norm") == (
        "The MMD test at alpha 0.05 detects every attack setting."
    )


def test_null_line_reports_the_false_alarm_rate():
    meta = {"mmd_null": {"split": "hours", "mean_p": 0.62, "p_values": [0.01, 0.5, 0.7, 0.9]}}
    assert null_line(meta) == (
        "Calibration: the MMD test on the clean episodes split in two (hours split, 4 splits, "
        "no attack) gives mean p 0.62 and p < 0.05 in 25% of splits (a calibrated test: about "
        "0.5 and 5%)."
    )
    assert null_line({}) is None


def test_findings_order_and_count():
    lines = findings({"clean": CLEAN, "rows": ROWS, "meta": {}, "stealth": STEALTH})
    # comparison, one line per attack (4 attacks), undetected
    assert len(lines) == 6
    assert lines[0].startswith("At the same budget")
    assert [line.split(" at eps")[0] for line in lines[1:5]] == [
        "random",
        "pgd",
        "bifurcation",
        "stealthy",
    ]
    assert lines[3].startswith("bifurcation at eps 0.05")  # each attack at its largest budget
    assert lines[5].startswith("Not detected by MMD")
    assert findings({"clean": CLEAN, "rows": []}) == []


@pytest.mark.parametrize("p", [None])
def test_rows_without_stealth(p):
    rows = [row("a", 0.1, -1.0, 0.01, 0.0, p), row("b", 0.1, -2.0, 0.02, 0.0, p)]
    lines = findings({"clean": CLEAN, "rows": rows})
    assert lines[1].endswith("stealth not measured.")
    assert len(lines) == 3  # no undetected line without p-values


def test_summary_is_the_comparison_and_the_undetected_settings():
    from rlkit.attacks.findings import summary

    results = {"clean": CLEAN, "rows": ROWS, "meta": {}, "stealth": STEALTH}
    lines = summary(results)
    assert lines == [findings(results)[0], findings(results)[5]]


def test_comparison_names_an_attack_that_helps_apart():
    rows = [
        row("bifurcation", 0.05, -20.0, 0.16, 0.05, 0.0),
        row("pgd", 0.05, -10.0, 0.08, 0.2, 0.01),
        row("random", 0.05, 0.3, -0.004, 0.0, 0.6),
    ]
    line = comparison_line(rows, CLEAN, "cost_norm")
    assert line is not None
    assert (
        "lowers the return by 20 (40%), 2x as much as pgd (10), while random (+0.3) moves it "
        "the other way;" in line
    )
    assert (
        "it raises cost by 20%, 2x as much as pgd (10%), while random (-0.004) moves it the "
        "other way;" in line
    )


def test_comparison_says_which_attacks_leave_a_value_unchanged():
    rows = [
        row("bifurcation", 0.05, -20.0, 0.0, 0.05, 0.0),
        row("pgd", 0.05, -10.0, 0.0, 0.2, 0.01),
        row("random", 0.05, 0.0, 0.0, 0.0, 0.6),
    ]
    line = comparison_line(rows, CLEAN, "cost_norm")
    assert line is not None
    assert "2x as much as pgd (10), while random leaves it unchanged;" in line
    assert "; no attack changes cost" in line and "other way" not in line


def test_worst_cases_give_natural_and_the_lowest_return_per_budget() -> None:
    from rlkit.attacks.findings import robust_line, worst_cases

    results = {
        "clean": {"return": 60.0},
        "rows": [
            {"attack": "random", "eps": 0.05, "return": 59.0},
            {"attack": "pgd", "eps": 0.05, "return": 45.0},
            {"attack": "bifurcation", "eps": 0.05, "return": 31.5},
            {"attack": "pgd", "eps": 0.03, "return": 50.0},
        ],
    }
    cases = worst_cases(results)
    assert [(c["eps"], c["worst"], c["attack"], c["attacks"]) for c in cases] == [
        (0.03, 50.0, "pgd", 1),
        (0.05, 31.5, "bifurcation", 3),
    ]
    assert all(c["natural"] == 60.0 for c in cases)
    line = robust_line(results)
    assert line is not None and "natural return 60" in line
    assert "3 attack(s) at eps 0.05: 31.5 (bifurcation)" in line
    assert robust_line({"clean": {}, "rows": []}) is None
