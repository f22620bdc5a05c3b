"""The SA regulariser's inner maximisation (SA-PPO's SGLD over the observation box) and the
divergence of rlkit's native deterministic actors, without stable-baselines3 (so ``drqv2`` and
``mentor`` use them without importing it); :mod:`rlkit.agents.sa` documents the method and adds
the SB3 algorithms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

SGLD_INVERSE_BETA = 1e-5  # SA-PPO's (gradients of the KL are small)


def tanh_mean_divergence(body: Any, clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """SA-DDPG's per-sample ``||tanh(mu(perturbed)) - tanh(mu(clean))||^2`` for rlkit's native
    actors (``drqv2``, ``mentor``: ``body`` maps raw observations to the pre-tanh mean), the
    clean side detached.

    :param body: encoder and actor.
    :param clean: clean raw observations.
    :param perturbed: perturbed raw observations.
    """
    with torch.no_grad():
        reference = torch.tanh(body(clean))
    return ((torch.tanh(body(perturbed)) - reference) ** 2).sum(dim=-1)


def check_sa_settings(agent: str, kappa: float, eps: float, steps: int) -> None:
    """Refuse a negative weight or radius and fewer than one SGLD step.

    :param agent: the agent's name, for the message.
    :param kappa: ``sa_kappa``.
    :param eps: ``sa_eps``.
    :param steps: ``sa_steps``.
    """
    if not (kappa >= 0 and eps >= 0 and steps >= 1):  # NaN too
        raise ValueError(f"{agent}: sa_kappa and sa_eps must be >= 0 and sa_steps >= 1")


def sa_regularizer(
    policy: Any,
    obs: torch.Tensor,
    eps: float,
    steps: int = 10,
    scale: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    divergence: Any = None,
) -> torch.Tensor:
    """SA-PPO's regulariser on a batch: the mean over samples of the divergence at the SGLD
    maximiser (see the module doc).

    :param policy: an SB3 ``ActorCriticPolicy``.
    :param obs: observations (B, n), as the policy takes them.
    :param eps: the budget radius.
    :param steps: SGLD steps.
    :param scale: per-feature multipliers of ``eps`` (n,), or None.
    :param generator: RNG of the start and the noise.
    :param divergence: ``(policy, clean, perturbed) -> (B,)``; default
        :func:`rlkit.agents.sa.policy_divergence`.
    """
    if divergence is None:  # the SB3 policies' divergence (imports stable-baselines3)
        from rlkit.agents.sa import policy_divergence

        divergence = policy_divergence
    radius = torch.full_like(obs[0], eps) if scale is None else eps * scale.to(obs)
    step = radius / steps
    noise = SGLD_INVERSE_BETA * np.sqrt(2 * eps / steps)
    start = torch.randn(obs.shape, generator=generator, dtype=obs.dtype).to(obs.device)
    x = (obs + start.sign() * step).detach()
    for i in range(steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(divergence(policy, obs, x).mean(), x)
        jitter = torch.randn(obs.shape, generator=generator, dtype=obs.dtype).to(obs.device)
        update = (grad + noise / (i + 2) * jitter).sign() * step
        x = torch.minimum(torch.maximum(x.detach() + update, obs - radius), obs + radius)
    return divergence(policy, obs, x.detach()).mean()
