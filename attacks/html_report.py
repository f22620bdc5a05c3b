"""``report.html``: one self-contained page per attack evaluation (no network, no JavaScript).

Sections, in order: what the evaluation shows in plain words (:mod:`rlkit.attacks.findings`),
the facts of the run, the clean KPIs, the regret table (attacked - clean, damaging cells
shaded), the stealth verdicts (MMD p-value, first-difference MMD, first-difference fraction,
KS, and a plain-language line per setting), the plots written by :mod:`rlkit.attacks.report`
(regret vs epsilon; clean vs attacked actions and the most perturbed features over time,
embedded as PNG), every column of results.csv (folded), and the configuration of the run and of
the attacks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlkit.attacks.findings import (
    DEFAULT_ALPHA,
    as_number,
    detection_phrase,
    findings,
    kpi_name,
    permutations_of,
    primary_kpi,
)
from rlkit.attacks.report import (
    attack_columns,
    clean_columns,
    damage_column,
    most_perturbed_features,
)
from rlkit.htmlpage import Cell, badge, bullets, esc, figure, num, page, pre, table, write_page
from rlkit.summary import HEADLINE, SHORT, headline_kpis

#: KPIs for which a larger value is better (a fall is damage); for every other KPI a rise is.
HIGHER_IS_BETTER = {"return", "vmin", "normalized_score"}


def regret_cell(key: str, regret: Any, clean: Any) -> Cell:
    """A regret cell shaded by harm: ``bad`` when it hurts by 5% of the clean value or more,
    ``worse`` when it hurts less, ``good`` when it helps by 5% or more.

    :param key: the KPI (``return`` or a KPI name), for its direction (:data:`HIGHER_IS_BETTER`).
    :param regret: attacked - clean.
    :param clean: the clean value.
    """
    delta, base = as_number(regret), as_number(clean)
    if delta is None or delta == 0.0:
        return num(regret, signed=True)
    harm = -delta if key in HIGHER_IS_BETTER else delta
    relative = abs(delta) / abs(base) if base else 1.0
    if harm > 0:
        cls = "bad" if relative >= 0.05 else "worse"
    else:
        cls = "good" if relative >= 0.05 else ""
    cell = num(regret, signed=True, cls=cls)
    if base:
        cell.title = f"{delta:+.6g} ({100 * delta / abs(base):+.3g}% of the clean {base:.6g})"
    return cell


def verdict_cell(p: Any, alpha: float) -> Cell:
    """``detected`` / ``not detected`` at ``alpha`` as a coloured badge (``n/a`` without p).

    :param p: the test's p-value.
    :param alpha: significance level.
    """
    value = as_number(p)
    if value is None:
        return badge("n/a", "na")
    return badge("detected", "detected") if value < alpha else badge("not detected", "undetected")


def _env_text(env: Mapping[str, Any]) -> str:
    """``grid (network=case33bw, episode_days=1, ...; 8 envs)`` from a config's env section."""
    kwargs = ", ".join(f"{k}={v}" for k, v in (env.get("kwargs") or {}).items())
    extra = f"; {env['n_envs']} envs" if (env.get("n_envs") or 1) > 1 else ""
    return f"{env.get('id')}" + (f" ({kwargs}{extra})" if kwargs or extra else "")


def p_cell(p: Any, permutations: int | None) -> Cell:
    """A p-value cell; a permutation p-value of 0 reads ``< 1/B`` (B permutations).

    :param p: the p-value.
    :param permutations: permutations of the test (None: unknown).
    """
    value = as_number(p)
    if value == 0.0 and permutations:
        return Cell(f"< {1 / permutations:.2g}", "num", "no permutation reached the statistic")
    return num(p)


def _alpha(results: Mapping[str, Any]) -> float:
    for report in (results.get("stealth") or {}).values():
        if isinstance(report, Mapping) and "alpha" in report:
            return float(report["alpha"])
    return DEFAULT_ALPHA


def facts_table(results: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    """The facts of the evaluation: source, controller, episodes and seeds, attacks, budgets,
    the stealth test.

    :param results: the evaluation output (or results.json).
    :param context: ``source``, ``run_config``, ``attack_config`` (any may be missing).
    """
    meta = results.get("meta") or {}
    rows = results.get("rows") or []
    run = context.get("run_config") or {}
    attack = context.get("attack_config") or {}
    facts: list[tuple[str, Any]] = [("source", context.get("source", "n/a"))]
    if run:
        agent = run.get("agent") or {}
        env = run.get("env") or {}
        bins = env.get("discrete_bins")
        controller = f"{agent.get('name')}" + (f", {bins} discrete action bins" if bins else "")
        facts += [
            ("controller", controller),
            ("environment", _env_text(env)),
            ("training steps", (run.get("train") or {}).get("total_steps")),
        ]
    seeds = meta.get("seeds") or []
    per_day = meta.get("steps_per_day")
    episodes = meta.get("episodes")
    if per_day and results.get("traces") is not None:
        clean = results["traces"]["clean"]
        days = sum(len(o) for o in clean.clean_obs) / per_day
        episodes = f"{episodes} ({days:g} days of {per_day} steps)"
    facts += [
        ("episodes", episodes),
        ("episode seeds", f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else seeds),
        ("attacks", ", ".join(dict.fromkeys(str(r["attack"]) for r in rows)) or "none"),
        ("budgets (eps)", ", ".join(f"{e:g}" for e in sorted({float(r["eps"]) for r in rows}))),
    ]
    if meta.get("action_units"):
        facts.append(("actions", meta["action_units"]))
    if attack:
        facts.append(
            (
                "stealth test",
                f"MMD ({attack.get('mmd_procedure')} procedure, {attack.get('mmd_permutation')} "
                f"permutations x {attack.get('permutations')}, reference "
                f"{attack.get('mmd_reference')}), alpha {_alpha(results):g}",
            )
        )
    return table(None, [[Cell(k), Cell(str(v))] for k, v in facts], table_id="facts")


def clean_section(clean: Mapping[str, Any]) -> str:
    """The clean KPIs: return and the headline KPIs (:data:`rlkit.summary.HEADLINE`; without
    any, the first 8) in one table, the rest folded.

    :param clean: the clean row.
    """
    skip = {"action_mae", "attack_success_rate", "linf_mean", "linf_max", "l2_mean", "l2_max"}
    keys = [k for k in clean_columns(dict(clean)) if k not in skip]
    kpis = [k for k in keys if k not in ("return", "return_std") and not k.endswith("_battery")]
    headline = [k for k in kpis if k in HEADLINE] or kpis[:8]
    main = [k for k in keys if k in ("return", "return_std", *headline)]
    rest = [k for k in keys if k not in main]
    html = table(
        ["metric", "clean value"], [[k, num(clean.get(k))] for k in main], table_id="clean"
    )
    if rest:
        html += (
            "<details><summary>"
            + esc(f"{len(rest)} more clean metrics")
            + "</summary>"
            + table(["metric", "clean value"], [[k, num(clean.get(k))] for k in rest])
            + "</details>"
        )
    return html


def regret_table(results: Mapping[str, Any]) -> str:
    """One row per (attack, eps): regret of the return and of the headline KPIs, action damage,
    distortion, MMD p-values with their verdicts, first-difference fraction.

    :param results: the evaluation output (or results.json).
    """
    rows = results.get("rows") or []
    clean = results.get("clean") or {}
    keys = headline_kpis(rows)
    damage = damage_column(rows)
    alpha = _alpha(results)
    stealth = results.get("stealth")
    header = [
        "attack",
        "eps",
        "Δreturn",
        *[Cell(SHORT.get(k, "Δ" + kpi_name(k)), title=k) for k in keys],
        "ASR" if damage == "attack_success_rate" else "action error",
        "linf mean",
        "MMD p",
        "MMD",
        "1st-diff MMD p",
        "1st-diff within",
    ]
    body = [
        [
            r["attack"],
            num(r["eps"]),
            regret_cell("return", r.get("regret_return"), clean.get("return")),
            *[regret_cell(k, r.get(f"regret_{k}"), clean.get(k)) for k in keys],
            num(r.get(damage)),
            num(r.get("linf_mean")),
            p_cell(r.get("mmd_p_value"), permutations_of(stealth, r)),
            verdict_cell(r.get("mmd_p_value"), alpha),
            p_cell(r.get("mmd_diff_p_value"), permutations_of(stealth, r)),
            num(r.get("first_diff_within")),
        ]
        for r in rows
    ]
    return table(header, body, table_id="regret")


def _of(count: Any, total: int | None) -> str:
    if count is None:
        return "n/a"
    return f"{count} of {total}" if total else str(count)


def stealth_table(results: Mapping[str, Any]) -> str:
    """The stealth verdicts of every setting, with a plain-language line each.

    :param results: the evaluation output (or results.json).
    """
    rows = results.get("rows") or []
    alpha = _alpha(results)
    n_features = len((results.get("meta") or {}).get("feature_names") or []) or None
    body = [
        [
            r["attack"],
            num(r["eps"]),
            p_cell(r.get("mmd_p_value"), permutations_of(results.get("stealth"), r)),
            verdict_cell(r.get("mmd_p_value"), alpha),
            p_cell(r.get("mmd_diff_p_value"), permutations_of(results.get("stealth"), r)),
            verdict_cell(r.get("mmd_diff_p_value"), alpha),
            num(r.get("first_diff_within")),
            Cell(_of(r.get("ks_n_significant"), n_features), "num"),
            Cell(detection_phrase(r, alpha, permutations_of(results.get("stealth"), r))),
        ]
        for r in rows
    ]
    header = [
        "attack",
        "eps",
        "MMD p",
        f"MMD (alpha {alpha:g})",
        "1st-diff MMD p",
        "1st-diff MMD",
        "1st-diff within",
        "KS significant features",
        "in plain words",
    ]
    return table(header, body, table_id="stealth")


def _feature_caption(results: Mapping[str, Any], attack: str, n_features: int) -> str:
    traces = results.get("traces")
    rows = results.get("rows") or []
    if not traces or not rows:
        return ""
    eps = max(float(r["eps"]) for r in rows if r["attack"] == attack)
    trace = traces.get((attack, eps))
    if trace is None:
        return ""
    clean = np.asarray(trace.clean_obs[0])
    if clean.ndim != 2:
        return f" at eps {eps:g}"
    top = most_perturbed_features(clean, np.asarray(trace.fed_obs[0]), n_features)
    names = (results.get("meta") or {}).get("feature_names")
    shown = [names[j] if names else f"obs_{j}" for j in top]
    if not shown:
        return f" at eps {eps:g}, episode 0; no feature was perturbed"
    return (
        f" at eps {eps:g}, episode 0; features shown (the {len(shown)} the attack moved most, by "
        f"mean |perturbation|): {', '.join(shown)}"
    )


def plots_section(results: Mapping[str, Any], plots: Sequence[Path], n_features: int) -> str:
    """The PNG plots embedded, each with a caption saying what it shows.

    :param results: the evaluation output (for the features named in the captions).
    :param plots: the PNG files (regret_vs_eps, timeseries_*, frames_*).
    :param n_features: perturbed features per time-series plot.
    """
    parts = []
    for path in plots:
        stem = path.stem
        if stem == "regret_vs_eps":
            caption = "Regret (attacked - clean) of each headline KPI against the budget eps."
            parts.append("<h3>Regret vs epsilon</h3>")
        elif stem.startswith("timeseries_"):
            attack = stem.removeprefix("timeseries_")
            caption = (
                f"{attack}: action of the clean run vs the attacked run, then true vs fed "
                f"observations" + _feature_caption(results, attack, n_features) + "."
            )
            parts.append(f"<h3>Time series: {esc(attack)}</h3>")
        elif stem.startswith("frames_"):
            caption = (
                f"{stem.removeprefix('frames_')}: the newest frame, clean and perturbed, and "
                "the perturbation amplified (at the largest budget; the titles give the budget)."
            )
        else:
            caption = stem
        parts.append(figure(path, caption, alt=stem))
    return "\n".join(parts)


def build_html(
    results: Mapping[str, Any],
    title: str,
    context: Mapping[str, Any],
    plots: Sequence[Path],
    n_features: int = 3,
) -> str:
    """The whole page as a string.

    :param results: output of :func:`rlkit.attacks.evaluation.evaluate_attacks` (or the
        contents of results.json: the traces are then missing and the captions shorter).
    :param title: the page title.
    :param context: ``source``, ``run_config``, ``attack_config`` (each optional).
    :param plots: PNG files to embed.
    :param n_features: perturbed features per time-series plot (named in captions).
    """
    rows = results.get("rows") or []
    meta = results.get("meta") or {}
    lines = findings(results)
    kpi = primary_kpi(rows) if rows else None
    body = ["<h2>What this evaluation shows</h2>"]
    if lines:
        body.append(bullets([esc(line) for line in lines]))
    else:
        body.append("<p>No attack was run: only the clean evaluation.</p>")
    if kpi:
        body.append(
            f'<p class="small">Changes are relative to the clean run on the same episodes; '
            f"the cost line speaks of <code>{esc(kpi)}</code> ({esc(kpi_name(kpi))}).</p>"
        )
    body += ["<h2>The evaluation</h2>", facts_table(results, context)]
    body += ["<h2>Clean KPIs</h2>", clean_section(results.get("clean") or {})]
    if rows:
        body += [
            "<h2>Regret under attack (attacked - clean)</h2>",
            '<p class="small">Shaded red: harm of 5% of the clean value or more; orange: less '
            "harm; green: an improvement of 5% or more. Hover a number for its full value.</p>",
            regret_table(results),
            "<h2>Stealth: is the attack detected?</h2>",
            stealth_table(results),
        ]
        notes = [line for line in lines if line.startswith("Calibration")]
        if meta.get("stealth_note"):
            notes.append(f"Note: {meta['stealth_note']}.")
        body += [f"<p>{esc(n)}</p>" for n in notes]
    if plots:
        body += ["<h2>Plots</h2>", plots_section(results, plots, n_features)]
    if rows:
        columns = attack_columns([dict(r) for r in rows])
        body.append(
            "<details><summary>Every column of results.csv</summary>"
            + table(columns, [[r.get(k) for k in columns] for r in rows])
            + "</details>"
        )
    body.append("<h2>Configuration</h2>")
    if context.get("run_config"):
        body += [
            "<h3>Run (config.yaml)</h3>",
            pre(yaml.safe_dump(context["run_config"], sort_keys=False)),
        ]
    if context.get("attack_config"):
        body += [
            "<h3>Attacks</h3>",
            pre(yaml.safe_dump({"attack": context["attack_config"]}, sort_keys=False)),
        ]
    others = {k: v for k, v in context.items() if k not in ("run_config", "attack_config")}
    if others:
        body += ["<h3>Context</h3>", pre(yaml.safe_dump(others, sort_keys=False))]
    return page(title, body, subtitle=str(context.get("source", "")) or None)


def write_html_report(
    results: Mapping[str, Any],
    out: Path,
    title: str,
    context: Mapping[str, Any],
    plots: Sequence[Path],
    n_features: int = 3,
) -> Path:
    """Write ``out/report.html`` (see :func:`build_html`) and return its path.

    :param results: output of :func:`rlkit.attacks.evaluation.evaluate_attacks`.
    :param out: the report folder.
    :param title: the page title.
    :param context: ``source``, ``run_config``, ``attack_config`` (each optional).
    :param plots: PNG files to embed.
    :param n_features: perturbed features per time-series plot.
    """
    return write_page(out / "report.html", build_html(results, title, context, plots, n_features))
