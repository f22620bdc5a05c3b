"""SA regularisation (Zhang et al., NeurIPS 2020, "SA-MDP"): PPO whose loss adds ``kappa`` times
the largest change of the policy within the observation budget.

``agent.name: rlkit.agents.sa:SAPPO`` (a stable-baselines3 PPO subclass, registered by class
path); ``agent.kwargs``: PPO's own plus ``sa_kappa``, ``sa_eps``, ``sa_steps``, ``sa_scale``.

The regulariser is SA-PPO's (their ``get_state_kl_bound_sgld``)::

    R = mean_s max_{|s' - s| <= eps} D(pi(.|s) || pi(.|s'))

with the clean distribution held fixed (no gradient through it). D is
``sum_j (mu_j(s') - mu_j(s))^2 / sigma_j^2`` for a Gaussian policy (twice the KL of two
Gaussians with the same sigma: their expression, without the 1/2) and the KL of the two
categoricals for a discrete one. The inner maximisation is their SGLD: start one step from ``s``
in a random-sign direction, then ``sa_steps`` sign steps of ``eps / sa_steps`` of the gradient
plus a vanishing noise (inverse temperature 1e-5), projected onto the box. ``sa_scale`` gives
per-feature multipliers of ``eps`` (0 = a feature never perturbed, e.g. calendar features); the
box lives in the policy's input space (raw observations unless ``env.normalize_obs``).

The penalty enters every PPO minibatch step: its gradient is added when SB3 zeroes the
gradients, just before ``loss.backward()``, so the gradient clipping and the optimiser step see
exactly the gradient of ``loss + kappa * R`` (with ``sa_kappa: 0`` the updates are PPO's, bit for
bit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import CategoricalDistribution

SGLD_INVERSE_BETA = 1e-5  # SA-PPO's (gradients of the KL are small)


def policy_divergence(policy: Any, clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Per-sample D(pi(.|clean) || pi(.|perturbed)) of an SB3 actor-critic policy, the clean side
    detached (see the module doc).

    :param policy: an SB3 ``ActorCriticPolicy``.
    :param clean: clean observations (B, n).
    :param perturbed: perturbed observations (B, n).
    """
    # SB3 reuses one distribution object per policy: read each side's tensors before the next call
    with torch.no_grad():
        reference = policy.get_distribution(clean)
        categorical = isinstance(reference, CategoricalDistribution)
        ref = (
            reference.distribution.logits if categorical else reference.distribution.mean
        ).clone()
    moved = policy.get_distribution(perturbed).distribution
    if categorical:
        return (ref.softmax(-1) * (ref - moved.logits)).sum(dim=-1)
    return (((moved.mean - ref) / moved.stddev.detach()) ** 2).sum(dim=-1)


def sa_regularizer(
    policy: Any,
    obs: torch.Tensor,
    eps: float,
    steps: int = 10,
    scale: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SA-PPO's regulariser on a batch: the mean over samples of the divergence at the SGLD
    maximiser (see the module doc).

    :param policy: an SB3 ``ActorCriticPolicy``.
    :param obs: observations (B, n), as the policy takes them.
    :param eps: the budget radius.
    :param steps: SGLD steps.
    :param scale: per-feature multipliers of ``eps`` (n,), or None.
    :param generator: RNG of the start and the noise.
    """
    radius = torch.full_like(obs[0], eps) if scale is None else eps * scale.to(obs)
    step = radius / steps
    noise = SGLD_INVERSE_BETA * np.sqrt(2 * eps / steps)
    start = torch.randn(obs.shape, generator=generator, dtype=obs.dtype).to(obs.device)
    x = (obs + start.sign() * step).detach()
    for i in range(steps):
        x.requires_grad_(True)
        (grad,) = torch.autograd.grad(policy_divergence(policy, obs, x).mean(), x)
        jitter = torch.randn(obs.shape, generator=generator, dtype=obs.dtype).to(obs.device)
        update = (grad + noise / (i + 2) * jitter).sign() * step
        x = torch.minimum(torch.maximum(x.detach() + update, obs - radius), obs + radius)
    return policy_divergence(policy, obs, x.detach()).mean()


class SAPPO(PPO):
    """PPO with the SA regulariser (see the module doc).

    :param policy: as PPO.
    :param env: as PPO.
    :param sa_kappa: weight of the regulariser (0: plain PPO).
    :param sa_eps: budget radius in the policy's input space.
    :param sa_steps: SGLD steps of the inner maximisation.
    :param sa_scale: per-feature multipliers of ``sa_eps`` (0 = never perturbed), or None.
    :param kwargs: PPO's other arguments.
    """

    def __init__(
        self,
        policy: Any,
        env: Any,
        sa_kappa: float = 0.1,
        sa_eps: float = 0.05,
        sa_steps: int = 10,
        sa_scale: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        if sa_kappa < 0 or sa_eps < 0 or sa_steps < 1:
            raise ValueError("SAPPO: sa_kappa and sa_eps must be >= 0 and sa_steps >= 1")
        self.sa_kappa, self.sa_eps, self.sa_steps = float(sa_kappa), float(sa_eps), int(sa_steps)
        self.sa_scale = None if sa_scale is None else [float(v) for v in sa_scale]
        self._sa_batch: torch.Tensor | None = None
        self._sa_values: list[float] = []
        super().__init__(policy, env, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_sa_batch", "_sa_values"]

    def _setup_model(self) -> None:
        super()._setup_model()
        evaluate, zero_grad = self.policy.evaluate_actions, self.policy.optimizer.zero_grad

        def capture(obs: torch.Tensor, actions: torch.Tensor) -> Any:
            self._sa_batch = obs
            return evaluate(obs, actions)

        def zero_then_penalise(*args: Any, **kwargs: Any) -> None:
            zero_grad(*args, **kwargs)
            if self._sa_batch is not None and self.sa_kappa > 0:
                penalty = self.regularizer(self._sa_batch)
                (self.sa_kappa * penalty).backward()
                self._sa_values.append(float(penalty.detach()))
            self._sa_batch = None

        self.policy.evaluate_actions = capture  # type: ignore[method-assign,assignment]
        self.policy.optimizer.zero_grad = zero_then_penalise  # type: ignore[method-assign]

    def regularizer(self, obs: torch.Tensor) -> torch.Tensor:
        """The SA regulariser on a batch of policy inputs (differentiable in the weights).

        :param obs: observations (B, n).
        """
        scale = None if self.sa_scale is None else torch.as_tensor(self.sa_scale)
        return sa_regularizer(self.policy, obs.float(), self.sa_eps, self.sa_steps, scale)

    def train(self) -> None:
        """PPO's update with the penalty; logs ``train/sa_regularizer`` (its mean)."""
        self._sa_values = []
        super().train()
        if self._sa_values:
            self.logger.record("train/sa_regularizer", float(np.mean(self._sa_values)))


__all__ = ["SAPPO", "policy_divergence", "sa_regularizer"]
