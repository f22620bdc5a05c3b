"""Offline transitions in memory: the one in-memory form every dataset reader produces.

``terminals`` and ``timeouts`` are kept apart. A terminal step ends the MDP (the learner does not
bootstrap from it); a timeout step is the last step of an episode that was cut without terminating
(a time limit, or the end of the data). A step flagged both is a terminal, never a timeout.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlkit.config import ConfigError


class DatasetError(ConfigError):
    """A dataset that cannot be used: the message names the file and the key.

    A :class:`~rlkit.config.ConfigError`, so the ``rlkit`` command turns it into one line and exit
    status 2.
    """


def dataset_error(source: object, key: str | None, problem: str) -> DatasetError:
    """The error ``"SOURCE: key 'KEY': PROBLEM"`` (without the key part when ``key`` is None).

    :param source: the file or folder.
    :param key: the dataset key (HDF5 path, metadata field) or None.
    :param problem: what is wrong.
    """
    where = f"{source}: key {key!r}: " if key is not None else f"{source}: "
    return DatasetError(where + problem)


@dataclass
class Transitions:
    """Transitions of an offline dataset, in their stored order (episode after episode).

    :param observations: (N, *obs_shape), in the stored dtype (floating point as float32,
        integers such as uint8 pixels kept).
    :param actions: (N, *action_shape): float32 for continuous actions, int64 for discrete ones.
    :param rewards: (N,) float32.
    :param next_observations: (N, *obs_shape) observations to bootstrap from. At a terminal step
        it is not used by learners (no bootstrap).
    :param terminals: (N,) bool: true termination, no bootstrap.
    :param timeouts: (N,) bool: the episode was cut after this step without terminating (time
        limit or end of data). Never set where ``terminals`` is.
    :param metadata: facts about the data. Readers always set ``source`` (path), ``format``,
        ``name`` (file stem or dataset id), ``env_id`` (or None), ``ref_min_score`` and
        ``ref_max_score`` (or None), ``dropped`` (transitions dropped at load because no next
        observation exists) with ``dropped_reason``, ``partial_episodes`` (indices, in
        :meth:`episode_ends` order, of episodes cut by the end of the data rather than by a time
        limit or a termination), ``notes`` (list of strings), and ``observation_space`` /
        ``action_space`` (gymnasium spaces, or None when the file does not say).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        source = self.metadata.get("source", "transitions")
        n = len(self.observations)
        for key in ("actions", "rewards", "next_observations", "terminals", "timeouts"):
            if len(getattr(self, key)) != n:
                raise dataset_error(
                    source,
                    key,
                    f"has {len(getattr(self, key))} rows, 'observations' has {n}",
                )
        if self.next_observations.shape != self.observations.shape:
            raise dataset_error(
                source,
                "next_observations",
                f"has shape {self.next_observations.shape}, "
                f"'observations' {self.observations.shape}",
            )
        for key in ("rewards", "terminals", "timeouts"):
            if getattr(self, key).ndim != 1:
                raise dataset_error(
                    source, key, f"has shape {getattr(self, key).shape}, expected ({n},)"
                )
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.terminals = np.asarray(self.terminals, dtype=bool)
        # a step flagged both terminated and timed out is a termination only
        self.timeouts = np.asarray(self.timeouts, dtype=bool) & ~self.terminals
        self.metadata.setdefault("partial_episodes", [])
        self.metadata.setdefault("dropped", 0)
        self.metadata.setdefault("notes", [])

    def __len__(self) -> int:
        return int(len(self.observations))

    # -------------------------------------------------------------------------------- episodes

    def episode_ends(self) -> np.ndarray:
        """Indices of the last step of each episode (a terminal or a timeout step), ascending."""
        return np.flatnonzero(self.terminals | self.timeouts)

    def episode_bounds(self) -> list[tuple[int, int]]:
        """``(first, end)`` row ranges (end exclusive) of the episodes :meth:`episode_ends`
        delimits; rows after the last end (a trailing episode with no end flag) are left out."""
        ends = self.episode_ends() + 1
        starts = np.concatenate([[0], ends[:-1]])
        return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]

    def episode_returns(self, include_partial: bool = False) -> np.ndarray:
        """Undiscounted returns (float64) of the episodes, in order.

        Episodes are delimited by :meth:`episode_ends`. A trailing partial episode is left out:
        rows after the last terminal/timeout flag (possible only in hand-built transitions; the
        readers flag the end of the data as a timeout) are never counted, and episodes listed in
        ``metadata["partial_episodes"]`` (cut by the end of the data, e.g. the last episode of a
        D4RL file that stops mid-episode) are left out unless ``include_partial``. Returns are
        sums over the stored transitions: a transition the reader dropped (see
        ``metadata["dropped"]``) does not contribute its reward.

        :param include_partial: also return the episodes cut by the end of the data.
        """
        bounds = self.episode_bounds()
        if not bounds:
            return np.zeros(0)
        cumulative = np.concatenate([[0.0], np.cumsum(self.rewards, dtype=np.float64)])
        first, end = np.asarray(bounds).T
        sums = cumulative[end] - cumulative[first]
        if include_partial:
            return sums
        partial = set(self.metadata.get("partial_episodes", []))
        keep = [i for i in range(len(bounds)) if i not in partial]
        return sums[keep]

    def select_episodes(self, indices: Sequence[int] | np.ndarray) -> Transitions:
        """A new :class:`Transitions` holding only the given episodes, in the given order.

        :param indices: 0-based episode indices in :meth:`episode_ends` order (negative ones count
            from the end).
        :raises DatasetError: an index out of range.
        """
        bounds = self.episode_bounds()
        count = len(bounds)
        chosen: list[int] = []
        for index in np.asarray(indices, dtype=np.int64).ravel().tolist():
            if not -count <= index < count:
                raise dataset_error(
                    self.metadata.get("source", "transitions"),
                    "episodes",
                    f"episode {index} does not exist: the dataset has {count} episodes "
                    f"(0..{count - 1})",
                )
            chosen.append(index % count)
        rows = (
            np.concatenate([np.arange(*bounds[i]) for i in chosen])
            if chosen
            else np.zeros(0, dtype=np.int64)
        )
        metadata = _copy_metadata(self.metadata)
        partial = set(self.metadata.get("partial_episodes", []))
        metadata["partial_episodes"] = [k for k, i in enumerate(chosen) if i in partial]
        metadata["selected_episodes"] = chosen
        return Transitions(
            self.observations[rows],
            self.actions[rows],
            self.rewards[rows],
            self.next_observations[rows],
            self.terminals[rows],
            self.timeouts[rows],
            metadata,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Transitions]) -> Transitions:
        """Join datasets one after the other (e.g. medium + expert = medium-expert).

        A part whose last rows carry no end flag gets its last row flagged as a timeout (the end
        of that part's data), so no episode runs from one part into the next. ``metadata`` keeps
        ``env_id``, the spaces and the reference scores when every part agrees on them (None
        otherwise, with a note); ``dropped`` is summed; ``parts`` lists each part's source and
        size.

        :param parts: at least one :class:`Transitions`; same observation and action shapes.
        :raises DatasetError: no parts, or parts of different shapes.
        """
        if not parts:
            raise DatasetError("concatenate: no datasets given")
        first = parts[0]
        for part in parts[1:]:
            for key in ("observations", "actions"):
                a, b = getattr(first, key), getattr(part, key)
                if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
                    raise dataset_error(
                        part.metadata.get("source", "transitions"),
                        key,
                        f"rows of shape {b.shape[1:]} {b.dtype} cannot be joined to "
                        f"{first.metadata.get('source', 'transitions')}'s {a.shape[1:]} {a.dtype}",
                    )
        timeouts, partial, offset = [], [], 0
        for part in parts:
            flags = part.timeouts.copy()
            episodes = len(part.episode_ends())
            extra: list[int] = []
            if len(part) and not (flags[-1] or part.terminals[-1]):
                flags[-1] = True
                extra = [episodes]
                episodes += 1
            timeouts.append(flags)
            partial += [offset + i for i in [*part.metadata.get("partial_episodes", []), *extra]]
            offset += episodes
        metadata: dict[str, Any] = {
            "source": " + ".join(str(p.metadata.get("source", "?")) for p in parts),
            "format": _agreed(parts, "format", "mixed"),
            "name": " + ".join(str(p.metadata.get("name", "?")) for p in parts),
            "dropped": sum(int(p.metadata.get("dropped", 0)) for p in parts),
            "dropped_reason": "; ".join(
                str(p.metadata["dropped_reason"]) for p in parts if p.metadata.get("dropped")
            ),
            "partial_episodes": partial,
            "notes": [n for p in parts for n in p.metadata.get("notes", [])],
            "parts": [
                {
                    "source": str(p.metadata.get("source", "?")),
                    "transitions": len(p),
                    "episodes": len(p.episode_ends()),
                }
                for p in parts
            ],
        }
        for key in ("env_id", "observation_space", "action_space"):
            metadata[key] = _agreed(parts, key, None)
        refs = {(p.metadata.get("ref_min_score"), p.metadata.get("ref_max_score")) for p in parts}
        if len(refs) == 1:
            metadata["ref_min_score"], metadata["ref_max_score"] = refs.pop()
        else:
            metadata["ref_min_score"] = metadata["ref_max_score"] = None
            metadata["notes"].append(
                "the parts have different reference scores; the combined data keeps none"
            )
        return cls(
            np.concatenate([p.observations for p in parts]),
            np.concatenate([p.actions for p in parts]),
            np.concatenate([p.rewards for p in parts]),
            np.concatenate([p.next_observations for p in parts]),
            np.concatenate([p.terminals for p in parts]),
            np.concatenate(timeouts),
            metadata,
        )


def _agreed(parts: Sequence[Transitions], key: str, default: Any) -> Any:
    """``metadata[key]`` when every part has the same value, else ``default``."""
    values = [p.metadata.get(key) for p in parts]
    return values[0] if all(v == values[0] for v in values) else default


def _copy_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A copy deep enough that editing lists in it leaves the original alone (spaces shared)."""
    return {k: copy.deepcopy(v) if isinstance(v, list | dict) else v for k, v in metadata.items()}


# ---------------------------------------------------------------------------------- statistics


def reward_scale_return_range(transitions: Transitions, max_episode_steps: int = 1000) -> float:
    """The O-DICE/IQL authors' locomotion reward scale: ``max_episode_steps / (max - min return)``.

    Returns are computed as the authors' ``return_range`` does, on the stored transitions in
    order: an episode ends at a terminal step or once it has ``max_episode_steps`` steps,
    whichever comes first; the steps after the last such end (a trailing partial episode) are
    ignored. Returns are accumulated in float64.

    Where this differs from counting episodes at timeouts (:meth:`Transitions.episode_returns`):
    the counter never looks at ``timeouts``. On a D4RL file loaded without ``next_observations``
    the last step of every timeout episode is dropped (as d4rl's ``qlearning_dataset`` does), so
    a 1000-step episode holds 999 transitions and the counter runs on into the next episode,
    cutting "episodes" that straddle real boundaries; episodes shorter than ``max_episode_steps``
    that end at a timeout (not a terminal) are merged with what follows. This reproduces the
    authors' numbers on the data they used; ``episode_returns`` gives the true episodes.

    :param transitions: the dataset.
    :param max_episode_steps: the env's time limit (1000 for the D4RL locomotion tasks).
    :raises DatasetError: no complete episode, or every episode has the same return.
    """
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")
    n = len(transitions)
    ends: list[int] = []
    start = 0
    for terminal in np.flatnonzero(transitions.terminals).tolist():
        ends.extend(range(start + max_episode_steps - 1, terminal, max_episode_steps))
        ends.append(terminal)
        start = terminal + 1
    ends.extend(range(start + max_episode_steps - 1, n, max_episode_steps))
    source = transitions.metadata.get("source", "transitions")
    if not ends:
        raise dataset_error(
            source,
            "rewards",
            f"no complete episode (no terminal and fewer than {max_episode_steps} steps): "
            "the return-range reward scale is undefined",
        )
    cumulative = np.concatenate([[0.0], np.cumsum(transitions.rewards, dtype=np.float64)])
    end_index = np.asarray(ends) + 1
    start_index = np.concatenate([[0], end_index[:-1]])
    returns = cumulative[end_index] - cumulative[start_index]
    spread = float(returns.max() - returns.min())
    if spread <= 0.0:
        raise dataset_error(
            source,
            "rewards",
            f"every episode has the same return {returns.max():g}: "
            "the return-range reward scale is undefined",
        )
    return max_episode_steps / spread


def observation_stats(transitions: Transitions) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation + 1e-3 of the observations (float32).

    The O-DICE authors' offline-imitation normalisation: ``(obs - mean) / std`` with this std.

    :param transitions: the dataset (at least one transition).
    """
    if len(transitions) == 0:
        raise dataset_error(
            transitions.metadata.get("source", "transitions"), "observations", "no rows"
        )
    obs = transitions.observations.astype(np.float64)
    mean = obs.mean(axis=0)
    std = obs.std(axis=0) + 1e-3
    return mean.astype(np.float32), std.astype(np.float32)
