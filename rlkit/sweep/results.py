"""Results of a sweep, read from its trials' run directories: one table per sweep.

* per trial: status (done, stopped, error, partial, pending), step, the sweep's metric, the
  final evaluation's return and, with an attack stage, the natural return and the worst case
  over attacks at the summary budget;
* aggregated over seeds (one row per configuration, completed trials only): mean, std
  (n - 1), median, min and max of the metric, best configuration first; with
  ``attack.robust`` also the robust-RL summary (natural return and worst case over attacks,
  median, mean and min over seeds).

Written to the sweep directory: ``results.csv`` (one row per trial, every value),
``aggregate.csv``, ``summary.md`` and ``sweep.png``. The terminal tables fit 80 columns.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.text import Text

from rlkit.io import atomic_write_bytes, atomic_write_text
from rlkit.rundir import RunDir
from rlkit.summary import WIDTH, _new_table, sig3
from rlkit.sweep.spec import Sweep, TrialSpec
from rlkit.sweep.trial import (
    ERROR_FILE,
    STOPPED_FILE,
    TRIAL_FILE,
    is_complete,
    metric_curve,
    trial_metrics,
)

STATUSES = ("done", "stopped", "error", "partial", "pending")
MAX_TRIAL_ROWS = 40


@dataclass
class TrialResult:
    """What a trial's run directory says.

    :param spec: the trial.
    :param status: done, stopped (by the scheduler), error, partial (interrupted) or pending.
    :param metrics: :func:`rlkit.sweep.trial.trial_metrics`.
    :param value: the sweep's metric (None when not reported yet).
    """

    spec: TrialSpec
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    value: float | None = None

    @property
    def step(self) -> int | None:
        """The final step, else the last logged one."""
        step = self.metrics.get("step")
        return None if step is None else int(step)


@dataclass
class GroupStats:
    """A configuration's results over seeds (completed trials).

    :param group: the configuration's label.
    :param trials: trials of the configuration.
    :param done: completed trials.
    :param stats: statistic name (mean, std, median, min, max) -> value, of the metric.
    :param robust: ``natural`` / ``worst`` -> statistics, with an attack stage's summary.
    """

    group: str
    trials: int
    done: int
    stats: dict[str, float | None]
    robust: dict[str, dict[str, float | None]] = field(default_factory=dict)


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return dict.fromkeys(("mean", "std", "median", "min", "max"))
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def trial_specs(sweep: Sweep) -> list[TrialSpec]:
    """The sweep's trials: the plan (with each trial's current values, which PBT may have
    changed), or every trial a search algorithm started.

    :param sweep: the sweep.
    """
    specs = []
    recorded: dict[str, TrialSpec] = {}
    if sweep.trials_dir.is_dir():
        for path in sorted(sweep.trials_dir.glob(f"*/{TRIAL_FILE}")):
            try:
                spec = TrialSpec.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            recorded[spec.name] = spec
    if sweep.uses_search:
        return list(recorded.values())
    for planned in sweep.trials:
        spec = recorded.get(planned.name, planned)
        specs.append(TrialSpec(planned.name, planned.seed, spec.params, planned.group))
    return specs


def trial_status(run_dir: Path, total_steps: int, attack_stem: str | None) -> str:
    """done, stopped, error, partial or pending (see :data:`STATUSES`).

    :param run_dir: the trial's run directory.
    :param total_steps: the trial's ``train.total_steps``.
    :param attack_stem: the attack results folder name, or None.
    """
    if is_complete(run_dir, total_steps, attack_stem):
        return "done"
    if (run_dir / STOPPED_FILE).is_file():
        return "stopped"
    if (run_dir / ERROR_FILE).is_file():
        return "error"
    run = RunDir(run_dir)
    if run.metrics_path.is_file() or run.checkpoint_dirs():
        return "partial"
    return "pending"


def collect(sweep: Sweep) -> list[TrialResult]:
    """Every trial's status and results.

    :param sweep: the sweep.
    """
    results = []
    for spec in trial_specs(sweep):
        run_dir = sweep.trials_dir / spec.name
        status = trial_status(run_dir, sweep.total_steps, sweep.attack_stem)
        metrics = trial_metrics(run_dir, sweep.attack_stem) if status != "pending" else {}
        value = metrics.get(sweep.config.metric)
        results.append(TrialResult(spec, status, metrics, value))
    return results


def aggregate(sweep: Sweep, results: Sequence[TrialResult]) -> list[GroupStats]:
    """Statistics over seeds per configuration, best mean first (by the sweep's mode).

    :param sweep: the sweep.
    :param results: :func:`collect`.
    """
    groups: dict[str, list[TrialResult]] = {}
    for result in results:
        groups.setdefault(result.spec.group, []).append(result)
    budget = sweep.robust_budget
    out = []
    for group, members in groups.items():
        done = [r for r in members if r.status == "done"]
        values = [r.value for r in done if r.value is not None and math.isfinite(r.value)]
        stats = GroupStats(group, len(members), len(done), _stats(values))
        if budget is not None:
            stats.robust = {
                "natural": _stats(
                    [r.metrics["attack/natural"] for r in done if _has(r, "natural")]
                ),
                "worst": _stats(
                    [
                        r.metrics[f"attack/worst@{budget:g}"]
                        for r in done
                        if _has(r, f"worst@{budget:g}")
                    ]
                ),
            }
        out.append(stats)
    sign = -1.0 if sweep.config.mode == "max" else 1.0

    def key(stats: GroupStats) -> tuple[int, float]:
        mean = stats.stats["mean"]
        return (1, 0.0) if mean is None else (0, sign * mean)

    return sorted(out, key=key)


def _has(result: TrialResult, name: str) -> bool:
    return f"attack/{name}" in result.metrics


# ---------------------------------------------------------------------------------------------
# files


def _columns(sweep: Sweep, results: Sequence[TrialResult]) -> list[str]:
    keys: list[str] = []
    for result in results:
        for key in result.spec.params:
            if key not in keys:
                keys.append(key)
    metric = sweep.config.metric
    named = [metric, "final/return_mean", "final/return_std"]
    rest = sorted({k for r in results for k in r.metrics} - {*named, "step"})
    first = [k for k in named if any(k in r.metrics for r in results)]
    return ["trial", "group", "status", "seed", *keys, "step", *first, *rest]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def write_results(
    sweep: Sweep, results: Sequence[TrialResult], groups: Sequence[GroupStats]
) -> Path:
    """Write ``results.csv``, ``aggregate.csv``, ``summary.md`` and ``sweep.png``.

    :param sweep: the sweep.
    :param results: :func:`collect`.
    :param groups: :func:`aggregate`.
    :return: the path of ``summary.md``.
    """
    root = sweep.root
    root.mkdir(parents=True, exist_ok=True)
    columns = _columns(sweep, results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in results:
        row = {
            "trial": r.spec.name,
            "group": r.spec.group,
            "status": r.status,
            "seed": r.spec.seed,
            **r.spec.params,
            **r.metrics,
            "step": r.step,
        }
        writer.writerow([_cell(row.get(c)) for c in columns])
    atomic_write_text(root / "results.csv", buffer.getvalue())

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    stat_names = ["mean", "std", "median", "min", "max"]
    header = ["group", "trials", "done", *stat_names]
    budget = sweep.robust_budget
    if budget is not None:
        header += [f"natural_{s}" for s in stat_names] + [f"worst_{s}" for s in stat_names]
    writer.writerow(header)
    for g in groups:
        cells: list[Any] = [g.group, g.trials, g.done, *(g.stats[s] for s in stat_names)]
        if budget is not None:
            cells += [g.robust["natural"][s] for s in stat_names]
            cells += [g.robust["worst"][s] for s in stat_names]
        writer.writerow([_cell(c) for c in cells])
    atomic_write_text(root / "aggregate.csv", buffer.getvalue())

    plot = plot_sweep(sweep, results, groups, root / "sweep.png")
    return write_markdown(sweep, results, groups, plot)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def fmt(v: Any) -> str:
        return "" if v is None else (sig3(v) if isinstance(v, float | int) else str(v))

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return lines


def write_markdown(
    sweep: Sweep,
    results: Sequence[TrialResult],
    groups: Sequence[GroupStats],
    plot: Path | None,
) -> Path:
    """``summary.md``: the sweep, the aggregated table(s), every trial, the plot.

    :param sweep: the sweep.
    :param results: :func:`collect`.
    :param groups: :func:`aggregate`.
    :param plot: the plot, or None.
    """
    config = sweep.config
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines = [
        f"# Sweep {sweep.path.stem}",
        "",
        f"- sweep file: `{sweep.path}`; base config: `{sweep.base_path}`",
        f"- metric: `{config.metric}` ({config.mode}); scheduler: {config.scheduler.name}; "
        f"search: {config.search.name}; seeds: {', '.join(map(str, config.seeds))}",
        "- trials: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        "",
        f"## Over seeds (completed trials), best first: {config.metric}",
        "",
        *_md_table(
            ["configuration", "trials", "done", "mean", "std", "median", "min", "max"],
            [
                [
                    g.group,
                    g.trials,
                    g.done,
                    *(g.stats[s] for s in ("mean", "std", "median", "min", "max")),
                ]
                for g in groups
            ],
        ),
        "",
    ]
    budget = sweep.robust_budget
    if budget is not None:
        lines += [
            f"## Robust summary: natural return and worst case over attacks at eps {budget:g}",
            "",
            *_md_table(
                [
                    "configuration",
                    "done",
                    "natural median",
                    "natural mean",
                    f"worst@{budget:g} median",
                    f"worst@{budget:g} mean",
                    f"worst@{budget:g} min",
                ],
                [
                    [
                        g.group,
                        g.done,
                        g.robust["natural"]["median"],
                        g.robust["natural"]["mean"],
                        g.robust["worst"]["median"],
                        g.robust["worst"]["mean"],
                        g.robust["worst"]["min"],
                    ]
                    for g in groups
                ],
            ),
            "",
        ]
    header = ["trial", "status", "step", config.metric, "final/return_mean"]
    extra = [] if budget is None else ["attack/natural", f"attack/worst@{budget:g}"]
    lines += [
        "## Trials",
        "",
        *_md_table(
            [*header, *extra],
            [
                [r.spec.name, r.status, r.step, r.value, r.metrics.get("final/return_mean")]
                + [r.metrics.get(k) for k in extra]
                for r in results
            ],
        ),
        "",
        "Every value of every trial: `results.csv`; per configuration: `aggregate.csv`; each "
        "trial's run directory: `trials/<trial>/`.",
        "",
    ]
    if plot is not None:
        lines += [f"![sweep]({plot.name})", ""]
    path = sweep.root / "summary.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def plot_sweep(
    sweep: Sweep, results: Sequence[TrialResult], groups: Sequence[GroupStats], path: Path
) -> Path | None:
    """Learning curves of the metric (one colour per configuration, stopped trials dashed) and
    the completed trials' values per configuration (dots) with their median (bar).

    :param sweep: the sweep.
    :param results: :func:`collect`.
    :param groups: :func:`aggregate`.
    :param path: the PNG to write.
    :return: the path, or None when nothing has been reported yet.
    """
    metric = sweep.config.metric
    curves = {r.spec.name: metric_curve(sweep.trials_dir / r.spec.name, metric) for r in results}
    if not any(curves.values()) and not any(r.value is not None for r in results):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [g.group for g in groups]
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(order)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        points = curves[r.spec.name]
        if points:
            xs, ys = zip(*points, strict=True)
            left.plot(
                xs,
                ys,
                color=colours[r.spec.group],
                ls="--" if r.status == "stopped" else "-",
                lw=1.2,
                alpha=0.8,
            )
    left.set_xlabel("env steps")
    left.set_ylabel(metric)
    left.set_title("during training (dashed: stopped early)")
    for i, group in enumerate(order):
        values = [
            r.value
            for r in results
            if r.spec.group == group and r.status == "done" and r.value is not None
        ]
        if values:
            right.scatter([i] * len(values), values, color=colours[group], s=18, zorder=3)
            right.hlines(statistics.median(values), i - 0.3, i + 0.3, color="black", lw=2)
    right.set_xticks(range(len(order)))
    right.set_xticklabels(
        [g if len(g) <= 24 else g[:22] + "…" for g in order], rotation=30, ha="right", fontsize=7
    )
    right.set_ylabel(metric)
    right.set_title("completed trials per configuration (bar: median)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# terminal


def trials_table(sweep: Sweep, results: Sequence[TrialResult]) -> RenderableType:
    """Per trial: name, status, step, the metric, the final return (robust columns if asked).

    :param sweep: the sweep.
    :param results: :func:`collect`.
    """
    budget = sweep.robust_budget
    metric = sweep.config.metric
    columns = [("trial", "left"), ("status", "left"), ("step", "right"), (metric, "right")]
    final = metric != "final/return_mean"
    if final:
        columns.append(("final", "right"))
    if budget is not None:
        columns += [("natural", "right"), (f"worst@{budget:g}", "right")]
    table = _new_table("trials", columns)
    for r in results[:MAX_TRIAL_ROWS]:
        cells = [r.spec.name, r.status, sig3(r.step), sig3(r.value)]
        if final:
            cells.append(sig3(r.metrics.get("final/return_mean")))
        if budget is not None:
            cells += [
                sig3(r.metrics.get("attack/natural")),
                sig3(r.metrics.get(f"attack/worst@{budget:g}")),
            ]
        table.add_row(*cells)
    left = len(results) - MAX_TRIAL_ROWS
    if left > 0:
        return Group(table, Text(f"+{left} more trials in results.csv", overflow="fold"))
    return table


def aggregate_table(sweep: Sweep, groups: Sequence[GroupStats]) -> RenderableType:
    """Per configuration over seeds (completed trials): n, mean, std, median, min of the
    metric; with ``attack.robust``, the robust summary (medians of natural and worst case).

    :param sweep: the sweep.
    :param groups: :func:`aggregate`.
    """
    budget = sweep.robust_budget
    title = f"over seeds: {sweep.config.metric} ({sweep.config.mode}), best first"
    columns = [
        ("configuration", "left"),
        ("n", "right"),
        ("mean", "right"),
        ("std", "right"),
        ("median", "right"),
        ("min", "right"),
    ]
    table = _new_table(title, columns)
    for g in groups:
        s = g.stats
        table.add_row(
            g.group,
            f"{g.done}/{g.trials}",
            *(sig3(s[k]) for k in ("mean", "std", "median", "min")),
        )
    if budget is None:
        return table
    robust = _new_table(
        f"robust summary at eps {budget:g} (median over seeds)",
        [
            ("configuration", "left"),
            ("n", "right"),
            ("natural", "right"),
            ("worst", "right"),
            ("worst min", "right"),
        ],
    )
    for g in groups:
        robust.add_row(
            g.group,
            str(g.done),
            sig3(g.robust["natural"]["median"]),
            sig3(g.robust["worst"]["median"]),
            sig3(g.robust["worst"]["min"]),
        )
    return Group(table, robust)


def print_results(
    sweep: Sweep,
    results: Sequence[TrialResult],
    groups: Sequence[GroupStats],
    console: Console,
) -> None:
    """Print the per-trial and aggregated tables (at most 80 columns wide).

    :param sweep: the sweep.
    :param results: :func:`collect`.
    :param groups: :func:`aggregate`.
    :param console: the rich console.
    """
    width = min(console.width, WIDTH)
    console.print(trials_table(sweep, results), width=width)
    console.print(aggregate_table(sweep, groups), width=width)
