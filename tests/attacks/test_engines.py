"""The engine interface: autograd, compiled (torch.compile) and MLP engines agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rlkit.attacks import (
    AUTO_MLP_MAX_BATCH,
    AttackBudget,
    CompileUnavailable,
    Engine,
    make_attack,
)
from rlkit.attacks import engines as engines_mod
from rlkit.attacks.fastgrad import numba_available


def sac_like(act: type[nn.Module], seed: int, n_in: int = 31, hidden: int = 64) -> nn.Sequential:
    """A float32 MLP shaped like an SB3 SAC actor's mean (n_in -> hidden -> hidden -> 2)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(n_in, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 2)
    )


class PixelPolicy(nn.Module):
    """A tiny CNN on 3x16x16 frames: two conv layers and a linear head."""

    def __init__(self, n_out: int = 3) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * 3 * 3, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x / 255.0))


class MoEPolicy(nn.Module):
    """A mixture of two expert MLPs weighted by a softmax gate."""

    def __init__(self, n_in: int = 6, n_out: int = 2) -> None:
        super().__init__()
        self.gate = nn.Linear(n_in, 2)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(n_in, 8), nn.Tanh(), nn.Linear(8, n_out)) for _ in range(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.gate(x), dim=-1)
        outs = torch.stack([expert(x) for expert in self.experts], dim=1)  # (B, 2, n_out)
        return (weights.unsqueeze(-1) * outs).sum(dim=1)


# ----------------------------------------------------------------------------- the interface
def test_engines_implement_the_protocol() -> None:
    attack = make_attack("pgd", sac_like(nn.ReLU, 0), AttackBudget(0.1))
    assert set(attack.engines) == {"autograd", "compiled", "mlp"}
    for name, engine in attack.engines.items():
        assert isinstance(engine, Engine) and engine.name == name


def test_auto_rule() -> None:
    policy = sac_like(nn.ReLU, 0, n_in=4, hidden=8)
    attack = make_attack("bifurcation", policy, AttackBudget(0.1), iterations=2)
    attack(torch.rand(AUTO_MLP_MAX_BATCH, 4))
    assert attack.engine_stats["mlp_calls"] == 1
    attack(torch.rand(AUTO_MLP_MAX_BATCH + 1, 4))
    assert attack.engine_stats["autograd_calls"] == 1
    cnn = make_attack("pgd", PixelPolicy(), AttackBudget(2.0), action_kind="discrete", iterations=2)
    cnn(torch.rand(2, 3, 16, 16) * 255)
    assert cnn.engine_stats == {**cnn.engine_stats, "autograd_calls": 1, "compiled_calls": 0}


# ----------------------------------------------------------------------------- the delta=0 bug
@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh])
@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_distance_loss_without_random_start_stays_at_the_clean_point(
    act: type[nn.Module], loss: str
) -> None:
    # The distance from the clean action has a zero gradient at delta = 0.  The MLP engine used
    # to take the clean action from torch and the iterate from numpy: the 1e-7 difference made
    # the sign of that "zero" gradient noise, and most samples went to the full budget.
    policy = sac_like(act, 1)
    obs = torch.rand(200, 31, generator=torch.Generator().manual_seed(0))
    budget = AttackBudget(0.05, low=0.0, high=1.0)
    outs = {}
    for engine in ("autograd", "mlp"):
        for name in ("pgd", "fgsm"):
            kw = {"iterations": 20, "decay_every": 5} if name == "pgd" else {}
            attack = make_attack(
                name, policy, budget, engine=engine, loss=loss, random_start=False, **kw
            )
            outs[engine, name] = attack(obs)
            assert attack.engine_stats[f"{engine}_calls"] == 1
    if loss == "mse" and numba_available():  # quadratic: numba kernel for batches up to 8
        attack = make_attack(
            "pgd", policy, budget, engine="mlp", random_start=False, iterations=20, decay_every=5
        )
        attack.engines["mlp"].backend = "numba"
        outs["mlp", "numba"] = torch.cat([attack(chunk) for chunk in obs.split(8)])
    for key, out in outs.items():
        assert torch.equal(out, obs), key  # every sample stays put, on every engine


def test_distance_loss_mlp_engine_equals_autograd_on_sb3_sac() -> None:
    gym = pytest.importorskip("gymnasium")
    from rlkit.agents.sb3 import SB3Agent
    from rlkit.config import AgentConfig

    space = gym.spaces.Box(0.0, 1.0, (31,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    config = AgentConfig(name="sac", net_arch=[64, 64], kwargs={"buffer_size": 100})
    view = SB3Agent("SAC", config, spaces=(space, act_space), seed=0).policy_view()
    obs = torch.rand(64, 31, generator=torch.Generator().manual_seed(1))
    budget = AttackBudget(0.05, low=0.0, high=1.0)
    kw = {"random_start": False, "iterations": 10, "decay_every": 3, "reference": "mean"}
    mlp = make_attack("pgd", view, budget, engine="mlp", **kw)
    auto = make_attack("pgd", view, budget, engine="autograd", **kw)
    assert torch.equal(mlp(obs), obs) and torch.equal(auto(obs), obs)
    # the authors' reference, the squashed clean action, has a gradient there: both engines
    # take the same steps
    kw["reference"] = "squashed"
    mlp = make_attack("pgd", view, budget, engine="mlp", **kw)
    auto = make_attack("pgd", view, budget, engine="autograd", **kw)
    out = mlp(obs)
    assert not torch.equal(out, obs) and torch.equal(out, auto(obs))


# ----------------------------------------------------------------------------- compiled
def compiled_and_autograd(
    name: str, policy: nn.Module, obs: torch.Tensor, budget: AttackBudget, **kw: object
) -> tuple[torch.Tensor, ...]:
    """(compiled, autograd) perturbations by equally seeded attacks."""
    fast = make_attack(name, policy, budget, engine="compiled", seed=0, **kw)
    slow = make_attack(name, policy, budget, engine="autograd", seed=0, **kw)
    out = fast(obs, t=3), slow(obs, t=3)
    assert fast.engine_stats["compiled_calls"] == 1 and slow.engine_stats["autograd_calls"] == 1
    return out


@pytest.mark.slow
def test_compiled_cnn_pixel_policy_equals_autograd() -> None:
    torch.manual_seed(0)
    policy = PixelPolicy().double()
    gen = torch.Generator().manual_seed(0)
    obs = torch.randint(0, 256, (4, 3, 16, 16), generator=gen).double()
    channel_mask = np.array([1.0, 0.0, 1.0]).reshape(3, 1, 1)
    for budget in (
        AttackBudget(4.0, mask=channel_mask, low=0, high=255),
        AttackBudget(40.0, norm="l2", low=0, high=255),
    ):
        for kind in ("discrete", "continuous"):
            fast, slow = compiled_and_autograd(
                "pgd",
                policy,
                obs,
                budget,
                action_kind=kind,
                iterations=8,
                decay_every=3,
                random_start=None,  # auto: random where the distance starts at its minimum
            )
            torch.testing.assert_close(fast, slow, rtol=0, atol=1e-9)
            assert not torch.equal(fast, obs)
    # another batch size reuses the compiled function (dynamic batch dimension)
    fast, slow = compiled_and_autograd(
        "bifurcation",
        policy,
        obs[:3],
        AttackBudget(4.0),
        action_kind="discrete",
        iterations=5,
        decay_every=2,
    )
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_compiled_moe_policy_equals_autograd() -> None:
    torch.manual_seed(1)
    policy = MoEPolicy().double()
    obs = torch.rand(5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    budget = AttackBudget(0.1, low=0.0, high=1.0)
    for name, kw in (
        ("pgd", {"random_start": True}),
        ("bifurcation", {}),
        ("targeted_pgd", {"target": 0.5}),
        ("mad", {}),
    ):
        fast, slow = compiled_and_autograd(
            name, policy, obs, budget, iterations=6, decay_every=2, **kw
        )
        torch.testing.assert_close(fast, slow, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_compiled_distance_loss_stays_at_the_clean_point() -> None:
    policy = sac_like(nn.Tanh, 2, n_in=8, hidden=16)
    obs = torch.rand(32, 8, generator=torch.Generator().manual_seed(3))
    attack = make_attack(
        "pgd", policy, AttackBudget(0.05), engine="compiled", random_start=False, iterations=4
    )
    assert torch.equal(attack(obs), obs)


def test_compile_unavailable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = sac_like(nn.ReLU, 0, n_in=4, hidden=8)
    monkeypatch.setattr(engines_mod, "compile_unavailable", lambda: "no compiler here")
    import rlkit.attacks.attacks as attacks_mod

    monkeypatch.setattr(attacks_mod, "compile_unavailable", lambda: "no compiler here")
    with pytest.raises(CompileUnavailable, match="no compiler here.*engine='autograd'"):
        make_attack("pgd", policy, AttackBudget(0.1), engine="compiled")


def test_compile_failure_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_compile(fn: object, **kwargs: object) -> object:
        def run(*args: object) -> object:
            raise RuntimeError("InductorError: C++ compile failed\nlong log")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    policy = sac_like(nn.ReLU, 0, n_in=4, hidden=8)
    attack = make_attack("pgd", policy, AttackBudget(0.1), engine="compiled", iterations=2)
    with pytest.raises(CompileUnavailable, match="C\\+\\+ compile failed.*engine='autograd'"):
        attack(torch.rand(3, 4))


def test_compiled_reports_the_loss_errors_themselves() -> None:
    policy = sac_like(nn.ReLU, 0, n_in=4, hidden=8)[:-1]  # 8 logits
    attack = make_attack(
        "targeted_pgd",
        policy,
        AttackBudget(0.1),
        engine="compiled",
        action_kind="discrete",
        target=9,
        iterations=2,
    )
    with pytest.raises(ValueError, match="bin indices"):
        attack(torch.rand(3, 4))
    one = make_attack(
        "pgd",
        nn.Linear(4, 1),
        AttackBudget(0.1),
        engine="compiled",
        action_kind="discrete",
        iterations=2,
    )
    with pytest.raises(ValueError, match="at least 2 logits"):
        one(torch.rand(3, 4))
