"""What an attack evaluation shows, in plain words: one line per attack and a few verdicts.

From the output of :func:`rlkit.attacks.evaluation.evaluate_attacks` (or the ``clean`` / ``rows``
/ ``meta`` / ``stealth`` entries of ``results.json``):

* :func:`attack_line`: "bifurcation at eps 0.05: raises cost by 24% (0.770 -> 0.956) and lowers
  the return by 27.9 (54%); detected by MMD at alpha 0.05 (p = 0.002); ...";
* :func:`comparison_line`: which attack does the most damage at the largest shared budget, and
  by how much more than the others;
* :func:`undetected_line`: the most damaging settings the MMD test does not detect;
* :func:`null_line`: how the MMD test behaves on clean data split in two (its calibration);
* :func:`findings`: all of them, in that order; :func:`summary`: the comparison and the
  undetected settings only (the terminal's short version).

The KPI a line speaks of is :func:`primary_kpi` (the first cost KPI, else the first headline
KPI); changes are given relative to the clean value when it is not zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rlkit.summary import headline_kpis, sig3

#: Readable names of common KPIs (anything else: underscores to spaces, ``_norm`` dropped).
KPI_NAMES = {
    "cost_norm": "cost",
    "daily_peak_norm": "daily peak",
    "ramping_norm": "ramping",
    "consumption_norm": "consumption",
    "voltage_violations": "voltage violations",
    "cost_total": "cost",
    "daily_peak_average": "daily peak",
    "ramping_average": "ramping",
    "electricity_consumption_total": "consumption",
}
DEFAULT_ALPHA = 0.05

Row = Mapping[str, Any]


def kpi_name(key: str) -> str:
    """A KPI's readable name (``cost_norm`` -> ``cost``).

    :param key: the KPI key.
    """
    return KPI_NAMES.get(key, key.removesuffix("_norm").replace("_", " "))


def primary_kpi(rows: Sequence[Row]) -> str | None:
    """The KPI the plain-language lines speak of: the first headline KPI whose name says cost,
    else the first headline KPI, else None (only the return).

    :param rows: attack rows (``regret_*`` keys).
    """
    keys = headline_kpis(rows, limit=None)
    costs = [k for k in keys if "cost" in k]
    chosen = costs or keys
    return chosen[0] if chosen else None


def as_number(value: Any) -> float | None:
    """``float(value)``, or None for None, booleans and what is not a number.

    :param value: anything read from a results file.
    """
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


#: a change below this fraction of max(1, |clean value|) is not reported as an effect (float32
#: rounding over an episode, or a saturated policy's actions moving by 1e-9)
NEGLIGIBLE = 1e-6


def negligible(delta: float, base: float | None) -> bool:
    """Whether a regret ``delta`` is too small to report: ``|delta| <= NEGLIGIBLE * max(1,
    |base|)``.

    :param delta: attacked - clean.
    :param base: the clean value (None: unknown).
    """
    return abs(delta) <= NEGLIGIBLE * max(1.0, abs(base or 0.0))


def change_phrase(name: str, regret: Any, clean: Any) -> str:
    """``raises cost by 24% (0.77 -> 0.956)`` or ``lowers the return by 27.9 (54%)``.

    :param name: what changes (readable).
    :param regret: attacked - clean.
    :param clean: the clean value (for the relative change).
    """
    delta, base = as_number(regret), as_number(clean)
    if delta is None:
        return f"leaves {name} unknown"
    if negligible(delta, base):
        return f"leaves {name} unchanged"
    verb = "raises" if delta > 0 else "lowers"
    if base is None or base == 0.0:
        return f"{verb} {name} by {sig3(abs(delta))}" + (
            "" if base is None else f" (from {sig3(base)})"
        )
    percent = 100.0 * abs(delta) / abs(base)
    if name == "the return":
        return f"{verb} {name} by {sig3(abs(delta))} ({sig3(percent)}%)"
    return f"{verb} {name} by {sig3(percent)}% ({sig3(base)} -> {sig3(base + delta)})"


def _report(stealth: Mapping[str, Any] | None, row: Row) -> Mapping[str, Any]:
    return (stealth or {}).get(f"{row['attack']}@{row['eps']}") or {}


def _alpha(stealth: Mapping[str, Any] | None, row: Row) -> float:
    return float(_report(stealth, row).get("alpha", DEFAULT_ALPHA))


def permutations_of(stealth: Mapping[str, Any] | None, row: Row) -> int | None:
    """Permutations of the MMD test of ``row``'s setting, from its stealth report (None: unknown).

    :param stealth: the per-setting stealth reports (``"attack@eps"`` keys).
    :param row: the attack row.
    """
    mmd = _report(stealth, row).get("mmd") or {}
    return int(mmd["permutations"]) if mmd.get("permutations") else None


def p_text(p: Any, permutations: int | None = None) -> str:
    """``p = 0.18``; a permutation p-value of 0 as ``p < 0.001`` (one over the permutations).

    :param p: the p-value.
    :param permutations: permutations of the test, when known.
    """
    value = as_number(p)
    if value == 0.0 and permutations:
        return f"p < {1 / permutations:.2g}"
    return f"p = {sig3(value)}"


def detection_phrase(
    row: Row, alpha: float = DEFAULT_ALPHA, permutations: int | None = None
) -> str:
    """``not detected by MMD at alpha 0.05 (p = 0.18)``; the first-difference MMD and the share
    of steps whose changes stay within the clean range are added when present.

    :param row: an attack row (``mmd_p_value``, ``mmd_diff_p_value``, ``first_diff_within``).
    :param alpha: significance level.
    :param permutations: permutations of the MMD tests (a p-value of 0 reads ``p < 1/B``).
    """
    p = as_number(row.get("mmd_p_value"))
    if p is None:
        return "stealth not measured"
    verdict = "detected" if p < alpha else "not detected"
    parts = [f"{verdict} by MMD at alpha {alpha:g} ({p_text(p, permutations)})"]
    p_diff = as_number(row.get("mmd_diff_p_value"))
    if p_diff is not None:
        diff_verdict = "detects it" if p_diff < alpha else "does not detect it"
        parts.append(f"the first-difference MMD {diff_verdict} ({p_text(p_diff, permutations)})")
    within = as_number(row.get("first_diff_within"))
    if within is not None:
        parts.append(f"step-to-step changes stay within the clean range on {within:.0%} of steps")
    return "; ".join(parts)


def damage_phrase(row: Row) -> str | None:
    """How much the actions moved: ``changes the action on 81% of steps`` (discrete) or
    ``moves the action by 0.43 on average`` (continuous); None when neither is known.

    :param row: an attack row.
    """
    asr = as_number(row.get("attack_success_rate"))
    if asr is not None:
        return f"changes the action on {asr:.0%} of steps"
    mae = as_number(row.get("action_mae"))
    if mae is not None:
        return f"moves the action by {sig3(mae)} on average"
    return None


def attack_line(
    row: Row, clean: Row, kpi: str | None, stealth: Mapping[str, Any] | None = None
) -> str:
    """One attack setting in plain words: its effect on ``kpi`` and on the return, how much it
    moves the actions, and whether the stealth tests detect it.

    :param row: the attack row.
    :param clean: the clean row (for relative changes).
    :param kpi: the KPI to speak of (:func:`primary_kpi`), or None.
    :param stealth: the per-setting stealth reports (for their ``alpha``).
    """
    effects = []
    if kpi is not None:
        effects.append(change_phrase(kpi_name(kpi), row.get(f"regret_{kpi}"), clean.get(kpi)))
    effects.append(change_phrase("the return", row.get("regret_return"), clean.get("return")))
    damage = damage_phrase(row)
    text = f"{row['attack']} at eps {row['eps']:g}: " + " and ".join(effects)
    if damage:
        text += f"; {damage}"
    phrase = detection_phrase(row, _alpha(stealth, row), permutations_of(stealth, row))
    return text + "; " + phrase + "."


def largest_shared_eps(rows: Sequence[Row]) -> float | None:
    """The largest budget at which at least two attacks were run (None: no such budget).

    :param rows: attack rows.
    """
    counts: dict[float, set[str]] = {}
    for r in rows:
        counts.setdefault(float(r["eps"]), set()).add(str(r["attack"]))
    shared = [e for e, names in counts.items() if len(names) >= 2]
    return max(shared) if shared else None


def _and(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _times(a: float | None, b: float | None) -> str:
    """``2.1x`` when ``a`` and ``b`` have the same sign, else ``""``."""
    if a is None or b is None or b == 0.0 or (a > 0) != (b > 0):
        return ""
    return f"{sig3(a / b)}x"


def _versus(best: float | None, others: list[tuple[str, float | None]], percent_of: Any) -> str:
    """``, 2.1x as much as pgd (13.2) and 71x random (0.391)``; an attack that moves the value
    the other way is named apart (``, while random moves it the other way (+0.3)``)."""
    base = as_number(percent_of)
    same, opposite, unchanged = [], [], []
    for name, value in others:
        if value is None:
            continue
        times = _times(best, value)
        if negligible(value, base):
            unchanged.append(name)
        elif times:
            shown = f"{sig3(100 * abs(value) / abs(base))}%" if base else sig3(abs(value))
            same.append(f"{times} {name} ({shown})")
        else:
            opposite.append(f"{name} ({sig3(value, signed=True)})")
    text = ""
    if same:
        same[0] = same[0].replace("x ", "x as much as ", 1)
        text += ", " + _and(same)
    if opposite:
        text += f", while {_and(opposite)} {'moves' if len(opposite) == 1 else 'move'} it the "
        text += "other way"
    if unchanged:
        verb = "leaves" if len(unchanged) == 1 else "leave"
        text += f"{',' if opposite else ', while'} {_and(unchanged)} {verb} it unchanged"
    return text


def comparison_line(rows: Sequence[Row], clean: Row, kpi: str | None) -> str | None:
    """Which attack does the most damage (largest return loss) at :func:`largest_shared_eps`,
    against each other attack at that budget, on the return and on ``kpi``, and which headline
    KPIs each raises most.

    :param rows: attack rows.
    :param clean: the clean row.
    :param kpi: the KPI compared beside the return, or None.
    """
    eps = largest_shared_eps(rows)
    if eps is None:
        return None
    at = [
        r for r in rows if float(r["eps"]) == eps and as_number(r.get("regret_return")) is not None
    ]
    if len(at) < 2:
        return None
    at.sort(key=lambda r: float(r["regret_return"]))
    best, others = at[0], at[1:]
    ret = as_number(best.get("regret_return"))
    base = as_number(clean.get("return"))
    if all(negligible(float(r["regret_return"]), base) for r in at):
        return (
            f"At eps {eps:g} no attack changes the return by a millionth or more: the policy's "
            "actions did not move (a policy saturated at its action bounds cannot be pushed)."
        )
    text = (
        f"At the same budget (eps {eps:g}) {best['attack']} does the most damage: "
        + change_phrase("the return", ret, clean.get("return"))
        + _versus(
            ret, [(str(o["attack"]), as_number(o.get("regret_return"))) for o in others], None
        )
    )
    kpi_values = [as_number(r.get(f"regret_{kpi}")) for r in at] if kpi is not None else []
    if kpi is not None and all(
        v is not None and negligible(v, as_number(clean.get(kpi))) for v in kpi_values
    ):
        text += f"; no attack changes {kpi_name(kpi)}"
    elif kpi is not None:
        value = as_number(best.get(f"regret_{kpi}"))
        text += (
            "; it "
            + change_phrase(kpi_name(kpi), value, clean.get(kpi)).split(" (")[0]
            + _versus(
                value,
                [(str(o["attack"]), as_number(o.get(f"regret_{kpi}"))) for o in others],
                clean.get(kpi),
            )
        )
    leaders: dict[str, list[str]] = {}
    for k in headline_kpis(rows):
        values = [(as_number(r.get(f"regret_{k}")), str(r["attack"])) for r in at]
        known = [(v, name) for v, name in values if v is not None]
        top = max(known, default=(None, ""))
        if top[0] is not None and top[0] > 0 and sum(v == top[0] for v, _ in known) == 1:
            leaders.setdefault(top[1], []).append(kpi_name(k))
    if leaders:
        text += "; the largest rise " + ", ".join(
            f"in {_and(names)} comes from {name}" if i == 0 else f"in {_and(names)} from {name}"
            for i, (name, names) in enumerate(leaders.items())
        )
    return text + "."


def undetected_line(
    rows: Sequence[Row],
    clean: Row,
    kpi: str | None,
    stealth: Mapping[str, Any] | None = None,
    limit: int = 4,
) -> str | None:
    """The settings the MMD test does not detect, the most damaging first (by return loss).

    :param rows: attack rows.
    :param clean: the clean row.
    :param kpi: the KPI quoted beside the return, or None.
    :param stealth: the per-setting stealth reports (for their ``alpha``).
    :param limit: settings named at most (the rest are counted).
    """
    measured = [r for r in rows if as_number(r.get("mmd_p_value")) is not None]
    if not measured:
        return None
    hidden = [r for r in measured if float(r["mmd_p_value"]) >= _alpha(stealth, r)]
    alpha = _alpha(stealth, measured[0])
    if not hidden:
        return f"The MMD test at alpha {alpha:g} detects every attack setting."
    hidden.sort(key=lambda r: as_number(r.get("regret_return")) or 0.0)
    items = []
    for r in hidden:
        effect = ""
        if kpi is not None and as_number(r.get(f"regret_{kpi}")) is not None:
            base = as_number(clean.get(kpi))
            delta = float(r[f"regret_{kpi}"])
            effect = (
                f"{kpi_name(kpi)} {sig3(100 * delta / abs(base), signed=True)}%, "
                if base
                else f"{kpi_name(kpi)} {sig3(delta, signed=True)}, "
            )
        items.append(
            f"{r['attack']} eps {r['eps']:g} ({effect}return "
            f"{sig3(r.get('regret_return'), signed=True)}, {p_text(r['mmd_p_value'])})"
        )
    shown = "; ".join(items[:limit]) + (
        f"; and {len(items) - limit} more" if len(items) > limit else ""
    )
    return (
        f"Not detected by MMD at alpha {alpha:g}: {len(hidden)} of {len(measured)} settings, "
        f"the most damaging first: {shown}."
    )


def null_line(meta: Mapping[str, Any], alpha: float = DEFAULT_ALPHA) -> str | None:
    """The MMD test on the clean episodes split in two halves (no attack at all): a calibrated
    test gives p-values about uniform (mean 0.5, a share ``alpha`` below ``alpha``).

    :param meta: the evaluation's ``meta`` (its ``mmd_null``).
    :param alpha: significance level.
    """
    null = meta.get("mmd_null")
    if not null:
        return None
    p_values = [float(p) for p in null.get("p_values", [])]
    below = sum(p < alpha for p in p_values) / len(p_values) if p_values else float("nan")
    return (
        f"Calibration: the MMD test on the clean episodes split in two ({null.get('split')} "
        f"split, {len(p_values)} splits, no attack) gives mean p {sig3(null.get('mean_p'))} and "
        f"p < {alpha:g} in {below:.0%} of splits (a calibrated test: about 0.5 and {alpha:.0%})."
    )


def worst_cases(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The robust-RL papers' protocol for one agent: at each budget, the natural (clean) return
    and the lowest return over the attacks evaluated at that budget.

    :param results: ``{"clean", "rows"}`` (evaluation output or ``results.json``).
    :return: one ``{"eps", "natural", "worst", "attack", "attacks"}`` per budget, by eps.
    """
    natural = as_number((results.get("clean") or {}).get("return"))
    by_eps: dict[float, list[Row]] = {}
    for row in results.get("rows") or []:
        if as_number(row.get("return")) is not None:
            by_eps.setdefault(float(row["eps"]), []).append(row)
    out = []
    for eps, rows in sorted(by_eps.items()):
        worst = min(rows, key=lambda r: float(r["return"]))
        out.append(
            {
                "eps": eps,
                "natural": natural,
                "worst": float(worst["return"]),
                "attack": worst["attack"],
                "attacks": len(rows),
            }
        )
    return out


def robust_line(results: Mapping[str, Any]) -> str | None:
    """One line of :func:`worst_cases` at the largest budget evaluated with several attacks.

    :param results: ``{"clean", "rows"}``.
    """
    cases = [c for c in worst_cases(results) if c["attacks"] > 1] or worst_cases(results)
    if not cases or cases[-1]["natural"] is None:
        return None
    case = cases[-1]
    return (
        f"Robust-RL protocol: natural return {case['natural']:.4g}; worst case over "
        f"{case['attacks']} attack(s) at eps {case['eps']:g}: {case['worst']:.4g} "
        f"({case['attack']})."
    )


def findings(results: Mapping[str, Any]) -> list[str]:
    """Every plain-language line of an evaluation: the comparison at the same budget, one line
    per attack at its largest budget, the undetected settings, the MMD calibration.

    :param results: ``{"clean", "rows", "meta", ["stealth"]}`` (evaluation output or
        ``results.json``).
    """
    rows = list(results.get("rows") or [])
    if not rows:
        return []
    clean = results.get("clean") or {}
    stealth = results.get("stealth") or {}
    kpi = primary_kpi(rows)
    lines = []
    comparison = comparison_line(rows, clean, kpi)
    if comparison:
        lines.append(comparison)
    robust = robust_line(results)
    if robust:
        lines.append(robust)
    for attack in dict.fromkeys(r["attack"] for r in rows):
        own = [r for r in rows if r["attack"] == attack]
        lines.append(attack_line(max(own, key=lambda r: float(r["eps"])), clean, kpi, stealth))
    hidden = undetected_line(rows, clean, kpi, stealth)
    if hidden:
        lines.append(hidden)
    calibration = null_line(results.get("meta") or {})
    if calibration:
        lines.append(calibration)
    return lines


def summary(results: Mapping[str, Any]) -> list[str]:
    """The short version of :func:`findings` for a terminal: the comparison at the same budget
    and the undetected settings.

    :param results: ``{"clean", "rows", "meta", ["stealth"]}``.
    """
    rows = list(results.get("rows") or [])
    if not rows:
        return []
    clean = results.get("clean") or {}
    kpi = primary_kpi(rows)
    lines = [
        comparison_line(rows, clean, kpi),
        undetected_line(rows, clean, kpi, results.get("stealth") or {}),
    ]
    return [line for line in lines if line]
