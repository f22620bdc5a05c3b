"""O-DICE (Mao et al., ICLR 2024): DICE value learning with the orthogonal-gradient update, and
the policy extracted by weighted behaviour cloning.

The value net V minimises ``(1 - lam) E[V(s)] + lam E[f*(r + gamma V(s') - V(s))]``. Its true
gradient has a forward part (through V(s)) and a backward part (through V(s')); the update rules:

- ``orthogonal`` (O-DICE): forward gradient plus ``eta`` times the backward gradient projected
  onto the normal plane of the forward one, ``g = g0 + gf + (gb - <gf, gb> / |gf|^2 gf)``, where
  the forward residual uses the target net on s' and the backward residual the target net on s;
- ``true_gradient``: the full gradient (OptiDICE-like); ``semi_gradient``: the target net on s'
  (S-DICE / EQL-like). The authors' ``--type`` names: orthogonal_true_g, true_g, semi_g.

Faithful to the authors' code (their ``odice.py`` and ``configs/offline_RL.yaml``): twin value
heads with LayerNorm (2x256), both heads trained and their minimum as the target, EMA target
0.005, lam 0.6 and eta 1.0, Pearson chi-square f* by default, the policy weight ``relu(residual)``
(chi-square; ``exp(residual - 1)`` for reverse KL) clipped at 100 and averaged over the heads
by broadcasting, a Gaussian policy 2x1024 with a state-independent log-std, Adam 2e-4 with policy
weight decay 1e-4, one value step then one policy step per batch.

Differences, none of which changes the arithmetic (tested against a transcription of their
update): the projection coefficient stays a tensor (their ``.item()`` waits for the device every
step), the three value gradients are taken with ``autograd.grad`` and flattened once (no
per-parameter clones), the target EMA is one fused ``lerp``, Adam runs its fused kernel,
and the Gaussian log-density is written out instead of building a ``MultivariateNormal`` (same
value).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, Literal

import gymnasium as gym
import torch

from rlkit.agents.bc import BCAgent
from rlkit.agents.odice_value import orthogonal_gradient
from rlkit.batch import Batch
from rlkit.networks import TwinValue

UpdateRule = Literal["orthogonal", "true_gradient", "semi_gradient"]
Divergence = Literal["chi_square", "reverse_kl"]


def f_star(residual: torch.Tensor, divergence: Divergence = "chi_square") -> torch.Tensor:
    """Convex conjugate f* of the divergence's generator, as the authors code it.

    Pearson chi-square (f(x) = (x - 1)^2, x >= 0): ``y w - (w - 1)^2`` with
    ``w = max(y / 2 + 1, 0)``; reverse KL: ``exp(y - 1)``.

    :param residual: the TD residual ``r + gamma V(s') - V(s)``.
    :param divergence: ``chi_square`` or ``reverse_kl``.
    """
    if divergence == "reverse_kl":
        return torch.exp(residual - 1.0)
    omega = torch.clamp_min(residual / 2.0 + 1.0, 0.0)
    return residual * omega - (omega - 1.0).square()


def policy_weight(
    residual: torch.Tensor, divergence: Divergence = "chi_square", max_weight: float = 100.0
) -> torch.Tensor:
    """Weighted-BC weight of each sample: ``relu(residual)`` (chi-square; the authors' choice, not
    the analytic ``residual / 2 + 1``) or ``exp(residual - 1)`` (reverse KL), clipped above.

    :param residual: the forward TD residual (detached).
    :param divergence: ``chi_square`` or ``reverse_kl``.
    :param max_weight: upper clip (the authors' 100).
    """
    weight = torch.exp(residual - 1.0) if divergence == "reverse_kl" else torch.relu(residual)
    return torch.clamp_max(weight, max_weight)


def project_out(gf: torch.Tensor, gb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(gb - c gf, c)`` with ``c = <gf, gb> / max(|gf|^2, 1e-10)``: the part of ``gb``
    orthogonal to ``gf`` (``gb`` itself when they are orthogonal), ``c`` kept on the device.

    :param gf: the flattened forward gradient.
    :param gb: the flattened backward gradient.
    """
    coef = torch.dot(gf, gb) / torch.clamp_min(torch.dot(gf, gf), 1e-10)
    return gb - coef * gf, coef


def _flat(grads: tuple[torch.Tensor | None, ...], params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


class ODICEAgent(BCAgent):
    """O-DICE value learning plus weighted behaviour cloning (see the module docstring).

    :param observation_space: flat Box observations.
    :param action_space: Box actions (learned in [-1, 1] units).
    :param update_rule: ``orthogonal`` (O-DICE), ``true_gradient`` or ``semi_gradient``.
    :param f_divergence: ``chi_square`` (Pearson, the default) or ``reverse_kl``.
    :param lam: weight lambda of the f* term against the linear ``E[V(s)]`` term.
    :param eta: scale of the backward gradient (orthogonal rule).
    :param value_hidden: hidden sizes of each value head.
    :param layer_norm: LayerNorm in the value heads (the authors turn it off on AntMaze).
    :param twin_v: two value heads, their minimum for targets.
    :param value_lr: Adam learning rate of the value net.
    :param tau: EMA rate of the target value net.
    :param max_weight: clip of the policy weights.
    :param policy_hidden: hidden sizes of the policy (the authors' [1024, 1024]).
    :param tanh_mean: squash the policy mean (the authors' offline-imitation setting).
    :param policy_lr: Adam learning rate of the policy.
    :param weight_decay: Adam weight decay of the policy.
    :param lr: when given, the learning rate of value net and policy (``agent.learning_rate``).
    :param batch_size: transitions per update.
    :param discount: discount gamma.
    :param compile_value: (orthogonal rule) compute the value gradient with one compiled function
        (:mod:`rlkit.agents.odice_value`, ``torch.compile``; needs a C++ compiler on the CPU and
        about half a minute once per process); the same arithmetic as the default, faster on the
        CPU. Falls back to the default, with a warning, where compiling fails.
    :param device: torch device.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        update_rule: UpdateRule = "orthogonal",
        f_divergence: Divergence = "chi_square",
        lam: float = 0.6,
        eta: float = 1.0,
        value_hidden: tuple[int, ...] = (256, 256),
        layer_norm: bool = True,
        twin_v: bool = True,
        value_lr: float = 2e-4,
        tau: float = 0.005,
        max_weight: float = 100.0,
        policy_hidden: tuple[int, ...] = (1024, 1024),
        tanh_mean: bool = False,
        policy_lr: float = 2e-4,
        weight_decay: float = 1e-4,
        lr: float | None = None,
        batch_size: int = 256,
        discount: float = 0.99,
        compile_value: bool = False,
        device: str = "cpu",
    ) -> None:
        if not 0.0 < lam < 1.0:
            raise ValueError(f"lam must lie in (0, 1), got {lam}")
        if update_rule not in ("orthogonal", "true_gradient", "semi_gradient"):
            raise ValueError(
                f"update_rule {update_rule!r}: allowed orthogonal, true_gradient, semi_gradient"
            )
        super().__init__(
            observation_space,
            action_space,
            policy_hidden=policy_hidden,
            tanh_mean=tanh_mean,
            policy_lr=policy_lr,
            weight_decay=weight_decay,
            lr=lr,
            batch_size=batch_size,
            discount=discount,
            device=device,
        )
        self.update_rule, self.divergence = update_rule, f_divergence
        self.layer_norm = layer_norm
        compiled = compile_value and update_rule == "orthogonal"
        self._gradient_fn = torch.compile(orthogonal_gradient, dynamic=False) if compiled else None
        self.lam, self.eta, self.tau, self.max_weight = lam, eta, tau, max_weight
        hidden = list(value_hidden)
        self.value = TwinValue(self.obs_dim, hidden, layer_norm, twin_v).to(self.device)
        self.value_target = copy.deepcopy(self.value).requires_grad_(False)
        self.value_params: list[torch.Tensor] = list(self.value.parameters())
        self.value_opt = torch.optim.Adam(
            self.value_params, lr=value_lr if lr is None else lr, fused=True
        )

    def training_modules(self) -> dict[str, Any]:
        """Value nets and both optimisers (beyond the policy)."""
        return {
            **super().training_modules(),
            "value": self.value,
            "value_target": self.value_target,
            "value_opt": self.value_opt,
        }

    def update(self, batch: Batch, step: int) -> dict[str, Any]:
        """One value step (the configured rule) and one weighted-BC policy step.

        :param batch: dataset transitions (``discount`` = gamma * (1 - terminal)).
        :param step: updates so far.
        :return: 0-d tensors: value and policy losses, mean V, TD residual stats, weights (and the
            fraction of samples of weight zero, which the policy step skips on the CPU).
        """
        obs, action, batch = self._prepare(batch)
        next_obs = self.normalizer(batch.next_obs)
        reward, discount = batch.reward.reshape(-1), batch.discount.reshape(-1)
        residual, metrics = self._value_step(obs, next_obs, reward, discount)
        weight = policy_weight(residual, self.divergence, self.max_weight)
        metrics["policy_loss"] = self.policy_step(obs, action, weight)
        metrics.update(
            td_mean=residual.mean(), td_min=residual.min(), td_max=residual.max(),
            weight_mean=weight.mean(), weight_max=weight.max(),
            weight_zero_fraction=(weight.reshape(-1, len(obs)).mean(0) == 0).float().mean(),
        )  # fmt: skip
        return metrics

    def _value_step(
        self,
        obs: torch.Tensor,
        next_obs: torch.Tensor,
        reward: torch.Tensor,
        discount: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Update V; return the forward residual (heads, B), detached, and metrics."""
        lam, batch = self.lam, len(obs)
        if self._gradient_fn is not None:
            return self._compiled_step(obs, next_obs, reward, discount)
        if self.update_rule == "semi_gradient":
            with torch.no_grad():
                target_next = self.value_target(next_obs)
            v = self.value.both(obs)
            residual = reward + discount * target_next - v
            loss = ((1.0 - lam) * v + lam * f_star(residual, self.divergence)).mean()
            self._descend(loss)
            metrics = {"value_loss": loss.detach(), "v_mean": v.detach().mean()}
            return residual.detach(), metrics
        # separate passes over s and s': each gradient then backpropagates through its half only
        v, v_next = self.value.both(obs), self.value.both(next_obs)
        if self.update_rule == "true_gradient":
            residual = reward + discount * v_next - v
            loss = ((1.0 - lam) * v + lam * f_star(residual, self.divergence)).mean()
            self._descend(loss)
            metrics = {"value_loss": loss.detach(), "v_mean": v.detach().mean()}
            return residual.detach(), metrics
        with torch.no_grad():
            target = self.value_target(torch.cat([obs, next_obs]))
        target_v, target_next = target[:batch], target[batch:]
        forward = reward + discount * target_next - v  # gradient through V(s) only
        backward = reward + discount * v_next - target_v  # through V(s') only
        loss_f = lam * f_star(forward, self.divergence).mean()
        loss_b = lam * self.eta * f_star(backward, self.divergence).mean()
        loss_0 = (1.0 - lam) * v.mean()
        params = self.value_params
        gf = _flat(torch.autograd.grad(loss_f, params, retain_graph=True), params)
        gb = _flat(torch.autograd.grad(loss_b, params, retain_graph=True), params)
        g0 = _flat(torch.autograd.grad(loss_0, params), params)
        orthogonal, coef = project_out(gf, gb)
        flat = g0 + gf + orthogonal
        sizes = [p.numel() for p in params]
        grads = [g.view_as(p) for g, p in zip(flat.split(sizes), params, strict=True)]
        return self._apply_orthogonal(grads, forward.detach(), coef, v.detach())

    def _compiled_step(
        self,
        obs: torch.Tensor,
        next_obs: torch.Tensor,
        reward: torch.Tensor,
        discount: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The orthogonal step with the compiled gradient (``compile_value``)."""
        heads = [list(head.parameters()) for head in self.value.heads]
        targets = [list(head.parameters()) for head in self.value_target.heads]
        args = (obs, next_obs, reward, discount, self.lam, self.eta, self.divergence)
        try:
            with torch.no_grad():
                grads, residual, coef, v = self._gradient_fn(heads, targets, *args, self.layer_norm)  # type: ignore[misc]
        except Exception as error:  # noqa: BLE001 - any compiler failure: run uncompiled
            warnings.warn(
                f"O-DICE compile_value: compiling failed ({type(error).__name__}: {error}); "
                "running the uncompiled update",
                stacklevel=2,
            )
            self._gradient_fn = None
            return self._value_step(obs, next_obs, reward, discount)
        return self._apply_orthogonal(grads, residual, coef, v)

    def _apply_orthogonal(
        self, grads: list[torch.Tensor], forward: torch.Tensor, coef: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Step V with the orthogonal gradient (one per value parameter); the residual, metrics."""
        for param, grad in zip(self.value_params, grads, strict=True):
            param.grad = grad
        self.value_opt.step()
        self._track_target()
        loss_f = self.lam * f_star(forward, self.divergence).mean()
        metrics = {
            "value_loss": (1.0 - self.lam) * v.mean() + loss_f,
            "v_mean": v.mean(),
            "parallel_coef": coef,
        }
        return forward, metrics

    def _descend(self, loss: torch.Tensor) -> None:
        self.value_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.value_opt.step()
        self._track_target()

    @torch.no_grad()
    def _track_target(self) -> None:
        torch._foreach_lerp_(list(self.value_target.parameters()), self.value_params, self.tau)
