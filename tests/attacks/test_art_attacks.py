"""The authors' ART attacks (rlkit.attacks.art) on tiny MLP victims.

Every attack must stay inside the budget (per-feature linf radius eps * scale, masked features
untouched) and the observation bounds; AutoPGD / ACG must flip the bifurcation group about as
often as a plain reference PGD on the same samples (written here, so that changes to rlkit's own
PGD defaults do not move the bound); the dynamic search must return, per
observation, exactly what running ART at each candidate eps by hand gives; Brendel-Bethge must
reach the adversary's targets; the snooping proxy must agree with the victim on held-out
observations.  The Brendel-Bethge test is marked slow: ART's Brendel-Bethge optimiser is a numba
jitclass that compiles for about 30 s on first use in a process.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("art")

from rlkit.attacks import AttackBudget, Bifurcation  # noqa: E402
from rlkit.attacks.art import (  # noqa: E402
    ARTAutoCG,
    ARTAutoPGD,
    ARTDynamicEps,
    ARTOptimalBB,
    ARTSnoopingFGM,
    AutoSettings,
    BBSettings,
    DynamicSettings,
    SnoopingSettings,
)
from rlkit.catalog import build_attack  # noqa: E402

N = 48
MASK = np.array([0.0, 1, 1, 1, 1, 1])  # feature 0 is "calendar": never touched
SCALE = np.array([1.0, 1, 0.5, 1, 1, 1])  # feature 2 gets half the radius
FAST = {"nb_random_init": 3, "max_iter": 10, "seed": 0}


def sample(n: int, seed: int) -> torch.Tensor:
    """Observations in [0.25, 0.75] (close enough to the group boundary for eps 0.2 to flip
    most of them)."""
    return 0.25 + 0.5 * torch.rand(n, 6, generator=torch.Generator().manual_seed(seed))


def victim(n_out: int, seed: int = 0) -> nn.Sequential:
    """A 6-input tanh MLP whose outputs are centred on the observations (groups balanced)."""
    with torch.random.fork_rng(devices=[]):  # leave the global RNG of other tests alone
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, n_out))
    with torch.no_grad():
        out = net(sample(2000, 9))
        net[2].bias.sub_(out.median(0).values if n_out == 1 else out.mean(0))
    return net


POLICIES = {"discrete": victim(4), "continuous": victim(1)}


def budget(eps: float) -> AttackBudget:
    return AttackBudget(eps, mask=MASK, scale=SCALE, low=0.0, high=1.0)


def build(cls: type, policy: nn.Module, eps: float, **settings: object):
    """Validate ``settings`` with the class's model and build it (as rlkit's catalog does)."""
    merged = cls.settings_model.model_validate(settings).model_dump()
    return cls(cls.__name__, policy, budget(eps), merged)


def groups(kind: str, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return Bifurcation(kind)(POLICIES[kind](x))[:, 0].argmax(-1)


@pytest.fixture(scope="module")
def obs() -> torch.Tensor:
    # half of the samples with a feature on the bounds, to exercise the clipping
    x = sample(N, 1)
    x[::4, 3] = 1.0
    x[1::4, 4] = 0.0
    return x


def reference_pgd(
    logits: Callable[[torch.Tensor], torch.Tensor],
    obs: torch.Tensor,
    eps: float,
    labels: torch.Tensor,
    targeted: bool = False,
    steps: int = 40,
) -> torch.Tensor:
    """A plain linf PGD (delta from 0, sign steps of eps / 8, projected and clipped every step)
    on the difference of logits: the reference the ART attacks are held to."""
    radius = torch.as_tensor(eps * SCALE * MASK, dtype=obs.dtype)
    delta = torch.zeros_like(obs)
    for _ in range(steps):
        delta.requires_grad_(True)
        z = logits(obs + delta)
        own = z.gather(1, labels[:, None])[:, 0]
        other = z.masked_fill(nn.functional.one_hot(labels, z.shape[1]).bool(), -1e9).amax(1)
        loss = (own - other) if targeted else (other - own)
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            delta = torch.maximum(torch.minimum(delta + radius / 8 * grad.sign(), radius), -radius)
            delta = (obs + delta).clamp(0.0, 1.0) - obs
    return (obs + delta).detach()


def group_logits(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: Bifurcation(kind)(POLICIES[kind](x))[:, 0]


def noise(obs: torch.Tensor, eps: float) -> torch.Tensor:
    """Uniform noise in the budget, clipped into the bounds."""
    u = 2 * torch.rand(obs.shape, generator=torch.Generator().manual_seed(0)) - 1
    return (obs + u * torch.as_tensor(eps * SCALE * MASK, dtype=obs.dtype)).clamp(0.0, 1.0)


def assert_in_budget(adv: torch.Tensor, obs: torch.Tensor, eps: float) -> None:
    delta = (adv - obs).abs()
    assert adv.shape == obs.shape and adv.dtype == obs.dtype
    assert torch.all(delta <= torch.as_tensor(eps * SCALE * MASK, dtype=obs.dtype) + 1e-6)
    assert torch.all(delta[:, 0] == 0)
    assert adv.min() >= 0.0 and adv.max() <= 1.0


# ------------------------------------------------------------------------ AutoPGD and ACG
@pytest.mark.parametrize("cls", [ARTAutoPGD, ARTAutoCG])
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_auto_attacks_flip_groups_like_pgd_within_budget(cls, kind, obs) -> None:
    eps = 0.2
    clean = groups(kind, obs)
    pgd = reference_pgd(group_logits(kind), obs, eps, clean)
    pgd_rate = float((groups(kind, pgd) != clean).float().mean())
    assert pgd_rate > 0.75  # a policy where flipping the group is possible for most samples

    attack = build(cls, POLICIES[kind], eps, action_kind=kind, **FAST)
    adv = attack(obs)
    assert_in_budget(adv, obs, eps)
    flipped = groups(kind, adv) != clean
    assert np.array_equal(attack.last_success, flipped.numpy())
    # AutoPGD/ACG (3 restarts of 10 steps) flip at least as often as PGD, up to 3 samples
    assert flipped.float().mean() >= pgd_rate - 3 / N
    # seeded: the same call twice gives the same perturbation
    again = build(cls, POLICIES[kind], eps, action_kind=kind, **FAST)(obs)
    assert torch.equal(adv, again)


def test_auto_attack_on_bins_with_art_losses_and_the_catalog_path(obs) -> None:
    # the authors' non-bifurcated ACG (untageted_AC_5%_eps): 20-class DLR; here 4 bins
    view = POLICIES["discrete"]
    settings = {
        **FAST,
        "action_kind": "discrete",
        "classes": "actions",
        "loss": "difference_logits_ratio",
    }
    attack = build_attack("rlkit.attacks.art.auto:ARTAutoCG", view, budget(0.2), settings)
    adv = attack(obs)
    assert_in_budget(adv, obs, 0.2)
    bins = view(obs).argmax(-1)
    assert (view(adv).argmax(-1) != bins).float().mean() > 0.6
    ce = build(
        ARTAutoPGD,
        view,
        0.2,
        action_kind="discrete",
        classes="actions",
        loss="cross_entropy",
        **FAST,
    )
    assert_in_budget(ce(obs), obs, 0.2)
    assert ce.last_success.mean() > 0.6


def test_zero_budget_returns_clean(obs) -> None:
    attack = build(ARTAutoPGD, POLICIES["discrete"], 0.0, action_kind="discrete", **FAST)
    assert torch.equal(attack(obs), obs)
    assert not attack.last_success.any()


# ------------------------------------------------------------------------ dynamic minimal eps
def test_dynamic_eps_returns_the_smallest_flipping_candidate(obs) -> None:
    view = POLICIES["discrete"]
    cands = [0.05, 0.1, 0.2]
    # classes/loss: the authors' bins + DLR; 2 restarts of 8 steps (fast)
    common = {**FAST, "nb_random_init": 2, "max_iter": 8, "action_kind": "discrete"}
    by_hand, flips = {}, {}
    for eps in cands:  # one ACG per candidate, same seeds
        single = build(
            ARTAutoCG,
            view,
            eps,
            classes="actions",
            loss="difference_logits_ratio",
            eps_step=0.1,
            clip="end",  # the dynamic attack's default (the authors' classifier)
            **common,
        )
        by_hand[eps] = single(obs)
        flips[eps] = single.last_success
    linear = build(
        ARTDynamicEps, view, 0.2, eps_candidates=[0.2, 0.05, 0.1], search="linear", **common
    )
    adv = linear(obs)
    assert linear.classes == "actions" and linear.loss_name == "difference_logits_ratio"
    assert_in_budget(adv, obs, 0.2)
    for i in range(N):
        first = next((e for e in cands if flips[e][i]), None)
        if first is None:  # none flips: the clean observation, as the authors' code returns
            assert math.isnan(linear.last_eps[i]) and torch.equal(adv[i], obs[i])
        else:
            assert linear.last_eps[i] == first
            torch.testing.assert_close(adv[i], by_hand[first][i], atol=1e-6, rtol=0)
    assert np.array_equal(linear.last_success, ~np.isnan(linear.last_eps))
    assert linear.last_success.mean() == pytest.approx(flips[0.2].mean())  # PGD-like bound

    binary = build(ARTDynamicEps, view, 0.2, eps_candidates=cands, **common)
    adv_b = binary(obs)
    for i in range(N):  # the authors' bisection: 0.1 first, then 0.05 or 0.2
        expect = (
            (0.05 if flips[0.05][i] else 0.1)
            if flips[0.1][i]
            else (0.2 if flips[0.2][i] else math.nan)
        )
        got = binary.last_eps[i]
        assert (math.isnan(expect) and math.isnan(got)) or got == expect
        if not math.isnan(expect):
            torch.testing.assert_close(adv_b[i], by_hand[expect][i], atol=1e-6, rtol=0)
    # candidates above the budget are dropped
    small = build(ARTDynamicEps, view, 0.15, eps_candidates=cands, **common)
    assert small.candidates(0.15) == [0.05, 0.1] and small.candidates(0.01) == [0.01]
    assert_in_budget(small(obs[:8]), obs[:8], 0.15)


def test_dynamic_eps_continuous_uses_groups(obs) -> None:
    attack = build(
        ARTDynamicEps,
        POLICIES["continuous"],
        0.2,
        action_kind="continuous",
        eps_candidates=[0.1, 0.2],
        **FAST,
    )
    adv = attack(obs)
    assert attack.classes == "groups" and attack.loss_name == "cw"
    assert_in_budget(adv, obs, 0.2)
    flipped = (groups("continuous", adv) != groups("continuous", obs)).numpy()
    assert np.array_equal(flipped, ~np.isnan(attack.last_eps)) and flipped.mean() > 0.5


# ------------------------------------------------------------------------ optimal Brendel-Bethge
@pytest.mark.slow
def test_optimal_bb_reaches_the_adversary_targets(obs) -> None:
    view, obs = POLICIES["discrete"], obs[:16]

    def adversary(x: torch.Tensor) -> torch.Tensor:  # a bin of the other group
        return (view(x).argmax(-1) + 2) % 4

    targets = adversary(obs)
    ref = reference_pgd(view, obs, 0.2, targets, targeted=True)
    pgd_rate = float((view(ref).argmax(-1) == targets).float().mean())
    fast = {"steps": 30, "init_size": 20_000, "init_batch": 5_000, "seed": 0}
    # the authors' unbounded run: eps 1 covers the [0, 1] box, starting points from the box
    free = build(ARTOptimalBB, view, 1.0, action_kind="discrete", adversary=adversary, **fast)
    adv = free(obs)
    assert_in_budget(adv, obs, 1.0)
    reached = view(adv).argmax(-1) == targets
    assert np.array_equal(free.last_targets, targets.numpy())
    assert np.array_equal(free.last_success, reached.numpy())
    assert reached.float().mean() >= max(pgd_rate, 0.9)  # PGD: eps 0.2, BB: unbounded
    # minimal norm: never farther than the starting point it walked from
    linf = (adv - obs)[:, 1:].abs().amax(1).numpy()
    assert np.all(linf[reached.numpy()] <= free.last_start_distance[reached.numpy()] + 1e-6)
    again = build(ARTOptimalBB, view, 1.0, action_kind="discrete", adversary=adversary, **fast)
    assert torch.equal(adv[:4], again(obs[:4]))  # seeded: the same result
    # in a budget: starting points from the eps ball; a target found is a target reached
    small = build(
        ARTOptimalBB,
        view,
        0.2,
        action_kind="discrete",
        adversary=adversary,
        init_region="budget",
        **fast,
    )
    adv = small(obs)
    assert_in_budget(adv, obs, 0.2)
    started = ~np.isnan(small.last_start_distance)
    assert started.any() and np.array_equal(small.last_success, started)
    # a target equal to the clean bin is left alone
    same = build(
        ARTOptimalBB,
        view,
        1.0,
        action_kind="discrete",
        adversary=lambda x: view(x).argmax(-1),
        **fast,
    )
    assert torch.equal(same(obs[:4]), obs[:4]) and same.last_success.all()


# ------------------------------------------------------------------------ snooping
def test_snooping_proxy_imitates_and_transfers(obs) -> None:
    view = POLICIES["discrete"]
    watched, held_out = sample(500, 2), sample(400, 3)
    attack = build(
        ARTSnoopingFGM, view, 0.2, action_kind="discrete", warmup_steps=5, epochs=30, seed=0
    )  # the authors' proxy, fewer epochs
    for k in range(5):  # the warm-up calls pass through clean
        batch = watched[100 * k : 100 * (k + 1)]
        assert torch.equal(attack(batch), batch) and (attack.proxy is None) == (k < 4)
    assert attack.fits == 1 and attack.proxy_metrics["samples"] == 500
    bins = view(held_out).argmax(-1)
    majority = bins.bincount().max().item() / len(bins)
    agreement = attack.agreement(held_out)
    assert agreement >= majority + 0.6 * (1 - majority)  # far above always-the-majority
    adv = attack(obs)
    assert_in_budget(adv, obs, 0.2)
    transfer = (view(adv).argmax(-1) != view(obs).argmax(-1)).float().mean()
    noise_rate = (view(noise(obs, 0.2)).argmax(-1) != view(obs).argmax(-1)).float().mean()
    assert transfer >= max(0.5, float(noise_rate) + 0.25)


def test_snooping_continuous_toggle_from_a_dataset(obs, tmp_path) -> None:
    view = POLICIES["continuous"]
    data = sample(400, 4)
    path = tmp_path / "clean_episode.npz"
    np.savez(path, obs=data.numpy())
    attack = build(
        ARTSnoopingFGM, view, 0.2, action_kind="continuous", dataset=str(path), epochs=30, seed=0
    )
    assert attack.objective == "toggle"
    t = torch.arange(N)
    adv = attack(obs, t)
    assert attack.fits == 1 and attack.proxy_metrics["samples"] == 400
    held_out = sample(400, 5)
    share = float(groups("continuous", held_out).float().mean())
    majority = max(share, 1 - share)
    assert attack.agreement(held_out) >= majority + 0.6 * (1 - majority)
    assert_in_budget(adv, obs, 0.2)
    # toggle: the victim's group moves toward t mod 2 on most steps whose clean group differs
    g_adv, g_clean = groups("continuous", adv), groups("continuous", obs)
    want = (t % 2) != g_clean
    assert (g_adv[want] == (t % 2)[want]).float().mean() > 0.5
    with pytest.raises(ValueError, match="time step"):
        attack(obs)


# ------------------------------------------------------------------------ settings
def test_settings_are_typed_with_the_authors_defaults() -> None:
    auto = AutoSettings()
    assert (auto.loss, auto.classes, auto.max_iter, auto.nb_random_init, auto.step_ratio) == (
        "cw",
        "groups",
        20,
        50,
        2.0,
    )
    dyn = DynamicSettings()
    assert dyn.eps_candidates == [0.01, 0.03, 0.05, 0.07] and dyn.method == "acg"
    assert (dyn.max_iter, dyn.nb_random_init, dyn.eps_step, dyn.search) == (10, 50, 0.1, "binary")
    bb = BBSettings(adversary="adv.zip")
    assert (bb.steps, bb.overshoot, bb.lr, bb.lr_num_decay, bb.momentum, bb.init_size) == (
        1000,
        1.1,
        1e-3,
        20,
        0.8,
        1_000_000,
    )
    assert SnoopingSettings().epochs == 1000
    from rlkit.catalog import ART_ATTACKS

    assert set(ART_ATTACKS) == {
        "art_apgd",
        "art_acg",
        "art_dynamic_eps",
        "art_optimal_bb",
        "art_snooping_fgm",
    }
    for bad, match in [
        ({"nb_restarts": 3}, "extra"),
        ({"loss": "mse"}, "loss"),
        ({"max_iter": 0}, "max_iter"),
    ]:
        with pytest.raises(ValueError, match=match):
            AutoSettings.model_validate(bad)
    with pytest.raises(ValueError, match="required"):
        BBSettings()
    with pytest.raises(ValueError, match="warmup_steps"):
        SnoopingSettings(warmup_steps=0)
    with pytest.raises(ValueError, match="eps_candidates"):
        DynamicSettings(eps_candidates=[0.1, -0.2])
    with pytest.raises(ValueError, match="needs >= 3 classes"):
        build(
            ARTAutoPGD,
            POLICIES["discrete"],
            0.1,
            action_kind="discrete",
            loss="difference_logits_ratio",
        )
    with pytest.raises(ValueError, match="discrete policy"):
        build(ARTAutoPGD, POLICIES["continuous"], 0.1, classes="actions")
