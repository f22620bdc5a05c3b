"""rlkit's attack defaults are the bifurcation paper's authors' procedures, bit for bit.

The authors' code (RMC-AIvsAI/A-Novel-Bifurcation-Method-for-Observation-Perturbation-Attacks-on-
Reinforcement-Learning-Agents, commit 6eb18c0) has no licence, so nothing of it is in the package:
it is transcribed here, line by line, to compare with.  The sources:

* ``my_pgd_linf``, ``DLLoss``, ``MaximumBifuricationWrapper`` and ``RegressorLinearWrapper``: the
  notebooks ``attack myPGD bifurication discrete.ipynb``, ``attack myPGD bifurication on
  SAC.ipynb``, ``attack myPGD toggle bifurication discrete.ipynb`` / ``continuous.ipynb``,
  ``attack myPGD on SAC.ipynb`` and ``attack myPGD discrete.ipynb`` (the single-sample versions
  that ran; the per-run kwargs are in their ``* parameters.json``: ``step=0.01, num_iter=100,
  num_decay=4, decay_rate=0.5``);
* ``CWLoss`` (the batched DL loss of their ART runs): ``modules/KBMproject/utilities.py``;
* the random-noise baseline: ``eval_rand_attack`` in ``modules/KBMproject/utilities.py``;
* the clean action ``y`` of their continuous untargeted baseline: ``agent.predict(obs,
  deterministic=True)`` of their SB3 SAC, i.e. ``tanh`` of the actor's mean, then SB3's
  ``unscale_action`` to the env's [0, 1] action box.

Each notebook ends with ``adv_obs = np.clip(observations + delta, MIN_OBS, MAX_OBS)`` in the runs
named "clipped" (rlkit ``clip="end"``) and ``adv_obs = observations + delta`` in the headline runs
(``clip="none"``).  The victims here are small seeded MLPs shaped like theirs (SAC: ``latent_pi``
+ ``mu``, the pre-tanh mean; PPO: ``policy_net`` + ``action_net``, the bin logits), float32 as
theirs.  Every engine that can serve a call is compared: autograd, the MLP engine (numpy and
numba backends) and, in the slow tests, the compiled engine.
"""

from __future__ import annotations

from copy import deepcopy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.attacks import AttackBudget, attack_settings, make_attack, step_schedule
from rlkit.attacks.fastgrad import numba_available
from rlkit.attacks.losses import difference_of_logits
from rlkit.policy import PolicyView

N_IN = 8
N_BINS = 6
BATCH = 6
LOW, HIGH = 0.0, 1.0  # their MIN_OBS, MAX_OBS
#: engines for losses the MLP engine's numba kernel serves (continuous GDL, MSE distance) ...
ENGINES = [("autograd", None), ("mlp", "numpy")] + ([("mlp", "numba")] if numba_available() else [])
#: ... and for the others (discrete losses, MAE, Huber: the MLP engine's numpy loop)
TORCH_LOSS_ENGINES = [("autograd", None), ("mlp", "numpy")]


# ============================================================================ the transcription
def my_pgd_linf(
    model,
    X,
    y=None,
    loss_fn=None,
    epsilon=0.05,
    step: float = 0.01,
    num_iter: int = 100,
    num_decay: int = 0,
    decay_rate=1,
):
    """Their ``my_pgd_linf`` (single sample ``X``), as in the notebooks."""
    assert 0 < decay_rate <= 1, "decay rate must be between 0 and 1"
    assert loss_fn is not None, "Loss function must be provided"

    model.eval()

    if y is None:
        y = model(X)
        n_out = y.shape[0]
        if n_out > 1:  # multiple outputs, assumes X is 1d
            _, y = torch.max(y, -1)  # argmax, max returns (values, indeces)
            y = F.one_hot(y, num_classes=n_out)

    if num_decay > 0:  # noqa: SIM108 - their code, line by line
        decay_iters = num_iter // num_decay
    else:  # no decay
        decay_iters = num_iter

    delta = torch.zeros_like(X, requires_grad=True)
    for iter in range(num_iter):  # noqa: A001 - their name
        loss = loss_fn(reduction="none")(model(X + delta), y)
        loss.backward(torch.ones_like(loss))

        # Perform the update on delta (via the data attribute to skip the gradient tracking)
        delta.data = (delta + step * delta.grad.detach().sign()).clamp(-epsilon, epsilon)
        delta.grad.zero_()

        if iter % decay_iters == 0:
            step *= decay_rate

    return delta


class MaximumBifuricationWrapper(nn.Module):
    """Their discrete bifurcation layer (the notebooks' 1-d version)."""

    def __init__(self, base_model):
        super().__init__()
        self.base_model = base_model

    def forward(self, x):
        logits = self.base_model(x)
        lower_half, higher_half = torch.split(logits, logits.size(-1) // 2, dim=-1)

        # get the max of the lower and higher halves
        lower_max = torch.max(lower_half, dim=-1)[0]
        higher_max = torch.max(higher_half, dim=-1)[0]

        # concatenate the max of the lower and higher halves into a single tensor
        output = torch.cat((lower_max.unsqueeze(-1), higher_max.unsqueeze(-1)), dim=-1)
        return output


class RegressorLinearWrapper(nn.Module):
    """Their continuous bifurcation layer (the notebooks' 1-d version)."""

    def __init__(self, base_model, m1=1.0, b1=0.0, m2=-1.0, b2=0.0):
        super().__init__()
        self.base_model = base_model
        self.m1 = m1
        self.m2 = m2
        self.b1 = b1
        self.b2 = b2

    def forward(self, input):  # noqa: A002 - their name
        x = self.base_model(input)

        logits = torch.cat((self.m1 * x + self.b1, self.m2 * x + self.b2)).float()
        return logits


class DLLoss(nn.Module):
    """Their DL loss (the notebooks' 1-d version): the clean logit is multiplied by 0."""

    def __init__(self, reduction=None):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits, target_one_hot):  # myPGD doesn't provide a 1 hot target...
        target_logits = torch.sum(target_one_hot * logits)
        max_non_target_logits = torch.max((1 - target_one_hot) * logits)
        loss = max_non_target_logits - target_logits

        if self.reduction == "mean":
            return loss.mean()
        elif self.reduction == "sum":
            return loss.sum()
        else:  # reduction is None
            return loss


class CWLoss(nn.Module):
    """Their batched DL loss (``modules/KBMproject/utilities.py``, used with ART)."""

    def __init__(self, reduction=None):
        super().__init__()
        self.reduction = reduction

    def forward(self, logits, target_one_hot):
        target_logits = torch.sum(target_one_hot * logits, dim=1)
        max_non_target_logits = torch.max((1 - target_one_hot) * logits, dim=1)[0]
        loss = max_non_target_logits - target_logits

        if self.reduction == "mean":
            return loss.mean()
        elif self.reduction == "sum":
            return loss.sum()
        else:  # reduction is None
            return loss


class NegatedDLLoss(DLLoss):
    """``-DLLoss`` toward a one-hot target: their loss made targeted (they ran no targeted
    myPGD; this is what ``targeted_pgd`` with ``other_logit="zero"`` maximises)."""

    def forward(self, logits, target_one_hot):
        return -super().forward(logits, target_one_hot)


def sb3_predict_continuous(mu_net, X, low, high):
    """``agent.predict(obs, deterministic=True)`` of their SAC: tanh of the mean (the squashed
    Gaussian's mode), then SB3's ``unscale_action`` in numpy: ``low + (0.5 * (scaled_action +
    1.0) * (high - low))``."""
    with torch.no_grad():
        actions = torch.tanh(mu_net(X)).cpu().numpy()
    return low + (0.5 * (actions + 1.0) * (high - low))


MYPGD = {"step": 0.01, "num_iter": 100, "num_decay": 4, "decay_rate": 0.5}  # parameters.json


def their_eps(eps: float, mask=None, scale=None):
    """Their epsilon argument: the float, or the per-feature vector they build
    (``eps_list = np.ones(n) * eps; eps_list[:6] = 0.0; eps_list[IDX] *= SPREAD``) as a float32
    tensor."""
    if mask is None and scale is None:
        return eps
    eps_list = np.ones(N_IN) * eps
    eps_list[np.asarray(mask) == 0] = 0.0  # masked
    for i, factor in enumerate(scale):
        if factor != 1.0:
            eps_list[i] *= factor
    return torch.tensor(eps_list, dtype=torch.float32)


def finish(observations: np.ndarray, delta: torch.Tensor, clip: str) -> np.ndarray:
    """The notebooks' last lines: ``np.clip(observations + delta, MIN_OBS, MAX_OBS)`` (their
    "clipped" runs) or ``observations + delta`` (their headline runs)."""
    delta = delta.cpu().detach().numpy()
    if clip == "end":
        return np.clip(observations + delta, LOW, HIGH)  # keep adv obs in obs space
    return observations + delta


# ============================================================================ the victims, inputs
def sac_like(seed: int) -> nn.Sequential:
    """``latent_pi`` + ``mu`` of a small SAC actor: observation -> pre-tanh mean (1 action)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(N_IN, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 1)
    )


def ppo_like(seed: int) -> nn.Sequential:
    """``policy_net`` + ``action_net`` of a small discrete PPO: observation -> bin logits."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(N_IN, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, N_BINS)
    )


def view_of(body: nn.Module, kind: str) -> PolicyView:
    """rlkit's policy view of ``body`` (continuous: tanh squash onto the [0, 1] action box)."""
    if kind == "discrete":
        return PolicyView(body, "discrete", "argmax")
    box = np.array([0.0], np.float32), np.array([1.0], np.float32)
    return PolicyView(body, "continuous", "tanh", *box)


def observations(seed: int) -> np.ndarray:
    """A float32 batch in [0, 1] with values on and near the bounds (where the clip matters)."""
    rng = np.random.default_rng(seed)
    obs = rng.uniform(0.0, 1.0, (BATCH, N_IN)).astype(np.float32)
    obs[0, :3] = [0.0, 1.0, 0.01]
    obs[1, 3:6] = [0.99, 0.0, 1.0]
    return obs


BUDGETS = {
    # eps 0.05 on every feature (their headline runs)
    "eps_05": {"eps": 0.05},
    # their stealthy vector: eps 0.03, calendar-like features masked, two features rescaled
    "stealthy_03": {
        "eps": 0.03,
        "mask": [0, 0, 1, 1, 1, 1, 1, 1],
        "scale": [1, 1, 1, 1, 1, 0.004, 0.016, 1],
    },
}


def budget(spec: dict) -> AttackBudget:
    """rlkit's budget for a ``BUDGETS`` entry, with their observation bounds."""
    return AttackBudget(
        spec["eps"], mask=spec.get("mask"), scale=spec.get("scale"), low=LOW, high=HIGH
    )


def rlkit_run(
    name: str,
    view: PolicyView,
    obs: np.ndarray,
    spec: dict,
    engine: str,
    backend: str | None,
    t: torch.Tensor | None = None,
    **settings: object,
) -> torch.Tensor:
    """One call of rlkit's attack ``name`` (defaults + ``settings``) on the whole batch."""
    attack = make_attack(name, view, budget(spec), engine=engine, **settings)
    if backend is not None:
        attack.engines["mlp"].backend = backend
    out = attack(torch.from_numpy(obs), t=t)
    assert attack.engine_stats[f"{engine}_calls"] == 1
    return out


def their_batch(one, obs: np.ndarray, clip: str) -> torch.Tensor:
    """Their per-sample attack ``one(i, X) -> delta`` over the batch, finished their way."""
    rows = [finish(obs[i], one(i, torch.from_numpy(obs[i])), clip) for i in range(len(obs))]
    return torch.from_numpy(np.stack(rows))


# ============================================================================ the defaults
def test_defaults_are_the_authors() -> None:
    for name in ("fgsm", "pgd", "targeted_pgd", "bifurcation", "bifurcation_toggle", "mad"):
        assert attack_settings(name)["clip"] == "end", name
    for name in ("fgsm", "pgd", "targeted_pgd", "bifurcation", "bifurcation_toggle"):
        assert attack_settings(name)["other_logit"] == "zero", name
    for name in ("fgsm", "pgd"):
        s = attack_settings(name)
        assert (s["reference"], s["random_start"]) == ("squashed", False), name
    s = attack_settings("bifurcation_toggle")
    assert s["toggle_start"] == "away"
    assert (s["step_size"], s["iterations"], s["decay_every"], s["decay_rate"]) == (
        MYPGD["step"],
        MYPGD["num_iter"],
        MYPGD["num_iter"] // MYPGD["num_decay"],
        MYPGD["decay_rate"],
    )
    assert s["decay_schedule"] == "authors" and s["random_start"] is False


def their_steps(step: float, num_iter: int, num_decay: int, decay_rate: float) -> list[float]:
    """The step each iteration of their loop uses."""
    decay_iters = num_iter // num_decay if num_decay > 0 else num_iter
    out = []
    for iter in range(num_iter):  # noqa: A001
        out.append(step)
        if iter % decay_iters == 0:
            step *= decay_rate
    return out


@pytest.mark.parametrize(
    ("step", "num_iter", "num_decay", "rate"),
    [(0.01, 100, 4, 0.5), (0.02, 30, 3, 0.7), (0.013, 17, 5, 0.9)],
)
def test_step_schedule_is_their_loop(step: float, num_iter: int, num_decay: int, rate: float):
    ours = step_schedule(step, num_iter, num_iter // num_decay, rate, "authors")
    assert ours == their_steps(step, num_iter, num_decay, rate)  # the same floats


def test_zero_mask_is_their_dl_and_cw_losses() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(32, 5, generator=gen) - 0.7
    label = torch.randint(0, 5, (32,), generator=gen)
    onehot = F.one_hot(label, 5)
    for loss in (
        CWLoss(),
        lambda z, y: torch.stack([DLLoss()(a, b) for a, b in zip(z, y, strict=True)]),
    ):
        ours_z = logits.clone().requires_grad_(True)
        theirs_z = logits.clone().requires_grad_(True)
        ours = difference_of_logits(ours_z, label, "zero")
        theirs = loss(theirs_z, onehot)
        assert torch.equal(ours, theirs)
        ours.sum().backward()
        theirs.sum().backward()
        assert torch.equal(ours_z.grad, theirs_z.grad)


# ============================================================================ bifurcation
@pytest.mark.parametrize("clip", ["end", "none"])
@pytest.mark.parametrize("spec", sorted(BUDGETS))
@pytest.mark.parametrize(("engine", "backend"), TORCH_LOSS_ENGINES)
def test_bifurcation_discrete(clip: str, spec: str, engine: str, backend: str | None) -> None:
    body = ppo_like(0)
    obs = observations(1)
    b = BUDGETS[spec]
    model = MaximumBifuricationWrapper(deepcopy(body))
    eps = their_eps(b["eps"], b.get("mask"), b.get("scale"))

    def one(i: int, X: torch.Tensor) -> torch.Tensor:
        return my_pgd_linf(model=model, X=X, epsilon=eps, loss_fn=DLLoss, **MYPGD)

    theirs = their_batch(one, obs, clip)
    ours = rlkit_run("bifurcation", view_of(body, "discrete"), obs, b, engine, backend, clip=clip)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, torch.from_numpy(obs))


@pytest.mark.parametrize("clip", ["end", "none"])
@pytest.mark.parametrize("spec", sorted(BUDGETS))
@pytest.mark.parametrize(("engine", "backend"), ENGINES)
@pytest.mark.parametrize("maps", [(1.0, 0.0, -1.0, 0.0), (2.0, -1.0, -2.0, 1.0)])
def test_bifurcation_continuous(
    clip: str, spec: str, engine: str, backend: str | None, maps: tuple
) -> None:
    body = sac_like(2)
    obs = observations(3)
    b = BUDGETS[spec]
    m1, b1, m2, b2 = maps
    model = RegressorLinearWrapper(deepcopy(body), m1=m1, b1=b1, m2=m2, b2=b2)
    eps = their_eps(b["eps"], b.get("mask"), b.get("scale"))

    def one(i: int, X: torch.Tensor) -> torch.Tensor:
        return my_pgd_linf(model=model, X=X, epsilon=eps, loss_fn=DLLoss, **MYPGD)

    theirs = their_batch(one, obs, clip)
    view = view_of(body, "continuous")
    kw = {"m1": m1, "b1": b1, "m2": m2, "b2": b2, "clip": clip}
    ours = rlkit_run("bifurcation", view, obs, b, engine, backend, **kw)
    assert torch.equal(ours, theirs)


# ============================================================================ toggle
@pytest.mark.parametrize(
    ("kind", "engine", "backend"),
    [("discrete", *e) for e in TORCH_LOSS_ENGINES] + [("continuous", *e) for e in ENGINES],
)
@pytest.mark.parametrize("clip", ["end", "none"])
def test_toggle(kind: str, clip: str, engine: str, backend: str | None) -> None:
    body = ppo_like(4) if kind == "discrete" else sac_like(4)
    obs = observations(5)
    spec = BUDGETS["eps_05"]
    wrapper = MaximumBifuricationWrapper if kind == "discrete" else RegressorLinearWrapper
    model = wrapper(deepcopy(body))
    steps = torch.arange(BATCH) + 7  # odd and even time steps

    def one(i: int, X: torch.Tensor) -> torch.Tensor:
        step = int(steps[i])
        if step % 2 == 0:  # noqa: SIM108 - their code: alternates the target action
            target = [1, 0]
        else:
            target = [0, 1]
        return my_pgd_linf(
            model=model, X=X, y=torch.tensor(target), epsilon=0.05, loss_fn=DLLoss, **MYPGD
        )

    theirs = their_batch(one, obs, clip)
    view = view_of(body, kind)
    ours = rlkit_run("bifurcation_toggle", view, obs, spec, engine, backend, t=steps, clip=clip)
    assert torch.equal(ours, theirs)
    # rlkit's former phase is the other one
    toward = rlkit_run(
        "bifurcation_toggle", view, obs, spec, engine, backend, t=steps, toggle_start="toward"
    )
    assert not torch.equal(toward, ours)


# ============================================================================ untargeted baselines
@pytest.mark.parametrize(
    ("loss", "their_loss", "engine", "backend"),
    [("mse", nn.MSELoss, *e) for e in ENGINES]
    + [
        (name, cls, *e)
        for name, cls in (("mae", nn.L1Loss), ("huber", nn.HuberLoss))
        for e in TORCH_LOSS_ENGINES
    ],
)
@pytest.mark.parametrize("clip", ["end", "none"])
def test_untargeted_continuous(
    loss: str, their_loss: type, clip: str, engine: str, backend: str | None
) -> None:
    body = sac_like(6)
    obs = observations(7)
    spec = BUDGETS["eps_05"]
    policy_net = deepcopy(body)
    low, high = np.array([0.0], np.float32), np.array([1.0], np.float32)

    def one(i: int, X: torch.Tensor) -> torch.Tensor:
        actions = sb3_predict_continuous(policy_net, X, low, high)
        y = torch.from_numpy(actions)
        return my_pgd_linf(model=policy_net, X=X, y=y, epsilon=0.05, loss_fn=their_loss, **MYPGD)

    theirs = their_batch(one, obs, clip)
    view = view_of(body, "continuous")
    ours = rlkit_run("pgd", view, obs, spec, engine, backend, loss=loss, clip=clip)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, torch.from_numpy(obs))  # the gradient is not zero at delta = 0


def test_untargeted_continuous_distances_give_the_same_steps() -> None:
    # their MSE, MAE and Huber runs on SAC gave the same perturbations: the sign of the
    # gradient is the sign of (mean - squashed clean action) times the mean's gradient
    view = view_of(sac_like(6), "continuous")
    obs = observations(7)
    outs = [
        rlkit_run("pgd", view, obs, BUDGETS["eps_05"], "autograd", None, loss=loss)
        for loss in ("mse", "mae", "huber")
    ]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("clip", ["end", "none"])
@pytest.mark.parametrize(("engine", "backend"), TORCH_LOSS_ENGINES)
def test_untargeted_discrete_intended_loss(clip: str, engine: str, backend: str | None) -> None:
    body = ppo_like(8)
    obs = observations(9)
    spec = BUDGETS["eps_05"]
    policy_net = deepcopy(body)

    def one(i: int, X: torch.Tensor) -> torch.Tensor:  # y=None: one-hot of the clean argmax
        return my_pgd_linf(model=policy_net, X=X, epsilon=0.05, loss_fn=DLLoss, **MYPGD)

    theirs = their_batch(one, obs, clip)
    ours = rlkit_run("pgd", view_of(body, "discrete"), obs, spec, engine, backend, clip=clip)
    assert torch.equal(ours, theirs)

    # their run passed the clean action index where DLLoss expects a one-hot target (attack
    # myPGD discrete.ipynb: y=torch.from_numpy(actions[0])): a different loss, not reproduced
    def bug(i: int, X: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            index = np.array([int(policy_net(X).argmax())])
        y = torch.from_numpy(index)
        return my_pgd_linf(model=policy_net, X=X, y=y, epsilon=0.05, loss_fn=DLLoss, **MYPGD)

    assert not torch.equal(their_batch(bug, obs, clip), ours)


@pytest.mark.parametrize(("engine", "backend"), TORCH_LOSS_ENGINES)
def test_targeted_discrete_zero_mask(engine: str, backend: str | None) -> None:
    body = ppo_like(10)
    obs = observations(11)
    policy_net = deepcopy(body)
    target = 2

    def one(i: int, X: torch.Tensor) -> torch.Tensor:
        y = F.one_hot(torch.tensor(target), num_classes=N_BINS)
        return my_pgd_linf(model=policy_net, X=X, y=y, epsilon=0.05, loss_fn=NegatedDLLoss, **MYPGD)

    theirs = their_batch(one, obs, "end")
    view = view_of(body, "discrete")
    ours = rlkit_run("targeted_pgd", view, obs, BUDGETS["eps_05"], engine, backend, target=target)
    assert torch.equal(ours, theirs)


# ============================================================================ random noise
def test_random_noise_is_their_eval_rand_attack() -> None:
    obs = torch.from_numpy(observations(12))
    eps = 0.05
    attack = make_attack(
        "random",
        view_of(sac_like(0), "continuous"),
        AttackBudget(eps, low=LOW, high=HIGH),
        positive_only=True,
        clip="none",
        seed=5,
    )
    ours = attack(obs)
    # theirs: observations + np.random.rand(*observations.shape)*eps, with torch's RNG in place
    # of numpy's (the same U[0, 1) per feature, scaled by eps; no mask, no clip)
    gen = torch.Generator().manual_seed(5)
    theirs = obs + torch.rand(*obs.shape, generator=gen) * eps
    assert torch.equal(ours, theirs)
    delta = ours - obs
    assert torch.all(delta >= 0) and torch.all(delta < eps)
    assert ours.max() > HIGH  # not clipped
    clipped = make_attack(
        "random",
        view_of(sac_like(0), "continuous"),
        AttackBudget(eps, low=LOW, high=HIGH),
        positive_only=True,
        seed=5,
    )(obs)
    assert torch.equal(clipped, torch.clamp(theirs, LOW, HIGH))


# ============================================================================ compiled (slow)
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_compiled_engine(kind: str) -> None:
    body = ppo_like(13) if kind == "discrete" else sac_like(13)
    obs = observations(14)
    spec = BUDGETS["stealthy_03"]
    eps = their_eps(spec["eps"], spec["mask"], spec["scale"])
    wrapper = MaximumBifuricationWrapper if kind == "discrete" else RegressorLinearWrapper
    model = wrapper(deepcopy(body))

    def one(i: int, X: torch.Tensor) -> torch.Tensor:
        return my_pgd_linf(model=model, X=X, epsilon=eps, loss_fn=DLLoss, **MYPGD)

    view = view_of(body, kind)
    ours = rlkit_run("bifurcation", view, obs, spec, "compiled", None, clip="none")
    assert torch.equal(ours, their_batch(one, obs, "none"))
    if kind == "continuous":
        policy_net = deepcopy(body)
        low, high = np.array([0.0], np.float32), np.array([1.0], np.float32)

        def untargeted(i: int, X: torch.Tensor) -> torch.Tensor:
            y = torch.from_numpy(sb3_predict_continuous(policy_net, X, low, high))
            return my_pgd_linf(
                model=policy_net, X=X, y=y, epsilon=0.05, loss_fn=nn.MSELoss, **MYPGD
            )

        ours = rlkit_run("pgd", view, obs, BUDGETS["eps_05"], "compiled", None)
        assert torch.equal(ours, their_batch(untargeted, obs, "end"))
