"""A plain transcription of the O-DICE authors' update, the reference rlkit's agent is checked
and timed against.

It does what their ``odice.py`` does, step by step: separate forward passes for V(s), V(s') and
the target, a ``MultivariateNormal`` policy with a diagonal ``scale_tril``, the forward and
backward gradients gathered by two ``backward`` calls into per-parameter clones, the projection
coefficient read back to the host with ``.item()``, a third ``backward`` for the linear term, the
target EMA parameter by parameter, plain (for-loop) Adam. Written for rlkit's benchmarks and
tests; the network modules are rlkit's (same layers, same initialisation), so both sides start
from identical weights.
"""

from __future__ import annotations

import copy

import torch
from torch.distributions import MultivariateNormal

from rlkit.agents.odice import f_star, policy_weight
from rlkit.networks import LOG_STD_MAX, LOG_STD_MIN, GaussianPolicy, TwinValue


class ReferenceODICE:
    """The authors' update on rlkit's networks (copied from an :class:`ODICEAgent`).

    :param value: the twin value net (copied).
    :param policy: the Gaussian policy (copied).
    :param rule: ``orthogonal``, ``true_gradient`` or ``semi_gradient``.
    :param lam: lambda.
    :param eta: eta.
    :param discount: gamma.
    :param value_lr: value learning rate.
    :param policy_lr: policy learning rate.
    :param weight_decay: policy weight decay.
    :param tau: target EMA rate.
    """

    def __init__(
        self,
        value: TwinValue,
        policy: GaussianPolicy,
        rule: str = "orthogonal",
        lam: float = 0.6,
        eta: float = 1.0,
        discount: float = 0.99,
        value_lr: float = 2e-4,
        policy_lr: float = 2e-4,
        weight_decay: float = 1e-4,
        tau: float = 0.005,
    ) -> None:
        self.vf = copy.deepcopy(value)
        self.vf_target = copy.deepcopy(value).requires_grad_(False)
        self.policy = copy.deepcopy(policy)
        self.v_optimizer = torch.optim.Adam(self.vf.parameters(), lr=value_lr, foreach=False)
        self.policy_optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=policy_lr, weight_decay=weight_decay, foreach=False
        )
        self.rule, self.lam, self.eta = rule, lam, eta
        self.discount, self.tau = discount, tau

    def distribution(self, obs: torch.Tensor) -> MultivariateNormal:
        """The authors' policy distribution."""
        std = torch.exp(self.policy.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX))
        return MultivariateNormal(self.policy.mean(obs), scale_tril=torch.diag(std))

    def update(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        next_obs: torch.Tensor,
        rewards: torch.Tensor,
        terminals: torch.Tensor,
    ) -> float:
        """One value step and one policy step; returns the projection coefficient (orthogonal).

        :param obs: observations (B, d).
        :param actions: actions in [-1, 1] (B, a).
        :param next_obs: next observations.
        :param rewards: rewards (B,).
        :param terminals: terminal flags (B,).
        """
        not_done = 1.0 - terminals.float()
        coef = 0.0
        if self.rule == "orthogonal":
            with torch.no_grad():
                target_v = self.vf_target(obs)
                target_v_next = self.vf_target(next_obs)
            v = self.vf.both(obs)
            v_next = self.vf.both(next_obs)
            forward = rewards + not_done * self.discount * target_v_next - v
            backward = rewards + not_done * self.discount * v_next - target_v
            forward_loss = torch.mean(self.lam * f_star(forward))
            backward_loss = torch.mean(self.lam * self.eta * f_star(backward))
            pi_residual = forward.clone().detach()
            self.v_optimizer.zero_grad(set_to_none=True)
            forward_loss.backward(retain_graph=True)
            params = list(self.vf.parameters())
            forward_grads = [p.grad.clone().detach().reshape(-1) for p in params]
            backward_loss.backward()
            backward_grads = [
                p.grad.clone().detach().reshape(-1) - forward_grads[i] for i, p in enumerate(params)
            ]
            gf, gb = torch.cat(forward_grads), torch.cat(backward_grads)
            coef = (torch.dot(gf, gb) / max(torch.dot(gf, gf), 1e-10)).item()
            combined = (1 - coef) * gf + gb
            self.v_optimizer.zero_grad(set_to_none=True)
            torch.mean((1 - self.lam) * v).backward()
            start = 0
            for p in params:
                size = p.numel()
                p.grad += combined[start : start + size].reshape(p.grad.shape)
                start += size
            self.v_optimizer.step()
        else:
            if self.rule == "true_gradient":
                v, v_next = self.vf.both(obs), self.vf.both(next_obs)
            else:
                with torch.no_grad():
                    v_next = self.vf_target(next_obs)
                v = self.vf.both(obs)
            residual = rewards + not_done * self.discount * v_next - v
            pi_residual = residual.clone().detach()
            loss = torch.mean((1 - self.lam) * v + self.lam * f_star(residual))
            self.v_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.v_optimizer.step()
        with torch.no_grad():
            for target, source in zip(
                self.vf_target.parameters(), self.vf.parameters(), strict=True
            ):
                target.mul_(1.0 - self.tau).add_(source, alpha=self.tau)
        weight = policy_weight(pi_residual).detach()
        policy_loss = torch.mean(weight * -self.distribution(obs).log_prob(actions))
        self.policy_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_optimizer.step()
        return coef
