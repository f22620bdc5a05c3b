"""Attacks on pixel policies: pixel-unit budgets, channel masks and frame-level attacks.

**Units.** A pixel policy (``drqv2``, ``mentor``) sees uint8-range observations: ``k`` stacked
frames of ``C`` channels, shape ``(C*k, H, W)``, oldest frame first; the ``/255`` lives inside its
policy view.  The literature states budgets as fractions of the pixel range (``eps = 8/255``); in
the raw observation space that is ``8`` pixel levels.  ``attack.units`` says which is meant:

* ``pixels``: every observation-space quantity of the attack config is a fraction of the 0..255
  range: ``eps`` (must be in [0, 1]; YAML may write it ``8/255``) and a PGD ``step_size``; the
  raw budget is ``eps * 255``.  Needs uint8 image observations.
* ``raw``: the numbers are in the env's raw units (pixel levels for uint8 frames).  With the
  integer grid on, a raw eps in (0, 1) would round every perturbation away, so it is rejected.
* ``auto`` (default): ``raw`` for other observations.  On uint8 image observations the budgets
  say it themselves: all below 1 (``2/255 .. 8/255``) are fractions (``pixels``), all above 1 are
  pixel levels (``raw``: a raw eps below 1 would round to nothing).  ``eps: 1`` (one level, or the
  whole range?) and lists mixing both kinds are ambiguous and rejected with a message naming both
  ways to write them.

uint8 image observations are attacked on the integer grid (``attack.quantize``, auto = on for
them): every fed frame is integer, within ``eps*255`` of its clean frame in linf and
within [0, 255].

**Channel groups.** ``mask: [red]`` / ``scale: {blue: 0.5}`` name channels of a frame: ``red``,
``green``, ``blue`` (channels 0, 1, 2 of each RGB frame) and ``channel_<i>`` (channel ``i`` of each
frame).  An env may name its own: a ``channel_groups`` attribute ``{name: [channel, ...]}`` (indices
into one frame) on the env or a wrapper.  On a whole-stack attack a group covers that channel of
every frame of the stack.

**Frame-level attacks** (the default for stacked pixel envs, ``attack.frame_level``).  The
perturbation is applied to the rendered frame before stacking, so each frame is perturbed once:
at step ``t`` the policy sees ``[p_{t-k+1}, ..., p_{t-1}, p_t]`` where the older ``p`` are kept
bit for bit from earlier steps and only the newest frame ``p_t`` is optimised, within the budget
around the clean newest frame.  :class:`FrameStackView` makes the newest frame the attack's
observation (the policy of one frame given the older perturbed ones), and
:class:`FrameAttackedVectorObservation` keeps the fed stacks per sub-env.  On the first
observation of an episode the stack repeats the first frame ``k`` times: it is perturbed once and
the same perturbed frame is repeated ``k`` times (the attack optimises it through all ``k``
copies), so the next steps' older frames are that one perturbed frame, as a perturbation applied
before stacking would give.  ``frame_level: false`` attacks the whole stack (every frame, within
the budget, afresh at each step).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import nn

from .wrappers import AttackedVectorObservation, AttackFn, _run_attack, observation_records

PIXEL_RANGE = 255.0
UNITS = ("auto", "raw", "pixels")
RGB = ("red", "green", "blue")


# --------------------------------------------------------------------------- spaces and units
def is_pixel_space(space: gym.spaces.Space) -> bool:
    """Whether ``space`` holds uint8 images ``(C, H, W)`` (any bounds inside 0..255).

    :param space: an observation space.
    """
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def resolve_units(
    units: str, space: gym.spaces.Space, eps: Sequence[float], quantize: bool | None = None
) -> str:
    """``"raw"`` or ``"pixels"``: what the budgets ``eps`` of an attack config mean in ``space``.

    :param units: ``"auto"``, ``"raw"`` or ``"pixels"`` (see the module doc).
    :param space: the single-env observation space.
    :param eps: every budget of the config (in ``units``).
    :param quantize: whether the attack rounds to the integer grid (None: for uint8 images).
    :raises ValueError: unknown units, ``pixels`` on a space that is not uint8 images, or
        budgets that are ambiguous or out of range (the message says how to write them).
    """
    if units not in UNITS:
        raise ValueError(f"attack.units: given {units!r}; allowed: {list(UNITS)}")
    pixels = is_pixel_space(space)
    quantize = pixels if quantize is None else quantize
    positive = sorted({float(e) for e in eps if e > 0})
    if units == "pixels" and not pixels:
        raise ValueError(
            "attack.units 'pixels' needs uint8 image observations (C, H, W); this env's are "
            f"{getattr(space, 'dtype', '?')} of shape {getattr(space, 'shape', '?')}: use "
            "units 'raw' (or 'auto')"
        )
    if units == "auto" and pixels:
        if 1.0 in positive:
            raise ValueError(
                "eps 1 on pixel observations is ambiguous (one pixel level, or the whole 0..255 "
                "range?): write 1/255 for one level, or set attack.units to 'pixels' or 'raw'"
            )
        if positive and positive[0] < 1.0 < positive[-1]:
            raise ValueError(
                f"budgets {positive} on pixel observations mix fractions of the 0..255 range "
                "(< 1) and pixel levels (> 1): write them all as fractions (e.g. 8/255) or set "
                "attack.units to 'pixels' or 'raw'"
            )
        units = "pixels" if positive and positive[-1] < 1.0 else "raw"
    elif units == "auto":
        units = "raw"
    if units == "pixels" and positive and positive[-1] > 1.0:
        raise ValueError(
            f"eps {positive[-1]:g} with attack.units 'pixels': eps is a fraction of the 0..255 "
            f"pixel range, so it must be in [0, 1] (write e.g. {round(positive[-1]):d}/255 for "
            f"{round(positive[-1]):d} pixel levels, or set attack.units: raw)"
        )
    if units == "raw" and quantize and positive and positive[0] < 1.0:
        raise ValueError(
            f"eps {positive[0]:g} in raw units on integer observations: every perturbation "
            "rounds to 0 on the integer grid; give whole pixel levels (eps >= 1) or use "
            "attack.units: pixels for fractions of the 0..255 range"
        )
    return units


def raw_eps(eps: float, units: str) -> float:
    """The budget radius in raw observation units.

    :param eps: the configured budget.
    :param units: the resolved units, ``"raw"`` or ``"pixels"`` (:func:`resolve_units`).
    """
    return eps * PIXEL_RANGE if units == "pixels" else eps


def raw_settings(settings: Mapping[str, Any], units: str, attack: str | None = None) -> dict:
    """An attack's settings with ``step_size`` in raw units (``* 255`` for pixel units).

    A step size is in the budget's units whether configured or left at the attack's default
    (PGD's 0.01 is 2.55 pixel levels per step in pixel units, not 0.01 of a level that the
    integer grid rounds away).

    :param settings: the attack's settings as configured.
    :param units: the resolved units, ``"raw"`` or ``"pixels"``.
    :param attack: the attack's registered name, whose default step size applies when
        ``settings`` has none.
    """
    out = dict(settings)
    if units != "pixels":
        return out
    if "step_size" not in out and attack is not None:
        default = _default_step_size(attack)
        if default is not None:
            out["step_size"] = default
    if "step_size" in out:
        out["step_size"] = float(out["step_size"]) * PIXEL_RANGE
    return out


def _default_step_size(attack: str) -> float | None:
    """The default ``step_size`` of the attack registered as ``attack`` (None: it has none)."""
    from rlkit.catalog import ATTACKS

    model = ATTACKS.get(attack).params_model()
    field = None if model is None else model.model_fields.get("step_size")
    return None if field is None else float(field.default)


def pixel_label(eps: float) -> str:
    """``eps`` as a fraction of 255 when it is one (``"8/255"``), else ``"0.0314"``.

    :param eps: a budget in pixel units.
    """
    levels = eps * PIXEL_RANGE
    if math.isclose(levels, round(levels), abs_tol=1e-6):
        return f"{round(levels)}/255"
    return f"{eps:.4g}"


# --------------------------------------------------------------------------- frames and channels
def env_attr(env: gym.Env | VectorEnv, name: str, default: Any = None) -> Any:
    """Attribute ``name`` of ``env`` or of any wrapper inside it (gymnasium does not forward).

    :param env: an env (or vector env).
    :param name: the attribute.
    :param default: returned when no layer has it.
    """
    getter = getattr(env, "get_wrapper_attr", None)
    if callable(getter):
        try:
            return getter(name)
        except AttributeError:
            pass
    value = getattr(env, name, None)
    if value is None:
        value = getattr(getattr(env, "unwrapped", env), name, None)
    return default if value is None else value


def frame_stack_of(env: gym.Env | VectorEnv) -> int:
    """Frames stacked in ``env``'s observations (its ``frame_stack``; 1 when it has none).

    :param env: the (single) env.
    """
    k = int(env_attr(env, "frame_stack", 1))
    if k < 1:
        raise ValueError(f"env frame_stack must be >= 1, got {k}")
    return k


def channel_groups(frame_channels: int, named: Mapping[str, Any] | None = None) -> dict:
    """Channel groups of one frame: name -> channel indices.

    :param frame_channels: channels per frame (3 for RGB).
    :param named: the env's own ``channel_groups`` (added to / overriding the built-in ones).
    """
    groups: dict[str, list[int]] = {f"channel_{i}": [i] for i in range(frame_channels)}
    if frame_channels == 3:
        groups.update({name: [i] for i, name in enumerate(RGB)})
    for name, members in dict(named or {}).items():
        idx = [int(i) for i in np.atleast_1d(members)]
        if any(not 0 <= i < frame_channels for i in idx):
            raise ValueError(
                f"channel group {name!r} = {idx} is out of range for {frame_channels} channels"
            )
        groups[name] = idx
    return groups


def channel_arrays(
    groups: Mapping[str, Sequence[int]],
    frame_channels: int,
    frames: int,
    mask: Sequence[str] = (),
    scale: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel budget mask and scale, shape ``(frame_channels * frames, 1, 1)``.

    :param groups: channel groups of one frame (:func:`channel_groups`).
    :param frame_channels: channels per frame.
    :param frames: frames the budget covers (1: frame-level; ``k``: the whole stack).
    :param mask: groups the attacker may not touch.
    :param scale: group -> factor on eps.
    :raises ValueError: an unknown group name.
    """
    scale = dict(scale or {})
    unknown = [g for g in [*mask, *scale] if g not in groups]
    if unknown:
        raise ValueError(
            f"unknown observation group(s) {unknown}; pixel observations have the channel "
            f"groups: {', '.join(groups)}"
        )
    per_mask, per_scale = np.ones(frame_channels), np.ones(frame_channels)
    for name in mask:
        per_mask[list(groups[name])] = 0.0
    for name, factor in scale.items():
        per_scale[list(groups[name])] *= float(factor)
    shape = (frame_channels * frames, 1, 1)
    return np.tile(per_mask, frames).reshape(shape), np.tile(per_scale, frames).reshape(shape)


# --------------------------------------------------------------------------- the frame view
class FrameStackView(nn.Module):
    """The policy of the newest frame, given the older (already perturbed) frames of the stack.

    ``forward(frame)`` feeds ``view`` the stack ``[older..., frame]`` (``(B, C*k, H, W)``); for the
    samples marked fresh (an episode's first observation) it feeds ``[frame] * k``, so the one
    perturbed first frame is optimised through all its copies.  :meth:`set_context` sets the
    older frames of the next attack call.  ``squash``, ``action_kind`` and the action bounds are
    the wrapped view's.

    :param view: the policy view of whole stacks (raw 0..255 observations).
    :param frame_stack: frames per stack ``k``.
    """

    def __init__(self, view: nn.Module, frame_stack: int) -> None:
        """Wrap ``view`` for stacks of ``frame_stack`` frames."""
        super().__init__()
        self.view = view
        self.frame_stack = int(frame_stack)
        self.action_kind = getattr(view, "action_kind", "continuous")
        self.squash_kind = getattr(view, "squash_kind", None)
        self.low, self.high = getattr(view, "low", None), getattr(view, "high", None)
        self.register_buffer("older", torch.zeros(0), persistent=False)
        self.register_buffer("fresh", torch.zeros(0, dtype=torch.bool), persistent=False)

    def set_context(self, older: torch.Tensor, fresh: torch.Tensor) -> None:
        """Older frames ``(B, C*(k-1), H, W)`` and fresh flags ``(B,)`` of the next call.

        :param older: the perturbed older frames of each sample (ignored where fresh).
        :param fresh: True where the sample is an episode's first observation.
        """
        self.older = older
        self.fresh = fresh.to(torch.bool)

    def stack(self, frame: torch.Tensor) -> torch.Tensor:
        """The stack the view sees for newest frames ``frame`` (B, C, H, W).

        :param frame: candidate newest frames.
        """
        if self.frame_stack == 1:
            return frame
        if self.older.shape[0] != frame.shape[0]:
            raise ValueError(
                f"FrameStackView: context for {self.older.shape[0]} samples, called on "
                f"{frame.shape[0]}; call set_context first"
            )
        repeated = frame.repeat(1, self.frame_stack - 1, 1, 1)
        older = torch.where(self.fresh.view(-1, 1, 1, 1), repeated, self.older.to(frame.dtype))
        return torch.cat([older, frame], dim=1)

    def forward(self, frame: torch.Tensor) -> Any:
        """The view's output on the stack of ``frame`` (see :meth:`stack`).

        :param frame: candidate newest frames (B, C, H, W).
        """
        return self.view(self.stack(frame))

    def squash(self, output: torch.Tensor) -> torch.Tensor:
        """The wrapped view's squash of ``output``.

        :param output: what :meth:`forward` returned.
        """
        squash = getattr(self.view, "squash", None)
        return squash(output) if callable(squash) else output


# --------------------------------------------------------------------------- the wrapper
class FrameAttackedVectorObservation(AttackedVectorObservation):
    """Vector-env wrapper of a frame-level attack on stacked frames (see the module doc).

    Per step, for each attacked sub-env: its older frames are the newest ``k-1`` frames of the
    stack it was fed last (kept as they were), the clean newest frame is attacked through
    :class:`FrameStackView` (budget: one frame), and the fed stack is ``[older..., p_t]`` (an
    episode's first observation: ``[p_0] * k``).  ``info`` records whole stacks, as the parent
    does.  The clean stacks are checked to be a frame stack (older frames = the previous step's
    newer ones; a first observation = one frame repeated), else a ValueError says so.

    :param env: the vector env of stacked uint8 frames ``(C*k, H, W)``, oldest first.
    :param attack: an attack built on ``frame_view`` with a one-frame budget.
    :param frame_view: the :class:`FrameStackView` the attack differentiates through.
    :param device: torch device (default: the attack's device or CPU).
    :param single_episode: evaluation mode, as :class:`AttackedVectorObservation`.
    """

    def __init__(
        self,
        env: VectorEnv,
        attack: AttackFn,
        frame_view: FrameStackView,
        device: torch.device | str | None = None,
        single_episode: bool = False,
    ) -> None:
        """Wrap ``env``; the stack size comes from ``frame_view``."""
        super().__init__(env, attack, device, single_episode)
        self.frame_view = frame_view
        self.frame_stack = frame_view.frame_stack
        shape = tuple(self.single_observation_space.shape or ())
        if len(shape) != 3 or shape[0] % self.frame_stack:
            raise ValueError(
                f"frame-level attack: observations of shape {shape} do not split into "
                f"{self.frame_stack} frames (C*k, H, W)"
            )
        self.frame_channels = shape[0] // self.frame_stack
        self._last_clean: np.ndarray | None = None

    def _check_stacks(self, obs: np.ndarray, rows: np.ndarray, fresh: np.ndarray) -> None:
        """Raise unless ``obs[rows]`` are frame stacks continuing the previous clean ones."""
        c, k = self.frame_channels, self.frame_stack
        for i in np.flatnonzero(rows):
            frames = obs[i].reshape(k, c, *obs.shape[2:])
            if fresh[i]:
                ok = bool((frames == frames[-1]).all())
                what = "a first observation that repeats its frame k times"
            else:
                prev = self._last_clean
                ok = prev is not None and np.array_equal(obs[i, :-c], prev[i, c:])
                what = "older frames equal to the previous step's newer ones"
            if not ok:
                raise ValueError(
                    f"frame-level attack: sub-env {i} at step {self.step_index[i]} is not a "
                    f"stack of {k} frames oldest first ({what}); set attack.frame_level: false "
                    "to attack whole observations"
                )

    def _perturb(
        self, obs: Any, info: dict[str, Any], rows: np.ndarray
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Attack the newest frame of sub-envs ``rows``; keep their older perturbed frames."""
        obs = np.asarray(obs)
        c, k = self.frame_channels, self.frame_stack
        fresh = self.step_index == 0
        self._check_stacks(obs, rows, fresh)
        last = self._last_obs if self._last_obs is not None else obs.astype(np.float32)
        older = np.where(
            fresh[:, None, None, None], 0.0, last[:, c:] if k > 1 else last[:, :0]
        ).astype(np.float32)
        if rows.any():
            self.frame_view.set_context(
                torch.as_tensor(older[rows], device=self.device),
                torch.as_tensor(fresh[rows], device=self.device),
            )
        newest, _ = _run_attack(self.attack, obs[:, -c:], self.step_index.copy(), self.device, rows)
        stacked = np.where(
            fresh[:, None, None, None],
            np.tile(newest, (1, k, 1, 1)),
            np.concatenate([older, newest], axis=1),
        )
        adv = np.where(rows[:, None, None, None], stacked, obs).astype(np.float32)
        self._last_clean = obs.copy()
        info = dict(info)
        for key, value in observation_records(obs, adv).items():
            info[key] = value
            info[f"_{key}"] = rows.copy()
        return adv, info
