"""Named observation attacks and the ``make_attack`` factory.

An attack is a callable ``attack(obs, t=None) -> perturbed_obs`` on torch batches of any shape
(B, *shape): flat feature vectors (B, n) or images (B, C, H, W).  ``t`` (an int or a (B,) tensor
of per-sample time steps in the episode) is used by ``bifurcation_toggle`` and by time-dependent
targets of ``targeted_pgd``.

The victim ``policy`` is any differentiable callable (usually an ``nn.Module``) mapping an
observation batch to action means (``action_kind="continuous"``, (B, act_dim)) or action-bin
logits (``action_kind="discrete"``, (B, n_bins)); a tuple output uses its first element.  During a
call an ``nn.Module`` policy is put in eval mode with ``requires_grad=False`` on its parameters;
both are restored afterwards (per sub-module), and only the input is differentiated.

Each gradient attack states its objective once, as an :class:`~rlkit.attacks.losses.OutputLoss`
built from the torch losses of :mod:`rlkit.attacks.losses`, and runs it on one of the engines of
:mod:`rlkit.attacks.engines` (setting ``engine``: ``auto`` | ``autograd`` | ``compiled`` |
``mlp``; ``auto`` = the hand-written MLP engine for plain MLP policies on CPU batches of up to
:data:`~rlkit.attacks.engines.AUTO_MLP_MAX_BATCH`, else autograd).  The engines give the same
perturbed observations up to the rounding of the network's sums.

Settings are typed: :func:`settings_model` gives each attack's pydantic model (field
descriptions = help text); :func:`attack_settings` and :func:`validate_settings` derive from it.

Defaults are what the bifurcation paper's authors ran (RMC-AIvsAI/A-Novel-Bifurcation-Method-for-
Observation-Perturbation-Attacks-on-Reinforcement-Learning-Agents: ``my_pgd_linf``, ``DLLoss``,
``MaximumBifuricationWrapper`` and ``RegressorLinearWrapper`` in their ``attack myPGD *.ipynb``
notebooks, ``eval_rand_attack`` in ``modules/KBMproject/utilities.py``), checked bit for bit
against a transcription of their functions (``tests/attacks/test_authors_defaults.py``); rlkit's
former behaviour stays available as named setting values:

==============================  =============================  ================================
setting (attacks)               default = the authors'         rlkit's former behaviour
==============================  =============================  ================================
``clip`` (gradient attacks)     ``"end"`` (bounds once, after  ``"every_step"`` (every PGD
                                the loop; their headline       iterate)
                                runs: ``"none"``)
``other_logit`` (DL/GDL)        ``"zero"`` (clean logit x 0)   ``"neg_inf"``
``toggle_start`` (toggle)       ``"away"`` (even t: away from  ``"toward"`` (even t: toward
                                group 0)                       group 0)
``reference`` (pgd/fgsm cont.)  ``"squashed"`` (the clean      ``"mean"`` (the clean pre-squash
                                env action)                    mean)
``random_start`` (pgd/fgsm)     ``False``                      ``None`` (auto: random for
                                                               continuous policies)
==============================  =============================  ================================

``random`` keeps rlkit's symmetric noise, clipped into the bounds (``clip="end"``), by default;
the authors' noise is ``positive_only=True, clip="none"`` with an unmasked budget.  One bug of
theirs stays fixed:
their discrete untargeted baseline passed the action index where ``DLLoss`` expects a one-hot
target (see :class:`UntargetedAttack`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from .bifurcation import Bifurcation
from .budget import AttackBudget, BoundBudget
from .engines import (
    AUTO_MLP_MAX_BATCH,
    ENGINES,
    AttackTask,
    AutogradEngine,
    CompiledEngine,
    CompileUnavailable,
    Engine,
    MLPEngine,
    auto_engine,
    compile_unavailable,
    frozen_policy,
    policy_output,
)
from .fastgrad import compile_policy
from .losses import (
    OutputLoss,
    action_distance,
    categorical_kl,
    difference_of_logits,
    difference_of_logits_cells,
    gaussian_kl,
    group_difference_logits,
)
from .optim import Optimiser
from .settings import (
    ACTION_KINDS,
    AttackSettings,
    BifurcationSettings,
    FGSMSettings,
    MADSettings,
    PGDSettings,
    RandomSettings,
    TargetedSettings,
    ToggleSettings,
    allowed_message,
    defaults,
)

__all__ = [
    "ACTION_KINDS",
    "ATTACKS",
    "AUTO_MLP_MAX_BATCH",
    "ENGINES",
    "Attack",
    "GradientAttack",
    "attack_settings",
    "frozen_policy",
    "make_attack",
    "settings_model",
    "validate_settings",
]


# --------------------------------------------------------------------------- helpers
def policy_device(policy: Any) -> torch.device:
    """Device of the first parameter/buffer of ``policy`` (CPU if none).

    :param policy: the policy view.
    """
    if isinstance(policy, nn.Module):
        for t in (*policy.parameters(), *policy.buffers()):
            return t.device
    return torch.device("cpu")


def _time_tensor(
    t: int | torch.Tensor | np.ndarray | None, batch: int, device: torch.device
) -> torch.Tensor | None:
    """Per-sample time steps (B,) as a long tensor (None stays None).

    :param t: an int, a (B,) array/tensor or None.
    :param batch: the batch size B.
    :param device: where the result lives.
    """
    if t is None:
        return None
    tt = torch.as_tensor(np.asarray(t) if not isinstance(t, torch.Tensor) else t, device=device)
    if tt.is_floating_point() and not torch.equal(tt, tt.round()):
        raise ValueError("time steps t must be integers")
    tt = tt.long().reshape(-1)
    if tt.numel() == 1:
        tt = tt.expand(batch)
    if tt.shape != (batch,):
        raise ValueError(f"t must be an int or have shape ({batch},), got shape {tuple(tt.shape)}")
    return tt


# The objectives, as functions of the policy output z (module-level, so that the compiled
# engine can recognise a loss by its function and keywords).
def _logits_loss(
    z: torch.Tensor, label: torch.Tensor, *, sign: float, other_logit: str
) -> torch.Tensor:
    """``sign * difference_of_logits(z, label, other_logit)``."""
    loss = difference_of_logits(z, label, other_logit)
    return loss if sign == 1.0 else sign * loss


def _logits_cells(z: np.ndarray, label: np.ndarray, *, other_logit: str) -> np.ndarray:
    """The cells of :func:`_logits_loss` (``OutputLoss.cells``; the sign does not move them)."""
    return difference_of_logits_cells(z, label, other_logit)


def _distance_loss(
    z: torch.Tensor, reference: torch.Tensor, *, kind: str, sign: float
) -> torch.Tensor:
    """``sign * action_distance(z, reference, kind)``."""
    loss = action_distance(z, reference, kind)
    return loss if sign == 1.0 else sign * loss


def _gdl_loss(
    z: torch.Tensor, label: torch.Tensor, *, layer: Bifurcation, sign: float, other_logit: str
) -> torch.Tensor:
    """``sign * GDL(layer(z), label, other_logit)`` (summed over action dimensions)."""
    loss = group_difference_logits(layer(z), label, other_logit)
    return loss if sign == 1.0 else sign * loss


def _gdl_cells(
    z: np.ndarray, label: np.ndarray, *, layer: Bifurcation, other_logit: str
) -> np.ndarray:
    """The cells of :func:`_gdl_loss` on a discrete layer: which bins tie for their group's
    maximum, and which groups tie for the largest other group."""
    groups, ties = layer.discrete_cells(z)
    outer = difference_of_logits_cells(groups, label, other_logit)
    return np.concatenate([ties, outer.reshape(len(z), -1)], axis=1)


def _categorical_kl_loss(z: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """``KL(pi(.|clean logits) || pi(.|z))``."""
    return categorical_kl(clean, z)


def _gaussian_kl_loss(z: torch.Tensor, clean: torch.Tensor, *, log_std: float) -> torch.Tensor:
    """KL between Gaussians with means ``clean`` and ``z`` and a shared ``log_std``."""
    return gaussian_kl(clean, z, log_std)


# --------------------------------------------------------------------------- attacks
class Attack:
    """Base class: a configured attack ``attack(obs, t=None) -> perturbed obs``.

    Subclasses name their typed settings in :attr:`settings_model` (plug-in attacks too) and
    implement :meth:`perturb`.

    :param name: registry name.
    :param policy: differentiable policy view (observation batch -> action means or logits).
    :param budget: the perturbation budget.
    :param settings: validated settings (all fields of :attr:`settings_model`).
    """

    settings_model: ClassVar[type[BaseModel]] = AttackSettings

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """Store the policy, budget and settings; seed the attack's RNG if ``seed`` is set."""
        self.name = name
        self.policy = policy
        self.budget = budget
        self.settings = dict(settings)
        self.action_kind: str = settings.get("action_kind", "continuous")
        self.device = policy_device(policy)
        seed = settings.get("seed")
        self._generator: torch.Generator | None = None
        if seed is not None:
            self._generator = torch.Generator(device=self.device)
            self._generator.manual_seed(int(seed))

    def __repr__(self) -> str:
        """Name, budget and settings."""
        return f"{type(self).__name__}({self.name!r}, budget={self.budget}, {self.settings})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Policy output for batch ``x`` as (B, k): action means or logits.

        :param x: observation batch (B, *shape).
        """
        return policy_output(self.policy, x)

    def random_state(self) -> torch.Tensor | None:
        """The state of the attack's own RNG (None when unseeded: it draws from torch's)."""
        return None if self._generator is None else self._generator.get_state()

    def set_random_state(self, state: torch.Tensor) -> None:
        """Restore :meth:`random_state` (a seeded attack only).

        :param state: what :meth:`random_state` returned.
        """
        if self._generator is not None:
            self._generator.set_state(state)

    def generator_for(self, obs: torch.Tensor) -> torch.Generator | None:
        """The attack's RNG if it lives on ``obs``'s device (else None = global RNG).

        :param obs: the batch being attacked.
        """
        gen = self._generator
        if gen is not None and gen.device.type != obs.device.type:
            return None
        return gen

    def __call__(
        self, obs: torch.Tensor | np.ndarray, t: int | torch.Tensor | np.ndarray | None = None
    ) -> torch.Tensor:
        """Perturb a batch.

        :param obs: clean observations (B, *shape): features (B, n) or images (B, C, H, W); a
            numpy array goes to the policy's device, integer (uint8) batches become float32.
        :param t: time step in the episode: an int or a (B,) tensor; needed by some attacks.
        :return: detached perturbed observations, same shape and device as ``obs``, float dtype
            (on the integer grid when the budget has ``quantize=True``).
        """
        if not isinstance(obs, torch.Tensor):
            obs = torch.as_tensor(np.asarray(obs), device=self.device)
        if not obs.is_floating_point():
            obs = obs.float()
        if obs.dim() < 2:
            raise ValueError(f"obs must be a batch (B, *shape), got shape {tuple(obs.shape)}")
        obs = obs.detach()
        bound = self.budget.bind(obs)
        tt = _time_tensor(t, obs.shape[0], obs.device)
        out = self.run(obs, tt, bound).detach()
        if bound.quantize:
            out = bound.quantize_grid(out, obs, bounds=self.settings.get("clip", "end") != "none")
        return out

    def run(self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget) -> torch.Tensor:
        """Call :meth:`perturb` with the policy in eval mode and its parameters frozen.

        :param obs: clean batch.
        :param t: per-sample time steps or None.
        :param bound: tensor budget bound to ``obs``.
        """
        with frozen_policy(self.policy):
            return self.perturb(obs, t, bound)

    def perturb(
        self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget
    ) -> torch.Tensor:
        """Compute the perturbed batch (override in subclasses).

        :param obs: clean batch.
        :param t: per-sample time steps or None.
        :param bound: tensor budget bound to ``obs``.
        """
        raise NotImplementedError


class RandomAttack(Attack):
    """Uniform noise inside the budget (optionally positive-only, as in the paper).

    The authors' random-noise baseline (``eval_rand_attack`` in their
    ``modules/KBMproject/utilities.py``) is ``obs + np.random.rand(*obs.shape) * eps``: U[0, eps)
    independently on every feature, no mask, no clip.  Here that is ``positive_only=True,
    clip="none"`` with an unmasked budget (the mask and scale come from the budget); the defaults
    (symmetric noise, clipped into the bounds) are rlkit's.
    """

    settings_model = RandomSettings

    def perturb(
        self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget
    ) -> torch.Tensor:
        """Add a random in-budget perturbation to ``obs`` (clipped into the bounds unless
        ``clip="none"``).

        :param obs: clean batch.
        :param t: unused.
        :param bound: tensor budget bound to ``obs``.
        """
        delta = bound.random_delta(
            obs, self.generator_for(obs), positive_only=self.settings["positive_only"]
        )
        if self.settings["clip"] == "none":
            return obs + delta
        return bound.clip(obs + delta, obs)


class GradientAttack(Attack):
    """An attack that maximises an :class:`~rlkit.attacks.losses.OutputLoss` with FGSM or PGD.

    :meth:`loss` states the objective; the ``engine`` setting picks the engine that runs it
    (:mod:`rlkit.attacks.engines`).  :attr:`engines` holds this attack's engine objects
    (``engines["mlp"].backend`` picks the MLP engine's PGD backend: "auto", "numba" or
    "numpy"), and :attr:`engine_stats` counts the calls served by each engine and, for the MLP
    engine, the gradients computed (``rows``: sample-iterations, ``gradient_rows``: gradients
    actually computed).
    """

    method = "pgd"
    settings_model: ClassVar[type[BaseModel]] = PGDSettings

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """As :class:`Attack`; also recognise an MLP policy for the MLP engine when allowed."""
        super().__init__(name, policy, budget, settings)
        self.engine: str = settings.get("engine", "auto")
        plan = compile_policy(policy) if self.engine in ("auto", "mlp") else None
        if self.engine == "mlp" and plan is None:
            raise ValueError(
                "setting engine='mlp' needs a plain MLP policy (optional "
                "ObsNormalizer, then Linear/ReLU/Tanh layers); use engine='auto' "
                "or 'autograd' (or 'compiled') for other policies"
            )
        if self.engine == "compiled":
            reason = compile_unavailable()
            if reason is not None:
                raise CompileUnavailable(
                    f"setting engine='compiled' is unavailable: {reason}; use engine='autograd'"
                )
        self.plan = plan
        self.mlp_engine = MLPEngine(plan)
        self.engines: dict[str, Engine] = {
            "autograd": AutogradEngine(),
            "compiled": CompiledEngine(),
            "mlp": self.mlp_engine,
        }
        self.engine_stats: dict[str, int] = {
            "autograd_calls": 0,
            "compiled_calls": 0,
            "mlp_calls": 0,
            "rows": 0,
            "gradient_rows": 0,
        }

    def loss(self, t: torch.Tensor | None) -> OutputLoss:
        """The objective of a call at time steps ``t`` (override in subclasses).

        :param t: per-sample time steps or None.
        """
        raise NotImplementedError

    def reference_is_clean(self) -> bool:
        """Whether a continuous distance loss is measured from the clean output itself.

        True for ``reference="mean"`` (and attacks without a ``reference`` setting) and for
        ``reference="squashed"`` on a policy whose squash leaves the output as it is (no
        ``squash`` method, or ``squash_kind`` ``"none"`` or ``"clip"``): then the distance has
        zero gradient at delta = 0.
        """
        if self.settings.get("reference", "mean") == "mean":
            return True
        if not callable(getattr(self.policy, "squash", None)):
            return True
        return getattr(self.policy, "squash_kind", None) in ("none", "clip")

    def random_start(self) -> bool:
        """Whether PGD/FGSM start from a random point of the budget."""
        random_start = self.settings["random_start"]
        if random_start is None:  # auto: where the distance-from-clean gradient vanishes
            random_start = self.action_kind == "continuous" and self.reference_is_clean()
        return bool(random_start)

    def optimiser(self) -> Optimiser:
        """The FGSM/PGD settings of this attack."""
        s = self.settings
        if self.method == "fgsm":
            return Optimiser("fgsm", random_start=self.random_start(), clip=s["clip"])
        return Optimiser(
            "pgd",
            step_size=float(s["step_size"]),
            iterations=int(s["iterations"]),
            random_start=self.random_start(),
            decay_every=int(s["decay_every"]),
            decay_rate=float(s["decay_rate"]),
            decay_schedule=s["decay_schedule"],
            clip=s["clip"],
        )

    def task(self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget) -> AttackTask:
        """The engine-independent description of one call.

        :param obs: clean batch.
        :param t: per-sample time steps or None.
        :param bound: tensor budget bound to ``obs``.
        """
        return AttackTask(
            self.policy,
            self.loss(t),
            obs,
            bound,
            self.optimiser(),
            self.generator_for(obs),
            self.engine_stats,
        )

    def engine_for(self, task: AttackTask) -> Engine:
        """The engine that serves ``task`` under the ``engine`` setting.

        :param task: the attack call.
        :raises ValueError: an explicitly requested engine cannot serve the call.
        """
        name = self.engine
        if name == "auto":
            name = auto_engine(self.mlp_engine, task)
        engine = self.engines[name]
        reason = engine.unavailable(task)
        if reason is not None:
            raise ValueError(
                f"engine={name!r} cannot serve this call: {reason}; use engine='auto' or 'autograd'"
            )
        return engine

    def run(self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget) -> torch.Tensor:
        """Run the call on the chosen engine (each engine handles the policy's modes).

        :param obs: clean batch.
        :param t: per-sample time steps or None.
        :param bound: tensor budget bound to ``obs``.
        """
        task = self.task(obs, t, bound)
        engine = self.engine_for(task)
        self.engine_stats[f"{engine.name}_calls"] += 1
        return engine.run(task)

    def perturb(
        self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget
    ) -> torch.Tensor:
        """The autograd engine's result for ``obs`` at ``t`` (for callers of the base API).

        :param obs: clean batch.
        :param t: per-sample time steps or None.
        :param bound: tensor budget bound to ``obs``.
        """
        return self.engines["autograd"].run(self.task(obs, t, bound))

    def clean_output(self, obs: torch.Tensor) -> torch.Tensor:
        """Policy output on the clean batch, without gradients.

        :param obs: clean batch.
        """
        with torch.no_grad():
            return self.forward(obs)


class UntargetedAttack(GradientAttack):
    """Push the action away from the clean one.

    Discrete: difference of logits, the largest other logit minus the clean-argmax logit
    (``other_logit="zero"``, the default, masks the clean logit with 0 as the authors'
    ``DLLoss``; ``"neg_inf"`` with ``-inf``).  Continuous: the ``loss`` distance ("mse" |
    "mae" | "huber") between the perturbed pre-squash output and the ``reference`` action.

    Defaults are the authors' untargeted myPGD (``attack myPGD on SAC.ipynb``): their loss is
    ``nn.MSELoss()(model(X + delta), y)`` with ``model`` the actor up to the pre-tanh mean
    (``latent_pi`` + ``mu``) and ``y = agent.predict(obs, deterministic=True)``, the clean
    action in the env's [0, 1] units, ``0.5 * (tanh(mu) + 1) * (high - low) + low``
    (``reference="squashed"``: the policy view's ``squash`` of the clean output; a policy
    without a ``squash`` method is taken to output actions already), from delta = 0
    (``random_start=False``): the two sides differ, so the gradient is not zero there.
    ``reference="mean"`` (rlkit's former reference) measures the distance from the clean
    pre-squash output, which has zero gradient at delta = 0: use it with a random start
    (``random_start=None`` = auto gives one exactly when the reference is the clean output,
    rlkit's former default).  MSE, MAE and Huber give the same sign steps there (their MAE and
    Huber runs equal the MSE one).

    Fixed bug of theirs: the authors' discrete untargeted myPGD (``attack myPGD
    discrete.ipynb``) passes ``y = torch.from_numpy(actions[0])``, the clean action *index*
    ``k``, where their ``DLLoss`` expects a one-hot vector, so they maximised ``max((1 - k) *
    z) - k * sum(z)`` (their saved ``untargeted_myPGD_05`` trace is reproduced by that loss,
    not by the DL loss); this class implements the DL loss they intended (one-hot of the
    clean argmax).
    """

    def loss(self, t: torch.Tensor | None) -> OutputLoss:
        """The untargeted loss around the clean outputs (``t`` unused).

        :param t: unused.
        """
        if self.action_kind == "discrete":
            return OutputLoss(
                partial(_logits_loss, sign=1.0, other_logit=self.settings["other_logit"]),
                lambda clean: (clean.argmax(dim=-1),),
                ordinal=True,
                cells=partial(_logits_cells, other_logit=self.settings["other_logit"]),
            )
        kind = self.settings["loss"]
        squash = getattr(self.policy, "squash", None)
        if self.settings["reference"] == "squashed" and callable(squash):

            def prepare(clean: torch.Tensor) -> tuple[torch.Tensor, ...]:
                with torch.no_grad():
                    ref = squash(clean)
                return (ref.to(clean.dtype).reshape(clean.shape).detach(),)

        else:

            def prepare(clean: torch.Tensor) -> tuple[torch.Tensor, ...]:
                return (clean,)

        return OutputLoss(
            partial(_distance_loss, kind=kind, sign=1.0),
            prepare,
            degree=2 if kind == "mse" else None,
        )


class FGSMAttack(UntargetedAttack):
    """Untargeted single full-budget gradient step."""

    method = "fgsm"
    settings_model = FGSMSettings


class TargetedAttack(GradientAttack):
    """Pull the action toward ``target`` (constant, or a callable of the time step t).

    Continuous: minimise the ``loss`` distance to the target action.  Discrete: the target is a bin
    index; maximise its logit minus the largest other logit (``other_logit="zero"``: the
    authors' mask, so the other term is ``max(0, largest other)``; ``"neg_inf"``: rlkit's
    former one).
    """

    settings_model = TargetedSettings

    def target(self, t: torch.Tensor | None, clean: torch.Tensor) -> torch.Tensor:
        """Target per sample: (B, act_dim) floats or (B,) bin indices.

        :param t: per-sample time steps (required for a callable target).
        :param clean: clean policy outputs (B, k), for shapes and device.
        """
        target = self.settings["target"]
        if callable(target):
            if t is None:
                raise ValueError("targeted_pgd with a callable target needs the time step t")
            target = target(t)
        if isinstance(target, torch.Tensor):
            tt = target.detach().to(clean.device)
        else:
            tt = torch.as_tensor(np.asarray(target), device=clean.device)
        batch, k = clean.shape
        if self.action_kind == "discrete":
            tt = tt.reshape(-1)
            if tt.is_floating_point() and not torch.equal(tt, tt.round()):
                raise ValueError("a discrete target must be integer bin indices")
            tt = tt.long().expand(batch) if tt.numel() == 1 else tt.long()
            if tt.shape != (batch,) or (tt < 0).any() or (tt >= k).any():
                raise ValueError(
                    f"discrete target must be bin indices in [0, {k}) of shape () or ({batch},)"
                )
            return tt
        tt = tt.to(clean.dtype)
        if tt.dim() == 1 and tt.shape[0] == batch and k == 1:
            tt = tt.unsqueeze(-1)
        try:
            return torch.broadcast_to(tt, clean.shape).contiguous()
        except RuntimeError as exc:
            raise ValueError(
                f"continuous target shape {tuple(tt.shape)} does not fit actions "
                f"{tuple(clean.shape)}"
            ) from exc

    def loss(self, t: torch.Tensor | None) -> OutputLoss:
        """A loss (maximised) that reaches its optimum at the target at times ``t``.

        :param t: per-sample time steps (for a callable target).
        """
        if self.action_kind == "discrete":
            return OutputLoss(
                partial(_logits_loss, sign=-1.0, other_logit=self.settings["other_logit"]),
                lambda clean: (self.target(t, clean),),
                ordinal=True,
                cells=partial(_logits_cells, other_logit=self.settings["other_logit"]),
            )
        kind = self.settings["loss"]
        return OutputLoss(
            partial(_distance_loss, kind=kind, sign=-1.0),
            lambda clean: (self.target(t, clean),),
            degree=2 if kind == "mse" else None,
        )


class BifurcationAttack(GradientAttack):
    """Untargeted GDL attack: flip each sample's clean action group.

    Maximises ``GDL = other - g_y`` on the bifurcated group logits ``g``, ``y`` = the clean
    group, with no margin and no clamp, where ``other`` is ``max(0, g_other)`` by default (the
    authors' ``DLLoss``/``CWLoss`` multiply the label's logit by 0, ``other_logit="zero"``) or
    ``g_other`` (``"neg_inf"``, the stated formula).  For ``act_dim > 1`` the per-dimension
    GDL losses are summed.  The defaults are the authors' procedure as it ran (``attack myPGD
    bifurication discrete.ipynb``, ``... on SAC.ipynb``, their ``my_pgd_linf``, transcribed in
    ``tests/attacks/test_authors_defaults.py``):

    * ``y = argmax g(obs)`` (first index on ties), delta from 0, 100 sign steps of
      ``delta <- clamp(delta + step * sign(grad), -eps_i, eps_i)`` per feature, the step
      multiplied by 0.5 after iterations 0, 25, 50 and 75 (``decay_schedule="authors"``; the
      ``"standard"`` schedule decays after 25, 50, 75);
    * the observation bounds applied once, after the loop (``clip="end"``, as
      ``np.clip(obs + delta, 0, 1)`` in their runs named "clipped"); their headline runs (the
      20-bin PPO and SAC at eps 0.05) fed the agent ``obs + delta`` unclipped (``clip="none"``;
      17-22% of the values in those saved traces lie outside [0, 1]); ``"every_step"`` clips
      every iterate (rlkit's former default);
    * discrete layer ``[max of bins < K/2, max of bins >= K/2]``; continuous ``[m1 a + b1, m2 a
      + b2]`` on the pre-squash mean (SAC: ``latent_pi`` + ``mu``).

    With continuous groups the loss is affine in the action for ``other_logit="neg_inf"``
    (``OutputLoss.degree`` 1) and piecewise affine for ``"zero"`` (its kink is where ``g_other``
    changes sign, ``OutputLoss.kinks``); for ``[a, -a]`` and one action dimension both give the
    same sign steps.
    """

    settings_model = BifurcationSettings

    def bifurcation(self) -> Bifurcation:
        """The configured bifurcation layer."""
        return Bifurcation.from_settings(self.action_kind, self.settings)

    def groups(self, x: torch.Tensor) -> torch.Tensor:
        """Group logits (B, D, 2) of batch ``x``.

        :param x: observation batch.
        """
        return self.bifurcation()(self.forward(x))

    def group_loss(self, sign: float, labels: Callable[[torch.Tensor], torch.Tensor]) -> OutputLoss:
        """``sign * GDL`` with own groups ``labels(clean)`` (B, D).

        :param sign: +1 (maximise the GDL of the label: push away from its group) or -1 (pull
            toward it).
        :param labels: clean outputs -> group label per sample and action dimension.
        """
        layer = self.bifurcation()
        other = self.settings["other_logit"]
        continuous = self.action_kind == "continuous"
        kinks = None
        if continuous and other == "zero":

            def kinks(label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return layer.group_affine(1 - label.long())  # where g_other changes sign

        return OutputLoss(
            partial(_gdl_loss, layer=layer, sign=sign, other_logit=other),
            lambda clean: (labels(clean),),
            degree=1 if continuous and other == "neg_inf" else None,
            kinks=kinks,
            ordinal=not continuous,
            cells=None if continuous else partial(_gdl_cells, layer=layer, other_logit=other),
        )

    def loss(self, t: torch.Tensor | None) -> OutputLoss:
        """GDL w.r.t. the clean groups (``t`` unused).

        :param t: unused.
        """
        layer = self.bifurcation()
        return self.group_loss(1.0, lambda clean: layer(clean).argmax(dim=-1))


class ToggleBifurcationAttack(BifurcationAttack):
    """GDL attack whose group alternates with the time step: label ``y_t = t mod 2``.

    ``toggle_start="away"`` (the authors' white-box toggle, ``attack myPGD toggle bifurication
    discrete.ipynb`` / ``... continuous.ipynb``: label ``[1, 0]`` at even steps and ``[0, 1]``
    at odd ones, fed to the untargeted ``DLLoss``): maximise ``GDL(g, y_t)``, pushing away from
    group 0 at even t and away from group 1 at odd t.  ``"toward"`` (rlkit's former toggle):
    maximise ``-GDL(g, y_t)``, pulling toward group 0 at even t.  With ``other_logit="neg_inf"``
    and two groups the two are the same attack shifted by one step.  Needs ``t``.
    """

    settings_model = ToggleSettings

    def loss(self, t: torch.Tensor | None) -> OutputLoss:
        """The toggle objective at time steps ``t``.

        :param t: per-sample time steps (required).
        """
        if t is None:
            raise ValueError("bifurcation_toggle needs the time step t (int or (B,) tensor)")
        layer = self.bifurcation()

        def labels(clean: torch.Tensor) -> torch.Tensor:
            dims = layer(clean).shape[1]  # also validates the split
            return (t.to(clean.device) % 2).unsqueeze(-1).expand(clean.shape[0], dims)

        sign = 1.0 if self.settings["toggle_start"] == "away" else -1.0
        return self.group_loss(sign, labels)


class MADAttack(GradientAttack):
    """Maximal Action Difference: maximise KL(pi(.|s) || pi(.|s + delta)).

    Discrete: categorical KL of the softmax of the logits.  Continuous: Gaussian policy with the
    mean from the policy and a fixed ``log_std`` setting, for which the KL is the scaled squared
    distance ``sum((mu - mu')^2) / (2 exp(2 log_std))``.  Plain PGD (no SGLD); the KL gradient is
    zero at delta = 0, so ``random_start`` defaults to True.
    """

    settings_model = MADSettings

    def loss(self, t: torch.Tensor | None) -> OutputLoss:
        """The KL from the clean policy (``t`` unused).

        :param t: unused.
        """
        if self.action_kind == "discrete":
            return OutputLoss(_categorical_kl_loss, lambda clean: (clean,))
        return OutputLoss(
            partial(_gaussian_kl_loss, log_std=float(self.settings["log_std"])),
            lambda clean: (clean,),
            degree=2,
        )


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: class (with its settings model) and one-line description.

    :param name: the registry name.
    :param cls: the attack class.
    :param description: one line for ``rlkit info``.
    """

    name: str
    cls: type[Attack]
    description: str


_SPECS: dict[str, AttackSpec] = {
    spec.name: spec
    for spec in [
        AttackSpec(
            "random",
            RandomAttack,
            "uniform noise in the budget (positive_only=True, clip=none: the authors' U[0, eps))",
        ),
        AttackSpec(
            "fgsm",
            FGSMAttack,
            "untargeted one-step attack (difference of logits / distance from the clean action)",
        ),
        AttackSpec(
            "pgd",
            UntargetedAttack,
            "untargeted PGD (difference of logits / distance from the clean action)",
        ),
        AttackSpec(
            "targeted_pgd",
            TargetedAttack,
            "PGD toward a target action or bin (constant or a function of the time step)",
        ),
        AttackSpec(
            "bifurcation",
            BifurcationAttack,
            "bifurcation layer + GDL loss: flip the clean action group (Broda-Milian et al. 2024)",
        ),
        AttackSpec(
            "bifurcation_toggle",
            ToggleBifurcationAttack,
            "bifurcation + GDL alternating with t (away from group t mod 2: charge/discharge)",
        ),
        AttackSpec(
            "mad",
            MADAttack,
            "maximal action difference: maximise KL between clean and perturbed policy",
        ),
    ]
}

ATTACKS: dict[str, str] = {name: spec.description for name, spec in _SPECS.items()}


#: settings that were replaced, with what to use instead
_REPLACED = {
    "clip_in_loop": "was replaced by 'clip': 'every_step' (clip_in_loop: true, rlkit's former "
    "default), 'end' (clip_in_loop: false, the authors' and the new default) or 'none' (no "
    "bounds, as the authors' headline runs)",
}


def _unknown(kind: str, name: str, allowed: list[str]) -> ValueError:
    """A ValueError for unknown ``name`` of ``kind`` listing ``allowed`` with a suggestion.

    :param kind: what was looked up.
    :param name: the unknown name.
    :param allowed: the known names.
    """
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint} (allowed: {', '.join(allowed)})")


def _spec(name: str) -> AttackSpec:
    """Registry entry for ``name`` or a ValueError listing the attacks.

    :param name: an attack name.
    """
    if name not in _SPECS:
        raise _unknown("attack", name, list(_SPECS))
    return _SPECS[name]


def settings_model(name: str) -> type[BaseModel]:
    """The pydantic model of attack ``name``'s settings (descriptions = help, defaults, rules).

    :param name: a key of :data:`ATTACKS`.
    """
    return _spec(name).cls.settings_model


def attack_settings(name: str) -> dict[str, Any]:
    """Settings of attack ``name`` with their defaults (a fresh dict).

    :param name: a key of :data:`ATTACKS`.
    """
    return defaults(settings_model(name))


def validate_settings(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check setting names and values of attack ``name`` without building it.

    :param name: a key of :data:`ATTACKS`.
    :param settings: the settings given (defaults fill the rest).
    :return: the merged, validated settings.
    :raises ValueError: unknown attack or setting (with a close-match suggestion) or a bad value
        (naming the setting, the value and what is allowed).
    """
    model = settings_model(name)
    unknown = [key for key in settings if key not in model.model_fields]
    for key in unknown:
        if key in _REPLACED and "clip" in model.model_fields:
            raise ValueError(f"setting {key!r} of attack {name!r} {_REPLACED[key]}")
    if unknown:
        raise _unknown(f"setting for attack {name!r}:", unknown[0], list(model.model_fields))
    try:
        validated = model.model_validate(dict(settings))
    except ValidationError as err:
        raise ValueError(allowed_message(err.errors()[0])) from None
    return {key: getattr(validated, key) for key in model.model_fields}


def make_attack(
    name: str,
    policy: Callable[[torch.Tensor], Any],
    budget: AttackBudget | Mapping[str, Any],
    **settings: Any,
) -> Attack:
    """Build attack ``name`` against ``policy`` within ``budget``.

    :param name: a key of :data:`ATTACKS`.
    :param policy: differentiable policy view: obs batch -> action means (continuous) or logits
        (discrete).
    :param budget: an :class:`AttackBudget` (or a mapping of its fields).
    :param settings: the attack's settings, see :func:`attack_settings`.  ``action_kind``
        defaults to the policy's own ``action_kind`` attribute when it has one (e.g.
        ``rlkit.policy.PolicyView``), else to ``"continuous"``.
    :raises ValueError: unknown attack or setting (with a close-match suggestion) or a bad value.
    """
    spec = _spec(name)
    if not callable(policy):
        raise ValueError(f"policy must be callable (an nn.Module or function), got {policy!r}")
    if isinstance(budget, Mapping):
        budget = AttackBudget(**budget)
    if not isinstance(budget, AttackBudget):
        raise ValueError(f"budget must be an AttackBudget, got {type(budget).__name__}")
    declared = getattr(policy, "action_kind", None)
    if declared in ACTION_KINDS:
        given = settings.get("action_kind", declared)
        if given != declared:
            raise ValueError(
                f"setting 'action_kind'={given!r} contradicts the policy's action_kind={declared!r}"
            )
        settings = {**settings, "action_kind": declared}
    merged = validate_settings(name, settings)
    return spec.cls(name, policy, budget, merged)
