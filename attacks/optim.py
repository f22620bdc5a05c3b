"""Gradient optimisers for observation attacks: FGSM and (decaying-step) PGD.

Both work on whole batches: an ``objective(x) -> (B,)`` per-sample loss to *maximise* is summed
and differentiated once per iteration, so one forward/backward pass serves every sample (the
samples must not interact inside the policy, which holds for eval-mode networks).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .budget import BoundBudget

Objective = Callable[[torch.Tensor], torch.Tensor]
DECAY_SCHEDULES = ("authors", "standard")


def step_schedule(step_size: float, iterations: int, decay_every: int = 0,
                  decay_rate: float = 1.0, decay_schedule: str = "authors") -> list[float]:
    """Step size used at each PGD iteration.

    Args:
        step_size: initial step.
        iterations: number of iterations.
        decay_every: multiply the step by ``decay_rate`` every this many iterations (0 = never).
        decay_rate: multiplier in (0, 1].
        decay_schedule: ``"authors"``: like the authors' ``my_pgd_linf``, the decay is applied
            *after* every iteration ``i`` with ``i % decay_every == 0`` - including ``i = 0`` - so
            with 100 iterations, every 25, rate 0.5 the steps are 0.01 once, then 0.005 (25x),
            0.0025, 0.00125 and 0.000625 (24x).  ``"standard"``: the step is multiplied after
            iterations ``decay_every, 2*decay_every, ...`` (0.01 x25, 0.005 x25, ...).
    """
    if decay_schedule not in DECAY_SCHEDULES:
        raise ValueError(
            f"decay_schedule must be one of {list(DECAY_SCHEDULES)}, got {decay_schedule!r}"
        )
    steps = []
    for i in range(iterations):
        if decay_every <= 0:
            n = 0
        elif decay_schedule == "authors":
            n = -(-i // decay_every)  # ceil(i / decay_every): decays after i = 0, k, 2k, ...
        else:
            n = i // decay_every
        steps.append(step_size * decay_rate**n)
    return steps


def input_gradient(objective: Objective, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of ``objective(x).sum()`` w.r.t. ``x`` only, and the per-sample loss.

    Args:
        objective: per-sample loss (B,) of an input batch.
        x: input batch (detached; a leaf requiring grad is made from it).
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

    Args:
        grad: input gradient (B, *features).
        budget: tensor budget (gives the norm, active features and scale).

    linf: ``sign(grad)`` on active features.  l2: the gradient normalised in the scaled
    coordinates ``u = delta / scale`` (``scale * g_u / ||g_u||`` with ``g_u = grad * scale``), so a
    step of size ``s`` moves ``s`` in budget norm.
    """
    if budget.norm == "linf":
        return grad.sign() * budget.active
    g_u = grad * budget.safe_scale * budget.active
    norms = g_u.flatten(1).norm(dim=1).clamp_min(1e-30)
    return budget.safe_scale * g_u / norms.view(-1, *([1] * (grad.dim() - 1)))


def fgsm(objective: Objective, obs: torch.Tensor, budget: BoundBudget, *,
         random_start: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """One full-budget gradient step: ``obs + eps * direction`` projected and clipped.

    Args:
        objective: per-sample loss to maximise.
        obs: clean batch (B, *features).
        budget: tensor budget bound to ``obs``.
        random_start: take the gradient at a random in-budget point ``obs + r`` and step from
            there (R+FGSM style), needed when the gradient vanishes at ``obs``.
        generator: RNG for the random start.

    For linf the step is ``eps_i * sign(grad_i)`` per feature (eps_i = eps * scale_i * mask_i).
    """
    obs = obs.detach()
    start = obs
    if random_start:
        start = budget.clip(obs + budget.random_delta(obs, generator), obs)
    grad, _ = input_gradient(objective, start)
    delta = budget.eps * ascent_direction(grad, budget)
    return budget.clip(start + delta, obs).detach()


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
    clip_in_loop: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient ascent on ``objective`` within ``budget``; returns perturbed obs.

    Args:
        objective: per-sample loss (B,) to maximise.
        obs: clean batch (B, *features).
        budget: tensor budget bound to ``obs``.
        step_size: initial step (in budget units: linf -> per-feature sign step).
        iterations: number of gradient steps.
        random_start: start from a uniform point of the budget instead of delta = 0.
        decay_every, decay_rate, decay_schedule: step decay, see :func:`step_schedule`.
        clip_in_loop: clip ``obs + delta`` to the bounds at every iteration (standard PGD).  The
            authors' code only clamps delta to the budget in the loop and clips once at the end
            (``clip_in_loop=False``).
        generator: RNG for the random start.

    Each iteration: ``delta <- project(delta + step * direction(grad))`` (then bounds if
    ``clip_in_loop``).  The result is always projected and clipped once more.
    """
    obs = obs.detach()
    delta = budget.random_delta(obs, generator) if random_start else torch.zeros_like(obs)
    if clip_in_loop:
        delta = budget.clip_bounds(obs + delta, obs) - obs
    for step in step_schedule(step_size, iterations, decay_every, decay_rate, decay_schedule):
        grad, _ = input_gradient(objective, obs + delta)
        delta = budget.project(delta + step * ascent_direction(grad, budget))
        if clip_in_loop:
            delta = budget.clip_bounds(obs + delta, obs) - obs
    return budget.clip(obs + delta, obs).detach()
