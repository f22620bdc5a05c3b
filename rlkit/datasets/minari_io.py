"""Episodes, and Minari datasets written with Minari's own writer.

A Minari episode of T steps holds T+1 observations (the first and every next observation), so
its next observations are exact; :func:`episodes_to_transitions` and
:func:`transitions_to_episodes` convert between that form and flat :class:`Transitions`.

:func:`write_minari` calls ``minari.create_dataset_from_buffers`` with ready-made
``EpisodeBuffer`` s and both spaces (no env, so no jax and nothing rolled out). Given no env,
Minari writes no reference scores at all (it writes them only when it can make the evaluation
env, and it rolls out a random policy for 100 episodes when ``ref_min_score`` is missing), so
rlkit adds ``ref_min_score``/``ref_max_score`` to ``metadata.json`` afterwards through the
storage's ``update_metadata``, together with an ``rlkit`` entry (``env_id`` and collection
facts). The dataset is built in a hidden staging folder under the root and renamed into place,
so a reader never sees half a dataset.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.datasets.transitions import DatasetError, Transitions, dataset_error
from rlkit.io import atomic_write_json


@dataclass
class Episode:
    """One episode in Minari's form.

    :param observations: (T+1, *obs_shape): the first observation and every next one.
    :param actions: (T, *action_shape).
    :param rewards: (T,).
    :param terminations: (T,) bool; only the last step may be set.
    :param truncations: (T,) bool; only the last step may be set. Neither flag at the last step
        means the data ended mid-episode.
    :param seed: the reset seed, when known.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    seed: int | None = None

    def __len__(self) -> int:
        return int(len(self.rewards))

    @property
    def total_reward(self) -> float:
        """The undiscounted return (float64 sum)."""
        return float(np.sum(self.rewards, dtype=np.float64))

    def check(self, source: object, name: str) -> None:
        """Raise :class:`DatasetError` unless the arrays form a valid episode.

        :param source: file or folder named in the message.
        :param name: the episode's key (e.g. ``episode_3``).
        """
        steps = len(self.rewards)
        if steps == 0:
            raise dataset_error(source, f"{name}/rewards", "the episode has no steps")
        expected = {
            "observations": steps + 1,
            "actions": steps,
            "terminations": steps,
            "truncations": steps,
        }
        for key, rows in expected.items():
            value = getattr(self, key)
            if value.ndim == 0 or len(value) != rows:
                raise dataset_error(
                    source,
                    f"{name}/{key}",
                    f"has shape {value.shape}, expected {rows} rows for {steps} steps",
                )
        for key in ("rewards", "terminations", "truncations"):
            if getattr(self, key).ndim != 1:
                raise dataset_error(
                    source,
                    f"{name}/{key}",
                    f"has shape {getattr(self, key).shape}, expected ({steps},)",
                )
        for key in ("observations", "actions", "rewards"):
            _check_numeric(source, f"{name}/{key}", getattr(self, key))
        for key in ("terminations", "truncations"):
            flags = getattr(self, key)
            _check_flags(source, f"{name}/{key}", flags)
            early = np.flatnonzero(np.asarray(flags, dtype=bool)[:-1])
            if early.size:
                raise dataset_error(
                    source,
                    f"{name}/{key}",
                    f"set at step {int(early[0])} before the episode's last step {steps - 1}",
                )


# ------------------------------------------------------------------------------ array checks


def _check_numeric(source: object, key: str, array: np.ndarray) -> None:
    """Numbers only, and finite when floating point."""
    if array.dtype.kind not in "biuf":
        raise dataset_error(source, key, f"has dtype {array.dtype}, expected numbers")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise dataset_error(source, key, f"holds NaN or infinite values (first at row {row})")


def _check_flags(source: object, key: str, array: np.ndarray) -> None:
    """Booleans, or numbers that are all 0 or 1."""
    if array.dtype.kind not in "biuf":
        raise dataset_error(source, key, f"has dtype {array.dtype}, expected booleans")
    if array.dtype.kind != "b":
        bad = ~np.isin(array, (0, 1))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise dataset_error(
                source,
                key,
                f"holds {array[row].item()!r} at row {row}; flags must be 0/1 or booleans",
            )


def stored_observations(array: np.ndarray) -> np.ndarray:
    """Observations as rlkit stores them: floating point as float32, integers kept.

    :param array: observations.
    """
    if array.dtype.kind != "f":
        return array
    with np.errstate(over="ignore"):  # values beyond float32 become inf: callers check finiteness
        return array.astype(np.float32, copy=False)


def stored_actions(array: np.ndarray) -> np.ndarray:
    """Actions as rlkit stores them: integers (discrete) as int64, the rest as float32.

    :param array: actions.
    """
    kind = np.int64 if array.dtype.kind in "iu" else np.float32
    return array.astype(kind, copy=False)


# -------------------------------------------------------------------------------- conversions


def episodes_to_transitions(episodes: Sequence[Episode], metadata: dict[str, Any]) -> Transitions:
    """Flat transitions of whole episodes (exact next observations; nothing dropped).

    An episode whose last step has neither flag (the data ended mid-episode) gets a timeout at
    its last step and is listed in ``metadata["partial_episodes"]``; a step both terminated and
    truncated counts as terminated.

    :param episodes: at least one episode.
    :param metadata: the dataset's metadata (``source``, ``name``, ...), copied into the result.
    """
    source = metadata.get("source", "episodes")
    if not episodes:
        raise dataset_error(source, "episodes", "the dataset holds no episodes")
    terminals = np.concatenate([np.asarray(e.terminations, dtype=bool) for e in episodes])
    timeouts = np.concatenate([np.asarray(e.truncations, dtype=bool) for e in episodes])
    ends = np.cumsum([len(e) for e in episodes]) - 1
    open_end = ~(terminals[ends] | timeouts[ends])
    timeouts[ends[open_end]] = True
    meta = {
        **metadata,
        "dropped": 0,
        "dropped_reason": "",
        "notes": list(metadata.get("notes", [])),
    }
    meta["partial_episodes"] = np.flatnonzero(open_end).tolist()
    return Transitions(
        stored_observations(np.concatenate([e.observations[:-1] for e in episodes])),
        stored_actions(np.concatenate([e.actions for e in episodes])),
        np.concatenate([e.rewards for e in episodes]).astype(np.float32),
        stored_observations(np.concatenate([e.observations[1:] for e in episodes])),
        terminals,
        timeouts,
        meta,
    )


def transitions_to_episodes(transitions: Transitions) -> list[Episode]:
    """Episodes of transitions whose next observations chain (``next_obs[t] == obs[t+1]``).

    Each episode's observations are its ``observations`` followed by the last step's
    ``next_observations``. A terminal step gets ``terminations``; a timeout step
    ``truncations``, except in an episode listed in ``metadata["partial_episodes"]`` (cut by
    the end of the data), whose last step keeps neither flag, as Minari writes such an episode.
    Rows after the last end flag form one more such episode. At a terminal step of a D4RL file
    the stored next observation is the file's next row (or the row itself at the end), which a
    learner never uses.

    :param transitions: the data (e.g. a D4RL file from :func:`~rlkit.datasets.load_dataset`).
    :raises DatasetError: an episode whose observations do not chain.
    """
    source = transitions.metadata.get("source", "transitions")
    bounds = transitions.episode_bounds()
    partial = set(transitions.metadata.get("partial_episodes", []))
    tail = bounds[-1][1] if bounds else 0
    if tail < len(transitions):
        partial.add(len(bounds))
        bounds.append((tail, len(transitions)))
    episodes = []
    obs, nxt = transitions.observations, transitions.next_observations
    for index, (first, end) in enumerate(bounds):
        chained = obs[first + 1 : end] == nxt[first : end - 1]
        if not np.all(chained):
            rows = chained.reshape(end - first - 1, -1).all(axis=1)
            row = first + int(np.flatnonzero(~rows)[0])
            raise dataset_error(
                source,
                "next_observations",
                f"row {row} (episode {index}) is not the next row's observation: the data "
                "does not form episodes",
            )
        truncations = transitions.timeouts[first:end].copy()
        if index in partial:
            truncations[-1] = False
        episodes.append(
            Episode(
                np.concatenate([obs[first:end], nxt[end - 1 : end]]),
                transitions.actions[first:end],
                transitions.rewards[first:end],
                transitions.terminals[first:end].copy(),
                truncations,
            )
        )
    return episodes


# ------------------------------------------------------------------------------------ writing


def datasets_root() -> Path:
    """Minari's local root: ``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``."""
    env = os.environ.get("MINARI_DATASETS_PATH")
    return Path(env) if env else Path.home() / ".minari" / "datasets"


def check_dataset_id(dataset_id: str) -> None:
    """Raise :class:`DatasetError` unless ``dataset_id`` is a valid Minari id.

    :param dataset_id: ``(namespace/)name-vN``, e.g. ``pendulum/medium-v0``.
    """
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):  # Minari 0.5 raises TypeError for an id without -vN
        raise DatasetError(
            f"--out {dataset_id!r}: not a Minari dataset id; expected (namespace/)name-vN, "
            "e.g. pendulum/medium-v0"
        ) from None


@contextlib.contextmanager
def _minari_root(path: Path) -> Iterator[None]:
    """Point Minari's ``MINARI_DATASETS_PATH`` at ``path`` for the duration."""
    before = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before


def write_minari(
    dataset_id: str,
    episodes: Sequence[Episode],
    observation_space: gym.Space,
    action_space: gym.Space,
    *,
    env_id: str | None = None,
    ref_min_score: float | None = None,
    ref_max_score: float | None = None,
    algorithm_name: str = "rlkit",
    description: str = "",
    root: Path | None = None,
    overwrite: bool = False,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write episodes as the Minari dataset ``dataset_id`` (HDF5, images stored losslessly).

    :param dataset_id: Minari id, ``(namespace/)name-vN``.
    :param episodes: the episodes, in order.
    :param observation_space: the env's observation space (stored in the metadata).
    :param action_space: the env's action space.
    :param env_id: the env the data comes from (stored as ``metadata.json["rlkit"]["env_id"]``).
    :param ref_min_score: return of a random policy, for normalised scores (with the max).
    :param ref_max_score: return of an expert policy.
    :param algorithm_name: Minari's ``algorithm_name``.
    :param description: Minari's ``description``.
    :param root: datasets root (default :func:`datasets_root`).
    :param overwrite: replace an existing dataset of that id.
    :param extra_metadata: more JSON facts for the ``rlkit`` entry of ``metadata.json``.
    :return: the dataset folder, ``root/dataset_id``.
    :raises DatasetError: a bad id or episode, only one reference score, or an existing id
        without ``overwrite``.
    """
    check_dataset_id(dataset_id)
    # absolute: Minari joins a relative root onto its own data path a second time
    root = (Path(root) if root is not None else datasets_root()).resolve()
    target = root / dataset_id
    if target.exists() and not overwrite:
        raise DatasetError(
            f"{target}: a dataset with id {dataset_id!r} already exists; choose another id "
            "(e.g. bump -vN) or pass --overwrite"
        )
    if not episodes:
        raise DatasetError(f"{dataset_id}: no episodes to write")
    for index, episode in enumerate(episodes):
        episode.check(dataset_id, f"episode_{index}")
    if (ref_min_score is None) != (ref_max_score is None):
        raise DatasetError(f"{dataset_id}: give both ref_min_score and ref_max_score, or neither")
    from minari import create_dataset_from_buffers
    from minari.data_collector import EpisodeBuffer

    buffers = [
        EpisodeBuffer(
            seed=e.seed,
            observations=np.asarray(e.observations),
            actions=np.asarray(e.actions),
            rewards=np.asarray(e.rewards, dtype=np.float64),
            terminations=np.asarray(e.terminations, dtype=bool),
            truncations=np.asarray(e.truncations, dtype=bool),
        )
        for e in episodes
    ]
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".rlkit-staging-{secrets.token_hex(4)}"
    try:
        with _minari_root(staging), warnings.catch_warnings():
            # Minari warns about every optional field left None (author, code_permalink, ...)
            warnings.simplefilter("ignore")
            dataset = create_dataset_from_buffers(
                dataset_id,
                buffers,
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name=algorithm_name,
                description=description,
                jpeg_encoding=False,
            )
            facts: dict[str, Any] = {"rlkit": {"env_id": env_id, **(extra_metadata or {})}}
            if ref_min_score is not None and ref_max_score is not None:
                facts["ref_min_score"] = float(ref_min_score)
                facts["ref_max_score"] = float(ref_max_score)
            dataset.storage.update_metadata(facts)
        _copy_namespaces(staging, root, dataset_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
            target.rename(old)
        try:
            (staging / dataset_id).rename(target)
        except BaseException:
            if old is not None:
                old.rename(target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _copy_namespaces(staging: Path, root: Path, dataset_id: str) -> None:
    """Give the real root the namespace metadata files Minari wrote for ``dataset_id``."""
    parts = dataset_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        relative = Path(*parts[:depth]) / "namespace_metadata.json"
        if (staging / relative).is_file() and not (root / relative).is_file():
            atomic_write_json(root / relative, json.loads((staging / relative).read_text()))
