"""Write attack-evaluation results: results.csv/json, report.md and PNG plots."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rlkit.io import atomic_write_json, atomic_write_text  # noqa: E402

HEADLINE = ("cost_norm", "daily_peak_norm", "ramping_norm", "consumption_norm", "voltage_violations", "vmin", "max_line_loading")


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and not isinstance(row[k], dict | list)]
    return columns


def write_tables(results: dict[str, Any], out: Path, context: dict[str, Any]) -> None:
    """``results.csv`` (one row per clean / attack x eps) and ``results.json``.

    :param results: output of :func:`rlkit.attacks.evaluation.evaluate_attacks`.
    :param out: output folder.
    :param context: facts for the JSON (run, config, ...).
    """
    rows = [results["clean"], *results["rows"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_json(out / "results.json", {**context, "meta": results["meta"], "clean": results["clean"], "rows": results["rows"], "stealth": results["stealth"]})


def headline_kpis(rows: list[dict[str, Any]], limit: int = 5) -> list[str]:
    """The KPIs worth a column: the paper's normalised energy KPIs and the grid KPIs first.

    Counterfactual (``*_no_battery``) KPIs are left out: an attack cannot change them.

    :param rows: attack result rows (with ``regret_*`` keys).
    :param limit: at most this many.
    """
    if not rows:
        return []
    regrets = [k[len("regret_"):] for k in rows[0] if k.startswith("regret_") and k != "regret_return"]
    regrets = [k for k in regrets if not k.endswith("_no_battery")]
    ordered = [k for k in HEADLINE if k in regrets] + [k for k in regrets if k not in HEADLINE]
    return ordered[:limit]


def plot_regret(results: dict[str, Any], out: Path) -> Path:
    """Regret (attacked minus clean) vs epsilon, one line per attack, one panel per KPI."""
    rows = results["rows"]
    keys = headline_kpis(rows)
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        for attack in dict.fromkeys(r["attack"] for r in rows):
            points = sorted((r["eps"], r[f"regret_{key}"]) for r in rows if r["attack"] == attack)
            ax.plot(*zip(*points, strict=True), marker="o", label=attack)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("epsilon")
        ax.set_title(f"regret: {key}")
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path = out / "regret_vs_eps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_timeseries(results: dict[str, Any], out: Path, n_features: int = 3) -> list[Path]:
    """Per attack at its largest epsilon: clean vs attacked action, and a few perturbed features."""
    traces = results["traces"]
    names = results["meta"]["feature_names"]
    clean = traces["clean"]
    paths = []
    for attack in dict.fromkeys(r["attack"] for r in results["rows"]):
        eps = max(r["eps"] for r in results["rows"] if r["attack"] == attack)
        trace = traces[(attack, eps)]
        delta = trace.stacked("fed_obs", 0) - trace.stacked("clean_obs", 0)
        top = np.argsort(-np.abs(delta).mean(axis=0))[:n_features]
        fig, axes = plt.subplots(1 + len(top), 1, figsize=(9, 2.2 * (1 + len(top))), sharex=True, squeeze=False)
        ax = axes[0][0]
        ax.plot(clean.stacked("actions", 0).reshape(len(delta), -1)[:, 0], label="clean run", color="tab:blue")
        ax.plot(trace.stacked("actions", 0).reshape(len(delta), -1)[:, 0], label=f"{attack} eps={eps}", color="tab:red")
        ax.set_ylabel("action[0]")
        ax.legend(fontsize=8)
        for ax, j in zip(axes[1:, 0], top, strict=True):
            ax.plot(trace.stacked("clean_obs", 0)[:, j], label="true", color="tab:blue")
            ax.plot(trace.stacked("fed_obs", 0)[:, j], label="fed to agent", color="tab:red", lw=0.8)
            ax.set_ylabel(names[j], fontsize=8)
        axes[-1][0].set_xlabel("step (episode 0)")
        axes[1][0].legend(fontsize=8) if len(top) else None
        fig.tight_layout()
        path = out / f"timeseries_{attack}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_markdown(results: dict[str, Any], out: Path, title: str, plots: list[Path]) -> Path:
    """``report.md``: the clean baseline, a regret table per (attack, eps), stealth, the plots."""
    rows = results["rows"]
    keys = headline_kpis(rows)
    damage = "attack_success_rate" if rows and "attack_success_rate" in rows[0] else "action_mae"
    lines = [f"# {title}", "", f"Episodes: {results['meta']['episodes']} (seeds {results['meta']['seeds']}).", ""]
    clean = results["clean"]
    lines += ["## Clean", "", "| " + " | ".join(["return", *keys]) + " |", "|" + "---|" * (1 + len(keys))]
    lines += ["| " + " | ".join(_fmt(clean.get(k)) for k in ["return", *keys]) + " |", ""]
    header = ["attack", "eps", "regret return", *[f"regret {k}" for k in keys], damage, "linf mean", "MMD p", "detected", "1st-diff within"]
    lines += ["## Under attack (regret = attacked - clean)", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["attack"], r["eps"], r["regret_return"], *[r.get(f"regret_{k}") for k in keys], r.get(damage), r["linf_mean"], r.get("mmd_p_value"), r.get("mmd_detected"), r.get("first_diff_within")]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    null = results["meta"].get("mmd_null")
    if null:
        lines += ["", f"MMD null (clean episodes split by day, {len(null['p_values'])} splits): mean p {null['mean_p']:.3f}, min p {null['min_p']:.3f}."]
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def write_report(results: dict[str, Any], out: Path, title: str, context: dict[str, Any], n_features: int = 3) -> Path:
    """Write every output into ``out`` and return the path of ``report.md``.

    :param results: output of :func:`rlkit.attacks.evaluation.evaluate_attacks`.
    :param out: output folder (created).
    :param title: report title.
    :param context: facts added to results.json.
    :param n_features: perturbed features shown in the time-series plots.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_tables(results, out, context)
    plots = [plot_regret(results, out), *plot_timeseries(results, out, n_features)] if results["rows"] else []
    return write_markdown(results, out, title, plots)
