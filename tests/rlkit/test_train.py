"""Training end to end with tiny budgets: run directory, evaluation, loading, determinism, resume.

Each training run happens once per module (fixtures) and several tests check it. The trained agent
object is captured by wrapping :meth:`rlkit.loops.common.TrainLoop.run_all`.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from rlkit.agents.sb3 import BUFFER_KEYS, SB3Agent
from rlkit.cli import main
from rlkit.config import ExperimentConfig, load_config
from rlkit.envs import make_env
from rlkit.evaluation import random_observations
from rlkit.io import load_arrays, load_torch
from rlkit.loading import load_run
from rlkit.loops.common import TrainLoop
from rlkit.rundir import RunDir
from rlkit.train import train

WALL_CLOCK = ("time/fps", "time/time_elapsed", "time/steps_per_s")
N = 100  # native resume tests: train N, then 2N

SAC: dict[str, Any] = {
    **yaml.safe_load((Path(__file__).parent / "data" / "tiny_sac.yaml").read_text()),
    "eval": {"episodes": 3},
    "seed": 1,
}
PPO = {
    "env": {"id": "CartPole-v1", "n_envs": 2},
    "agent": {
        "name": "ppo",
        "net_arch": [32, 32],
        "kwargs": {"n_steps": 64, "batch_size": 32, "n_epochs": 2},
    },
    "train": {
        "total_steps": 256,
        "eval_every": 128,
        "eval_episodes": 1,
        "checkpoint_every": 128,
        "progress": False,
    },
    "eval": {"episodes": 3},
    "run": {"tensorboard": False},
    "seed": 2,
}
DRQ = {
    "env": {"id": "Pendulum-v1", "max_episode_steps": 30},  # step N=100 falls mid-episode
    "agent": {
        "name": "drqv2",
        "net_arch": [32],
        "kwargs": {
            "num_expl_steps": 40,
            "batch_size": 16,
            "update_every_steps": 1,
            "stddev_schedule": "linear(1.0,0.1,200)",
        },
    },
    "train": {
        "total_steps": 2 * N,
        "eval_every": 50,
        "eval_episodes": 1,
        "checkpoint_every": N,
        "log_every": 10,
        "replay_size": 500,
        "progress": False,
    },
    "eval": {"episodes": 2},
    "run": {"tensorboard": False},
    "seed": 3,
}
SAC_RESUME = {
    "env": {"id": "Pendulum-v1", "max_episode_steps": 25},
    "agent": {
        "name": "sac",
        "net_arch": [16],
        "kwargs": {"learning_starts": 100, "batch_size": 16},
    },
    "train": {
        "total_steps": 150,
        "eval_every": 50,
        "eval_episodes": 1,
        "checkpoint_every": 150,
        "keep_checkpoints": 3,
        "progress": False,
    },
    "eval": {"episodes": 1},
    "run": {"tensorboard": False},
    "seed": 4,
}


@dataclass
class Trained:
    """One call of a training loop: its config, run directory, checkpoint resumed from and agent."""

    config: ExperimentConfig
    run: RunDir
    resume: Path | None
    agent: Any
    final_eval: dict[str, Any] | None = None


@contextmanager
def capture_loops() -> Iterator[list[Trained]]:
    """Record every training loop run (what ``train`` dispatches to)."""
    calls: list[Trained] = []
    original = TrainLoop.run_all

    def wrapper(self: TrainLoop) -> Any:
        agent = original(self)
        calls.append(
            Trained(
                self.config,
                self.run,
                self.resumed_from,
                agent,
                json.loads(self.run.eval_path.read_text()),
            )
        )
        return agent

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TrainLoop, "run_all", wrapper)
        yield calls


def write_config(folder: Path, data: dict[str, Any], run_name: str = "run") -> Path:
    """Write ``data`` as ``folder/<run_name>.yaml`` with ``run.dir = folder/<run_name>``."""
    data = {**data, "run": {**data.get("run", {}), "dir": str(folder / run_name)}}
    path = folder / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def train_run(
    folder: Path, data: dict[str, Any], run_name: str = "run", overrides: list[str] | None = None
) -> Trained:
    """``rlkit.train.train`` on ``data`` (run directory ``folder/run_name``); the loop call."""
    path = write_config(folder, data, run_name)
    with capture_loops() as calls:
        run = train(path, overrides or [])
    assert len(calls) == 1 and calls[0].run.path == run.path
    return calls[0]


def metrics_rows(run: RunDir, drop: tuple[str, ...] = WALL_CLOCK) -> list[dict[str, str]]:
    """metrics.csv rows without the wall-clock columns."""
    with run.metrics_path.open() as handle:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(handle)]


def observations(trained: Trained, count: int = 64, seed: int = 0) -> np.ndarray:
    """Real observations from the run's env under random actions."""
    env = make_env(trained.config.env)
    found = random_observations(env, count, seed)
    env.close()
    return found


def trained_act(trained: Trained, obs: np.ndarray) -> np.ndarray:
    """Deterministic actions of the agent object that was trained."""
    return trained.agent.act(obs, 0, explore=False)


def assert_state_dicts_equal(a: dict[str, Any], b: dict[str, Any], path: str = "") -> None:
    """Exact equality of nested state dicts (tensors with torch.equal)."""
    assert a.keys() == b.keys(), path
    for key in a:
        x, y = a[key], b[key]
        where = f"{path}.{key}"
        if isinstance(x, dict):
            assert_state_dicts_equal(x, y, where)
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y), where
        elif isinstance(x, list) and x and isinstance(x[0], dict):
            assert len(x) == len(y), where
            for i, (p, q) in enumerate(zip(x, y, strict=True)):
                assert_state_dicts_equal(p, q, f"{where}[{i}]")
        else:
            assert x == y, where


def step_names(run: RunDir) -> list[str]:
    return [p.name for p in run.checkpoint_dirs()]


# ---------------------------------------------------------------------------------------------
# fixtures: each training run once per module


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory) -> Trained:
    return train_run(tmp_path_factory.mktemp("sac"), SAC)


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Trained:
    return train_run(tmp_path_factory.mktemp("ppo"), PPO)


@pytest.fixture(scope="module")
def drq_run(tmp_path_factory) -> Trained:
    """DrQ-v2 trained 2N steps in one go."""
    return train_run(tmp_path_factory.mktemp("drq"), DRQ)


@pytest.fixture(params=["sac_run", "ppo_run", "drq_run"])
def any_run(request) -> Trained:
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------------------------
# run directory and evaluation


RUN_LAYOUTS = [  # (fixture, checkpoint steps, evaluation steps, loop, files of the agent)
    ("sac_run", [150, 300], [150, 300], "sb3", {"agent.pt", "agent.npz"}),
    ("ppo_run", [128, 256], [128, 256], "sb3", {"agent.pt", "agent.npz"}),
    ("drq_run", [N, 2 * N], [50, 100, 150, 200], "online", {"agent.pt", "counters.pt"}),
]


@pytest.mark.parametrize(
    ("fixture", "steps", "eval_steps", "loop", "files"),
    RUN_LAYOUTS,
    ids=[r[0] for r in RUN_LAYOUTS],
)
def test_run_directory_contents(request, fixture, steps, eval_steps, loop, files):
    trained: Trained = request.getfixturevalue(fixture)
    run = trained.run
    assert trained.resume is None
    assert run.config_path.is_file()
    assert step_names(run) == [f"step_{s:09d}" for s in steps]
    for folder in run.checkpoint_dirs():
        assert {"meta.json", "loop.pt", *files} <= {p.name for p in folder.iterdir()}
        assert json.loads((folder / "meta.json").read_text())["step"] == int(
            folder.name.split("_")[1]
        )
    assert not list(run.checkpoints.glob(".tmp_*"))
    final_meta = json.loads((run.final / "meta.json").read_text())
    assert (final_meta["loop"], final_meta["step"], final_meta["schema"]) == (loop, steps[-1], 2)
    assert (run.final / "agent.pt").is_file()

    rows = metrics_rows(run, drop=())
    assert "eval/return_mean" in rows[0]
    eval_rows = {
        int(r["step"]): float(r["eval/return_mean"]) for r in rows if r["eval/return_mean"]
    }
    assert sorted(eval_rows) == eval_steps
    assert all(math.isfinite(v) for v in eval_rows.values())

    result = trained.final_eval
    assert result["step"] == steps[-1]
    assert result["episodes"] == trained.config.eval.episodes == len(result["per_episode"])
    assert math.isfinite(result["return_mean"])
    assert result["return_mean"] == pytest.approx(
        np.mean([e["return"] for e in result["per_episode"]])
    )


def test_sb3_final_folder_has_zip_for_other_tools(sac_run):
    assert (sac_run.run.final / "sb3_model.zip").is_file()
    assert "buffer_observations" not in load_arrays(sac_run.run.final / "agent.npz")
    assert "buffer_observations" in load_arrays(sac_run.run.latest_checkpoint() / "agent.npz")


def test_resolved_config_in_run_dir_loads_back_equal(any_run):
    reloaded = load_config(any_run.run.config_path)
    assert reloaded == any_run.config
    assert reloaded.run.dir == str(any_run.run.path)


@pytest.mark.parametrize("fixture", ["sac_run", "ppo_run"])
def test_evaluate_cli_reevaluates_the_saved_model(request, fixture, capsys):
    trained: Trained = request.getfixturevalue(fixture)
    assert main(["evaluate", str(trained.run.path), "--episodes", "2"]) == 0
    assert "written:" in capsys.readouterr().out
    result = json.loads(trained.run.eval_path.read_text())
    assert result["episodes"] == 2 and len(result["per_episode"]) == 2
    # same episode seeds as the final evaluation of training: the loaded model acts the same
    before = trained.final_eval["per_episode"][:2]
    assert [e["return"] for e in result["per_episode"]] == pytest.approx(
        [e["return"] for e in before], abs=1e-6
    )
    assert [e["length"] for e in result["per_episode"]] == [e["length"] for e in before]


# ---------------------------------------------------------------------------------------------
# loading gives the trained policy


def test_load_run_acts_like_the_trained_agent(any_run):
    obs = observations(any_run)
    loaded = load_run(any_run.run.path)
    expected = trained_act(any_run, obs)
    got = loaded.act(obs)
    if loaded.view.action_kind == "discrete":
        np.testing.assert_array_equal(got, expected)
        assert len(np.unique(got)) > 1, "a constant policy would make this check vacuous"
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
        assert np.ptp(got) > 0


def test_policy_view_squash_equals_act(any_run):
    obs = observations(any_run, seed=1)
    loaded = load_run(any_run.run.path)
    with torch.no_grad():
        output = loaded.view(torch.as_tensor(obs))
        via_view = loaded.view.squash(output).numpy()
    assert torch.equal(loaded.view.act(torch.as_tensor(obs)), torch.as_tensor(via_view))
    if loaded.view.action_kind == "discrete":
        assert output.shape == (len(obs), 2)
        np.testing.assert_array_equal(via_view, loaded.act(obs))
    else:
        assert output.shape == (len(obs), 1)
        np.testing.assert_allclose(via_view, loaded.act(obs), rtol=0, atol=1e-5)
    assert not any(p.requires_grad for p in loaded.view.parameters())


def test_load_run_without_final_uses_latest_checkpoint(drq_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(drq_run.run.path, copy)
    shutil.rmtree(copy / "final")
    obs = observations(drq_run)
    np.testing.assert_array_equal(load_run(copy).act(obs), trained_act(drq_run, obs))


# ---------------------------------------------------------------------------------------------
# determinism


def test_native_same_seed_same_metrics_and_weights(drq_run, tmp_path):
    twin = train_run(tmp_path, DRQ)
    rows = metrics_rows(drq_run.run)
    assert any(r["train/critic_loss"] for r in rows)
    assert metrics_rows(twin.run) == rows
    assert_state_dicts_equal(twin.agent.state_dict(), drq_run.agent.state_dict())


def test_sb3_sac_same_seed_same_metrics(sac_run, tmp_path):
    twin = train_run(tmp_path, SAC)
    rows = metrics_rows(sac_run.run)
    assert any(r.get("train/critic_loss") for r in rows)
    assert metrics_rows(twin.run) == rows
    assert_state_dicts_equal(
        twin.agent.model.policy.state_dict(), sac_run.agent.model.policy.state_dict()
    )


# ---------------------------------------------------------------------------------------------
# resume: native loop (exact)


@pytest.fixture(scope="module")
def drq_resumed(tmp_path_factory) -> tuple[Trained, Trained]:
    """DrQ-v2 trained N steps, then the same command re-run with total 2N."""
    folder = tmp_path_factory.mktemp("drq_resume")
    first = train_run(folder, DRQ, overrides=[f"train.total_steps={N}"])
    second = train_run(folder, DRQ)
    return first, second


def test_native_resume_equals_training_in_one_go(drq_run, drq_resumed):
    first, second = drq_resumed
    assert first.resume is None
    assert second.resume == second.run.checkpoints / f"step_{N:09d}"
    assert metrics_rows(second.run) == metrics_rows(drq_run.run)
    assert_state_dicts_equal(second.agent.state_dict(), drq_run.agent.state_dict())
    assert torch.equal(second.agent.actor.trunk[0].weight, drq_run.agent.actor.trunk[0].weight)


def test_native_resume_keeps_earlier_metrics_rows_verbatim(drq_resumed):
    first, second = drq_resumed
    before = [r for r in metrics_rows(first.run, drop=()) if int(r["step"]) <= N]
    after = [r for r in metrics_rows(second.run, drop=()) if int(r["step"]) <= N]
    assert after == before  # wall-clock columns too: these rows were not recomputed
    assert max(int(r["step"]) for r in metrics_rows(second.run)) == 2 * N


def test_half_written_checkpoints_are_ignored(drq_run, tmp_path):
    """A run killed while writing checkpoint 2N resumes from checkpoint N and ends identical."""
    crashed = RunDir(tmp_path / "run")
    shutil.copytree(drq_run.run.path, crashed.path)
    shutil.rmtree(crashed.final)
    crashed.eval_path.unlink()
    (crashed.checkpoints / f"step_{2 * N:09d}" / "meta.json").unlink()  # meta.json is written last
    partial = crashed.checkpoints / f".tmp_step_{N + 50:09d}"
    partial.mkdir()
    (partial / "agent.pt").write_bytes(b"\x80\x02truncated")
    assert crashed.latest_checkpoint() == crashed.checkpoints / f"step_{N:09d}"

    resumed = train_run(tmp_path, DRQ)
    assert resumed.resume == crashed.checkpoints / f"step_{N:09d}"
    assert metrics_rows(resumed.run) == metrics_rows(drq_run.run)
    early = lambda run: [r for r in metrics_rows(run, drop=()) if int(r["step"]) <= N]  # noqa: E731
    assert early(resumed.run) == early(drq_run.run)  # kept, not recomputed from step 0
    assert_state_dicts_equal(resumed.agent.state_dict(), drq_run.agent.state_dict())
    assert (crashed.checkpoints / f"step_{2 * N:09d}" / "meta.json").is_file()


def test_fresh_moves_old_run_aside_and_starts_at_zero(tmp_path, capsys):
    data = {**DRQ, "train": {**DRQ["train"], "total_steps": 40, "eval_every": 0}}
    path = write_config(tmp_path, data)
    run = RunDir(tmp_path / "run")
    with capture_loops() as calls:
        assert main(["train", str(path)]) == 0
        assert main(["train", str(path)]) == 0  # plain re-run: resumes the finished run
        assert main(["train", str(path), "--fresh"]) == 0
    assert "run directory:" in capsys.readouterr().out
    assert [c.resume for c in calls] == [None, run.checkpoints / "step_000000040", None]
    old = list(tmp_path.glob("run.old-*"))
    assert len(old) == 1 and old[0].is_dir()
    old_run = RunDir(old[0])
    assert old_run.config_path.is_file() and (old_run.final / "meta.json").is_file()
    assert step_names(run) == ["step_000000040"]
    assert metrics_rows(run) == metrics_rows(old_run)
    assert int(metrics_rows(run)[0]["step"]) < 40


# ---------------------------------------------------------------------------------------------
# resume: SB3 (counters, buffer, optimiser, metrics)


@pytest.fixture(scope="module")
def sac_resumed(tmp_path_factory) -> dict[str, Any]:
    """SAC trained N=150 steps (checkpoint kept in memory), then resumed to 2N."""
    folder = tmp_path_factory.mktemp("sac_resume")
    first = train_run(folder, SAC_RESUME)
    checkpoint = first.run.checkpoints / "step_000000150"
    snapshot = {
        "arrays": load_arrays(checkpoint / "agent.npz"),
        "state": load_torch(checkpoint / "agent.pt"),
        "rows": metrics_rows(first.run, drop=()),
        "final_state": load_torch(first.run.final / "agent.pt"),
    }
    second = train_run(folder, SAC_RESUME, overrides=["train.total_steps=300"])
    return {"first": first, "second": second, "checkpoint": checkpoint, **snapshot}


def test_sb3_resume_continues_the_step_counter(sac_resumed):
    second = sac_resumed["second"]
    assert second.resume == sac_resumed["checkpoint"]
    assert second.agent.model.num_timesteps == 300
    assert step_names(second.run) == ["step_000000150", "step_000000300"]
    state = load_torch(second.run.checkpoints / "step_000000300" / "agent.pt")
    assert state["counters"]["num_timesteps"] == 300
    assert state["counters"]["n_updates"] > sac_resumed["state"]["counters"]["n_updates"]
    assert json.loads(second.run.eval_path.read_text())["step"] == 300


def test_sb3_resume_keeps_the_checkpointed_replay_buffer(sac_resumed):
    before = sac_resumed["arrays"]
    after = load_arrays(sac_resumed["second"].run.checkpoints / "step_000000300" / "agent.npz")
    count = len(before["buffer_rewards"])
    assert count >= 149
    assert len(after["buffer_rewards"]) > count
    for key in BUFFER_KEYS:
        np.testing.assert_array_equal(
            after[f"buffer_{key}"][:count], before[f"buffer_{key}"], err_msg=key
        )


def test_sb3_checkpoint_holds_every_transition(sac_resumed):
    assert sac_resumed["state"]["counters"]["num_timesteps"] == 150
    assert len(sac_resumed["arrays"]["buffer_rewards"]) == 150


def test_sb3_last_checkpoint_matches_final_model(sac_resumed):
    checkpoint, final = sac_resumed["state"], sac_resumed["final_state"]
    assert checkpoint["counters"] == final["counters"]
    assert_state_dicts_equal(checkpoint["params"]["policy"], final["params"]["policy"])


def test_sb3_loaded_optimiser_state_equals_checkpoint(sac_resumed):
    first: Trained = sac_resumed["first"]
    env = make_env(first.config.env)
    agent = SB3Agent(
        "SAC",
        first.config.agent,
        spaces=(env.observation_space, env.action_space),
        seed=99,
        total_steps=300,
    )
    env.close()
    agent.load(sac_resumed["checkpoint"])
    state = load_torch(sac_resumed["checkpoint"] / "agent.pt")
    saved = sac_resumed["state"]
    assert_state_dicts_equal(state["params"], saved["params"])
    model = agent.model
    for name in ("actor.optimizer", "critic.optimizer", "ent_coef_optimizer"):
        loaded = model.get_parameters()[name]
        assert loaded["state"], f"{name}: no Adam moments were saved"
        assert_state_dicts_equal(loaded, saved["params"][name], name)
    assert_state_dicts_equal(model.policy.state_dict(), saved["params"]["policy"])
    assert torch.equal(model.log_ent_coef.detach(), saved["torch_vars"]["log_ent_coef"])
    assert model.num_timesteps == 150 and model._n_updates == saved["counters"]["n_updates"] > 0
    buffer = model.replay_buffer
    count = len(sac_resumed["arrays"]["buffer_rewards"])
    assert buffer.pos == count and not buffer.full
    np.testing.assert_array_equal(
        buffer.observations[:count], sac_resumed["arrays"]["buffer_observations"]
    )


def test_sb3_resume_preserves_metrics_rows_up_to_n(sac_resumed):
    before = sac_resumed["rows"]
    assert before and all(int(float(r["step"])) <= 150 for r in before)
    assert {50, 100, 150} <= {int(float(r["step"])) for r in before if r["eval/return_mean"]}
    after = metrics_rows(sac_resumed["second"].run, drop=())
    kept = [{k: r[k] for k in before[0]} for r in after if int(float(r["step"])) <= 150]
    assert kept == before
    assert max(int(float(r["step"])) for r in after) == 300


def test_damaged_latest_checkpoint_falls_back_with_a_warning(drq_run, tmp_path):
    """A corrupt newest checkpoint is set aside (kept) and the run resumes from the one before."""
    damaged = RunDir(tmp_path / "run")
    shutil.copytree(drq_run.run.path, damaged.path)
    shutil.rmtree(damaged.final)
    latest = damaged.checkpoints / f"step_{2 * N:09d}"
    (latest / "agent.pt").write_bytes(b"PK\x03\x04 not a torch file")
    with pytest.warns(UserWarning, match="cannot be read"):
        resumed = train_run(tmp_path, DRQ)
    assert resumed.resume == damaged.checkpoints / f"step_{N:09d}"
    assert (damaged.checkpoints / f".damaged-step_{2 * N:09d}" / "agent.pt").is_file()
    assert metrics_rows(resumed.run) == metrics_rows(drq_run.run)
    assert_state_dicts_equal(resumed.agent.state_dict(), drq_run.agent.state_dict())


def test_no_readable_checkpoint_stops_clearly(drq_run, tmp_path, capsys):
    damaged = RunDir(tmp_path / "run")
    shutil.copytree(drq_run.run.path, damaged.path)
    for folder in damaged.checkpoint_dirs():
        (folder / "loop.pt").write_bytes(b"garbage")
    path = write_config(tmp_path, DRQ)
    capsys.readouterr()
    with pytest.warns(UserWarning):
        assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no readable checkpoint" in err[0] and "--fresh" in err[0]
    assert sorted(p.name for p in damaged.checkpoints.iterdir()) == [
        f".damaged-step_{N:09d}",
        f".damaged-step_{2 * N:09d}",
    ]
    assert (damaged.final / "agent.pt").is_file()  # nothing else touched


def test_sb3_damaged_latest_checkpoint_falls_back(sac_resumed, tmp_path):
    source = sac_resumed["second"].run
    damaged = RunDir(tmp_path / "run")
    shutil.copytree(source.path, damaged.path)
    (damaged.checkpoints / "step_000000300" / "agent.npz").write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="step_000000300"):
        resumed = train_run(tmp_path, SAC_RESUME, overrides=["train.total_steps=300"])
    assert resumed.resume == damaged.checkpoints / "step_000000150"
    assert resumed.agent.model.num_timesteps == 300


@pytest.mark.slow
def test_native_resume_is_exact_after_sigkill(drq_run, tmp_path):
    """`rlkit train` killed by SIGKILL mid-run, then re-run: metrics and weights as in one go."""
    import os
    import signal
    import subprocess
    import sys
    import time

    long = {**DRQ, "train": {**DRQ["train"], "total_steps": 100_000, "checkpoint_every": 50}}
    path = write_config(tmp_path, long)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlkit.cli", "train", str(path)], env=env)
    run = RunDir(tmp_path / "run")
    deadline = time.time() + 120
    while (
        time.time() < deadline
        and not (run.checkpoints / f"step_{N + 50:09d}" / "meta.json").is_file()
    ):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not run.final.exists()
    resumed = train_run(
        tmp_path, long, overrides=[f"train.total_steps={2 * N}", f"train.checkpoint_every={N}"]
    )
    assert resumed.resume is not None and int(resumed.resume.name.split("_")[1]) >= N + 50
    assert metrics_rows(resumed.run) == metrics_rows(drq_run.run)
    assert_state_dicts_equal(resumed.agent.state_dict(), drq_run.agent.state_dict())
