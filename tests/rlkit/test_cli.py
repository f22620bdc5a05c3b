"""The ``rlkit`` command line: config errors exit 2 with one line on stderr; info; config-help."""

from __future__ import annotations

from typing import Any

import pytest

from rlkit.cli import main
from rlkit.config import dump_config, load_config


def _set(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Set ``dotted`` in a nested mapping (in place) and return it."""
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit code, stdout, stderr)."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("rlkit: error: ")
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


# (id, dotted key set in the file (or None), value, overrides, dotted key named in the message)
CLI_CASES = [
    ("misspelt_key", "train.total_step", 5, [], "train.total_step"),
    ("wrong_type_override", None, None, ["train.total_steps=abc"], "train.total_steps"),
    ("negative_steps", "train.total_steps", -3, [], "train.total_steps"),
    ("unknown_agent", "agent.name", "sacc", [], "agent.name"),
    ("unknown_env", "env.id", "Pendulm-v1", [], "env.id"),
    (
        "unknown_agent_kwarg",
        None,
        None,
        ["agent.kwargs.lerning_starts=10"],
        "agent.kwargs.lerning_starts",
    ),
    ("unknown_attack", "attack", {"attacks": [{"name": "pgdd"}]}, [], "attack.attacks.0.name"),
    ("n_envs_zero", "env.n_envs", 0, [], "env.n_envs"),
]


@pytest.mark.parametrize(
    ("key", "value", "overrides", "named"),
    [c[1:] for c in CLI_CASES],
    ids=[c[0] for c in CLI_CASES],
)
def test_train_config_error_exits_2_without_run_dir(
    write_config, base_config, tmp_path, capsys, key, value, overrides, named
):
    if key is not None:
        _set(base_config, key, value)
    path = write_config(base_config)
    code, out, err = run_cli(["train", str(path), *overrides], capsys)
    assert code == 2
    assert_one_line_error(err, str(path), f"'{named}'")
    assert out == ""
    assert not (tmp_path / "run").exists()


def test_train_missing_config_file_exits_2(tmp_path, capsys):
    code, _, err = run_cli(["train", str(tmp_path / "absent.yaml")], capsys)
    assert code == 2
    assert_one_line_error(err, "absent.yaml", "config file not found")
    assert list(tmp_path.iterdir()) == []


def test_train_circular_extends_exits_2(write_config, tmp_path, capsys):
    write_config({"extends": "b.yaml"}, "a.yaml")
    path = write_config({"extends": "a.yaml"}, "b.yaml")
    code, _, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert_one_line_error(err, "circular 'extends'")


def test_train_bad_override_syntax_exits_2(write_config, base_config, tmp_path, capsys):
    code, _, err = run_cli(["train", str(write_config(base_config)), "train.total_steps"], capsys)
    assert code == 2
    assert_one_line_error(err, "override 'train.total_steps'", "expected key.sub=value")
    assert not (tmp_path / "run").exists()


def test_train_yaml_syntax_error_exits_2_naming_file(write_config, tmp_path, capsys):
    path = write_config("env:\n  id: Pendulum-v1\nagent: [unclosed\n")
    code, _, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    first = err.splitlines()[0]
    assert first.startswith("rlkit: error: ") and str(path) in first and "invalid YAML" in first
    assert "Traceback" not in err and "line 3" in err


def test_train_yaml_syntax_error_is_one_line(write_config, capsys):
    path = write_config("env:\n  id: Pendulum-v1\nagent: [unclosed\n")
    code, _, err = run_cli(["train", str(path)], capsys)
    assert code == 2
    assert_one_line_error(err, str(path), "line 3")


def test_resume_with_changed_seed_exits_2_and_keeps_run(
    write_config, base_config, tmp_path, capsys
):
    path = write_config(base_config)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    original = dump_config(load_config(path))
    (run_dir / "config.yaml").write_text(original)
    code, _, err = run_cli(["train", str(path), "seed=5"], capsys)
    assert code == 2
    assert_one_line_error(err, str(run_dir), "different seed", "--fresh")
    assert (run_dir / "config.yaml").read_text() == original
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml"]


# Config mistakes that are only noticed once training starts: the run directory is already
# created and the user gets a traceback (exit 1) instead of a one-line config error.
LATE_ERRORS = [
    (
        "gym_env_unknown_kwarg",
        {"env": {"id": "Pendulum-v1", "kwargs": {"gravity": 9.8}}, "agent": {"name": "sac"}},
        "rlkit/catalog.py check_env returns without checking env.kwargs for gymnasium ids; "
        "gym.make raises TypeError in rlkit/envs/factory.py make_env",
    ),
    (
        "drqv2_discrete_env",
        {"env": {"id": "CartPole-v1"}, "agent": {"name": "drqv2"}},
        "drqv2 on a Discrete action space is only rejected by agents/drqv2.py DrQV2Agent.__init__ "
        "(ValueError) after the run dir exists",
    ),
    (
        "drqv2_several_envs",
        {"env": {"id": "Pendulum-v1", "n_envs": 2}, "agent": {"name": "drqv2"}},
        "env.n_envs > 1 with a native agent is only rejected by rlkit/loops/online.py train_online "
        "(ValueError) after the run dir exists",
    ),
    (
        "drqv2_bad_schedule",
        {
            "env": {"id": "Pendulum-v1"},
            "agent": {
                "name": "drqv2",
                "kwargs": {
                    "stddev_schedule": "cosine(1,0,10)",
                    "num_expl_steps": 5,
                    "batch_size": 4,
                },
            },
        },
        "agent.kwargs.stddev_schedule is only parsed by agents/drqv2.py schedule() at the first "
        "update (after num_expl_steps of training)",
    ),
]


@pytest.mark.parametrize("data", [pytest.param(d, id=i) for i, d, _ in LATE_ERRORS])
def test_incompatible_env_agent_is_a_config_error(write_config, tmp_path, capsys, data):
    data = {
        **data,
        "train": {"total_steps": 20, "progress": False},
        "run": {"dir": str(tmp_path / "run"), "tensorboard": False},
    }
    path = write_config(data)
    try:
        code, _, err = run_cli(["train", str(path)], capsys)
    finally:
        created = (tmp_path / "run").exists()
    assert code == 2
    assert_one_line_error(err, str(path))
    assert not created


# ---------------------------------------------------------------------------------------------
# evaluate errors


def test_evaluate_errors_exit_2(tmp_path, capsys):
    code, _, err = run_cli(["evaluate"], capsys)
    assert code == 2
    assert_one_line_error(err, "give a run directory")

    code, _, err = run_cli(["evaluate", str(tmp_path)], capsys)
    assert code == 2
    assert_one_line_error(err, str(tmp_path), "not an rlkit run directory")

    code, _, err = run_cli(
        ["evaluate", "--model", str(tmp_path / "m.zip"), "--env", "Pendulum-v1"], capsys
    )
    assert code == 2
    assert_one_line_error(err, "m.zip", "file not found")

    code, _, err = run_cli(["evaluate", str(tmp_path), "--eps", "0.1,x"], capsys)
    assert code == 2
    assert_one_line_error(err, "--eps '0.1,x'")


def test_evaluate_run_without_model_exits_2(write_config, base_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_config(load_config(write_config(base_config))))
    code, _, err = run_cli(["evaluate", str(run_dir)], capsys)
    assert code == 2
    assert_one_line_error(err, "has no final model or checkpoint yet")


# ---------------------------------------------------------------------------------------------
# info and config-help


def _section(text: str, title: str) -> list[str]:
    """Names listed under ``title:`` in ``rlkit info`` output."""
    lines = text.splitlines()
    start = lines.index(f"{title}:") + 1
    names = []
    for line in lines[start:]:
        if not line.startswith("  ") or line.startswith("  ("):
            break
        names.append(line.split()[0])
    return names


def test_info_lists_registered_names(capsys):
    code, out, err = run_cli(["info"], capsys)
    assert code == 0 and err == ""
    assert {"grid"} <= set(_section(out, "envs"))
    assert {"sac", "ppo", "td3", "ddpg", "a2c", "drqv2"} <= set(_section(out, "agents"))
    assert {"bifurcation", "fgsm", "pgd"} <= set(_section(out, "attacks"))
    assert "Soft Actor-Critic" in out
    envs = _section(out, "envs")
    assert "dmc/TASK" in envs and "dmc/cartpole-swingup" not in envs  # a family is one line
    code, out, _ = run_cli(["info", "--all"], capsys)
    assert code == 0 and {"dmc/cartpole-swingup", "metaworld/reach", "adroit/door"} <= set(
        _section(out, "envs")
    )


def test_config_help_lists_every_key_with_default(capsys):
    code, out, _ = run_cli(["config-help"], capsys)
    assert code == 0
    assert "  env.id (required):" in out
    assert "  train.total_steps (default 10000):" in out
    assert "  eval.deterministic (default True):" in out
    assert "  attack.attacks.name (required):" in out  # keys of list items are described too
    keys = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert len(keys) == len(set(keys))


def test_unknown_subcommand_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["trian"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
