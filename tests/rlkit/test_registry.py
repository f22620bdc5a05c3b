"""The name -> factory registries and the built-in catalog."""

from __future__ import annotations

import sys

import pytest

from rlkit.catalog import is_gym_id
from rlkit.registry import (
    AGENTS,
    ATTACKS,
    ENVS,
    LOOPS,
    Registry,
    UnknownNameError,
    close_matches,
    resolve,
    unknown_name_message,
)


def make_registry() -> Registry:
    registry = Registry("widget")
    registry.register("beta", dict, "second")
    registry.register("alpha", list, "first", params=None, colour="red")
    return registry


def test_names_and_items_are_sorted():
    registry = make_registry()
    assert registry.names() == ["alpha", "beta"]
    assert [name for name, _ in registry.items()] == ["alpha", "beta"]
    assert "alpha" in registry and "gamma" not in registry
    entry = registry.get("alpha")
    assert (entry.description, entry.extra) == ("first", {"colour": "red"})
    assert registry.get("beta").extra == {}


def test_build_calls_the_factory():
    registry = make_registry()
    assert registry.get("beta").build(a=1) == {"a": 1}
    assert registry.get("alpha").build((1, 2)) == [1, 2]


def test_unknown_name_suggests_close_match():
    registry = make_registry()
    with pytest.raises(UnknownNameError) as info:
        registry.get("alpah")
    err = info.value
    assert isinstance(err, KeyError)
    assert (err.kind, err.name, err.allowed) == ("widget", "alpah", ["alpha", "beta"])
    assert str(err) == "unknown widget 'alpah' (did you mean 'alpha'?); allowed: alpha, beta"


def test_unknown_name_without_close_match_lists_allowed():
    assert (
        unknown_name_message("agent", "zzz", ["sac", "ppo"])
        == "unknown agent 'zzz'; allowed: ppo, sac"
    )
    assert close_matches("sacc", ["sac", "ppo", "td3"]) == ["sac"]
    assert close_matches("xyz", ["sac", "ppo"]) == []


def test_double_registration_is_rejected():
    registry = make_registry()
    with pytest.raises(ValueError, match="widget 'alpha' is already registered"):
        registry.register("alpha", set, "again")
    assert registry.get("alpha").factory is list


def test_string_factories_are_imported_lazily(tmp_path, monkeypatch):
    module = "rlkit_test_lazy_factory_mod"
    (tmp_path / f"{module}.py").write_text(
        "def make(x=1):\n    return ('made', x)\n\nclass Params:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    registry = Registry("env")
    registry.register("lazy", f"{module}:make", "lazy one", params=f"{module}:Params")
    registry.register("broken", "rlkit_no_such_module_xyz:make", "never imported unless built")
    assert registry.names() == ["broken", "lazy"]
    assert module not in sys.modules, "registering and listing must not import the factory"
    assert registry.get("lazy").build(x=5) == ("made", 5)
    assert module in sys.modules
    assert registry.get("lazy").params_model().__name__ == "Params"
    with pytest.raises(ModuleNotFoundError):
        registry.get("broken").build()


def test_resolve_dotted_attribute_and_passthrough():
    import os.path

    assert resolve("os.path:join") is os.path.join
    assert resolve("collections:OrderedDict.fromkeys")(["a"]) == {"a": None}
    marker = object()
    assert resolve(marker) is marker


def test_builtin_catalog():
    assert {"sac", "td3", "ddpg", "ppo", "a2c", "drqv2"} <= set(AGENTS.names())
    sac = AGENTS.get("sac").extra
    assert (sac["loop"], sac["algo"], sac["action_spaces"]) == ("sb3", "SAC", ("Box",))
    drq = AGENTS.get("drqv2").extra
    assert (drq["loop"], drq["data"], drq["action_spaces"]) == ("online", "replay", ("Box",))
    assert set(LOOPS.names()) == {"online", "sb3", "offline", "atla"}
    atla = AGENTS.get("atla").extra
    assert atla["loop"] == "atla" and "Discrete" in atla["action_spaces"]
    assert {"adversary", "citylearn"} <= set(ENVS.names()) and "learned" in ATTACKS.names()
    odice = AGENTS.get("odice").extra
    assert (odice["loop"], odice["data"]) == ("offline", "offline")
    assert "grid" in ENVS.names()
    assert {"bifurcation", "fgsm", "pgd", "random"} <= set(ATTACKS.names())
    assert is_gym_id("Pendulum-v1") and not is_gym_id("Pendulum-v9")


def test_agent_params_are_typed_from_signatures():
    sac = AGENTS.get("sac").params_model()
    assert {"learning_starts", "batch_size", "gamma"} <= set(sac.model_fields)
    assert not {"self", "policy", "env", "device", "seed"} & set(sac.model_fields)
    assert sac.model_fields["learning_starts"].default == 100
    assert "before learning starts" in sac.model_fields["learning_starts"].description
    with pytest.raises(ValueError, match="learning_starts"):
        sac.model_validate({"learning_starts": "soon"})
    drq = AGENTS.get("drqv2").params_model()
    assert {"nstep", "batch_size", "stddev_schedule", "hidden_dim", "lr"} <= set(drq.model_fields)
    assert "observation_space" not in drq.model_fields
    assert drq.model_fields["nstep"].default == 3
    with pytest.raises(ValueError, match="batchsize"):
        drq.model_validate({"batchsize": 3})


def test_import_rlkit_registers_everything_in_a_fresh_interpreter():
    """No import-order dependence: `import rlkit.envs` alone makes the grid env and gym id work."""
    import subprocess

    code = (
        "from rlkit.envs import make_env\n"
        "from rlkit.config import EnvConfig\n"
        "import gymnasium as gym\n"
        "env = make_env(EnvConfig(id='grid', kwargs={'episode_days': 1}))\n"
        "print(env.observation_space.shape, "
        "gym.make('rlkit/GridBattery-v0').observation_space.shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "(54,) (54,)"


def test_import_rlkit_is_light():
    import subprocess

    code = (
        "import sys, rlkit; "
        "print(sorted(m for m in ('torch', 'pandapower', 'stable_baselines3') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
