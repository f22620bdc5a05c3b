"""The MLP engine's arithmetic: input gradients of plain MLP policies without autograd.

For the small MLP policies of SB3 (two hidden layers of 256 units), autograd bookkeeping and
per-operation dispatch cost far more than the arithmetic when a few observations are attacked at
a time: the authors' 100-step PGD spends most of its time outside the matmuls.  This module
recognises a policy that is a plain chain of layers (:func:`compile_policy`) and computes its
forward pass and input gradient by hand, with the whole PGD loop outside torch
(:func:`fast_pgd`, :func:`fast_fgsm`; :class:`rlkit.attacks.engines.MLPEngine` runs them):

* backend ``"numba"`` (when numba is installed, the ``fast`` extra): one compiled kernel runs
  every iteration of every sample (linf budgets); the matrix-vector products skip the zeros that
  ReLU leaves, and a sample stops as soon as an iteration leaves its iterate unchanged;
* backend ``"numpy"``: batched float matmuls per iteration (any budget norm).

The losses are not re-implemented here: the gradient of the loss w.r.t. the policy output comes
from the torch definition in :mod:`rlkit.attacks.losses` through
:meth:`rlkit.attacks.losses.OutputLoss.output_gradient` (torch autograd on the small (B, k)
output tensor), and this module back-propagates it through the network:

* a loss that is affine in the output (``OutputLoss.degree == 1``: the continuous bifurcation
  attacks with ``other_logit="neg_inf"``, GDL ``g_other - g_own`` on ``[m1 a + b1, m2 a + b2]``)
  has a constant output gradient, taken from torch once per attack call (:class:`ConstantGrad`);
* a loss that is piecewise affine in each output (``OutputLoss.kinks``: the continuous
  bifurcation attacks with the authors' ``other_logit="zero"``, ``max(0, g_other) - g_own``,
  whose kink is where ``g_other`` changes sign) has an output gradient that is constant on each
  side of the kink: the three values (below, at, above) are taken from torch once per call and
  the kernel picks one per output and iteration (:class:`PiecewiseGrad`);
* a quadratic loss (``degree == 2``: the MSE distance of ``pgd``/``targeted_pgd``, the Gaussian
  KL of continuous ``mad``) has an output gradient affine in the output, ``g(z) = g0 + H (z -
  z0)``, with ``g0`` and the per-sample Hessian ``H`` taken from torch once per call at the clean
  output ``z0`` (:class:`AffineGrad`);
* a loss affine on each cell of the outputs' order (``OutputLoss.ordinal``: the difference of
  logits of the discrete ``pgd``/``targeted_pgd``, GDL on discrete group maxima) has an output
  gradient that depends only on the order of the outputs and 0, and in fact only on the tie
  sets of the maxima it takes (``OutputLoss.cells``): it is taken from torch once per cell met
  and looked up at the other iterations (:class:`OrdinalGrad`; keyed by the whole order,
  batches up to :data:`ORDINAL_MAX_BATCH` only).  On a 20-bin PPO fine-tuned from the authors'
  over a CityLearn episode, 1.1% of the PGD iterations and 2.4% of the bifurcation ones meet a
  new cell, against 14% and 17% with the whole order as the key, and the attack takes 9.8 and
  14 ms per step instead of 16 and 28;
* any other loss (MAE/Huber distances, categorical KL) gets its output gradient from torch at
  every iteration (:class:`TorchOutputGrad`).

The numba kernel serves the first three (it evaluates ``g0 + H (z - z0)`` or picks a tabulated
piece, which is no copy of any loss); the others run in the numpy loop.  Trade-off, measured side
by side at batch 1 on the untrained 256x256 SB3 views (ms per 100-step call; old = the former
per-loss numba copies; the piecewise form of the authors' default, measured later side by side
with the affine one on an untrained 54 -> 256 -> 256 -> 4 SB3 SAC view, the grid env's shape,
costs the same: best of 30 rounds of 50 calls, 2.12 ms (piecewise) vs 2.20 ms (affine) per
100-step call and 0.489 vs 0.488 ms per 1-step call):

======================================  =====  =====  ========
attack                                   old    new   autograd
======================================  =====  =====  ========
bifurcation, continuous (affine)        2.82   2.86      -
pgd, MSE (degree 2)                     2.56   3.13     34.1
pgd, Huber (torch at every iteration)   2.40   16.2     31.6
pgd, difference of logits (discrete)    1.63   5.32     39.8
bifurcation, discrete (group maxima)    2.39   16.9     51.2
======================================  =====  =====  ========

(the first row on the grid env's full-year episode: 22.19 s vs 22.22 s of attack time, identical
perturbations on all 8,760 steps).  A loss outside the kernel pays one small torch autograd
call per iteration (70-300 us), so it stays 2-7x faster than autograd but loses the kernel's
speed at small batches; at larger batches the numpy loop's matmuls dominate and the difference
shrinks.  The paper's continuous bifurcation attack (``benchmarks/attack_speed.py``) and the
default MSE attacks keep the numba speed, and every loss exists once, in torch.

Recognised policies (anything else gives ``None`` from :func:`compile_policy`, and the attacks
use another engine):

* :class:`rlkit.policy.PolicyView` (normaliser, then body) with float32 parameters;
* :class:`rlkit.policy.ObsNormalizer` (``clamp((x - mean) / std, -clip, clip)``);
* ``nn.Sequential`` / ``nn.Linear`` / ``nn.ReLU`` / ``nn.Tanh`` / ``nn.Identity`` /
  ``nn.Flatten`` (exact types, so subclasses with their own ``forward`` are not mistaken);
* the SB3 bodies of :mod:`rlkit.agents.sb3`: ``_ActorMean`` (SAC/TD3/DDPG actors) and
  ``_ActorCriticHead`` (PPO/A2C), when the features extractor is SB3's ``FlattenExtractor`` on a
  non-image ``Box`` space.

The gradient follows autograd's conventions: ReLU passes no gradient at 0 and clamp passes it on
the closed range ``[-clip, clip]``.  The PGD update repeats the exact elementwise operations of
:func:`rlkit.attacks.optim.pgd` in the observations' dtype, so the engines differ only by the
rounding of the network's sums, which can flip the sign of a gradient component that is ~0.
The clean output that a loss is defined around (``OutputLoss.prepare``) is computed with this
module's own forward pass, so a loss whose gradient vanishes at the clean point (a distance from
the clean action) has an exactly zero gradient there, as with autograd.  Only 2-D observation
batches on the CPU are handled.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from .budget import BoundBudget
from .losses import OutputLoss
from .optim import Optimiser, ascent_direction, check_clip, pgd_result, step_schedule

_nb: Any
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
Op = tuple[int, Any, Any, float]


def numba_available() -> bool:
    """Whether the numba backend can be used (numba is installed)."""
    return _nb is not None


# --------------------------------------------------------------------------- recognising
def _loaded_class(module: str, name: str) -> type | None:
    """Class ``name`` of an already imported module (None if not imported: nothing to match).

    :param module: the module's import name.
    :param name: the class name.
    """
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def _sb3_features_ok(policy: Any, extractor: Any) -> bool:
    """Whether SB3's ``policy.extract_features(obs, extractor)`` is a plain float flatten.

    :param policy: the SB3 policy (or actor).
    :param extractor: its features extractor.
    """
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


def _walk_sb3(module: Any, kind: type) -> list[tuple[int, Any]] | None:
    """Op list of the SB3 bodies of :mod:`rlkit.agents.sb3` (None if not recognised).

    :param module: an ``_ActorMean`` or ``_ActorCriticHead``.
    :param kind: its type.
    """
    if kind is _loaded_class("rlkit.agents.sb3", "_ActorMean"):
        actor = module.actor
        if not _sb3_features_ok(actor, actor.features_extractor):
            return None
        latent = getattr(module, "latent", None)
        if latent is None:
            latent = actor.latent_pi if hasattr(actor, "latent_pi") else nn.Identity()
        return _chain(actor.features_extractor.flatten, latent, module.head)
    policy = module.policy
    extractor = getattr(policy, "pi_features_extractor", None)
    mlp: Any = getattr(policy, "mlp_extractor", None)
    mlp_cls = _loaded_class("stable_baselines3.common.torch_layers", "MlpExtractor")
    if extractor is None or mlp_cls is None or type(mlp) is not mlp_cls:
        return None
    if not _sb3_features_ok(policy, extractor):
        return None
    return _chain(extractor.flatten, policy.mlp_extractor.policy_net, policy.action_net)


def _walk(module: Any) -> list[tuple[int, Any]] | None:
    """Op list of ``module`` (referencing its layers) or None if it is not a recognised chain.

    :param module: a policy or one of its sub-modules.
    """
    kind = type(module)
    if kind in (nn.Identity, nn.Flatten):
        # Flatten(1, -1) is the identity on the (B, n) batches the engine accepts
        if kind is nn.Flatten and (module.start_dim, module.end_dim) != (1, -1):
            return None
        return []
    simple = {nn.Linear: _LINEAR, nn.ReLU: _RELU, nn.Tanh: _TANH}
    if kind in simple:
        return [(simple[kind], module if kind is nn.Linear else None)]
    if kind is nn.Sequential:
        return _chain(*module)
    if kind is _loaded_class("rlkit.policy", "ObsNormalizer"):
        return [(_AFFINE, module)]
    if kind is _loaded_class("rlkit.policy", "PolicyView"):
        return _chain(module.normalizer, module.body)
    if kind in (
        _loaded_class("rlkit.agents.sb3", "_ActorMean"),
        _loaded_class("rlkit.agents.sb3", "_ActorCriticHead"),
    ):
        return _walk_sb3(module, kind)
    return None


def _chain(*modules: Any) -> list[tuple[int, Any]] | None:
    """Concatenated op lists of ``modules`` applied in order (None if any is unrecognised).

    :param modules: the modules, in order.
    """
    ops: list[tuple[int, Any]] = []
    for module in modules:
        sub = _walk(module)
        if sub is None:
            return None
        ops.extend(sub)
    return ops


class MLPPlan:
    """The structure of a recognised MLP policy: ops referencing the live torch modules.

    Parameters are read at every :meth:`net` call (as zero-copy numpy views), so training or
    loading weights after the attack was built is seen, as with autograd.

    :param ops: ``(kind, module)`` pairs (kinds: linear, relu, tanh, affine_clamp).
    :param float32_input: the policy casts its input to float32 (``PolicyView.forward`` does).
    """

    def __init__(self, ops: list[tuple[int, Any]], float32_input: bool) -> None:
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

    def unavailable(self) -> str | None:
        """Why :meth:`net` cannot serve the current parameters (None when it can)."""
        tensors = self._tensors()
        if not tensors:
            return "the policy has no parameters"
        dtype = tensors[0].dtype
        if any(t.device.type != "cpu" for t in tensors):
            return "the policy's parameters are not on the CPU"
        if any(t.dtype != dtype for t in tensors) or dtype not in (torch.float32, torch.float64):
            return "the policy's parameters are not all float32 or all float64"
        if self.float32_input and dtype != torch.float32:
            return "a PolicyView casts its input to float32 but its parameters are float64"
        return None

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype (the compute dtype of :meth:`net`)."""
        return self._tensors()[0].dtype

    def net(self) -> MLPNet | None:
        """A numpy executor over the current parameters; None if :meth:`unavailable`."""
        if self.unavailable() is not None:
            return None
        ops: list[Op] = []
        for kind, module in self.ops:
            if kind == _LINEAR:
                bias = None if module.bias is None else module.bias.detach().numpy()
                ops.append((kind, module.weight.detach().numpy(), bias, 0.0))
            elif kind == _AFFINE:
                ops.append(
                    (
                        kind,
                        module.mean.detach().numpy(),
                        module.std.detach().numpy(),
                        float(module.clip),
                    )
                )
            else:
                ops.append((kind, None, None, 0.0))
        return MLPNet(ops, np.dtype(str(self.dtype).removeprefix("torch.")), plan=self)


def compile_policy(policy: Any) -> MLPPlan | None:
    """Recognise ``policy`` as a chain of affine/clamp, Linear and ReLU/Tanh layers.

    :param policy: the attack's policy view (usually a :class:`rlkit.policy.PolicyView`).
    :return: an :class:`MLPPlan`, or None when the policy is anything else.
    """
    ops = _walk(policy)
    if not ops or not any(kind == _LINEAR for kind, _ in ops):
        return None
    view_cls = _loaded_class("rlkit.policy", "PolicyView")
    return MLPPlan(ops, float32_input=view_cls is not None and type(policy) is view_cls)


# --------------------------------------------------------------------------- output gradients
def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """``values`` restricted to ``rows`` (all when None).

    :param values: per-sample array (B, ...).
    :param rows: sample indices or None.
    """
    return values if rows is None else values[rows]


class OutputGrad:
    """Gradient of a summed per-sample attack loss w.r.t. the policy output.

    Calling it with ``(z, rows)`` gives ``dL/dz`` for the outputs ``z`` (B', k) of the samples
    ``rows`` of the attacked batch (None = all).
    """

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """The output gradient of samples ``rows`` at outputs ``z``.

        :param z: policy outputs of those samples (B', k).
        :param rows: their indices in the attacked batch (None = all).
        """
        raise NotImplementedError


class ConstantGrad(OutputGrad):
    """A loss affine in the policy output: the gradient ``grad`` does not depend on it.

    The numpy executor then skips the trailing linear layers in the forward pass and
    back-propagates ``grad`` through them once per attack call; the numba kernel serves only
    these.

    :param grad: the per-sample output gradient (B, k).
    """

    def __init__(self, grad: np.ndarray) -> None:
        """Store the gradient."""
        self.grad = np.ascontiguousarray(grad)

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """The gradient of samples ``rows`` (``z`` is not needed).

        :param z: unused.
        :param rows: sample indices (None = all).
        """
        return _take(self.grad, rows)


class TorchOutputGrad(OutputGrad):
    """The output gradient of an :class:`~rlkit.attacks.losses.OutputLoss`, by torch autograd.

    :param loss: the attack's loss.
    :param args: its per-sample tensors (``loss.prepare(clean)``), batch first.
    """

    def __init__(self, loss: OutputLoss, args: tuple[torch.Tensor, ...]) -> None:
        """Store the loss and its tensors."""
        self.loss, self.args = loss, args

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """``d sum(loss) / dz`` of samples ``rows`` at outputs ``z``.

        :param z: policy outputs of those samples (B', k).
        :param rows: their indices in the attacked batch (None = all).
        """
        args = self.args if rows is None else tuple(a[torch.from_numpy(rows)] for a in self.args)
        return self.loss.output_gradient(torch.from_numpy(z), args).numpy()


#: batches above this size take the gradient of an ordinal loss without declared cells from torch
#: at every iteration: the per-sample order keys cost more than one autograd call on the whole
#: batch (measured on 20 logits: 10x faster at batch 1, even at 16-32, 6x slower at 256).  A loss
#: that declares its cells (``OutputLoss.cells``) is looked up at every batch size: its keys are
#: cheap (on the untrained 20-bin PPO, PGD and bifurcation at batch 32: 2.5x and 2.6x faster
#: than torch at every iteration, at 256: 1.5x and 1.4x)
ORDINAL_MAX_BATCH = 16


class OrdinalGrad(OutputGrad):
    """A loss affine on each cell of the outputs' order (``OutputLoss.ordinal``): the output
    gradient from torch, once per (sample arguments, cell) met.  The cell is the loss's own
    coarser partition when it declares one (``OutputLoss.cells``: the tie sets of the maxima it
    takes, for the difference of logits and discrete GDL), else the order of ``z`` and 0 with
    its ties.

    Within a cell every max and min the loss takes picks the same entries (and splits ties the
    same way), so torch's gradient at any point of the cell is the gradient everywhere in it:
    the cached value is what :class:`TorchOutputGrad` would return, bit for bit. Rows with a
    non-finite output are never cached (an infinite logit ties with ``neg_inf``'s fill, which
    the key does not see, and NaN ties with nothing): torch answers them every time.  A PGD call
    rarely crosses more than a few cells, so its 100 iterations ask torch a few times.

    :param loss: an ordinal loss.
    :param args: its per-sample tensors (``loss.prepare(clean)``), batch first.
    :param size: cells kept (emptied when full).
    """

    def __init__(self, loss: OutputLoss, args: tuple[torch.Tensor, ...], size: int = 4096) -> None:
        """Store the loss, its tensors and each sample's argument key."""
        self.loss, self.args, self.size = loss, args, size
        batch = args[0].shape[0] if args else 0
        self._np_args = [np.ascontiguousarray(a.detach().cpu().numpy()) for a in args]
        flat = [a.reshape(batch, -1) for a in self._np_args]
        self._arg_keys = [b"".join(f[b].tobytes() for f in flat) for b in range(batch)]
        self._cells: dict[tuple[bytes, ...], np.ndarray] = {}

    def _cell_codes(self, z: np.ndarray, rows: np.ndarray | None) -> list[bytes]:
        """Per row, the bytes naming its cell: the loss's own ``cells`` when it declares them,
        else the order of the outputs and 0 with its ties."""
        if self.loss.cells is not None:
            args = self._np_args if rows is None else [a[rows] for a in self._np_args]
            codes = self.loss.cells(z, *args)
            return [row.tobytes() for row in codes.reshape(len(z), -1)]
        ext = np.concatenate([z, np.zeros((z.shape[0], 1), z.dtype)], axis=1)
        order = np.argsort(ext, axis=1, kind="stable")
        ranked = np.take_along_axis(ext, order, axis=1)
        ties = ranked[:, 1:] == ranked[:, :-1]
        return [order[i].tobytes() + ties[i].tobytes() for i in range(len(z))]

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """``d sum(loss) / dz`` of samples ``rows`` at outputs ``z``.

        :param z: policy outputs of those samples (B', k).
        :param rows: their indices in the attacked batch (None = all).
        """
        assert z is not None
        index = range(z.shape[0]) if rows is None else rows.tolist()
        if np.isfinite(z).all():
            codes = self._cell_codes(z, rows)
            keys: list[tuple[bytes, bytes] | None] = [
                (self._arg_keys[b], code) for b, code in zip(index, codes, strict=True)
            ]
        else:  # inf ties with neg_inf's fill, NaN ties nothing: never cached
            finite = np.isfinite(z).all(axis=1)
            codes = self._cell_codes(np.where(finite[:, None], z, 0), rows)
            keys = [
                (self._arg_keys[b], codes[i]) if finite[i] else None for i, b in enumerate(index)
            ]
        missing = [i for i, key in enumerate(keys) if key is None or key not in self._cells]
        if not missing:
            if len(keys) == 1 and keys[0] is not None:
                return self._cells[keys[0]][None]  # a view: the cached rows are read-only
            return np.stack([self._cells[key] for key in keys if key is not None])
        if len(self._cells) + len(missing) > self.size:
            self._cells.clear()
            missing = list(range(len(keys)))
        sub = torch.as_tensor([index[i] for i in missing], dtype=torch.long)
        grads = self.loss.output_gradient(
            torch.from_numpy(z[missing]), tuple(a[sub] for a in self.args)
        ).numpy()
        fresh = dict(zip(missing, grads, strict=True))
        for i, grad in fresh.items():
            key = keys[i]
            if key is not None:
                grad.setflags(write=False)
                self._cells[key] = grad
        return np.stack(
            [fresh[i] if k is None or i in fresh else self._cells[k] for i, k in enumerate(keys)]
        )


class AffineGrad(OutputGrad):
    """A quadratic loss: the output gradient is ``g0 + H (z - z0)`` per sample.

    Written around the clean output ``z0``, so that at ``z == z0`` the gradient is exactly
    ``g0`` (exactly zero for a distance from the clean action), whatever the rounding of ``H``.

    :param g0: gradient at ``z0`` (B, k).
    :param hessian: per-sample Hessians (B, k, k).
    :param z0: the outputs the expansion is taken at (B, k), from the same forward pass as the
        iterates' outputs.
    """

    def __init__(self, g0: np.ndarray, hessian: np.ndarray, z0: np.ndarray) -> None:
        """Store the expansion."""
        self.g0 = np.ascontiguousarray(g0)
        self.hessian = np.ascontiguousarray(hessian)
        self.z0 = np.ascontiguousarray(z0)

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """``g0 + H (z - z0)`` of samples ``rows`` at outputs ``z``.

        :param z: policy outputs of those samples (B', k).
        :param rows: their indices in the attacked batch (None = all).
        """
        dz = z - _take(self.z0, rows)
        return _take(self.g0, rows) + np.einsum("bjl,bl->bj", _take(self.hessian, rows), dz)


class PiecewiseGrad(OutputGrad):
    """A loss piecewise affine in each output (``OutputLoss.kinks``): per sample and output
    ``j`` the gradient is ``below[j]``, ``at[j]`` or ``above[j]`` as ``s = slope[j] * z[j] +
    offset[j]`` is negative, zero or positive.

    :param table: (B, 5, k): rows ``below, at, above`` (output gradients from torch on each side
        of the kink and at it), then ``slope`` and ``offset``, in the compute dtype.
    """

    def __init__(self, table: np.ndarray) -> None:
        """Store the table."""
        self.table = np.ascontiguousarray(table)

    def __call__(self, z: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        """The output gradient of samples ``rows`` at outputs ``z``.

        :param z: policy outputs of those samples (B', k).
        :param rows: their indices in the attacked batch (None = all).
        """
        table = _take(self.table, rows)
        s = table[:, 3] * z.astype(table.dtype, copy=False) + table[:, 4]
        return np.where(s < 0, table[:, 0], np.where(s > 0, table[:, 2], table[:, 1]))


def piecewise_table(
    loss: OutputLoss, like: torch.Tensor, args: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """The :class:`PiecewiseGrad` table (B, 5, k) of ``loss`` (with ``kinks``), from torch.

    The output gradient is taken by torch autograd at one point on each side of every kink and
    at the kink itself (``z = -offset / slope``; outputs with ``slope == 0`` never change
    piece, so any point serves them); the loss is separable over outputs, so one evaluation
    per point serves every output at once.

    :param loss: a loss whose ``kinks`` is set.
    :param like: clean outputs (B, k) (shape and dtype).
    :param args: ``loss.prepare(clean)``.
    """
    assert loss.kinks is not None
    slope, offset = (t.to(like.dtype).reshape(like.shape) for t in loss.kinks(*args))
    flat = slope == 0
    kink = torch.where(flat, torch.zeros_like(slope), -offset / torch.where(flat, 1.0, slope))
    away = torch.sign(slope) * (1.0 + kink.abs())
    grads = [loss.output_gradient(z, args) for z in (kink - away, kink, kink + away)]
    return torch.stack([*grads, slope, offset], dim=1)


class ConstantGradCache:
    """Per-sample output-gradient data of affine and piecewise-affine losses, per (loss, sample
    arguments), from torch once each.

    The output gradient of an affine loss does not depend on the output (and the table of a
    piecewise-affine one, :func:`piecewise_table`, depends only on the loss's arguments), and
    the samples do not interact, so each sample's row is a function of its own row of the
    loss's arguments (e.g. its clean group label): for small batches, looking it up is cheaper
    than torch autograd calls per attack call.

    :param max_batch: batches above this size are not looked up (building the keys would cost
        more than the autograd call).
    :param size: entries kept (the cache is emptied when full).
    """

    def __init__(self, max_batch: int = 16, size: int = 4096) -> None:
        """Start empty."""
        self.max_batch, self.size = max_batch, size
        self._rows: dict[Any, np.ndarray] = {}

    def gradient(
        self, loss: OutputLoss, clean: torch.Tensor, args: tuple[torch.Tensor, ...]
    ) -> np.ndarray:
        """The output gradient (B, k) of the degree-1 ``loss`` at ``clean``.

        :param loss: an affine loss (``degree == 1``).
        :param clean: clean outputs (B, k).
        :param args: ``loss.prepare(clean)``.
        """
        return self._lookup(
            "gradient", loss, clean, args, lambda z, a: loss.output_gradient(z, a).numpy()
        )

    def piecewise(
        self, loss: OutputLoss, clean: torch.Tensor, args: tuple[torch.Tensor, ...]
    ) -> np.ndarray:
        """The :func:`piecewise_table` (B, 5, k) of the piecewise-affine ``loss``.

        :param loss: a loss with ``kinks``.
        :param clean: clean outputs (B, k).
        :param args: ``loss.prepare(clean)``.
        """
        return self._lookup(
            "piecewise", loss, clean, args, lambda z, a: piecewise_table(loss, z, a).numpy()
        )

    def _lookup(
        self,
        tag: str,
        loss: OutputLoss,
        clean: torch.Tensor,
        args: tuple[torch.Tensor, ...],
        compute: Any,
    ) -> np.ndarray:
        """Rows of ``compute(clean, args)`` (a function of each row of ``args`` alone), cached.

        :param tag: what is computed.
        :param loss: the loss.
        :param clean: clean outputs (B, k).
        :param args: ``loss.prepare(clean)``.
        :param compute: ``(clean rows, args rows) -> array`` with one row per sample.
        """
        batch = clean.shape[0]
        key = loss.key
        if batch > self.max_batch or key[0] == "id":
            return compute(clean, args)
        flat = [np.ascontiguousarray(a.detach().cpu().numpy()).reshape(batch, -1) for a in args]
        head = (tag, key, tuple(clean.shape[1:]), str(clean.dtype))
        keys = [(head, *(f[b].tobytes() for f in flat)) for b in range(batch)]
        missing = [b for b, k in enumerate(keys) if k not in self._rows]
        if missing:
            if len(self._rows) + len(missing) > self.size:
                self._rows.clear()
                missing = list(range(batch))
            idx = torch.as_tensor(missing)
            values = compute(clean[idx], tuple(a[idx] for a in args))
            for j, b in enumerate(missing):
                self._rows[keys[b]] = values[j]
        return np.stack([self._rows[k] for k in keys])


def output_grad_for(
    loss: OutputLoss,
    clean: torch.Tensor,
    args: tuple[torch.Tensor, ...],
    cache: ConstantGradCache | None = None,
) -> OutputGrad:
    """The output gradient the MLP engine uses for ``loss``.

    :param loss: the attack's loss.
    :param clean: the clean policy outputs (B, k), from :meth:`MLPNet.forward`.
    :param args: ``loss.prepare(clean)``.
    :param cache: where to look up constant gradients (None: always ask torch).
    :return: :class:`ConstantGrad` (degree 1) or :class:`AffineGrad` (degree 2), both from torch
        at ``clean``, :class:`PiecewiseGrad` (``kinks``), :class:`OrdinalGrad` (``ordinal``),
        else a :class:`TorchOutputGrad`.
    """
    if loss.kinks is not None:
        if cache is not None:
            return PiecewiseGrad(cache.piecewise(loss, clean, args))
        return PiecewiseGrad(piecewise_table(loss, clean, args).numpy())
    if loss.degree == 1:
        if cache is not None:
            return ConstantGrad(cache.gradient(loss, clean, args))
        return ConstantGrad(loss.output_gradient(clean, args).numpy())
    if loss.degree == 2:
        return AffineGrad(
            loss.output_gradient(clean, args).numpy(),
            loss.output_hessian(clean, args).numpy(),
            clean.numpy(),
        )
    if loss.ordinal and (loss.cells is not None or clean.shape[0] <= ORDINAL_MAX_BATCH):
        # a few cells per sample: room for them all, or every call would empty the cache
        return OrdinalGrad(loss, args, size=max(4096, 8 * clean.shape[0]))
    return TorchOutputGrad(loss, args)


#: the loss forms the numba kernel serves: 1 (affine), 2 (quadratic), "kinks" (piecewise affine)
KERNEL_FORMS = (1, 2, "kinks")


def loss_form(loss: OutputLoss) -> int | str | None:
    """The form of ``loss`` in the policy output: ``"kinks"``, its degree (1 or 2), or None.

    :param loss: an attack loss.
    """
    return "kinks" if loss.kinks is not None else loss.degree


def kernel_degree(output_grad: OutputGrad) -> int | str | None:
    """The loss form the numba kernel sees in ``output_grad`` (None: it cannot serve).

    :param output_grad: an output gradient.
    """
    if isinstance(output_grad, ConstantGrad):
        return 1
    if isinstance(output_grad, AffineGrad):
        return 2
    if isinstance(output_grad, PiecewiseGrad):
        return "kinks"
    return None


# --------------------------------------------------------------------------- numpy executor
class MLPNet:
    """Forward pass and input gradient of a recognised MLP, on numpy arrays.

    :param ops: ``(kind, a, b, c)``: linear ``(W, bias or None)``; affine_clamp
        ``(mean, std, clip)``; relu/tanh without arrays.
    :param dtype: the parameters' dtype (computation runs in it, as in torch).
    :param plan: the plan that made the executor (caches the numba kernel's flat weights).
    """

    def __init__(self, ops: list[Op], dtype: np.dtype, plan: MLPPlan | None = None) -> None:
        """Store the ops and the compute dtype; split off the trailing linear layers."""
        self.ops = ops
        self.dtype = dtype
        self._plan = plan
        last = max((i for i, op in enumerate(ops) if op[0] != _LINEAR), default=-1)
        self.head, self.tail = ops[: last + 1], ops[last + 1 :]
        self._tail_cache: tuple[ConstantGrad, np.ndarray] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Policy output (B, k) for the observation batch ``x`` (B, n) (batched numpy).

        :param x: observations.
        """
        return self._forward(x, self.ops, None, True)

    def _forward(
        self, x: np.ndarray, ops: list[Op], tape: list[Any] | None, output: bool
    ) -> np.ndarray:
        """Run ``ops`` on ``x``, appending what the backward pass needs to ``tape``.

        :param x: input batch.
        :param ops: the ops to run.
        :param tape: list receiving ReLU masks, tanh outputs and clamp masks (None: none kept).
        :param output: False: a final ReLU only records its mask (its output is not needed).
        """
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
    def _backward(g: np.ndarray, ops: list[Op], tape: list[Any]) -> np.ndarray:
        """Back-propagate the gradient ``g`` at the output of ``ops`` to their input.

        :param g: gradient at the output.
        :param ops: the ops that ran.
        :param tape: what their forward pass recorded (consumed).
        """
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

    def input_gradient(
        self, x: np.ndarray, output_grad: OutputGrad, rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Gradient of the summed loss w.r.t. the observations ``x`` (B', n), dtype of ``x``.

        :param x: observation batch (all samples, or the samples ``rows`` of the attacked batch).
        :param output_grad: the loss gradient w.r.t. the policy output.
        :param rows: indices of the samples of the attacked batch that ``x`` holds (None = all).
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
        """Whether ``cached`` (from :meth:`_pack_weights`) holds this executor's weights.

        :param cached: the packed weights.
        """
        codes, _, _, woff, _, wbuf, _ = cached
        if len(codes) != len(self.ops) or wbuf.dtype != self.dtype:
            return False
        for i, (kind, a, _, _) in enumerate(self.ops):
            if codes[i] != kind:
                return False
            if kind == _LINEAR:
                part = wbuf[woff[i] : woff[i] + a.size]
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
def _net_forward_py(
    x,
    codes,
    din,
    dout,
    woff,
    poff,
    clips,
    wtbuf,
    pbuf,  # noqa: ANN001, ANN202
    buf,
    widths,
):
    """Forward pass of one sample ``x``: layer outputs into ``buf`` rows, widths into ``widths``.

    Linear layers are axpys over W^T rows that skip zero inputs (ReLU leaves many).
    """
    n_ops = codes.shape[0]
    width = x.shape[0]
    for i in range(width):
        buf[0, i] = x[i]
    widths[0] = width
    for op in range(n_ops):
        code = codes[op]
        src = buf[op]
        dst = buf[op + 1]
        if code == 0:  # linear: dst = W src + b (slices keep indices provably non-negative)
            di, do, wo, bo = din[op], dout[op], woff[op], poff[op]
            if bo >= 0:
                bias = pbuf[bo : bo + do]
                for j in range(do):
                    dst[j] = bias[j]
            else:
                for j in range(do):
                    dst[j] = 0.0
            for k in range(di):
                v = src[k]
                if v != 0.0:
                    w = wtbuf[wo + k * do : wo + (k + 1) * do]
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
            mean, std = pbuf[mo : mo + width], pbuf[mo + width : mo + 2 * width]
            for j in range(width):
                u = (src[j] - mean[j]) / std[j]
                dst[j] = -cl if u < -cl else (cl if u > cl else u)
        widths[op + 1] = width


def _net_backward_py(
    codes,
    woff,
    poff,
    clips,
    wbuf,
    pbuf,
    buf,
    gb,
    widths,  # noqa: ANN001, ANN202
    out,
):
    """Back-propagate the output gradient in ``gb[0]`` through the ops recorded in ``buf``.

    The two rows of ``gb`` ping-pong between layers; the input gradient lands in ``out``.
    """
    p = 0
    for op in range(codes.shape[0] - 1, -1, -1):
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
                    w = wbuf[wo + j * win : wo + (j + 1) * win]
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
            mean, std = pbuf[mo : mo + win], pbuf[mo + win : mo + 2 * win]
            for j in range(win):
                u = (src[j] - mean[j]) / std[j]
                nxt[j] = cur[j] / std[j] if (u >= -cl and u <= cl) else 0.0
        p = 1 - p
    for i in range(out.shape[0]):
        out[i] = gb[p, i]


def _net_grad_py(
    x,
    codes,
    din,
    dout,
    woff,
    poff,
    clips,
    wbuf,
    wtbuf,
    pbuf,  # noqa: ANN001, ANN202
    buf,
    gb,
    widths,
    g0,
    hess,
    z0,
    table,
    form,
    take_z0,
    out,
):
    """Input gradient of one sample ``x`` into ``out``, for the output gradient at the sample's
    output ``z``: ``g0`` (``form`` 0: constant), ``g0 + hess (z - z0)`` (1: a quadratic loss)
    or, per output ``j``, ``table[0, j]``, ``table[1, j]`` or ``table[2, j]`` as ``table[3, j] *
    z[j] + table[4, j]`` is negative, zero or positive (2: a piecewise-affine loss, see
    :class:`PiecewiseGrad`).

    ``take_z0``: ``x`` is the clean observation; its output (from this very forward pass)
    becomes ``z0``, so the gradient there is exactly ``g0``.
    """
    _net_forward(x, codes, din, dout, woff, poff, clips, wtbuf, pbuf, buf, widths)
    g = gb[0]
    k = g0.shape[0]
    z = buf[codes.shape[0]]
    if form == 1 and take_z0:
        for j in range(k):
            z0[j] = z[j]
    for j in range(k):
        if form == 2:
            s = table[3, j] * z[j] + table[4, j]
            if s < 0:
                v = table[0, j]
            elif s > 0:
                v = table[2, j]
            else:
                v = table[1, j]
        else:
            v = g0[j]
            if form == 1:
                for m in range(k):
                    v += hess[j, m] * (z[m] - z0[m])
        g[j] = v
    _net_backward(codes, woff, poff, clips, wbuf, pbuf, buf, gb, widths, out)


def _pgd_py(
    obs,
    delta,
    eps,
    active,
    lo,
    hi,
    steps,
    every_step,
    can_stop,  # noqa: ANN001, ANN202
    codes,
    din,
    dout,
    woff,
    poff,
    clips,
    wbuf,
    wtbuf,
    pbuf,
    maxw,
    g0,
    hess,
    z0,
    table,
    form,
    from_clean,
    counts,
):
    """Linf PGD of every sample, in place on ``delta`` (numba kernel; see :func:`fast_pgd`).

    The output gradient of sample ``row`` is ``g0[row]`` (``form`` 0), plus ``hess[row] (z -
    z0[row])`` (1: a quadratic loss), or chosen per output from ``table[row]`` (2: piecewise
    affine, see :func:`_net_grad_py`); with ``from_clean`` (delta starts at 0) the first forward
    pass of each sample, at its clean observation, sets ``z0[row]``.  The update repeats
    ``pgd``'s elementwise operations in the observations' dtype: ``delta + step * sign(g)``
    (inactive features: ``+ 0``), clamp to ``[-eps, eps]``, then, if ``every_step`` (``clip=
    "every_step"``), ``clip(obs + delta, lo, hi) - obs``.
    """
    batch, n = obs.shape
    buf = np.empty((codes.shape[0] + 1, maxw), wbuf.dtype)
    gb = np.empty((2, maxw), wbuf.dtype)
    widths = np.empty(codes.shape[0] + 1, np.int64)
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
                _net_grad(
                    x,
                    codes,
                    din,
                    dout,
                    woff,
                    poff,
                    clips,
                    wbuf,
                    wtbuf,
                    pbuf,
                    buf,
                    gb,
                    widths,
                    g0[row],
                    hess[row if form == 1 else 0],
                    z0[row if form == 1 else 0],
                    table[row if form == 2 else 0],
                    form,
                    from_clean and it == 0,
                    grad,
                )
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
                if every_step:
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
    # reassociation lets the axpy loops use FMA/wide adds.  The PGD update kernel keeps strict
    # IEEE semantics (it mirrors torch).
    _FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
    _net_forward = _nb.njit(cache=True, fastmath=_FASTMATH)(_net_forward_py)
    _net_backward = _nb.njit(cache=True, fastmath=_FASTMATH)(_net_backward_py)
    _net_grad = _nb.njit(cache=True)(_net_grad_py)
    _pgd_kernel = _nb.njit(cache=True)(_pgd_py)
else:  # pragma: no cover - numba missing
    _net_forward, _net_backward, _net_grad = _net_forward_py, _net_backward_py, _net_grad_py
    _pgd_kernel = None


# --------------------------------------------------------------------------- optimisers
@lru_cache(maxsize=64)
def _steps(
    step_size: float, iterations: int, decay_every: int, decay_rate: float, decay_schedule: str
) -> tuple[float, ...]:
    """:func:`step_schedule`, memoised (it is called once per attack call)."""
    return tuple(step_schedule(step_size, iterations, decay_every, decay_rate, decay_schedule))


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A detached CPU numpy view of ``t``.

    :param t: a CPU tensor.
    """
    return t.detach().numpy()


def fast_fgsm(
    net: MLPNet,
    output_grad: OutputGrad,
    obs: torch.Tensor,
    budget: BoundBudget,
    *,
    random_start: bool = False,
    clip: str = "end",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`rlkit.attacks.optim.fgsm` with the gradient from ``net``.

    :param net: the policy's numpy executor.
    :param output_grad: loss gradient w.r.t. the policy output.
    :param obs: clean batch (B, n) on the CPU.
    :param budget: tensor budget bound to ``obs``.
    :param random_start: step from a random in-budget point.
    :param clip: ``"end"``, ``"none"`` or ``"every_step"``, see
        :func:`rlkit.attacks.optim.fgsm_steps`.
    :param generator: RNG for the random start.
    """
    check_clip(clip)
    start = obs
    if random_start:
        start = obs + budget.random_delta(obs, generator)
        if clip == "every_step":
            start = budget.clip(start, obs)
    grad = torch.from_numpy(net.input_gradient(_numpy(start), output_grad))
    delta = budget.eps * ascent_direction(grad, budget)
    return budget.clip(start + delta, obs, bounds=clip != "none").detach()


def choose_backend(
    net: MLPNet,
    degree: int | str | None,
    obs: torch.Tensor,
    budget: BoundBudget,
    backend: str = "auto",
) -> str:
    """The PGD backend for this call: "numba" or "numpy".

    :param net: the policy's numpy executor.
    :param degree: the loss's form in the output (:func:`loss_form`; numba: one of
        :data:`KERNEL_FORMS`: degree 1 or 2, or ``"kinks"``).
    :param obs: the clean batch.
    :param budget: the bound budget (numba: linf only).
    :param backend: "auto" (numba when it can serve the call and the batch has at most
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
    if np.dtype(str(obs.dtype).removeprefix("torch.")) != net.dtype:
        reasons.append("the observations' dtype differs from the parameters'")
    if degree not in KERNEL_FORMS:
        reasons.append("the loss is not affine, quadratic or piecewise affine in the policy output")
    if not reasons and (backend == "numba" or obs.shape[0] <= NUMBA_MAX_BATCH):
        return "numba"
    if backend == "numba":
        raise ValueError("numba backend unavailable: " + "; ".join(reasons))
    return "numpy"


def fast_pgd(
    net: MLPNet,
    output_grad: OutputGrad,
    obs: torch.Tensor,
    budget: BoundBudget,
    optimiser: Optimiser,
    *,
    generator: torch.Generator | None = None,
    backend: str = "auto",
    reuse: bool = True,
    stats: dict[str, int] | None = None,
) -> torch.Tensor:
    """:func:`rlkit.attacks.optim.pgd` with the gradient from ``net``, outside torch.

    The update is the same sequence of elementwise operations as in ``pgd`` (same dtype), so
    the iterates match the autograd path up to the rounding of the network's sums.

    :param net: the policy's numpy executor.
    :param output_grad: loss gradient w.r.t. the policy output (an :class:`AffineGrad` taken
        around :meth:`MLPNet.forward` outputs; the numba kernel re-takes ``z0`` from its own
        forward pass when delta starts at 0).
    :param obs: clean batch (B, n) on the CPU.
    :param budget: tensor budget bound to ``obs``.
    :param optimiser: the PGD settings (``method`` is ignored).
    :param generator: RNG for the random start.
    :param backend: "auto", "numba" or "numpy", see :func:`choose_backend`.
    :param reuse: skip work that cannot change the result: the gradient is a function of the
        iterate, so it is recomputed only for samples whose iterate moved, and (linf) a sample
        whose iterate one step left unchanged is a fixed point of every later step (each feature
        sits on the face its gradient sign points at, and later steps are far above rounding),
        so its loop stops.
    :param stats: if given, ``"rows"`` (sample-iterations) and ``"gradient_rows"`` (gradients
        actually computed) are added to it.
    """
    opt = optimiser
    obs = obs.detach()
    check_clip(opt.clip)
    every_step = opt.clip == "every_step"
    delta_t = budget.random_delta(obs, generator) if opt.random_start else torch.zeros_like(obs)
    if every_step:
        delta_t = budget.clip_bounds(obs + delta_t, obs) - obs
    o, delta = _numpy(obs), _numpy(delta_t).copy()
    eps_vec = _numpy(budget.eps_vec)
    steps = _steps(
        opt.step_size, opt.iterations, opt.decay_every, opt.decay_rate, opt.decay_schedule
    )
    tol = (
        64
        * np.finfo(o.dtype).eps
        * (1.0 + float(np.abs(o).max(initial=0.0)) + float(eps_vec.max(initial=0.0)))
    )
    can_stop = reuse and budget.norm == "linf" and bool(steps) and min(steps) >= tol
    lo = None if budget.low is None else np.minimum(_numpy(budget.low), o)
    hi = None if budget.high is None else np.maximum(_numpy(budget.high), o)
    chosen = choose_backend(net, kernel_degree(output_grad), obs, budget, backend)
    if (
        chosen == "numba"
        and reuse
        and isinstance(output_grad, ConstantGrad | AffineGrad | PiecewiseGrad)
    ):
        delta, computed = _numba_pgd(
            net,
            output_grad,
            o,
            delta,
            budget,
            steps,
            lo,
            hi,
            every_step,
            can_stop,
            not opt.random_start,
        )
    else:
        delta, computed = _numpy_pgd(
            net, output_grad, o, delta, budget, steps, lo, hi, every_step, reuse, can_stop
        )
    if stats is not None:
        stats["rows"] = stats.get("rows", 0) + o.shape[0] * len(steps)
        stats["gradient_rows"] = stats.get("gradient_rows", 0) + computed
    return pgd_result(obs, torch.from_numpy(delta), budget, opt.clip)


def _numba_pgd(
    net: MLPNet,
    output_grad: ConstantGrad | AffineGrad | PiecewiseGrad,
    o: np.ndarray,
    delta: np.ndarray,
    budget: BoundBudget,
    steps: tuple[float, ...],
    lo: np.ndarray | None,
    hi: np.ndarray | None,
    every_step: bool,
    can_stop: bool,
    from_clean: bool,
) -> tuple[np.ndarray, int]:
    """The PGD loop of :func:`fast_pgd` in the numba kernel; (final delta, gradients computed).

    :param net: the policy's numpy executor.
    :param output_grad: the constant, affine or piecewise output gradient.
    :param o: clean batch (B, n).
    :param delta: start perturbation (B, n), updated in place.
    :param budget: the bound (linf) budget.
    :param steps: step size per iteration.
    :param lo: per-sample lower bounds ``min(low, obs)`` (None: no bound).
    :param hi: per-sample upper bounds ``max(high, obs)`` (None: no bound).
    :param every_step: clip to the bounds at every iteration.
    :param can_stop: stop a sample whose iterate did not move.
    :param from_clean: delta starts at 0 (no random start).
    """
    batch = o.shape[0]
    counts = np.zeros(batch, np.int64)
    codes, din, dout, woff, poff, clips, wbuf, wtbuf, pbuf = net.packed()
    maxw = int(max(o.shape[1], *np.abs(dout), *np.abs(din)))
    dt = net.dtype
    table = np.zeros((1, 5, 1), dt)
    hess, z0 = np.zeros((1, 1, 1), dt), np.zeros((1, 1), dt)
    if isinstance(output_grad, AffineGrad):
        g0 = np.ascontiguousarray(output_grad.g0, dtype=dt)
        hess = np.ascontiguousarray(output_grad.hessian, dtype=dt)
        z0, form = np.array(output_grad.z0, dtype=dt), 1  # a copy: the kernel writes it
    elif isinstance(output_grad, PiecewiseGrad):
        table = np.ascontiguousarray(output_grad.table, dtype=dt)
        g0, form = np.ascontiguousarray(table[:, 0]), 2
    else:
        g0 = np.ascontiguousarray(output_grad(None, None), dtype=dt).reshape(batch, -1)
        form = 0
    _pgd_kernel(
        np.ascontiguousarray(o),
        delta,
        _numpy(budget.eps_vec),
        _numpy(budget.active),
        np.full_like(o, -np.inf) if lo is None else lo,
        np.full_like(o, np.inf) if hi is None else hi,
        np.asarray(steps, dtype=o.dtype),
        bool(every_step),
        bool(can_stop),
        codes,
        din,
        dout,
        woff,
        poff,
        clips,
        wbuf,
        wtbuf,
        pbuf,
        maxw,
        g0,
        hess,
        z0,
        table,
        form,
        bool(from_clean),
        counts,
    )
    return delta, int(counts.sum())


def _numpy_pgd(
    net: MLPNet,
    output_grad: OutputGrad,
    o: np.ndarray,
    delta: np.ndarray,
    budget: BoundBudget,
    steps: tuple[float, ...],
    lo: np.ndarray | None,
    hi: np.ndarray | None,
    every_step: bool,
    reuse: bool,
    can_stop: bool,
) -> tuple[np.ndarray, int]:
    """The PGD loop of :func:`fast_pgd` with batched numpy matmuls; (final delta, gradients
    computed).

    :param net: the policy's numpy executor.
    :param output_grad: the loss gradient w.r.t. the policy output.
    :param o: clean batch (B, n).
    :param delta: start perturbation (B, n).
    :param budget: the bound budget.
    :param steps: step size per iteration.
    :param lo: per-sample lower bounds ``min(low, obs)`` (None: no bound).
    :param hi: per-sample upper bounds ``max(high, obs)`` (None: no bound).
    :param every_step: clip to the bounds at every iteration.
    :param reuse: recompute gradients only for samples that moved.
    :param can_stop: stop when no sample moved.
    """
    batch = o.shape[0]
    grad: np.ndarray | None = None
    last = delta
    computed = 0
    box = _linf_box(budget)
    for step in steps:
        if grad is None or not reuse:
            grad = net.input_gradient(o + delta, output_grad)
            computed += batch
        else:
            changed = (delta != last).any(axis=1)
            if changed.all():
                grad = net.input_gradient(o + delta, output_grad)
                computed += batch
            elif changed.any():
                rows = np.flatnonzero(changed)
                grad[rows] = net.input_gradient(o[rows] + delta[rows], output_grad, rows)
                computed += rows.size
            elif can_stop:
                break
        last = delta
        delta = _numpy_update(delta, grad, step, budget, box)
        if every_step:  # BoundBudget.clip_bounds(obs + delta, obs) - obs
            x = o + delta
            if lo is not None:
                np.maximum(x, lo, out=x)
            if hi is not None:
                np.minimum(x, hi, out=x)
            x -= o
            delta = x
    return delta, computed


def _linf_box(budget: BoundBudget) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """A linf budget's (eps_vec, -eps_vec, active mask or None when every feature is), as numpy
    arrays taken once per attack call; None for other norms."""
    if budget.norm != "linf":
        return None
    eps_vec, active = _numpy(budget.eps_vec), _numpy(budget.active)
    return eps_vec, -eps_vec, None if active.all() else active


def _numpy_update(
    delta: np.ndarray,
    grad: np.ndarray,
    step: float,
    budget: BoundBudget,
    box: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None,
) -> np.ndarray:
    """One PGD step with projection: the operations of ``ascent_direction`` and
    ``BoundBudget.project`` on the same values (a new array).

    :param delta: current perturbation (B, n).
    :param grad: input gradient (B, n).
    :param step: the step size.
    :param budget: the bound budget.
    :param box: :func:`_linf_box` of ``budget`` when the caller keeps it (else taken here).
    """
    if budget.norm == "linf":
        eps_vec, neg_eps, active = box if box is not None else _linf_box(budget)  # type: ignore[misc]
        upd = np.sign(grad)
        if active is not None:
            upd *= active
        upd *= step
        upd += delta
        np.minimum(upd, eps_vec, out=upd)
        return np.maximum(upd, neg_eps, out=upd)
    active = _numpy(budget.active)
    eps, safe_scale = budget.eps, _numpy(budget.safe_scale)
    g_u = grad * safe_scale * active
    norms = np.maximum(np.sqrt((g_u * g_u).sum(axis=1)), 1e-30)
    delta = (delta + step * (safe_scale * g_u / norms[:, None])) * active
    u = delta * active / safe_scale
    n = np.sqrt((u * u).sum(axis=1))
    factor = np.where(n > eps, eps / np.maximum(n, 1e-30), 1.0).astype(delta.dtype)
    return delta * factor[:, None]
