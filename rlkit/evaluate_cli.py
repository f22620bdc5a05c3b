"""``rlkit evaluate``: clean evaluation of a run (or SB3 zip), and evaluation under attacks."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from rlkit.config import ConfigError, load_attack_config, parse_eps
from rlkit.evaluation import EVAL_SEED_OFFSET, evaluate
from rlkit.io import atomic_write_json
from rlkit.loading import LoadedPolicy, load_run, load_sb3_zip
from rlkit.summary import print_attacks, print_clean


def split_targets(targets: list[str]) -> tuple[str | None, list[str]]:
    """Split the positional arguments into the run directory and ``key=value`` overrides.

    :param targets: what followed ``rlkit evaluate``.
    """
    overrides = [t for t in targets if "=" in t]
    runs = [t for t in targets if "=" not in t]
    if len(runs) > 1:
        raise ConfigError(f"expected one run directory, got {len(runs)}: {' '.join(runs)}")
    return (runs[0] if runs else None), overrides


def _load(args: argparse.Namespace) -> LoadedPolicy:
    if args.model:
        if args.run_dir:
            raise ConfigError(
                f"give a run directory or --model, not both (got {args.run_dir} and "
                f"--model {args.model})"
            )
        return load_sb3_zip(
            args.model,
            args.env,
            args.algo,
            args.vecnormalize,
            args.seed,
            args.config,
            args.overrides,
        )
    if args.overrides or args.config:
        raise ConfigError(
            "--config and key=value overrides describe the env of --model; a run directory has "
            "its own config"
        )
    if not args.run_dir:
        raise ConfigError("give a run directory (or --model FILE.zip --env ENV_ID | --config FILE)")
    return load_run(args.run_dir)


def evaluate_command(args: argparse.Namespace) -> None:
    """Run ``rlkit evaluate`` with parsed arguments.

    :param args: from :func:`rlkit.cli.build_parser`.
    """
    console = Console()
    args.run_dir, args.overrides = split_targets(args.targets)
    eps = parse_eps(args.eps) if args.eps else None
    attack_config = None
    if args.attack:
        attack_config = load_attack_config(args.attack, eps)
    loaded = _load(args)
    base_seed = loaded.seed + EVAL_SEED_OFFSET
    if attack_config is None:
        episodes = args.episodes or (loaded.config.eval.episodes if loaded.config else 10)
        env = loaded.make_env()
        result = evaluate(env, loaded.act, episodes, base_seed)
        env.close()
        print_clean(result, console)
        out = Path(args.out) if args.out else (Path(args.run_dir) if args.run_dir else Path("."))
        atomic_write_json(out / "eval.json", result)
        console.print(f"written: {out / 'eval.json'}")
        return
    from rlkit.attacks.evaluation import evaluate_attacks
    from rlkit.attacks.report import write_report

    if args.permutations:
        attack_config = attack_config.model_copy(update={"permutations": args.permutations})
    results = evaluate_attacks(
        loaded.make_env, loaded.view, attack_config, base_seed, args.episodes
    )
    stem = Path(args.attack).stem
    if args.out:
        out = Path(args.out)
    elif args.run_dir:
        out = Path(args.run_dir) / "attacks" / stem
    else:
        out = Path(f"attacks_{Path(args.model).stem}_{stem}")
    source = args.run_dir or args.model
    context: dict[str, object] = {
        "source": str(source),
        "attack_config": attack_config.model_dump(mode="json"),
    }
    if loaded.config is not None:
        context["run_config"] = loaded.config.model_dump(mode="json")
    report = write_report(
        results, out, f"Attacks on {source}", context, attack_config.plot_features
    )
    print_attacks(results, console)
    print_findings(results, console)
    console.print(
        f"report: {out / 'report.html'} (open it in a browser; also {report.name})\n"
        f"results: {out / 'results.csv'}, {out / 'results.json'}; plots: {out}/*.png"
    )


def print_findings(results: dict[str, object], console: Console) -> None:
    """Print what the evaluation shows in plain words, short (:func:`rlkit.attacks.findings.
    summary`; report.html has a line per attack too).

    :param results: the output of :func:`rlkit.attacks.evaluation.evaluate_attacks`.
    :param console: the rich console.
    """
    from rich.markup import escape

    from rlkit.attacks.findings import summary

    lines = summary(results)
    if lines:
        console.print("[bold]what this evaluation shows[/bold]")
        for line in lines:
            console.print(f"- {escape(line)}", overflow="fold")
