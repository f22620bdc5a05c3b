"""The ``rlkit`` command line: train, evaluate, info, config-help."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from pydantic import BaseModel

from rlkit.config import ConfigError, ExperimentConfig
from rlkit.registry import UnknownNameError


def config_help(model: type[BaseModel] = ExperimentConfig, prefix: str = "") -> list[str]:
    """One line per config key, from the models' field descriptions (the CLI help of configs).

    :param model: the model to describe.
    :param prefix: dotted prefix of ``model``.
    """
    lines = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = info.annotation
        nested = [
            a
            for a in (annotation, *getattr(annotation, "__args__", ()))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if nested:
            lines.append(
                f"{key}:  {(info.description or nested[0].__doc__ or '').strip().splitlines()[0]}"
            )
            lines.extend(config_help(nested[0], key + "."))
            continue
        default = (
            "required"
            if info.is_required()
            else f"default {info.get_default(call_default_factory=True)!r}"
        )
        lines.append(f"  {key} ({default}): {info.description or ''}")
    return lines


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1.

    :param text: the argument.
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rlkit``."""
    parser = _Parser(
        prog="rlkit",
        description=(
            "Train RL agents from YAML configs, evaluate them clean and under observation attacks."
        ),
        epilog="Config keys (override any with key.sub=value):\n" + "\n".join(config_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p_train = sub.add_parser(
        "train", help="train from a config (re-running the same command resumes)"
    )
    p_train.add_argument("config", help="YAML config file")
    p_train.add_argument(
        "overrides", nargs="*", help="key.sub=value overrides, e.g. train.total_steps=2000 seed=3"
    )
    p_train.add_argument(
        "--fresh", action="store_true", help="move an existing run directory aside and start over"
    )

    p_eval = sub.add_parser(
        "evaluate", help="evaluate a run (or an SB3 zip) clean and under attacks"
    )
    p_eval.add_argument(
        "targets",
        nargs="*",
        metavar="RUN_DIR | key=value",
        help=(
            "run directory made by `rlkit train`; with --model --config, key.sub=value overrides "
            "of that config"
        ),
    )
    p_eval.add_argument(
        "--episodes", type=positive_int, help="episodes (default: eval.episodes / attack.episodes)"
    )
    p_eval.add_argument(
        "--attack",
        help="attack config YAML (an `attack:` section), e.g. configs/attacks/bifurcation.yaml",
    )
    p_eval.add_argument(
        "--eps", help="comma-separated budgets overriding the attack config, e.g. 0.01,0.03,0.05"
    )
    p_eval.add_argument(
        "--out", help="output folder (default RUN_DIR/attacks/<attack config stem>)"
    )
    p_eval.add_argument(
        "--model", help="a stable-baselines3 .zip trained elsewhere (trusted files only)"
    )
    p_eval.add_argument(
        "--algo", help="SB3 algorithm of --model (sac, ppo, ...); read from the zip if omitted"
    )
    p_eval.add_argument("--env", help="env id or registered name for --model")
    p_eval.add_argument(
        "--config",
        help=(
            "for --model: an experiment config whose env section describes the env (kwargs, bins, "
            "wrappers)"
        ),
    )
    p_eval.add_argument(
        "--vecnormalize", help="VecNormalize statistics (.pkl, trusted) saved with --model"
    )
    p_eval.add_argument("--seed", type=int, default=0, help="first episode seed for --model")
    p_eval.add_argument(
        "--permutations", type=int, help="MMD permutations (default from the attack config)"
    )

    p_report = sub.add_parser(
        "report", help="one HTML page comparing runs: clean KPIs, regrets, learning curves"
    )
    p_report.add_argument(
        "paths", nargs="+", metavar="RUN_OR_DIR", help="run directories, or folders of runs"
    )
    p_report.add_argument("--out", required=True, help="output folder (report.html goes there)")
    p_report.add_argument("--title", help="page title (default: Comparison of runs)")

    from rlkit.sweep.spec import sweep_help

    p_sweep = sub.add_parser(
        "sweep",
        help="run a sweep (seeds x configs x attack budgets) on Ray Tune; re-running resumes",
        epilog="Sweep file keys:\n" + "\n".join(sweep_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_sweep.add_argument("sweep", help="sweep YAML, e.g. configs/sweeps/pendulum_sac_lr.yaml")
    p_sweep.add_argument(
        "--address", help="an existing Ray cluster: auto or ray://HOST:10001 (default: local Ray)"
    )
    p_sweep.add_argument(
        "--max-concurrent", type=positive_int, help="trials at once (default: as CPUs allow)"
    )
    p_sweep.add_argument(
        "--sequential", action="store_true", help="run trials one after another here, no Ray"
    )

    from rlkit.datasets.cli import add_parser as add_dataset_parser

    add_dataset_parser(sub)

    p_info = sub.add_parser(
        "info", help="list registered envs, agents, attacks, loops and data sources"
    )
    p_info.add_argument(
        "--all", action="store_true", help="list every task of the env families (dmc/, ...)"
    )
    p_help = sub.add_parser("config-help", help="every config key with its default and meaning")
    p_help.add_argument("--env", help="also list env.kwargs of this registered env (e.g. grid)")
    p_help.add_argument("--agent", help="also list agent.kwargs of this agent (e.g. sac, drqv2)")
    p_help.add_argument("--attack", help="also list the settings of this attack (e.g. bifurcation)")
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with rlkit's one-line errors (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"rlkit: error: {self.prog}: {message} (see {self.prog} --help)\n")


def cmd_info(every_task: bool = False) -> None:
    """Print the registries; an env family (``dmc/...``) is one line unless ``every_task``.

    :param every_task: list each task of the env families.
    """
    from rlkit.catalog import attack_description
    from rlkit.registry import AGENTS, ATTACKS, DATASETS, ENVS, LOOPS

    for title, registry in (
        ("envs", ENVS),
        ("agents", AGENTS),
        ("attacks", ATTACKS),
        ("loops", LOOPS),
        ("data sources", DATASETS),
    ):
        print(f"{title}:")
        families: dict[tuple[str, str], list[str]] = {}
        for name, entry in registry.items():
            if "family" in entry.extra and not every_task:
                families.setdefault(entry.extra["family"], []).append(name.split("/", 1)[1])
                continue
            description = attack_description(entry) if registry is ATTACKS else entry.description
            loop = f" [loop {entry.extra['loop']}]" if "loop" in entry.extra else ""
            print(f"  {name:<20} {description}{loop}")
        for (family, label), tasks in families.items():
            shown = ", ".join(tasks[:3]) + (", ..." if len(tasks) > 3 else "")
            print(
                f"  {family + '/TASK':<20} {label}, {len(tasks)} tasks ({shown}; --all lists them)"
            )
    print("  (any gymnasium id also works as env.id, e.g. Pendulum-v1, CartPole-v1, Hopper-v5;")
    print("   a plug-in agent or attack is named by its class path, package.module:Class)")


def cmd_config_help(args: argparse.Namespace) -> None:
    """Every config key, then the parameters of the env, agent or attack asked for."""
    from rlkit.params import model_help
    from rlkit.registry import AGENTS, ATTACKS, ENVS

    print("\n".join(config_help()))
    for flag, registry, prefix in (
        ("env", ENVS, "env.kwargs."),
        ("agent", AGENTS, "agent.kwargs."),
        ("attack", ATTACKS, "attack.attacks.N.settings."),
    ):
        name = getattr(args, flag)
        if name:
            model = registry.get(name).params_model()
            print(f"{prefix[:-1]} of {flag} {name!r}:")
            print(
                "\n".join(model_help(model, prefix))
                if model
                else "  (not described: any keyword argument)"
            )


def cmd_evaluate(args: argparse.Namespace) -> None:
    """``rlkit evaluate``: clean evaluation, then attacks when ``--attack`` is given."""
    from rlkit.evaluate_cli import evaluate_command

    evaluate_command(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rlkit`` console script; returns the exit status.

    :param argv: arguments (default ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "info":
            cmd_info(args.all)
        elif args.command == "config-help":
            cmd_config_help(args)
        elif args.command == "train":
            from rlkit.train import train

            run = train(args.config, args.overrides, fresh=args.fresh)
            print(
                f"run directory: {run.path}  (final model in {run.final}, "
                f"evaluation in {run.eval_path})"
            )
        elif args.command == "evaluate":
            cmd_evaluate(args)
        elif args.command == "report":
            from rlkit.compare import report_command

            report_command(args)
        elif args.command == "sweep":
            from rlkit.sweep import sweep_command

            return sweep_command(args.sweep, args.address, args.max_concurrent, args.sequential)
        elif args.command == "dataset":
            from rlkit.datasets.cli import run_command

            run_command(args)
    except (ConfigError, UnknownNameError) as err:
        print(f"rlkit: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"rlkit: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
