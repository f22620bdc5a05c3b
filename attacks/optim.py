"""Gradient optimisers for observation attacks: FGSM and (decaying-step) PGD.

Both work on whole batches: an ``objective(x) -> (B,)`` per-sample loss to *maximise* is summed
and differentiated once per iteration, so one forward/backward pass serves every sample (the
samples must not interact inside the policy, which holds for eval-mode networks).

The loops themselves only need the input gradient: :func:`fgsm_steps` and :func:`pgd_steps` take
a ``gradient(x) -> dL/dx`` callable, which is how the autograd and compiled engines of
:mod:`rlkit.attacks.engines` share one implementation of the update; :func:`fgsm` and
:func:`pgd` are the same loops with the gradient from torch autograd on ``objective``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .budget import BoundBudget

Objective = Callable[[torch.Tensor], torch.Tensor]
Gradient = Callable[[torch.Tensor], torch.Tensor]
DECAY_SCHEDULES = ("authors", "standard")
METHODS = ("fgsm", "pgd")
#: values of the ``clip`` setting: when the observation bounds (``low``/``high``) apply
CLIPS = ("end", "none", "every_step")


def step_schedule(
    step_size: float,
    iterations: int,
    decay_every: int = 0,
    decay_rate: float = 1.0,
    decay_schedule: str = "authors",
) -> list[float]:
    """Step size used at each PGD iteration.

    ``"authors"``: as the authors' ``my_pgd_linf`` (``if iter % decay_iters == 0: step *=
    decay_rate`` after each update), the step is multiplied by ``decay_rate`` *after* every
    iteration ``i`` with ``i % decay_every == 0`` - including ``i = 0`` - by the same repeated
    multiplication, so with 100 iterations, every 25, rate 0.5 the steps are 0.01 once, then
    0.005 (25x), 0.0025, 0.00125 and 0.000625 (24x).  ``"standard"``: the step is
    ``step_size * decay_rate**n`` after ``n`` multiples of ``decay_every`` (0.01 x25, 0.005 x25,
    ...).

    :param step_size: initial step.
    :param iterations: number of iterations.
    :param decay_every: multiply the step by ``decay_rate`` every this many iterations (0 = never).
    :param decay_rate: multiplier in (0, 1].
    :param decay_schedule: ``"authors"`` or ``"standard"``.
    :return: one step size per iteration.
    """
    if decay_schedule not in DECAY_SCHEDULES:
        raise ValueError(
            f"decay_schedule must be one of {list(DECAY_SCHEDULES)}, got {decay_schedule!r}"
        )
    steps = []
    step = step_size
    for i in range(iterations):
        if decay_schedule == "authors":
            steps.append(step)
            if decay_every > 0 and i % decay_every == 0:
                step *= decay_rate
        else:
            n = i // decay_every if decay_every > 0 else 0
            steps.append(step_size * decay_rate**n)
    return steps


def check_clip(clip: str) -> str:
    """``clip`` if it is one of :data:`CLIPS`, else a ValueError.

    :param clip: a ``clip`` setting.
    """
    if clip not in CLIPS:
        raise ValueError(f"clip must be one of {list(CLIPS)}, got {clip!r}")
    return clip


def pgd_result(
    obs: torch.Tensor, delta: torch.Tensor, budget: BoundBudget, clip: str
) -> torch.Tensor:
    """The perturbed batch a PGD loop returns for its final (in-budget) ``delta``.

    ``"end"`` (the authors' ``np.clip(obs + delta, low, high)`` after their loop): ``obs +
    delta`` clipped into the bounds (widened to contain the clean value, see
    :mod:`rlkit.attacks.budget`); ``"none"``: ``obs + delta``, bounds ignored;
    ``"every_step"`` (the loop clipped every iterate): projected into the budget and clipped
    once more, ``budget.clip(obs + delta, obs)``.

    :param obs: clean batch.
    :param delta: the loop's final perturbation (inside the budget).
    :param budget: tensor budget bound to ``obs``.
    :param clip: one of :data:`CLIPS`.
    """
    check_clip(clip)
    if clip == "every_step":
        return budget.clip(obs + delta, obs).detach()
    if clip == "end":
        return budget.clip_bounds(obs + delta, obs).detach()
    return (obs + delta).detach()


def input_gradient(objective: Objective, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``objective(x).sum()`` w.r.t. ``x`` only, and the per-sample loss.

    :param objective: per-sample loss (B,) of an input batch.
    :param x: input batch (detached; a leaf requiring grad is made from it).
    :return: (gradient like ``x``, per-sample loss), both detached.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = objective(x)
        if not loss.requires_grad:
            raise ValueError(
                "the attack objective does not depend differentiably on the observation; "
                "the policy must be a differentiable torch view"
            )
        (grad,) = torch.autograd.grad(loss.sum(), x, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(x)
    return grad.detach(), loss.detach()


def ascent_direction(grad: torch.Tensor, budget: BoundBudget) -> torch.Tensor:
    """Norm-aware steepest-ascent direction of unit budget size.

    linf: ``sign(grad)`` on active features.  l2: the gradient normalised in the scaled
    coordinates ``u = delta / scale`` (``scale * g_u / ||g_u||`` with ``g_u = grad * scale``), so a
    step of size ``s`` moves ``s`` in budget norm.

    :param grad: input gradient (B, *features).
    :param budget: tensor budget (gives the norm, active features and scale).
    """
    if budget.norm == "linf":
        return grad.sign() * budget.active
    g_u = grad * budget.safe_scale * budget.active
    norms = g_u.flatten(1).norm(dim=1).clamp_min(1e-30)
    return budget.safe_scale * g_u / norms.view(-1, *([1] * (grad.dim() - 1)))


def fgsm_steps(
    gradient: Gradient,
    obs: torch.Tensor,
    budget: BoundBudget,
    *,
    random_start: bool = False,
    clip: str = "end",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """FGSM with the input gradient from ``gradient`` (see :func:`fgsm`).

    :param gradient: ``gradient(x)``: the input gradient of the summed loss at batch ``x``.
    :param obs: clean batch (B, *features).
    :param budget: tensor budget bound to ``obs``.
    :param random_start: take the gradient at a random in-budget point.
    :param clip: ``"end"`` / ``"every_step"``: the result is clipped into the bounds
        (``"every_step"`` also clips the random start point); ``"none"``: bounds ignored.
    :param generator: RNG for the random start.
    """
    check_clip(clip)
    obs = obs.detach()
    start = obs
    if random_start:
        start = obs + budget.random_delta(obs, generator)
        if clip == "every_step":
            start = budget.clip(start, obs)
    delta = budget.eps * ascent_direction(gradient(start), budget)
    return budget.clip(start + delta, obs, bounds=clip != "none").detach()


def pgd_steps(
    gradient: Gradient,
    obs: torch.Tensor,
    budget: BoundBudget,
    steps: list[float],
    *,
    random_start: bool = False,
    clip: str = "end",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """PGD with the input gradient from ``gradient`` (see :func:`pgd`).

    :param gradient: ``gradient(x)``: the input gradient of the summed loss at batch ``x``.
    :param obs: clean batch (B, *features).
    :param budget: tensor budget bound to ``obs``.
    :param steps: step size of each iteration (:func:`step_schedule`).
    :param random_start: start from a uniform point of the budget instead of delta = 0.
    :param clip: when the observation bounds apply: ``"end"``, ``"none"`` or ``"every_step"``
        (also the start point and every iterate), see :func:`pgd_result`.
    :param generator: RNG for the random start.
    """
    check_clip(clip)
    obs = obs.detach()
    delta = budget.random_delta(obs, generator) if random_start else torch.zeros_like(obs)
    every_step = clip == "every_step"
    if every_step:
        delta = budget.clip_bounds(obs + delta, obs) - obs
    for step in steps:
        delta = budget.project(delta + step * ascent_direction(gradient(obs + delta), budget))
        if every_step:
            delta = budget.clip_bounds(obs + delta, obs) - obs
    return pgd_result(obs, delta, budget, clip)


def fgsm(
    objective: Objective,
    obs: torch.Tensor,
    budget: BoundBudget,
    *,
    random_start: bool = False,
    clip: str = "end",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One full-budget gradient step: ``obs + eps * direction`` projected and clipped.

    For linf the step is ``eps_i * sign(grad_i)`` per feature (eps_i = eps * scale_i * mask_i).

    :param objective: per-sample loss to maximise.
    :param obs: clean batch (B, *features).
    :param budget: tensor budget bound to ``obs``.
    :param random_start: take the gradient at a random in-budget point ``obs + r`` and step from
        there (R+FGSM style), needed when the gradient vanishes at ``obs``.
    :param clip: ``"end"``, ``"none"`` or ``"every_step"``, see :func:`fgsm_steps`.
    :param generator: RNG for the random start.
    """
    return fgsm_steps(
        lambda x: input_gradient(objective, x)[0],
        obs,
        budget,
        random_start=random_start,
        clip=clip,
        generator=generator,
    )


def pgd(
    objective: Objective,
    obs: torch.Tensor,
    budget: BoundBudget,
    *,
    step_size: float = 0.01,
    iterations: int = 100,
    random_start: bool = False,
    decay_every: int = 25,
    decay_rate: float = 0.5,
    decay_schedule: str = "authors",
    clip: str = "end",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on ``objective`` within ``budget``; returns perturbed obs.

    Each iteration: ``delta <- project(delta + step * direction(grad))`` (with ``clip=
    "every_step"`` then also into the bounds).  With the defaults this is the authors'
    ``my_pgd_linf``: delta from 0, sign steps clamped per feature to the budget, their step
    decay, and ``obs + delta`` clipped into the bounds once, after the loop.

    :param objective: per-sample loss (B,) to maximise.
    :param obs: clean batch (B, *features).
    :param budget: tensor budget bound to ``obs``.
    :param step_size: initial step (in budget units: linf -> per-feature sign step).
    :param iterations: number of gradient steps.
    :param random_start: start from a uniform point of the budget instead of delta = 0.
    :param decay_every: step decay period, see :func:`step_schedule`.
    :param decay_rate: step decay factor, see :func:`step_schedule`.
    :param decay_schedule: ``"authors"`` or ``"standard"``, see :func:`step_schedule`.
    :param clip: ``"end"`` (the authors': bounds applied once, after the loop), ``"none"`` (no
        bounds) or ``"every_step"`` (standard PGD: the start point and every iterate are
        clipped into the bounds, rlkit's former default), see :func:`pgd_result`.
    :param generator: RNG for the random start.
    """
    steps = step_schedule(step_size, iterations, decay_every, decay_rate, decay_schedule)
    return pgd_steps(
        lambda x: input_gradient(objective, x)[0],
        obs,
        budget,
        steps,
        random_start=random_start,
        clip=clip,
        generator=generator,
    )


@dataclass(frozen=True)
class Optimiser:
    """The optimiser settings of a gradient attack (what every engine runs).

    :param method: ``"fgsm"`` or ``"pgd"``.
    :param step_size: initial PGD step.
    :param iterations: PGD iterations.
    :param random_start: start from a random point of the budget.
    :param decay_every: step decay period (0 = none).
    :param decay_rate: step decay factor.
    :param decay_schedule: ``"authors"`` or ``"standard"``.
    :param clip: when the observation bounds apply: ``"end"``, ``"none"`` or ``"every_step"``.
    """

    method: str = "pgd"
    step_size: float = 0.01
    iterations: int = 100
    random_start: bool = False
    decay_every: int = 25
    decay_rate: float = 0.5
    decay_schedule: str = "authors"
    clip: str = "end"

    def steps(self) -> list[float]:
        """The step size of every PGD iteration (:func:`step_schedule`)."""
        return step_schedule(
            self.step_size, self.iterations, self.decay_every, self.decay_rate, self.decay_schedule
        )

    def run(
        self,
        gradient: Gradient,
        obs: torch.Tensor,
        budget: BoundBudget,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Run FGSM or PGD with the input gradient from ``gradient``.

        :param gradient: ``gradient(x)``: the input gradient of the summed loss at batch ``x``.
        :param obs: clean batch (B, *features).
        :param budget: tensor budget bound to ``obs``.
        :param generator: RNG for the random start.
        """
        if self.method == "fgsm":
            return fgsm_steps(
                gradient,
                obs,
                budget,
                random_start=self.random_start,
                clip=self.clip,
                generator=generator,
            )
        return pgd_steps(
            gradient,
            obs,
            budget,
            self.steps(),
            random_start=self.random_start,
            clip=self.clip,
            generator=generator,
        )
