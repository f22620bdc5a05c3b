"""Replay storage: bytes per pixel transition in memory, and bytes written per checkpoint.

A DrQ-v2-style pixel buffer (84x84 RGB frames, frame stack 3, 6-D actions, 500-transition
episodes as DMC with action repeat 2) is filled with random uint8 frames to its 100k capacity
and checkpointed; after ``--more`` further steps it is checkpointed again into the same store.
The old layout (float32 obs and next_obs, whole buffer per checkpoint) is computed from shapes.
The second checkpoint is loaded into a fresh buffer to check it restores the same samples.

    python -m benchmarks.replay_storage [--capacity 100000] [--more 10000] [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import write_result  # noqa: E402
from rlkit.replay import ReplayBuffer  # noqa: E402

FRAME = (3, 84, 84)
STACK = 3
ACTION_DIM = 6
EPISODE = 500


class RandomPixelEpisodes:
    """Stacked random uint8 frames (oldest first), reset repeating the first frame (DrQ-v2).

    :param seed: seed of the frame pool and actions.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        # A pool of random frames: content does not change the byte counts, drawing 21 kB of
        # fresh randomness per step would only slow the benchmark down.
        self.pool = self.rng.integers(0, 256, size=(257, *FRAME), dtype=np.uint8)
        self.frames: deque[np.ndarray] = deque(maxlen=STACK)
        self.t = 0

    def _frame(self) -> np.ndarray:
        return self.pool[self.rng.integers(len(self.pool))]

    def reset(self) -> np.ndarray:
        """First observation of an episode."""
        first, self.t = self._frame(), 0
        self.frames.extend([first] * STACK)
        return np.concatenate(self.frames)

    def step(self) -> tuple[np.ndarray, np.ndarray, float, bool]:
        """(action, next_obs, reward, truncated) of one step."""
        self.t += 1
        self.frames.append(self._frame())
        action = self.rng.uniform(-1, 1, ACTION_DIM).astype(np.float32)
        return action, np.concatenate(self.frames), float(self.rng.normal()), self.t >= EPISODE


def fill(
    buffer: ReplayBuffer, env: RandomPixelEpisodes, obs: np.ndarray, steps: int
) -> tuple[np.ndarray, float]:
    """Add ``steps`` transitions; return the next obs and the seconds spent in ``add``.

    :param buffer: the buffer.
    :param env: the frame source.
    :param obs: the current observation.
    :param steps: transitions to add.
    """
    spent = 0.0
    for _ in range(steps):
        action, next_obs, reward, truncated = env.step()
        start = time.perf_counter()
        buffer.add(obs, action, reward, next_obs, False, truncated)
        spent += time.perf_counter() - start
        obs = env.reset() if truncated else next_obs
    return obs, spent


def checkpoint(buffer: ReplayBuffer, store: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """Save into ``store``; return the manifest and what was written (files, bytes, seconds).

    :param buffer: the buffer.
    :param store: the segment folder.
    """
    before = {p.name for p in store.iterdir()} if store.exists() else set()
    start = time.perf_counter()
    manifest = buffer.save(store)
    seconds = time.perf_counter() - start
    new = [p for p in store.iterdir() if p.name not in before]
    return manifest, {
        "files": len(new),
        "bytes": sum(p.stat().st_size for p in new),
        "seconds": seconds,
    }


def resident_bytes() -> int:
    """Resident memory of this process (Linux ``/proc/self/statm``)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sample_ms(buffer: ReplayBuffer, batch_size: int = 256, repeats: int = 20) -> float:
    """Median milliseconds of one ``sample(batch_size)``.

    :param buffer: the buffer.
    :param batch_size: transitions per batch.
    :param repeats: timed calls.
    """
    rng = np.random.default_rng(1)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        buffer.sample(batch_size, rng)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def make_buffer(capacity: int, chunk_size: int) -> ReplayBuffer:
    """The benchmarked pixel buffer (uint8 9x84x84 stacks, nstep 3).

    :param capacity: transitions.
    :param chunk_size: rows per chunk.
    """
    obs_space = gym.spaces.Box(0, 255, (STACK * FRAME[0], *FRAME[1:]), np.uint8)
    action_space = gym.spaces.Box(-1, 1, (ACTION_DIM,), np.float32)
    return ReplayBuffer(
        capacity,
        obs_space,
        action_space,
        nstep=3,
        gamma=0.99,
        frame_stack=STACK,
        chunk_size=chunk_size,
    )


def old_layout_bytes() -> dict[str, int]:
    """Bytes per transition of the previous buffer: float32 obs and next_obs of 9x84x84."""
    obs = STACK * int(np.prod(FRAME)) * 4
    return {"obs_and_next_obs": 2 * obs, "all_fields": 2 * obs + 4 * ACTION_DIM + 4 + 1 + 1}


def run(capacity: int, more: int, chunk_size: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Measure; return the figures and the table rows.

    :param capacity: buffer capacity (filled completely before the first checkpoint).
    :param more: steps added between the two checkpoints.
    :param chunk_size: rows per chunk.
    """
    env = RandomPixelEpisodes()
    rss = resident_bytes()
    buffer = make_buffer(capacity, chunk_size)
    store = Path(tempfile.mkdtemp(prefix="replay_storage_"))
    try:
        obs, add_s = fill(buffer, env, env.reset(), capacity)
        full = {
            "nbytes": buffer.nbytes,
            "resident": resident_bytes() - rss,
            "frames_live": buffer._frames.end - buffer._first_frame(),
        }
        _, first = checkpoint(buffer, store)
        obs, more_s = fill(buffer, env, obs, more)
        manifest, second = checkpoint(buffer, store)
        figures = measure(buffer, full, first, second, more, (add_s + more_s) / (capacity + more))
        expected = buffer.sample(64, np.random.default_rng(5))
        del buffer  # the original's memory goes before the restored copy is loaded
        figures["load_seconds"], restored = timed_load(store, manifest, capacity, chunk_size)
        got = restored.sample(64, np.random.default_rng(5))
        figures["round_trip_equal"] = all(
            torch.equal(a, b)
            for a, b in zip(vars(expected).values(), vars(got).values(), strict=True)
            if isinstance(a, torch.Tensor)
        )
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return figures, table(figures)


def timed_load(
    store: Path, manifest: dict[str, Any], capacity: int, chunk_size: int
) -> tuple[float, ReplayBuffer]:
    """(seconds, buffer) of loading ``manifest`` from ``store`` into a fresh buffer."""
    restored = make_buffer(capacity, chunk_size)
    start = time.perf_counter()
    restored.load(store, manifest)
    return time.perf_counter() - start, restored


def measure(
    buffer: ReplayBuffer,
    full: dict[str, int],
    first: dict[str, float],
    second: dict[str, float],
    more: int,
    add_s: float,
) -> dict[str, Any]:
    """The figures of the result file.

    :param buffer: the buffer after both checkpoints.
    :param full: nbytes and live frames when the buffer first became full.
    :param first: what the first checkpoint wrote.
    :param second: what the second checkpoint wrote.
    :param more: steps between the checkpoints.
    :param add_s: seconds per ``add``.
    """
    frame = int(np.prod(FRAME))
    row = 4 * ACTION_DIM + 4 + 1 + 1 + 8  # action, reward, terminated, truncated, next_frame
    size = len(buffer)
    old = old_layout_bytes()
    live = full["frames_live"] * frame + size * row
    return {
        "frame_bytes": frame,
        "bytes_per_transition_live": live / size,
        "bytes_per_transition_allocated": full["nbytes"] / size,
        "frames_per_transition": full["frames_live"] / size,
        "old_bytes_per_transition": old["all_fields"],
        "old_obs_and_next_obs_bytes": old["obs_and_next_obs"],
        "bytes_per_transition_resident": full["resident"] / size,
        "bytes_per_transition_allocated_after_wrap": buffer.nbytes / size,
        "memory_ratio_old_over_new": old["all_fields"] / (full["nbytes"] / size),
        "first_checkpoint_bytes": first["bytes"],
        "first_checkpoint_files": first["files"],
        "first_checkpoint_seconds": first["seconds"],
        "second_checkpoint_bytes": second["bytes"],
        "second_checkpoint_files": second["files"],
        "second_checkpoint_seconds": second["seconds"],
        "second_checkpoint_new_rows_bytes": more * (frame + row)
        + (more // EPISODE) * STACK * frame,
        "old_checkpoint_bytes": size * old["all_fields"],
        "add_us": 1e6 * add_s,
        "sample_ms_batch256": sample_ms(buffer),
    }


def written(f: dict[str, Any], which: str) -> str:
    """'X MB in N files, S s' for the ``first`` or ``second`` checkpoint."""
    size, files = f[f"{which}_checkpoint_bytes"] / 1e6, f[f"{which}_checkpoint_files"]
    return f"{size:,.1f} MB in {files} files, {f[f'{which}_checkpoint_seconds']:.1f} s"


def table(f: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, value) rows of the printed table."""
    mb = lambda b: f"{b / 1e6:,.1f} MB"  # noqa: E731
    return [
        ("one 3x84x84 uint8 frame", f"{f['frame_bytes']:,} B"),
        ("new: bytes/transition, live rows", f"{f['bytes_per_transition_live']:,.0f} B"),
        (
            "new: bytes/transition, allocated chunks",
            f"{f['bytes_per_transition_allocated']:,.0f} B",
        ),
        (
            "new: bytes/transition, resident (RSS growth)",
            f"{f['bytes_per_transition_resident']:,.0f} B",
        ),
        (
            "new: bytes/transition, allocated after wrap",
            f"{f['bytes_per_transition_allocated_after_wrap']:,.0f} B",
        ),
        ("new: frames stored per transition", f"{f['frames_per_transition']:.4f}"),
        ("old: bytes/transition (float32 obs+next_obs)", f"{f['old_bytes_per_transition']:,} B"),
        ("memory ratio old/new (allocated)", f"{f['memory_ratio_old_over_new']:.1f}x"),
        ("checkpoint 1 (full buffer) written", written(f, "first")),
        ("checkpoint 2 written", written(f, "second")),
        ("  raw bytes of the rows added in between", mb(f["second_checkpoint_new_rows_bytes"])),
        ("old: every checkpoint writes", mb(f["old_checkpoint_bytes"])),
        ("load checkpoint 2", f"{f['load_seconds']:.1f} s, same samples: {f['round_trip_equal']}"),
        ("add", f"{f['add_us']:.0f} us/transition"),
        ("sample (batch 256, nstep 3)", f"{f['sample_ms_batch256']:.1f} ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument(
        "--more", type=int, default=10_000, help="steps between the two checkpoints"
    )
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="5k capacity, no result file")
    args = parser.parse_args()
    if args.quick:
        args.capacity, args.more, args.chunk_size = 5_000, 1_000, 1_000
    figures, rows = run(args.capacity, args.more, args.chunk_size)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if not args.quick:
        config = {
            "capacity": args.capacity,
            "more": args.more,
            "chunk_size": args.chunk_size,
            "frame": FRAME,
            "frame_stack": STACK,
            "action_dim": ACTION_DIM,
            "episode_length": EPISODE,
            "nstep": 3,
        }
        print(write_result("replay_storage", figures, config))


if __name__ == "__main__":
    main()
