"""Robust training and learned adversaries, measured.

``fidelity``: the bifurcation paper's released learned adversary ("SAC adversary BScaledSum mean
diff 1-15-15") attacking their vanilla 20-bin PPO and their ATLA victim ("PPO agent 100 alts over
1000+200 2-3-21") on rlkit's CityLearn building, through rlkit's ``learned`` attack, beside the
authors' KPIs.csv columns and their saved adversarial-observation traces (``... obs-a.csv``).
The attack is their evaluation as written ("Evaluate Learned Adversary.ipynb"): scaled sum on
features 7-31 (calendar masked), ``max_perturbation = mean_diff / 2`` = ``eps: 0.5`` times
:func:`rlkit.attacks.learned.trace_scale` (statistic ``authors``) of the clean 20-bin PPO year,
the first observation of the year clean. Their tables: +0.1305 cost on the 20-bin PPO, -0.007 on
the ATLA victim.

Getting their files (nothing is downloaded at run time; keep them outside this repository)::

    git clone <the authors' repository> /tmp/authors

(RMC-AIvsAI/A-Novel-Bifurcation-Method-for-Observation-Perturbation-Attacks-on-Reinforcement-
Learning-Agents). Run::

    OMP_NUM_THREADS=1 python -m benchmarks.robust_training fidelity --authors-dir /tmp/authors

``grid``: grid controllers (e.g. the main job's PPO and its ATLA-trained successor) clean and
under random, PGD, bifurcation and learned-adversary attacks at one budget, calendar masked, on
the same test days::

    OMP_NUM_THREADS=1 python -m benchmarks.robust_training grid \\
        --victims vanilla=runs/demo,runs/grid/vanilla_s1,runs/grid/vanilla_s2 \\
                  adversarial=runs/grid/ppo_adversarial_s0,... sa=runs/grid/ppo_sa_s0,... \\
                  atla=runs/grid/atla \\
        --adversaries vs_vanilla=runs/grid/learned_adversary atla_own=runs/grid/atla

(the controllers: ``runs/robust_train.sh``-style ``rlkit train configs/grid/{demo,
ppo_adversarial,ppo_sa,atla}.yaml seed=S run.dir=...``; the adversary:
``configs/grid/learned_adversary.yaml``). Per kind: the median agent (by worst-case return at
0.05) with its regrets, and the median and minimum worst case over seeds.

``citylearn``: the authors' released 20-bin PPO and ATLA victims and rlkit's CityLearn
controllers, clean and under random, PGD and bifurcation at :data:`GRID_EPS` and the authors'
learned adversary, calendar masked, over the whole year. rlkit's controllers come in two sets,
each 87,590 victim steps (10 years), fine-tuned ones in 3 seeds, from-scratch ones in 2:

* from scratch (``vanilla``, ``adversarial``, ``sa``: ``configs/citylearn/ppo_discrete{,
  _adversarial,_sa}.yaml``). At this budget PPO barely learns the battery (clean cost 0.99 of
  the no-battery baseline, against 0.79 for the authors' 500 years), so their robustness says
  little;
* fine-tuned from the authors' 500-year PPO (``*_ft``: the same configs with ``agent.init_from``
  = their zip, and ``atla_ft``: ``configs/citylearn/atla_cpu.yaml`` from the same zip).

A year under a 100-step gradient attack takes minutes on one core, so each attack's evaluation
is cached in ``runs/robust_training_cache`` and a restarted command resumes. Controllers, then
the benchmark::

    PPO="/tmp/authors/20 bin PPO 500 results/default_PPO_citylearn_challenge_2022_phase_2_\\
    Building_6_20_bins_500.zip"   # one path, no break
    for s in 0 1 2; do
      for c in ppo_discrete:vanilla ppo_discrete_sa:sa ppo_discrete_adversarial:adversarial \\
               atla_cpu:atla; do
        OMP_NUM_THREADS=1 rlkit train configs/citylearn/${c%%:*}.yaml seed=$s \\
            "agent.init_from=$PPO" run.dir=runs/citylearn/ft_${c##*:}_s$s train.progress=false
      done
      # from scratch: the same without init_from nor atla_cpu, run.dir=runs/citylearn/ppo_*
    done
    OMP_NUM_THREADS=1 python -m benchmarks.robust_training citylearn --authors-dir /tmp/authors \\
        --victims vanilla_ft=runs/citylearn/ft_vanilla_s0,runs/citylearn/ft_vanilla_s1,... \\
                  adversarial_ft=... sa_ft=... atla_ft=... vanilla=runs/citylearn/ppo_vanilla,...

(the seed-0 from-scratch runs are ``runs/citylearn/ppo_adversarial``, ``ppo_sa`` and
``ppo_vanilla``, trained before the seed suffix was used). Pass every seed of a kind in one
command: the section is rewritten from the victims given.

Each command writes its section of ``benchmarks/results/robust_training.json`` (other sections
are kept) and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, write_result

NAME = "robust_training"
KPIS = ("cost_total", "daily_peak_average", "electricity_consumption_total", "ramping_average")
COLUMN = "SAC adversary BScaledSum mean diff 1-15-15"
ADVERSARY = f"Models/Adversary/{COLUMN}.zip"
VICTIMS = {
    "ppo20": (
        "20 bin PPO 500 results",
        "20 bin PPO 500 results/"
        "default_PPO_citylearn_challenge_2022_phase_2_Building_6_20_bins_500.zip",
    ),
    "atla": (
        "PPO agent 100 alts over 1000+200 2-3-21 results",
        "Models/ATLA/PPO agent 100 alts over 1000+200 2-3-21.zip",
    ),
}
CONFIG = "configs/citylearn/authors_ppo.yaml"
EVAL_EPS = 0.5  # their evaluation: max_perturbation = mean_diff / 2


def read_column(path: Path, column: str) -> dict[str, float]:
    """One column of the authors' KPIs.csv as KPI -> value.

    :param path: the KPIs.csv.
    :param column: the column name.
    """
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    index = rows[0].index(column)
    return {row[0]: float(row[index]) for row in rows[1:] if row[index]}


def trace_comparison(fed: np.ndarray, path: Path) -> dict[str, Any]:
    """How close rlkit's attacked observations are to the authors' saved trace.

    :param fed: observations the victim saw (T, n).
    :param path: their ``... obs-a.csv`` (index, n features, action).
    """
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    theirs = np.array([[float(v) for v in row[1 : 1 + fed.shape[1]]] for row in rows], np.float32)
    n = min(len(theirs), len(fed))
    diff = np.abs(fed[:n].astype(np.float32) - theirs[:n])
    return {
        "steps": n,
        "max_abs_diff": float(diff.max()),
        "rows_within_1e-5": float(np.mean(diff.max(axis=1) <= 1e-5)),
    }


def fidelity(authors_dir: Path) -> dict[str, Any]:
    """Both victims under the authors' learned adversary (see the module doc).

    :param authors_dir: their repository.
    """
    from rlkit.attacks.evaluation import evaluate_attacks
    from rlkit.attacks.learned import trace_scale
    from rlkit.config import AttackConfig
    from rlkit.envs.adversary import clean_trace
    from rlkit.loading import load_sb3_zip

    vanilla = load_sb3_zip(authors_dir / VICTIMS["ppo20"][1], config_path=CONFIG)
    env = vanilla.make_env()
    try:
        feature_scale = trace_scale(clean_trace(env, vanilla.act), "authors")
    finally:
        env.close()
    out: dict[str, Any] = {"feature_scale": [round(float(v), 8) for v in feature_scale]}
    attack = {
        "name": "learned",
        "label": "learned",
        "eps": [EVAL_EPS],
        "mask": ["calendar"],
        "settings": {
            "adversary": str(authors_dir / ADVERSARY),
            "feature_scale": feature_scale.tolist(),
        },
    }
    config = AttackConfig(attacks=[attack], episodes=1, stealth=False)
    for key, (folder, zip_path) in VICTIMS.items():
        loaded = load_sb3_zip(authors_dir / zip_path, config_path=CONFIG)
        start = time.perf_counter()
        result = evaluate_attacks(loaded.make_env, loaded.view, config, loaded.seed, progress=False)
        seconds = time.perf_counter() - start
        kpis = read_column(authors_dir / folder / "KPIs.csv", COLUMN)
        baseline = read_column(authors_dir / folder / "KPIs.csv", "baseline")
        clean, row = result["clean"], result["rows"][0]
        fed = np.asarray(result["traces"][("learned", EVAL_EPS)].fed_obs[0])
        out[key] = {
            "clean": {k: clean[k] for k in KPIS},
            "clean_theirs": {k: baseline[k] for k in KPIS},
            "regret": {k: row[f"regret_{k}"] for k in KPIS},
            "regret_theirs": {k: kpis[k] - baseline[k] for k in KPIS},
            "attack_success_rate": row.get("attack_success_rate"),
            "linf_max": row["linf_max"],
            "trace": trace_comparison(fed, authors_dir / folder / f"{COLUMN} obs-a.csv"),
            "seconds": round(seconds, 1),
        }
    return out


def print_fidelity(figures: dict[str, Any]) -> None:
    """The fidelity table on stdout.

    :param figures: what :func:`fidelity` returned.
    """
    print(f"learned adversary ({COLUMN}), eps {EVAL_EPS} x authors' trace scale")
    print("victim  KPI                            rlkit regret  authors' regret")
    for key in VICTIMS:
        fig = figures[key]
        for kpi in KPIS:
            print(f"{key:7} {kpi:30} {fig['regret'][kpi]:+12.4f}  {fig['regret_theirs'][kpi]:+.4f}")
        trace = fig["trace"]
        print(
            f"{key:7} trace vs theirs: max |diff| {trace['max_abs_diff']:.2e}, "
            f"{100 * trace['rows_within_1e-5']:.2f}% of {trace['steps']} steps within 1e-5"
        )


GRID_KPIS = ("cost_norm",)  # cost over the same days without batteries
GRID_EPS = (0.03, 0.05)


def grid_attacks(adversaries: dict[str, Path]) -> list[dict[str, Any]]:
    """Random, PGD, bifurcation and each learned adversary at :data:`GRID_EPS`, calendar
    features masked for all (a ``box`` adversary's perturbation scales with the budget: one
    trained at 0.05 acts at 0.03 with its actions times 0.03).

    :param adversaries: name -> adversary run.
    """
    attacks: list[dict[str, Any]] = [
        {"name": "random", "mask": ["calendar"], "settings": {"positive_only": True}},
        {"name": "pgd", "mask": ["calendar"], "settings": {"random_start": None}},
        {"name": "bifurcation", "mask": ["calendar"]},
    ]
    attacks += [
        {
            "name": "learned",
            "label": f"learned_{key}",
            "mask": ["calendar"],
            "settings": {"adversary": str(path)},
        }
        for key, path in adversaries.items()
    ]
    return attacks


def evaluate_run(
    run: Path,
    attacks: list[dict[str, Any]],
    episodes: int,
    kpis: Sequence[str] = GRID_KPIS,
    config_path: str | None = None,
) -> dict[str, Any]:
    """One controller clean and under every attack: regrets and the robust-RL worst cases.

    :param run: the run directory, or an SB3 zip (then ``config_path`` names its env).
    :param attacks: attack specs.
    :param episodes: episodes (test days; 1 for the deterministic CityLearn year).
    :param kpis: the KPIs reported.
    :param config_path: the env's config for a zip.
    """
    from rlkit.attacks.evaluation import evaluate_attacks
    from rlkit.config import AttackConfig
    from rlkit.loading import load_run, load_sb3_zip

    config = AttackConfig(attacks=attacks, eps=list(GRID_EPS), episodes=episodes, stealth=False)
    loaded = load_sb3_zip(run, config_path=config_path) if run.suffix == ".zip" else load_run(run)
    result = evaluate_attacks(loaded.make_env, loaded.view, config, loaded.seed, progress=False)
    clean = result["clean"]
    return {
        "run": str(run),
        "clean": {k: clean[k] for k in ("return", *kpis) if k in clean},
        "attacks": {
            f"{row['attack']}@{row['eps']:g}": {
                "return": row["return"],
                **{f"regret_{k}": row[f"regret_{k}"] for k in ("return", *kpis) if k in clean},
                "linf_max": row["linf_max"],
            }
            for row in result["rows"]
        },
        "worst": worst_of(result),
    }


def worst_of(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The robust-RL worst case per budget of an evaluation, ``{eps: {return, attack}}``.

    :param result: ``{"clean", "rows"}`` of :func:`rlkit.attacks.evaluation.evaluate_attacks`.
    """
    from rlkit.attacks.findings import worst_cases

    return {
        f"{c['eps']:g}": {"return": c["worst"], "attack": c["attack"]} for c in worst_cases(result)
    }


CACHE = Path("runs/robust_training_cache")


def cached_evaluate_run(
    run: Path,
    attacks: list[dict[str, Any]],
    episodes: int,
    kpis: Sequence[str] = GRID_KPIS,
    config_path: str | None = None,
) -> dict[str, Any]:
    """:func:`evaluate_run`, one attack at a time, each result kept in :data:`CACHE` so an
    interrupted benchmark resumes where it stopped (a CityLearn year under a gradient attack
    takes minutes per budget on one core). The key is every argument plus the modification time
    of the run's final model (or the zip), so a retrained controller is evaluated again. Each
    attack's evaluation repeats the clean run (deterministic: the same every time).

    :param run: the run directory or SB3 zip.
    :param attacks: attack specs.
    :param episodes: episodes per evaluation.
    :param kpis: the KPIs reported.
    :param config_path: the env's config for a zip.
    """
    import hashlib

    from rlkit.config import AttackConfig

    if not attacks:
        raise ValueError("cached_evaluate_run needs at least one attack")
    # the whole list at once (duplicate labels, bad settings), before the long work
    AttackConfig(attacks=attacks, eps=list(GRID_EPS), episodes=episodes, stealth=False)
    model = run if run.suffix == ".zip" else run / "final"
    stamp = model.stat().st_mtime_ns if model.exists() else None
    parts = []
    for spec in attacks:
        key = json.dumps([str(run), stamp, spec, episodes, list(kpis), config_path], default=str)
        path = CACHE / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
        if path.is_file():
            parts.append(json.loads(path.read_text())["result"])
            continue
        result = evaluate_run(run, [spec], episodes, kpis, config_path)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": json.loads(key), "result": result}, default=str))
        tmp.replace(path)
        parts.append(result)
    attacked = {name: row for part in parts for name, row in part["attacks"].items()}
    rows = [
        {"attack": name.rsplit("@", 1)[0], "eps": float(name.rsplit("@", 1)[1]), **row}
        for name, row in attacked.items()
    ]
    clean = parts[0]["clean"]
    return {
        "run": str(run),
        "clean": clean,
        "attacks": attacked,
        "worst": worst_of({"clean": clean, "rows": rows}),
    }


def compare_kinds(
    kinds: dict[str, list[Path]],
    attacks: list[dict[str, Any]],
    episodes: int,
    kpis: Sequence[str] = GRID_KPIS,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Each kind of controller (its seeds) clean and under attack; per kind the median agent
    (by worst-case return at the largest budget) and the spread over seeds.

    :param kinds: kind -> run directories or zips (one per seed).
    :param attacks: attack specs.
    :param episodes: episodes per evaluation.
    :param kpis: the KPIs reported.
    :param config_path: the env's config for zips.
    """
    key = f"{max(GRID_EPS):g}"
    out: dict[str, Any] = {}
    for kind, runs in kinds.items():
        seeds = [cached_evaluate_run(run, attacks, episodes, kpis, config_path) for run in runs]
        ranked = sorted(seeds, key=lambda r: r["worst"][key]["return"])
        natural = [r["clean"]["return"] for r in seeds]
        worst = [r["worst"][key]["return"] for r in seeds]
        out[kind] = {
            "seeds": seeds,
            "median_agent": ranked[len(ranked) // 2]["run"],
            "natural_median": float(np.median(natural)),
            "worst_median": float(np.median(worst)),
            "worst_min": float(np.min(worst)),
        }
    return out


def citylearn_attacks(authors_dir: Path) -> list[dict[str, Any]]:
    """Random, PGD and bifurcation at :data:`GRID_EPS`, the authors' learned adversary as they
    evaluated it (``fidelity``) and, at :data:`GRID_EPS` too, the same adversary's actions as a
    plain eps box (``learned_box``: ``obs + a * eps``), calendar features masked for all.

    :param authors_dir: their repository.
    """
    from rlkit.attacks.learned import trace_scale
    from rlkit.envs.adversary import clean_trace
    from rlkit.loading import load_sb3_zip

    vanilla = load_sb3_zip(authors_dir / VICTIMS["ppo20"][1], config_path=CONFIG)
    env = vanilla.make_env()
    try:
        scale = trace_scale(clean_trace(env, vanilla.act), "authors")
    finally:
        env.close()
    learned = {
        "name": "learned",
        "eps": [EVAL_EPS],
        "mask": ["calendar"],
        "settings": {"adversary": str(authors_dir / ADVERSARY), "feature_scale": scale.tolist()},
    }
    same_budget = {  # their adversary's actions as a plain eps box: the gradient attacks' budget
        "name": "learned",
        "label": "learned_box",
        "mask": ["calendar"],
        "settings": {"adversary": str(authors_dir / ADVERSARY), "perturbation": "box"},
    }
    return [*grid_attacks({}), learned, same_budget]


def print_kinds(figures: dict[str, Any]) -> None:
    """Per kind: the seeds' summary and the median agent's regrets.

    :param figures: what :func:`compare_kinds` returned.
    """
    for kind, fig in figures.items():
        median = next(r for r in fig["seeds"] if r["run"] == fig["median_agent"])
        print(
            f"{kind}: {len(fig['seeds'])} seed(s), natural median {fig['natural_median']:.1f}, "
            f"worst@{max(GRID_EPS):g} median {fig['worst_median']:.1f} (min "
            f"{fig['worst_min']:.1f}); median agent {fig['median_agent']}"
        )
        for attack, row in median["attacks"].items():
            cells = "  ".join(
                f"d {k.removeprefix('regret_')} {v:+.4f}" for k, v in row.items() if k != "linf_max"
            )
            print(f"  {attack:28} {cells}  linf {row['linf_max']:.3f}")


def markdown_kinds(figures: dict[str, Any], kpi: str, title: str) -> list[str]:
    """A markdown table of :func:`compare_kinds`: per kind, seeds, natural return, the median
    agent's regret of ``kpi`` under each attack, worst case at the largest budget.

    :param figures: what :func:`compare_kinds` returned.
    :param kpi: the regret column shown (``return`` or a KPI).
    :param title: the heading.
    """
    kinds = list(figures)
    attacks = list(figures[kinds[0]]["seeds"][0]["attacks"]) if kinds else []
    top = f"{max(GRID_EPS):g}"
    lines = [f"### {title}", "", "| attack@eps | " + " | ".join(kinds) + " |"]
    lines.append("|---" * (len(kinds) + 1) + "|")
    medians = {
        k: next(r for r in f["seeds"] if r["run"] == f["median_agent"]) for k, f in figures.items()
    }
    lines.append(
        "| natural return (median agent) | "
        + " | ".join(f"{medians[k]['clean']['return']:.1f}" for k in kinds)
        + " |"
    )
    if kpi != "return":
        lines.append(
            f"| clean {kpi} (median agent) | "
            + " | ".join(f"{medians[k]['clean'].get(kpi, float('nan')):.3f}" for k in kinds)
            + " |"
        )
    for attack in attacks:
        cells = [
            f"{medians[k]['attacks'].get(attack, {}).get(f'regret_{kpi}', float('nan')):+.3f}"
            for k in kinds
        ]
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    lines.append(
        f"| worst@{top} return, median over seeds (min) | "
        + " | ".join(
            f"{figures[k]['worst_median']:.1f} ({figures[k]['worst_min']:.1f})" for k in kinds
        )
        + " |"
    )
    lines.append("| seeds | " + " | ".join(str(len(figures[k]["seeds"])) for k in kinds) + " |")
    return [*lines, ""]


def _pairs(values: list[str]) -> dict[str, Path]:
    return {v.split("=", 1)[0]: Path(v.split("=", 1)[1]) for v in values}


def _kinds(values: list[str]) -> dict[str, list[Path]]:
    return {v.split("=", 1)[0]: [Path(p) for p in v.split("=", 1)[1].split(",")] for v in values}


def write_markdown() -> Path:
    """``benchmarks/results/robust_training.md`` from the grid and citylearn sections."""
    figures = json.loads((RESULTS / f"{NAME}.json").read_text())["figures"]
    lines = ["# Robust training: regrets of the median agent (attacked - clean)", ""]
    if "grid" in figures:
        lines += markdown_kinds(figures["grid"], "return", "Grid: regret of the return")
        lines += markdown_kinds(figures["grid"], "cost_norm", "Grid: regret of the cost")
    if "citylearn" in figures:
        city = figures["citylearn"]
        lines += markdown_kinds(city, "return", "CityLearn: regret of the return")
        lines += markdown_kinds(city, "cost_total", "CityLearn: regret of cost")
        lines += markdown_kinds(city, "daily_peak_average", "CityLearn: regret of daily peak")
    path = RESULTS / f"{NAME}.md"
    path.write_text("\n".join(lines))
    return path


def merge(section: str, figures: dict[str, Any], config: dict[str, Any]) -> Path:
    """Write ``section`` into results/robust_training.json, keeping the other sections.

    :param section: the section name.
    :param figures: its figures.
    :param config: its config.
    """
    path = RESULTS / f"{NAME}.json"
    old: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    all_figures = {**old.get("figures", {}), section: figures}
    all_config = {**old.get("config", {}), section: config}
    return write_result(NAME, all_figures, all_config)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``fidelity --authors-dir DIR`` or ``grid --victims NAME=RUN ...
    [--adversaries NAME=RUN ...]``.

    :param argv: arguments (default: sys.argv).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fid = sub.add_parser("fidelity", help="the authors' learned adversary on their victims")
    fid.add_argument("--authors-dir", type=Path, required=True, help="the authors' repository")
    grd = sub.add_parser("grid", help="grid controllers under gradient and learned attacks")
    grd.add_argument(
        "--victims", nargs="+", required=True, help="KIND=RUN[,RUN...] (one run per seed) ..."
    )
    grd.add_argument("--adversaries", nargs="*", default=[], help="NAME=ADVERSARY_RUN ...")
    grd.add_argument("--episodes", type=int, default=20, help="test days")
    cty = sub.add_parser("citylearn", help="the authors' vanilla and ATLA victims, and others")
    cty.add_argument("--authors-dir", type=Path, required=True, help="the authors' repository")
    cty.add_argument("--victims", nargs="*", default=[], help="more KIND=RUN[,RUN...]")
    args = parser.parse_args(argv)
    config: dict[str, Any]
    if args.command == "citylearn":
        kinds = {
            "vanilla_authors": [args.authors_dir / VICTIMS["ppo20"][1]],
            "atla_authors": [args.authors_dir / VICTIMS["atla"][1]],
            **_kinds(args.victims),
        }
        attacks = citylearn_attacks(args.authors_dir)
        figures = compare_kinds(kinds, attacks, 1, KPIS, CONFIG)
        print_kinds(figures)
        config = {"victims": {k: [str(p) for p in v] for k, v in kinds.items()}}
        print(f"wrote {merge('citylearn', figures, {**config, 'gradient_eps': list(GRID_EPS)})}")
        write_markdown()
    if args.command == "grid":
        victims, adversaries = _kinds(args.victims), _pairs(args.adversaries)
        figures = compare_kinds(victims, grid_attacks(adversaries), args.episodes)
        print_kinds(figures)
        config = {
            "victims": {k: [str(p) for p in v] for k, v in victims.items()},
            "gradient_eps": list(GRID_EPS),
            "adversaries": {k: str(v) for k, v in adversaries.items()},
            "episodes": args.episodes,
        }
        print(f"wrote {merge('grid', figures, config)}")
        write_markdown()
    if args.command == "fidelity":
        figures = fidelity(args.authors_dir)
        print_fidelity(figures)
        path = merge("fidelity", figures, {"eps": EVAL_EPS, "statistic": "authors"})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
