"""MENTOR's task-oriented perturbation and DrM's reset-style perturbation.

:class:`BestAgents` is S_top: the parameters of the (up to) 10 agents with the highest
training-episode returns, offered one per episode end. While not full every offer joins; once
full an offer replaces the lowest-return member only if its return is strictly higher (the
authors' ``models_tuple.add``). Members are stored as one stacked tensor per parameter,
``(capacity, *shape)``, holding only what the blend needs (the parameters of actor, critic,
target critic and value net; no buffers, no optimiser state), and they are part of the agent's
saved state so resuming is exact. Size: ``capacity * 4 bytes * parameters``; for the pixel
agent (repr 39200, feature 50, hidden 1024, 16 experts) about 22.2M parameters, so about
884 MB for 10 members; for a state agent on cartpole (5 inputs, width 1024) 14.2M, 570 MB
(width 512, the CPU config: 5.8M, 233 MB).

:func:`blend` moves every parameter toward a target: ``theta <- alpha theta + (1 - alpha) phi``.
The targets are

- ``task_oriented`` (:meth:`BestAgents.sample`): ``phi ~ N(mu, sigma)`` element-wise, with mu
  and sigma the mean and (unbiased) std of that parameter over S_top, sigma floored at 1e-7;
- ``reset`` (:func:`fresh_like`): a fresh initialisation of the same network (DrM).

Differences from the authors' code (emlynw/mentor 2005f05, ``utils.perturb`` and
``models_tuple``), all deliberate:

1. **Every parameter is blended**, each toward its own statistics. The released
   ``cal_params_stats``/``sampled_model`` select layers by the substring "moe" in module names;
   called on ``actor.moe.experts`` and ``actor.moe.gate`` (whose module names have no "moe")
   they select nothing, so experts and gate are blended toward a *fresh init* instead of
   S_top - and twice, because the first call on the whole actor already blended them toward a
   fresh init. The upstream version of the same functions reached the MoE through
   ``model._modules[...]`` on the Actor object and raised, or wrote tensors into misaligned
   layers. Here each parameter tensor is paired by name with its own S_top statistics.
2. **LayerNorm parameters are blended too** (the authors keep them as they are: only Linear
   and Conv2d weights and biases are touched); ``blend_layernorm=False`` in the agent keeps
   the authors' choice.
3. **One stored agent**: the authors' unbiased std of a single member is NaN (NaN weights);
   here it is 0 and so floored to 1e-7 (phi = that member). An empty S_top skips the blend
   (only the optimiser state is reset).
4. The optimiser state is reset by clearing ``optimizer.state`` (as the authors); Adam's step
   counts start over.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

STD_FLOOR = 1e-7


def named_parameters(nets: Mapping[str, nn.Module]) -> dict[str, torch.Tensor]:
    """Every parameter of ``nets``, named ``"<net>.<parameter>"``, in a fixed order.

    :param nets: networks by name (e.g. actor, critic, critic_target, value).
    """
    return {
        f"{name}.{key}": param
        for name, net in nets.items()
        for key, param in net.named_parameters()
    }


def is_blended(name: str, nets: Mapping[str, nn.Module], layernorm: bool = True) -> bool:
    """Whether parameter ``name`` (as :func:`named_parameters` names it) is blended.

    :param name: ``"<net>.<parameter>"``.
    :param nets: the networks.
    :param layernorm: blend LayerNorm parameters too (the authors do not).
    """
    if layernorm:
        return True
    net_name, _, key = name.partition(".")
    owner = nets[net_name].get_submodule(key.rpartition(".")[0])
    return not isinstance(owner, nn.LayerNorm)


class BestAgents:
    """S_top: parameters of the ``capacity`` best agents by training-episode return.

    :param capacity: members kept (10 in MENTOR).
    """

    def __init__(self, capacity: int = 10) -> None:
        if capacity < 1:
            raise ValueError(f"BestAgents capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.returns: list[float] = []
        self.stacks: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.returns)

    def offer(self, episode_return: float, params: Mapping[str, torch.Tensor]) -> bool:
        """Keep ``params`` if the set has room or ``episode_return`` beats its lowest member.

        :param episode_return: the episode's training return.
        :param params: the agent's parameters now (copied in).
        :return: whether they were kept.
        """
        if len(self.returns) < self.capacity:
            slot = len(self.returns)
            self.returns.append(float(episode_return))
        else:
            slot = min(range(self.capacity), key=self.returns.__getitem__)
            if not episode_return > self.returns[slot]:
                return False
            self.returns[slot] = float(episode_return)
        with torch.no_grad():
            for name, value in params.items():
                if name not in self.stacks:
                    self.stacks[name] = value.new_zeros((self.capacity, *value.shape))
                self.stacks[name][slot].copy_(value)
        return True

    def statistics(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Element-wise mean and std (unbiased, floored at 1e-7) of parameter ``name``.

        :param name: a parameter name as offered.
        """
        members = self.stacks[name][: len(self.returns)]
        std = members.std(dim=0) if len(members) > 1 else torch.zeros_like(members[0])
        return members.mean(dim=0), std.clamp(min=STD_FLOOR)

    def sample(
        self, names: list[str], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``phi = mu + sigma * eps``, eps standard normal, one draw per parameter in ``names``
        order (from ``generator``, or torch's global RNG).

        :param names: parameters to sample.
        :param generator: the random generator (None: global, checkpointed by the loop).
        """
        out = {}
        for name in names:
            mean, std = self.statistics(name)
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
            out[name] = mean + std * noise.to(mean.device)
        return out

    def state_dict(self) -> dict[str, Any]:
        """Returns and stacked parameters (weights-only loadable)."""
        return {
            "capacity": self.capacity,
            "returns": torch.tensor(self.returns, dtype=torch.float64),
            "stacks": dict(self.stacks),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        :param state: what it returned.
        """
        self.capacity = int(state["capacity"])
        self.returns = [float(r) for r in state["returns"].tolist()]
        self.stacks = {name: value.clone() for name, value in state["stacks"].items()}

    def nbytes(self) -> int:
        """Bytes held by the stored members (allocated for the full capacity)."""
        return sum(t.numel() * t.element_size() for t in self.stacks.values())


def fresh_like(
    nets: Mapping[str, nn.Module], init: Callable[[nn.Module], None]
) -> dict[str, torch.Tensor]:
    """Parameters of freshly initialised copies of ``nets`` (DrM's reset target).

    LayerNorms come back to weight 1 and bias 0; every other layer is re-drawn with ``init``
    (for ``module.apply``).

    :param nets: the networks.
    :param init: the initialiser, e.g. :func:`rlkit.networks.weight_init`.
    """
    fresh: dict[str, nn.Module] = {}
    for name, net in nets.items():
        twin = copy.deepcopy(net)
        for module in twin.modules():
            if isinstance(module, nn.LayerNorm):
                module.reset_parameters()
        twin.apply(init)
        fresh[name] = twin
    return {k: v.detach() for k, v in named_parameters(fresh).items()}


def blend(
    nets: Mapping[str, nn.Module],
    targets: Mapping[str, torch.Tensor],
    alpha: float,
    names: list[str] | None = None,
) -> None:
    """``theta <- alpha theta + (1 - alpha) phi`` for every parameter in ``names`` (default: all).

    :param nets: the networks (changed in place).
    :param targets: phi by parameter name.
    :param alpha: share of the current weights kept.
    :param names: parameters to blend (None: every parameter of ``nets``).
    """
    params = named_parameters(nets)
    with torch.no_grad():
        for name in params if names is None else names:
            params[name].mul_(alpha).add_(targets[name].to(params[name]), alpha=1.0 - alpha)


def reset_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Forget the optimiser's moments and step counts (the authors' ``state = defaultdict``).

    :param optimizer: the optimiser.
    """
    optimizer.state = defaultdict(dict)
