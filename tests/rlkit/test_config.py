"""Typed configs: every bad input is a ConfigError naming file and key; overrides; extends; dump."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlkit.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    deep_merge,
    dump_config,
    load_attack_config,
    load_config,
    parse_override,
)

# ---------------------------------------------------------------------------------------------
# bad inputs: (case id, how to build the file, overrides, fragments the message must contain)
# "{file}" in a fragment is replaced by the config file's path.


def _with(base: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A copy of ``base`` with ``dotted`` set to ``value`` (sections created as needed)."""
    data = deep_merge(base, {})
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node[key] = dict(node.get(key) or {})
        node = node[key]
    node[last] = value
    return data


def _without(base: dict[str, Any], dotted: str) -> dict[str, Any]:
    data = deep_merge(base, {})
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node[key] = dict(node[key])
        node = node[key]
    del node[last]
    return data


ATTACK_OK = {"attacks": [{"name": "fgsm"}]}

# (id, builder(base) -> mapping or text, overrides, fragments)
BAD_MAPPINGS: list[tuple[str, Any, list[str], list[str]]] = [
    (
        "unknown_top_level_key",
        lambda b: {**b, "bogus": 1},
        [],
        ["{file}", "unknown key 'bogus'", "allowed keys here: env, agent"],
    ),
    (
        "misspelt_nested_key",
        lambda b: _with(b, "train.total_step", 5),
        [],
        ["{file}", "unknown key 'train.total_step'", "did you mean 'train.total_steps'?"],
    ),
    (
        "wrong_type",
        lambda b: _with(b, "train.total_steps", "abc"),
        [],
        ["{file}", "key 'train.total_steps'", "given 'abc'", "valid integer"],
    ),
    (
        "negative_total_steps",
        lambda b: _with(b, "train.total_steps", -5),
        [],
        ["{file}", "key 'train.total_steps'", "given -5", "greater than or equal to 1"],
    ),
    (
        "n_envs_zero",
        lambda b: _with(b, "env.n_envs", 0),
        [],
        ["{file}", "key 'env.n_envs'", "given 0", "greater than or equal to 1"],
    ),
    (
        "discrete_bins_one",
        lambda b: _with(b, "env.discrete_bins", 1),
        [],
        ["{file}", "key 'env.discrete_bins'", "given 1", "greater than or equal to 2"],
    ),
    (
        "learning_rate_zero",
        lambda b: _with(b, "agent.learning_rate", 0),
        [],
        ["{file}", "key 'agent.learning_rate'", "given 0", "greater than 0"],
    ),
    (
        "eval_episodes_zero",
        lambda b: _with(b, "eval.episodes", 0),
        [],
        ["{file}", "key 'eval.episodes'", "given 0"],
    ),
    ("missing_env_id", lambda b: _without(b, "env.id"), [], ["{file}", "key 'env.id' is required"]),
    ("missing_agent", lambda b: _without(b, "agent"), [], ["{file}", "key 'agent' is required"]),
    (
        "unknown_agent_name",
        lambda b: _with(b, "agent.name", "sacc"),
        [],
        [
            "{file}",
            "key 'agent.name'",
            "unknown agent 'sacc'",
            "did you mean 'sac'",
            "allowed: a2c, atla, bc, ddpg, drqv2, mentor, odice, ppo, sac, td3",
        ],
    ),
    (
        "unknown_env_id",
        lambda b: _with(b, "env.id", "Pendulum-v2"),
        [],
        ["{file}", "key 'env.id'", "unknown env 'Pendulum-v2'", "'Pendulum-v1'"],
    ),
    (
        "unknown_agent_kwarg",
        lambda b: _with(b, "agent.kwargs.lerning_starts", 10),
        [],
        [
            "{file}",
            "key 'agent.kwargs.lerning_starts'",
            "did you mean 'agent.kwargs.learning_starts'",
        ],
    ),
    (
        "unknown_native_agent_kwarg",
        lambda b: _with(_with(b, "agent.name", "drqv2"), "agent.kwargs.nstepp", 3),
        [],
        ["{file}", "key 'agent.kwargs.nstepp'", "did you mean 'agent.kwargs.nstep'"],
    ),
    (
        "unknown_attack_name",
        lambda b: _with(b, "attack", {"attacks": [{"name": "fgsmm"}]}),
        [],
        ["{file}", "key 'attack.attacks.0.name'", "unknown attack 'fgsmm'", "did you mean 'fgsm'"],
    ),
    (
        "unknown_attack_setting",
        lambda b: _with(b, "attack", {"attacks": [{"name": "pgd", "settings": {"stepsize": 0.1}}]}),
        [],
        [
            "{file}",
            "key 'attack.attacks.0.settings.stepsize'",
            "did you mean 'attack.attacks.0.settings.step_size'",
        ],
    ),
    (
        "misspelt_attack_key",
        lambda b: _with(b, "attack", {"attacks": [{"name": "fgsm", "nrom": "l2"}]}),
        [],
        ["{file}", "unknown key 'attack.attacks.0.nrom'", "did you mean 'attack.attacks.0.norm'"],
    ),
    (
        "bad_attack_norm",
        lambda b: _with(b, "attack", {"attacks": [{"name": "fgsm", "norm": "l3"}]}),
        [],
        ["{file}", "key 'attack.attacks.0.norm'", "given 'l3'"],
    ),
    (
        "negative_attack_eps",
        lambda b: _with(b, "attack", {"attacks": [{"name": "fgsm", "eps": [-0.1]}]}),
        [],
        ["{file}", "key 'attack.attacks.0.eps'", "-0.1"],
    ),
    (
        "extends_not_a_path",
        lambda b: {**b, "extends": 5},
        [],
        ["{file}", "key 'extends'", "expected a file path"],
    ),
    (
        "yaml_syntax_error",
        lambda b: "env:\n  id: Pendulum-v1\nagent: [unclosed\n",
        [],
        ["{file}", "invalid YAML", "line 3"],
    ),
    (
        "top_level_not_mapping",
        lambda b: "- env\n- agent\n",
        [],
        ["{file}", "expected a mapping of sections, got list"],
    ),
    (
        "override_unknown_key",
        lambda b: b,
        ["train.total_step=5"],
        ["{file}", "with overrides train.total_step=5", "did you mean 'train.total_steps'"],
    ),
    ("override_wrong_type", lambda b: b, ["seed=abc"], ["{file}", "key 'seed'", "given 'abc'"]),
    (
        "override_without_equals",
        lambda b: b,
        ["train.total_steps"],
        ["override 'train.total_steps'", "expected key.sub=value"],
    ),
    (
        "override_empty_key_part",
        lambda b: b,
        ["train..total_steps=3"],
        ["override 'train..total_steps=3'", "expected key.sub=value"],
    ),
    (
        "override_into_scalar",
        lambda b: {**b, "seed": 3},
        ["seed.x=1"],
        ["override 'seed.x=1'", "'seed' is a value, not a section"],
    ),
    (
        "override_into_overridden_scalar",
        lambda b: b,
        ["train.total_steps=5", "train.total_steps.x=1"],
        ["'train.total_steps' is a value, not a section"],
    ),
]


@pytest.mark.parametrize(
    ("build", "overrides", "fragments"),
    [c[1:] for c in BAD_MAPPINGS],
    ids=[c[0] for c in BAD_MAPPINGS],
)
def test_bad_config_raises_config_error_naming_file_and_key(
    write_config, base_config, build, overrides, fragments
):
    path = write_config(build(base_config))
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    for fragment in fragments:
        assert fragment.replace("{file}", str(path)) in message
    assert "Traceback" not in message


def test_at_least_fifteen_distinct_bad_inputs_are_covered():
    assert len({case[0] for case in BAD_MAPPINGS}) >= 15


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_config(missing)


def test_missing_extends_file(write_config, base_config):
    path = write_config({"extends": "base_missing.yaml", **base_config})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert (
        str(path) in message
        and "key 'extends'" in message
        and "'base_missing.yaml' not found" in message
    )


def test_circular_extends(write_config):
    write_config({"extends": "b.yaml", "seed": 1}, "a.yaml")
    path_b = write_config({"extends": "a.yaml", "seed": 2}, "b.yaml")
    with pytest.raises(ConfigError, match="circular 'extends'"):
        load_config(path_b)


def test_self_extends_is_circular(write_config, base_config):
    path = write_config({"extends": "exp.yaml", **base_config})
    with pytest.raises(ConfigError, match="circular 'extends'"):
        load_config(path)


def test_several_errors_are_all_reported_one_per_line(write_config, base_config):
    data = _with(_with(base_config, "train.total_steps", -1), "env.n_envs", 0)
    with pytest.raises(ConfigError) as info:
        load_config(write_config(data))
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert any("'train.total_steps'" in line for line in lines)
    assert any("'env.n_envs'" in line for line in lines)


def test_grid_env_kwargs_are_validated(write_config, base_config):
    pytest.importorskip("rlkit.envs.grid.config")
    base = _with(base_config, "env.id", "grid")
    cases = [
        (
            _with(base, "env.kwargs.load_scale", -1),
            ["key 'env.kwargs.load_scale'", "given -1", "greater than 0"],
        ),
        (
            _with(base, "env.kwargs.netwrk", "case33bw"),
            ["unknown key 'env.kwargs.netwrk'", "did you mean 'env.kwargs.network'"],
        ),
        (
            _with(base, "eval.env_kwargs.split", "validation"),
            ["key 'eval.env_kwargs.split'", "given 'validation'"],
        ),
    ]
    for data, fragments in cases:
        path = write_config(data)
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert str(path) in str(info.value)
        for fragment in fragments:
            assert fragment in str(info.value)
    assert load_config(write_config(_with(base, "env.kwargs.load_scale", 0.5))).env.kwargs == {
        "load_scale": 0.5
    }


# ---------------------------------------------------------------------------------------------
# overrides


def test_overrides_are_typed_by_yaml():
    data = apply_overrides(
        {},
        [
            "seed=3",
            "train.progress=false",
            "agent.net_arch=[64,64]",
            "env.id=CartPole-v1",
            "agent.learning_rate=0.001",
            "run.dir=",
        ],
    )
    assert data["seed"] == 3 and type(data["seed"]) is int
    assert data["train"]["progress"] is False
    assert data["agent"]["net_arch"] == [64, 64]
    assert data["env"]["id"] == "CartPole-v1"
    assert data["agent"]["learning_rate"] == 0.001 and type(data["agent"]["learning_rate"]) is float
    assert data["run"]["dir"] is None


def test_override_creates_nested_sections_and_keeps_siblings():
    base = {"agent": {"name": "sac", "kwargs": {"tau": 0.01}}}
    data = apply_overrides(base, ["agent.kwargs.gamma=0.9", "agent.kwargs.new.deep=1"])
    assert data["agent"] == {
        "name": "sac",
        "kwargs": {"tau": 0.01, "gamma": 0.9, "new": {"deep": 1}},
    }
    assert base == {"agent": {"name": "sac", "kwargs": {"tau": 0.01}}}, (
        "the input must not be mutated"
    )


def test_later_override_wins_and_value_may_contain_equals():
    data = apply_overrides({}, ["seed=1", "seed=2", "run.dir=a=b"])
    assert data["seed"] == 2
    assert data["run"]["dir"] == "a=b"


def test_unparsable_yaml_value_is_kept_as_text():
    assert parse_override("run.dir=[unclosed") == (["run", "dir"], "[unclosed")


def test_load_config_applies_overrides(write_config, base_config):
    config = load_config(
        write_config(base_config),
        ["seed=3", "train.progress=false", "agent.net_arch=[64,64]", "agent.kwargs.gamma=0.9"],
    )
    assert config.seed == 3
    assert config.train.progress is False
    assert config.agent.net_arch == [64, 64]
    assert config.agent.kwargs == {"gamma": 0.9}
    assert config.train.total_steps == 100  # untouched value from the file


def test_scientific_notation_in_agent_kwargs_is_a_float(write_config, base_config):
    config = load_config(write_config(base_config), ["agent.kwargs.tau=5e-3"])
    assert config.agent.kwargs["tau"] == pytest.approx(0.005)


# ---------------------------------------------------------------------------------------------
# extends


def test_extends_merges_nested_sections_child_wins(tmp_path, write_config, monkeypatch):
    write_config(
        {
            "env": {"id": "Pendulum-v1", "max_episode_steps": 50},
            "agent": {"name": "sac", "kwargs": {"learning_starts": 10, "gamma": 0.9}},
            "train": {"total_steps": 500, "eval_every": 100, "progress": False},
            "seed": 7,
        },
        "base.yaml",
    )
    write_config(
        {
            "extends": "../base.yaml",
            "agent": {"kwargs": {"gamma": 0.8}},
            "train": {"total_steps": 1000},
        },
        "mid/middle.yaml",
    )
    child = write_config(
        {"extends": "middle.yaml", "seed": 8, "agent": {"net_arch": [16]}}, "mid/child.yaml"
    )
    monkeypatch.chdir(
        tmp_path / "mid"
    )  # extends paths are relative to the including file, not the cwd
    config = load_config(child, ["train.eval_every=50"])
    assert config.env.max_episode_steps == 50
    assert config.agent.kwargs == {"learning_starts": 10, "gamma": 0.8}
    assert config.agent.net_arch == [16]
    assert (config.train.total_steps, config.train.eval_every, config.train.progress) == (
        1000,
        50,
        False,
    )
    assert config.seed == 8


def test_extends_list_values_are_replaced_not_appended(write_config):
    write_config(
        {"env": {"id": "Pendulum-v1"}, "agent": {"name": "sac", "net_arch": [64, 64, 64]}},
        "base.yaml",
    )
    child = write_config({"extends": "base.yaml", "agent": {"net_arch": [8]}}, "child.yaml")
    assert load_config(child).agent.net_arch == [8]


# ---------------------------------------------------------------------------------------------
# the resolved config


def test_defaults_and_data_argument():
    config = load_config(None, data={"env": {"id": "CartPole-v1"}, "agent": {"name": "ppo"}})
    assert config.train.total_steps == 10_000
    assert config.env.n_envs == 1 and config.seed == 0 and config.attack is None
    with pytest.raises(ConfigError, match=r"^config: key 'agent' is required"):
        load_config(None, data={"env": {"id": "CartPole-v1"}})


def test_dump_config_loads_back_equal(write_config, base_config, tmp_path):
    data = _with(
        base_config,
        "attack",
        {
            "attacks": [
                {"name": "pgd", "label": "pgd10", "eps": [0.1], "settings": {"iterations": 3}}
            ],
            "eps": [0.02],
        },
    )
    config = load_config(
        write_config(data), ["seed=5", "agent.kwargs.gamma=0.95", "env.max_episode_steps=20"]
    )
    text = dump_config(config)
    assert "extends" not in text
    reloaded = load_config(write_config(text, "dumped.yaml"))
    assert isinstance(reloaded, ExperimentConfig)
    assert reloaded == config
    assert reloaded.attack.attacks[0].key == "pgd10"


def test_config_sections_reject_assignment_of_bad_values(write_config, base_config):
    config = load_config(write_config(base_config))
    with pytest.raises(ValueError):
        config.train.total_steps = 0
    assert config.train.total_steps == 100


CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SHIPPED = sorted(
    p for p in CONFIGS.rglob("*.yaml") if p.name != "base.yaml" and p.parent.name != "sweeps"
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_validates(path: Path, tmp_path: Path) -> None:
    # experiment configs (their extends chains resolved) and attack configs; the base.yaml
    # fragments hold no agent on purpose, and the sweeps are checked in test_sweep
    if path.parent.name == "attacks":
        try:
            assert load_attack_config(path).attacks
        except ConfigError as err:  # a learned adversary is a run trained from another config
            assert "adversary 'runs/" in str(err) and "no such run directory" in str(err)
        return
    config = load_config(path)  # validates every section and the agent's typed parameters
    resolved = tmp_path / "resolved.yaml"  # what a run directory keeps, and resumes from
    resolved.write_text(dump_config(config))
    assert load_config(resolved) == config
