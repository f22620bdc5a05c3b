"""Fast input gradients for MLP policies: PGD and FGSM without autograd.

For the small MLP policies of SB3 (two hidden layers of 256 units), autograd bookkeeping and
per-operation dispatch cost far more than the arithmetic when a few observations are attacked at
a time: the authors' 100-step PGD spends most of its time outside the matmuls.  This module
compiles a policy that is a plain chain of layers into numpy arrays and computes the forward pass
and the input gradient of the attack loss by hand, then runs the whole PGD loop in numpy.

Recognised policies (anything else gives ``None`` from :func:`compile_policy`, and the attacks
fall back to autograd):

* :class:`rlkit.policy.PolicyView` (normaliser, then body) with float32 parameters;
* :class:`rlkit.policy.ObsNormalizer` (``clamp((x - mean) / std, -clip, clip)``);
* ``nn.Sequential`` / ``nn.Linear`` / ``nn.ReLU`` / ``nn.Tanh`` / ``nn.Identity`` /
  ``nn.Flatten`` (exact types, so subclasses with their own ``forward`` are not mistaken);
* the SB3 bodies of :mod:`rlkit.agents.sb3`: ``_ActorMean`` (SAC/TD3/DDPG actors) and
  ``_ActorCriticHead`` (PPO/A2C), when the features extractor is SB3's ``FlattenExtractor`` on a
  non-image ``Box`` space.

The gradient follows autograd's conventions: ReLU passes no gradient at 0, clamp passes it on the
closed range ``[-clip, clip]``, and a max over a group (``amax``) splits it evenly among tied
maxima.  Only 2-D observation batches on the CPU are handled.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .budget import BoundBudget
from .optim import ascent_direction, step_schedule

#: ``(z, rows) -> dL/dz``: gradient of the summed per-sample loss w.r.t. the policy output
#: ``z`` (B', k); ``rows`` (None = all) says which samples of the batch ``z`` holds.
OutputGrad = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]

_LINEAR, _RELU, _TANH, _AFFINE = "linear", "relu", "tanh", "affine_clamp"


# --------------------------------------------------------------------------- compiling
def _loaded_class(module: str, name: str) -> type | None:
    """Class ``name`` of an already imported module (None if not imported: nothing to match)."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def _sb3_features_ok(policy: nn.Module, extractor: nn.Module) -> bool:
    """Whether SB3's ``policy.extract_features(obs, extractor)`` is a plain float flatten."""
    try:
        from gymnasium import spaces
        from stable_baselines3.common.policies import ActorCriticPolicy, BaseModel
        from stable_baselines3.common.preprocessing import is_image_space
        from stable_baselines3.common.torch_layers import FlattenExtractor
    except ImportError:
        return False
    method = type(policy).extract_features
    if method is ActorCriticPolicy.extract_features:
        # without a shared extractor it returns an (actor, critic) tuple
        if not getattr(policy, "share_features_extractor", False):
            return False
    elif method is not BaseModel.extract_features:
        return False
    space = getattr(policy, "observation_space", None)
    if not isinstance(space, spaces.Box):
        return False
    if getattr(policy, "normalize_images", False) and is_image_space(space):
        return False  # divides by 255
    return type(extractor) is FlattenExtractor


def _walk(module: Any) -> list[tuple[str, nn.Module | None]] | None:
    """Op list of ``module`` (referencing its layers) or None if it is not a recognised chain."""
    kind = type(module)
    if kind in (nn.Identity, nn.Flatten):
        # Flatten(1, -1) is the identity on the (B, n) batches the engine accepts
        if kind is nn.Flatten and (module.start_dim, module.end_dim) != (1, -1):
            return None
        return []
    if kind is nn.Linear:
        return [(_LINEAR, module)]
    if kind is nn.ReLU:
        return [(_RELU, None)]
    if kind is nn.Tanh:
        return [(_TANH, None)]
    if kind is nn.Sequential:
        ops: list[tuple[str, nn.Module | None]] = []
        for child in module:
            sub = _walk(child)
            if sub is None:
                return None
            ops.extend(sub)
        return ops
    if kind is _loaded_class("rlkit.policy", "ObsNormalizer"):
        return [(_AFFINE, module)]
    if kind is _loaded_class("rlkit.policy", "PolicyView"):
        return _chain(module.normalizer, module.body)
    if kind is _loaded_class("rlkit.agents.sb3", "_ActorMean"):
        actor = module.actor
        if not _sb3_features_ok(actor, actor.features_extractor):
            return None
        latent = actor.latent_pi if hasattr(actor, "latent_pi") else nn.Identity()
        return _chain(actor.features_extractor.flatten, latent, module.head)
    if kind is _loaded_class("rlkit.agents.sb3", "_ActorCriticHead"):
        policy = module.policy
        extractor = getattr(policy, "pi_features_extractor", None)
        mlp = getattr(policy, "mlp_extractor", None)
        mlp_cls = _loaded_class("stable_baselines3.common.torch_layers", "MlpExtractor")
        if extractor is None or mlp_cls is None or type(mlp) is not mlp_cls:
            return None
        if not _sb3_features_ok(policy, extractor):
            return None
        return _chain(extractor.flatten, mlp.policy_net, policy.action_net)
    return None


def _chain(*modules: Any) -> list[tuple[str, nn.Module | None]] | None:
    """Concatenated op lists of ``modules`` applied in order (None if any is unrecognised)."""
    ops: list[tuple[str, nn.Module | None]] = []
    for module in modules:
        sub = _walk(module)
        if sub is None:
            return None
        ops.extend(sub)
    return ops


class MLPPlan:
    """The structure of a recognised MLP policy: ops referencing the live torch modules.

    Parameters are read at every :meth:`engine` call (as zero-copy numpy views), so training or
    loading weights after the attack was built is seen, as with autograd.

    Args:
        ops: ``(kind, module)`` pairs, ``kind`` one of "affine_clamp", "linear", "relu", "tanh".
        float32_input: the policy casts its input to float32 (``PolicyView.forward`` does).
    """

    def __init__(self, ops: list[tuple[str, nn.Module | None]], float32_input: bool) -> None:
        """Store the op list and whether the input is cast to float32."""
        self.ops = ops
        self.float32_input = float32_input

    def __repr__(self) -> str:
        """The op kinds in order."""
        return f"MLPPlan({[kind for kind, _ in self.ops]})"

    def engine(self) -> MLPEngine | None:
        """A numpy engine over the current parameters; None if they are not all on the CPU in
        one floating dtype (or not float32 when the input is cast to float32)."""
        arrays: list[tuple[str, Any, Any, float]] = []
        tensors: list[torch.Tensor] = []
        for kind, module in self.ops:
            if kind == _LINEAR:
                w, b = module.weight, module.bias
                tensors += [w] if b is None else [w, b]
                arrays.append((kind, w, b, 0.0))
            elif kind == _AFFINE:
                tensors += [module.mean, module.std]
                arrays.append((kind, module.mean, module.std, float(module.clip)))
            else:
                arrays.append((kind, None, None, 0.0))
        if not tensors:
            return None
        dtype = tensors[0].dtype
        if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
            return None
        if not dtype.is_floating_point or (self.float32_input and dtype != torch.float32):
            return None
        if dtype not in (torch.float32, torch.float64):
            return None
        ops = [(kind, None if a is None else a.detach().numpy(),
                None if b is None else b.detach().numpy(), c) for kind, a, b, c in arrays]
        return MLPEngine(ops, np.dtype(str(dtype).removeprefix("torch.")))


def compile_policy(policy: Any) -> MLPPlan | None:
    """Recognise ``policy`` as a chain of affine/clamp, Linear and ReLU/Tanh layers.

    Args:
        policy: the attack's policy view (usually a :class:`rlkit.policy.PolicyView`).

    Returns:
        an :class:`MLPPlan`, or None when the policy is anything else (use autograd).
    """
    ops = _walk(policy)
    if not ops or not any(kind == _LINEAR for kind, _ in ops):
        return None
    view_cls = _loaded_class("rlkit.policy", "PolicyView")
    return MLPPlan(ops, float32_input=view_cls is not None and type(policy) is view_cls)


# --------------------------------------------------------------------------- the engine
class MLPEngine:
    """Forward pass and input gradient of a compiled MLP, on numpy arrays.

    Args:
        ops: ``(kind, a, b, c)``: linear ``(W, bias or None)``; affine_clamp ``(mean, std, clip)``;
            relu/tanh without arrays.
        dtype: the parameters' dtype (computation runs in it, as in torch).
    """

    def __init__(self, ops: list[tuple[str, Any, Any, float]], dtype: np.dtype) -> None:
        """Store the ops and the compute dtype."""
        self.ops = ops
        self.dtype = dtype

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Policy output (B, k) for the observation batch ``x`` (B, n)."""
        return self._run(x, tape=None)

    def _run(self, x: np.ndarray, tape: list[Any] | None) -> np.ndarray:
        """Forward pass; appends what the backward pass needs to ``tape`` (if given)."""
        h = np.asarray(x, dtype=self.dtype)
        for kind, a, b, c in self.ops:
            if kind == _LINEAR:
                h = h @ a.T
                if b is not None:
                    h += b
            elif kind == _RELU:
                mask = h > 0  # autograd's ReLU subgradient at 0 is 0
                h = h * mask
                if tape is not None:
                    tape.append(mask)
            elif kind == _TANH:
                h = np.tanh(h)
                if tape is not None:
                    tape.append(h)
            else:  # affine_clamp; clamp's gradient is 1 on the closed range, like torch.clamp
                u = (h - a) / b
                if tape is not None:
                    tape.append((u >= -c) & (u <= c))
                h = np.clip(u, -c, c)
        return h

    def input_gradient(self, x: np.ndarray, output_grad: OutputGrad,
                       rows: np.ndarray | None = None) -> np.ndarray:
        """Gradient of the summed loss w.r.t. the observations ``x`` (B', n), dtype of ``x``.

        Args:
            x: observation batch (all samples, or the samples ``rows`` of the attacked batch).
            output_grad: the loss gradient w.r.t. the policy output, see :data:`OutputGrad`.
            rows: indices of the samples of the attacked batch that ``x`` holds (None = all).
        """
        tape: list[Any] = []
        z = self._run(x, tape)
        g = np.asarray(output_grad(z, rows), dtype=self.dtype)
        for kind, a, b, _ in reversed(self.ops):
            if kind == _LINEAR:
                g = g @ a
            elif kind == _RELU:
                g = g * tape.pop()
            elif kind == _TANH:
                y = tape.pop()
                g = g * (1 - y * y)
            else:
                g = g * tape.pop() / b
        return g.astype(x.dtype, copy=False)


# --------------------------------------------------------------------------- loss gradients
def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """``values`` restricted to ``rows`` (all when None)."""
    return values if rows is None else values[rows]


def _amax_grad(z: np.ndarray) -> np.ndarray:
    """Gradient of ``z.amax(-1)`` (torch splits it evenly among tied maxima)."""
    hit = z == z.max(axis=-1, keepdims=True)
    return hit / hit.sum(axis=-1, keepdims=True)


def constant_grad(grad: np.ndarray) -> OutputGrad:
    """A loss linear in the output: the gradient is ``grad`` (B, k) wherever it is taken.

    Args:
        grad: per-sample output gradient.
    """
    return lambda z, rows: _take(grad, rows)


def bifurcation_continuous_grad(labels: np.ndarray, m1: float, m2: float,
                                sign: float = 1.0) -> OutputGrad:
    """Output gradient of the GDL loss on ``g = [m1 a + b1, m2 a + b2]`` per action dimension.

    Args:
        labels: group per sample and action dimension (B, D), 0 or 1 (own group ``y``).
        m1, m2: slopes of the two group logits (offsets do not affect the gradient).
        sign: +1 for GDL (``g_other - g_y``), -1 for the toggle attack's ``g_y - g_other``.

    With two groups GDL is linear in ``a``: its gradient is ``m_other - m_y`` everywhere.
    """
    slope = np.where(labels == 0, m2 - m1, m1 - m2) * sign
    return constant_grad(slope)


def bifurcation_discrete_grad(labels: np.ndarray, split: int, sign: float = 1.0) -> OutputGrad:
    """Output gradient of GDL on ``g = [max z[:split], max z[split:]]``.

    Args:
        labels: own group per sample (B,), 0 (lower bins) or 1 (upper bins).
        split: first bin of the upper group.
        sign: +1 for GDL, -1 for the toggle attack.
    """
    own_upper = (labels == 1)[:, None]

    def grad(z: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        upper = _take(own_upper, rows)
        lower_g, upper_g = _amax_grad(z[:, :split]), _amax_grad(z[:, split:])
        # +1 into the other group's max, -1 into the own group's max
        return np.concatenate([np.where(upper, lower_g, -lower_g),
                               np.where(upper, -upper_g, upper_g)], axis=1) * sign

    return grad


def difference_of_logits_grad(labels: np.ndarray, sign: float = 1.0) -> OutputGrad:
    """Output gradient of ``max_{j != y} z_j - z_y`` (times ``sign``).

    Args:
        labels: class ``y`` per sample (B,).
        sign: +1 (untargeted: maximise) or -1 (targeted: pull toward ``y``).
    """
    def grad(z: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        y = _take(labels, rows)
        idx = np.arange(z.shape[0])
        others = z.copy()
        others[idx, y] = -np.inf
        g = _amax_grad(others)
        g[idx, y] -= 1.0
        return g * sign

    return grad


def distance_grad(reference: np.ndarray, kind: str, sign: float = 1.0) -> OutputGrad:
    """Output gradient of the per-sample mean ``kind`` distance to ``reference`` (times ``sign``).

    Args:
        reference: actions (B, D) (clean actions or targets).
        kind: "mse", "mae" or "huber" (delta = 1), as :func:`rlkit.attacks.losses.action_distance`.
        sign: +1 (push away) or -1 (pull toward).
    """
    if kind not in ("mse", "mae", "huber"):
        raise ValueError(f"distance kind must be mse, mae or huber, got {kind!r}")

    def grad(z: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        err = z - _take(reference, rows)
        if kind == "mse":
            g = 2.0 * err
        elif kind == "mae":
            g = np.sign(err)  # |x|' = 0 at 0, like torch
        else:
            g = np.clip(err, -1.0, 1.0)
        return g * (sign / z.shape[1])

    return grad


# --------------------------------------------------------------------------- optimisers
def _numpy(t: torch.Tensor | None) -> np.ndarray | None:
    """A detached CPU numpy view of ``t`` (None stays None)."""
    return None if t is None else t.detach().numpy()


def fast_fgsm(engine: MLPEngine, output_grad: OutputGrad, obs: torch.Tensor,
              budget: BoundBudget, *, random_start: bool = False,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`rlkit.attacks.optim.fgsm` with the gradient from ``engine``.

    Args:
        engine: the compiled policy.
        output_grad: loss gradient w.r.t. the policy output.
        obs: clean batch (B, n) on the CPU.
        budget: tensor budget bound to ``obs``.
        random_start: step from a random in-budget point.
        generator: RNG for the random start.
    """
    start = obs
    if random_start:
        start = budget.clip(obs + budget.random_delta(obs, generator), obs)
    grad = torch.from_numpy(engine.input_gradient(_numpy(start), output_grad))
    delta = budget.eps * ascent_direction(grad, budget)
    return budget.clip(start + delta, obs).detach()


def fast_pgd(
    engine: MLPEngine,
    output_grad: OutputGrad,
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
    reuse: bool = True,
    stats: dict[str, int] | None = None,
) -> torch.Tensor:
    """:func:`rlkit.attacks.optim.pgd` run in numpy with the gradient from ``engine``.

    The update arithmetic is the same sequence of elementwise operations as in ``pgd`` (same
    dtype), so the iterates match the autograd path up to the rounding of the matmuls.

    Args:
        engine: the compiled policy.
        output_grad: loss gradient w.r.t. the policy output.
        obs: clean batch (B, n) on the CPU.
        budget: tensor budget bound to ``obs``.
        step_size, iterations, random_start, decay_every, decay_rate, decay_schedule,
            clip_in_loop, generator: as for :func:`rlkit.attacks.optim.pgd`.
        reuse: recompute the gradient only for samples whose iterate changed in the last step
            (the gradient is a function of the iterate, so this changes no result; sign steps
            often park every feature on a corner of the box early).
        stats: if given, ``"rows"`` (sample-iterations) and ``"gradient_rows"`` (gradients
            actually computed) are added to it.
    """
    obs = obs.detach()
    delta_t = budget.random_delta(obs, generator) if random_start else torch.zeros_like(obs)
    if clip_in_loop:
        delta_t = budget.clip_bounds(obs + delta_t, obs) - obs
    o, delta = _numpy(obs), _numpy(delta_t).copy()
    eps_vec, active = _numpy(budget.eps_vec), _numpy(budget.active)
    safe_scale = _numpy(budget.safe_scale)
    lo = None if budget.low is None else np.minimum(_numpy(budget.low), o)
    hi = None if budget.high is None else np.maximum(_numpy(budget.high), o)
    linf = budget.norm == "linf"
    eps = budget.eps
    steps = step_schedule(step_size, iterations, decay_every, decay_rate, decay_schedule)
    grad: np.ndarray | None = None
    last = delta
    computed = 0
    for step in steps:
        if grad is None or not reuse:
            grad = engine.input_gradient(o + delta, output_grad)
            computed += o.shape[0]
        else:
            changed = (delta != last).any(axis=1)
            if changed.all():
                grad = engine.input_gradient(o + delta, output_grad)
                computed += o.shape[0]
            elif changed.any():
                rows = np.flatnonzero(changed)
                grad[rows] = engine.input_gradient(o[rows] + delta[rows], output_grad, rows)
                computed += rows.size
        last = delta
        # same operations, in the same order, as ascent_direction / BoundBudget.project / clip
        if linf:
            delta = np.maximum(np.minimum(delta + step * (np.sign(grad) * active), eps_vec),
                               -eps_vec)
        else:
            g_u = grad * safe_scale * active
            norms = np.maximum(np.sqrt((g_u * g_u).sum(axis=1)), 1e-30)
            delta = (delta + step * (safe_scale * g_u / norms[:, None])) * active
            u = delta * active / safe_scale
            n = np.sqrt((u * u).sum(axis=1))
            factor = np.where(n > eps, eps / np.maximum(n, 1e-30), 1.0).astype(delta.dtype)
            delta = delta * factor[:, None]
        if clip_in_loop:
            x = o + delta
            if lo is not None:
                x = np.maximum(x, lo)
            if hi is not None:
                x = np.minimum(x, hi)
            delta = x - o
    if stats is not None:
        stats["rows"] = stats.get("rows", 0) + o.shape[0] * len(steps)
        stats["gradient_rows"] = stats.get("gradient_rows", 0) + computed
    return budget.clip(obs + torch.from_numpy(delta), obs).detach()
