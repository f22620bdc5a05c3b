"""Fixtures of the dataset tests: small D4RL-format files written with h5py, tiny trained runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def d4rl_arrays(
    n: int = 10, obs_dim: int = 2, act_dim: int = 1, seed: int = 0
) -> dict[str, np.ndarray]:
    """Arrays of a valid D4RL-format file: observation row i is ``[i*obs_dim, ...]`` so the row a
    next observation came from can be read off it; no terminals or timeouts."""
    rng = np.random.default_rng(seed)
    return {
        "observations": np.arange(n * obs_dim, dtype=np.float32).reshape(n, obs_dim),
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": np.arange(n, dtype=np.float32),
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": np.zeros(n, dtype=bool),
    }


def write_hdf5(path: Path, arrays: dict[str, Any], groups: bool = True) -> Path:
    """Write ``arrays`` as a D4RL-format HDF5 file (plus ignored infos/ and metadata/ groups).

    :param path: the file.
    :param arrays: key -> array (a dict value becomes a group).
    :param groups: also write D4RL's ``infos/qpos`` and ``metadata/algorithm``.
    """
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            if isinstance(value, dict):
                group = handle.create_group(key)
                for sub, array in value.items():
                    group[sub] = array
            else:
                handle.create_dataset(key, data=value, compression="gzip")
        if groups:
            n = len(arrays["observations"]) if "observations" in arrays else 1
            handle.create_group("infos")["qpos"] = np.zeros((n, 3))
            handle.create_group("metadata")["algorithm"] = "SAC"
    return path


@pytest.fixture
def hdf5_file(tmp_path: Path) -> Callable[..., Path]:
    """``hdf5_file(arrays=None, name="data.hdf5", **changes)`` writes a D4RL-format file."""

    def write(
        arrays: dict[str, Any] | None = None, name: str = "data.hdf5", **changes: Any
    ) -> Path:
        data = arrays if arrays is not None else d4rl_arrays()
        data = {**data, **changes}
        return write_hdf5(tmp_path / name, {k: v for k, v in data.items() if v is not None})

    return write


def _train(run_dir: Path, config: str, overrides: list[str]) -> Path:
    from rlkit.train import train

    base = [
        f"run.dir={run_dir}",
        "train.total_steps=300",
        "train.eval_every=0",
        "train.checkpoint_every=200",
        "train.progress=false",
        "run.tensorboard=false",
        "eval.episodes=2",
    ]
    return train(str(REPO / config), base + overrides).path


@pytest.fixture(scope="session")
def sac_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SAC run on Pendulum-v1: 300 steps, checkpoints at 200 and 300, final/ and eval.json."""
    return _train(
        tmp_path_factory.mktemp("runs") / "sac",
        "configs/gym/pendulum_sac.yaml",
        ["agent.kwargs.learning_starts=100"],
    )


@pytest.fixture(scope="session")
def drqv2_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A native drqv2 run on Pendulum-v1 (rlkit's own replay store), 300 steps."""
    return _train(
        tmp_path_factory.mktemp("runs") / "drqv2",
        "configs/gym/pendulum_drqv2.yaml",
        ["agent.kwargs.num_expl_steps=100"],
    )


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Minari datasets root, set as $MINARI_DATASETS_PATH."""
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture
def arrays() -> Callable[..., dict[str, np.ndarray]]:
    """:func:`d4rl_arrays`, as a fixture."""
    return d4rl_arrays
