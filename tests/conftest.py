"""Fixtures shared by every test package."""

from __future__ import annotations

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
