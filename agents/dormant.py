"""DrM's dormant-ratio machinery (Xu et al. 2024), as MENTOR uses it.

- :func:`dormant_ratio`: the fraction of dormant neurons over every ``nn.Linear`` of a model
  (MENTOR: the actor, mixture of experts included). A neuron (an output unit of a Linear) is
  dormant when its batch-mean ``|activity|`` is below ``threshold`` (0.025) times the mean
  of that layer's neurons. Every call of a Linear counts (a Linear called twice counts twice);
  a Linear not called (a sparse-dispatch expert no row chose) counts nothing.

  The activity is what the authors' ``cal_dormant_ratio`` actually measures: its hook keeps the
  Linear's output tensor, and where that Linear feeds a ``ReLU(inplace=True)`` (the actor's
  first hidden layer, each expert's first layer, the gate's first layer) the ReLU then
  overwrites the kept tensor, so those layers count their *post-ReLU* activity (a unit that
  is always negative is dormant); the others (trunk, experts' output layers, the gate's
  logits, the action head) count their pre-activation. ``post_relu=False`` measures every
  layer before its activation instead. A Linear feeds a ReLU when it is directly followed by
  ``nn.ReLU`` in an ``nn.Sequential``, or when the model lists it in a
  ``relu_fed_linears()`` method (networks that call ``F.relu``, e.g.
  :class:`rlkit.networks.DrQActor`).
- :func:`exploration_std`: ``sigma = c / (1 + exp(-temp (beta - target)))``, c 0.8 on DMC and
  1.0 on Meta-World/Adroit, temp 10, target 0.2.
- :func:`value_mix`: ``lambda = max_lambda / (1 + exp(temp (beta - target)))``, max 0.6,
  temp 50 (constant 0.5 on Meta-World: the agent's ``lambda_mode: fixed``).
- :func:`perturb_factor`: ``alpha = min(max(alpha_min, 1 - rate beta), alpha_max)`` (rate 2,
  alpha_min 0.2), the order of the authors' ``min(max(...))``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def relu_fed_linears(model: nn.Module) -> set[int]:
    """Ids of the Linear layers of ``model`` whose output goes through a ReLU (see the module
    docstring).

    :param model: the network.
    """
    fed: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            layers = list(module)
            fed |= {
                id(a)
                for a, b in zip(layers[:-1], layers[1:], strict=True)
                if isinstance(a, nn.Linear) and isinstance(b, nn.ReLU)
            }
        listed = getattr(module, "relu_fed_linears", None)
        if callable(listed):
            fed |= {id(m) for m in listed()}
    return fed


def dormant_ratio(
    model: nn.Module, *inputs: Any, threshold: float = 0.025, post_relu: bool = True
) -> tuple[float, list[float]]:
    """Dormant fraction over every Linear call in one no-grad forward of ``model(*inputs)``.

    :param model: the network (its current train/eval mode is used as it is).
    :param inputs: its forward arguments (a batch).
    :param threshold: fraction of the layer's mean activity below which a neuron is dormant.
    :param post_relu: measure ReLU-fed layers after their ReLU (the authors' effective
        behaviour); False: every layer before its activation.
    :return: (overall ratio, per-Linear-call ratios in call order).
    """
    fed = relu_fed_linears(model) if post_relu else set()
    outputs: list[torch.Tensor] = []

    def keep(module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        out = out.detach()
        outputs.append(out.clamp(min=0) if id(module) in fed else out)

    handles = [
        module.register_forward_hook(keep)
        for module in model.modules()
        if isinstance(module, nn.Linear)
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    dormant = total = 0
    per_layer: list[float] = []
    for out in outputs:
        activity = out.abs().reshape(-1, out.shape[-1]).mean(dim=0)
        count = int((activity < threshold * activity.mean()).sum())
        dormant, total = dormant + count, total + activity.numel()
        per_layer.append(count / activity.numel())
    return (dormant / total if total else 0.0), per_layer


def exploration_std(
    beta: float, scale: float = 0.8, target: float = 0.2, temperature: float = 10.0
) -> float:
    """Exploration noise std from the dormant ratio (more dormant, more noise).

    :param beta: the actor's dormant ratio.
    :param scale: the maximum std c (0.8 DMC, 1.0 Meta-World/Adroit).
    :param target: the ratio at which the std is c / 2.
    :param temperature: the sigmoid's steepness.
    """
    return scale / (1.0 + math.exp(-temperature * (beta - target)))


def value_mix(
    beta: float, max_lambda: float = 0.6, target: float = 0.2, temperature: float = 50.0
) -> float:
    """Weight lambda of V(s') in the TD target (more dormant, less exploitation).

    :param beta: the actor's dormant ratio.
    :param max_lambda: lambda at beta far below the target (0.6).
    :param target: the ratio at which lambda is half of ``max_lambda``.
    :param temperature: the sigmoid's steepness.
    """
    return max_lambda / (1.0 + math.exp(temperature * (beta - target)))


def perturb_factor(
    beta: float, rate: float = 2.0, alpha_min: float = 0.2, alpha_max: float = 1.0
) -> float:
    """Share alpha of the current weights kept by a perturbation.

    :param beta: the actor's dormant ratio.
    :param rate: slope of ``1 - rate * beta``.
    :param alpha_min: lower clip.
    :param alpha_max: upper clip (per task in MENTOR).
    """
    return min(max(alpha_min, 1.0 - rate * beta), alpha_max)
