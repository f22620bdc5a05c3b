"""``rlkit dataset``: collect datasets from trained runs, inspect, convert and combine them.

::

    rlkit dataset collect RUN_DIR --episodes N [--noise S] [--checkpoint NAME]
                          [--level policy|random|replay] [--until-step N] [--seed S]
                          --out ID [--root DIR] [--overwrite]
    rlkit dataset info ID_OR_PATH [--plot PNG] [--env ENV_ID]
    rlkit dataset convert FILE.hdf5 --out ID [--env ENV_ID] [--root DIR] [--overwrite]
    rlkit dataset combine A B [...] --out ID [--root DIR] [--overwrite]

Datasets are written as Minari datasets under ``--root`` (default ``$MINARI_DATASETS_PATH``, else
``~/.minari/datasets``). Bad input raises :class:`~rlkit.datasets.DatasetError` (a ConfigError):
``rlkit`` prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.config import ConfigError

LEVELS = ("policy", "random", "replay")


def _positive_int(text: str) -> int:
    from rlkit.cli import positive_int

    return positive_int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_parser(sub: Any) -> None:
    """Add the ``dataset`` command group to ``rlkit``'s subcommands.

    :param sub: the ``add_subparsers`` object of the ``rlkit`` parser.
    """
    parser = sub.add_parser(
        "dataset", help="offline datasets: collect from a run, inspect, convert, combine"
    )
    commands = parser.add_subparsers(
        dest="dataset_command", required=True, parser_class=type(parser)
    )

    collect = commands.add_parser(
        "collect", help="collect a Minari dataset from a trained run (policy, random or replay)"
    )
    collect.add_argument("run_dir", metavar="RUN_DIR", help="run directory made by `rlkit train`")
    collect.add_argument(
        "--episodes",
        type=_positive_int,
        metavar="N",
        help="episodes to collect (levels policy and random)",
    )
    collect.add_argument(
        "--noise",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="Gaussian action noise, std as a fraction of half the action range (default 0)",
    )
    collect.add_argument(
        "--checkpoint",
        metavar="NAME",
        help="checkpoint folder under RUN_DIR/checkpoints (e.g. step_000050000) instead of final/; "
        "for --level replay the default is the latest checkpoint",
    )
    collect.add_argument(
        "--level",
        choices=LEVELS,
        default="policy",
        help="policy: the run's policy (+ noise); random: uniform actions; replay: the "
        "checkpoint's replay buffer (medium-replay). Default policy",
    )
    collect.add_argument(
        "--until-step",
        type=_positive_int,
        metavar="N",
        help="--level replay: only the first N env steps",
    )
    collect.add_argument(
        "--seed", type=int, default=0, metavar="S", help="first episode seed (default 0)"
    )
    _add_output(collect)
    collect.add_argument("--no-progress", action="store_true", help="no progress bar")

    info = commands.add_parser(
        "info", help="transitions, episodes, returns, scores and spaces of a dataset"
    )
    info.add_argument("dataset", metavar="ID_OR_PATH", help="Minari id or folder, or HDF5 file")
    info.add_argument(
        "--plot", help="return histogram PNG (default: next to the dataset)", metavar="PNG"
    )
    info.add_argument("--env", help="env id for the reference scores (default: the dataset's)")

    convert = commands.add_parser("convert", help="convert a D4RL-format HDF5 file to Minari")
    convert.add_argument("file", metavar="FILE", help="D4RL-format .hdf5/.h5 file")
    convert.add_argument(
        "--env",
        help="env id (gymnasium id or registered name) whose spaces the data has; default: "
        "spaces inferred from the data",
    )
    _add_output(convert)

    combine = commands.add_parser(
        "combine", help="concatenate datasets into one (e.g. medium + expert = medium-expert)"
    )
    combine.add_argument("datasets", nargs="+", metavar="DATASET", help="ids, folders or files")
    _add_output(combine)


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="ID", help="Minari id to write, e.g. x-v0")
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="datasets root (default $MINARI_DATASETS_PATH or ~/.minari/datasets)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset")


def run_command(args: argparse.Namespace) -> None:
    """Run the ``rlkit dataset`` subcommand ``args`` describes.

    :param args: parsed arguments.
    :raises ConfigError: bad input (DatasetError included).
    """
    command = {
        "collect": cmd_collect,
        "info": cmd_info,
        "convert": cmd_convert,
        "combine": cmd_combine,
    }[args.dataset_command]
    command(args)


# ------------------------------------------------------------------------------------ collect


def cmd_collect(args: argparse.Namespace) -> None:
    """``rlkit dataset collect``.

    :param args: parsed arguments.
    """
    from rlkit.config import load_config
    from rlkit.datasets.collect import (
        collect_policy,
        collect_random,
        collect_replay,
        reference_returns,
    )
    from rlkit.datasets.minari_io import check_dataset_id, write_minari
    from rlkit.datasets.readers import load_dataset
    from rlkit.envs import make_env
    from rlkit.rundir import RunDir

    check_dataset_id(args.out)
    run = RunDir(args.run_dir)
    if not run.config_path.is_file():
        raise ConfigError(f"{run.path}: not an rlkit run directory (no config.yaml)")
    config = load_config(run.config_path)
    level = args.level
    if level == "replay":
        if args.episodes is not None or args.noise:
            raise ConfigError("--level replay takes no --episodes or --noise (it reads a buffer)")
        checkpoint = args.checkpoint
        if checkpoint is None:
            latest = run.latest_checkpoint()
            if latest is None:
                raise ConfigError(f"{run.path}: has no checkpoint to read a replay buffer from")
            checkpoint = latest.name
    else:
        if args.episodes is None:
            raise ConfigError(f"--level {level} needs --episodes N")
        if args.until_step is not None:
            raise ConfigError("--until-step applies to --level replay only")
        checkpoint = args.checkpoint
    _check_free(args)
    progress = not args.no_progress
    rollout_returns = None
    if level == "policy":
        assert args.episodes is not None
        episodes = collect_policy(
            run.path, args.episodes, args.noise, args.seed, checkpoint, progress
        )
        if checkpoint is None and args.noise == 0 and run.final.is_dir():
            rollout_returns = np.array([e.total_reward for e in episodes])
    elif level == "random":
        if args.noise or checkpoint:
            raise ConfigError("--level random takes no --noise or --checkpoint")
        assert args.episodes is not None
        episodes = collect_random(config.env, args.episodes, args.seed, progress)
    else:
        episodes = collect_replay(run.path, checkpoint, args.until_step)
    ref_min, ref_max, how = reference_returns(run.path, rollout_returns)
    env = make_env(config.env)
    try:
        spaces = env.observation_space, env.action_space
    finally:
        env.close()
    source = "final/" if checkpoint is None else f"checkpoints/{checkpoint}"
    facts = {
        "run_dir": str(run.path),
        "level": level,
        "checkpoint": checkpoint,
        "noise": args.noise,
        "seed": args.seed,
        "until_step": args.until_step,
        "agent": config.agent.name,
        "env_config": config.env.model_dump(),
        "reference_scores": how,
    }
    description = {
        "policy": f"{config.agent.name} policy from {source}, action noise {args.noise}, "
        f"{len(episodes)} episodes from seed {args.seed}",
        "random": f"uniform random actions, {len(episodes)} episodes from seed {args.seed}",
        "replay": f"every transition in the replay buffer of {source}"
        + (f" up to step {args.until_step}" if args.until_step else ""),
    }[level]
    path = write_minari(
        args.out,
        episodes,
        *spaces,
        env_id=config.env.id,
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        algorithm_name=f"rlkit {config.agent.name} ({level})",
        description=f"{description}; collected from {run.path}",
        root=Path(args.root) if args.root else None,
        overwrite=args.overwrite,
        extra_metadata=_jsonable(facts),
    )
    print(f"wrote {path}")
    for key, text in how.items():
        value = ref_min if key == "ref_min_score" else ref_max
        print(f"  {key} = {value:.4g}: {text}")
    print("\n".join(describe(load_dataset(path))))


def _check_free(args: argparse.Namespace) -> None:
    """Refuse early (before collecting anything) an ``--out`` id that exists."""
    from rlkit.datasets.minari_io import datasets_root

    root = Path(args.root) if args.root else datasets_root()
    if (root / args.out).exists() and not args.overwrite:
        raise ConfigError(
            f"{root / args.out}: a dataset with id {args.out!r} already exists; choose another "
            "--out (e.g. bump -vN) or pass --overwrite"
        )


# --------------------------------------------------------------------------------------- info


def describe(transitions: Any, env_id: str | None = None) -> list[str]:
    """Lines describing a dataset: sizes, returns, normalised score, spaces, flags, drops.

    :param transitions: a :class:`~rlkit.datasets.Transitions`.
    :param env_id: env for the reference scores (default: the dataset's).
    """
    from rlkit.datasets.scores import D4RL_REFERENCE, normalized_score, reference_scores

    meta = transitions.metadata
    returns = transitions.episode_returns()
    partial = len(meta.get("partial_episodes", []))
    lines = [
        f"dataset       {meta.get('source')} ({meta.get('format')}, {meta.get('name')})",
        f"env           {env_id or meta.get('env_id') or 'unknown'}",
        f"transitions   {len(transitions)}",
        f"episodes      {len(returns)} complete"
        + (f" (+{partial} cut by the end of the data, not counted below)" if partial else ""),
    ]
    if len(returns):
        lines.append(
            f"return        mean {returns.mean():.2f}  std {returns.std():.2f}  "
            f"min {returns.min():.2f}  max {returns.max():.2f}"
        )
    ref = reference_scores(env_id, meta)
    if ref is not None and len(returns) and ref[0] != ref[1]:
        scores = normalized_score(returns, ref)
        origin = "D4RL" if ref in D4RL_REFERENCE.values() else "the dataset"
        lines.append(
            f"normalised    mean {scores.mean():.1f}  std {scores.std():.1f}  (0 = {ref[0]:.4g}, "
            f"100 = {ref[1]:.4g}; reference returns from {origin})"
        )
    else:
        lines.append("normalised    unknown (no reference scores)")
    for name, array, key in (
        ("observations", transitions.observations, "observation_space"),
        ("actions", transitions.actions, "action_space"),
    ):
        space = meta.get(key)
        lines.append(
            f"{name:<13} {tuple(array.shape[1:])} {array.dtype}"
            + (f"  space {space}" if space is not None else "  (space not recorded)")
        )
    lines.append(
        f"terminals     {int(transitions.terminals.sum())}  timeouts "
        f"{int(transitions.timeouts.sum())}"
        + (f" ({partial} of them the end of the data)" if partial else "")
    )
    dropped = int(meta.get("dropped", 0))
    lines.append(
        f"dropped       {dropped}" + (f": {meta.get('dropped_reason')}" if dropped else "")
    )
    lines += [f"note          {note}" for note in meta.get("notes", [])]
    return lines


def plot_returns(returns: np.ndarray, path: Path, title: str) -> None:
    """Write a histogram of episode returns as a PNG (atomically).

    :param returns: episode returns.
    :param path: the PNG file.
    :param title: the plot's title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rlkit.io import atomic_write_bytes

    figure = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if len(returns):
        axes.hist(returns, bins=min(50, max(5, len(returns) // 2)), color="tab:blue")
    else:
        axes.text(0.5, 0.5, "no complete episode", ha="center", va="center")
    axes.set_xlabel("episode return")
    axes.set_ylabel("episodes")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(path, buffer.getvalue())


def default_plot_path(transitions: Any) -> Path:
    """Where ``rlkit dataset info`` puts the histogram: beside a file, inside a Minari folder.

    :param transitions: a loaded dataset.
    """
    source = Path(str(transitions.metadata.get("source")))
    if transitions.metadata.get("format") == "minari":
        return source / "returns.png"
    return source.with_name(f"{source.stem}_returns.png")


def cmd_info(args: argparse.Namespace) -> None:
    """``rlkit dataset info``.

    :param args: parsed arguments.
    """
    from rlkit.datasets.readers import load_dataset

    transitions = load_dataset(args.dataset)
    print("\n".join(describe(transitions, args.env)))
    path = Path(args.plot) if args.plot else default_plot_path(transitions)
    try:
        plot_returns(
            transitions.episode_returns(), path, f"{transitions.metadata.get('name')}: returns"
        )
    except OSError as err:
        raise ConfigError(f"{path}: cannot write the plot ({err}); pass --plot PNG") from None
    print(f"plot          {path}")


# ---------------------------------------------------------------------------- convert, combine


def infer_spaces(episodes: list[Any]) -> tuple[gym.Space, gym.Space]:
    """Spaces for data that records none: observations unbounded (uint8: 0..255); integer
    actions Discrete(max + 1); real actions Box(-1, 1) when they all lie there, else Box of their
    per-dimension range.

    :param episodes: :class:`~rlkit.datasets.Episode` s.
    """
    obs = np.concatenate([e.observations for e in episodes])
    actions = np.concatenate([e.actions for e in episodes])
    if obs.dtype == np.uint8:
        obs_space: gym.Space = gym.spaces.Box(0, 255, obs.shape[1:], np.uint8)
    else:
        obs_space = gym.spaces.Box(-np.inf, np.inf, obs.shape[1:], np.float32)
    if actions.dtype.kind in "iu":
        return obs_space, gym.spaces.Discrete(int(actions.max()) + 1)
    if np.all(np.abs(actions) <= 1.0):
        return obs_space, gym.spaces.Box(-1.0, 1.0, actions.shape[1:], np.float32)
    low, high = actions.min(axis=0), actions.max(axis=0)
    return obs_space, gym.spaces.Box(low, high, actions.shape[1:], np.float32)


def cmd_convert(args: argparse.Namespace) -> None:
    """``rlkit dataset convert``: a D4RL-format HDF5 file as a Minari dataset.

    :param args: parsed arguments.
    """
    from rlkit.config import EnvConfig
    from rlkit.datasets.minari_io import check_dataset_id, transitions_to_episodes
    from rlkit.datasets.readers import load_dataset, resolve
    from rlkit.datasets.scores import reference_scores

    check_dataset_id(args.out)
    kind, path = resolve(args.file)
    if kind != "hdf5":
        raise ConfigError(f"{path}: not an HDF5 file; `convert` reads D4RL-format files")
    _check_free(args)
    spaces: tuple[gym.Space, gym.Space] | None = None
    if args.env:
        from rlkit.envs import make_env

        env = make_env(EnvConfig(id=args.env))
        try:
            spaces = env.observation_space, env.action_space
        finally:
            env.close()
    transitions = load_dataset(path, *(spaces or (None, None)))
    episodes = transitions_to_episodes(transitions)
    spaces = spaces or infer_spaces(episodes)
    ref = reference_scores(args.env, transitions.metadata)
    out = _write(
        args,
        episodes,
        spaces,
        env_id=args.env,
        ref=ref,
        description=f"converted from {path}",
        facts={
            "converted_from": str(path),
            "dropped_at_conversion": transitions.metadata.get("dropped", 0),
            "dropped_reason": transitions.metadata.get("dropped_reason", ""),
        },
    )
    print(f"wrote {out} ({len(episodes)} episodes, {len(transitions)} transitions)")
    meta = transitions.metadata
    if meta.get("dropped"):
        print(f"  dropped {meta['dropped']}: {meta['dropped_reason']}")


def cmd_combine(args: argparse.Namespace) -> None:
    """``rlkit dataset combine``: datasets one after the other as one Minari dataset.

    :param args: parsed arguments.
    """
    from rlkit.datasets.minari_io import check_dataset_id
    from rlkit.datasets.readers import load_episodes

    check_dataset_id(args.out)
    if len(args.datasets) < 2:
        raise ConfigError("combine needs at least two datasets")
    _check_free(args)
    parts = [load_episodes(spec) for spec in args.datasets]
    first_eps = parts[0][0]
    for (episodes, _), spec in zip(parts[1:], args.datasets[1:], strict=True):
        for key in ("observations", "actions"):
            a, b = getattr(first_eps[0], key), getattr(episodes[0], key)
            if a.shape[1:] != b.shape[1:]:
                raise ConfigError(
                    f"{spec}: {key} rows of shape {b.shape[1:]} do not match "
                    f"{args.datasets[0]}'s {a.shape[1:]}"
                )
    episodes = [e for eps, _ in parts for e in eps]
    metas = [meta for _, meta in parts]
    known = [(m.get("observation_space"), m.get("action_space")) for m in metas]
    spaces = infer_spaces(episodes)
    obs_space, action_space = known[0]
    if obs_space is not None and action_space is not None and all(k == known[0] for k in known):
        spaces = obs_space, action_space
    refs = {(m.get("ref_min_score"), m.get("ref_max_score")) for m in metas}
    ref = next(iter(refs)) if len(refs) == 1 else None
    if ref is not None and None in ref:
        ref = None
    env_ids = {m.get("env_id") for m in metas}
    out = _write(
        args,
        episodes,
        spaces,
        env_id=env_ids.pop() if len(env_ids) == 1 else None,
        ref=ref,
        description="combined from " + " + ".join(args.datasets),
        facts={"combined_from": [str(m.get("source")) for m in metas]},
    )
    print(f"wrote {out} ({len(episodes)} episodes from {len(parts)} datasets)")
    if ref is None and any(r != (None, None) for r in refs):
        print("  the datasets have different reference scores: the result keeps none")


def _write(
    args: argparse.Namespace,
    episodes: list[Any],
    spaces: tuple[gym.Space, gym.Space],
    *,
    env_id: str | None,
    ref: tuple[Any, Any] | None,
    description: str,
    facts: dict[str, Any],
) -> Path:
    from rlkit.datasets.minari_io import write_minari

    return write_minari(
        args.out,
        episodes,
        *spaces,
        env_id=env_id,
        ref_min_score=None if ref is None else float(ref[0]),
        ref_max_score=None if ref is None else float(ref[1]),
        description=description,
        root=Path(args.root) if args.root else None,
        overwrite=args.overwrite,
        extra_metadata=_jsonable(facts),
    )


def _jsonable(value: Any) -> Any:
    """``value`` with anything JSON cannot hold (spaces, arrays) turned into strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
