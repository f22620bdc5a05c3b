"""Fixtures shared by every test package."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks on a busy 2-core machine: one intra-op thread is faster and steadier."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def train_loop():
    """``train_loop(config) -> loop``: :func:`rlkit.train.train` on an ExperimentConfig, returning
    the training loop it ran (its agent, buffer and live attack, for inspection)."""
    from rlkit.loops.common import TrainLoop
    from rlkit.train import train

    def run(config):
        captured = {}
        original = TrainLoop.run_all

        def spy(loop):
            captured["loop"] = loop
            return original(loop)

        TrainLoop.run_all = spy
        try:
            train(None, config=config)
        finally:
            TrainLoop.run_all = original
        return captured["loop"]

    return run


# a tiny synthetic pixel env: the online loop trains, checkpoints and resumes on it in seconds
class TinyPixels(gym.Env):
    """A 16x16 grey image whose brightness encodes a hidden position; reward -|position|."""

    observation_space = gym.spaces.Box(0, 255, (3, 16, 16), np.uint8)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):  # type: ignore[no-untyped-def]
        super().reset(seed=seed)
        self.position, self.t = float(self.np_random.uniform(-1, 1)), 0
        return self.frame(), {}

    def frame(self) -> np.ndarray:
        return np.full((3, 16, 16), int(round(127.5 + 100 * self.position)), np.uint8)

    def step(self, action):  # type: ignore[no-untyped-def]
        self.position = float(np.clip(self.position + 0.2 * float(action[0]), -1, 1))
        self.t += 1
        return self.frame(), -abs(self.position), False, self.t >= 15, {}


TINY_ID = "RlkitTest/TinyPixels-v0"
if TINY_ID not in gym.registry:
    gym.register(TINY_ID, entry_point=TinyPixels)
PIXEL_RUN = {
    "env": {"id": TINY_ID},
    "agent": {
        "name": "drqv2",
        "net_arch": [16],
        "kwargs": {"feature_dim": 8, "num_expl_steps": 10, "batch_size": 8},
    },
    "train": {
        "total_steps": 40,
        "eval_every": 0,
        "eval_episodes": 1,
        "checkpoint_every": 20,
        "replay_size": 200,
        "progress": False,
    },
    "eval": {"episodes": 1},
    "run": {"tensorboard": False},
    "seed": 4,
}


@pytest.fixture
def pixel_run():  # type: ignore[no-untyped-def]
    """``pixel_run(folder, overrides=()) -> RunDir``: a drqv2 run of 40 steps on
    :class:`TinyPixels` in ``folder / "run"`` (resumes when the folder holds one)."""

    def run(folder, overrides=()):  # type: ignore[no-untyped-def]
        import yaml

        from rlkit.train import train

        data = {**PIXEL_RUN, "run": {**PIXEL_RUN["run"], "dir": str(folder / "run")}}
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "pixels.yaml"
        path.write_text(yaml.safe_dump(data))
        return train(path, list(overrides))

    return run
