"""Fast input gradients for MLP policies: PGD and FGSM without autograd.

For the small MLP policies of SB3 (two hidden layers of 256 units), autograd bookkeeping and
per-operation dispatch cost far more than the arithmetic when a few observations are attacked at
a time: the authors' 100-step PGD spends most of its time outside the matmuls.  This module
compiles a policy that is a plain chain of layers and computes the forward pass and the input
gradient of the attack loss by hand, with the whole PGD loop outside torch:

* backend ``"numba"`` (when numba is installed, the ``fast`` extra): one compiled kernel runs
  every iteration of every sample (linf budgets); the matrix-vector products skip the zeros that
  ReLU leaves, and a sample stops as soon as an iteration leaves its iterate unchanged;
* backend ``"numpy"``: batched float matmuls per iteration (any budget norm).

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
maxima.  The PGD update repeats the exact elementwise operations of
:func:`rlkit.attacks.optim.pgd` in the observations' dtype, so the two engines differ only by the
rounding of the network's sums, which can flip the sign of a gradient component that is ~0.
Only 2-D observation batches on the CPU are handled.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from .budget import BoundBudget
from .optim import ascent_direction, step_schedule

try:  # numba is optional (the ``fast`` extra)
    import numba as _nb
except ImportError:  # pragma: no cover - numba missing
    _nb = None

BACKENDS = ("auto", "numba", "numpy")
#: "auto" uses numba up to this batch size; larger batches amortise numpy's per-call overhead
#: and BLAS matrix-matrix products beat the per-sample kernel (measured on 2x256 MLPs)
NUMBA_MAX_BATCH = 8
_LINEAR, _RELU, _TANH, _AFFINE = 0, 1, 2, 3
_OP_NAMES = {_LINEAR: "linear", _RELU: "relu", _TANH: "tanh", _AFFINE: "affine_clamp"}
# loss kinds of the numba kernel
_L_CONSTANT, _L_GROUPS, _L_LOGITS, _L_DISTANCE = 0, 1, 2, 3
_DISTANCES = {"mse": 0, "mae": 1, "huber": 2}


def numba_available() -> bool:
    """Whether the numba backend can be used (numba is installed)."""
    return _nb is not None


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


def _walk(module: Any) -> list[tuple[int, nn.Module | None]] | None:
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
        return _chain(*module)
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


def _chain(*modules: Any) -> list[tuple[int, nn.Module | None]] | None:
    """Concatenated op lists of ``modules`` applied in order (None if any is unrecognised)."""
    ops: list[tuple[int, nn.Module | None]] = []
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
        ops: ``(kind, module)`` pairs (kinds: linear, relu, tanh, affine_clamp).
        float32_input: the policy casts its input to float32 (``PolicyView.forward`` does).
    """

    def __init__(self, ops: list[tuple[int, nn.Module | None]], float32_input: bool) -> None:
        """Store the op list and whether the input is cast to float32."""
        self.ops = ops
        self.float32_input = float32_input
        self._packed: tuple[np.ndarray, ...] | None = None  # numba's flat weights

    def __repr__(self) -> str:
        """The op kinds in order."""
        return f"MLPPlan({[_OP_NAMES[kind] for kind, _ in self.ops]})"

    def _tensors(self) -> list[torch.Tensor]:
        """The parameters and buffers the ops read."""
        out: list[torch.Tensor] = []
        for kind, module in self.ops:
            if kind == _LINEAR:
                out += [module.weight] if module.bias is None else [module.weight, module.bias]
            elif kind == _AFFINE:
                out += [module.mean, module.std]
        return out

    def engine(self) -> MLPEngine | None:
        """A numpy engine over the current parameters; None if they are not all on the CPU in
        one float dtype (float32 or float64; float32 when the input is cast to float32)."""
        tensors = self._tensors()
        if not tensors:
            return None
        dtype = tensors[0].dtype
        if any(t.device.type != "cpu" or t.dtype != dtype for t in tensors):
            return None
        if dtype not in (torch.float32, torch.float64):
            return None
        if self.float32_input and dtype != torch.float32:
            return None
        ops = []
        for kind, module in self.ops:
            if kind == _LINEAR:
                bias = None if module.bias is None else module.bias.detach().numpy()
                ops.append((kind, module.weight.detach().numpy(), bias, 0.0))
            elif kind == _AFFINE:
                ops.append((kind, module.mean.detach().numpy(), module.std.detach().numpy(),
                            float(module.clip)))
            else:
                ops.append((kind, None, None, 0.0))
        return MLPEngine(ops, np.dtype(str(dtype).removeprefix("torch.")), plan=self)


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


# --------------------------------------------------------------------------- loss gradients
def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """``values`` restricted to ``rows`` (all when None)."""
    return values if rows is None else values[rows]


def _amax_grad(z: np.ndarray) -> np.ndarray:
    """Gradient of ``z.amax(-1)`` (torch splits it evenly among tied maxima)."""
    hit = z == z.max(axis=-1, keepdims=True)
    return hit / hit.sum(axis=-1, keepdims=True)


class OutputGrad:
    """Gradient of a summed per-sample attack loss w.r.t. the policy output.

    Calling it with ``(z, rows)`` gives ``dL/dz`` for the outputs ``z`` (B', k) of the samples
    ``rows`` of the attacked batch (None = all).  ``kind`` and the arrays describe the loss to
    the numba kernel.
    """

    kind: int = -1
    sign: float = 1.0
    labels: np.ndarray | None = None
    values: np.ndarray | None = None
    split: int = 0
    distance: int = 0

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """The output gradient of samples ``rows`` at outputs ``z``."""
        raise NotImplementedError


class ConstantGrad(OutputGrad):
    """A loss linear in the policy output (e.g. continuous GDL): the gradient is ``grad``.

    The numpy engine then skips the trailing linear layers in the forward pass and
    back-propagates ``grad`` through them once per attack call.

    Args:
        grad: the per-sample output gradient (B, k).
    """

    kind = _L_CONSTANT

    def __init__(self, grad: np.ndarray) -> None:
        """Store the gradient."""
        self.values = self.grad = np.asarray(grad)

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """The gradient of samples ``rows`` (``z`` is not needed)."""
        return _take(self.grad, rows)


class GroupMaxGrad(OutputGrad):
    """Output gradient of GDL on ``g = [max z[:split], max z[split:]]`` (discrete bifurcation).

    Args:
        labels: own group per sample (B,), 0 (lower bins) or 1 (upper bins).
        split: first bin of the upper group.
        sign: +1 for GDL (``g_other - g_y``), -1 for the toggle attack's ``g_y - g_other``.
    """

    kind = _L_GROUPS

    def __init__(self, labels: np.ndarray, split: int, sign: float = 1.0) -> None:
        """Store the labels, split and sign."""
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.split, self.sign = int(split), float(sign)

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """+1 into the other group's max, -1 into the own group's max (times ``sign``)."""
        upper = (_take(self.labels, rows) == 1)[:, None]
        lower_g, upper_g = _amax_grad(z[:, :self.split]), _amax_grad(z[:, self.split:])
        return np.concatenate([np.where(upper, lower_g, -lower_g),
                               np.where(upper, -upper_g, upper_g)], axis=1) * self.sign


class LogitsGrad(OutputGrad):
    """Output gradient of ``max_{j != y} z_j - z_y`` (times ``sign``).

    Args:
        labels: class ``y`` per sample (B,).
        sign: +1 (untargeted: maximise) or -1 (targeted: pull toward ``y``).
    """

    kind = _L_LOGITS

    def __init__(self, labels: np.ndarray, sign: float = 1.0) -> None:
        """Store the labels and sign."""
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.sign = float(sign)

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """Even split among the tied largest other logits, -1 on the label (times ``sign``)."""
        y = _take(self.labels, rows)
        idx = np.arange(z.shape[0])
        others = z.copy()
        others[idx, y] = -np.inf
        g = _amax_grad(others)
        g[idx, y] -= 1.0
        return g * self.sign


class DistanceGrad(OutputGrad):
    """Output gradient of the per-sample mean ``kind`` distance to ``reference`` (times ``sign``).

    Args:
        reference: actions (B, D) (clean actions or targets).
        kind: "mse", "mae" or "huber" (delta = 1), as :func:`rlkit.attacks.losses.action_distance`.
        sign: +1 (push away) or -1 (pull toward).
    """

    kind = _L_DISTANCE

    def __init__(self, reference: np.ndarray, kind: str, sign: float = 1.0) -> None:
        """Store the reference actions, distance kind and sign."""
        if kind not in _DISTANCES:
            raise ValueError(f"distance kind must be one of {list(_DISTANCES)}, got {kind!r}")
        self.values = np.asarray(reference)
        self.distance_name, self.distance, self.sign = kind, _DISTANCES[kind], float(sign)

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """``2 err`` / ``sign(err)`` / ``clip(err, -1, 1)``, over the action size."""
        err = z - _take(self.values, rows)
        if self.distance == 0:
            g = 2.0 * err
        elif self.distance == 1:
            g = np.sign(err)  # |x|' = 0 at 0, like torch
        else:
            g = np.clip(err, -1.0, 1.0)
        return g * (self.sign / z.shape[1])


def bifurcation_continuous_grad(labels: np.ndarray, m1: float, m2: float,
                                sign: float = 1.0) -> ConstantGrad:
    """Output gradient of the GDL loss on ``g = [m1 a + b1, m2 a + b2]`` per action dimension.

    Args:
        labels: group per sample and action dimension (B, D), 0 or 1 (own group ``y``).
        m1, m2: slopes of the two group logits (offsets do not affect the gradient).
        sign: +1 for GDL (``g_other - g_y``), -1 for the toggle attack's ``g_y - g_other``.

    With two groups GDL is linear in ``a``: its gradient is ``m_other - m_y`` everywhere.
    """
    return ConstantGrad(np.where(np.asarray(labels) == 0, m2 - m1, m1 - m2) * sign)


# --------------------------------------------------------------------------- numpy engine
class MLPEngine:
    """Forward pass and input gradient of a compiled MLP, on numpy arrays.

    Args:
        ops: ``(kind, a, b, c)``: linear ``(W, bias or None)``; affine_clamp ``(mean, std, clip)``;
            relu/tanh without arrays.
        dtype: the parameters' dtype (computation runs in it, as in torch).
        plan: the plan that made the engine (caches the numba kernel's flat weights).
    """

    def __init__(self, ops: list[tuple[int, Any, Any, float]], dtype: np.dtype,
                 plan: MLPPlan | None = None) -> None:
        """Store the ops and the compute dtype; split off the trailing linear layers."""
        self.ops = ops
        self.dtype = dtype
        self._plan = plan
        last = max((i for i, op in enumerate(ops) if op[0] != _LINEAR), default=-1)
        self.head, self.tail = ops[:last + 1], ops[last + 1:]
        self._tail_cache: tuple[ConstantGrad, np.ndarray] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Policy output (B, k) for the observation batch ``x`` (B, n)."""
        return self._forward(x, self.ops, None, True)

    def _forward(self, x: np.ndarray, ops: list[tuple[int, Any, Any, float]],
                 tape: list[Any] | None, output: bool) -> np.ndarray:
        """Run ``ops`` on ``x``, appending what the backward pass needs to ``tape`` (if given);
        with ``output=False`` a final ReLU only records its mask."""
        h = x if x.dtype == self.dtype else x.astype(self.dtype)
        last = len(ops) - 1
        for i, (kind, a, b, c) in enumerate(ops):
            if kind == _LINEAR:
                h = h @ a.T
                if b is not None:
                    h += b
            elif kind == _RELU:
                mask = h > 0  # autograd's ReLU subgradient at 0 is 0
                if tape is not None:
                    tape.append(mask)
                if output or i < last:
                    h = h * mask
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

    @staticmethod
    def _backward(g: np.ndarray, ops: list[tuple[int, Any, Any, float]],
                  tape: list[Any]) -> np.ndarray:
        """Back-propagate the gradient ``g`` at the output of ``ops`` to their input."""
        for kind, a, b, _ in reversed(ops):
            if kind == _LINEAR:
                g = g @ a
            elif kind == _RELU:
                g = g * tape.pop()
            elif kind == _TANH:
                y = tape.pop()
                g = g * (1 - y * y)
            else:
                g = g * tape.pop() / b
        return g

    def input_gradient(self, x: np.ndarray, output_grad: OutputGrad,
                       rows: np.ndarray | None = None) -> np.ndarray:
        """Gradient of the summed loss w.r.t. the observations ``x`` (B', n), dtype of ``x``.

        Args:
            x: observation batch (all samples, or the samples ``rows`` of the attacked batch).
            output_grad: the loss gradient w.r.t. the policy output.
            rows: indices of the samples of the attacked batch that ``x`` holds (None = all).
        """
        tape: list[Any] = []
        if isinstance(output_grad, ConstantGrad):
            cache = self._tail_cache
            if cache is None or cache[0] is not output_grad:
                g_all = np.asarray(output_grad(None, None), dtype=self.dtype)
                cache = self._tail_cache = (output_grad, self._backward(g_all, self.tail, []))
            self._forward(x, self.head, tape, False)
            g = _take(cache[1], rows)
            return self._backward(g, self.head, tape).astype(x.dtype, copy=False)
        z = self._forward(x, self.ops, tape, True)
        g = np.asarray(output_grad(z, rows), dtype=self.dtype)
        return self._backward(g, self.ops, tape).astype(x.dtype, copy=False)

    def packed(self) -> tuple[np.ndarray, ...]:
        """Flat arrays for the numba kernel: codes, in/out sizes, offsets, clips, W, W^T and the
        other parameters.

        W and W^T are cached on the plan and reused while the weights compare equal (a
        comparison is far cheaper than the transposed copy, and it also catches writes that
        bypass torch's version counter, such as ``param.data``).
        """
        plan = self._plan
        cached = plan._packed if plan is not None else None
        if cached is None or not self._weights_match(cached):
            cached = self._pack_weights()
            if plan is not None:
                plan._packed = cached
        codes, din, dout, woff, clips, wbuf, wtbuf = cached
        poff = np.full(len(self.ops), -1, np.int64)
        parts, size = [], 0
        for i, (kind, a, b, _) in enumerate(self.ops):
            if kind == _LINEAR and b is not None:
                new = [b.ravel()]
            elif kind == _AFFINE:  # mean, then std
                new = [np.broadcast_to(a, (din[i],)).ravel(), np.broadcast_to(b, (din[i],)).ravel()]
            else:
                continue
            poff[i] = size
            parts += new
            size += sum(p.size for p in new)
        pbuf = np.concatenate(parts).astype(self.dtype) if parts else np.zeros(1, self.dtype)
        return codes, din, dout, woff, poff, clips, wbuf, wtbuf, pbuf

    def _weights_match(self, cached: tuple[np.ndarray, ...]) -> bool:
        """Whether ``cached`` (from :meth:`_pack_weights`) holds this engine's weights."""
        codes, _, _, woff, _, wbuf, _ = cached
        if len(codes) != len(self.ops) or wbuf.dtype != self.dtype:
            return False
        for i, (kind, a, _, _) in enumerate(self.ops):
            if codes[i] != kind:
                return False
            if kind == _LINEAR:
                part = wbuf[woff[i]:woff[i] + a.size]
                if part.size != a.size or not (a.ravel() == part).all():
                    return False
        return True

    def _pack_weights(self) -> tuple[np.ndarray, ...]:
        """Codes, in/out sizes, weight offsets, clips, flat W and flat W^T of the ops."""
        n = len(self.ops)
        codes, din, dout = (np.zeros(n, np.int64) for _ in range(3))
        woff = np.full(n, -1, np.int64)
        clips = np.zeros(n, np.float64)
        ws, wts = [], []
        size, width = 0, None
        for i, (kind, a, _, c) in enumerate(self.ops):
            codes[i] = kind
            if kind == _LINEAR:
                dout[i], din[i] = a.shape
                woff[i] = size
                ws.append(a.ravel())
                wts.append(a.T.ravel())
                size += a.size
            elif kind == _AFFINE:
                din[i] = dout[i] = a.size if width is None else width
                clips[i] = c
            else:
                din[i] = dout[i] = -1  # elementwise: the width of the previous op
            width = dout[i] if dout[i] > 0 else width
        wbuf = np.concatenate(ws).astype(self.dtype, copy=False)
        wtbuf = np.concatenate(wts).astype(self.dtype, copy=False)
        return codes, din, dout, woff, clips, wbuf, wtbuf


# --------------------------------------------------------------------------- numba kernel
def _net_grad_py(x, codes, din, dout, woff, poff, clips, wbuf, wtbuf, pbuf, buf, gb,  # noqa: ANN001, ANN202
                 loss, row, labels, values, split, distance, sign, out):
    """Input gradient of one sample ``x`` into ``out`` (numba kernel; see :func:`fast_pgd`)."""
    n_ops = codes.shape[0]
    width = x.shape[0]
    for i in range(width):
        buf[0, i] = x[i]
    widths = np.empty(n_ops + 1, np.int64)
    widths[0] = width
    for op in range(n_ops):
        code = codes[op]
        src = buf[op]
        dst = buf[op + 1]
        if code == 0:  # linear: dst = W src + b, as axpys over W^T rows, skipping zero inputs
            # (slices keep the indices provably non-negative, so the loops vectorise)
            di, do, wo, bo = din[op], dout[op], woff[op], poff[op]
            if bo >= 0:
                bias = pbuf[bo:bo + do]
                for j in range(do):
                    dst[j] = bias[j]
            else:
                for j in range(do):
                    dst[j] = 0.0
            for k in range(di):
                v = src[k]
                if v != 0.0:
                    w = wtbuf[wo + k * do:wo + (k + 1) * do]
                    for j in range(do):
                        dst[j] += v * w[j]
            width = do
        elif code == 1:
            for j in range(width):
                dst[j] = src[j] if src[j] > 0 else 0.0
        elif code == 2:
            for j in range(width):
                dst[j] = np.tanh(src[j])
        else:
            mo, cl = poff[op], clips[op]
            mean, std = pbuf[mo:mo + width], pbuf[mo + width:mo + 2 * width]
            for j in range(width):
                u = (src[j] - mean[j]) / std[j]
                dst[j] = -cl if u < -cl else (cl if u > cl else u)
        widths[op + 1] = width
    # loss gradient at the output z
    z = buf[n_ops]
    k = widths[n_ops]
    g = gb[0]
    vals = values[row]
    if loss == 0:
        for j in range(k):
            g[j] = vals[j]
    elif loss == 1:  # +1 to the other group's max, -1 to the own group's max, ties split evenly
        lm, um = z[0], z[split]
        for j in range(split):
            lm = max(lm, z[j])
        for j in range(split, k):
            um = max(um, z[j])
        lc, uc = 0, 0
        for j in range(split):
            lc += z[j] == lm
        for j in range(split, k):
            uc += z[j] == um
        lower = sign if labels[row] == 1 else -sign
        for j in range(split):
            g[j] = lower / lc if z[j] == lm else 0.0
        for j in range(split, k):
            g[j] = -lower / uc if z[j] == um else 0.0
    elif loss == 2:  # largest other logit (ties split) minus the label's logit
        y = labels[row]
        m = -np.inf
        for j in range(k):
            if j != y and z[j] > m:
                m = z[j]
        cnt = 0
        for j in range(k):
            cnt += j != y and z[j] == m
        for j in range(k):
            g[j] = sign / cnt if (j != y and z[j] == m) else 0.0
        g[y] = -sign
    else:
        scale = sign / k
        for j in range(k):
            err = z[j] - vals[j]
            if distance == 0:
                g[j] = 2.0 * err * scale
            elif distance == 1:
                g[j] = (1.0 if err > 0 else (-1.0 if err < 0 else 0.0)) * scale
            else:
                g[j] = (1.0 if err > 1.0 else (-1.0 if err < -1.0 else err)) * scale
    # backward pass, ping-ponging between the two rows of gb
    p = 0
    for op in range(n_ops - 1, -1, -1):
        code = codes[op]
        cur = gb[p]
        nxt = gb[1 - p]
        win = widths[op]
        wout = widths[op + 1]
        if code == 0:  # nxt = W^T cur, as axpys over W rows, skipping zero gradients
            wo = woff[op]
            for i in range(win):
                nxt[i] = 0.0
            for j in range(wout):
                v = cur[j]
                if v != 0.0:
                    w = wbuf[wo + j * win:wo + (j + 1) * win]
                    for i in range(win):
                        nxt[i] += v * w[i]
        elif code == 1:
            y = buf[op + 1]
            for j in range(win):
                nxt[j] = cur[j] if y[j] > 0 else 0.0
        elif code == 2:
            y = buf[op + 1]
            for j in range(win):
                nxt[j] = cur[j] * (1.0 - y[j] * y[j])
        else:
            mo, cl = poff[op], clips[op]
            src = buf[op]
            mean, std = pbuf[mo:mo + win], pbuf[mo + win:mo + 2 * win]
            for j in range(win):
                u = (src[j] - mean[j]) / std[j]
                nxt[j] = cur[j] / std[j] if (u >= -cl and u <= cl) else 0.0
        p = 1 - p
    for i in range(out.shape[0]):
        out[i] = gb[p, i]


def _pgd_py(obs, delta, eps, active, lo, hi, steps, clip_in_loop, can_stop,  # noqa: ANN001, ANN202
            codes, din, dout, woff, poff, clips, wbuf, wtbuf, pbuf, maxw,
            loss, labels, values, split, distance, sign, counts):
    """Linf PGD of every sample, in place on ``delta`` (numba kernel; see :func:`fast_pgd`).

    The update repeats ``pgd``'s elementwise operations in the observations' dtype: ``delta +
    step * sign(g)`` (inactive features: ``+ 0``), clamp to ``[-eps, eps]``, then, if
    ``clip_in_loop``, ``clip(obs + delta, lo, hi) - obs``.
    """
    batch, n = obs.shape
    buf = np.empty((codes.shape[0] + 1, maxw), wbuf.dtype)
    gb = np.empty((2, maxw), wbuf.dtype)
    x = np.empty(n, obs.dtype)
    grad = np.empty(n, wbuf.dtype)
    for row in range(batch):
        o = obs[row]
        d = delta[row]
        moved = True
        for it in range(steps.shape[0]):
            if moved:  # the gradient is a function of the iterate: recompute only if it moved
                for i in range(n):
                    x[i] = o[i] + d[i]
                _net_grad(x, codes, din, dout, woff, poff, clips, wbuf, wtbuf, pbuf, buf, gb,
                          loss, row, labels, values, split, distance, sign, grad)
                counts[row] += 1
            elif can_stop:
                break
            moved = False
            st = steps[it]
            for i in range(n):
                v = d[i]
                if active[i]:
                    if grad[i] > 0:
                        v = v + st
                    elif grad[i] < 0:
                        v = v - st
                e = eps[i]
                if v > e:
                    v = e
                if v < -e:
                    v = -e
                if clip_in_loop:
                    xv = o[i] + v
                    if xv < lo[row, i]:
                        xv = lo[row, i]
                    if xv > hi[row, i]:
                        xv = hi[row, i]
                    v = xv - o[i]
                if v != d[i]:
                    moved = True
                d[i] = v


if _nb is not None:
    # reassociation lets the axpy loops use FMA/wide adds; no nnan/ninf: the loss code compares
    # against -inf.  The PGD update kernel keeps strict IEEE semantics (it mirrors torch).
    _net_grad = _nb.njit(cache=True, fastmath={"nsz", "arcp", "contract", "afn", "reassoc"})(
        _net_grad_py)
    _pgd_kernel = _nb.njit(cache=True)(_pgd_py)
else:  # pragma: no cover - numba missing
    _net_grad = _net_grad_py
    _pgd_kernel = None


# --------------------------------------------------------------------------- optimisers
@lru_cache(maxsize=64)
def _steps(step_size: float, iterations: int, decay_every: int, decay_rate: float,
           decay_schedule: str) -> tuple[float, ...]:
    """:func:`step_schedule`, memoised (it is called once per attack call)."""
    return tuple(step_schedule(step_size, iterations, decay_every, decay_rate, decay_schedule))


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A detached CPU numpy view of ``t``."""
    return t.detach().numpy()


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


def choose_backend(engine: MLPEngine, output_grad: OutputGrad, obs: torch.Tensor,
                   budget: BoundBudget, backend: str = "auto") -> str:
    """The PGD backend for this call: "numba" or "numpy".

    Args:
        engine: the compiled policy.
        output_grad: the loss gradient (must be one of this module's kinds for numba).
        obs: the clean batch.
        budget: the bound budget (numba: linf only).
        backend: "auto" (numba when it can serve the call and the batch has at most
            :data:`NUMBA_MAX_BATCH` samples), "numba" (error if it cannot) or "numpy".
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    if backend == "numpy":
        return "numpy"
    reasons = []
    if _pgd_kernel is None:
        reasons.append("numba is not installed")
    if budget.norm != "linf":
        reasons.append("the budget norm is not linf")
    if np.dtype(str(obs.dtype).removeprefix("torch.")) != engine.dtype:
        reasons.append("the observations' dtype differs from the parameters'")
    if output_grad.kind < 0:
        reasons.append("the loss has no numba form")
    if not reasons and (backend == "numba" or obs.shape[0] <= NUMBA_MAX_BATCH):
        return "numba"
    if backend == "numba":
        raise ValueError("numba backend unavailable: " + "; ".join(reasons))
    return "numpy"


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
    backend: str = "auto",
    reuse: bool = True,
    stats: dict[str, int] | None = None,
) -> torch.Tensor:
    """:func:`rlkit.attacks.optim.pgd` with the gradient from ``engine``, outside torch.

    The update is the same sequence of elementwise operations as in ``pgd`` (same dtype), so
    the iterates match the autograd path up to the rounding of the network's sums.

    Args:
        engine: the compiled policy.
        output_grad: loss gradient w.r.t. the policy output.
        obs: clean batch (B, n) on the CPU.
        budget: tensor budget bound to ``obs``.
        step_size, iterations, random_start, decay_every, decay_rate, decay_schedule,
            clip_in_loop, generator: as for :func:`rlkit.attacks.optim.pgd`.
        backend: "auto", "numba" or "numpy", see :func:`choose_backend`.
        reuse: skip work that cannot change the result: the gradient is a function of the
            iterate, so it is recomputed only for samples whose iterate moved, and (linf) a
            sample whose iterate one step left unchanged is a fixed point of every later step
            (each feature sits on the face its gradient sign points at, and later steps are far
            above rounding), so its loop stops.
        stats: if given, ``"rows"`` (sample-iterations) and ``"gradient_rows"`` (gradients
            actually computed) are added to it.
    """
    obs = obs.detach()
    delta_t = budget.random_delta(obs, generator) if random_start else torch.zeros_like(obs)
    if clip_in_loop:
        delta_t = budget.clip_bounds(obs + delta_t, obs) - obs
    o, delta = _numpy(obs), _numpy(delta_t).copy()
    eps_vec, active = _numpy(budget.eps_vec), _numpy(budget.active)
    batch = o.shape[0]
    steps = _steps(step_size, iterations, decay_every, decay_rate, decay_schedule)
    tol = 64 * np.finfo(o.dtype).eps * (1.0 + float(np.abs(o).max(initial=0.0))
                                        + float(eps_vec.max(initial=0.0)))
    can_stop = reuse and budget.norm == "linf" and bool(steps) and min(steps) >= tol
    lo = None if budget.low is None else np.minimum(_numpy(budget.low), o)
    hi = None if budget.high is None else np.maximum(_numpy(budget.high), o)
    if choose_backend(engine, output_grad, obs, budget, backend) == "numba" and reuse:
        counts = np.zeros(batch, np.int64)
        codes, din, dout, woff, poff, clips, wbuf, wtbuf, pbuf = engine.packed()
        maxw = int(max(o.shape[1], *np.abs(dout), *np.abs(din)))
        dt = engine.dtype
        labels = output_grad.labels if output_grad.labels is not None else np.zeros(1, np.int64)
        values = (np.zeros((1, 1), dt) if output_grad.values is None
                  else np.ascontiguousarray(output_grad.values, dtype=dt).reshape(batch, -1))
        _pgd_kernel(np.ascontiguousarray(o), delta, eps_vec, active,
                    np.full_like(o, -np.inf) if lo is None else lo,
                    np.full_like(o, np.inf) if hi is None else hi,
                    np.asarray(steps, dtype=o.dtype), bool(clip_in_loop), bool(can_stop),
                    codes, din, dout, woff, poff, clips, wbuf, wtbuf, pbuf, maxw,
                    int(output_grad.kind), labels, values, int(output_grad.split),
                    int(output_grad.distance), dt.type(output_grad.sign), counts)
        computed = int(counts.sum())
    else:
        delta, computed = _numpy_pgd(engine, output_grad, o, delta, budget, steps, lo, hi,
                                     clip_in_loop, reuse, can_stop)
    if stats is not None:
        stats["rows"] = stats.get("rows", 0) + batch * len(steps)
        stats["gradient_rows"] = stats.get("gradient_rows", 0) + computed
    return budget.clip(obs + torch.from_numpy(delta), obs).detach()


def _numpy_pgd(engine: MLPEngine, output_grad: OutputGrad, o: np.ndarray, delta: np.ndarray,
               budget: BoundBudget, steps: tuple[float, ...], lo: np.ndarray | None,
               hi: np.ndarray | None, clip_in_loop: bool, reuse: bool,
               can_stop: bool) -> tuple[np.ndarray, int]:
    """The PGD loop of :func:`fast_pgd` with batched numpy matmuls; (final delta, gradients
    computed).

    Args:
        engine, output_grad: the compiled policy and the loss gradient.
        o: clean batch (B, n).
        delta: start perturbation (B, n).
        budget: the bound budget.
        steps: step size per iteration.
        lo, hi: per-sample bounds ``min(low, obs)``, ``max(high, obs)`` (None: no bound).
        clip_in_loop, reuse, can_stop: as in :func:`fast_pgd`.
    """
    eps_vec, active = _numpy(budget.eps_vec), _numpy(budget.active)
    neg_eps, all_active = -eps_vec, bool(active.all())
    safe_scale = _numpy(budget.safe_scale)
    linf, eps = budget.norm == "linf", budget.eps
    batch = o.shape[0]
    grad: np.ndarray | None = None
    last = delta
    computed = 0
    for step in steps:
        if grad is None or not reuse:
            grad = engine.input_gradient(o + delta, output_grad)
            computed += batch
        else:
            changed = (delta != last).any(axis=1)
            if changed.all():
                grad = engine.input_gradient(o + delta, output_grad)
                computed += batch
            elif changed.any():
                rows = np.flatnonzero(changed)
                grad[rows] = engine.input_gradient(o[rows] + delta[rows], output_grad, rows)
                computed += rows.size
            elif can_stop:
                break
        last = delta
        # the same operations on the same values as ascent_direction / BoundBudget.project
        if linf:
            upd = np.sign(grad)
            if not all_active:
                upd *= active
            upd *= step
            upd += delta
            np.minimum(upd, eps_vec, out=upd)
            delta = np.maximum(upd, neg_eps, out=upd)
        else:
            g_u = grad * safe_scale * active
            norms = np.maximum(np.sqrt((g_u * g_u).sum(axis=1)), 1e-30)
            delta = (delta + step * (safe_scale * g_u / norms[:, None])) * active
            u = delta * active / safe_scale
            n = np.sqrt((u * u).sum(axis=1))
            factor = np.where(n > eps, eps / np.maximum(n, 1e-30), 1.0).astype(delta.dtype)
            delta = delta * factor[:, None]
        if clip_in_loop:  # BoundBudget.clip_bounds(obs + delta, obs) - obs
            x = o + delta
            if lo is not None:
                np.maximum(x, lo, out=x)
            if hi is not None:
                np.minimum(x, hi, out=x)
            x -= o
            delta = x
    return delta, computed
