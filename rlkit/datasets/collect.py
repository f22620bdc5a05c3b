"""Collect offline datasets from trained rlkit runs, D4RL-style levels.

- policy (``collect_policy``): episodes of a run's policy (``final/``, or a checkpoint such as
  the "medium" one), optionally with Gaussian action noise;
- random (``collect_random``): uniform random actions;
- replay (``collect_replay``): every transition a checkpoint's replay buffer stored, in insertion
  order (D4RL's "medium-replay" when taken at the medium checkpoint);
- medium-expert: the medium and expert datasets one after the other (``rlkit dataset combine``).

Episodes run on the run's training env (``env`` section of its config, without ``eval.env_kwargs``):
the data comes from the distribution the policy was trained on; offline agents are evaluated on
the evaluation env.

Reference scores (:func:`reference_returns`): ``ref_min_score`` is the mean return of uniform
random actions over 10 episodes (seeds ``seed + 100000`` onwards, ``seed`` the run's), and
``ref_max_score`` the mean return of the run's final policy over its final evaluation
(``eval.json``, written when training ends). Only a run without ``eval.json`` takes it from the
collected episodes (when they are the final policy without noise) or from an evaluation run here
exactly as training ends it. So every level collected from one run (random, medium,
medium-replay, expert) carries the same two numbers, as D4RL's levels of one task do, and
``rlkit dataset combine`` keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rlkit.config import ConfigError, EnvConfig, load_config
from rlkit.datasets.minari_io import Episode
from rlkit.datasets.transitions import DatasetError, dataset_error
from rlkit.envs import make_env
from rlkit.evaluation import EVAL_SEED_OFFSET
from rlkit.rundir import CheckpointError, RunDir, read_meta

#: episodes of uniform random actions behind ``ref_min_score``
REF_RANDOM_EPISODES = 10
Policy = Callable[[np.ndarray], np.ndarray]


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("episodes, last return {task.fields[last]}"),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def rollout(
    env: gym.Env,
    episodes: int,
    seed: int,
    policy: Policy | None = None,
    noise: float = 0.0,
    progress: bool = False,
    description: str = "collect",
) -> list[Episode]:
    """Run ``episodes`` episodes, reset with seeds ``seed, seed+1, ...``.

    :param env: the environment (Box observations).
    :param episodes: how many.
    :param seed: first reset seed; also seeds the action noise and the random actions.
    :param policy: batch policy ``(1, *obs_shape) -> (1, *action_shape)``; None: uniform random
        actions (``env.action_space.sample()``).
    :param noise: Gaussian action noise, std ``noise`` times half the action range, then clipped to
        the bounds (Box actions only).
    :param progress: show a rich progress bar.
    :param description: the progress bar's label.
    """
    if episodes < 1:
        raise ConfigError(f"--episodes {episodes}: expected a whole number >= 1")
    obs_space, action_space = env.observation_space, env.action_space
    if not isinstance(obs_space, gym.spaces.Box):
        raise DatasetError(f"observation space {obs_space}: only Box observations can be collected")
    if noise < 0:
        raise ConfigError(f"--noise {noise}: expected a number >= 0")
    if noise > 0:
        if not isinstance(action_space, gym.spaces.Box):
            raise ConfigError(
                f"--noise {noise}: Gaussian action noise needs Box actions, the env has "
                f"{action_space}"
            )
        if not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
            raise ConfigError(f"--noise {noise}: the action space {action_space} is unbounded")
    rng = np.random.default_rng(seed)
    action_space.seed(seed)
    action_dtype = action_space.dtype if isinstance(action_space, gym.spaces.Box) else np.int64
    collected = []
    with _progress(progress) as bar:
        task = bar.add_task(description, total=episodes, last="-")
        for index in range(episodes):
            obs, _ = env.reset(seed=seed + index)
            observations = [np.asarray(obs, dtype=obs_space.dtype)]
            actions, rewards, terminations, truncations = [], [], [], []
            done = False
            while not done:
                if policy is None:
                    action = np.asarray(action_space.sample())
                else:
                    action = np.asarray(policy(np.asarray(obs)[None])[0])
                if noise > 0:
                    assert isinstance(action_space, gym.spaces.Box)
                    half = (action_space.high - action_space.low) / 2.0
                    action = np.clip(
                        action + rng.normal(0.0, 1.0, action.shape) * noise * half,
                        action_space.low,
                        action_space.high,
                    )
                action = action.astype(action_dtype)
                obs, reward, terminated, truncated, _ = env.step(action)
                observations.append(np.asarray(obs, dtype=obs_space.dtype))
                actions.append(action)
                rewards.append(float(reward))
                terminations.append(bool(terminated))
                truncations.append(bool(truncated))
                done = bool(terminated or truncated)
            episode = Episode(
                np.stack(observations),
                np.stack(actions),
                np.asarray(rewards, dtype=np.float64),
                np.asarray(terminations, dtype=bool),
                np.asarray(truncations, dtype=bool),
                seed=seed + index,
            )
            collected.append(episode)
            bar.update(task, advance=1, last=f"{episode.total_reward:.1f}")
    return collected


def collect_policy(
    run_dir: str | Path,
    episodes: int,
    noise: float = 0.0,
    seed: int = 0,
    checkpoint: str | None = None,
    progress: bool = False,
) -> list[Episode]:
    """Roll out a trained run's policy (the "expert"/"medium" levels).

    The policy acts as in the run's evaluation (deterministic unless ``eval.deterministic`` is
    false), plus optional Gaussian action noise.

    :param run_dir: a run made by ``rlkit train``.
    :param episodes: episodes to collect.
    :param noise: action-noise std as a fraction of half the action range (clipped to bounds).
    :param seed: reset seed of the first episode (then ``seed + 1``, ...); seeds the noise too.
    :param checkpoint: a checkpoint folder under ``RUN/checkpoints`` (e.g.
        ``"step_000050000"``) instead of ``final/``.
    :param progress: show a progress bar.
    """
    from rlkit.loading import load_run

    loaded = load_run(run_dir, checkpoint=checkpoint)
    env = make_env(loaded.env_config)
    try:
        return rollout(env, episodes, seed, loaded.act, noise, progress, "policy")
    finally:
        env.close()


def collect_random(
    env_config: EnvConfig, episodes: int, seed: int, progress: bool = False
) -> list[Episode]:
    """Episodes of uniform random actions (the "random" level).

    :param env_config: the env (a run's ``config.env``).
    :param episodes: episodes to collect.
    :param seed: reset seed of the first episode; seeds the action sampler.
    :param progress: show a progress bar.
    """
    env = make_env(env_config)
    try:
        return rollout(env, episodes, seed, None, 0.0, progress, "random")
    finally:
        env.close()


def reference_returns(
    run_dir: str | Path, rollout_returns: np.ndarray | None = None
) -> tuple[float, float, dict[str, str]]:
    """``(ref_min_score, ref_max_score, how each was obtained)`` for a dataset from a run.

    :param run_dir: the run.
    :param rollout_returns: returns of the collected episodes when they are the run's final
        policy without noise (they then give ``ref_max_score``).
    """
    from rlkit.evaluation import evaluate
    from rlkit.loading import load_run

    run = RunDir(run_dir)
    config = load_config(run.config_path)
    ref_seed = config.seed + EVAL_SEED_OFFSET
    random = collect_random(config.env, REF_RANDOM_EPISODES, ref_seed)
    ref_min = float(np.mean([e.total_reward for e in random]))
    how = {
        "ref_min_score": f"mean return of uniform random actions over {REF_RANDOM_EPISODES} "
        f"episodes (seeds {ref_seed}..{ref_seed + REF_RANDOM_EPISODES - 1})"
    }
    eval_json = _read_eval(run)
    if eval_json is not None:
        how["ref_max_score"] = f"mean return of the final evaluation ({run.eval_path})"
        return ref_min, eval_json, how
    if rollout_returns is not None and len(rollout_returns):
        ref_max = float(np.mean(rollout_returns))
        how["ref_max_score"] = (
            f"mean return of the collected episodes ({len(rollout_returns)}, final policy, no "
            "noise; the run has no eval.json)"
        )
        return ref_min, ref_max, how
    loaded = load_run(run.path)
    env = loaded.make_env()
    try:
        result = evaluate(env, loaded.act, config.eval.episodes, config.seed + EVAL_SEED_OFFSET)
    finally:
        env.close()
    which = "final policy" if run.final.is_dir() else "latest checkpoint (no final/ yet)"
    how["ref_max_score"] = (
        f"mean return of the {which} over {config.eval.episodes} evaluation episodes run here "
        "(no eval.json)"
    )
    return ref_min, float(result["return_mean"]), how


def _read_eval(run: RunDir) -> float | None:
    import json

    if not (run.final.is_dir() and run.eval_path.is_file()):
        return None
    try:
        value = json.loads(run.eval_path.read_text()).get("return_mean")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


# --------------------------------------------------------------------------------- replay


def collect_replay(
    run_dir: str | Path, checkpoint: str, until_step: int | None = None
) -> list[Episode]:
    """Every transition a checkpoint's replay buffer holds, in insertion order ("medium-replay").

    stable-baselines3 off-policy runs: the ``buffer_*`` arrays of the checkpoint's ``agent.npz``
    (shape ``(size, n_envs, ...)``; terminal = done and not timeout; Box actions are stored
    scaled to [-1, 1] by SB3 and are mapped back to the env's range; with several envs, each
    env's stream is split into episodes and the envs follow one another). Native runs (drqv2):
    the run's replay store, as the checkpoint's manifest describes it. The last episode is
    usually still running at the checkpoint: it ends with neither flag (partial).

    :param run_dir: the run.
    :param checkpoint: folder name under ``RUN/checkpoints`` (e.g. ``"step_000050000"``).
    :param until_step: keep only the transitions of the first ``until_step`` env steps.
    :raises DatasetError: no such checkpoint, no replay buffer in it, a buffer that wrapped
        around (its oldest transitions are gone), or fewer steps stored than ``until_step``.
    """
    run = RunDir(run_dir)
    if not run.config_path.is_file():
        raise ConfigError(f"{run.path}: not an rlkit run directory (no config.yaml)")
    folder = run.checkpoints / checkpoint
    if not (folder / "meta.json").is_file():
        found = ", ".join(p.name for p in run.checkpoint_dirs()) or "none"
        raise DatasetError(f"{run.path}: no checkpoint {checkpoint!r} (checkpoints: {found})")
    try:
        meta = read_meta(folder)
    except CheckpointError as err:
        raise DatasetError(str(err)) from None
    if until_step is not None and until_step < 1:
        raise ConfigError(f"--until-step {until_step}: expected a whole number >= 1")
    config = load_config(run.config_path)
    env = make_env(config.env)
    try:
        obs_space, action_space = env.observation_space, env.action_space
    finally:
        env.close()
    if "replay" in meta:
        streams = _native_streams(run, folder, meta["replay"], obs_space, action_space)
    else:
        streams = _sb3_streams(folder, action_space)
    episodes: list[Episode] = []
    for stream in streams:
        if until_step is not None:
            rows = until_step // len(streams)
            stored = len(stream["rewards"])
            if rows > stored:
                raise DatasetError(
                    f"{folder}: --until-step {until_step}: the buffer holds only "
                    f"{stored * len(streams)} steps"
                )
            stream = {key: value[:rows] for key, value in stream.items()}
        episodes += _split_episodes(folder, stream)
    return episodes


def _sb3_streams(folder: Path, action_space: gym.Space) -> list[dict[str, np.ndarray]]:
    """Per-env transition streams of an SB3 checkpoint's replay buffer."""
    from rlkit.agents.sb3 import ARRAYS_FILE, BUFFER_KEYS
    from rlkit.io import load_arrays

    path = folder / ARRAYS_FILE
    try:
        arrays = load_arrays(path)
    except (OSError, ValueError, EOFError) as err:
        raise DatasetError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    if "buffer_pos" not in arrays:
        raise DatasetError(
            f"{path}: holds no replay buffer (an on-policy agent, or a final model): nothing to "
            "collect"
        )
    for key in BUFFER_KEYS:
        if f"buffer_{key}" not in arrays:
            hint = " (optimize_memory_usage keeps none)" if key == "next_observations" else ""
            raise dataset_error(path, f"buffer_{key}", f"missing{hint}")
    pos, full = int(arrays["buffer_pos"]), bool(arrays["buffer_full"])
    if full and pos > 0:
        raise DatasetError(
            f"{path}: the replay buffer wrapped around (full, next write at {pos}): its oldest "
            "transitions are gone; collect from an earlier checkpoint or train with a larger "
            "buffer_size"
        )
    obs = arrays["buffer_observations"]
    size, n_envs = obs.shape[:2]
    actions = arrays["buffer_actions"]
    if isinstance(action_space, gym.spaces.Box):
        low, high = action_space.low, action_space.high
        # SB3 stores Box actions scaled to [-1, 1]; the env received low + (a + 1) / 2 * range
        actions = low + (0.5 * (actions + 1.0) * (high - low))
        actions = actions.astype(action_space.dtype)
    else:
        actions = actions.reshape(size, n_envs, *(action_space.shape or ())).astype(np.int64)
    dones = arrays["buffer_dones"].astype(bool)
    timeouts = arrays["buffer_timeouts"].astype(bool)
    return [
        {
            "observations": obs[:, env],
            "next_observations": arrays["buffer_next_observations"][:, env],
            "actions": actions[:, env],
            "rewards": arrays["buffer_rewards"][:, env].astype(np.float64),
            "terminations": dones[:, env] & ~timeouts[:, env],
            "truncations": timeouts[:, env],
        }
        for env in range(n_envs)
    ]


def _native_streams(
    run: RunDir,
    folder: Path,
    manifest: dict[str, Any],
    obs_space: gym.Space,
    action_space: gym.Space,
) -> list[dict[str, np.ndarray]]:
    """The transition stream of a native run's replay store, as a checkpoint describes it."""
    from rlkit.replay import ReplayBuffer

    if manifest.get("transitions", {}).get("first", 0) != 0:
        raise DatasetError(
            f"{folder}: the replay buffer wrapped around (its first "
            f"{manifest['transitions']['first']} transitions are gone); collect from an earlier "
            "checkpoint or train with a larger train.replay_size"
        )
    try:
        buffer = ReplayBuffer(
            int(manifest["capacity"]),
            obs_space,  # type: ignore[arg-type]
            action_space,
            frame_stack=int(manifest["frame_stack"]),
        )
        buffer.load(run.replay_store, manifest)
    except (KeyError, ValueError, OSError, TypeError) as err:
        raise DatasetError(
            f"{folder}: its replay buffer cannot be read ({type(err).__name__}: {err})"
        ) from None
    # rlkit's own buffer: read its logs directly (every row, oldest first)
    rows = buffer._steps.gather(np.arange(buffer.transitions_added))
    k = buffer.frame_stack
    return [
        {
            "observations": buffer._stacks(rows["next_frame"] - k),
            "next_observations": buffer._stacks(rows["next_frame"] - k + 1),
            "actions": rows["action"],
            "rewards": rows["reward"].astype(np.float64),
            "terminations": rows["terminated"],
            "truncations": rows["truncated"] & ~rows["terminated"],
        }
    ]


def _split_episodes(source: Path, stream: dict[str, np.ndarray]) -> list[Episode]:
    """Episodes of one transition stream; a trailing one without an end flag stays partial."""
    obs, nxt = stream["observations"], stream["next_observations"]
    ends = np.flatnonzero(stream["terminations"] | stream["truncations"])
    n = len(obs)
    starts = [0, *(ends[:-1] + 1).tolist()] if len(ends) else []
    bounds: list[tuple[int, int]] = list(zip(starts, (ends + 1).tolist(), strict=True))
    tail = int(ends[-1]) + 1 if len(ends) else 0
    if tail < n:
        bounds.append((tail, n))
    episodes = []
    for first, end in bounds:
        if not np.array_equal(obs[first + 1 : end], nxt[first : end - 1]):
            raise DatasetError(
                f"{source}: the replay's observations do not chain within an episode (rows "
                f"{first}..{end - 1}): not a buffer of whole episodes in insertion order"
            )
        episodes.append(
            Episode(
                np.concatenate([obs[first:end], nxt[end - 1 : end]]),
                stream["actions"][first:end],
                stream["rewards"][first:end],
                np.asarray(stream["terminations"][first:end], dtype=bool),
                np.asarray(stream["truncations"][first:end], dtype=bool),
            )
        )
    return episodes
