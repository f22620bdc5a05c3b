"""Write attack-evaluation results: results.csv/json, report.md, report.html and PNG plots."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rlkit.attacks.findings import findings  # noqa: E402
from rlkit.io import atomic_write_json, atomic_write_text  # noqa: E402
from rlkit.summary import HEADLINE, headline_kpis  # noqa: E402


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
    writer = csv.DictWriter(
        buffer, fieldnames=_columns(rows), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_json(
        out / "results.json",
        {
            **context,
            "meta": results["meta"],
            "clean": results["clean"],
            "rows": results["rows"],
            "stealth": results["stealth"],
        },
    )


def plot_regret(results: dict[str, Any], out: Path) -> Path:
    """Regret (attacked minus clean) vs epsilon, one line per attack, one panel per KPI."""
    rows = results["rows"]
    keys = headline_kpis(rows)
    fig, axes = plt.subplots(
        1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3.2), squeeze=False
    )
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


def most_perturbed_features(clean: np.ndarray, fed: np.ndarray, n_features: int) -> list[int]:
    """The ``n_features`` features (columns of (T, F) series) the attack moved most.

    Ranked by the mean absolute perturbation over the steps; near-ties (within 1e-4 of the
    largest, as a sign attack that moves every feature by eps produces) are broken by the
    perturbation relative to the feature's own spread over the episode (what a plot makes
    visible). Features that were never perturbed are left out.

    :param clean: clean observations (T, F).
    :param fed: observations fed to the policy (T, F).
    :param n_features: at most this many.
    """
    clean = np.asarray(clean, dtype=np.float64).reshape(len(clean), -1)
    delta = np.abs(np.asarray(fed, dtype=np.float64).reshape(len(fed), -1) - clean)
    size = delta.mean(axis=0) if len(delta) else np.zeros(clean.shape[1])
    if n_features <= 0 or not np.any(size > 0):
        return []
    relative = size / (clean.std(axis=0) + 1e-12 * max(float(np.abs(clean).max()), 1.0))
    coarse = np.round(size / size.max(), 4)
    order = np.lexsort((np.arange(len(size)), -relative, -coarse))
    return [int(j) for j in order if size[j] > 0][:n_features]


def most_perturbed_step(clean: np.ndarray, fed: np.ndarray) -> int:
    """Index of the step whose observation (any shape) was perturbed most (largest l2)."""
    delta = (np.asarray(fed, dtype=np.float64) - np.asarray(clean, dtype=np.float64)).reshape(
        len(clean), -1
    )
    return int(np.argmax(np.linalg.norm(delta, axis=1)))


def _largest_eps(rows: list[dict[str, Any]], attack: str) -> float:
    return max(r["eps"] for r in rows if r["attack"] == attack)


def plot_timeseries(results: dict[str, Any], out: Path, n_features: int = 3) -> list[Path]:
    """Per attack at its largest epsilon, episode 0: clean vs attacked action over time, and for
    flat observations the ``n_features`` most perturbed features (:func:`most_perturbed_features`);
    for image observations :func:`plot_frames` draws the frames instead."""
    traces = results["traces"]
    names = results["meta"].get("feature_names")
    clean = traces["clean"]
    paths = []
    for attack in dict.fromkeys(r["attack"] for r in results["rows"]):
        eps = _largest_eps(results["rows"], attack)
        trace = traces[(attack, eps)]
        clean_obs, fed_obs = trace.stacked("clean_obs", 0), trace.stacked("fed_obs", 0)
        flat = clean_obs.ndim == 2
        top = most_perturbed_features(clean_obs, fed_obs, n_features) if flat else []
        steps = len(clean_obs)
        fig, axes = plt.subplots(
            1 + len(top), 1, figsize=(9, 2.2 * (1 + len(top))), sharex=True, squeeze=False
        )
        ax = axes[0][0]
        ax.plot(
            clean.stacked("actions", 0).reshape(len(clean.actions[0]), -1)[:, 0],
            label="clean run",
            color="tab:blue",
        )
        ax.plot(
            trace.stacked("actions", 0).reshape(steps, -1)[:, 0],
            label=f"{attack} eps={eps}",
            color="tab:red",
        )
        ax.set_ylabel("action[0]")
        ax.legend(fontsize=8)
        for ax, j in zip(axes[1:, 0], top, strict=True):
            ax.plot(clean_obs[:, j], label="true", color="tab:blue")
            ax.plot(fed_obs[:, j], label="fed to agent", color="tab:red", lw=0.8)
            ax.set_ylabel(names[j] if names else f"obs_{j}", fontsize=8)
        axes[-1][0].set_xlabel("step (episode 0)")
        if top:
            axes[1][0].legend(fontsize=8)
        fig.tight_layout()
        path = out / f"timeseries_{attack}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
        if not flat:
            row = next(r for r in results["rows"] if r["attack"] == attack and r["eps"] == eps)
            paths.append(
                plot_frames(
                    trace,
                    out,
                    attack,
                    eps,
                    eps_raw=row.get("eps_raw"),
                    units=results["meta"].get("units", "raw"),
                    frame_level=bool(results["meta"].get("frame_level")),
                )
            )
    return paths


def _display(frame: np.ndarray, unit: float) -> tuple[np.ndarray, bool]:
    """An observation (C, H, W), (H, W, C) or (H, W) as an (H, W, 3) or (H, W) image in display
    units (``/ unit``): the last three channels as RGB when there are 3k, else the last one."""
    frame = np.asarray(frame, dtype=np.float64) / unit
    if frame.ndim == 2:
        return frame, False
    if frame.ndim != 3:
        frame = frame.reshape(-1, *frame.shape[-2:])
    channels_last = frame.shape[-1] in (1, 3) and frame.shape[0] not in (1, 3)
    chw = np.moveaxis(frame, -1, 0) if channels_last else frame
    if chw.shape[0] >= 3 and chw.shape[0] % 3 == 0:
        return np.moveaxis(chw[-3:], 0, -1), True
    return chw[-1], False


def budget_caption(eps: float, eps_raw: float | None, units: str) -> str:
    """The budget as a plot states it: ``eps 8/255 (8 pixel levels)`` or ``eps 0.03``.

    :param eps: the configured budget.
    :param eps_raw: the budget in raw units (None: the same as ``eps``).
    :param units: ``"pixels"`` or ``"raw"``.
    """
    if units == "pixels" and eps_raw is not None:
        from rlkit.attacks.pixels import pixel_label

        return f"eps {pixel_label(eps)} ({eps_raw:.3g} pixel levels)"
    return f"eps {eps:g}"


def plot_frames(
    trace: Any,
    out: Path,
    attack: str,
    eps: float,
    eps_raw: float | None = None,
    units: str = "raw",
    frame_level: bool = False,
) -> Path:
    """``frames_<attack>.png``: the newest frame of the stack, clean and perturbed, and their
    difference amplified, at the most perturbed step of episode 0 (image observations); the
    titles state the budget and the largest change of the frame shown.

    :param trace: the attacked run.
    :param out: the report folder.
    :param attack: the attack's key.
    :param eps: its budget as configured.
    :param eps_raw: the budget in raw units (pixel levels), when it differs.
    :param units: the units of ``eps`` (``"pixels"`` or ``"raw"``).
    :param frame_level: the attack perturbed each frame once, before stacking.
    """
    clean_obs, fed_obs = trace.stacked("clean_obs", 0), trace.stacked("fed_obs", 0)
    step = most_perturbed_step(clean_obs, fed_obs)
    integer = np.issubdtype(clean_obs.dtype, np.integer)
    unit = 255.0 if integer or float(np.max(clean_obs)) > 1.5 else 1.0
    clean_img, rgb = _display(clean_obs[step], unit)
    fed_img, _ = _display(fed_obs[step], unit)
    delta = fed_img - clean_img
    peak = float(np.abs(delta).max())
    levels = peak * unit
    gain = 0.5 / peak if peak > 0 else 1.0
    diff_img = 0.5 + gain * delta
    cmap = None if rgb else "gray"
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    newest = "newest frame" if rgb or clean_obs.ndim > 2 else "frame"
    panels = [
        (clean_img, f"clean ({newest})"),
        (fed_img, f"{attack}, {budget_caption(eps, eps_raw, units)}"),
        (diff_img, f"difference x{gain:.3g} (max |delta| {levels:.3g})"),
    ]
    for ax, (img, title) in zip(axes, panels, strict=True):
        ax.imshow(np.clip(img, 0.0, 1.0), cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    how = "each frame perturbed once, before stacking" if frame_level else "whole observation"
    fig.suptitle(f"episode 0, step {step} (largest perturbation); {how}", fontsize=9)
    fig.tight_layout()
    path = out / f"frames_{attack}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def damage_column(rows: list[dict[str, Any]]) -> str:
    """``attack_success_rate`` (discrete policies) or ``action_mae`` (continuous)."""
    return "attack_success_rate" if rows and "attack_success_rate" in rows[0] else "action_mae"


def clean_columns(clean: dict[str, Any]) -> list[str]:
    """Every column of the clean row (but its label), the headline KPIs first."""
    keys = [k for k in _columns([clean]) if k not in ("attack", "eps")]
    first = ["return", "return_std", *[k for k in HEADLINE if k in keys]]
    return [k for k in first if k in keys] + [k for k in keys if k not in first]


def attack_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Every column of the attack rows, ordered: label, eps, regret of the return and of the
    headline KPIs (:func:`headline_kpis`, as in the short table), damage, distortion, stealth,
    then the rest in the rows' own order."""
    keys = _columns(rows)
    headline = [f"regret_{k}" for k in headline_kpis(rows)]
    first = [
        "attack",
        "eps",
        "regret_return",
        *headline,
        damage_column(rows),
        "linf_mean",
        "mmd_p_value",
        "mmd_detected",
        "first_diff_within",
        "return",
        "return_std",
    ]
    first = [k for k in first if k in keys]
    return first + [k for k in keys if k not in first]


def _table(header: list[str], body: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_fmt(c) for c in cells) + " |" for cells in body]


def write_markdown(results: dict[str, Any], out: Path, title: str, plots: list[Path]) -> Path:
    """``report.md``: the clean baseline (every metric), the headline regret table per
    (attack, eps), a table with every column of results.csv (headline KPIs first), the
    day-split MMD null, and the plots."""
    rows = results["rows"]
    meta = results["meta"]
    keys = headline_kpis(rows)
    damage = damage_column(rows)
    lines = [f"# {title}", "", f"Episodes: {meta['episodes']} (seeds {meta['seeds']}).", ""]
    shows = findings(results)
    if shows:
        lines += ["## What this evaluation shows", "", *[f"- {line}" for line in shows], ""]
    if meta.get("action_units"):
        lines += [f"Actions (`{damage}`): {meta['action_units']}.", ""]
    clean = results["clean"]
    lines += [
        "## Clean",
        "",
        *_table(["metric", "value"], [[k, clean.get(k)] for k in clean_columns(clean)]),
        "",
    ]
    header = [
        "attack",
        "eps",
        "regret return",
        *[f"regret {k}" for k in keys],
        damage,
        "linf mean",
        "MMD p",
        "detected",
        "1st-diff within",
    ]
    body = [
        [
            r["attack"],
            r["eps"],
            r["regret_return"],
            *[r.get(f"regret_{k}") for k in keys],
            r.get(damage),
            r["linf_mean"],
            r.get("mmd_p_value"),
            r.get("mmd_detected"),
            r.get("first_diff_within"),
        ]
        for r in rows
    ]
    lines += ["## Under attack (regret = attacked - clean)", "", *_table(header, body), ""]
    if rows:
        columns = attack_columns(rows)
        lines += [
            "### All columns",
            "",
            *_table(columns, [[r.get(k) for k in columns] for r in rows]),
            "",
        ]
    if meta.get("stealth_note"):
        lines += [f"Note: {meta['stealth_note']}.", ""]
    null = meta.get("mmd_null")
    if null:
        lines += [
            f"MMD null (clean episodes split by day, {len(null['p_values'])} splits): "
            f"mean p {null['mean_p']:.3f}, min p {null['min_p']:.3f}.",
            "",
        ]
    lines += [*[f"![{p.stem}]({p.name})" for p in plots], ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def write_report(
    results: dict[str, Any], out: Path, title: str, context: dict[str, Any], n_features: int = 3
) -> Path:
    """Write every output into ``out`` and return the path of ``report.md``.

    ``report.html`` (:func:`rlkit.attacks.html_report.write_html_report`: the same tables, the
    plain-language findings, the stealth verdicts and the plots embedded) is written beside it.

    :param results: output of :func:`rlkit.attacks.evaluation.evaluate_attacks`.
    :param out: output folder (created).
    :param title: report title.
    :param context: facts added to results.json.
    :param n_features: perturbed features shown in the time-series plots.
    """
    out.mkdir(parents=True, exist_ok=True)
    write_tables(results, out, context)
    plots = (
        [plot_regret(results, out), *plot_timeseries(results, out, n_features)]
        if results["rows"]
        else []
    )
    from rlkit.attacks.html_report import write_html_report  # imports this module

    path = write_markdown(results, out, title, plots)
    write_html_report(results, out, title, context, plots, n_features)
    return path
