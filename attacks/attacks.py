"""Named observation attacks and the ``make_attack`` factory.

An attack is a callable ``attack(obs, t=None) -> perturbed_obs`` on torch batches (B, n_features).
``t`` (an int or a (B,) tensor of per-sample time steps in the episode) is used by
``bifurcation_toggle`` and by time-dependent targets of ``targeted_pgd``.

The victim ``policy`` is any differentiable callable (usually an ``nn.Module``) mapping an
observation batch to action means (``action_kind="continuous"``, (B, act_dim)) or action-bin
logits (``action_kind="discrete"``, (B, n_bins)); a tuple output uses its first element.  During a
call an ``nn.Module`` policy is put in eval mode with ``requires_grad=False`` on its parameters;
both are restored afterwards (per sub-module), and only the input is differentiated.

Gradient attacks take an ``engine`` setting (:data:`ENGINES`).  With the default ``"auto"``, a
policy that is a plain MLP (optional ``ObsNormalizer``, then Linear/ReLU/Tanh layers: SB3's MLP
actors through :class:`rlkit.policy.PolicyView`) is attacked by :mod:`rlkit.attacks.fastgrad`,
which computes the input gradients by hand and runs the PGD loop outside torch (no autograd, no
eval-mode switch: those layers have no training-mode behaviour).  It gives the same perturbed
observations as autograd, up to the rounding of the network's sums; ``mad`` and other policies
use autograd.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .bifurcation import Bifurcation
from .budget import AttackBudget, BoundBudget
from .fastgrad import (
    DistanceGrad,
    GroupMaxGrad,
    LogitsGrad,
    OutputGrad,
    bifurcation_continuous_grad,
    compile_policy,
    fast_fgsm,
    fast_pgd,
)
from .losses import (
    DISTANCES,
    action_distance,
    categorical_kl,
    difference_of_logits,
    gaussian_kl,
    group_difference_logits,
)
from .optim import DECAY_SCHEDULES, Objective, fgsm, pgd

ACTION_KINDS = ("continuous", "discrete")
#: ``engine`` setting of gradient attacks: "fast" = the hand-written MLP gradient of
#: :mod:`rlkit.attacks.fastgrad` (error if the policy is not a plain MLP), "autograd" = torch
#: autograd, "auto" = fast when the policy and batch allow it, else autograd.
ENGINES = ("auto", "autograd", "fast")

# --------------------------------------------------------------------------- settings
_COMMON: dict[str, Any] = {"action_kind": "continuous"}
_ENGINE: dict[str, Any] = {"engine": "auto"}
# The authors' myPGD settings (used for their bifurcated and plain untargeted PGD runs).
_PGD: dict[str, Any] = {
    "step_size": 0.01,
    "iterations": 100,
    "random_start": False,
    "decay_every": 25,
    "decay_rate": 0.5,
    "decay_schedule": "authors",
    "clip_in_loop": True,
    "seed": None,
    **_ENGINE,
}
_BIFURCATION: dict[str, Any] = {"split": None, "m1": 1.0, "b1": 0.0, "m2": -1.0, "b2": 0.0}


def _check_choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    """Raise ValueError unless ``value`` (setting ``name``) is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"setting {name!r} must be one of {list(allowed)}, got {value!r}")


def _check_number(name: str, value: Any, *, integer: bool = False, low: float | None = None,
                  high: float | None = None, low_open: bool = False) -> None:
    """Raise ValueError unless ``value`` is a number (an int if ``integer``) within the limits.

    Args:
        name: setting name for the message.
        value: value to check.
        integer: require an integer.
        low, high: inclusive limits (``low`` exclusive if ``low_open``).
        low_open: whether ``low`` is exclusive.
    """
    ok_type = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_type) or not np.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"setting {name!r} must be {kind}, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"setting {name!r} must be {'>' if low_open else '>='} {low}, "
                         f"got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"setting {name!r} must be <= {high}, got {value!r}")


def _validate(settings: Mapping[str, Any]) -> None:
    """Check the values of known settings; raise ValueError naming the setting."""
    checks: dict[str, Callable[[str, Any], None]] = {
        "action_kind": lambda n, v: _check_choice(n, v, ACTION_KINDS),
        "loss": lambda n, v: _check_choice(n, v, DISTANCES),
        "decay_schedule": lambda n, v: _check_choice(n, v, DECAY_SCHEDULES),
        "engine": lambda n, v: _check_choice(n, v, ENGINES),
        "step_size": lambda n, v: _check_number(n, v, low=0.0, low_open=True),
        "iterations": lambda n, v: _check_number(n, v, integer=True, low=1),
        "decay_every": lambda n, v: _check_number(n, v, integer=True, low=0),
        "decay_rate": lambda n, v: _check_number(n, v, low=0.0, high=1.0, low_open=True),
        "log_std": lambda n, v: _check_number(n, v),
        "m1": _check_number, "b1": _check_number, "m2": _check_number, "b2": _check_number,
    }
    for name, check in checks.items():
        if name in settings:
            check(name, settings[name])
    for name in ("clip_in_loop", "positive_only"):
        if name in settings and not isinstance(settings[name], bool):
            raise ValueError(f"setting {name!r} must be true or false, got {settings[name]!r}")
    if settings.get("random_start") not in (None, True, False):
        raise ValueError("setting 'random_start' must be true, false or null (auto), got "
                         f"{settings['random_start']!r}")
    seed = settings.get("seed")
    if seed is not None:
        _check_number("seed", seed, integer=True, low=0)
    split = settings.get("split")
    if split is not None:
        _check_number("split", split, integer=True, low=1)
    if "target" in settings and settings["target"] is None:
        raise ValueError("setting 'target' is required: an action (array/number, or a bin index "
                         "for discrete policies) or a callable t -> target")


# --------------------------------------------------------------------------- policy handling
@contextmanager
def frozen_policy(policy: Callable[[torch.Tensor], Any]) -> Iterator[None]:
    """Run ``policy`` in eval mode with frozen parameters, restoring both afterwards.

    Args:
        policy: an ``nn.Module`` (other callables are left alone).
    """
    if not isinstance(policy, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in policy.modules()]
    flags = [(p, p.requires_grad) for p in policy.parameters()]
    policy.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def policy_device(policy: Any) -> torch.device:
    """Device of the first parameter/buffer of ``policy`` (CPU if none)."""
    if isinstance(policy, nn.Module):
        for t in (*policy.parameters(), *policy.buffers()):
            return t.device
    return torch.device("cpu")


def _time_tensor(t: int | torch.Tensor | np.ndarray | None, batch: int,
                 device: torch.device) -> torch.Tensor | None:
    """Per-sample time steps (B,) as a long tensor (None stays None)."""
    if t is None:
        return None
    tt = torch.as_tensor(np.asarray(t) if not isinstance(t, torch.Tensor) else t, device=device)
    if tt.is_floating_point() and not torch.equal(tt, tt.round()):
        raise ValueError("time steps t must be integers")
    tt = tt.long().reshape(-1)
    if tt.numel() == 1:
        tt = tt.expand(batch)
    if tt.shape != (batch,):
        raise ValueError(f"t must be an int or have shape ({batch},), got shape {tuple(tt.shape)}")
    return tt


def _check_logits(logits: torch.Tensor) -> None:
    """Raise like :func:`difference_of_logits` (which the fast engine never calls) for < 2 bins."""
    if logits.shape[-1] < 2:
        raise ValueError("difference_of_logits needs at least 2 logits")


# --------------------------------------------------------------------------- attacks
class Attack:
    """Base class: a configured attack ``attack(obs, t=None) -> perturbed obs``.

    Args:
        name: registry name.
        policy: differentiable policy view (observation batch -> action means or logits).
        budget: the perturbation budget.
        settings: validated settings (all keys of ``attack_settings(name)``).
    """

    def __init__(self, name: str, policy: Callable[[torch.Tensor], Any], budget: AttackBudget,
                 settings: dict[str, Any]) -> None:
        """Store the policy, budget and settings; seed the attack's RNG if ``seed`` is set."""
        self.name = name
        self.policy = policy
        self.budget = budget
        self.settings = dict(settings)
        self.action_kind: str = settings.get("action_kind", "continuous")
        self.device = policy_device(policy)
        seed = settings.get("seed")
        self._generator: torch.Generator | None = None
        if seed is not None:
            self._generator = torch.Generator(device=self.device)
            self._generator.manual_seed(int(seed))

    def __repr__(self) -> str:
        """Name, budget and settings."""
        return f"{type(self).__name__}({self.name!r}, budget={self.budget}, {self.settings})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Policy output for batch ``x`` as (B, k): action means or logits."""
        out = self.policy(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.reshape(out.shape[0], -1)

    def generator_for(self, obs: torch.Tensor) -> torch.Generator | None:
        """The attack's RNG if it lives on ``obs``'s device (else None = global RNG)."""
        gen = self._generator
        if gen is not None and gen.device.type != obs.device.type:
            return None
        return gen

    def __call__(self, obs: torch.Tensor | np.ndarray,
                 t: int | torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Perturb a batch.

        Args:
            obs: clean observations (B, n_features) (a numpy array goes to the policy's device).
            t: time step in the episode: an int or a (B,) tensor; needed by some attacks.

        Returns:
            detached perturbed observations, same shape, device and (float) dtype as ``obs``.
        """
        if not isinstance(obs, torch.Tensor):
            obs = torch.as_tensor(np.asarray(obs), device=self.device)
        if not obs.is_floating_point():
            obs = obs.float()
        if obs.dim() < 2:
            raise ValueError(f"obs must be a batch (B, n_features), got shape {tuple(obs.shape)}")
        obs = obs.detach()
        bound = self.budget.bind(obs)
        tt = _time_tensor(t, obs.shape[0], obs.device)
        return self.run(obs, tt, bound).detach()

    def run(self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget) -> torch.Tensor:
        """Call :meth:`perturb` with the policy in eval mode and its parameters frozen.

        Args:
            obs: clean batch.
            t: per-sample time steps or None.
            bound: tensor budget bound to ``obs``.
        """
        with frozen_policy(self.policy):
            return self.perturb(obs, t, bound)

    def perturb(self, obs: torch.Tensor, t: torch.Tensor | None,
                bound: BoundBudget) -> torch.Tensor:
        """Compute the perturbed batch (override in subclasses).

        Args:
            obs: clean batch.
            t: per-sample time steps or None.
            bound: tensor budget bound to ``obs``.
        """
        raise NotImplementedError


class RandomAttack(Attack):
    """Uniform noise inside the budget (optionally positive-only, as in the paper)."""

    def perturb(self, obs: torch.Tensor, t: torch.Tensor | None,
                bound: BoundBudget) -> torch.Tensor:
        """Add a random in-budget perturbation to ``obs`` (``t`` unused) and clip via ``bound``."""
        delta = bound.random_delta(obs, self.generator_for(obs),
                                   positive_only=self.settings["positive_only"])
        return bound.clip(obs + delta, obs)


class GradientAttack(Attack):
    """An attack that maximises a per-sample objective with FGSM or PGD.

    The ``engine`` setting picks how input gradients are computed: torch autograd, or - for
    policies that are plain MLPs (see :mod:`rlkit.attacks.fastgrad`) - a hand-written numpy
    forward/backward pass with the whole PGD loop in numpy, which gives the same perturbations
    (up to matmul rounding) many times faster on small batches.  ``engine_stats`` counts the
    calls served by each engine and, for the fast one, the gradients computed.
    """

    method = "pgd"
    #: whether :meth:`output_gradient` is implemented (the fast engine can serve the attack)
    fast_supported = True

    def __init__(self, name: str, policy: Callable[[torch.Tensor], Any], budget: AttackBudget,
                 settings: dict[str, Any]) -> None:
        """As :class:`Attack`; also compile the policy for the fast engine when allowed."""
        super().__init__(name, policy, budget, settings)
        self.engine: str = settings.get("engine", "auto")
        self.plan = None
        if self.engine != "autograd" and self.fast_supported:
            self.plan = compile_policy(policy)
        if self.engine == "fast":
            if not self.fast_supported:
                raise ValueError(f"attack {name!r} has no fast engine; use setting "
                                 "engine='auto' or 'autograd'")
            if self.plan is None:
                raise ValueError("setting engine='fast' needs a plain MLP policy (optional "
                                 "ObsNormalizer, then Linear/ReLU/Tanh layers); use "
                                 "engine='auto' to fall back to autograd")
        self.engine_stats: dict[str, int] = {"fast_calls": 0, "autograd_calls": 0}
        #: PGD backend of the fast engine: "auto" (numba when installed, for linf budgets),
        #: "numba" or "numpy" (see :func:`rlkit.attacks.fastgrad.choose_backend`)
        self.fast_backend = "auto"

    def objective(self, obs: torch.Tensor, t: torch.Tensor | None) -> Objective:
        """Return the per-sample loss to maximise for clean batch ``obs`` at times ``t``."""
        raise NotImplementedError

    def output_gradient(self, obs: torch.Tensor, t: torch.Tensor | None) -> OutputGrad:
        """Gradient of :meth:`objective` w.r.t. the policy output, for the fast engine.

        Args:
            obs: clean batch.
            t: per-sample time steps or None.
        """
        raise NotImplementedError

    def _fast_engine(self, obs: torch.Tensor) -> Any:
        """The numpy engine for this call, or None to use autograd."""
        engine = None
        if self.plan is not None and obs.dim() == 2 and obs.device.type == "cpu":
            engine = self.plan.engine()
        if engine is None and self.engine == "fast":
            raise ValueError("engine='fast' needs a 2-D observation batch and the policy's "
                             "parameters on the CPU in one float dtype (float32 for a "
                             "PolicyView); use engine='auto'")
        return engine

    def random_start(self) -> bool:
        """Whether PGD/FGSM start from a random point of the budget."""
        random_start = self.settings["random_start"]
        if random_start is None:  # auto: the distance-from-clean gradient vanishes at delta = 0
            random_start = self.action_kind == "continuous"
        return bool(random_start)

    def run(self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget) -> torch.Tensor:
        """Use the fast engine when it can serve this call, else :meth:`perturb` (autograd).

        The fast path neither differentiates through nor trains the policy, so it skips the
        eval-mode / frozen-parameter context (the recognised layers behave the same in both
        modes).

        Args:
            obs: clean batch.
            t: per-sample time steps or None.
            bound: tensor budget bound to ``obs``.
        """
        engine = self._fast_engine(obs)
        if engine is None:
            return super().run(obs, t, bound)
        self.engine_stats["fast_calls"] += 1
        s = self.settings
        out_grad = self.output_gradient(obs, t)
        if self.method == "fgsm":
            return fast_fgsm(engine, out_grad, obs, bound, random_start=self.random_start(),
                             generator=self.generator_for(obs))
        return fast_pgd(engine, out_grad, obs, bound, step_size=s["step_size"],
                        iterations=s["iterations"], random_start=self.random_start(),
                        decay_every=s["decay_every"], decay_rate=s["decay_rate"],
                        decay_schedule=s["decay_schedule"], clip_in_loop=s["clip_in_loop"],
                        generator=self.generator_for(obs), backend=self.fast_backend,
                        stats=self.engine_stats)

    def perturb(self, obs: torch.Tensor, t: torch.Tensor | None,
                bound: BoundBudget) -> torch.Tensor:
        """Optimise the objective for ``obs``/``t`` within ``bound`` with autograd."""
        s = self.settings
        random_start = self.random_start()
        self.engine_stats["autograd_calls"] += 1
        objective = self.objective(obs, t)
        if self.method == "fgsm":
            return fgsm(objective, obs, bound, random_start=random_start,
                        generator=self.generator_for(obs))
        return pgd(objective, obs, bound, step_size=s["step_size"], iterations=s["iterations"],
                   random_start=random_start, decay_every=s["decay_every"],
                   decay_rate=s["decay_rate"], decay_schedule=s["decay_schedule"],
                   clip_in_loop=s["clip_in_loop"], generator=self.generator_for(obs))

    def clean_output(self, obs: torch.Tensor) -> torch.Tensor:
        """Policy output on the clean batch, without gradients."""
        with torch.no_grad():
            return self.forward(obs)


class UntargetedAttack(GradientAttack):
    """Push the action away from the clean one.

    Discrete: difference of logits (largest other logit minus the clean-argmax logit).
    Continuous: ``loss`` distance ("mse" | "mae" | "huber") from the clean action mean.  That
    distance has zero gradient at the clean observation, so ``random_start=None`` (the default)
    means a random start for continuous policies and none for discrete ones.

    The authors' untargeted myPGD baseline (``attack myPGD discrete.ipynb``) passes the clean
    action *index* where their ``DLLoss`` expects a one-hot vector, so the loss they optimised is
    not the difference of logits; this class implements the stated DL loss.
    """

    def objective(self, obs: torch.Tensor, t: torch.Tensor | None) -> Objective:
        """Per-sample untargeted loss around the clean outputs of ``obs`` (``t`` unused)."""
        clean = self.clean_output(obs)
        if self.action_kind == "discrete":
            label = clean.argmax(dim=-1)
            return lambda x: difference_of_logits(self.forward(x), label)
        kind = self.settings["loss"]
        return lambda x: action_distance(self.forward(x), clean, kind)

    def output_gradient(self, obs: torch.Tensor, t: torch.Tensor | None) -> OutputGrad:
        """Output gradient of the untargeted loss around the clean outputs (``t`` unused)."""
        clean = self.clean_output(obs)
        if self.action_kind == "discrete":
            _check_logits(clean)
            return LogitsGrad(clean.argmax(dim=-1).numpy())
        return DistanceGrad(clean.numpy(), self.settings["loss"])


class FGSMAttack(UntargetedAttack):
    """Untargeted single full-budget gradient step."""

    method = "fgsm"


class TargetedAttack(GradientAttack):
    """Pull the action toward ``target`` (constant, or a callable of the time step t).

    Continuous: minimise the ``loss`` distance to the target action.  Discrete: the target is a bin
    index; maximise its logit minus the largest other logit.
    """

    def target(self, t: torch.Tensor | None, clean: torch.Tensor) -> torch.Tensor:
        """Target per sample: (B, act_dim) floats or (B,) bin indices.

        Args:
            t: per-sample time steps (required for a callable target).
            clean: clean policy outputs (B, k), for shapes and device.
        """
        target = self.settings["target"]
        if callable(target):
            if t is None:
                raise ValueError("targeted_pgd with a callable target needs the time step t")
            target = target(t)
        if isinstance(target, torch.Tensor):
            tt = target.detach().to(clean.device)
        else:
            tt = torch.as_tensor(np.asarray(target), device=clean.device)
        batch, k = clean.shape
        if self.action_kind == "discrete":
            tt = tt.reshape(-1)
            if tt.is_floating_point() and not torch.equal(tt, tt.round()):
                raise ValueError("a discrete target must be integer bin indices")
            tt = tt.long().expand(batch) if tt.numel() == 1 else tt.long()
            if tt.shape != (batch,) or (tt < 0).any() or (tt >= k).any():
                raise ValueError(f"discrete target must be bin indices in [0, {k}) of shape "
                                 f"() or ({batch},)")
            return tt
        tt = tt.to(clean.dtype)
        if tt.dim() == 1 and tt.shape[0] == batch and k == 1:
            tt = tt.unsqueeze(-1)
        try:
            return torch.broadcast_to(tt, clean.shape)
        except RuntimeError as exc:
            raise ValueError(f"continuous target shape {tuple(tt.shape)} does not fit actions "
                             f"{tuple(clean.shape)}") from exc

    def objective(self, obs: torch.Tensor, t: torch.Tensor | None) -> Objective:
        """Per-sample loss (maximised) that reaches its optimum at the target for ``obs``, ``t``."""
        target = self.target(t, self.clean_output(obs))
        if self.action_kind == "discrete":
            return lambda x: -difference_of_logits(self.forward(x), target)
        kind = self.settings["loss"]
        return lambda x: -action_distance(self.forward(x), target, kind)

    def output_gradient(self, obs: torch.Tensor, t: torch.Tensor | None) -> OutputGrad:
        """Output gradient of the targeted loss for ``obs`` at times ``t``."""
        clean = self.clean_output(obs)
        target = self.target(t, clean)
        if self.action_kind == "discrete":
            _check_logits(clean)
            return LogitsGrad(target.numpy(), sign=-1.0)
        return DistanceGrad(target.numpy(), self.settings["loss"], sign=-1.0)


class BifurcationAttack(GradientAttack):
    """Untargeted GDL attack: flip each sample's clean action group.

    Maximises ``GDL = max_{j != y} g_j - g_y`` (no margin, no clamp) on the bifurcated group
    logits ``g``, ``y`` = the clean group, with the authors' myPGD by default (linf, delta from 0,
    100 sign steps of 0.01 halved four times, per-feature clamp each iteration).  For
    ``act_dim > 1`` the per-dimension GDL losses are summed.

    Differences from the authors' code (the defaults follow their code where it is deliberate):

    * step decay: their loop decays *after* iteration 0, 25, 50, 75 (``decay_schedule="authors"``,
      the default), not after 25, 50, 75 (``"standard"``).
    * bounds: they evaluate the policy at ``obs + delta`` without clipping inside the loop and
      clip once at the end; here the iterate is clipped every iteration unless
      ``clip_in_loop=False``.
    * their ``CWLoss`` masks the clean logit by multiplying by zero, so the "other" logit is
      ``max(0, g_other)``; here it is masked with ``-inf`` (the stated GDL).  With ``g = [a, -a]``
      both give the same sign gradient, hence the same linf PGD iterates.
    """

    def bifurcation(self) -> Bifurcation:
        """The configured bifurcation layer."""
        s = self.settings
        return Bifurcation(self.action_kind, s["split"], float(s["m1"]), float(s["b1"]),
                           float(s["m2"]), float(s["b2"]))

    def groups(self, x: torch.Tensor) -> torch.Tensor:
        """Group logits (B, D, 2) of batch ``x``."""
        return self.bifurcation()(self.forward(x))

    def objective(self, obs: torch.Tensor, t: torch.Tensor | None) -> Objective:
        """Summed per-dimension GDL w.r.t. the clean groups of ``obs`` (``t`` unused)."""
        with torch.no_grad():
            label = self.groups(obs).argmax(dim=-1)
        return lambda x: group_difference_logits(self.groups(x), label)

    def group_gradient(self, label: torch.Tensor, sign: float, bins: int) -> OutputGrad:
        """Output gradient of ``sign * GDL`` for own groups ``label`` (B, D).

        Args:
            label: own group per sample and action dimension.
            sign: +1 (flip the group) or -1 (toggle: pull toward ``label``).
            bins: width of the policy output (discrete: number of bins, for the default split).
        """
        s = self.settings
        if self.action_kind == "discrete":
            split = bins // 2 if s["split"] is None else int(s["split"])
            return GroupMaxGrad(label[:, 0].numpy(), split, sign=sign)
        return bifurcation_continuous_grad(label.numpy(), float(s["m1"]), float(s["m2"]),
                                           sign=sign)

    def output_gradient(self, obs: torch.Tensor, t: torch.Tensor | None) -> OutputGrad:
        """Output gradient of the GDL loss w.r.t. the clean groups of ``obs`` (``t`` unused)."""
        with torch.no_grad():
            out = self.forward(obs)
            label = self.bifurcation()(out).argmax(dim=-1)
        return self.group_gradient(label, 1.0, out.shape[1])


class ToggleBifurcationAttack(BifurcationAttack):
    """Targeted GDL attack whose target group alternates with time: ``y_t = t mod 2``.

    Maximises ``g_y - max_{j != y} g_j`` (summed over action dimensions).  Needs ``t``.
    """

    def objective(self, obs: torch.Tensor, t: torch.Tensor | None) -> Objective:
        """Per-sample toggle objective for ``obs`` at time steps ``t``."""
        if t is None:
            raise ValueError("bifurcation_toggle needs the time step t (int or (B,) tensor)")
        with torch.no_grad():
            dims = self.groups(obs).shape[1]
        label = (t % 2).unsqueeze(-1).expand(obs.shape[0], dims)
        return lambda x: -group_difference_logits(self.groups(x), label)

    def output_gradient(self, obs: torch.Tensor, t: torch.Tensor | None) -> OutputGrad:
        """Output gradient of the toggle objective for ``obs`` at time steps ``t``."""
        if t is None:
            raise ValueError("bifurcation_toggle needs the time step t (int or (B,) tensor)")
        with torch.no_grad():
            out = self.forward(obs)
            dims = self.bifurcation()(out).shape[1]  # also validates the split
        label = (t % 2).unsqueeze(-1).expand(obs.shape[0], dims)
        return self.group_gradient(label, -1.0, out.shape[1])


class MADAttack(GradientAttack):
    """Maximal Action Difference: maximise KL(pi(.|s) || pi(.|s + delta)).

    Discrete: categorical KL of the softmax of the logits.  Continuous: Gaussian policy with the
    mean from the policy and a fixed ``log_std`` setting, for which the KL is the scaled squared
    distance ``sum((mu - mu')^2) / (2 exp(2 log_std))``.  Plain PGD (no SGLD); the KL gradient is
    zero at delta = 0, so ``random_start`` defaults to True.  Always uses autograd.
    """

    fast_supported = False

    def objective(self, obs: torch.Tensor, t: torch.Tensor | None) -> Objective:
        """Per-sample KL from the clean policy at ``obs`` (``t`` unused)."""
        clean = self.clean_output(obs)
        if self.action_kind == "discrete":
            return lambda x: categorical_kl(clean, self.forward(x))
        log_std = float(self.settings["log_std"])
        return lambda x: gaussian_kl(clean, self.forward(x), log_std)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: class, one-line description and default settings."""

    name: str
    cls: type[Attack]
    description: str
    defaults: dict[str, Any]


_SPECS: dict[str, AttackSpec] = {
    spec.name: spec
    for spec in [
        AttackSpec("random", RandomAttack,
                   "uniform noise in the budget (positive_only=True: the paper's U[0, eps))",
                   {**_COMMON, "positive_only": False, "seed": None}),
        AttackSpec("fgsm", FGSMAttack,
                   "untargeted one-step attack (difference of logits / distance from the clean "
                   "action)", {**_COMMON, "loss": "mse", "random_start": None, "seed": None,
                               **_ENGINE}),
        AttackSpec("pgd", UntargetedAttack,
                   "untargeted PGD (difference of logits / distance from the clean action)",
                   {**_COMMON, "loss": "mse", **_PGD, "random_start": None}),
        AttackSpec("targeted_pgd", TargetedAttack,
                   "PGD toward a target action or bin (constant or a function of the time step)",
                   {**_COMMON, "target": None, "loss": "mse", **_PGD}),
        AttackSpec("bifurcation", BifurcationAttack,
                   "bifurcation layer + GDL loss: flip the clean action group (Broda-Milian et "
                   "al. 2024)", {**_COMMON, **_BIFURCATION, **_PGD}),
        AttackSpec("bifurcation_toggle", ToggleBifurcationAttack,
                   "bifurcation + GDL toward the group t mod 2 (alternating charge/discharge)",
                   {**_COMMON, **_BIFURCATION, **_PGD}),
        AttackSpec("mad", MADAttack,
                   "maximal action difference: maximise KL between clean and perturbed policy",
                   {**_COMMON, "log_std": 0.0, **_PGD, "random_start": True}),
    ]
}

ATTACKS: dict[str, str] = {name: spec.description for name, spec in _SPECS.items()}


def _unknown(kind: str, name: str, allowed: list[str]) -> ValueError:
    """A ValueError for unknown ``name`` of ``kind`` listing ``allowed`` with a suggestion."""
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint} (allowed: {', '.join(allowed)})")


def _spec(name: str) -> AttackSpec:
    """Registry entry for ``name`` or a ValueError listing the attacks."""
    if name not in _SPECS:
        raise _unknown("attack", name, list(_SPECS))
    return _SPECS[name]


def attack_settings(name: str) -> dict[str, Any]:
    """Settings of attack ``name`` with their defaults (a fresh dict).

    Args:
        name: a key of :data:`ATTACKS`.
    """
    return dict(_spec(name).defaults)


def validate_settings(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check setting names and values of attack ``name`` without building it.

    Args:
        name: a key of :data:`ATTACKS`.
        settings: the settings given (defaults fill the rest).

    Returns:
        the merged settings.

    Raises:
        ValueError: unknown attack or setting (with a close-match suggestion) or a bad value.
    """
    spec = _spec(name)
    unknown = [key for key in settings if key not in spec.defaults]
    if unknown:
        raise _unknown(f"setting for attack {name!r}:", unknown[0], list(spec.defaults))
    merged = {**spec.defaults, **settings}
    _validate(merged)
    return merged


def make_attack(name: str, policy: Callable[[torch.Tensor], Any],
                budget: AttackBudget | Mapping[str, Any], **settings: Any) -> Attack:
    """Build attack ``name`` against ``policy`` within ``budget``.

    Args:
        name: a key of :data:`ATTACKS`.
        policy: differentiable policy view: obs batch -> action means (continuous) or logits
            (discrete).
        budget: an :class:`AttackBudget` (or a mapping of its fields).
        **settings: the attack's settings, see :func:`attack_settings`.  ``action_kind``
            defaults to the policy's own ``action_kind`` attribute when it has one (e.g.
            ``rlkit.policy.PolicyView``), else to ``"continuous"``.

    Raises:
        ValueError: unknown attack or setting (with a close-match suggestion) or a bad value.
    """
    spec = _spec(name)
    if not callable(policy):
        raise ValueError(f"policy must be callable (an nn.Module or function), got {policy!r}")
    if isinstance(budget, Mapping):
        budget = AttackBudget(**budget)
    if not isinstance(budget, AttackBudget):
        raise ValueError(f"budget must be an AttackBudget, got {type(budget).__name__}")
    declared = getattr(policy, "action_kind", None)
    if declared in ACTION_KINDS:
        given = settings.get("action_kind", declared)
        if given != declared:
            raise ValueError(f"setting 'action_kind'={given!r} contradicts the policy's "
                             f"action_kind={declared!r}")
        settings = {**settings, "action_kind": declared}
    merged = validate_settings(name, settings)
    return spec.cls(name, policy, budget, merged)
