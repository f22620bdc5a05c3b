"""Terminal tables of evaluation results that fit an 80-column terminal.

* :func:`clean_table` / :func:`print_clean`: a clean evaluation (the dict of
  :func:`rlkit.evaluation.evaluate`: ``return_mean``, ``return_std``, ``episodes``, ``kpis``).
* :func:`attack_table` / :func:`print_attacks`: regret under attack (the dict of
  :func:`rlkit.attacks.evaluation.evaluate_attacks`).

Numbers have 3 significant digits (:func:`sig3`). A table never cuts a value short: it shows
only as many columns as fit the width (at most 80), the headline KPIs first, and says how many
more the written files (report.md, results.csv, eval.json) carry. Every column is
``no_wrap=False, overflow="fold"``: should a value ever not fit, rich folds it onto the next
line instead of ending it with an ellipsis (``no_wrap=True`` would crop it silently).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

#: The KPIs shown first: the paper's normalised energy KPIs, then the grid KPIs.
HEADLINE = (
    "cost_norm",
    "daily_peak_norm",
    "ramping_norm",
    "consumption_norm",
    "voltage_violations",
    "vmin",
    "max_line_loading",
)
#: Short regret headers for the headline KPIs (anything else: "Δ" + name without "_norm").
SHORT = {
    "cost_norm": "Δcost",
    "daily_peak_norm": "Δpeak",
    "ramping_norm": "Δramp",
    "consumption_norm": "Δcons",
    "voltage_violations": "Δviol",
    "vmin": "Δvmin",
    "max_line_loading": "Δload",
}
WIDTH = 80
_NA = "n/a"


def sig3(value: Any, signed: bool = False) -> str:
    """``value`` with 3 significant digits, for a terminal table.

    Plain notation from 0.001 to 999,999 (``0.00236``, ``-444``, ``1230``), scientific notation
    beyond (``1.23e-05``); trailing zeros dropped (``0.5``, ``24``); integers exactly; ``None``
    as ``n/a``, booleans as ``yes``/``no``; ``signed`` adds ``+`` to positive numbers.

    :param value: a number (or None / bool / other, shown as text).
    :param signed: prefix positive numbers with ``+`` (regrets).
    """
    if value is None:
        return _NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (
        hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu"
    ):
        number = int(value)
        return f"{number:+d}" if signed and number > 0 else str(number)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return ("+inf" if signed else "inf") if x > 0 else "-inf"
    if x == 0.0:
        return "0"
    rounded = float(f"{x:.3g}")
    if 1e-3 <= abs(rounded) < 1e6:
        text = f"{rounded:.0f}" if abs(rounded) >= 100 else f"{rounded:.3g}"
    else:
        text = f"{x:.3g}"
    return "+" + text if signed and x > 0 else text


def headline_kpis(rows: Sequence[Mapping[str, Any]], limit: int | None = 5) -> list[str]:
    """The KPIs worth a column, from attack rows (``regret_*`` keys): :data:`HEADLINE` first.

    Counterfactual (``*_no_battery``) KPIs are left out: an attack cannot change them.

    :param rows: attack result rows.
    :param limit: at most this many (None: all).
    """
    if not rows:
        return []
    regrets = [
        k[len("regret_") :] for k in rows[0] if k.startswith("regret_") and k != "regret_return"
    ]
    return _headline_first(regrets)[:limit]


def _headline_first(names: Sequence[str]) -> list[str]:
    names = [k for k in names if not k.endswith("_no_battery")]
    return [k for k in HEADLINE if k in names] + [k for k in names if k not in HEADLINE]


def _new_table(title: str | None, columns: Sequence[tuple[str, str]]) -> Table:
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        title_justify="left",
        pad_edge=False,
        collapse_padding=True,
    )
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=False, overflow="fold")  # type: ignore[arg-type]
    return table


def _width(renderable: RenderableType) -> int:
    """Cells ``renderable`` needs to be drawn without shrinking anything."""
    console = Console(width=10_000, color_system=None, legacy_windows=False)
    return console.measure(renderable).maximum


# ----------------------------------------------------------------------------- clean evaluation
def clean_table(
    result: Mapping[str, Any], max_kpis: int = 12, more_in: str = "eval.json"
) -> RenderableType:
    """The clean-evaluation table: return (mean ± std), episodes, mean length, then the KPIs
    (headline first, counterfactual ``*_no_battery`` left out, at most ``max_kpis``).

    :param result: ``{"return_mean", "return_std", "episodes", "kpis", ["length_mean"]}``.
    :param max_kpis: KPI rows at most; the number left out is noted under the table.
    :param more_in: where the full set is written (named in that note).
    """
    kpis: Mapping[str, Any] = result.get("kpis") or {}
    shown = _headline_first(list(kpis))[:max_kpis]
    table = _new_table("clean evaluation", [("metric", "left"), ("value", "right")])
    table.add_row(
        "return (mean ± std)", f"{sig3(result['return_mean'])} ± {sig3(result['return_std'])}"
    )
    table.add_row("episodes", str(result["episodes"]))
    if result.get("length_mean") is not None:
        table.add_row("episode length (mean)", sig3(result["length_mean"]))
    for key in shown:
        table.add_row(key, sig3(kpis[key]))
    left = len(kpis) - len(shown)
    if not left:
        return table
    return Group(table, Text(f"+{left} more KPIs in {more_in}", overflow="fold"))


def print_clean(result: Mapping[str, Any], console: Console, **kwargs: Any) -> None:
    """Print :func:`clean_table` of ``result`` on ``console``.

    :param result: a clean evaluation.
    :param console: the rich console.
    :param kwargs: more arguments of :func:`clean_table` (``max_kpis``, ``more_in``).
    """
    console.print(clean_table(result, **kwargs))


# ----------------------------------------------------------------------------- under attack
def _attack_columns(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, Any]]:
    """Candidate columns ``(key, header, cell function)`` in display order."""
    damage = "attack_success_rate" if "attack_success_rate" in rows[0] else "action_mae"
    columns: list[tuple[str, str, Any]] = [
        ("attack", "attack", lambda r: str(r["attack"])),
        ("eps", "eps", lambda r: f"{r['eps']:g}"),
        ("regret_return", "Δreturn", lambda r: sig3(r.get("regret_return"), signed=True)),
    ]
    for k in headline_kpis(rows, limit=None):
        header = SHORT.get(k, "Δ" + k.removesuffix("_norm"))
        columns.append(
            (f"regret_{k}", header, lambda r, k=k: sig3(r.get(f"regret_{k}"), signed=True))
        )
    columns.append(
        (
            damage,
            "ASR" if damage == "attack_success_rate" else "act err",
            lambda r: sig3(r.get(damage)),
        )
    )
    columns.append(("linf_mean", "linf", lambda r: sig3(r.get("linf_mean"))))
    if any("mmd_p_value" in r for r in rows):
        columns.append(("mmd_p_value", "MMD p", lambda r: sig3(r.get("mmd_p_value"))))
    return columns


def _priority(columns: list[tuple[str, str, Any]]) -> list[int]:
    """Column indices in the order they earn a place: label, eps, return regret, the first two
    headline KPIs, the MMD p-value, the distortion, the action damage, then the other KPIs."""
    keys = [c[0] for c in columns]
    regrets = [i for i, k in enumerate(keys) if k.startswith("regret_") and k != "regret_return"]
    named = [keys.index(k) for k in ("attack", "eps", "regret_return") if k in keys]
    tail = [keys.index(k) for k in ("mmd_p_value", "linf_mean") if k in keys]
    damage = [i for i, k in enumerate(keys) if k in ("attack_success_rate", "action_mae")]
    return named + regrets[:2] + tail + damage + regrets[2:]


def _attack_grid(
    rows: Sequence[Mapping[str, Any]], columns: list[tuple[str, str, Any]], title: str | None
) -> Table:
    table = _new_table(
        title, [(header, "left" if key == "attack" else "right") for key, header, _ in columns]
    )
    for r in rows:
        table.add_row(*[cell(r) for _, _, cell in columns])
    return table


def attack_table(
    results: Mapping[str, Any], width: int = WIDTH, more_in: str = "report.md, results.csv"
) -> RenderableType:
    """The regret-under-attack table: one row per (attack, eps), the columns that fit ``width``.

    Columns (display order): attack, eps, Δreturn, Δ headline KPIs, action damage (ASR for
    discrete policies, mean abs action error for continuous), mean linf distortion, MMD p-value;
    regret = attacked - clean. Columns are dropped, lowest priority first (see
    :func:`_priority`), until the table fits; a note under it gives the clean return and says how
    many columns the written files add.

    :param results: the output of :func:`rlkit.attacks.evaluation.evaluate_attacks`.
    :param width: the terminal width to fit.
    :param more_in: where every column is written (named in the note).
    """
    rows = results["rows"]
    title = "regret under attack (attacked - clean)"
    clean = results.get("clean") or {}
    if not rows:
        return Text(f"no attack rows; clean return {sig3(clean.get('return'))}", overflow="fold")
    columns = _attack_columns(rows)
    chosen: list[int] = []
    for i in _priority(columns):
        trial = sorted([*chosen, i])
        if (
            len(chosen) >= 3
            and _width(_attack_grid(rows, [columns[j] for j in trial], title=None)) > width
        ):
            continue
        chosen = trial
    table = _attack_grid(rows, [columns[j] for j in chosen], title)
    total = len({k for r in rows for k, v in r.items() if not isinstance(v, dict | list)})
    note = (
        f"clean return {sig3(clean.get('return'))}; {total - len(chosen)} more columns in {more_in}"
    )
    return Group(table, Text(note, overflow="fold"))


def print_attacks(results: Mapping[str, Any], console: Console, **kwargs: Any) -> None:
    """Print :func:`attack_table` of ``results`` on ``console``, fitted to its width (at most 80).

    :param results: the output of :func:`rlkit.attacks.evaluation.evaluate_attacks`.
    :param console: the rich console.
    :param kwargs: more arguments of :func:`attack_table` (``width``, ``more_in``).
    """
    kwargs.setdefault("width", min(console.width, WIDTH))
    console.print(attack_table(results, **kwargs))
