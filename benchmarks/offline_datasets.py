"""Offline datasets made here, nothing downloaded: Hopper-v5 and HalfCheetah-v5 (random, medium,
medium-replay, expert, medium-expert) from rlkit's own SB3 SAC runs, and the grid (medium,
expert, mixed) from the rule-based controller and an SB3 PPO controller.

Levels follow the D4RL definitions: *medium* = rollouts of the policy checkpoint whose return is
closest to a third of the expert's (D4RL's expert return for the MuJoCo envs), *medium-replay* =
every transition in that checkpoint's replay buffer (all of training until then), *expert* =
rollouts of the furthest-trained policy, *medium-expert* = medium and expert together, *random* =
uniform actions. Rollouts add Gaussian action noise of ``--noise`` (default 0.1 of half the
range), as D4RL's data came from stochastic policies. Datasets are written with Minari under
``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) as ``rlkit/<env>/<level>-v0``.

The behaviour runs train in the background and resume (same command), one core each (the
committed datasets: 250k SAC steps each, 70 and 48 min here, then these collections, with
``MINARI_DATASETS_PATH=runs/minari``; the runs are seeded, and the data regenerates identically):

    OMP_NUM_THREADS=1 rlkit train configs/mujoco/hopper_sac.yaml train.total_steps=250000
    OMP_NUM_THREADS=1 rlkit train configs/mujoco/halfcheetah_sac.yaml train.total_steps=250000
    OMP_NUM_THREADS=1 python -m benchmarks.offline_datasets hopper --transitions 50000 \
        --medium step_000150000
    OMP_NUM_THREADS=1 python -m benchmarks.offline_datasets halfcheetah --transitions 50000
    OMP_NUM_THREADS=1 python -m benchmarks.offline_datasets grid

Writes benchmarks/results/offline_datasets.json (sizes, returns, normalised scores, sources).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import read_figures, write_result
from rlkit.config import EnvConfig, load_config
from rlkit.datasets import Episode, write_minari
from rlkit.datasets.collect import collect_policy, collect_random, collect_replay, rollout
from rlkit.datasets.scores import reference_scores
from rlkit.envs import make_env
from rlkit.rundir import RunDir
from rlkit.train import train

ROOT = Path(__file__).resolve().parents[1]
#: MuJoCo domain -> (env id, the behaviour SAC run of configs/mujoco/<domain>_sac.yaml)
MUJOCO = {
    "hopper": ("Hopper-v5", ROOT / "runs" / "mujoco" / "hopper_sac"),
    "halfcheetah": ("HalfCheetah-v5", ROOT / "runs" / "mujoco" / "halfcheetah_sac"),
}
GRID_RUN = ROOT / "benchmarks" / "runs" / "offline" / "grid_ppo"
PROBE_EPISODES = 5


def returns(episodes: list[Episode]) -> np.ndarray:
    """Episode returns."""
    return np.array([e.total_reward for e in episodes], dtype=float)


def until_transitions(collect: Any, transitions: int, chunk: int = 25) -> list[Episode]:
    """Call ``collect(episodes, seed)`` in chunks until ``transitions`` steps are gathered.

    :param collect: returns a list of episodes for (episodes, first seed).
    :param transitions: steps wanted (the last chunk may overshoot; the total is reported).
    :param chunk: episodes per call.
    """
    episodes: list[Episode] = []
    while sum(len(e) for e in episodes) < transitions:
        episodes += collect(chunk, len(episodes))
    return episodes


def describe(name: str, episodes: list[Episode], ref: tuple[float, float] | None) -> dict:
    """Size and returns of one dataset, printed and returned.

    :param name: dataset id.
    :param episodes: its episodes.
    :param ref: reference (min, max) returns of the normalised score.
    """
    r = returns(episodes)
    facts = {
        "transitions": int(sum(len(e) for e in episodes)),
        "episodes": len(episodes),
        "return_mean": float(r.mean()),
        "return_std": float(r.std()),
        "return_min": float(r.min()),
        "return_max": float(r.max()),
    }
    if ref is not None:
        facts["normalized_score"] = float(100 * (r.mean() - ref[0]) / (ref[1] - ref[0]))
    print(
        f"{name:<28} {facts['transitions']:>8} steps {facts['episodes']:>5} episodes  "
        f"return {facts['return_mean']:9.1f} +- {facts['return_std']:7.1f}"
        + (f"  score {facts['normalized_score']:6.1f}" if ref else "")
    )
    return facts


def save(
    name: str, episodes: list[Episode], env_config: EnvConfig, ref: tuple[float, float], how: str
) -> None:
    """Write one Minari dataset (replacing an older one of that id).

    :param name: dataset id.
    :param episodes: the episodes.
    :param env_config: the env (spaces and metadata).
    :param ref: reference (min, max) scores stored in the metadata.
    :param how: description.
    """
    env_id = env_config.id
    env = make_env(env_config)
    try:
        write_minari(
            name,
            episodes,
            env.observation_space,
            env.action_space,
            env_id=env_id,
            ref_min_score=ref[0],
            ref_max_score=ref[1],
            description=how,
            overwrite=True,
        )
    finally:
        env.close()


def probe(run: Path, checkpoint: str | None) -> float:
    """Mean return of a checkpoint's policy over a few episodes (no noise).

    :param run: the run.
    :param checkpoint: checkpoint folder name, or None for final/.
    """
    return float(returns(collect_policy(run, PROBE_EPISODES, 0.0, 10_000, checkpoint)).mean())


def mujoco(
    name: str, transitions: int, noise: float, wanted: list[str], pinned: str | None = None
) -> dict[str, Any]:
    """Datasets of a MuJoCo domain from its background SAC run's checkpoints.

    :param name: a key of :data:`MUJOCO` (``hopper``, ``halfcheetah``).
    :param transitions: steps per rollout dataset.
    :param noise: action noise of the rollouts.
    :param wanted: levels to make (medium-expert needs medium and expert).
    :param pinned: the medium checkpoint (default: the one closest to a third of expert), so
        levels made later match the medium data made before.
    """
    env_id, path = MUJOCO[name]
    run = RunDir(path)
    ref = reference_scores(env_id, {})
    assert ref is not None
    target = ref[0] + (ref[1] - ref[0]) / 3.0
    probes = {folder.name: probe(run.path, folder.name) for folder in run.checkpoint_dirs()}
    print("checkpoint returns:", {k: round(v, 1) for k, v in probes.items()})
    medium = pinned or min(probes, key=lambda name: abs(probes[name] - target))
    expert = max(probes, key=lambda name: (probes[name], name))
    medium_step = int(medium.split("_")[1])
    facts: dict[str, Any] = {
        "probes": probes,
        "medium_checkpoint": medium,
        "expert_checkpoint": expert,
        "target_medium_return": target,
    }
    makers = {
        "medium": lambda: until_transitions(
            lambda n, s: collect_policy(run.path, n, noise, s, medium), transitions
        ),
        "medium-replay": lambda: collect_replay(run.path, medium, until_step=medium_step),
        "expert": lambda: until_transitions(
            lambda n, s: collect_policy(run.path, n, noise, s, expert), transitions
        ),
        "random": lambda: until_transitions(
            lambda n, s: collect_random(load_config(run.config_path).env, n, s), transitions, 200
        ),
    }
    levels = {level: make() for level, make in makers.items() if level in wanted}
    if "medium-expert" in wanted and {"medium", "expert"} <= set(levels):
        levels["medium-expert"] = levels["medium"] + levels["expert"]
    for level, episodes in levels.items():
        dataset = f"rlkit/{name}/{level}-v0"
        how = f"{env_id} {level}: SAC run {run.path.name}, checkpoints {medium} / {expert}"
        save(dataset, episodes, load_config(run.config_path).env, ref, how)
        facts[dataset] = describe(dataset, episodes, ref)
    return facts


def grid(episodes: int, noise: float) -> dict[str, Any]:
    """Grid datasets: rule-based (medium), SB3 PPO (expert), and everything mixed.

    :param episodes: episodes (days) per controller.
    :param noise: action noise of the noisy PPO share of the mixed data.
    """
    from rlkit.envs.grid.baselines import RuleBasedController

    config = ROOT / "configs" / "grid" / "ppo.yaml"
    train(config, ["train.total_steps=120000", f"run.dir={GRID_RUN}", "train.progress=false"])
    env_config = load_config(GRID_RUN / "config.yaml").env
    env = make_env(env_config)
    try:
        names = list(env.unwrapped.feature_names)  # type: ignore[attr-defined]
        rule = RuleBasedController(names, env.action_space.shape[0])
        medium = rollout(env, episodes, 0, rule)
    finally:
        env.close()
    expert = collect_policy(GRID_RUN, episodes, 0.0, episodes)
    noisy = collect_policy(GRID_RUN, episodes, noise, 2 * episodes)
    random = collect_random(env_config, episodes, 3 * episodes)
    ref = (float(returns(random).mean()), float(returns(expert).mean()))
    facts: dict[str, Any] = {"ppo_run": str(GRID_RUN.relative_to(ROOT)), "ref": ref}
    levels = {"medium": medium, "expert": expert, "mixed": medium + expert + noisy}
    for level, data in levels.items():
        name = f"rlkit/grid/{level}-v0"
        how = f"grid {level}: rule-based controller and/or SB3 PPO ({GRID_RUN.name}), train days"
        save(name, data, env_config, ref, how)
        facts[name] = describe(name, data, ref)
    return facts


def main() -> None:
    """Make the datasets of one domain and merge the figures into the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("domain", choices=[*MUJOCO, "grid"])
    parser.add_argument("--transitions", type=int, default=100_000)
    parser.add_argument("--episodes", type=int, default=100, help="grid days per controller")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument(
        "--levels",
        nargs="+",
        default=["random", "medium", "medium-replay", "expert", "medium-expert"],
        help="MuJoCo levels to make (expert once the SAC run has trained far enough)",
    )
    parser.add_argument("--medium", help="pin the medium checkpoint, e.g. step_000150000")
    args = parser.parse_args()
    figures = read_figures("offline_datasets")
    if args.domain in MUJOCO:
        figures[args.domain] = {
            **figures.get(args.domain, {}),
            **mujoco(args.domain, args.transitions, args.noise, args.levels, args.medium),
        }
    else:
        figures["grid"] = grid(args.episodes, args.noise)
    figures[args.domain]["command"] = vars(args)  # the top-level config is the latest domain's
    write_result("offline_datasets", figures, vars(args))


if __name__ == "__main__":
    main()
