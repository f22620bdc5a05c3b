"""Rendering speed of the MENTOR pixel envs: the libraries' own renderers against rlkit's fast
offscreen renderer (sized to the image, shadows and reflections off), side by side in one run.

``measure_render(frames)`` returns frames/s and ms/frame for DeepMind Control (``physics.render``
vs :class:`~rlkit.envs.pixels.FastRenderer`) and Meta-World (gymnasium ``render()`` vs
FastRenderer) at 84x84; ``main()`` prints the table and writes
``benchmarks/results/mentor_render.json``.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlkit.envs.pixels import FastRenderer, ensure_render_backend

SIZE = 84
RESULTS = Path(__file__).parent / "results" / "mentor_render.json"
ROUNDS = 5


def _rate(draw: Callable[[], Any], frames: int) -> float:
    """Seconds per frame of ``draw`` over ``frames`` calls (after one warm-up call)."""
    draw()  # first frame: context and buffers
    start = time.perf_counter()
    for _ in range(frames):
        draw()
    return (time.perf_counter() - start) / frames


def _side_by_side(
    before: Callable[[], Any], after: Callable[[], Any], frames: int
) -> dict[str, dict[str, float]]:
    """Time both renderers in alternating rounds; keep each one's fastest round (the machine is
    shared: the fastest round is the least disturbed)."""
    rounds = [(_rate(before, frames // ROUNDS or 1), _rate(after, frames // ROUNDS or 1))]
    for _ in range(ROUNDS - 1):
        rounds.append((_rate(before, frames // ROUNDS or 1), _rate(after, frames // ROUNDS or 1)))
    best = [min(r[i] for r in rounds) for i in (0, 1)]
    return {
        name: {"fps": 1 / sec, "ms_per_frame": 1000 * sec}
        for name, sec in zip(("before", "after"), best, strict=True)
    }


def _dmc(frames: int) -> dict[str, dict[str, float]]:
    from dm_control import suite

    env = suite.load("cartpole", "swingup", task_kwargs={"random": 0})
    env.reset()
    physics = env.physics
    fast = FastRenderer(physics.model.ptr, SIZE, 0)
    try:
        return _side_by_side(
            lambda: physics.render(SIZE, SIZE, camera_id=0),
            lambda: fast.render(physics.data.ptr),
            frames,
        )
    finally:
        fast.close()


def _metaworld(frames: int) -> dict[str, dict[str, float]]:
    import gymnasium as gym
    import metaworld

    gym.register_envs(metaworld)
    env = gym.make(
        "Meta-World/MT1",
        env_name="reach-v3",
        seed=0,
        render_mode="rgb_array",
        camera_name="corner2",
        width=SIZE,
        height=SIZE,
        disable_env_checker=True,
    )
    env.reset(seed=0)
    unwrapped = env.unwrapped
    fast = FastRenderer(unwrapped.model, SIZE, "corner2")  # type: ignore[attr-defined]
    try:
        return _side_by_side(
            env.render,
            lambda: fast.render(unwrapped.data),  # type: ignore[attr-defined]
            frames,
        )
    finally:
        fast.close()
        env.close()


def measure_render(frames: int) -> dict[str, Any]:
    """Frames/s of DMC and Meta-World 84x84 rendering, before and after the fast settings.

    :param frames: frames timed per renderer, split over alternating rounds (the fastest round
        counts).
    :return: ``{"dmc": {"before": {fps, ms_per_frame}, "after": ..., "speedup"}, "metaworld":
        ...}``.
    """
    backend = ensure_render_backend()
    results: dict[str, Any] = {"backend": backend, "frames": frames, "size": SIZE}
    for name, measure in (("dmc", _dmc), ("metaworld", _metaworld)):
        figures: dict[str, Any] = measure(frames)
        figures["speedup"] = figures["after"]["fps"] / figures["before"]["fps"]
        results[name] = figures
    return results


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(frames: int = 100) -> dict[str, Any]:
    """Print the table and write ``benchmarks/results/mentor_render.json``.

    :param frames: frames timed per renderer.
    """
    results = measure_render(frames)
    print(f"84x84 rendering, MUJOCO_GL={results['backend']}, {frames} frames each")
    print(f"{'domain':<10} {'before ms':>10} {'after ms':>10} {'speedup':>8}")
    for name in ("dmc", "metaworld"):
        row = results[name]
        print(
            f"{name:<10} {row['before']['ms_per_frame']:>10.1f} "
            f"{row['after']['ms_per_frame']:>10.1f} {row['speedup']:>7.1f}x"
        )
    record = {**results, "commit": _commit(), "machine": platform.platform()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
