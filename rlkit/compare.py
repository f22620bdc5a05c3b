"""``rlkit report``: one HTML page comparing runs and controllers, their clean KPIs, their regret
under the same attacks and their learning curves; runs that differ only by seed are one
controller, shown as mean and spread.

A run is read from its files only, so any agent's run directory works (SB3, native, offline):

* ``config.yaml`` (optional): the controller's name and the grouping of seeds;
* ``eval.json`` (optional): the clean return and KPIs;
* ``metrics.csv`` (optional): the learning curves;
* ``attacks/<suite>/results.json`` (optional): clean and attacked rows of each attack setting
  (``attack@eps``). A folder holding ``results.json`` itself (an attack report folder) counts as
  a run too.

Runs are grouped when their configs are equal but for ``seed`` and ``run`` (their folder);
each group is one controller, labelled by its agent (``ppo``, ``ppo 20 bins``, ``sac``), with the
run folder's name added when two groups would share a label. The page is ``OUT/report.html``
(self-contained: figures embedded, no JavaScript); the numbers behind it go to
``OUT/comparison.json`` and the figures beside it as PNG.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rlkit.config import ConfigError
from rlkit.htmlpage import Cell, badge, bullets, esc, figure, figure_to_png, num, page, table
from rlkit.io import atomic_write_bytes, atomic_write_json
from rlkit.summary import SHORT, headline_kpis, sig3

#: Learning-curve columns of metrics.csv, by panel: the first present in a run is used.
CURVES = {
    "evaluation return": ("eval/return_mean",),
    "training episode return": ("rollout/ep_rew_mean", "train/episode_return"),
    "normalised score": ("eval/normalized_score",),
}
#: Subfolders of a run directory that are never runs themselves.
NOT_RUNS = {"attacks", "checkpoints", "final", "tb", "replay"}
#: Config keys that do not make two runs different controllers.
UNGROUPED = ("seed", "run")
MAX_DEPTH = 4


@dataclass
class RunSummary:
    """What the comparison reads from one run directory.

    :param path: the run directory (or attack report folder).
    :param name: its folder name.
    :param config: config.yaml (or results.json's ``run_config``) as plain data, or None.
    :param seed: the run's seed, when its config says.
    :param steps: training steps, when its config says.
    :param clean: clean return and KPIs (``return`` and KPI names).
    :param clean_source: which file ``clean`` came from.
    :param attacks: ``"attack@eps"`` -> the attacked row of results.json.
    :param suites: the attack folders read (their results.json), in order.
    :param curves: panel -> (steps, values) from metrics.csv.
    :param reports: links to the run's own report.html files (suite -> path).
    :param clean_episodes: episodes behind ``clean`` (None: not recorded).
    :param attack_episodes: episodes of each attack setting (None: not recorded).
    :param attack_clean_return: the clean return of the attack evaluation (same episodes as the
        attacks), from the first results.json that has one.
    """

    path: Path
    name: str
    config: dict[str, Any] | None = None
    seed: int | None = None
    steps: int | None = None
    clean: dict[str, float] = field(default_factory=dict)
    clean_source: str = ""
    attacks: dict[str, dict[str, Any]] = field(default_factory=dict)
    suites: list[str] = field(default_factory=list)
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    reports: dict[str, Path] = field(default_factory=dict)
    clean_episodes: int | None = None
    attack_episodes: int | None = None
    attack_clean_return: float | None = None


@dataclass
class Controller:
    """Runs that differ only by seed.

    :param label: the name shown.
    :param runs: its runs.
    """

    label: str
    runs: list[RunSummary]

    @property
    def seeds(self) -> list[int | None]:
        """The seeds of its runs."""
        return [r.seed for r in self.runs]


# ----------------------------------------------------------------------------- reading runs
def is_run(path: Path) -> bool:
    """Whether ``path`` holds a run's files (config.yaml, metrics.csv, eval.json, results.json or
    attacks/*/results.json).

    :param path: a directory.
    """
    if not path.is_dir():
        return False
    names = ("config.yaml", "metrics.csv", "eval.json", "results.json")
    return any((path / n).is_file() for n in names) or any(path.glob("attacks/*/results.json"))


def discover(paths: Sequence[str | Path]) -> list[Path]:
    """The run directories named by ``paths``: each is a run, or a folder searched for runs (at
    most 4 levels deep; runs moved aside, ``*.old-*`` and ``.damaged-*``, are left out).

    :param paths: runs or folders of runs.
    :raises FileNotFoundError: a path that does not exist.
    :raises ConfigError: a path with no run in it.
    """
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"rlkit report: {path} does not exist")
        runs = list(_walk(path, 0))
        if not runs:
            raise ConfigError(
                f"{path}: no run directory in it (a run has config.yaml, metrics.csv, eval.json "
                "or attacks/<name>/results.json)"
            )
        found += [r for r in runs if r.resolve() not in {f.resolve() for f in found}]
    return found


def _walk(path: Path, depth: int) -> Iterator[Path]:
    if is_run(path):
        yield path
        return
    if depth >= MAX_DEPTH or not path.is_dir():
        return
    for child in sorted(path.iterdir()):
        hidden = child.name.startswith(".") or ".old-" in child.name
        if child.is_dir() and not hidden and child.name not in NOT_RUNS:
            yield from _walk(child, depth + 1)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_curves(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Learning curves of a ``metrics.csv``: for each panel of :data:`CURVES`, the first column
    present, as (steps, values) over the rows where it has a value.

    :param path: the metrics.csv file (missing: no curves).
    """
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    curves = {}
    for panel, candidates in CURVES.items():
        column = next((c for c in candidates if c in columns), None)
        if column is None:
            continue
        points = [(_float(r.get("step")), _float(r.get(column))) for r in rows]
        kept = sorted((s, v) for s, v in points if s is not None and v is not None)
        if kept:
            steps, values = zip(*kept, strict=True)
            curves[panel] = (np.asarray(steps), np.asarray(values))
    return curves


def _attack_rows(results: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for row in results.get("rows") or []:
        if isinstance(row, dict) and "attack" in row and "eps" in row:
            yield f"{row['attack']}@{float(row['eps']):g}", row


def read_run(path: str | Path) -> RunSummary:
    """Everything the comparison uses from one run directory (see the module docstring).

    :param path: the run directory, or a folder holding ``results.json``.
    """
    path = Path(path)
    run = RunSummary(path=path, name=path.name)
    if (path / "config.yaml").is_file():
        loaded = yaml.safe_load((path / "config.yaml").read_text())
        run.config = loaded if isinstance(loaded, dict) else None
    suites = sorted(path.glob("attacks/*/results.json"))
    if (path / "results.json").is_file():
        suites.insert(0, path / "results.json")
    for results_path in suites:
        results = _read_json(results_path)
        if results is None:
            continue
        suite = results_path.parent.name if results_path.parent != path else path.name
        run.suites.append(suite)
        if run.config is None and isinstance(results.get("run_config"), dict):
            run.config = results["run_config"]
        for key, row in _attack_rows(results):
            run.attacks.setdefault(key, row)
        if run.attack_clean_return is None:
            run.attack_clean_return = _float((results.get("clean") or {}).get("return"))
        episodes = (results.get("meta") or {}).get("episodes")
        if run.attack_episodes is None and isinstance(episodes, int):
            run.attack_episodes = episodes
        html = results_path.parent / "report.html"
        if html.is_file():
            run.reports[suite] = html
        if not run.clean and isinstance(results.get("clean"), dict):
            clean = results["clean"]
            run.clean = {k: v for k, v in clean.items() if _float(v) is not None}
            run.clean_source = str(results_path.relative_to(path))
            run.clean_episodes = run.attack_episodes
    evaluation = _read_json(path / "eval.json")
    if evaluation is not None and _float(evaluation.get("return_mean")) is not None:
        kpis = evaluation.get("kpis") or {}
        run.clean = {
            "return": float(evaluation["return_mean"]),
            **({"return_std": evaluation["return_std"]} if "return_std" in evaluation else {}),
            **{k: float(v) for k, v in kpis.items() if _float(v) is not None},
        }
        run.clean_source = "eval.json"
        episodes = evaluation.get("episodes")
        run.clean_episodes = episodes if isinstance(episodes, int) else None
    if run.config:
        seed = run.config.get("seed")
        run.seed = int(seed) if isinstance(seed, int) else None
        steps = (run.config.get("train") or {}).get("total_steps")
        run.steps = int(steps) if isinstance(steps, int) else None
    run.curves = read_curves(path / "metrics.csv")
    return run


# ----------------------------------------------------------------------------- grouping
def agent_label(config: Mapping[str, Any] | None) -> str | None:
    """``ppo``, ``ppo 20 bins``, ``sac (fine-tuned)``: the agent a config trains (None: no
    config).

    :param config: the run's config as plain data.
    """
    if not config:
        return None
    agent = config.get("agent") or {}
    env = config.get("env") or {}
    name = str(agent.get("name") or "agent").rsplit(":", 1)[-1]
    bins = env.get("discrete_bins")
    label = f"{name} {bins} bins" if bins else name
    return label + (" (fine-tuned)" if agent.get("init_from") else "")


def _group_key(run: RunSummary) -> str:
    if run.config is None:
        return f"path:{run.path.resolve()}"
    rest = {k: v for k, v in run.config.items() if k not in UNGROUPED}
    return json.dumps(rest, sort_keys=True, default=str)


def group_runs(runs: Sequence[RunSummary]) -> list[Controller]:
    """Controllers: runs with equal configs but for seed and folder, in the order first seen.

    A label shared by two different groups gets the first run's folder name added.

    :param runs: the runs.
    """
    groups: dict[str, list[RunSummary]] = {}
    for run in runs:
        groups.setdefault(_group_key(run), []).append(run)
    labels = {k: agent_label(g[0].config) or g[0].name for k, g in groups.items()}
    envs = {
        str(((g[0].config or {}).get("env") or {}).get("id"))
        for g in groups.values()
        if g[0].config
    }
    controllers = []
    for key, members in groups.items():
        label = labels[key]
        env = ((members[0].config or {}).get("env") or {}).get("id")
        if len(envs) > 1 and env:
            label += f" on {env}"
        if list(labels.values()).count(labels[key]) > 1:
            label += f" [{members[0].name}]"
        controllers.append(Controller(label, members))
    return controllers


# ----------------------------------------------------------------------------- statistics
@dataclass
class Spread:
    """Mean and spread of one number over a controller's runs (seeds).

    :param values: the per-run values (missing ones left out).
    """

    values: list[float]

    @property
    def n(self) -> int:
        """How many runs have the value."""
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """Mean over the runs (None: no run has it)."""
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Standard deviation over the runs (population; None below 2 runs)."""
        return float(np.std(self.values)) if self.n > 1 else None

    def to_dict(self) -> dict[str, Any]:
        """``mean``, ``std``, ``min``, ``max``, ``n``, ``values``."""
        return {
            "mean": self.mean,
            "std": self.std,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "n": self.n,
            "values": list(self.values),
        }


def spread(values: Sequence[Any]) -> Spread:
    """A :class:`Spread` of the numbers among ``values`` (None and non-numbers left out).

    :param values: per-run values.
    """
    return Spread([v for v in (_float(x) for x in values) if v is not None])


def spread_cell(s: Spread, signed: bool = False) -> Cell:
    """``mean ± std`` (several runs), the value (one run) or ``n/a``; min, max and count as the
    tooltip.

    :param s: the spread.
    :param signed: prefix positive means with ``+`` (regrets).
    """
    if s.mean is None:
        return Cell("n/a", "num")
    text = sig3(s.mean, signed=signed)
    if s.std is not None:
        text += f" ± {sig3(s.std)}"
    title = f"{s.n} run(s): " + ", ".join(f"{v:.6g}" for v in s.values)
    return Cell(text, "num", title)


def strongest_settings(keys: Sequence[str]) -> list[str]:
    """Each attack once, at its largest budget (``attack@eps`` keys, order kept).

    :param keys: ``attack@eps`` keys.
    """
    largest: dict[str, str] = {}
    for key in keys:
        attack, eps = key.rsplit("@", 1)
        if attack not in largest or float(eps) > float(largest[attack].rsplit("@", 1)[1]):
            largest[attack] = key
    return list(largest.values())


def attack_keys(controllers: Sequence[Controller]) -> list[str]:
    """Every ``attack@eps`` any run was evaluated under, in the order first seen.

    :param controllers: the controllers.
    """
    keys: dict[str, None] = {}
    for c in controllers:
        for run in c.runs:
            keys.update(dict.fromkeys(run.attacks))
    return list(keys)


def clean_kpis(controllers: Sequence[Controller]) -> list[str]:
    """The clean KPIs shown: return, then the headline KPIs any run has (at most 6).

    :param controllers: the controllers.
    """
    names: dict[str, None] = {}
    for c in controllers:
        for run in c.runs:
            names.update(dict.fromkeys(k for k in run.clean if k not in ("return", "return_std")))
    fake_row = {f"regret_{k}": 0.0 for k in names}
    return ["return", *headline_kpis([fake_row], limit=6)]


def regret_kpis(controllers: Sequence[Controller]) -> list[str]:
    """The regrets compared: the return, then the headline KPIs of the attack rows (at most 4).

    :param controllers: the controllers.
    """
    rows = [row for c in controllers for run in c.runs for row in run.attacks.values()]
    return ["return", *headline_kpis(rows, limit=4)] if rows else []


def comparison_data(controllers: Sequence[Controller]) -> dict[str, Any]:
    """The numbers of the page: per controller its runs, clean KPIs and regrets (spreads).

    :param controllers: the controllers.
    """
    keys = attack_keys(controllers)
    kpis = clean_kpis(controllers)
    regrets = regret_kpis(controllers)
    out: dict[str, Any] = {"controllers": {}, "attacks": keys}
    for c in controllers:
        entry: dict[str, Any] = {
            "runs": [str(r.path) for r in c.runs],
            "seeds": c.seeds,
            "clean": {k: spread([r.clean.get(k) for r in c.runs]).to_dict() for k in kpis},
            "regret": {},
            "mmd_p_value": {},
        }
        for key in keys:
            rows = [r.attacks.get(key) or {} for r in c.runs]
            entry["regret"][key] = {
                k: spread([row.get(f"regret_{k}") for row in rows]).to_dict() for k in regrets
            }
            entry["mmd_p_value"][key] = spread([row.get("mmd_p_value") for row in rows]).to_dict()
        out["controllers"][c.label] = entry
    return out


# ----------------------------------------------------------------------------- figures
def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def plot_learning_curves(controllers: Sequence[Controller]) -> bytes | None:
    """One panel per learning curve (:data:`CURVES`): each controller's mean over its runs on a
    common step grid, the band from the lowest to the highest run. None: no run has a curve.

    :param controllers: the controllers.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in CURVES if any(p in r.curves for c in controllers for r in c.runs)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for color, c in zip(_colors(len(controllers)), controllers, strict=True):
            curves = [r.curves[panel] for r in c.runs if panel in r.curves]
            if not curves:
                continue
            lo = max(float(s[0]) for s, _ in curves)
            hi = min(float(s[-1]) for s, _ in curves)
            if len(curves) == 1 or hi <= lo:
                steps, values = curves[0]
                ax.plot(steps, values, color=color, label=f"{c.label} (n={len(curves)})")
                continue
            grid = np.linspace(lo, hi, 100)
            stack = np.stack([np.interp(grid, s, v) for s, v in curves])
            ax.plot(grid, stack.mean(axis=0), color=color, label=f"{c.label} (n={len(curves)})")
            ax.fill_between(grid, stack.min(axis=0), stack.max(axis=0), color=color, alpha=0.2)
        ax.set_title(panel)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return figure_to_png(fig)


def plot_regrets(
    controllers: Sequence[Controller], keys: Sequence[str], kpis: Sequence[str]
) -> bytes | None:
    """Grouped bars: regret of each KPI (one panel each) under each attack setting, one bar per
    controller (its mean; error bars from the lowest to the highest run).

    :param controllers: the controllers.
    :param keys: the attack settings (``attack@eps``).
    :param kpis: the KPIs (``return`` and KPI names).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not keys or not kpis:
        return None
    fig, axes = plt.subplots(
        len(kpis),
        1,
        figsize=(min(11.0, 2.0 + 0.9 * len(keys) * max(len(controllers), 2)), 2.8 * len(kpis)),
        squeeze=False,
    )
    width = 0.8 / max(len(controllers), 1)
    x = np.arange(len(keys))
    for ax, kpi in zip(axes[:, 0], kpis, strict=True):
        for i, (color, c) in enumerate(zip(_colors(len(controllers)), controllers, strict=True)):
            stats = [
                spread([(r.attacks.get(k) or {}).get(f"regret_{kpi}") for r in c.runs])
                for k in keys
            ]
            means = np.array([s.mean if s.mean is not None else np.nan for s in stats])
            low = np.array(
                [means[j] - min(s.values) if s.n > 1 else 0 for j, s in enumerate(stats)]
            )
            high = np.array(
                [max(s.values) - means[j] if s.n > 1 else 0 for j, s in enumerate(stats)]
            )
            ax.bar(
                x + (i - (len(controllers) - 1) / 2) * width,
                np.nan_to_num(means),
                width,
                yerr=np.vstack([low, high]),
                color=color,
                label=c.label,
                capsize=2,
            )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xticks(x, list(keys), fontsize=8)
        ax.set_title(f"regret: {kpi}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return figure_to_png(fig)


# ----------------------------------------------------------------------------- the page
def _most(controllers: Sequence[Controller], key: str, kpi: str) -> list[tuple[str, float]]:
    ranked = []
    for c in controllers:
        s = spread([(r.attacks.get(key) or {}).get(f"regret_{kpi}") for r in c.runs])
        if s.mean is not None:
            ranked.append((c.label, s.mean))
    return sorted(ranked, key=lambda item: item[1])


def comparison_findings(controllers: Sequence[Controller]) -> list[str]:
    """Plain-language lines: a warning when the runs were evaluated on different numbers of
    episodes, the best clean return, and per attack (at its largest budget shared by two
    controllers or more) which controller loses the most and the least return.

    :param controllers: the controllers.
    """
    lines = []
    counts = sorted(
        {n for c in controllers for r in c.runs for n in (r.clean_episodes, r.attack_episodes) if n}
    )
    if len(counts) > 1:
        shown = ", ".join(map(str, counts))
        lines.append(
            f"The runs were evaluated on different numbers of episodes ({shown}): compare their "
            "numbers with care (see the runs table)."
        )
    clean = [(c.label, spread([r.clean.get("return") for r in c.runs])) for c in controllers]
    clean = [(label, s) for label, s in clean if s.mean is not None]
    if clean:
        label, best = max(clean, key=lambda item: item[1].mean or 0.0)
        runs = f" over {best.n} runs" if best.n > 1 else ""
        lines.append(f"Highest clean return: {label} ({sig3(best.mean)}{runs}).")
    per_attack: dict[str, list[str]] = {}
    for key in attack_keys(controllers):
        per_attack.setdefault(key.rsplit("@", 1)[0], []).append(key)
    for attack, keys in per_attack.items():
        shared = [k for k in keys if len(_most(controllers, k, "return")) >= 2]
        if not shared:
            continue
        key = max(shared, key=lambda k: float(k.rsplit("@", 1)[1]))
        ranked = _most(controllers, key, "return")
        lines.append(f"Under {attack} at eps {key.rsplit('@', 1)[1]}: {_losers(ranked)}.")
    return lines


def _losers(ranked: list[tuple[str, float]]) -> str:
    """Who loses the most and the least return, saying so when a controller loses none.

    :param ranked: ``(controller, mean regret of the return)``, most negative first.
    """
    from rlkit.attacks.findings import negligible

    (worst, w), (best, b) = ranked[0], ranked[-1]
    if w >= 0 or negligible(w, None):
        shown = ", ".join(f"{label} {sig3(v, signed=True)}" for label, v in ranked)
        return f"no controller loses return ({shown})"
    text = f"{worst} loses the most return ({sig3(w, signed=True)})"
    if b < 0 and not negligible(b, None):
        return f"{text}, {best} the least ({sig3(b, signed=True)})"
    verb = "keeps it" if negligible(b, None) else "gains"
    return f"{text}; {best} {verb} ({sig3(b, signed=True)})"


def _links(run: RunSummary, out: Path) -> Cell:
    links = [
        f'<a href="{esc(os.path.relpath(path.resolve(), out.resolve()))}">{esc(suite)}</a>'
        for suite, path in run.reports.items()
    ]
    return Cell(", ".join(links) or esc(", ".join(run.suites) or "none"), raw=True)


def runs_table(controllers: Sequence[Controller], out: Path) -> str:
    """One row per run: folder, controller, seed, training steps, clean return, its reports.

    :param controllers: the controllers.
    :param out: the page's folder (report links are relative to it).
    """
    body = [
        [
            str(r.path),
            c.label,
            "n/a" if r.seed is None else str(r.seed),
            num(r.steps),
            num(r.clean.get("return")),
            r.clean_source or "n/a",
            num(r.clean_episodes),
            num(r.attack_episodes),
            _links(r, out),
        ]
        for c in controllers
        for r in c.runs
    ]
    header = [
        "run",
        "controller",
        "seed",
        "steps",
        "clean return",
        "clean from",
        "clean episodes",
        "attack episodes",
        "attack reports",
    ]
    return table(header, body, table_id="runs")


def clean_table(controllers: Sequence[Controller]) -> str:
    """One row per controller: runs, then each clean KPI as mean ± std over its runs.

    :param controllers: the controllers.
    """
    kpis = clean_kpis(controllers)
    body = [
        [
            c.label,
            num(len(c.runs)),
            *[spread_cell(spread([r.clean.get(k) for r in c.runs])) for k in kpis],
        ]
        for c in controllers
    ]
    return table(["controller", "runs", *kpis], body, table_id="clean")


def regret_table(controllers: Sequence[Controller], kpi: str) -> str:
    """Rows: attack settings; columns: controllers; cells: regret of ``kpi`` (mean ± std).

    :param controllers: the controllers.
    :param kpi: ``return`` or a KPI name.
    """
    keys = attack_keys(controllers)
    body = [
        [
            key,
            *[
                spread_cell(
                    spread([(r.attacks.get(key) or {}).get(f"regret_{kpi}") for r in c.runs]),
                    signed=True,
                )
                for c in controllers
            ],
        ]
        for key in keys
    ]
    header = ["attack@eps", *[c.label for c in controllers]]
    caption = f"regret of {kpi} (attacked - clean)" + (f", {SHORT[kpi]}" if kpi in SHORT else "")
    return table(header, body, caption=caption, table_id=f"regret-{kpi}")


def worst_returns(run: RunSummary) -> dict[float, float]:
    """The lowest return over the run's attacks at each budget (the robust-RL worst case).

    :param run: the run.
    """
    worst: dict[float, float] = {}
    for key, row in run.attacks.items():
        value = _float(row.get("return"))
        regret = _float(row.get("regret_return"))
        if value is None and regret is not None and run.attack_clean_return is not None:
            value = run.attack_clean_return + regret
        if value is not None and "@" in key:
            eps = float(key.rsplit("@", 1)[1])
            worst[eps] = min(worst.get(eps, math.inf), value)
    return worst


def median_agent(controller: Controller, eps: float) -> RunSummary | None:
    """The run whose worst-case return at ``eps`` is the median of the controller's runs (the
    upper one of an even count), as robust-RL papers report.

    :param controller: the controller.
    :param eps: the budget.
    """
    ranked = sorted(
        (r for r in controller.runs if eps in worst_returns(r)), key=lambda r: worst_returns(r)[eps]
    )
    return ranked[len(ranked) // 2] if ranked else None


def robust_table(controllers: Sequence[Controller]) -> str:
    """The robust-RL protocol: per controller, the natural return (of the attack evaluation) and
    the worst case over the attacks at each budget, median (and lowest) over its runs, and the
    median agent.

    :param controllers: the controllers.
    """
    budgets = sorted({e for c in controllers for r in c.runs for e in worst_returns(r)})
    body = []
    for c in controllers:
        cells: list[Any] = [c.label, num(len(c.runs))]
        natural = [
            v
            for v in (
                r.attack_clean_return
                if r.attack_clean_return is not None
                else _float(r.clean.get("return"))
                for r in c.runs
            )
            if v is not None
        ]
        cells.append(num(float(np.median(natural)) if natural else None))
        for eps in budgets:
            values = [worst_returns(r)[eps] for r in c.runs if eps in worst_returns(r)]
            cells += [
                num(float(np.median(values)) if values else None),
                num(min(values) if values else None),
            ]
        best = median_agent(c, budgets[-1]) if budgets else None
        cells.append(best.name if best else "n/a")
        body.append(cells)
    header = ["controller", "runs", "natural (median)"]
    for eps in budgets:
        header += [f"worst@{eps:g} median", f"worst@{eps:g} min"]
    header.append(f"median agent (worst@{budgets[-1]:g})" if budgets else "median agent")
    caption = "return: clean, and the lowest over the attacks evaluated at each budget"
    return table(header, body, caption=caption, table_id="robust")


def stealth_table(controllers: Sequence[Controller], alpha: float = 0.05) -> str:
    """Rows: attack settings; columns: controllers; cells: MMD p-value and its verdict (the
    share of runs detected when there are several).

    :param controllers: the controllers.
    :param alpha: significance level of the verdicts.
    """
    keys = attack_keys(controllers)
    body = []
    for key in keys:
        cells: list[Any] = [key]
        for c in controllers:
            s = spread([(r.attacks.get(key) or {}).get("mmd_p_value") for r in c.runs])
            if s.mean is None:
                cells.append(badge("n/a", "na"))
                continue
            detected = sum(v < alpha for v in s.values)
            kind = "detected" if detected == s.n else "undetected" if detected == 0 else "na"
            word = {"detected": "detected", "undetected": "not detected"}.get(
                kind, f"{detected}/{s.n} detected"
            )
            cells.append(
                Cell(
                    f'{esc(sig3(s.mean))} <span class="badge {kind}">{esc(word)}</span>',
                    "num",
                    raw=True,
                )
            )
        body.append(cells)
    header = ["attack@eps", *[c.label for c in controllers]]
    caption = f"MMD p-value (mean over runs) and verdict at alpha {alpha:g}"
    return table(header, body, caption=caption, table_id="stealth")


def build_page(controllers: Sequence[Controller], out: Path, title: str) -> tuple[str, dict]:
    """The comparison page and the PNG figures it embeds.

    :param controllers: the controllers.
    :param out: the page's folder (for relative links).
    :param title: the page title.
    :return: (HTML, {file name: PNG bytes}).
    """
    n_runs = sum(len(c.runs) for c in controllers)
    body = ["<h2>What this comparison shows</h2>"]
    lines = comparison_findings(controllers)
    body.append(
        bullets([esc(line) for line in lines]) if lines else "<p>No numbers to compare.</p>"
    )
    body += ["<h2>Runs</h2>", runs_table(controllers, out)]
    body += [
        "<h2>Clean KPIs</h2>",
        '<p class="small">Mean ± standard deviation over the runs of a controller (its seeds); '
        "hover a cell for every run's value.</p>",
        clean_table(controllers),
    ]
    figures: dict[str, bytes] = {}
    keys = attack_keys(controllers)
    kpis = regret_kpis(controllers)
    if keys:
        body.append("<h2>Regret under the same attacks</h2>")
        body += [regret_table(controllers, k) for k in kpis[:2]]
        if kpis[2:]:
            body.append(
                "<details><summary>"
                + esc(f"regret of {', '.join(kpis[2:])}")
                + "</summary>"
                + "".join(regret_table(controllers, k) for k in kpis[2:])
                + "</details>"
            )
        strongest = strongest_settings(keys)
        png = plot_regrets(controllers, strongest, kpis[:2])
        if png:
            figures["regret_by_controller.png"] = png
            body.append(
                figure(
                    png,
                    "Regret of the return and of the first headline KPI under each attack at its "
                    "largest budget, one bar per controller (error bars: lowest to highest run).",
                )
            )
        body += [
            "<h2>Robust-RL protocol: natural return and worst case over attacks</h2>",
            robust_table(controllers),
        ]
        body += ["<h2>Stealth under the same attacks</h2>", stealth_table(controllers)]
    curves = plot_learning_curves(controllers)
    if curves:
        figures["learning_curves.png"] = curves
        body += [
            "<h2>Learning curves</h2>",
            figure(
                curves,
                "From each run's metrics.csv: mean over a controller's runs, band "
                "from the lowest to the highest run.",
            ),
        ]
    subtitle = f"{len(controllers)} controllers, {n_runs} runs"
    return page(title, body, subtitle=subtitle), figures


def write_controllers(
    controllers: Sequence[Controller], out: str | Path, title: str = "Comparison of runs"
) -> Path:
    """Write ``out/report.html``, ``out/comparison.json`` and the figures of ``controllers``;
    return the page's path.

    :param controllers: from :func:`group_runs`.
    :param out: the output folder (created).
    :param title: the page title.
    """
    out = Path(out)
    html, figures = build_page(controllers, out, title)
    out.mkdir(parents=True, exist_ok=True)
    for name, png in figures.items():
        atomic_write_bytes(out / name, png)
    atomic_write_json(out / "comparison.json", comparison_data(controllers))
    path = out / "report.html"
    atomic_write_bytes(path, html.encode())
    return path


def write_comparison(
    paths: Sequence[str | Path], out: str | Path, title: str = "Comparison of runs"
) -> Path:
    """Read the runs under ``paths`` and write their comparison (:func:`write_controllers`).

    :param paths: runs or folders of runs (see :func:`discover`).
    :param out: the output folder (created).
    :param title: the page title.
    """
    return write_controllers(group_runs([read_run(p) for p in discover(paths)]), out, title)


def report_command(args: argparse.Namespace) -> None:
    """``rlkit report RUN_OR_DIR ... --out DIR``: write the comparison page, print its path and
    what it shows.

    :param args: ``paths``, ``out``, ``title`` from :func:`rlkit.cli.build_parser`.
    """
    controllers = group_runs([read_run(p) for p in discover(args.paths)])
    path = write_controllers(controllers, args.out, args.title or "Comparison of runs")
    for line in comparison_findings(controllers):
        print(f"- {line}")
    runs = sum(len(c.runs) for c in controllers)
    print(
        f"report: {path} ({len(controllers)} controllers, {runs} runs; numbers in "
        f"{path.parent / 'comparison.json'})"
    )
