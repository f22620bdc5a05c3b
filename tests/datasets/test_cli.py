"""``rlkit dataset``: collect, info (text and histogram), convert, combine; bad input exits 2."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rlkit.cli import main
from rlkit.datasets import load_dataset
from rlkit.datasets.scores import D4RL_REFERENCE

PNG = b"\x89PNG\r\n\x1a\n"


def field(output: str, name: str) -> str:
    """The text after ``name`` on its line of ``rlkit dataset info`` output."""
    match = re.search(rf"^{name}\s+(.*)$", output, re.MULTILINE)
    assert match, f"no {name!r} line in:\n{output}"
    return match.group(1)


@pytest.fixture(scope="module")
def collected(sac_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root holding pendulum/expert-v0 (final policy) and pendulum/medium-v0 (checkpoint)."""
    root = tmp_path_factory.mktemp("datasets")
    for args in (
        ["--episodes", "2", "--out", "pendulum/expert-v0"],
        ["--episodes", "1", "--checkpoint", "step_000000200", "--noise", "0.1"]
        + ["--out", "pendulum/medium-v0"],
    ):
        assert main(["dataset", "collect", str(sac_run), *args, "--root", str(root)]) == 0
    return root


def test_collect_writes_a_dataset_with_reference_scores(collected: Path, sac_run: Path) -> None:
    expert = load_dataset(collected / "pendulum" / "expert-v0")
    assert len(expert) == 400 and len(expert.episode_returns()) == 2
    meta = expert.metadata
    assert meta["env_id"] == "Pendulum-v1"
    assert meta["ref_max_score"] == json.loads((sac_run / "eval.json").read_text())["return_mean"]
    assert meta["ref_min_score"] < 0
    assert meta["rlkit"]["level"] == "policy" and meta["rlkit"]["checkpoint"] is None
    assert "eval.json" in meta["rlkit"]["reference_scores"]["ref_max_score"]
    medium = load_dataset(collected / "pendulum" / "medium-v0")
    assert medium.metadata["rlkit"]["checkpoint"] == "step_000000200"
    assert medium.metadata["rlkit"]["noise"] == 0.1
    # one run, one pair of reference scores for every level
    assert medium.metadata["ref_min_score"] == meta["ref_min_score"]
    assert medium.metadata["ref_max_score"] == meta["ref_max_score"]


def test_info_prints_the_facts_and_writes_a_histogram(
    collected: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = collected / "pendulum" / "expert-v0"
    capsys.readouterr()
    assert main(["dataset", "info", str(folder)]) == 0
    out = capsys.readouterr().out
    data = load_dataset(folder)
    returns = data.episode_returns()
    assert field(out, "transitions") == "400"
    assert field(out, "episodes") == "2 complete"
    assert field(out, "return") == (
        f"mean {returns.mean():.2f}  std {returns.std():.2f}  "
        f"min {returns.min():.2f}  max {returns.max():.2f}"
    )
    low, high = data.metadata["ref_min_score"], data.metadata["ref_max_score"]
    score = 100 * (returns.mean() - low) / (high - low)
    assert field(out, "normalised").startswith(f"mean {score:.1f}")
    assert "reference returns from the dataset" in field(out, "normalised")
    assert field(out, "observations").startswith("(3,) float32  space Box(")
    assert field(out, "actions") == "(1,) float32  space Box(-2.0, 2.0, (1,), float32)"
    assert field(out, "terminals") == "0  timeouts 2"
    assert field(out, "dropped") == "0"
    assert field(out, "env") == "Pendulum-v1"
    assert field(out, "plot") == str(folder / "returns.png")
    assert (folder / "returns.png").read_bytes().startswith(PNG)


def test_info_by_id_and_plot_path(
    collected: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(collected))
    plot = tmp_path / "plots" / "returns.png"
    assert main(["dataset", "info", "pendulum/medium-v0", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert field(out, "transitions") == "200" and field(out, "plot") == str(plot)
    assert plot.read_bytes().startswith(PNG)


def test_info_of_a_d4rl_file(
    hdf5_file: Callable[..., Path],
    arrays: Callable[..., dict[str, np.ndarray]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = arrays(10)
    data["terminals"][2] = True
    data["timeouts"][5] = True
    path = hdf5_file(data, name="hopper-medium-v2.hdf5")
    assert main(["dataset", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert field(out, "transitions") == "8"
    assert field(out, "episodes") == (
        "2 complete (+1 cut by the end of the data, not counted below)"
    )
    assert field(out, "return") == "mean 5.00  std 2.00  min 3.00  max 7.00"
    low, high = D4RL_REFERENCE["hopper"]
    assert field(out, "normalised").startswith(f"mean {100 * (5 - low) / (high - low):.1f}")
    assert "from D4RL" in field(out, "normalised")
    assert field(out, "terminals") == "1  timeouts 2 (1 of them the end of the data)"
    assert field(out, "dropped").startswith("2: the last step of 1 timeout episode and")
    assert field(out, "observations") == "(2,) float32  (space not recorded)"
    png = path.with_name("hopper-medium-v2_returns.png")
    assert field(out, "plot") == str(png) and png.read_bytes().startswith(PNG)


def test_collect_replay_random_and_combine(
    sac_run: Path, collected: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--root", str(collected)]
    # the latest checkpoint by default: step 300
    assert main(["dataset", "collect", str(sac_run), "--level", "replay"]
                + ["--out", "pendulum/medium-replay-v0", *root]) == 0  # fmt: skip
    replay = load_dataset(collected / "pendulum" / "medium-replay-v0")
    assert len(replay) == 300 and replay.metadata["rlkit"]["checkpoint"] == "step_000000300"
    assert main(["dataset", "collect", str(sac_run), "--level", "random", "--episodes", "1"]
                + ["--out", "pendulum/random-v0", "--no-progress", *root]) == 0  # fmt: skip
    assert len(load_dataset(collected / "pendulum" / "random-v0")) == 200
    medium, expert = (str(collected / "pendulum" / n) for n in ("medium-v0", "expert-v0"))
    assert main(["dataset", "combine", medium, expert, "--out", "pendulum/me-v0", *root]) == 0
    combined = load_dataset(collected / "pendulum" / "me-v0")
    parts = [load_dataset(p) for p in (medium, expert)]
    assert len(combined) == sum(len(p) for p in parts) == 600
    np.testing.assert_array_equal(
        combined.observations, np.concatenate([p.observations for p in parts])
    )
    assert combined.metadata["ref_max_score"] == parts[0].metadata["ref_max_score"]
    assert combined.metadata["env_id"] == "Pendulum-v1"
    assert "wrote" in capsys.readouterr().out


def test_convert_a_d4rl_file(
    hdf5_file: Callable[..., Path],
    arrays: Callable[..., dict[str, np.ndarray]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = arrays(10)
    data["terminals"][4] = True
    path = hdf5_file(data, name="walker2d-medium-v2.hdf5")
    root = tmp_path / "root"
    assert main(["dataset", "convert", str(path), "--out", "walker/m-v0", "--root", str(root)]) == 0
    assert "dropped 1" in capsys.readouterr().out  # the file's last row, not terminal
    back = load_dataset(root / "walker" / "m-v0")
    original = load_dataset(path)
    np.testing.assert_array_equal(back.observations, original.observations)
    np.testing.assert_array_equal(back.next_observations, original.next_observations)
    assert (back.metadata["ref_min_score"], back.metadata["ref_max_score"]) == (
        D4RL_REFERENCE["walker2d"]
    )
    assert any("dropped converting" in note for note in back.metadata["notes"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--episodes", "1", "--out", "pendulum/expert-v0"], "already exists"),
        (["--level", "replay", "--episodes", "3", "--out", "x-v0"], "takes no --episodes"),
        (["--out", "x-v0"], "--level policy needs --episodes N"),
        (["--episodes", "1", "--out", "x"], "not a Minari dataset id"),
        (["--episodes", "1", "--checkpoint", "step_9", "--out", "x-v0"], "no checkpoint 'step_9'"),
        (["--level", "replay", "--checkpoint", "nope", "--out", "x-v0"], "no checkpoint 'nope'"),
        (["--episodes", "1", "--until-step", "5", "--out", "x-v0"], "--level replay only"),
    ],
)
def test_collect_bad_input_exits_2_with_one_line(
    sac_run: Path,
    collected: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["dataset", "collect", str(sac_run), *args, "--root", str(collected)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (collected / "x-v0").exists()


def test_not_a_run_and_not_a_dataset_exit_2(
    tmp_path: Path, minari_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dataset", "collect", str(tmp_path), "--episodes", "1", "--out", "x-v0"]) == 2
    assert "not an rlkit run directory" in capsys.readouterr().err
    assert main(["dataset", "info", "missing/thing-v0"]) == 2
    assert "no Minari dataset 'missing/thing-v0'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["dataset", "collect", str(tmp_path), "--noise", "-1", "--out", "x-v0"])
    assert info.value.code == 2
