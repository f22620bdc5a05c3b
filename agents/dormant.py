"""DrM's dormant-ratio machinery (Xu et al. 2024), as MENTOR uses it.

- :func:`dormant_ratio`: the fraction of dormant neurons over every ``nn.Linear`` of a model
  (MENTOR: the actor, mixture of experts included). A neuron (an output unit of a Linear) is
  dormant when its batch-mean ``|pre-activation|`` is below ``threshold`` (0.025) times the mean
  of that layer's neurons. Every call of a Linear counts (a Linear called twice counts twice);
  a Linear not called (a sparse-dispatch expert no row chose) counts nothing - the authors'
  ``cal_dormant_ratio`` behaves the same way.
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


def dormant_ratio(
    model: nn.Module, *inputs: Any, threshold: float = 0.025
) -> tuple[float, list[float]]:
    """Dormant fraction over every Linear call in one no-grad forward of ``model(*inputs)``.

    :param model: the network (its current train/eval mode is used as it is).
    :param inputs: its forward arguments (a batch).
    :param threshold: fraction of the layer's mean activity below which a neuron is dormant.
    :return: (overall ratio, per-Linear-call ratios in call order).
    """
    outputs: list[torch.Tensor] = []
    handles = [
        module.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
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
