"""SA regularisation (Zhang et al., NeurIPS 2020, "SA-MDP"): PPO and SAC whose loss adds
``kappa`` times the largest change of the policy within the observation budget.

``agent.name: rlkit.agents.sa:SAPPO`` or ``rlkit.agents.sa:SASAC`` (stable-baselines3
subclasses, registered by class path); ``agent.kwargs``: the algorithm's own plus ``sa_kappa``,
``sa_eps``, ``sa_steps``, ``sa_scale``.

The regulariser is SA-PPO's (their ``get_state_kl_bound_sgld``)::

    R = mean_s max_{|s' - s| <= eps} D(pi(.|s) || pi(.|s'))

with the clean side held fixed (no gradient through it). For PPO, D is
``sum_j (mu_j(s') - mu_j(s))^2 / sigma_j^2`` for a Gaussian policy (twice the KL of two
Gaussians with the same sigma: their expression, without the 1/2) and the KL of the two
categoricals for a discrete one; for SAC it is SA-DDPG's ``||pi(s') - pi(s)||^2`` of the
deterministic (tanh-squashed) action. The inner maximisation is their SGLD: start one step from
``s`` in a random-sign direction, then ``sa_steps`` sign steps of ``eps / sa_steps`` of the
gradient plus a vanishing noise (inverse temperature 1e-5), projected onto the box. ``sa_scale``
gives per-feature multipliers of ``eps`` (0 = a feature never perturbed, e.g. calendar
features); the box lives in the policy's input space (raw observations unless
``env.normalize_obs``).

The penalty enters every minibatch step (PPO: the policy's; SAC: the actor's): its gradient is
added when SB3 zeroes the gradients, just before its own ``loss.backward()``, so PPO's gradient
clipping and the optimiser step see exactly the gradient of ``loss + kappa * R`` (with
``sa_kappa: 0`` the updates are the algorithm's, bit for bit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.distributions import CategoricalDistribution

from rlkit.agents.sa_sgld import check_sa_settings, sa_regularizer, tanh_mean_divergence


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


def actor_divergence(actor: Any, clean: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """SA-DDPG's per-sample ``||pi(perturbed) - pi(clean)||^2`` of an SB3 SAC/TD3 actor's
    deterministic action, the clean side detached.

    :param actor: the actor (``actor(obs, deterministic=True)`` gives the squashed action).
    :param clean: clean observations (B, n).
    :param perturbed: perturbed observations (B, n).
    """
    with torch.no_grad():
        reference = actor(clean, deterministic=True)
    return ((actor(perturbed, deterministic=True) - reference) ** 2).sum(dim=-1)


class _SARegularised:
    """What SAPPO and SASAC share: the settings, the penalty hook and its log.

    The hook wraps the method that first sees each minibatch's observations (``sa_hook``: the
    network attribute and its method, to keep them) and that network's optimiser's
    ``zero_grad`` (to add the penalty's gradient right after zeroing, before the algorithm's own
    ``backward``).
    """

    sa_kappa: float
    sa_eps: float
    sa_steps: int
    sa_scale: list[float] | None
    divergence: Any
    sa_hook: tuple[str, str]
    logger: Any

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
        self._sa_settings(sa_kappa, sa_eps, sa_steps, sa_scale)
        super().__init__(policy, env, **kwargs)  # type: ignore[call-arg]

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *SA_EXCLUDED]  # type: ignore[misc]

    def _setup_model(self) -> None:
        super()._setup_model()  # type: ignore[misc]
        network = getattr(self, self.sa_hook[0])
        self._sa_install(network, self.sa_hook[1], network, network.optimizer)

    def train(self, *args: Any, **kwargs: Any) -> None:
        """The algorithm's update with the penalty; logs ``train/sa_regularizer`` (its mean).

        :param args: the algorithm's ``train`` arguments.
        :param kwargs: its keyword arguments.
        """
        super().train(*args, **kwargs)  # type: ignore[misc]
        self._sa_log()

    def _sa_settings(self, kappa: float, eps: float, steps: int, scale: list[float] | None) -> None:
        check_sa_settings(type(self).__name__, kappa, eps, steps)
        self.sa_kappa, self.sa_eps, self.sa_steps = float(kappa), float(eps), int(steps)
        self.sa_scale = None if scale is None else [float(v) for v in scale]
        self._sa_batch: torch.Tensor | None = None
        self._sa_values: list[float] = []

    def _sa_install(self, owner: Any, method: str, network: Any, optimizer: Any) -> None:
        seen, zero_grad = getattr(owner, method), optimizer.zero_grad

        def capture(obs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            self._sa_batch = obs
            return seen(obs, *args, **kwargs)

        def zero_then_penalise(*args: Any, **kwargs: Any) -> None:
            zero_grad(*args, **kwargs)
            if self._sa_batch is not None and self.sa_kappa > 0:
                penalty = self.regularizer(self._sa_batch, network)
                (self.sa_kappa * penalty).backward()
                self._sa_values.append(float(penalty.detach()))
            self._sa_batch = None

        setattr(owner, method, capture)
        optimizer.zero_grad = zero_then_penalise

    def regularizer(self, obs: torch.Tensor, network: Any) -> torch.Tensor:
        """The SA regulariser on a batch of policy inputs (differentiable in the weights).

        :param obs: observations (B, n).
        :param network: the policy (PPO) or the actor (SAC).
        """
        scale = None if self.sa_scale is None else torch.as_tensor(self.sa_scale)
        return sa_regularizer(
            network, obs.float(), self.sa_eps, self.sa_steps, scale, divergence=self.divergence
        )

    def _sa_log(self) -> None:
        if self._sa_values:
            self.logger.record("train/sa_regularizer", float(np.mean(self._sa_values)))
        self._sa_values = []


SA_EXCLUDED = ["_sa_batch", "_sa_values"]


class SAPPO(_SARegularised, PPO):
    """PPO with the SA regulariser (see the module doc).

    :param policy: as PPO.
    :param env: as PPO.
    :param sa_kappa: weight of the regulariser (0: plain PPO).
    :param sa_eps: budget radius in the policy's input space.
    :param sa_steps: SGLD steps of the inner maximisation.
    :param sa_scale: per-feature multipliers of ``sa_eps`` (0 = never perturbed), or None.
    :param kwargs: PPO's other arguments.
    """

    divergence = staticmethod(policy_divergence)
    sa_hook = ("policy", "evaluate_actions")


class SASAC(_SARegularised, SAC):
    """SAC with SA-DDPG's regulariser: the largest change of the deterministic (tanh-squashed)
    action, ``||pi(s') - pi(s)||^2``, within the box, added to the actor's loss (same SGLD
    maximisation and hook as :class:`SAPPO`; SAC clips no gradients, so the order is moot).

    :param policy: as SAC.
    :param env: as SAC.
    :param sa_kappa: weight of the regulariser (0: plain SAC).
    :param sa_eps: budget radius in the policy's input space.
    :param sa_steps: SGLD steps of the inner maximisation.
    :param sa_scale: per-feature multipliers of ``sa_eps`` (0 = never perturbed), or None.
    :param kwargs: SAC's other arguments.
    """

    divergence = staticmethod(actor_divergence)
    sa_hook = ("actor", "action_log_prob")


__all__ = [
    "SAPPO",
    "SASAC",
    "actor_divergence",
    "check_sa_settings",
    "policy_divergence",
    "sa_regularizer",
    "tanh_mean_divergence",
]
