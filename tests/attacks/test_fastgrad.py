"""The MLP (autograd-free) engine of the gradient attacks agrees with autograd."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from rlkit.agents.sb3 import SB3Agent
from rlkit.attacks import AttackBudget, attack_settings, make_attack
from rlkit.attacks.bifurcation import bifurcate_continuous, bifurcate_discrete
from rlkit.attacks.fastgrad import (
    ConstantGrad,
    ConstantGradCache,
    OrdinalGrad,
    PiecewiseGrad,
    TorchOutputGrad,
    choose_backend,
    compile_policy,
    fast_pgd,
    numba_available,
    output_grad_for,
    piecewise_table,
)
from rlkit.attacks.losses import (
    OutputLoss,
    action_distance,
    difference_of_logits,
    group_difference_logits,
)
from rlkit.attacks.optim import Optimiser
from rlkit.config import AgentConfig
from rlkit.policy import ObsNormalizer, PolicyView

N_IN = 6
BACKENDS = ["numpy", "numba"] if numba_available() else ["numpy"]


def mlp64(
    n_out: int, seed: int, act: type[nn.Module] = nn.ReLU, normalizer: bool = False
) -> nn.Sequential:
    """A random float64 MLP N_IN -> 16 -> 16 -> n_out (optionally behind an ObsNormalizer)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [
        nn.Linear(N_IN, 16),
        act(),
        nn.Linear(16, 16),
        act(),
        nn.Linear(16, n_out),
    ]
    if normalizer:
        rng = np.random.default_rng(seed)
        layers.insert(
            0, ObsNormalizer(rng.uniform(0.3, 0.7, N_IN), rng.uniform(0.01, 0.05, N_IN), clip=2.0)
        )
    return nn.Sequential(*layers).double()


def budgets() -> dict[str, AttackBudget]:
    """Budgets with masks, scales and bounds, linf and l2."""
    mask = np.array([1, 1, 0, 1, 1, 1.0])
    scale = np.array([1, 0.5, 1, 2, 0.1, 1.0])
    return {
        "linf": AttackBudget(0.05),
        "linf_masked_bounded": AttackBudget(0.08, mask=mask, scale=scale, low=0.0, high=1.0),
        "linf_feature_bounds": AttackBudget(0.2, low=np.full(N_IN, 0.1), high=np.full(N_IN, 0.8)),
        "l2_masked": AttackBudget(0.1, norm="l2", mask=mask, scale=scale, low=0.0, high=1.0),
    }


CASES = [
    ("fgsm", "continuous", {"loss": "mse"}),
    ("fgsm", "discrete", {}),
    ("pgd", "continuous", {"loss": "mse"}),
    ("pgd", "continuous", {"loss": "mae"}),
    ("pgd", "continuous", {"loss": "huber"}),
    ("pgd", "discrete", {}),
    ("targeted_pgd", "continuous", {"target": 0.3, "loss": "mse"}),
    (
        "targeted_pgd",
        "continuous",
        {
            "target": lambda t: torch.stack([t % 3 - 1.0, -(t % 2) * 0.5], -1).double(),
            "loss": "huber",
        },
    ),
    ("targeted_pgd", "discrete", {"target": 2}),
    ("pgd", "continuous", {"loss": "mse", "reference": "mean", "random_start": None}),
    ("pgd", "discrete", {"other_logit": "neg_inf"}),
    ("bifurcation", "continuous", {}),
    ("bifurcation", "continuous", {"other_logit": "neg_inf"}),
    ("bifurcation", "continuous", {"m1": 2.0, "b1": -1.0, "m2": -2.0, "b2": 1.0}),
    ("bifurcation", "continuous", {"m1": 0.3, "b1": 0.1, "m2": -0.7, "b2": -0.05}),
    ("bifurcation", "continuous", {"m1": 1.0, "b1": 0.0, "m2": 0.5, "b2": 0.2}),
    ("bifurcation", "discrete", {}),
    ("bifurcation", "discrete", {"other_logit": "neg_inf"}),
    ("bifurcation", "discrete", {"split": 1}),
    ("bifurcation_toggle", "continuous", {}),
    ("bifurcation_toggle", "continuous", {"toggle_start": "toward", "other_logit": "neg_inf"}),
    ("bifurcation_toggle", "discrete", {}),
    ("bifurcation_toggle", "discrete", {"toggle_start": "toward"}),
    ("mad", "continuous", {"log_std": -1.0}),
    ("mad", "discrete", {}),
]
#: attacks whose continuous loss is affine or piecewise affine (GDL) or quadratic (MSE,
#: Gaussian KL) in the policy output: the ones the numba kernel serves
AFFINE = {"bifurcation", "bifurcation_toggle", "mad"}


def numba_serves(name: str, kind: str, extra: dict, norm: str = "linf") -> bool:
    """Whether the numba kernel serves attack ``name`` (linf budgets; losses of degree 1 or 2
    or piecewise affine)."""
    if norm != "linf" or kind != "continuous" or name == "fgsm":
        return False
    return name in AFFINE or extra.get("loss", "mse") == "mse"


def run_both(
    name: str,
    kind: str,
    extra: dict,
    budget: AttackBudget,
    seed: int,
    backend: str = "auto",
    **more: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(MLP engine, autograd) perturbations of one random batch by equally seeded attacks.

    ``backend="numba"`` applies where the kernel can serve the call (linf budget, a loss affine
    or quadratic in the output); elsewhere the MLP engine's own choice ("auto").
    """
    policy = mlp64(5 if kind == "discrete" else 2, seed, normalizer=seed % 2 == 1)
    obs = torch.from_numpy(np.random.default_rng(seed).uniform(0, 1, (7, N_IN)))
    t = torch.arange(7) + seed
    settings_ = {"action_kind": kind, **extra, **more}
    if "iterations" in attack_settings(name):
        settings_.setdefault("iterations", 12)
        settings_.setdefault("decay_every", 4)
    if "seed" in attack_settings(name):
        settings_["seed"] = seed
    fast = make_attack(name, policy, budget, engine="mlp", **settings_)
    numba_ok = numba_serves(name, kind, extra, budget.norm)
    fast.engines["mlp"].backend = backend if numba_ok else "auto"
    slow = make_attack(name, policy, budget, engine="autograd", **settings_)
    out_fast, out_slow = fast(obs, t=t), slow(obs, t=t)
    assert fast.engine_stats["mlp_calls"] == 1 and slow.engine_stats["autograd_calls"] == 1
    return out_fast, out_slow


# ----------------------------------------------------------------------------- agreement
@pytest.mark.parametrize(
    ("name", "kind", "extra", "backend"),
    [
        (*case, backend)
        for case in CASES
        for backend in BACKENDS
        if backend == "numpy" or numba_serves(*case)
    ],
)
def test_mlp_matches_autograd(name: str, kind: str, extra: dict, backend: str) -> None:
    for i, (label, budget) in enumerate(budgets().items()):
        for seed in (i, i + 11):
            fast, slow = run_both(name, kind, extra, budget, seed, backend)
            assert fast.dtype == slow.dtype == torch.float64
            if budget.norm == "linf":  # same elementwise operations: identical iterates
                assert torch.equal(fast, slow), (label, seed)
            else:  # norms are summed in another order
                torch.testing.assert_close(fast, slow, rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_clip_and_start_settings(backend: str) -> None:
    budget = budgets()["linf_masked_bounded"]
    for extra in (
        {"clip": "none"},
        {"clip": "every_step"},
        {"clip": "every_step", "random_start": True},
        {"random_start": True},
        {"decay_schedule": "standard", "step_size": 0.02},
    ):
        for name, kind in (
            ("bifurcation", "continuous"),
            ("bifurcation", "discrete"),
            ("pgd", "continuous"),
            ("fgsm", "continuous"),
        ):
            more = {} if name == "fgsm" else {"iterations": 30, "decay_every": 7}
            ok = {k: v for k, v in extra.items() if k in attack_settings(name)}
            fast, slow = run_both(name, kind, ok, budget, 3, backend, **more)
            assert torch.equal(fast, slow), (name, kind, extra)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    eps=st.floats(0.001, 0.3),
    kind=st.sampled_from(["continuous", "discrete"]),
    toggle=st.booleans(),
)
def test_bifurcation_property(seed: int, eps: float, kind: str, toggle: bool) -> None:
    budget = AttackBudget(eps, scale=np.linspace(0.1, 1, N_IN), low=0.0, high=1.0)
    name = "bifurcation_toggle" if toggle else "bifurcation"
    fast, slow = run_both(name, kind, {}, budget, seed, iterations=20, decay_every=5)
    assert torch.equal(fast, slow)


# ----------------------------------------------------------------------------- gradients, ties
def engine_grad(policy: nn.Module, x: torch.Tensor, out_grad: object) -> torch.Tensor:
    """The MLP engine's input gradient of ``policy`` at ``x``."""
    net = compile_policy(policy).net()
    return torch.from_numpy(net.input_gradient(x.numpy(), out_grad))


def torch_grad(fn: object, *args: torch.Tensor) -> TorchOutputGrad:
    """The output gradient of the torch loss ``fn(z, *args)`` (what the MLP engine uses)."""
    return TorchOutputGrad(OutputLoss(fn, lambda clean: args), args)


def autograd_grad(policy: nn.Module, x: torch.Tensor, loss: object) -> torch.Tensor:
    """Autograd's input gradient of ``loss(policy(x)).sum()``."""
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(policy(x)).sum(), x)
    return grad


def tied_policy() -> nn.Sequential:
    """Logits with exact ties: output rows 0=1 and 3=4=5 are copies."""
    net = mlp64(6, 5)
    with torch.no_grad():
        last = net[-1]
        last.weight[1], last.bias[1] = last.weight[0], last.bias[0]
        for i in (4, 5):
            last.weight[i], last.bias[i] = last.weight[3], last.bias[3]
    return net


def test_amax_ties_split_evenly_like_torch() -> None:
    net = tied_policy()
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (20, N_IN)))
    z = net(x).detach()
    for split in (2, 3):
        label = bifurcate_discrete(z, split).argmax(-1)
        for sign in (1.0, -1.0):

            def gdl(
                out: torch.Tensor, lab: torch.Tensor, s: int = split, g: float = sign
            ) -> torch.Tensor:
                return g * group_difference_logits(bifurcate_discrete(out, s), lab)

            ours = engine_grad(net, x, torch_grad(gdl, label))
            ref = autograd_grad(net, x, lambda out, f=gdl, lab=label: f(out, lab))
            torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    for label in (torch.zeros(20, dtype=torch.long), torch.full((20,), 2)):
        ours = engine_grad(net, x, torch_grad(difference_of_logits, label))
        ref = autograd_grad(net, x, lambda out, lab=label: difference_of_logits(out, lab))
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)


def test_pgd_with_tied_logits() -> None:
    net = tied_policy()  # the ties hold at every input, so every iteration meets them
    x = torch.from_numpy(np.random.default_rng(4).uniform(0, 1, (5, N_IN)))
    budget = AttackBudget(0.05, low=0.0, high=1.0)
    for name, extra in (
        ("bifurcation", {"split": 3}),
        ("bifurcation_toggle", {"split": 2}),
        ("pgd", {}),
        ("targeted_pgd", {"target": 4}),
    ):
        kw = {"action_kind": "discrete", "iterations": 20, "decay_every": 5, **extra}
        fast = make_attack(name, net, budget, engine="mlp", **kw)
        slow = make_attack(name, net, budget, engine="autograd", **kw)
        assert torch.equal(fast(x, t=3), slow(x, t=3)), name


def test_single_logit_is_rejected_like_autograd() -> None:
    net = mlp64(1, 0)
    for engine in ("mlp", "autograd"):
        attack = make_attack(
            "pgd", net, AttackBudget(0.1), action_kind="discrete", engine=engine, iterations=2
        )
        with pytest.raises(ValueError, match="at least 2 logits"):
            attack(torch.rand(2, N_IN, dtype=torch.float64))


def test_relu_at_zero_and_clamp_boundary_like_torch() -> None:
    lin = nn.Linear(2, 3).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -1.0], [0.5, 0.25], [-1.0, 2.0]]))
        lin.bias.zero_()
    norm = ObsNormalizer(np.zeros(2), np.ones(2), clip=1.0).double()
    with torch.no_grad():
        norm.std.fill_(2.0)  # u = x / 2: x = +-2 sits on the clamp boundary, |x| > 2 outside
    net = nn.Sequential(norm, lin, nn.ReLU(), nn.Linear(3, 1).double())
    x = torch.tensor(
        [[0.7, 0.7], [2.0, -2.0], [2.5, 0.3], [-2.0, 1.0], [0.0, 0.0]], dtype=torch.float64
    )  # row 0: the first ReLU input is exactly 0
    target = torch.zeros(5, 1, dtype=torch.float64) + 0.1
    for kind in ("mse", "mae", "huber"):

        def dist(out: torch.Tensor, ref: torch.Tensor, k: str = kind) -> torch.Tensor:
            return action_distance(out, ref, k)

        ours = engine_grad(net, x, torch_grad(dist, target))
        ref = autograd_grad(net, x, lambda out, f=dist: f(out, target))
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    ours = engine_grad(net, x, ConstantGrad(np.ones((5, 1))))
    ref = autograd_grad(net, x, lambda out: out[:, 0])
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)
    assert ref[2, 0] == 0  # clamped feature: no gradient


def test_tanh_and_continuous_groups() -> None:
    net = mlp64(3, 4, act=nn.Tanh, normalizer=True)
    x = torch.from_numpy(np.random.default_rng(1).uniform(0, 1, (9, N_IN)))
    z = net(x).detach()
    label = bifurcate_continuous(z, 2.0, -1.0, -2.0, 1.0).argmax(-1)

    def gdl(out: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        groups = bifurcate_continuous(out, 2.0, -1.0, -2.0, 1.0)
        return group_difference_logits(groups, lab, "neg_inf")

    out_grad = output_grad_for(OutputLoss(gdl, lambda clean: (label,), degree=1), z, (label,))
    assert isinstance(out_grad, ConstantGrad)
    np.testing.assert_array_equal(out_grad.grad, np.where(label.numpy() == 0, -4.0, 4.0))
    ours = engine_grad(net, x, out_grad)
    ref = autograd_grad(net, x, lambda out: gdl(out, label))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)


def test_declared_degrees_hold() -> None:
    # the MLP engine takes the output gradient (degree 1) or gradient and Hessian (degree 2) of
    # a loss from torch once per call: check that the declared degree is true
    rng = np.random.default_rng(5)
    policy = mlp64(3, 0)
    obs = torch.from_numpy(rng.uniform(0, 1, (6, N_IN)))
    clean = policy(obs).detach()
    cases = [
        ("bifurcation", {"other_logit": "neg_inf"}, 1),
        ("bifurcation", {"m1": 2.0, "b1": -1.0, "m2": -0.5, "other_logit": "neg_inf"}, 1),
        ("bifurcation_toggle", {"b2": 0.3, "other_logit": "neg_inf"}, 1),
        ("pgd", {}, 2),
        ("targeted_pgd", {"target": np.array([0.5, -1.0, 2.0])}, 2),
        ("mad", {"log_std": -0.7}, 2),
    ]
    for name, extra, degree in cases:
        loss = make_attack(name, policy, AttackBudget(0.1), **extra).loss(torch.arange(6))
        assert loss.degree == degree, name
        args = loss.prepare(clean)
        g0 = loss.output_gradient(clean, args)
        hessian = loss.output_hessian(clean, args)
        if degree == 1:
            assert torch.all(hessian == 0)
        for scale in (0.1, 3.0, 50.0):
            z = clean + scale * torch.from_numpy(rng.normal(size=clean.shape))
            expected = g0 + torch.einsum("bjl,bl->bj", hessian, z - clean)
            torch.testing.assert_close(
                loss.output_gradient(z, args), expected, rtol=1e-12, atol=1e-12
            )
    for name, extra in (
        ("pgd", {"loss": "huber"}),
        ("pgd", {"loss": "mae"}),
        ("targeted_pgd", {"target": 0.0, "loss": "huber"}),
    ):
        assert make_attack(name, policy, AttackBudget(0.1), **extra).loss(None).degree is None
    for name in ("pgd", "bifurcation", "mad"):
        discrete = make_attack(name, mlp64(4, 0), AttackBudget(0.1), action_kind="discrete")
        assert discrete.loss(None).degree is None, name
        assert discrete.loss(None).kinks is None, name


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"m1": 2.0, "b1": -1.0, "m2": -2.0, "b2": 1.0},
        {"m1": 0.3, "b1": 0.1, "m2": -0.7, "b2": -0.05},
        {"m1": 1.0, "b1": 0.0, "m2": 0.5, "b2": 0.2},
        {"m1": 0.0, "b1": 0.4, "m2": -1.0, "b2": 0.0},
    ],
)
def test_declared_kinks_hold(extra: dict) -> None:
    # continuous GDL with the authors' zero mask, max(0, g_other) - g_own, is piecewise affine:
    # the MLP engine takes its output gradient below, at and above each kink from torch once
    # per call; check that this table gives torch's gradient anywhere
    rng = np.random.default_rng(6)
    policy = mlp64(3, 1)
    obs = torch.from_numpy(rng.uniform(0, 1, (40, N_IN)))
    clean = policy(obs).detach()
    for name in ("bifurcation", "bifurcation_toggle"):
        for sign_extra in ({}, {"toggle_start": "toward"} if name == "bifurcation_toggle" else {}):
            attack = make_attack(name, policy, AttackBudget(0.1), **extra, **sign_extra)
            loss = attack.loss(torch.arange(40))
            assert loss.degree is None and loss.kinks is not None
            args = loss.prepare(clean)
            table = PiecewiseGrad(piecewise_table(loss, clean, args).numpy())
            slope, offset = (t.numpy() for t in loss.kinks(*args))
            for scale in (0.05, 1.0, 10.0):
                z = clean + scale * torch.from_numpy(rng.normal(size=clean.shape))
                z[:5] = torch.from_numpy(
                    np.where(
                        slope[:5] != 0, -offset[:5] / np.where(slope[:5] == 0, 1, slope[:5]), 0.0
                    )
                )  # on the kinks
                np.testing.assert_array_equal(
                    table(z.numpy(), None), loss.output_gradient(z, args).numpy()
                )
    for name, extra_ in (("bifurcation", {"other_logit": "neg_inf"}), ("pgd", {})):
        assert make_attack(name, policy, AttackBudget(0.1), **extra_).loss(None).kinks is None


#: the attacks whose discrete losses are ordinal (with declared cells), and their settings
ORDINAL_ATTACKS = [
    ("pgd", {}),
    ("pgd", {"other_logit": "neg_inf"}),
    ("targeted_pgd", {"target": 2}),
    ("bifurcation", {}),
    ("bifurcation", {"split": 2, "other_logit": "neg_inf"}),
    ("bifurcation_toggle", {}),
    ("bifurcation_toggle", {"toggle_start": "toward"}),
]


@pytest.mark.parametrize(("name", "extra"), ORDINAL_ATTACKS)
def test_declared_ordinal_holds(name: str, extra: dict) -> None:
    # the MLP engine asks torch for an ordinal loss's output gradient once per order of the
    # outputs and 0 it meets: the cached gradients must be torch's at every later point, also
    # on ties, on zeros and on the way back to an order met before
    rng = np.random.default_rng(7)
    policy = mlp64(5, 2)
    obs = torch.from_numpy(rng.uniform(0, 1, (12, N_IN)))
    clean = policy(obs).detach()
    loss = make_attack(name, policy, AttackBudget(0.1), action_kind="discrete", **extra).loss(
        torch.arange(12)
    )
    assert loss.ordinal
    args = loss.prepare(clean)
    grad = OrdinalGrad(loss, args)
    points = []
    for scale in (0.01, 0.3, 3.0):
        z = clean + scale * torch.from_numpy(rng.normal(size=clean.shape))
        z[:3, 1] = z[:3, 0]  # ties
        z[3:5, 2] = 0.0  # on zero
        z[5:7] = z[5:7].abs().neg()  # every logit negative: the zero mask decides
        points += [z, z.clone()]
    points.append(points[0])
    for z in points:
        rows = np.arange(0, 12, 2)
        np.testing.assert_array_equal(grad(z.numpy(), None), loss.output_gradient(z, args).numpy())
        sub = tuple(a[torch.from_numpy(rows)] for a in args)
        np.testing.assert_array_equal(
            grad(z[rows].numpy(), rows), loss.output_gradient(z[rows], sub).numpy()
        )
    assert 0 < len(grad._cells) < 12 * len(points)
    assert isinstance(output_grad_for(loss, clean, args), OrdinalGrad)
    big = clean.repeat(2, 1)  # above ORDINAL_MAX_BATCH: only declared cells are cheap enough
    big_args = tuple(torch.cat([a, a]) for a in args)
    assert isinstance(output_grad_for(loss, big, big_args), OrdinalGrad)
    by_order = dataclasses.replace(loss, cells=None)
    assert isinstance(output_grad_for(by_order, clean, args), OrdinalGrad)
    assert isinstance(output_grad_for(by_order, big, big_args), TorchOutputGrad)
    continuous = make_attack(name, mlp64(3, 0), AttackBudget(0.1), **extra)
    assert not continuous.loss(torch.arange(12)).ordinal


@pytest.mark.parametrize(("name", "extra"), ORDINAL_ATTACKS)
def test_declared_cells_are_exact_and_coarser_than_the_order(name: str, extra: dict) -> None:
    # OutputLoss.cells (the tie sets of the maxima a loss takes) must name a partition on which
    # torch's output gradient is constant: logits drawn from a few integers tie and hit zero
    # often, so every kind of cell is met many times
    rng = np.random.default_rng(3)
    policy = mlp64(6, 2)
    clean = policy(torch.from_numpy(rng.uniform(0, 1, (8, N_IN)))).detach()
    loss = make_attack(name, policy, AttackBudget(0.1), action_kind="discrete", **extra).loss(
        torch.arange(8)
    )
    assert loss.ordinal and loss.cells is not None
    args = loss.prepare(clean)
    seen: dict[tuple[int, bytes], np.ndarray] = {}
    orders: set[tuple[int, bytes]] = set()
    for _ in range(200):
        z = torch.from_numpy(rng.integers(-2, 3, size=clean.shape).astype(np.float64))
        grads = loss.output_gradient(z, args).numpy()
        codes = loss.cells(z.numpy(), *(a.numpy() for a in args)).reshape(len(z), -1)
        for b in range(len(z)):
            key = (b, codes[b].tobytes())
            np.testing.assert_array_equal(seen.setdefault(key, grads[b]), grads[b])
            orders.add((b, np.argsort(z[b].numpy(), kind="stable").tobytes()))
    assert len(seen) < len(orders) / 2


@pytest.mark.parametrize("size", [3, 4096])
def test_ordinal_cache_is_torchs_with_mixed_rows_and_when_it_empties(size: int) -> None:
    # a multi-row call mixing finite rows (looked up) and non-finite ones (never cached), row
    # subsets, and a cache so small that it empties on the way: every answer is torch's
    rng = np.random.default_rng(11)
    attack = make_attack("bifurcation", mlp64(6, 3), AttackBudget(0.1), action_kind="discrete")
    loss = attack.loss(None)
    clean = torch.from_numpy(rng.normal(size=(5, 6)))
    args = loss.prepare(clean)
    grad = OrdinalGrad(loss, args, size=size)
    for i in range(12):
        z = torch.from_numpy(rng.integers(-2, 3, size=(5, 6)).astype(np.float64))
        z[i % 5, i % 6] = (np.inf, -np.inf, np.nan)[i % 3]
        rows = np.arange(5) if i % 2 else np.array([4, 1, 2])
        sub = tuple(a[torch.from_numpy(rows)] for a in args)
        got = grad(z[rows].numpy(), None if i % 2 else rows)
        np.testing.assert_array_equal(got, loss.output_gradient(z[rows], sub).numpy())
        assert len(grad._cells) <= max(size, len(rows))  # emptied when a call overflows it
    point = clean[:1].numpy()
    grad(point, np.array([0]))
    assert not grad(point, np.array([0])).flags.writeable  # a cached row, shared: read-only


@pytest.mark.parametrize(
    ("name", "extra", "clean", "later"),
    [
        # -inf ties with neg_inf's fill: the order key of [-1, 5] and [-inf, 5] is the same
        ("pgd", {"other_logit": "neg_inf"}, [-1.0, 5.0], [-np.inf, 5.0]),
        (
            "bifurcation",
            {"other_logit": "neg_inf"},
            [3.0, -2.0, -5.0, -5.0],
            [3, -2, -np.inf, -np.inf],
        ),
        # NaN sorts last and ties with nothing: [1, 2, 3] and [1, 2, nan] share a key
        ("pgd", {}, [1.0, 2.0, 3.0], [1.0, 2.0, np.nan]),
    ],
)
def test_ordinal_gradient_with_non_finite_outputs_is_torchs(
    name: str, extra: dict, clean: list[float], later: list[float]
) -> None:
    attack = make_attack(
        name, mlp64(len(clean), 0), AttackBudget(0.1), action_kind="discrete", **extra
    )
    loss = attack.loss(None)
    first = torch.tensor([clean], dtype=torch.float64)
    args = loss.prepare(first)
    grad = OrdinalGrad(loss, args)
    for z in (first, torch.tensor([later], dtype=torch.float64), first):
        np.testing.assert_array_equal(grad(z.numpy(), None), loss.output_gradient(z, args).numpy())


# ----------------------------------------------------------------------------- SB3 policies
def sb3_view(algo: str, discrete: bool = False, **kwargs: object) -> PolicyView:
    """A small untrained SB3 policy view on a Box(0, 1, (N_IN,)) space."""
    obs_space = gym.spaces.Box(0.0, 1.0, (N_IN,), np.float32)
    act_space = gym.spaces.Discrete(5) if discrete else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    extra = {"buffer_size": 100} if algo in ("SAC", "TD3") else {}
    config = AgentConfig(name=algo.lower(), net_arch=[16, 16], kwargs={**extra, **kwargs})
    return SB3Agent(algo, config, spaces=(obs_space, act_space), seed=0).policy_view()


@pytest.mark.parametrize(
    ("algo", "discrete", "ops"),
    [
        ("SAC", False, ["linear", "relu", "linear", "relu", "linear"]),
        ("TD3", False, ["linear", "relu", "linear", "relu", "linear"]),
        ("PPO", False, ["linear", "tanh", "linear", "tanh", "linear"]),
        ("PPO", True, ["linear", "tanh", "linear", "tanh", "linear"]),
    ],
)
def test_sb3_views_compile_and_match(algo: str, discrete: bool, ops: list[str]) -> None:
    view = sb3_view(algo, discrete)
    plan = compile_policy(view)
    assert plan is not None and repr(plan) == f"MLPPlan({ops})"
    x = torch.from_numpy(np.random.default_rng(2).uniform(0, 1, (16, N_IN)).astype(np.float32))
    z = view(x).detach()
    if discrete:
        out_grad = torch_grad(difference_of_logits, z.argmax(-1))
        loss = lambda out: difference_of_logits(out, z.argmax(-1))  # noqa: E731
    else:
        out_grad = torch_grad(lambda out, ref: action_distance(out, ref, "mse"), z + 0.5)
        loss = lambda out: action_distance(out, z + 0.5, "mse")  # noqa: E731
    torch.testing.assert_close(
        engine_grad(view, x, out_grad), autograd_grad(view, x, loss), rtol=1e-4, atol=1e-6
    )
    attack = make_attack("bifurcation", view, AttackBudget(0.05, low=0.0, high=1.0), iterations=10)
    assert attack.plan is not None
    attack(x)
    assert attack.engine_stats["mlp_calls"] == 1


def test_normalized_view_compiles() -> None:
    view = sb3_view("SAC")
    view.normalizer = ObsNormalizer(np.full(N_IN, 0.5), np.full(N_IN, 0.04))
    assert repr(compile_policy(view)).startswith("MLPPlan(['affine_clamp', 'linear'")
    x = torch.from_numpy(np.random.default_rng(3).uniform(0, 1, (8, N_IN)).astype(np.float32))
    ours = engine_grad(view, x, ConstantGrad(np.ones((8, 2))))
    ref = autograd_grad(view, x, lambda out: out.sum(-1))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


class Custom(nn.Module):
    """A module the engine does not know."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(N_IN, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) ** 2


class MyLinear(nn.Linear):
    """A Linear subclass (its forward could differ): not recognised."""


@pytest.mark.parametrize(
    ("policy", "runs"),
    [
        (nn.Sequential(nn.Linear(N_IN, 4), nn.LeakyReLU(), nn.Linear(4, 1)), True),
        (nn.Sequential(nn.Linear(N_IN, 4), nn.Dropout(0.1), nn.Linear(4, 1)), True),
        (nn.Sequential(nn.Flatten(0), nn.Linear(N_IN, 1)), False),
        (nn.Sequential(nn.ReLU()), False),
        (Custom(), True),
        (MyLinear(N_IN, 1), True),
        (lambda x: x.sum(-1, keepdim=True), True),
    ],
)
def test_unrecognised_policies_fall_back(policy: object, runs: bool) -> None:
    assert compile_policy(policy) is None
    budget = AttackBudget(0.1)
    if runs:
        attack = make_attack("pgd", policy, budget, iterations=2, random_start=True)
        attack(torch.rand(3, N_IN))
        assert attack.engine_stats["mlp_calls"] == 0
        assert attack.engine_stats["autograd_calls"] == 1
    with pytest.raises(ValueError, match="engine='mlp' needs a plain MLP"):
        make_attack("pgd", policy, budget, engine="mlp")


# ----------------------------------------------------------------------------- settings, API
def test_engine_setting() -> None:
    for name in ("fgsm", "pgd", "targeted_pgd", "bifurcation", "bifurcation_toggle", "mad"):
        assert attack_settings(name)["engine"] == "auto"
    assert "engine" not in attack_settings("random")
    policy = mlp64(2, 0)
    for bad in ("gpu", "fast"):
        with pytest.raises(ValueError, match="engine"):
            make_attack("pgd", policy, AttackBudget(0.1), engine=bad)
    mad = make_attack("mad", policy, AttackBudget(0.1), iterations=2)  # MAD runs on mlp too
    mad(torch.rand(2, N_IN, dtype=torch.float64))
    assert mad.engine_stats["mlp_calls"] == 1
    attack = make_attack("bifurcation", policy, AttackBudget(0.1), iterations=2)
    assert attack.plan is not None and attack.engine == "auto"
    assert make_attack("bifurcation", policy, AttackBudget(0.1), engine="autograd").plan is None


def test_mlp_needs_2d_cpu_batch() -> None:
    policy = nn.Sequential(nn.Flatten(), nn.Linear(N_IN, 2)).double()
    obs = torch.rand(3, 2, 3, dtype=torch.float64)
    auto = make_attack("bifurcation", policy, AttackBudget(0.1), iterations=2)
    auto(obs)
    assert auto.engine_stats["autograd_calls"] == 1
    fast = make_attack("bifurcation", policy, AttackBudget(0.1), iterations=2, engine="mlp")
    with pytest.raises(ValueError, match="2-D batch"):
        fast(obs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_changes_are_seen(backend: str) -> None:
    policy = mlp64(2, 7)
    obs = torch.from_numpy(np.random.default_rng(7).uniform(0, 1, (4, N_IN)))
    attack = make_attack("bifurcation", policy, AttackBudget(0.1), iterations=15, engine="mlp")
    attack.engines["mlp"].backend = backend
    attack(obs)
    with torch.no_grad():
        policy[0].weight.data.mul_(-1.0)  # .data bypasses torch's version counter
        policy[2].weight.numpy()[0, :] += 0.5
    fresh = make_attack("bifurcation", policy, AttackBudget(0.1), iterations=15, engine="autograd")
    assert torch.equal(attack(obs), fresh(obs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_reuse_changes_nothing(backend: str) -> None:
    obs = torch.from_numpy(np.random.default_rng(8).uniform(0, 1, (6, N_IN)))
    bound = AttackBudget(0.05, low=0.0, high=1.0).bind(obs)
    opt = Optimiser(iterations=60, decay_every=15)
    discrete = mlp64(5, 8)
    labels = discrete(obs).argmax(-1).detach()
    continuous = mlp64(2, 8)
    cases = [
        (discrete, torch_grad(difference_of_logits, labels), "numpy"),
        (continuous, ConstantGrad(np.tile([[1.0, -1.0]], (6, 1))), backend),
    ]
    for policy, out_grad, chosen in cases:
        net = compile_policy(policy).net()
        outs, stats = [], []
        for reuse in (True, False):
            stat: dict[str, int] = {}
            outs.append(
                fast_pgd(
                    net,
                    out_grad,
                    obs,
                    bound,
                    opt,
                    backend=chosen if reuse else "numpy",
                    reuse=reuse,
                    stats=stat,
                )
            )
            stats.append(stat)
        assert torch.equal(outs[0], outs[1])
        assert stats[1]["gradient_rows"] == stats[1]["rows"] == 360
        assert stats[0]["gradient_rows"] < stats[0]["rows"]  # a large box: iterates park on corners


def test_backend_choice() -> None:
    policy = mlp64(2, 0)
    obs = torch.rand(2, N_IN, dtype=torch.float64)
    net = compile_policy(policy).net()
    l2 = AttackBudget(0.1, norm="l2").bind(obs)
    linf = AttackBudget(0.1).bind(obs)
    assert choose_backend(net, 1, obs, l2) == "numpy"
    assert choose_backend(net, 1, obs.float(), linf) == "numpy"
    with pytest.raises(ValueError, match="numba backend unavailable"):
        choose_backend(net, 1, obs, l2, backend="numba")
    with pytest.raises(ValueError, match="backend"):
        choose_backend(net, 1, obs, l2, backend="cuda")
    assert choose_backend(net, None, obs, linf) == "numpy"
    with pytest.raises(ValueError, match="not affine"):
        choose_backend(net, None, obs, linf, backend="numba")
    if numba_available():
        assert choose_backend(net, 2, obs, linf) == "numba"
        assert (
            choose_backend(
                net, 1, torch.rand(9, N_IN, dtype=torch.float64), AttackBudget(0.1).bind(obs)
            )
            == "numpy"
        )  # batch > 8


def test_constant_gradient_cache_matches_torch() -> None:
    policy = mlp64(3, 1)
    rng = np.random.default_rng(0)
    for other in ("neg_inf", "zero"):
        attack = make_attack(
            "bifurcation", policy, AttackBudget(0.1), m1=2.0, m2=-0.5, other_logit=other
        )
        cache = ConstantGradCache(max_batch=16, size=5)
        for _ in range(6):  # random labels; the small size forces evictions
            clean = torch.from_numpy(rng.normal(size=(int(rng.integers(1, 20)), 3)))
            loss = attack.loss(None)
            args = loss.prepare(clean)
            if other == "neg_inf":
                np.testing.assert_array_equal(
                    cache.gradient(loss, clean, args), loss.output_gradient(clean, args).numpy()
                )
            else:  # the piecewise table is a function of the labels alone
                np.testing.assert_array_equal(
                    cache.piecewise(loss, clean, args), piecewise_table(loss, clean, args).numpy()
                )
