"""A replay buffer that stores each frame once, samples n-step batches and checkpoints by appending.

Layout. Everything is addressed by global indices that only grow: transition ``t`` is the
``t``-th transition ever added, frame ``f`` the ``f``-th frame ever stored. Two logs hold them:

- ``transitions``: action, reward, terminated, truncated and ``next_frame``, the global index of
  the newest frame of the transition's ``next_obs``;
- ``frames``: one frame per row. A frame is the newest ``(C, H, W)`` slice of a stacked
  ``(k*C, H, W)`` observation (oldest frame first, DrQ-v2 style), or the whole observation when
  ``frame_stack`` is 1. An episode's first observation stores its ``k`` frames (as the env's
  frame-stack wrapper gave them: DrQ-v2 repeats the first frame), every step after that stores
  only the newest frame of ``next_obs``; so obs and next_obs are never both stored.

The obs of transition ``t`` is frames ``next_frame[t]-k .. next_frame[t]-1`` and its next_obs is
frames ``next_frame[t]-k+1 .. next_frame[t]``; within an episode the frames are contiguous, and the
true final ``next_obs`` of an episode (terminated or truncated) is kept since the next episode
starts with frames of its own.

Each log keeps its rows in chunks of ``chunk_size`` rows, allocated on first write and freed once
every row in them is older than the oldest live transition (the ring: ``capacity`` transitions).
Rows never change once written, so a checkpoint writes only the rows added since the last one,
as immutable segment files ``{log}_{first}_{end}_{token}.npz`` (global row range; ``token`` names
the timeline, renewed on every :meth:`ReplayBuffer.load`, so a resumed run never reuses the name
of a file an abandoned timeline wrote). A manifest lists the segments that hold the live rows.

Dict observations (e.g. Adroit's ``{"pixels": frames, "state": hand joints}``): exactly one image
key (a 3-D Box, frame-stacked as above) and any number of flat float "side" keys. A side value
is the observation's own (not stacked), stored in the frames log beside the observation's newest
frame (field ``side_<key>``; the older frames an episode's first observation stores carry the
same value), so it goes into the same chunks and segment files. :meth:`ReplayBuffer.sample`
returns the image stacks as ``obs`` / ``next_obs`` and the side keys in ``extras`` as ``<key>``
and ``next_<key>`` (the side value of the same ``next_obs``).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.batch import Batch
from rlkit.io import load_arrays, save_arrays
from rlkit.observations import split_dict_space

FORMAT = "rlkit.replay/2"
LOGS = ("transitions", "frames")
# Segment files and the temporary files rlkit.io.save_arrays leaves behind if interrupted.
_SEGMENT_FILE = re.compile(r"^\.?(transitions|frames)_\d{12}_\d{12}_[0-9a-f]+\.npz(\.\w+\.npz)?$")

Fields = dict[str, tuple[tuple[int, ...], np.dtype]]
SIDE_PREFIX = "side_"  # frames-log field of a side key (cannot clash with "frame")


class _ChunkLog:
    """Append-only rows addressed by global index, held in lazily allocated chunks.

    :param name: the log's name (prefix of its segment files).
    :param fields: field name -> (row shape, dtype).
    :param chunk_size: rows per chunk.
    """

    def __init__(self, name: str, fields: Fields, chunk_size: int) -> None:
        self.name = name
        self.fields = fields
        self.chunk_size = chunk_size
        self.chunks: dict[int, dict[str, np.ndarray]] = {}
        self.end = 0  # rows written so far (global index of the next row)
        self.segments: list[tuple[int, int, str]] = []  # (first, end, file name) in the last store

    @property
    def nbytes(self) -> int:
        """Bytes held by the allocated chunks."""
        return sum(a.nbytes for chunk in self.chunks.values() for a in chunk.values())

    def _chunk(self, index: int) -> dict[str, np.ndarray]:
        if index not in self.chunks:
            self.chunks[index] = {
                key: np.zeros((self.chunk_size, *shape), dtype)
                for key, (shape, dtype) in self.fields.items()
            }
        return self.chunks[index]

    def append(self, row: dict[str, Any]) -> int:
        """Write one row at the end; return its global index.

        :param row: field name -> value.
        """
        chunk, offset = divmod(self.end, self.chunk_size)
        arrays = self._chunk(chunk)
        for key, value in row.items():
            arrays[key][offset] = value
        self.end += 1
        return self.end - 1

    def put(self, first: int, arrays: dict[str, np.ndarray]) -> None:
        """Write rows ``first, first+1, ...`` from ``arrays`` (used when loading).

        :param first: global index of the first row.
        :param arrays: field name -> rows.
        """
        stop = first + len(next(iter(arrays.values())))
        for start, end in self._pieces(first, stop):
            chunk = self._chunk(start // self.chunk_size)
            base = (start // self.chunk_size) * self.chunk_size
            for key in self.fields:
                chunk[key][start - base : end - base] = arrays[key][start - first : end - first]

    def _pieces(self, first: int, stop: int) -> list[tuple[int, int]]:
        """``[first, stop)`` split at chunk boundaries (empty when ``first >= stop``)."""
        if first >= stop:
            return []
        size = self.chunk_size
        cuts = [first, *range((first // size + 1) * size, stop, size), stop]
        return list(zip(cuts[:-1], cuts[1:], strict=True))

    def row(self, index: int) -> dict[str, np.ndarray]:
        """The row at global index ``index`` (views into the chunk).

        :param index: a live global index.
        """
        chunk, offset = divmod(index, self.chunk_size)
        return {key: value[offset] for key, value in self.chunks[chunk].items()}

    def gather(self, index: np.ndarray) -> dict[str, np.ndarray]:
        """Rows at global indices ``index`` (any shape): field -> array of ``index.shape + row``.

        :param index: integer array of live global indices.
        """
        flat = np.asarray(index, dtype=np.int64).ravel()
        chunk = flat // self.chunk_size
        offset = flat - chunk * self.chunk_size
        out = {
            key: np.empty((flat.size, *shape), dtype) for key, (shape, dtype) in self.fields.items()
        }
        # Group by chunk: one fancy-index per chunk touched instead of one per row.
        order = np.argsort(chunk, kind="stable")
        for rows in np.split(order, np.flatnonzero(np.diff(chunk[order])) + 1):
            if rows.size == 0:
                continue
            arrays = self.chunks[int(chunk[rows[0]])]
            for key in self.fields:
                out[key][rows] = arrays[key][offset[rows]]
        return {key: value.reshape(np.shape(index) + value.shape[1:]) for key, value in out.items()}

    def free_below(self, first_live: int) -> None:
        """Drop chunks whose rows are all older than ``first_live``.

        :param first_live: global index of the oldest row still needed.
        """
        for index in [c for c in self.chunks if (c + 1) * self.chunk_size <= first_live]:
            del self.chunks[index]

    def save(self, store: Path, first_live: int, token: str) -> list[list[Any]]:
        """Write the live rows not yet in ``store``; return the segments holding the live rows.

        :param store: the folder of segment files.
        :param first_live: global index of the oldest live row.
        :param token: timeline token for new file names.
        """
        kept = [s for s in self.segments if s[1] > first_live and (store / s[2]).is_file()]
        written: list[tuple[int, int, str]] = []
        cursor = first_live
        for first, end, _ in kept:
            written += self._write(store, cursor, first, token)
            cursor = max(cursor, end)
        written += self._write(store, cursor, self.end, token)
        self.segments = sorted(kept + written)
        return [list(s) for s in self.segments]

    def _write(self, store: Path, first: int, stop: int, token: str) -> list[tuple[int, int, str]]:
        """Write rows ``[first, stop)`` as one segment file per chunk touched."""
        segments = []
        for start, end in self._pieces(first, stop):
            base = (start // self.chunk_size) * self.chunk_size
            chunk = self.chunks[start // self.chunk_size]
            name = f"{self.name}_{start:012d}_{end:012d}_{token}.npz"
            save_arrays(
                store / name, {key: chunk[key][start - base : end - base] for key in self.fields}
            )
            segments.append((start, end, name))
        return segments

    def load(self, store: Path, segments: list[list[Any]], first_live: int, end: int) -> None:
        """Replace the contents with rows ``[first_live, end)`` read from ``segments`` in ``store``.

        :param store: the folder of segment files.
        :param segments: ``[first, end, file name]`` lists from a manifest.
        :param first_live: global index of the oldest live row.
        :param end: rows written.
        """
        self.chunks, self.end, self.segments = {}, end, []
        cursor = first_live
        for first, stop, name in sorted(tuple(s) for s in segments):
            if stop <= first_live:
                continue
            if first > cursor:
                break
            arrays = self._read(store / name, stop - first)
            start = max(first, first_live)
            self.put(start, {key: value[start - first :] for key, value in arrays.items()})
            self.segments.append((first, stop, name))
            cursor = max(cursor, stop)
        if cursor < end:
            raise ValueError(f"replay store {store} lacks {self.name} rows {cursor}..{end - 1}")

    def _read(self, path: Path, rows: int) -> dict[str, np.ndarray]:
        if not path.is_file():
            raise FileNotFoundError(
                f"replay store {path.parent} lacks {path.name}, listed in the manifest"
            )
        arrays = load_arrays(path)
        for key, (shape, dtype) in self.fields.items():
            value = arrays.get(key)
            if value is None or value.shape != (rows, *shape) or value.dtype != dtype:
                raise ValueError(
                    f"{path} does not hold {rows} rows of {key} {shape} {np.dtype(dtype)}"
                )
        return arrays


def _obs_dtype(space: gym.spaces.Box) -> np.dtype:
    """uint8 (and other integer) observations keep their dtype; floats are stored as float32."""
    return (
        np.dtype(np.float32) if np.issubdtype(space.dtype, np.floating) else np.dtype(space.dtype)
    )


def _action_spec(space: gym.spaces.Space) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a stored action: float32 for Box, int64 for discrete spaces."""
    if isinstance(space, gym.spaces.Box):
        return tuple(space.shape), np.dtype(np.float32)
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete | gym.spaces.MultiBinary):
        return tuple(space.shape or ()), np.dtype(np.int64)
    raise TypeError(f"ReplayBuffer cannot store actions of {type(space).__name__}")


class ReplayBuffer:
    """Ring buffer of single-env transitions, sampled as n-step :class:`Batch` es.

    :param capacity: maximum number of transitions; the oldest are dropped beyond it.
    :param obs_space: observation space; its dtype is kept (uint8 frames stay uint8), floats are
        stored as float32. With ``frame_stack`` k its shape is ``(k*C, ...)``, oldest frame first.
        A Dict of one image key and flat float side keys is stored as the module doc says.
    :param action_space: action space (Box -> float32, Discrete/MultiDiscrete/MultiBinary -> int64).
    :param nstep: return horizon of :meth:`sample`.
    :param gamma: discount factor of :meth:`sample`.
    :param frame_stack: frames stacked along the first observation axis (1: no stacking).
    :param chunk_size: rows per storage chunk and per checkpoint file (at most ``capacity``).
    """

    def __init__(
        self,
        capacity: int,
        obs_space: gym.spaces.Box | gym.spaces.Dict,
        action_space: gym.spaces.Space,
        *,
        nstep: int = 1,
        gamma: float = 0.99,
        frame_stack: int = 1,
        chunk_size: int = 10_000,
    ) -> None:
        if capacity < 1 or nstep < 1 or frame_stack < 1 or chunk_size < 1:
            raise ValueError("capacity, nstep, frame_stack and chunk_size must be positive")
        self.capacity, self.nstep, self.gamma = int(capacity), int(nstep), float(gamma)
        self.frame_stack = int(frame_stack)
        self.image_key: str | None = None
        self.side: dict[str, tuple[int, ...]] = {}  # side key -> shape (stored as float32)
        if isinstance(obs_space, gym.spaces.Dict):
            self.image_key, obs_space, side = split_dict_space(obs_space)
            self.side = {key: tuple(sub.shape) for key, sub in side.items()}
        self.obs_shape, self.obs_dtype = tuple(obs_space.shape), _obs_dtype(obs_space)
        if self.obs_shape[0] % self.frame_stack:
            raise ValueError(f"obs shape {self.obs_shape} does not split into {frame_stack} frames")
        self.frame_shape = (self.obs_shape[0] // self.frame_stack, *self.obs_shape[1:])
        self.action_shape, self.action_dtype = _action_spec(action_space)
        rows = min(int(chunk_size), self.capacity)
        self._steps = _ChunkLog(
            "transitions",
            {
                "action": (self.action_shape, self.action_dtype),
                "reward": ((), np.dtype(np.float32)),
                "terminated": ((), np.dtype(bool)),
                "truncated": ((), np.dtype(bool)),
                "next_frame": ((), np.dtype(np.int64)),
            },
            rows,
        )
        frame_fields: Fields = {"frame": (self.frame_shape, self.obs_dtype)}
        for key, shape in self.side.items():
            frame_fields[SIDE_PREFIX + key] = (shape, np.dtype(np.float32))
        self._frames = _ChunkLog("frames", frame_fields, rows)
        self.size = 0
        self._token = secrets.token_hex(4)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes held in memory by the storage arrays (allocated chunks of both logs)."""
        return self._steps.nbytes + self._frames.nbytes

    @property
    def transitions_added(self) -> int:
        """Transitions added since the buffer was created (resumed runs included)."""
        return self._steps.end

    # ----------------------------------------------------------------------------------- adding

    def add(
        self,
        obs: np.ndarray,
        action: Any,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one transition.

        ``obs`` must be the previous transition's ``next_obs`` unless that one ended the episode
        (terminated or truncated): then ``obs`` starts a new episode.

        :param obs: observation before the step.
        :param action: the action taken.
        :param reward: the reward received.
        :param next_obs: the observation after the step (the true final one at episode end).
        :param terminated: the MDP ended (no bootstrap).
        :param truncated: the episode was cut (time limit): still bootstrap.
        """
        (obs, side), (next_obs, next_side) = (
            self._parts(obs, "obs"),
            self._parts(next_obs, "next_obs"),
        )
        frames, next_frames = self._split(obs), self._split(next_obs)
        if self._episode_open():
            self._check_continues(obs, side)
        else:
            for frame in frames:
                self._frames.append({"frame": frame, **side})
        if not np.array_equal(frames[1:], next_frames[:-1], equal_nan=self._floating):
            raise ValueError("next_obs must be obs shifted by one frame (oldest frame first)")
        newest = self._frames.append({"frame": next_frames[-1], **next_side})
        self._steps.append(
            {
                "action": action,
                "reward": reward,
                "terminated": bool(terminated),
                "truncated": bool(truncated),
                "next_frame": newest,
            }
        )
        self.size = min(self.size + 1, self.capacity)
        self._steps.free_below(self._first)
        self._frames.free_below(self._first_frame())

    @property
    def _floating(self) -> bool:
        return bool(np.issubdtype(self.obs_dtype, np.floating))

    def _parts(self, obs: Any, name: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(image or Box observation, frames-log side fields) of one observation."""
        if self.image_key is None:
            return self._as_obs(obs, name), {}
        if not isinstance(obs, dict) or set(obs) != {self.image_key, *self.side}:
            keys = sorted([self.image_key, *self.side])
            raise ValueError(f"{name} must be a dict with keys {keys}")
        side = {}
        for key, shape in self.side.items():
            value = np.asarray(obs[key], dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"{name}[{key!r}] has shape {value.shape}, expected {shape}")
            side[SIDE_PREFIX + key] = value
        return self._as_obs(obs[self.image_key], f"{name}[{self.image_key!r}]"), side

    def _as_obs(self, obs: np.ndarray, name: str) -> np.ndarray:
        array = np.asarray(obs)
        if array.shape != self.obs_shape:
            raise ValueError(f"{name} has shape {array.shape}, expected {self.obs_shape}")
        return array.astype(self.obs_dtype, copy=False)

    def _split(self, obs: np.ndarray) -> np.ndarray:
        """(k, *frame_shape) frames of a stacked observation."""
        return obs.reshape(self.frame_stack, *self.frame_shape)

    def _episode_open(self) -> bool:
        """Whether the newest transition continues into the next one (did not end its episode)."""
        if self._steps.end == 0:
            return False
        last = self._steps.row(self._steps.end - 1)
        return not (last["terminated"] or last["truncated"])

    def _check_continues(self, obs: np.ndarray, side: dict[str, np.ndarray]) -> None:
        """Refuse an ``obs`` that is not the previous ``next_obs``: its frames would be wrong."""
        previous = self._stacks(np.array([self._frames.end - self.frame_stack]))[0]
        stored = self._frames.row(self._frames.end - 1)
        same_side = all(np.array_equal(v, stored[k], equal_nan=True) for k, v in side.items())
        if not (same_side and np.array_equal(obs, previous, equal_nan=self._floating)):
            raise ValueError(
                "obs is not the previous transition's next_obs: end the previous transition "
                "(terminated or truncated) before starting a new episode"
            )

    @property
    def _first(self) -> int:
        """Global index of the oldest live transition."""
        return self._steps.end - self.size

    def _first_frame(self) -> int:
        """Global index of the oldest frame a live transition needs."""
        if self.size == 0:
            return self._frames.end
        return int(self._steps.row(self._first)["next_frame"]) - self.frame_stack

    # --------------------------------------------------------------------------------- sampling

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Sample n-step transitions uniformly (``self.nstep``, ``self.gamma``).

        The n-step sum stops early at an episode end (terminated or truncated) and at the newest
        stored transition; ``discount`` is ``gamma**k`` times ``1 - terminated`` of the last step
        used, and ``next_obs`` is that step's next observation (the true final one at a
        truncation). Draws ``rng.integers(0, len(self), batch_size)`` once.

        :param batch_size: transitions in the batch.
        :param rng: numpy generator (its state is checkpointed by the loop).
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        logical = rng.integers(0, self.size, size=batch_size)
        window = self._first + logical[:, None] + np.arange(self.nstep)
        rows = self._steps.gather(np.minimum(window, self._steps.end - 1))
        reward, discount, last = self._nstep(rows, logical)
        next_frame = rows["next_frame"][np.arange(batch_size), last]
        obs = self._stacks(rows["next_frame"][:, 0] - self.frame_stack)
        next_obs = self._stacks(next_frame - self.frame_stack + 1)
        as_f32 = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        return Batch(
            torch.from_numpy(obs),
            torch.from_numpy(rows["action"][:, 0].copy()),
            as_f32(reward)[:, None],
            as_f32(discount)[:, None],
            torch.from_numpy(next_obs),
            self._side_extras(rows["next_frame"][:, 0] - 1, next_frame),
        )

    def _side_extras(self, newest: np.ndarray, next_newest: np.ndarray) -> dict[str, torch.Tensor]:
        """``{key, next_key}`` side values at the obs' and next_obs' newest frames (none: {})."""
        if not self.side:
            return {}
        now = self._frames.gather(newest)
        then = self._frames.gather(next_newest)
        extras = {}
        for key in self.side:
            extras[key] = torch.from_numpy(now[SIDE_PREFIX + key])
            extras[f"next_{key}"] = torch.from_numpy(then[SIDE_PREFIX + key])
        return extras

    def _nstep(
        self, rows: dict[str, np.ndarray], logical: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reward, discount, window position of the last step used), accumulated in float64."""
        batch = len(logical)
        reward = np.zeros(batch, dtype=np.float64)
        discount = np.ones(batch, dtype=np.float64)
        active = np.ones(batch, dtype=bool)
        last = np.zeros(batch, dtype=np.int64)
        for k in range(self.nstep):
            valid = active & (logical + k < self.size)
            terminated = rows["terminated"][:, k]
            reward[valid] += discount[valid] * rows["reward"][valid, k]
            discount[valid] *= self.gamma
            last[valid] = k
            discount[valid & terminated] = 0.0
            active = valid & ~(terminated | rows["truncated"][:, k])
        return reward, discount, last

    def _stacks(self, first_frame: np.ndarray) -> np.ndarray:
        """Observations whose oldest frames are ``first_frame`` (B,): (B, *obs_shape)."""
        index = first_frame[:, None] + np.arange(self.frame_stack)
        frames = self._frames.gather(index)["frame"]
        return frames.reshape(len(first_frame), *self.obs_shape)

    def recent_actions(self, count: int) -> np.ndarray:
        """The last ``count`` actions, oldest first (used to restore an env after resuming).

        :param count: how many; at most ``len(self)``.
        """
        if not 0 <= count <= self.size:
            raise ValueError(f"cannot return {count} recent actions from {self.size} transitions")
        return self._steps.gather(np.arange(self._steps.end - count, self._steps.end))["action"]

    # ------------------------------------------------------------------------------ checkpoints

    def save(self, store: Path) -> dict[str, Any]:
        """Write the live rows not yet in ``store`` and return the manifest of this state.

        Only rows added since the last save into the same store are written (files already there
        are reused), one immutable ``.npz`` per chunk touched. Keep the manifest with the
        checkpoint (it is small and JSON-able) and pass it to :meth:`load`.

        :param store: folder of segment files, shared by all checkpoints of a run.
        """
        store = Path(store)
        store.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "capacity": self.capacity,
            "frame_stack": self.frame_stack,
            "obs_shape": list(self.obs_shape),
            "obs_dtype": self.obs_dtype.str,
            "action_shape": list(self.action_shape),
            "action_dtype": self.action_dtype.str,
            "size": self.size,
        }
        manifest |= self._dict_manifest()
        for log, first in ((self._steps, self._first), (self._frames, self._first_frame())):
            manifest[log.name] = {
                "first": first,
                "end": log.end,
                "segments": log.save(store, first, self._token),
            }
        return manifest

    def load(self, store: Path, manifest: dict[str, Any]) -> None:
        """Restore exactly the state ``manifest`` describes, reading its segments from ``store``.

        Newer segments in the store (written after that manifest) are ignored. The capacity and
        chunk size may differ from the saving buffer's if the capacity holds the stored transitions.

        :param store: the folder :meth:`save` wrote into.
        :param manifest: what :meth:`save` returned.
        """
        self._check_manifest(manifest)
        store = Path(store)
        for log in (self._steps, self._frames):
            part = manifest[log.name]
            log.load(store, part["segments"], int(part["first"]), int(part["end"]))
        self.size = int(manifest["size"])
        # A new timeline starts here: its files must not reuse names an abandoned one wrote.
        self._token = secrets.token_hex(4)

    def _check_manifest(self, manifest: dict[str, Any]) -> None:
        if manifest.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} manifest: format {manifest.get('format')!r}")
        expected = {
            "frame_stack": self.frame_stack,
            "obs_shape": list(self.obs_shape),
            "obs_dtype": self.obs_dtype.str,
            "action_shape": list(self.action_shape),
            "action_dtype": self.action_dtype.str,
        }
        expected |= self._dict_manifest()
        for key in ("image_key", "side"):
            expected.setdefault(key, None)
        for key, value in expected.items():
            if manifest.get(key) != value:
                raise ValueError(f"checkpointed buffer has {key} {manifest[key]}, this one {value}")
        if manifest["size"] > self.capacity:
            raise ValueError(
                f"checkpointed buffer holds {manifest['size']} transitions, "
                f"more than the capacity {self.capacity}"
            )

    def _dict_manifest(self) -> dict[str, Any]:
        """Manifest entries of a Dict observation space (a Box manifest stays as it was)."""
        if self.image_key is None:
            return {}
        return {"image_key": self.image_key, "side": {k: list(s) for k, s in self.side.items()}}

    @staticmethod
    def prune_store(store: Path, manifests: list[dict[str, Any]]) -> None:
        """Delete the segment files of ``store`` that none of ``manifests`` references.

        Other files are left alone; interrupted writes (temporary files) are removed too.

        :param store: the folder :meth:`save` wrote into.
        :param manifests: the manifests of every checkpoint still kept.
        """
        store = Path(store)
        if not store.is_dir():
            return
        used = {s[2] for m in manifests for log in LOGS for s in m[log]["segments"]}
        for path in store.iterdir():
            if _SEGMENT_FILE.match(path.name) and path.name not in used:
                path.unlink(missing_ok=True)
