"""Safe loading (no code execution from checkpoints) and atomic writes."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from rlkit.config import ConfigError, dump_config, load_config
from rlkit.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_arrays,
    load_torch,
    save_arrays,
    save_torch,
)
from rlkit.loading import load_run
from rlkit.rundir import CHECKPOINT_SCHEMA, RunDir, read_meta


class WritesMarker:
    """Unpickling this object runs code: it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def write_malicious_state(path: Path, marker: Path) -> None:
    torch.save({"agent": {"actor": WritesMarker(marker)}, "counters": {"step": 1}}, path)


def test_malicious_payload_is_real(tmp_path):
    """Sanity check of the payload: a plain (unsafe) torch.load does run it."""
    marker = tmp_path / "marker"
    write_malicious_state(tmp_path / "state.pt", marker)
    torch.load(tmp_path / "state.pt", weights_only=False)
    assert marker.read_text() == "pwned"


def test_load_torch_refuses_code_execution(tmp_path):
    marker = tmp_path / "marker"
    write_malicious_state(tmp_path / "state.pt", marker)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_torch(tmp_path / "state.pt")
    assert not marker.exists()


def test_load_run_with_malicious_final_model_does_not_run_code(tmp_path):
    run = RunDir(tmp_path / "run")
    config = load_config(None, data={"env": {"id": "Pendulum-v1"}, "agent": {"name": "drqv2"}})
    run.create(dump_config(config))
    run.final.mkdir()
    (run.final / "meta.json").write_text(
        json.dumps({"schema": CHECKPOINT_SCHEMA, "agent": "drqv2", "step": 1})
    )
    marker = tmp_path / "marker"
    write_malicious_state(run.final / "agent.pt", marker)
    with pytest.raises(ConfigError, match="the model cannot be read.*UnpicklingError"):
        load_run(run.path)
    assert not marker.exists()


def test_weights_only_round_trip_of_plain_state(tmp_path):
    state = {
        "w": torch.arange(6.0).reshape(2, 3),
        "meta": {"step": 3, "name": "x", "lr": 1e-3, "none": None},
        "list": [1, 2],
    }
    save_torch(tmp_path / "a" / "state.pt", state)
    loaded = load_torch(tmp_path / "a" / "state.pt")
    assert torch.equal(loaded["w"], state["w"])
    assert loaded["meta"] == state["meta"] and loaded["list"] == [1, 2]


def test_load_arrays_refuses_object_arrays(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, bad=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_arrays(path)


def test_arrays_round_trip(tmp_path):
    arrays = {"x": np.arange(5, dtype=np.float32), "flag": np.array(True), "pos": np.asarray(3)}
    save_arrays(tmp_path / "a.npz", arrays)
    loaded = load_arrays(tmp_path / "a.npz")
    assert set(loaded) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(loaded[key], value)
        assert loaded[key].dtype == value.dtype
    assert list(tmp_path.iterdir()) == [tmp_path / "a.npz"]


# ---------------------------------------------------------------------------------------------
# atomic writes


def test_atomic_writes_replace_content_and_leave_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    atomic_write_json(
        tmp_path / "sub" / "x.json",
        {"a": np.float32(1.5), "b": np.arange(2), "c": torch.tensor([3]), "p": Path("q")},
    )
    assert json.loads((tmp_path / "sub" / "x.json").read_text()) == {
        "a": 1.5,
        "b": [0, 1],
        "c": [3],
        "p": "q",
    }
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["file.txt", "x.json"]


def test_failed_json_write_keeps_old_file(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"ok": 1})
    with pytest.raises(TypeError, match="not JSON serialisable"):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


@pytest.mark.parametrize("writer", ["bytes", "torch", "arrays"])
def test_crash_before_rename_keeps_old_file_and_removes_temporary(tmp_path, monkeypatch, writer):
    target = tmp_path / "f.bin"
    write = {
        "bytes": lambda v: atomic_write_bytes(target, str(v).encode()),
        "torch": lambda v: save_torch(target, {"v": torch.tensor([v])}),
        "arrays": lambda v: save_arrays(target, {"v": np.array([v])}),
    }[writer]
    write(1)
    before = target.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write(2)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


# ---------------------------------------------------------------------------------------------
# checkpoints are committed atomically (meta.json last, then a rename)


def commit(run: RunDir, step: int, keep: int = 2) -> Path:
    tmp = run.begin_checkpoint(step)
    save_torch(tmp / "state.pt", {"step": torch.tensor(step)})
    return run.commit_checkpoint(tmp, step, {"kind": "test"}, keep)


def test_checkpoints_commit_prune_and_skip_incomplete(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.latest_checkpoint() is None
    for step in (5, 10, 100):
        commit(run, step)
    assert [p.name for p in run.checkpoint_dirs()] == ["step_000000010", "step_000000100"]  # keep=2
    assert read_meta(run.latest_checkpoint()) == {
        "schema": CHECKPOINT_SCHEMA,
        "step": 100,
        "kind": "test",
    }
    half = run.begin_checkpoint(200)  # killed before commit
    save_torch(half / "state.pt", {"step": torch.tensor(200)})
    (run.checkpoints / "step_000000300").mkdir()  # renamed but without meta.json
    assert run.latest_checkpoint().name == "step_000000100"
    again = commit(run, 200)  # the same step can be written again over leftovers
    assert again.name == "step_000000200" and not half.exists()
    assert load_torch(again / "state.pt")["step"].item() == 200


def test_read_meta_rejects_other_schema(tmp_path):
    run = RunDir(tmp_path / "run")
    folder = commit(run, 1)
    atomic_write_json(folder / "meta.json", {"schema": 99, "step": 1})
    with pytest.raises(ValueError, match="schema 99 is not supported"):
        read_meta(folder)


def test_move_aside_never_overwrites(tmp_path):
    first = RunDir(tmp_path / "run")
    assert first.move_aside() is None
    moved = []
    for text in ("a", "b"):
        first.create(f"seed: {text}\n")
        moved.append(first.move_aside())
    assert not first.path.exists()
    assert moved[0] != moved[1] and all(m.name.startswith("run.old-") for m in moved)
    assert [(m / "config.yaml").read_text() for m in moved] == ["seed: a\n", "seed: b\n"]
