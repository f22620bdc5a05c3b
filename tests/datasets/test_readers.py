"""Reading D4RL-format HDF5 files and resolving dataset specs; every bad file a DatasetError."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest

from rlkit.cli import main
from rlkit.datasets import DatasetError, load_dataset
from rlkit.datasets.readers import resolve

Arrays = dict[str, np.ndarray]


def rows(obs: np.ndarray) -> list[int]:
    """The file row each observation came from (row i is [2i, 2i+1])."""
    return (obs[:, 0] / 2).astype(int).tolist()


# --------------------------------------------------------------------------------- good files


def test_without_next_observations_rebuilds_them_and_drops_timeout_ends(
    hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays]
) -> None:
    data = arrays(10)
    data["terminals"][2] = True  # episode 0: rows 0-2, terminates
    data["timeouts"][5] = True  # episode 1: rows 3-5, time limit
    data["terminals"][7] = data["timeouts"][7] = True  # episode 2: rows 6-7, both flags
    # episode 3: rows 8-9, the data ends mid-episode
    t = load_dataset(hdf5_file(data))
    assert rows(t.observations) == [0, 1, 2, 3, 4, 6, 7, 8]
    assert rows(t.next_observations) == [1, 2, 3, 4, 5, 7, 8, 9]
    assert t.terminals.tolist() == [0, 0, 1, 0, 0, 0, 1, 0]
    # the step before each dropped one ends its episode as a timeout; both flags -> terminal only
    assert t.timeouts.tolist() == [0, 0, 0, 0, 1, 0, 0, 1]
    assert t.metadata["dropped"] == 2
    assert "1 timeout episode" in t.metadata["dropped_reason"]
    assert "last row" in t.metadata["dropped_reason"]
    assert t.episode_ends().tolist() == [2, 4, 6, 7]
    assert t.metadata["partial_episodes"] == [3]
    # rewards are the row numbers; dropped rows 5 and 9 contribute nothing
    np.testing.assert_array_equal(t.episode_returns(), [0 + 1 + 2, 3 + 4, 6 + 7])
    np.testing.assert_array_equal(t.episode_returns(include_partial=True), [3, 7, 13, 8])
    assert t.rewards.dtype == np.float32 and t.terminals.dtype == bool
    assert t.metadata["format"] == "d4rl-hdf5" and t.metadata["name"] == "data"


def test_terminal_keeps_its_transition_even_as_the_last_row(
    hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays]
) -> None:
    data = arrays(6)
    data["terminals"][[2, 5]] = True
    t = load_dataset(hdf5_file(data))
    assert len(t) == 6 and t.metadata["dropped"] == 0
    # next obs at a terminal: the next row (unused by learners), the row itself at the very end
    assert rows(t.next_observations) == [1, 2, 3, 4, 5, 5]
    assert t.metadata["partial_episodes"] == []
    np.testing.assert_array_equal(t.episode_returns(), [0 + 1 + 2, 3 + 4 + 5])


def test_with_next_observations_drops_nothing(
    hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays]
) -> None:
    data = arrays(8)
    data["next_observations"] = data["observations"] + 1000.0
    data["timeouts"][3] = True
    data["terminals"][5] = data["timeouts"][5] = True
    t = load_dataset(hdf5_file(data))
    assert len(t) == 8 and t.metadata["dropped"] == 0
    np.testing.assert_array_equal(t.next_observations, data["observations"] + 1000.0)
    assert t.terminals.tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    assert t.timeouts.tolist() == [0, 0, 0, 1, 0, 0, 0, 1]  # the end of data is a timeout
    assert t.metadata["partial_episodes"] == [2]
    np.testing.assert_array_equal(t.episode_returns(), [0 + 1 + 2 + 3, 4 + 5])


def test_next_observations_without_timeouts_is_accepted_with_a_note(
    hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays]
) -> None:
    data = arrays(5)
    data["next_observations"] = data["observations"] + 1.0
    t = load_dataset(hdf5_file(data, timeouts=None))
    assert len(t) == 5 and "timeouts" in t.metadata["notes"][0]


def test_integer_flags_discrete_actions_and_uint8_observations(
    hdf5_file: Callable[..., Path],
) -> None:
    n = 6
    data = {
        "observations": np.arange(n * 4, dtype=np.uint8).reshape(n, 4),
        "actions": np.array([0, 1, 2, 1, 0, 2], dtype=np.int32),
        "rewards": np.ones(n, dtype=np.float64),
        "terminals": np.array([0, 0, 1, 0, 0, 1], dtype=np.float32),
        "timeouts": np.zeros(n, dtype=np.int64),
    }
    t = load_dataset(
        hdf5_file(data), gym.spaces.Box(0, 255, (4,), np.uint8), gym.spaces.Discrete(3)
    )
    assert t.observations.dtype == np.uint8 and t.actions.dtype == np.int64
    assert t.terminals.tolist() == [0, 0, 1, 0, 0, 1]
    assert t.metadata["action_space"] == gym.spaces.Discrete(3)


def test_float64_observations_become_float32(
    hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays]
) -> None:
    data = arrays(4)
    data["observations"] = data["observations"].astype(np.float64) + 0.5
    data["terminals"][-1] = True
    t = load_dataset(hdf5_file(data))
    assert t.observations.dtype == np.float32
    np.testing.assert_array_equal(t.observations, data["observations"].astype(np.float32))


def test_spaces_are_checked_when_given(
    hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays]
) -> None:
    path = hdf5_file(arrays(5))
    box = gym.spaces.Box(-1, 1, (1,))
    load_dataset(path, gym.spaces.Box(-np.inf, np.inf, (2,)), box)
    with pytest.raises(DatasetError, match=r"key 'observations': rows have shape \(2,\)"):
        load_dataset(path, gym.spaces.Box(-np.inf, np.inf, (3,)), box)
    with pytest.raises(DatasetError, match=r"key 'actions': rows have shape \(1,\)"):
        load_dataset(path, None, gym.spaces.Box(-1, 1, (2,)))
    with pytest.raises(DatasetError, match="key 'actions'.*one integer per row"):
        load_dataset(path, None, gym.spaces.Discrete(2))


def test_discrete_actions_out_of_range(hdf5_file: Callable[..., Path], arrays: Callable) -> None:
    data = arrays(4)
    data["actions"] = np.array([0, 1, 5, 1])
    with pytest.raises(DatasetError, match="key 'actions': holds 5 at row 2"):
        load_dataset(hdf5_file(data), None, gym.spaces.Discrete(3))


# ---------------------------------------------------------------------------------- bad files


CORRUPT: list[tuple[str, Callable[[Arrays], dict[str, Any]], str]] = [
    ("missing rewards", lambda a: {**a, "rewards": None}, r"key 'rewards': missing"),
    ("missing observations", lambda a: {**a, "observations": None}, "key 'observations': missing"),
    ("missing actions", lambda a: {**a, "actions": None}, "key 'actions': missing"),
    ("missing terminals", lambda a: {**a, "terminals": None}, "key 'terminals': missing"),
    (
        "no timeouts nor next_observations",
        lambda a: {**a, "timeouts": None},
        "key 'timeouts': missing",
    ),
    (
        "short rewards",
        lambda a: {**a, "rewards": a["rewards"][:-1]},
        r"key 'rewards': has 9 rows, 'observations' has 10",
    ),
    (
        "long terminals",
        lambda a: {**a, "terminals": np.zeros(11, bool)},
        r"key 'terminals': has 11 rows, 'observations' has 10",
    ),
    (
        "NaN observation",
        lambda a: {**a, "observations": np.where(np.arange(10)[:, None] == 3, np.nan, 1.0)},
        r"key 'observations': holds NaN or infinite values \(first at row 3\)",
    ),
    (
        "infinite reward",
        lambda a: {**a, "rewards": np.where(np.arange(10) == 4, np.inf, 0.0)},
        r"key 'rewards': holds NaN or infinite values \(first at row 4\)",
    ),
    (
        "NaN action",
        lambda a: {**a, "actions": np.full((10, 1), np.nan)},
        r"key 'actions': holds NaN",
    ),
    (
        "string actions",
        lambda a: {**a, "actions": np.array([b"left"] * 10)},
        r"key 'actions': has dtype \|S4, expected numbers",
    ),
    (
        "2-D rewards",
        lambda a: {**a, "rewards": np.zeros((10, 2))},
        r"key 'rewards': has shape \(10, 2\), expected \(10,\)",
    ),
    (
        "1-D observations",
        lambda a: {**a, "observations": np.zeros(10)},
        r"key 'observations': has shape \(10,\), expected \(N, \*observation_shape\)",
    ),
    (
        "1-D real actions",
        lambda a: {**a, "actions": np.zeros(10)},
        r"key 'actions': has shape \(10,\)",
    ),
    (
        "empty",
        lambda a: {k: v[:0] for k, v in a.items()},
        r"key 'observations': has 0 rows: the dataset is empty",
    ),
    (
        "flag value 2",
        lambda a: {**a, "terminals": np.where(np.arange(10) == 6, 2, 0)},
        r"key 'terminals': holds 2 at row 6",
    ),
    (
        "observations as a group",
        lambda a: {**a, "observations": {"pos": a["observations"]}},
        r"key 'observations': is a group, not an array",
    ),
    (
        "next_observations of another shape",
        lambda a: {**a, "next_observations": np.zeros((10, 3), np.float32)},
        r"key 'next_observations': has shape \(10, 3\), 'observations' \(10, 2\)",
    ),
    (
        "NaN next observation",
        lambda a: {**a, "next_observations": np.full((10, 2), np.nan, np.float32)},
        r"key 'next_observations': holds NaN",
    ),
    (
        "observations beyond float32",
        lambda a: {**a, "observations": np.full((10, 2), 1e300)},
        r"key 'observations': holds NaN or infinite values \(first at row 0\)",
    ),
]


@pytest.mark.parametrize("change, expected", [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT])
def test_corrupt_file_raises_dataset_error_naming_file_and_key(
    hdf5_file: Callable[..., Path],
    arrays: Callable[..., Arrays],
    change: Callable[[Arrays], dict[str, Any]],
    expected: str,
) -> None:
    path = hdf5_file(change(arrays(10)))
    with pytest.raises(DatasetError, match=expected) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path}: ")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "notes.hdf5"
    path.write_text("observations,actions\n1,2\n")
    with pytest.raises(DatasetError, match=f"^{path}: not an HDF5 file$"):
        load_dataset(path)
    other = tmp_path / "data.csv"
    other.write_text("1,2\n")
    with pytest.raises(DatasetError, match=r"not an HDF5 file \(expected a .hdf5/.h5 file"):
        load_dataset(other)


def test_cut_off_file(hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays]) -> None:
    path = hdf5_file(arrays(2000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"^{path}: cannot be opened as HDF5 .*truncated"):
        load_dataset(path)


def test_damaged_chunk_names_the_key(
    hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays]
) -> None:
    path = hdf5_file(arrays(2000))
    with h5py.File(path, "r") as handle:
        chunk = handle["rewards"].id.get_chunk_info(0)
    raw = bytearray(path.read_bytes())
    raw[chunk.byte_offset : chunk.byte_offset + chunk.size] = b"\xff" * chunk.size
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=f"^{path}: key 'rewards': cannot be read"):
        load_dataset(path)


def test_bad_file_exits_2_with_one_line_through_the_cli(
    hdf5_file: Callable[..., Path],
    arrays: Callable[..., Arrays],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = arrays(10)
    path = hdf5_file({**data, "rewards": data["rewards"][:-1]})
    assert main(["dataset", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err == f"rlkit: error: {path}: key 'rewards': has 9 rows, 'observations' has 10\n"
    missing = hdf5_file({**data, "observations": None}, name="missing.h5")
    assert main(["dataset", "info", str(missing)]) == 2
    assert "key 'observations': missing" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- resolving


def test_resolve_paths_and_ids(
    hdf5_file: Callable[..., Path], arrays: Callable[..., Arrays], minari_root: Path
) -> None:
    path = hdf5_file(arrays(3))
    assert resolve(path) == ("hdf5", path)
    folder = minari_root / "ns" / "x-v0"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "metadata.json").write_text("{}")
    assert resolve("ns/x-v0") == ("minari", folder)
    assert resolve(folder) == ("minari", folder)
    assert resolve(folder / "data") == ("minari", folder)
    with pytest.raises(DatasetError, match="not found.*no Minari dataset 'ns/y-v0' under"):
        load_dataset("ns/y-v0")
    with pytest.raises(DatasetError, match="a folder but not a Minari dataset"):
        load_dataset(minari_root)
    with pytest.raises(DatasetError, match="never downloads"):
        load_dataset(minari_root / "nowhere.hdf5")
