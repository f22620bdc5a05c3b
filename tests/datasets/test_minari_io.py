"""Minari datasets: written with Minari's writer, read back equal; conversions; bad datasets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest

from rlkit.datasets import (
    DatasetError,
    Episode,
    episodes_to_transitions,
    load_dataset,
    load_episodes,
    transitions_to_episodes,
    write_minari,
)

OBS = gym.spaces.Box(-10.0, 10.0, (3,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def episode(steps: int, seed: int, end: str = "truncated") -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        rng.uniform(-10, 10, (steps + 1, 3)).astype(np.float32),
        rng.uniform(-2, 2, (steps, 1)).astype(np.float32),
        rng.normal(size=steps),
        np.array([False] * (steps - 1) + [end == "terminated"]),
        np.array([False] * (steps - 1) + [end == "truncated"]),
        seed=seed,
    )


@pytest.fixture
def episodes() -> list[Episode]:
    return [episode(5, 0), episode(3, 1, "terminated"), episode(4, 2, "open")]


@pytest.fixture
def written(episodes: list[Episode], minari_root: Path) -> Path:
    return write_minari(
        "toy/mixed-v0",
        episodes,
        OBS,
        ACT,
        env_id="Toy-v0",
        ref_min_score=-5.0,
        ref_max_score=5.0,
        description="three episodes",
        extra_metadata={"level": "test"},
    )


def test_written_and_read_back_equal(
    written: Path, episodes: list[Episode], minari_root: Path
) -> None:
    assert written == minari_root / "toy" / "mixed-v0"
    back, metadata = load_episodes("toy/mixed-v0")
    assert len(back) == len(episodes)
    for a, b in zip(episodes, back, strict=True):
        for key in ("observations", "actions", "rewards", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
            assert getattr(a, key).dtype == getattr(b, key).dtype
        assert a.seed == b.seed
    assert metadata["env_id"] == "Toy-v0" and metadata["name"] == "toy/mixed-v0"
    assert (metadata["ref_min_score"], metadata["ref_max_score"]) == (-5.0, 5.0)
    assert metadata["observation_space"] == OBS and metadata["action_space"] == ACT
    assert metadata["rlkit"]["level"] == "test"
    assert metadata["minari"]["description"] == "three episodes"
    # Minari itself sees the same dataset (never downloading)
    dataset = minari.load_dataset("toy/mixed-v0", download=False)
    assert dataset.total_episodes == 3 and dataset.total_steps == 12
    np.testing.assert_array_equal(dataset[1].rewards, episodes[1].rewards)
    assert (minari_root / "toy" / "namespace_metadata.json").is_file()
    assert not [p for p in minari_root.iterdir() if p.name.startswith(".")]  # no staging left


def test_transitions_of_a_minari_dataset(written: Path, episodes: list[Episode]) -> None:
    t = load_dataset(written)
    assert len(t) == 12 and t.metadata["dropped"] == 0
    np.testing.assert_array_equal(t.observations[:5], episodes[0].observations[:-1])
    np.testing.assert_array_equal(t.next_observations[:5], episodes[0].observations[1:])
    assert t.terminals.tolist() == [0] * 7 + [1] + [0] * 4
    # the last episode ends with neither flag: a timeout at the end of the data, partial
    assert t.timeouts.tolist() == [0, 0, 0, 0, 1] + [0] * 3 + [0, 0, 0, 1]
    assert t.metadata["partial_episodes"] == [2]
    np.testing.assert_allclose(
        t.episode_returns(), [episodes[0].total_reward, episodes[1].total_reward], rtol=1e-6
    )
    assert t.rewards.dtype == np.float32


def test_written_without_making_any_env(
    episodes: list[Episode], minari_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an env was made")

    monkeypatch.setattr(gym, "make", refuse)
    path = write_minari("plain-v0", episodes, OBS, ACT, ref_min_score=0.0, ref_max_score=1.0)
    meta = json.loads((path / "data" / "metadata.json").read_text())
    assert (meta["ref_min_score"], meta["ref_max_score"]) == (0.0, 1.0)
    assert len(load_dataset("plain-v0")) == 12


def test_a_relative_datasets_root_writes_and_reads_back(
    episodes: list[Episode], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Minari joins a relative MINARI_DATASETS_PATH onto its own data path twice unless resolved
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINARI_DATASETS_PATH", "runs/minari")
    path = write_minari("toy/relative-v0", episodes, OBS, ACT)
    assert path == tmp_path / "runs" / "minari" / "toy" / "relative-v0"
    back, _ = load_episodes("toy/relative-v0")
    np.testing.assert_array_equal(back[2].rewards, episodes[2].rewards)


def test_existing_id_is_refused_unless_overwrite(
    written: Path, episodes: list[Episode], minari_root: Path
) -> None:
    with pytest.raises(DatasetError, match="already exists.*--overwrite"):
        write_minari("toy/mixed-v0", episodes, OBS, ACT)
    write_minari("toy/mixed-v0", episodes[:1], OBS, ACT, overwrite=True)
    assert len(load_dataset("toy/mixed-v0")) == 5
    assert sorted(p.name for p in (minari_root / "toy").iterdir()) == [
        "mixed-v0",
        "namespace_metadata.json",
    ]


def test_write_refusals(episodes: list[Episode], tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a Minari dataset id"):
        write_minari("no version", episodes, OBS, ACT, root=tmp_path)
    with pytest.raises(DatasetError, match="both ref_min_score and ref_max_score"):
        write_minari("x-v0", episodes, OBS, ACT, ref_min_score=1.0, root=tmp_path)
    bad = episode(3, 0)
    bad.terminations[0] = True
    with pytest.raises(DatasetError, match="episode_1/terminations': set at step 0 before"):
        write_minari("x-v0", [episodes[0], bad], OBS, ACT, root=tmp_path)
    short = episode(3, 0)
    short.observations = short.observations[:-1]
    with pytest.raises(DatasetError, match=r"episode_0/observations': has shape \(3, 3\)"):
        write_minari("x-v0", [short], OBS, ACT, root=tmp_path)
    assert not (tmp_path / "x-v0").exists()


def test_d4rl_file_to_episodes_and_back(
    hdf5_file: Callable[..., Path], arrays: Callable[..., dict[str, np.ndarray]], tmp_path: Path
) -> None:
    data = arrays(10)
    data["terminals"][2] = True
    data["timeouts"][5] = True
    original = load_dataset(hdf5_file(data))
    converted = transitions_to_episodes(original)
    assert [len(e) for e in converted] == [3, 2, 3]
    assert converted[1].truncations.tolist() == [False, True]
    assert not converted[2].truncations[-1]  # cut by the end of the data: neither flag
    np.testing.assert_array_equal(converted[0].observations[-1], data["observations"][3])
    path = write_minari(
        "d4rl-v0", converted, gym.spaces.Box(-np.inf, np.inf, (2,)), ACT, root=tmp_path
    )
    back = load_dataset(path)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals"):
        np.testing.assert_array_equal(getattr(back, key), getattr(original, key))
    np.testing.assert_array_equal(back.timeouts, original.timeouts)
    assert back.metadata["partial_episodes"] == original.metadata["partial_episodes"] == [2]


def test_episodes_that_do_not_chain_are_refused() -> None:
    t = episodes_to_transitions([episode(4, 0)], {"source": "toy"})
    t.next_observations[1] += 1.0
    with pytest.raises(DatasetError, match="key 'next_observations': row 1 .*does not form"):
        transitions_to_episodes(t)


# ------------------------------------------------------------------------- bad Minari datasets


def _damage_episode(path: Path, change: Callable[[h5py.File], None]) -> None:
    with h5py.File(path / "data" / "main_data.hdf5", "a") as handle:
        change(handle)


def _set_nan(handle: h5py.File) -> None:
    handle["episode_0/observations"][2, 1] = np.nan


def _replace_rewards(handle: h5py.File) -> None:
    del handle["episode_2/rewards"]
    handle["episode_2/rewards"] = np.zeros(7)


def test_damaged_episodes(written: Path) -> None:
    main_file = written / "data" / "main_data.hdf5"
    _damage_episode(written, _set_nan)
    with pytest.raises(
        DatasetError, match=rf"^{main_file}: key 'episode_0/observations': holds NaN"
    ):
        load_dataset(written)
    _damage_episode(written, lambda h: h["episode_0/observations"].__setitem__((2, 1), 0.0))
    _damage_episode(written, _replace_rewards)
    with pytest.raises(DatasetError, match=r"key 'episode_2/observations': has shape \(5, 3\)"):
        load_dataset(written)
    _damage_episode(written, lambda h: h.__delitem__("episode_1/rewards"))
    with pytest.raises(DatasetError, match=r"key 'episode_1': cannot be read .*rewards"):
        load_dataset(written)


def _edit_metadata(path: Path, **changes: object) -> None:
    meta_path = path / "data" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta.update(changes)
    meta_path.write_text(json.dumps(meta))


def test_bad_metadata(written: Path) -> None:
    meta_path = written / "data" / "metadata.json"
    good = meta_path.read_text()
    _edit_metadata(written, total_steps=99)
    with pytest.raises(DatasetError, match="key 'total_steps': is 99, the episodes hold 12"):
        load_dataset(written)
    meta_path.write_text(good)
    _edit_metadata(written, observation_space='{"type": "Dict", "subspaces": {}}')
    with pytest.raises(DatasetError, match="key 'observation_space': Dict observations are not"):
        load_dataset(written)
    meta_path.write_text(good)
    _edit_metadata(written, action_space="not json")
    with pytest.raises(DatasetError, match="key 'action_space': cannot be read"):
        load_dataset(written)
    meta_path.write_text(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=rf"^{meta_path}: cannot be read \(JSONDecodeError"):
        load_dataset(written)
    meta_path.unlink()
    with pytest.raises(DatasetError, match="a folder but not a Minari dataset"):
        load_dataset(written)


def test_given_spaces_are_checked_on_minari_data(written: Path) -> None:
    with pytest.raises(DatasetError, match=r"key 'observations': rows have shape \(3,\)"):
        load_dataset(written, gym.spaces.Box(-1, 1, (4,)))
    with pytest.raises(DatasetError, match=r"key 'actions': rows have shape \(1,\)"):
        load_dataset(written, OBS, gym.spaces.Box(-1, 1, (2,)))
    assert load_dataset(written, OBS, ACT).metadata["observation_space"] == OBS
