"""Attack engines: one interface, three ways to run FGSM/PGD on a policy.

Every gradient attack describes one call as an :class:`AttackTask` (the policy, the
:class:`~rlkit.attacks.losses.OutputLoss` to maximise, the clean batch, the bound budget and the
:class:`~rlkit.attacks.optim.Optimiser` settings) and hands it to an :class:`Engine`, which
returns the perturbed batch:

* ``autograd`` (:class:`AutogradEngine`): torch autograd through the policy at every iteration
  (:func:`rlkit.attacks.optim.pgd_steps`).  Any differentiable policy, any device, any
  observation shape.
* ``compiled`` (:class:`CompiledEngine`): ``torch.compile`` of the policy forward + input
  gradient (``torch.func.grad``, ``fullgraph=True``, batch dimension dynamic), the same PGD loop
  as autograd around it.  Any device and any policy torch can compile (MLP, CNN, mixture of
  experts); the first call per policy and loss compiles (seconds to tens of seconds on a CPU).
  Where ``torch.compile`` is unavailable or fails on the policy, it raises
  :class:`CompileUnavailable` naming the reason (use ``engine="autograd"``).
* ``mlp`` (:class:`MLPEngine`): the hand-written numpy/numba MLP forward and backward of
  :mod:`rlkit.attacks.fastgrad`, with the whole PGD loop outside torch; plain MLP policies
  (SB3 MLP actors, :class:`rlkit.policy.PolicyView`), 2-D batches, CPU parameters.

All engines compute the clean output that a loss is defined around with their own forward pass
(see :class:`~rlkit.attacks.losses.OutputLoss`), so a distance-from-clean loss has an exactly
zero gradient at delta = 0 on every engine.

``engine="auto"`` (:func:`auto_engine`) picks, per call, the MLP engine when it can serve the
call and the batch has at most :data:`AUTO_MLP_MAX_BATCH` samples, else autograd; it never
compiles by itself.  Measured by ``benchmarks/attack_engines.py`` (median seconds per 100-step
PGD call, 2-core CPU shared with other jobs, one torch thread; untrained SB3 views with a 256x256
MLP on 31 inputs; the myPGD defaults):

=====  ==========================  ==========================  ==========================
batch  bifurcation (affine loss)   pgd MSE (quadratic loss)    pgd logits (discrete)
       autograd / compiled / mlp   autograd / compiled / mlp   autograd / compiled / mlp
=====  ==========================  ==========================  ==========================
1      0.078 / 0.034 / 0.0035      0.027 / 0.015 / 0.0029      0.027 / 0.015 / 0.0026
16     0.048 / 0.023 / 0.013       0.034 / 0.021 / 0.015       0.039 / 0.027 / 0.028
64     0.066 / 0.036 / 0.028       0.049 / 0.034 / 0.031       0.055 / 0.042 / 0.031
256    0.126 / 0.091 / 0.076       0.111 / 0.096 / 0.095       0.120 / 0.121 / 0.055
=====  ==========================  ==========================  ==========================

The MLP engine was the fastest at almost every measured batch, 9-22x autograd at batch 1 and
1.2-2.2x at 256, so ``auto`` uses it up to 256 samples, the largest batch measured.  The
compiled engine is 1.3-2.3x faster than autograd per call up to batch 64 (1.0-1.4x at 256), but
its first call compiles (about 30 s on this CPU with a cold inductor cache, 0.2-3.5 s with a
warm one), so it is opt-in.  On a small CNN (3x32x32 frames, two convolutions; no MLP engine)
it was 1.8x autograd at batch 1 and 0.95-1.1x from batch 16: on a CPU the convolutions
dominate.
"""

from __future__ import annotations

import itertools
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .budget import BoundBudget
from .fastgrad import (
    ConstantGradCache,
    MLPPlan,
    choose_backend,
    fast_fgsm,
    fast_pgd,
    loss_form,
    output_grad_for,
)
from .losses import OutputLoss
from .optim import Optimiser, input_gradient

#: values of the gradient attacks' ``engine`` setting
ENGINES = ("auto", "autograd", "compiled", "mlp")
#: ``auto`` uses the MLP engine for batches up to this size (see the module docstring)
AUTO_MLP_MAX_BATCH = 256

Policy = Callable[[torch.Tensor], Any]


class CompileUnavailable(RuntimeError):
    """``torch.compile`` cannot serve the compiled engine here (the message says why)."""


# --------------------------------------------------------------------------- policy handling
@contextmanager
def frozen_policy(policy: Policy) -> Iterator[None]:
    """Run ``policy`` in eval mode with frozen parameters, restoring both afterwards.

    :param policy: an ``nn.Module`` (other callables are left alone).
    """
    if not isinstance(policy, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in policy.modules()]
    flags = [(p, p.requires_grad) for p in policy.parameters()]
    policy.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)


def policy_output(policy: Policy, x: torch.Tensor) -> torch.Tensor:
    """Policy output for batch ``x`` as (B, k): action means or logits (a tuple's first item).

    :param policy: the policy view.
    :param x: observation batch (B, *shape).
    """
    out = policy(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.reshape(out.shape[0], -1)


# --------------------------------------------------------------------------- the interface
@dataclass
class AttackTask:
    """One attack call, as every engine receives it.

    :param policy: the differentiable policy view (observation batch -> means or logits).
    :param loss: the objective, a function of the policy output.
    :param obs: clean batch (B, *shape), float.
    :param budget: the budget bound to ``obs``.
    :param optimiser: FGSM/PGD settings.
    :param generator: RNG for random starts (None = torch's global RNG).
    :param stats: counters the engine may add to (``rows``, ``gradient_rows``).
    """

    policy: Policy
    loss: OutputLoss
    obs: torch.Tensor
    budget: BoundBudget
    optimiser: Optimiser
    generator: torch.Generator | None = None
    stats: dict[str, int] | None = None


@runtime_checkable
class Engine(Protocol):
    """Runs FGSM/PGD for an :class:`AttackTask` and returns the perturbed batch."""

    name: str

    def unavailable(self, task: AttackTask) -> str | None:
        """Why this engine cannot serve ``task`` (None when it can).

        :param task: the attack call.
        """

    def run(self, task: AttackTask) -> torch.Tensor:
        """The perturbed batch (detached, shape and dtype of ``task.obs``).

        :param task: the attack call.
        """


# --------------------------------------------------------------------------- autograd
class AutogradEngine:
    """Torch autograd through the policy at every iteration (any policy, device and shape)."""

    name = "autograd"

    def unavailable(self, task: AttackTask) -> str | None:
        """Always None: autograd serves every differentiable policy.

        :param task: the attack call.
        """
        return None

    def run(self, task: AttackTask) -> torch.Tensor:
        """Optimise ``task.loss`` with input gradients from torch autograd.

        :param task: the attack call.
        """
        policy, loss = task.policy, task.loss
        with frozen_policy(policy):
            with torch.no_grad():
                clean = policy_output(policy, task.obs)
            args = loss.prepare(clean)

            def objective(x: torch.Tensor) -> torch.Tensor:
                return loss.fn(policy_output(policy, x), *args)

            return task.optimiser.run(
                lambda x: input_gradient(objective, x)[0], task.obs, task.budget, task.generator
            )


# --------------------------------------------------------------------------- compiled
_NAMES = itertools.count()


def _own_code(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of ``fn`` with its own code object.

    Dynamo keeps one cache (and one recompile limit) per code object; a fresh code object per
    (policy, loss) keeps the entries of different attacks from crowding each other out.

    :param fn: a closure.
    """
    assert isinstance(fn, types.FunctionType)
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{next(_NAMES)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def _mark_batch_dynamic(tensors: tuple[torch.Tensor, ...]) -> None:
    """Let ``torch.compile`` treat the batch dimension of ``tensors`` as dynamic.

    :param tensors: batch-first tensors.
    """
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.dim() > 0:
            torch._dynamo.maybe_mark_dynamic(t, 0)


class CompiledEngine:
    """``torch.compile`` of the policy forward and input gradient; the PGD loop in torch.

    The compiled function ``(x, *args) -> (d sum(loss) / dx, policy output)`` is built once per
    policy and loss kind (:attr:`OutputLoss.key`) and kept by this engine (one per attack).  A
    new attack compiles again, which is fast after the first time in a process: inductor caches
    the generated code of identical graphs.

    :param backend: ``torch.compile`` backend ("inductor"; "aot_eager" compiles faster and is
        useful to test the engine's plumbing).
    :param mode: ``torch.compile`` mode (None = default).
    """

    name = "compiled"

    def __init__(self, backend: str = "inductor", mode: str | None = None) -> None:
        """Store the compile options."""
        self.backend, self.mode = backend, mode
        self._compiled: dict[Any, Any] = {}

    def unavailable(self, task: AttackTask) -> str | None:
        """Why ``torch.compile`` cannot run here (None when it can).

        :param task: the attack call.
        """
        return compile_unavailable()

    def gradient_function(self, policy: Policy, loss: OutputLoss) -> Callable[..., Any]:
        """The compiled ``(x, *args) -> (input gradient, output)`` of ``policy`` and ``loss``.

        :param policy: the policy view.
        :param loss: the objective.
        """
        per_policy = self._compiled.setdefault(id(policy), {})
        key = (loss.key, self.backend, self.mode)
        if key not in per_policy:
            fn = loss.fn

            def total(x: torch.Tensor, *args: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                z = policy_output(policy, x)
                return fn(z, *args).sum(), z

            def gradient(x: torch.Tensor, *args: torch.Tensor) -> Any:
                return torch.func.grad(total, has_aux=True)(x, *args)

            per_policy[key] = torch.compile(
                _own_code(gradient), backend=self.backend, mode=self.mode, fullgraph=True
            )
        return per_policy[key]

    def run(self, task: AttackTask) -> torch.Tensor:
        """Optimise ``task.loss`` with input gradients from the compiled function.

        :param task: the attack call.
        :raises CompileUnavailable: ``torch.compile`` is unavailable or fails on the policy.
        """
        reason = compile_unavailable()
        if reason is not None:
            raise CompileUnavailable(
                f"engine='compiled' is unavailable: {reason}; use engine='autograd'"
            )
        policy, loss, obs = task.policy, task.loss, task.obs
        with frozen_policy(policy):
            # an eager pass first: the loss's own errors (bad targets, too few logits) surface
            # as themselves, and the arguments get their shapes
            with torch.no_grad():
                eager = policy_output(policy, obs)
                shaped = loss.prepare(eager)
                loss.fn(eager, *shaped)
            compiled = self.gradient_function(policy, loss)

            def call(x: torch.Tensor, args: tuple[torch.Tensor, ...]) -> Any:
                _mark_batch_dynamic((x, *args))
                try:
                    return compiled(x, *args)
                except Exception as exc:  # torch.compile failures come in many types
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    raise CompileUnavailable(
                        f"engine='compiled': torch.compile failed on this policy "
                        f"({type(exc).__name__}: {first}); use engine='autograd'"
                    ) from exc

            # the clean output from the compiled graph itself (see OutputLoss)
            _, clean = call(obs, shaped)
            args = loss.prepare(clean.detach())
            return task.optimiser.run(
                lambda x: call(x, args)[0].detach(), obs, task.budget, task.generator
            )


def compile_unavailable() -> str | None:
    """Why ``torch.compile`` cannot run in this process (None when it can)."""
    try:
        import torch._dynamo as dynamo
    except ImportError as exc:  # pragma: no cover - stripped torch builds
        return f"torch._dynamo cannot be imported ({exc})"
    if not hasattr(torch, "compile"):  # pragma: no cover - torch < 2
        return "this torch has no torch.compile"
    if not dynamo.is_dynamo_supported():  # pragma: no cover - platform-specific
        return "torch.compile is not supported on this Python/platform"
    return None


# --------------------------------------------------------------------------- MLP
class MLPEngine:
    """The hand-written MLP forward/backward of :mod:`rlkit.attacks.fastgrad`.

    :param plan: the recognised structure of the policy (:func:`~rlkit.attacks.fastgrad.
        compile_policy`), or None (then the engine never serves).
    :param backend: PGD backend: "auto" (numba for small batches of an affine loss under a
        linf budget, else numpy), "numba" or "numpy" (see
        :func:`~rlkit.attacks.fastgrad.choose_backend`).
    """

    name = "mlp"

    def __init__(self, plan: MLPPlan | None, backend: str = "auto") -> None:
        """Store the plan and the backend."""
        self.plan, self.backend = plan, backend
        self.gradients = ConstantGradCache()

    def unavailable(self, task: AttackTask) -> str | None:
        """Why the MLP engine cannot serve ``task`` (None when it can).

        :param task: the attack call.
        """
        if self.plan is None:
            return (
                "the policy is not a plain MLP (optional ObsNormalizer, then "
                "Linear/ReLU/Tanh layers)"
            )
        if task.obs.dim() != 2:
            return f"the observations are not a 2-D batch (shape {tuple(task.obs.shape)})"
        if task.obs.device.type != "cpu":
            return "the observations are not on the CPU"
        return self.plan.unavailable()

    def run(self, task: AttackTask) -> torch.Tensor:
        """Optimise ``task.loss`` with the hand-written gradient (no autograd through the net).

        The recognised layers behave the same in training and eval mode and the parameters are
        only read, so the policy's modes and flags are left alone.

        :param task: the attack call.
        """
        net = self.plan.net() if self.plan is not None else None
        if net is None:
            raise ValueError(f"engine='mlp' cannot serve this call: {self.unavailable(task)}")
        obs, loss, opt = task.obs, task.loss, task.optimiser
        backend = (
            "numpy"
            if opt.method == "fgsm"
            else choose_backend(net, loss_form(loss), obs, task.budget, self.backend)
        )
        clean = torch.from_numpy(net.forward(obs.detach().numpy()))
        args = loss.prepare(clean)
        out_grad = output_grad_for(loss, clean, args, self.gradients)
        if opt.method == "fgsm":
            return fast_fgsm(
                net,
                out_grad,
                obs,
                task.budget,
                random_start=opt.random_start,
                clip=opt.clip,
                generator=task.generator,
            )
        return fast_pgd(
            net,
            out_grad,
            obs,
            task.budget,
            opt,
            generator=task.generator,
            backend=backend,
            stats=task.stats,
        )

    def backend_for(self, task: AttackTask) -> str:
        """The PGD backend ("numba" or "numpy") a call of ``task`` would use.

        :param task: the attack call.
        """
        net = self.plan.net() if self.plan is not None else None
        if net is None:
            raise ValueError(f"engine='mlp' cannot serve this call: {self.unavailable(task)}")
        return choose_backend(net, loss_form(task.loss), task.obs, task.budget, self.backend)


# --------------------------------------------------------------------------- choosing
def auto_engine(mlp: MLPEngine, task: AttackTask) -> str:
    """The engine ``engine="auto"`` uses for ``task``: "mlp" or "autograd".

    The MLP engine when it can serve the call and the batch has at most
    :data:`AUTO_MLP_MAX_BATCH` samples (where it was measured fastest, see the module
    docstring), else autograd.  Auto never picks the compiled engine: its compile (10-30 s on a
    CPU) pays only over many calls, which the caller knows and ``auto`` does not.

    :param mlp: the attack's MLP engine.
    :param task: the attack call.
    """
    if task.obs.shape[0] <= AUTO_MLP_MAX_BATCH and mlp.unavailable(task) is None:
        return "mlp"
    return "autograd"
