"""Read offline datasets from local files only: D4RL-format HDF5 files and Minari datasets.

Nothing here touches the network: a Minari dataset id is looked up under
``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``) and read from its folder.

Every problem with the data (not HDF5, a cut-off file, a missing key, rows of different lengths,
non-numeric or non-finite values, wrong shapes, an empty file) raises :class:`DatasetError`,
one message naming the file and the key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlkit.datasets.minari_io import (
    Episode,
    _check_flags,
    _check_numeric,
    datasets_root,
    episodes_to_transitions,
    stored_actions,
    stored_observations,
    transitions_to_episodes,
)
from rlkit.datasets.transitions import DatasetError, Transitions, dataset_error

HDF5_SUFFIXES = (".hdf5", ".h5")
#: keys a D4RL-format file must hold (``timeouts`` too unless it has ``next_observations``)
REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
#: exceptions h5py raises on damaged or cut-off files
_H5_ERRORS = (OSError, ValueError, RuntimeError, KeyError, TypeError)


def resolve(spec: str | Path) -> tuple[str, Path]:
    """What ``spec`` names: ``("hdf5", file)`` or ``("minari", dataset folder)``.

    :param spec: an HDF5 file, a Minari dataset folder (holding ``data/metadata.json``; its
        ``data`` folder works too) or a Minari dataset id under :func:`datasets_root`.
    :raises DatasetError: nothing of the kind exists.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return "hdf5", path
    if path.is_dir():
        if (path / "data" / "metadata.json").is_file():
            return "minari", path
        if path.name == "data" and (path / "metadata.json").is_file():
            return "minari", path.parent
        raise DatasetError(
            f"{path}: a folder but not a Minari dataset (no data/metadata.json in it)"
        )
    root = datasets_root()
    candidate = root / str(spec)
    if (candidate / "data" / "metadata.json").is_file():
        return "minari", candidate
    if candidate.is_dir() and not str(spec).endswith(HDF5_SUFFIXES):
        raise DatasetError(f"{candidate}: key 'data/metadata.json': missing (not a dataset)")
    raise DatasetError(
        f"{spec}: not found: no such file or folder, and no Minari dataset {str(spec)!r} under "
        f"{root} (set MINARI_DATASETS_PATH or give a path; rlkit never downloads: fetch it "
        "yourself, e.g. `minari download ID`)"
    )


def load_dataset(
    spec: str | Path,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
) -> Transitions:
    """Load and validate an offline dataset as :class:`Transitions`.

    D4RL-format HDF5 (``.hdf5``/``.h5``): ``observations``, ``actions``, ``rewards``,
    ``terminals``, ``timeouts`` and optionally ``next_observations``; ``infos/`` and
    ``metadata/`` groups are ignored. Next observations come from ``next_observations`` when
    present; otherwise from the next row within an episode. At the last step of a timeout
    episode, and at the file's last row when it is not terminal, there is no true next
    observation: that transition is dropped (as d4rl's ``qlearning_dataset`` does) and counted in
    ``metadata["dropped"]``, and the step before it becomes the episode's timeout. A terminal
    step keeps its transition (its next observation, unused, is the next row, or the row itself
    at the end of the file). A step flagged both terminal and timeout is terminal.

    Minari: episodes hold T+1 observations, so next observations are exact and nothing is
    dropped. An episode whose last step has neither flag (data ended mid-episode) is flagged a
    timeout and listed in ``metadata["partial_episodes"]``, as is the end of a D4RL file.

    :param spec: a ``.hdf5``/``.h5`` file, a Minari dataset folder, or a Minari dataset id
        resolved under ``$MINARI_DATASETS_PATH`` (default ``~/.minari/datasets``).
    :param observation_space: when given, observation rows must have its shape.
    :param action_space: when given, action rows must match it (shape; range of a Discrete).
    :raises DatasetError: a missing, unreadable or invalid dataset (one message naming file and
        key).
    """
    kind, path = resolve(spec)
    if kind == "hdf5":
        return _read_hdf5(path, observation_space, action_space)
    episodes, metadata = read_minari(path)
    transitions = episodes_to_transitions(episodes, metadata)
    _check_spaces(metadata["main_file"], transitions, observation_space, action_space)
    if observation_space is not None:
        transitions.metadata["observation_space"] = observation_space
    if action_space is not None:
        transitions.metadata["action_space"] = action_space
    return transitions


def load_episodes(spec: str | Path) -> tuple[list[Episode], dict[str, Any]]:
    """The episodes of a dataset and its metadata (for converting and combining datasets).

    Minari episodes are returned as stored; a D4RL file is loaded as by :func:`load_dataset`
    and split into episodes by :func:`~rlkit.datasets.transitions_to_episodes`.

    :param spec: as for :func:`load_dataset`.
    """
    kind, path = resolve(spec)
    if kind == "minari":
        return read_minari(path)
    transitions = _read_hdf5(path, None, None)
    return transitions_to_episodes(transitions), transitions.metadata


# ------------------------------------------------------------------------------------ D4RL HDF5


def _read_key(path: Path, handle: Any, key: str) -> np.ndarray:
    """The array stored at ``key``, checked to be a numeric dataset that can be read."""
    import h5py

    try:
        node = handle[key]
    except _H5_ERRORS as err:
        raise dataset_error(path, key, f"cannot be opened (damaged file?): {err}") from None
    if isinstance(node, h5py.Group):
        raise dataset_error(
            path, key, "is a group, not an array (dict observations are not supported: flatten)"
        )
    if not isinstance(node, h5py.Dataset):
        raise dataset_error(path, key, f"is a {type(node).__name__}, not an array")
    if node.dtype.kind not in "biuf":
        raise dataset_error(path, key, f"has dtype {node.dtype}, expected numbers")
    try:
        return np.asarray(node[()])
    except _H5_ERRORS as err:
        raise dataset_error(
            path, key, f"cannot be read (file cut off or damaged?): {err}"
        ) from None


def _read_hdf5(
    path: Path, observation_space: gym.Space | None, action_space: gym.Space | None
) -> Transitions:
    import h5py

    if not h5py.is_hdf5(path):
        hint = "" if path.suffix in HDF5_SUFFIXES else " (expected a .hdf5/.h5 file or a dataset)"
        raise DatasetError(f"{path}: not an HDF5 file{hint}")
    try:
        handle = h5py.File(path, "r")
    except _H5_ERRORS as err:
        raise DatasetError(
            f"{path}: cannot be opened as HDF5 (cut off or damaged?): {err}"
        ) from None
    with handle:
        try:
            present = set(handle.keys())
        except _H5_ERRORS as err:
            raise DatasetError(f"{path}: cannot list its keys (damaged file?): {err}") from None
        for key in REQUIRED_KEYS:
            if key not in present:
                raise dataset_error(path, key, f"missing (the file has {sorted(present)})")
        if "timeouts" not in present and "next_observations" not in present:
            raise dataset_error(
                path,
                "timeouts",
                "missing: without it (or next_observations) the episodes cut by the time limit "
                "cannot be told apart",
            )
        arrays = {
            key: _read_key(path, handle, key)
            for key in (*REQUIRED_KEYS, "timeouts", "next_observations")
            if key in present
        }
    obs = arrays["observations"]
    if obs.ndim < 2:
        raise dataset_error(
            path, "observations", f"has shape {obs.shape}, expected (N, *observation_shape)"
        )
    n = len(obs)
    if n == 0:
        raise dataset_error(path, "observations", "has 0 rows: the dataset is empty")
    for key, value in arrays.items():
        if value.ndim == 0 or len(value) != n:
            rows = "a scalar" if value.ndim == 0 else f"{len(value)} rows"
            raise dataset_error(path, key, f"has {rows}, 'observations' has {n}")
    for key in ("rewards", "terminals", "timeouts"):
        if key in arrays and arrays[key].ndim != 1:
            raise dataset_error(path, key, f"has shape {arrays[key].shape}, expected ({n},)")
    actions = arrays["actions"]
    if actions.dtype.kind in "bf" and actions.ndim == 1:
        raise dataset_error(
            path, "actions", f"has shape {actions.shape}, expected (N, action_dim) for real actions"
        )
    if "next_observations" in arrays and arrays["next_observations"].shape != obs.shape:
        raise dataset_error(
            path,
            "next_observations",
            f"has shape {arrays['next_observations'].shape}, 'observations' {obs.shape}",
        )
    for key in ("observations", "actions", "rewards", "next_observations"):
        if key in arrays:
            _check_numeric(path, key, arrays[key])
    for key in ("terminals", "timeouts"):
        if key in arrays:
            _check_flags(path, key, arrays[key])
    obs = stored_observations(obs)
    _check_numeric(path, "observations", obs)  # float64 beyond float32's range became inf
    transitions = _d4rl_transitions(path, arrays, obs)
    _check_spaces(path, transitions, observation_space, action_space)
    transitions.metadata["observation_space"] = observation_space
    transitions.metadata["action_space"] = action_space
    return transitions


def _d4rl_transitions(path: Path, arrays: dict[str, np.ndarray], obs: np.ndarray) -> Transitions:
    """Next observations, drops and episode flags of a validated D4RL file."""
    n = len(obs)
    terminals = arrays["terminals"].astype(bool)
    has_timeouts = "timeouts" in arrays
    timeouts = arrays["timeouts"].astype(bool) if has_timeouts else np.zeros(n, dtype=bool)
    timeouts &= ~terminals
    data_ends_open = not (terminals[-1] or timeouts[-1])
    notes: list[str] = []
    if not has_timeouts:
        notes.append(
            "no 'timeouts' key: episodes cut by the time limit are not delimited "
            "(episode_ends and episode_returns see them joined to the next one)"
        )
    if "next_observations" in arrays:
        next_obs = stored_observations(arrays["next_observations"])
        _check_numeric(path, "next_observations", next_obs)
        keep = np.ones(n, dtype=bool)
        dropped_reason = ""
        partial = data_ends_open
        if data_ends_open:
            timeouts[-1] = True
    else:
        next_obs = obs[np.minimum(np.arange(1, n + 1), n - 1)]
        drop = timeouts.copy()
        if not terminals[-1]:
            drop[-1] = True
        dropped_timeouts = int(timeouts.sum())
        index = np.flatnonzero(drop)
        before = index - 1
        same_episode = before >= 0
        same_episode[same_episode] &= ~(terminals | timeouts)[before[same_episode]]
        timeouts[before[same_episode]] = True
        partial = data_ends_open and bool(same_episode[-1])
        keep = ~drop
        reasons = []
        if dropped_timeouts:
            plural = "s" if dropped_timeouts > 1 else ""
            reasons.append(f"the last step of {dropped_timeouts} timeout episode{plural}")
        if data_ends_open:
            reasons.append("the file's last row (the data ends mid-episode)")
        dropped_reason = (
            " and ".join(reasons)
            + " have no next observation (the file has no next_observations); dropped as "
            "d4rl's qlearning_dataset does"
            if reasons
            else ""
        )
    kept = np.flatnonzero(keep)
    if kept.size == 0:
        raise dataset_error(
            path, "observations", "no row has a next observation: nothing to learn from"
        )
    episodes = int((terminals[kept] | timeouts[kept]).sum())
    metadata: dict[str, Any] = {
        "source": str(path),
        "format": "d4rl-hdf5",
        "name": path.stem,
        "env_id": None,
        "ref_min_score": None,
        "ref_max_score": None,
        "dropped": int(n - len(kept)),
        "dropped_reason": dropped_reason,
        "partial_episodes": [episodes - 1] if partial else [],
        "notes": notes,
    }
    return Transitions(
        obs[kept],
        stored_actions(arrays["actions"][kept]),
        arrays["rewards"][kept].astype(np.float32),
        next_obs[kept],
        terminals[kept],
        timeouts[kept],
        metadata,
    )


def _check_spaces(
    source: object,
    transitions: Transitions,
    observation_space: gym.Space | None,
    action_space: gym.Space | None,
) -> None:
    """Observation and action rows against the given spaces."""
    if observation_space is not None:
        shape = tuple(observation_space.shape or ())
        if transitions.observations.shape[1:] != shape:
            raise dataset_error(
                source,
                "observations",
                f"rows have shape {transitions.observations.shape[1:]}, the observation space "
                f"{shape}",
            )
    if action_space is None:
        return
    actions = transitions.actions
    if isinstance(action_space, gym.spaces.Discrete):
        if actions.ndim != 1 or actions.dtype.kind not in "iu":
            raise dataset_error(
                source,
                "actions",
                f"rows of shape {actions.shape[1:]} {actions.dtype}, the action space "
                f"{action_space} needs one integer per row",
            )
        low, high = int(action_space.start), int(action_space.start + action_space.n)
        bad = (actions < low) | (actions >= high)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise dataset_error(
                source,
                "actions",
                f"holds {actions[row].item()} at row {row}, outside {action_space}",
            )
        return
    shape = tuple(action_space.shape or ())
    if actions.shape[1:] != shape:
        raise dataset_error(
            source,
            "actions",
            f"rows have shape {actions.shape[1:]}, the action space {shape}",
        )


# ---------------------------------------------------------------------------------------- Minari


def read_minari(folder: Path) -> tuple[list[Episode], dict[str, Any]]:
    """The episodes and metadata of a local Minari dataset folder, validated.

    Read with Minari's own storage reader; supports Box observations and Box or Discrete actions.

    :param folder: the dataset folder (holding ``data/metadata.json``).
    :raises DatasetError: unreadable metadata, unsupported spaces, or a bad episode.
    """
    data = Path(folder) / "data"
    meta_path = data / "metadata.json"
    try:
        raw = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"{meta_path}: cannot be read ({type(err).__name__}: {err})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{meta_path}: not a JSON object")
    spaces = {key: _space(meta_path, raw, key) for key in ("observation_space", "action_space")}
    if not isinstance(spaces["observation_space"], gym.spaces.Box):
        raise dataset_error(
            meta_path,
            "observation_space",
            f"{type(spaces['observation_space']).__name__} observations are not supported "
            "(Box only: flatten dict observations first)",
        )
    if not isinstance(spaces["action_space"], gym.spaces.Box | gym.spaces.Discrete):
        raise dataset_error(
            meta_path,
            "action_space",
            f"{type(spaces['action_space']).__name__} actions are not supported (Box or Discrete)",
        )
    for key in ("total_episodes", "total_steps"):
        if not isinstance(raw.get(key), int) or raw[key] < 0:
            raise dataset_error(meta_path, key, f"is {raw.get(key)!r}, expected a count")
    main = data / "main_data.hdf5" if raw.get("data_format", "hdf5") == "hdf5" else data
    from minari.dataset.minari_storage import MinariStorage

    try:
        storage = MinariStorage.read(data)
    except Exception as err:  # a third-party reader on an untrusted folder: report, never crash
        raise DatasetError(
            f"{data}: cannot be read by Minari ({type(err).__name__}: {err})"
        ) from None
    total = raw["total_episodes"]
    episodes: list[Episode] = []
    stream = iter(storage.get_episodes(range(total)))
    for index in range(total):
        name = f"episode_{index}"
        try:
            item = next(stream)
        except Exception as err:  # h5py/Minari errors on a damaged file: one line
            raise dataset_error(
                main, name, f"cannot be read ({type(err).__name__}: {err})"
            ) from None
        episode = _episode(main, name, item)
        episode.check(main, name)
        _check_episode_space(main, name, episode, spaces)
        episodes.append(episode)
    try:
        seeds = [m.get("seed") for m in storage.get_episode_metadata(range(total))]
    except Exception as err:  # damaged episode attributes
        raise DatasetError(
            f"{main}: the episodes' attributes cannot be read ({type(err).__name__}: {err})"
        ) from None
    for episode, seed in zip(episodes, seeds, strict=True):
        episode.seed = int(seed) if isinstance(seed, int | np.integer) else None
    steps = sum(len(e) for e in episodes)
    if steps != raw["total_steps"]:
        raise dataset_error(
            meta_path, "total_steps", f"is {raw['total_steps']}, the episodes hold {steps} steps"
        )
    if not episodes:
        raise dataset_error(meta_path, "total_episodes", "is 0: the dataset is empty")
    rlkit_facts: dict[str, Any] = raw["rlkit"] if isinstance(raw.get("rlkit"), dict) else {}
    notes = []
    if rlkit_facts.get("dropped_at_conversion"):
        notes.append(
            f"{rlkit_facts['dropped_at_conversion']} transitions were dropped converting "
            f"{rlkit_facts.get('converted_from')}: {rlkit_facts.get('dropped_reason')}"
        )
    metadata: dict[str, Any] = {
        "source": str(folder),
        "main_file": str(main),
        "format": "minari",
        "name": raw.get("dataset_id", Path(folder).name),
        "env_id": rlkit_facts.get("env_id") or _spec_id(raw.get("env_spec")),
        "ref_min_score": raw.get("ref_min_score"),
        "ref_max_score": raw.get("ref_max_score"),
        "dropped": 0,
        "dropped_reason": "",
        "notes": notes,
        "observation_space": spaces["observation_space"],
        "action_space": spaces["action_space"],
        "minari": {
            k: raw[k]
            for k in ("algorithm_name", "description", "minari_version", "dataset_id")
            if k in raw
        },
        "rlkit": rlkit_facts,
    }
    return episodes, metadata


def _space(meta_path: Path, raw: dict[str, Any], key: str) -> gym.Space:
    from minari.serialization import deserialize_space

    if not isinstance(raw.get(key), str):
        raise dataset_error(meta_path, key, "missing (rlkit reads the spaces from metadata.json)")
    try:
        return deserialize_space(raw[key])
    except Exception as err:  # malformed JSON or an unknown space type
        raise dataset_error(
            meta_path, key, f"cannot be read ({type(err).__name__}: {err})"
        ) from None


def _spec_id(env_spec: Any) -> str | None:
    """The ``id`` of a JSON env spec, or None."""
    if not isinstance(env_spec, str):
        return None
    try:
        spec = json.loads(env_spec)
    except ValueError:
        return None
    value = spec.get("id") if isinstance(spec, dict) else None
    return value if isinstance(value, str) else None


def _episode(main: Path, name: str, item: dict[str, Any]) -> Episode:
    keys = ("observations", "actions", "rewards", "terminations", "truncations")
    for key in keys:
        value = item.get(key)
        if not isinstance(value, np.ndarray):
            raise dataset_error(main, f"{name}/{key}", f"is {type(value).__name__}, not an array")
    return Episode(
        item["observations"],
        item["actions"],
        item["rewards"],
        item["terminations"],
        item["truncations"],
    )


def _check_episode_space(
    main: Path, name: str, episode: Episode, spaces: dict[str, gym.Space]
) -> None:
    obs_shape = tuple(spaces["observation_space"].shape or ())
    if episode.observations.shape[1:] != obs_shape:
        raise dataset_error(
            main,
            f"{name}/observations",
            f"rows have shape {episode.observations.shape[1:]}, the dataset's observation space "
            f"{obs_shape}",
        )
    action_space = spaces["action_space"]
    act_shape = tuple(action_space.shape or ())
    if episode.actions.shape[1:] != act_shape:
        raise dataset_error(
            main,
            f"{name}/actions",
            f"rows have shape {episode.actions.shape[1:]}, the dataset's action space {act_shape}",
        )
