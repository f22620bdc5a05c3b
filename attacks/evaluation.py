"""Evaluate a trained policy clean and under every (attack, epsilon) on the same episodes.

Every run goes through one path: the E episodes (one per seed) are the E sub-envs of a gymnasium
``VectorEnv`` (``SyncVectorEnv`` over ``make_env()`` unless a ``make_vector_env`` is given),
wrapped in :class:`~rlkit.attacks.wrappers.AttackedVectorObservation` with
``single_episode=True`` - the wrapper adversarial training reuses.  The clean run uses the
identity attack through the same wrapper.  One attack call perturbs the batch of sub-envs whose
episode is still running (a 100-iteration PGD costs 100 batched passes per time step, not per
episode); a sub-env whose episode ended drops out of the batch and its later steps (autoreset
episodes) are ignored, so episodes of different lengths are each recorded to their own end.  The
policy acts on ``info["perturbed_obs"]`` and the clean actions come from ``info["clean_obs"]``.

Observations may be flat feature vectors (T, F) or images (C, H, W): traces and distortion
statistics (linf / l2 over all elements of an observation) work for any shape.  Stealth
statistics (MMD, KS, first differences, the day-split null) are computed for flat observations
only; for images they are skipped and the row carries ``stealth_note`` saying so (a summary such
as per-channel means would call a sign-pattern perturbation that leaves channel means unchanged
"stealthy", which is not a claim worth printing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from rich.progress import Progress

from rlkit.attacks.budget import AttackBudget
from rlkit.attacks.fused import FusedContext, attacked_space
from rlkit.attacks.pixels import (
    FrameAttackedVectorObservation,
    FrameStackView,
    channel_arrays,
    channel_groups,
    env_attr,
    frame_stack_of,
    is_pixel_space,
    raw_eps,
    raw_settings,
    resolve_units,
)
from rlkit.attacks.stealth import PROCEDURES, split_by_day_null, stealth_report
from rlkit.attacks.wrappers import AttackedVectorObservation
from rlkit.catalog import build_attack
from rlkit.config import AttackConfig, AttackSpec, ConfigError
from rlkit.envs import feature_groups, feature_names
from rlkit.policy import PolicyView

AttackFn = Callable[..., torch.Tensor]
STEALTH_SKIPPED = "stealth statistics skipped: observations are not flat feature vectors"


@dataclass
class Trace:
    """Everything recorded over a batch of episodes (lists indexed by episode).

    Per episode: clean observations (float32, or the env's integer dtype for frames),
    observations fed to the policy (float32), actions taken, actions the policy would have taken
    on the clean observations, rewards, and the env's episode KPIs.
    """

    clean_obs: list[list[np.ndarray]] = field(default_factory=list)
    fed_obs: list[list[np.ndarray]] = field(default_factory=list)
    actions: list[list[np.ndarray]] = field(default_factory=list)
    clean_actions: list[list[np.ndarray]] = field(default_factory=list)
    rewards: list[list[float]] = field(default_factory=list)
    kpis: list[dict[str, float]] = field(default_factory=list)

    def stacked(self, name: str, episode: int) -> np.ndarray:
        """One episode's series of ``name`` as an array (T, ...)."""
        return np.asarray(getattr(self, name)[episode])


def identity_attack(obs: torch.Tensor, t: Any = None) -> torch.Tensor:
    """The clean run's attack: returns ``obs`` unchanged."""
    return obs


def _device(view: Any) -> torch.device:
    if isinstance(view, torch.nn.Module):
        for tensor in (*view.parameters(), *view.buffers()):
            return tensor.device
    return torch.device("cpu")


def _store(obs: np.ndarray) -> np.ndarray:
    """How a trace keeps an observation: integer frames as they are, everything else float32."""
    return obs if np.issubdtype(obs.dtype, np.integer) else obs.astype(np.float32, copy=False)


def _leaf(info: dict[str, Any], path: tuple[str, ...], i: int) -> dict[str, Any] | None:
    """``info[path...]`` for sub-env ``i`` of a gymnasium vector info dict (None when absent)."""
    node: Any = info
    for key in path:
        mask = node.get(f"_{key}") if isinstance(node, dict) else None
        if not isinstance(node, dict) or key not in node or (mask is not None and not mask[i]):
            return None
        node = node[key]
    return node


def _episode_kpis(info: dict[str, Any], i: int, mode: AutoresetMode) -> dict[str, float]:
    """``episode_kpis`` of sub-env ``i`` on its final step (``final_info`` for SAME_STEP)."""
    path = ("final_info", "episode_kpis") if mode == AutoresetMode.SAME_STEP else ("episode_kpis",)
    kpis = _leaf(info, path, i)
    if not kpis:
        return {}
    out = {}
    for key, values in kpis.items():
        if key.startswith("_") and key[1:] in kpis:
            continue
        mask = kpis.get(f"_{key}")
        if mask is None or mask[i]:
            out[key] = float(values[i])
    return out


def run_episodes(env: AttackedVectorObservation, view: PolicyView, seeds: list[int]) -> Trace:
    """One episode per sub-env of ``env`` (reset with ``seeds``), each recorded to its own end.

    :param env: the vector env in an :class:`AttackedVectorObservation` with
        ``single_episode=True`` (the attack perturbs only sub-envs still in their episode).
    :param view: the policy view (actions are ``view.squash(view(obs))``, computed for the
        running sub-envs only).
    :param seeds: reset seed per sub-env.
    """
    if not env.single_episode:
        raise ValueError("run_episodes needs AttackedVectorObservation(..., single_episode=True)")
    n = env.num_envs
    if len(seeds) != n:
        raise ValueError(f"{len(seeds)} seeds for {n} sub-envs")
    trace = Trace(*([[] for _ in range(n)] for _ in range(5)), kpis=[{} for _ in range(n)])
    device = _device(view)
    _, info = env.reset(seed=list(seeds))
    running = np.ones(n, dtype=bool)
    actions_all: np.ndarray | None = None
    while running.any():
        rows = np.flatnonzero(running)
        clean = np.asarray(info["clean_obs"])[rows]
        fed = np.asarray(info["perturbed_obs"])[rows].astype(np.float32, copy=False)
        clean32 = clean.astype(np.float32, copy=False)
        env.feed_context(running)
        with torch.no_grad():
            actions = view.squash(view(torch.as_tensor(fed, device=device))).cpu().numpy()
            if np.array_equal(fed, clean32):
                clean_actions = actions
            else:
                clean_actions = (
                    view.squash(view(torch.as_tensor(clean32, device=device))).cpu().numpy()
                )
        if actions_all is None:
            actions_all = np.zeros((n, *actions.shape[1:]), dtype=actions.dtype)
        actions_all[rows] = actions  # finished sub-envs repeat their last action (ignored)
        for row, i in enumerate(rows):
            trace.clean_obs[i].append(_store(clean[row]))
            trace.fed_obs[i].append(fed[row])
            trace.actions[i].append(actions[row])
            trace.clean_actions[i].append(clean_actions[row])
        # a fresh array each step: an env may keep the action it was given
        _, reward, terminated, truncated, info = env.step(actions_all.copy())
        for i in rows:
            trace.rewards[i].append(float(reward[i]))
            if terminated[i] or truncated[i]:
                trace.kpis[i] = _episode_kpis(info, int(i), env.autoreset_mode)
                running[i] = False
    return trace


def _single_space(env: gym.Env | VectorEnv) -> gym.spaces.Space:
    """One env's attacked observation space (a fused Dict's: its image's)."""
    space = getattr(env, "single_observation_space", None)
    return attacked_space(env.observation_space if space is None else space)


def build_budget(
    spec: AttackSpec,
    eps: float,
    env: gym.Env | VectorEnv,
    units: str = "auto",
    quantize: bool | None = None,
    frame_level: bool = False,
) -> AttackBudget:
    """The budget of ``spec`` at ``eps`` in ``env``'s raw observation space (groups by name).

    Flat observations get per-feature mask and scale from the env's named groups; images get a
    per-channel mask and scale from channel groups (``red``, ``channel_0``, ..., see
    :mod:`rlkit.attacks.pixels`) and per-element bounds; ``eps`` is converted from ``units``.

    :param spec: the attack spec (norm, mask and scale groups).
    :param eps: the radius, in ``units``.
    :param env: the env, or a vector env (for groups, size and observation bounds).
    :param units: ``"auto"``, ``"raw"`` or ``"pixels"`` (fractions of 0..255); ``"auto"`` is
        resolved from ``eps`` alone (:func:`~rlkit.attacks.pixels.resolve_units`; an evaluation
        resolves it once from all its budgets and passes the result).
    :param quantize: round to the integer grid (None = auto: for uint8 image observations).
    :param frame_level: images: the budget of one frame (the newest of a stack), not the stack.
    """
    space = _single_space(env)
    if quantize is None:
        quantize = is_pixel_space(space)
    try:
        eps = raw_eps(eps, resolve_units(units, space, [eps], quantize))
    except ValueError as err:
        raise ConfigError(f"attack {spec.key!r}: {err}") from None
    if len(space.shape) != 1:
        return _image_budget(spec, eps, env, space, quantize, frame_level)
    groups = feature_groups(env)
    for name in [*spec.mask, *spec.scale]:
        if name not in groups:
            raise ConfigError(
                f"attack {spec.key!r}: unknown observation group {name!r}; "
                f"this env has: {', '.join(groups) or 'no groups'}"
            )
    return AttackBudget.from_groups(
        eps,
        groups,
        int(np.prod(space.shape)),
        mask_groups=spec.mask,
        scale_groups=spec.scale,
        norm=spec.norm,
        quantize=quantize,
        **_bounds(space),
    )


def _bounds(space: gym.spaces.Box) -> dict[str, np.ndarray | None]:
    """``low``/``high`` of ``space`` as float32 arrays when all finite, else None."""
    low = np.where(np.isfinite(space.low), space.low, -np.inf).astype(np.float32)
    high = np.where(np.isfinite(space.high), space.high, np.inf).astype(np.float32)
    bounded = np.isfinite(low).all() and np.isfinite(high).all()
    return {"low": low if bounded else None, "high": high if bounded else None}


def _image_budget(
    spec: AttackSpec,
    eps: float,
    env: gym.Env | VectorEnv,
    space: gym.spaces.Box,
    quantize: bool,
    frame_level: bool,
) -> AttackBudget:
    """A per-channel budget of image observations (C*k, H, W): one frame's or the stack's.

    :param spec: the attack spec (norm, channel mask and scale groups).
    :param eps: the radius in raw units.
    :param env: the env (frame_stack, channel_groups).
    :param space: its single observation space.
    :param quantize: round to the integer grid.
    :param frame_level: the budget of the newest frame only.
    """
    k = frame_stack_of(env) if len(space.shape) == 3 else 1
    channels = space.shape[0]
    if channels % k:
        k = 1
    per_frame = channels // k
    frames = 1 if frame_level else k
    try:
        groups = channel_groups(per_frame, env_attr(env, "channel_groups"))
        mask, scale = channel_arrays(groups, per_frame, frames, spec.mask, spec.scale)
    except ValueError as err:
        raise ConfigError(f"attack {spec.key!r}: {err}") from None
    bounds = _bounds(space)
    if frame_level:
        bounds = {key: None if b is None else b[-per_frame:] for key, b in bounds.items()}
    return AttackBudget(
        eps,
        norm=spec.norm,
        mask=mask if spec.mask else None,  # None: every channel (as before channel groups)
        scale=scale if spec.scale else None,
        quantize=quantize,
        **bounds,
    )


def frame_level_stack(
    attack_config: AttackConfig, env: gym.Env | VectorEnv, fused: bool = False
) -> int:
    """Frames per stack of a frame-level attack on ``env``'s observations, 0 for whole-stack.

    ``attack_config.frame_level`` None (auto): frame-level for image observations of a stacked
    env (``frame_stack`` > 1), except fused (pixels + state) ones, attacked whole.

    :param attack_config: the attack config.
    :param env: the (probe) env.
    :param fused: the observations are fused Dicts (frame-level attacks on them are refused).
    """
    space = _single_space(env)
    image = len(space.shape) == 3
    k = frame_stack_of(env) if image else 1
    wanted = attack_config.frame_level
    if wanted is None:
        return k if image and k > 1 and not fused else 0
    if not wanted:
        return 0
    if fused:
        raise ConfigError(
            "attack.frame_level: true is not supported on fused pixel+state observations; "
            "leave it unset (whole stacks are attacked)"
        )
    if not image or space.shape[0] % k:
        raise ConfigError(
            f"attack.frame_level: true needs stacked image observations (C*k, H, W); this env's "
            f"have shape {tuple(space.shape)} with frame_stack {k}"
        )
    return k


def _flat_steps(episodes: list[list[np.ndarray]]) -> np.ndarray:
    """All steps of all episodes as (sum T, n_elements) float32."""
    return np.concatenate([np.asarray(e, dtype=np.float32).reshape(len(e), -1) for e in episodes])


def summarize_trace(trace: Trace, clean: Trace | None, action_kind: str) -> dict[str, Any]:
    """Return, KPIs, action damage and distortion of a trace (regret against ``clean``).

    Distortion: linf / l2 of (fed - clean) over all elements of each observation (any shape),
    then mean and max over steps.

    :param trace: the attacked (or clean) run.
    :param clean: the clean run on the same seeds, or None.
    :param action_kind: "discrete" (attack success rate) or "continuous" (mean abs action error).
    """
    returns = np.array([sum(r) for r in trace.rewards])
    kpi_names = sorted({k for k in trace.kpis[0]})
    row: dict[str, Any] = {"return": float(returns.mean()), "return_std": float(returns.std())}
    row.update({k: float(np.mean([e[k] for e in trace.kpis])) for k in kpi_names})
    if clean is not None:
        base = summarize_trace(clean, None, action_kind)
        row["regret_return"] = row["return"] - base["return"]
        row.update({f"regret_{k}": row[k] - base[k] for k in kpi_names})
    acts = np.concatenate([np.asarray(a).reshape(len(a), -1) for a in trace.actions])
    clean_acts = np.concatenate([np.asarray(a).reshape(len(a), -1) for a in trace.clean_actions])
    if action_kind == "discrete":
        row["attack_success_rate"] = float(np.mean(np.any(acts != clean_acts, axis=1)))
    else:
        row["action_mae"] = float(np.mean(np.abs(acts - clean_acts)))
    delta = _flat_steps(trace.fed_obs) - _flat_steps(trace.clean_obs)
    linf, l2 = np.abs(delta).max(axis=1), np.linalg.norm(delta, axis=1)
    row.update(
        {
            "linf_mean": float(linf.mean()),
            "linf_max": float(linf.max()),
            "l2_mean": float(l2.mean()),
            "l2_max": float(l2.max()),
        }
    )
    return row


def steps_per_day(env: gym.Env | VectorEnv) -> int | None:
    """Observations per simulated day, when the env knows it (grid envs), else None."""
    value = getattr(env.unwrapped, "steps_per_day", None)
    return int(value) if value else None


class HoldAfterEpisode(gym.Wrapper):
    """A sub-env of an evaluation: once its episode ends it holds still until a seeded reset.

    The vector env's autoreset (a ``reset()`` without a seed) and later steps return the final
    observation again (reward 0, not done, empty info) without touching the env, so a finished
    episode costs nothing while the longer ones run on.
    """

    def __init__(self, env: gym.Env) -> None:
        """Wrap ``env``."""
        super().__init__(env)
        self._ended = False
        self._last: Any = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset ``env`` (``seed``, ``options``), unless the episode ended and no seed is given."""
        if self._ended and seed is None:
            return self._last, {}
        self._ended = False
        obs, info = self.env.reset(seed=seed, options=options)
        self._last = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step ``env`` with ``action`` while its episode runs; afterwards hold."""
        if self._ended:
            return self._last, 0.0, False, False, {}
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._last = obs
        self._ended = bool(terminated or truncated)
        return obs, reward, terminated, truncated, info


def _probe(venv: VectorEnv) -> gym.Env | VectorEnv:
    """A sub-env to ask for groups, names and days (``SyncVectorEnv``), else the vector env."""
    envs = getattr(venv, "envs", None)
    return envs[0] if envs else venv


def evaluate_attacks(
    make_env: Callable[[], gym.Env],
    view: PolicyView,
    attack_config: AttackConfig,
    seed: int,
    episodes: int | None = None,
    progress: bool = True,
    make_vector_env: Callable[[int], VectorEnv] | None = None,
) -> dict[str, Any]:
    """Run the clean baseline once, then each (attack, epsilon) on the same episode seeds.

    :param make_env: builds one evaluation env (the sub-envs of a ``SyncVectorEnv``, each in a
        :class:`HoldAfterEpisode`).
    :param view: the policy view.
    :param attack_config: attacks, budgets, episodes, stealth options.
    :param seed: first episode seed (episode i is reset with ``seed + i``).
    :param episodes: overrides ``attack_config.episodes``.
    :param progress: show a progress bar.
    :param make_vector_env: optional ``n -> VectorEnv`` of ``n`` sub-envs used instead of
        ``SyncVectorEnv([make_env] * n)`` (e.g. a native batched env); any autoreset mode.
    :return: ``{"clean": row, "rows": [row per (attack, eps)], "traces": {"clean": Trace,
        (attack, eps): Trace}, "stealth": {"attack@eps": report}, "meta": {...}}``.
    """
    n = episodes or attack_config.episodes
    if make_vector_env is not None:
        venv = make_vector_env(n)
    else:
        venv = SyncVectorEnv([lambda: HoldAfterEpisode(make_env()) for _ in range(n)])
    try:
        return _evaluate(venv, view, attack_config, seed, n, progress)
    finally:
        venv.close()


def _evaluate(
    venv: VectorEnv,
    view: PolicyView,
    attack_config: AttackConfig,
    seed: int,
    n: int,
    progress: bool,
) -> dict[str, Any]:
    seeds = [seed + i for i in range(n)]
    full_space = venv.single_observation_space
    fused = FusedContext(full_space, view) if isinstance(full_space, gym.spaces.Dict) else None
    probe = _probe(venv)
    shape = tuple(_single_space(venv).shape)
    flat = len(shape) == 1
    names = feature_names(probe) if flat else None
    per_day = steps_per_day(probe)
    blockwise = attack_config.mmd_permutation != "rows" and per_day is not None
    stealth_on = attack_config.stealth and flat
    runs = [
        (spec, eps) for spec in attack_config.attacks for eps in (spec.eps or attack_config.eps)
    ]
    frame_k = 0 if flat else frame_level_stack(attack_config, probe, fused is not None)
    space = _single_space(venv)
    quantize = attack_config.quantize
    if quantize is None:
        quantize = is_pixel_space(space)
    try:
        units = resolve_units(attack_config.units, space, [eps for _, eps in runs], quantize)
    except ValueError as err:
        raise ConfigError(str(err)) from None

    def budget_of(spec: AttackSpec, eps: float) -> AttackBudget:
        return build_budget(spec, eps, probe, units, quantize, frame_level=frame_k > 0)

    budgets = [budget_of(spec, eps) for spec, eps in runs]  # validate before the long work

    def run(attack: AttackFn, frame_view: FrameStackView | None = None) -> Trace:
        if frame_view is not None:
            env: AttackedVectorObservation = FrameAttackedVectorObservation(
                venv, attack, frame_view, single_episode=True
            )
        else:
            env = AttackedVectorObservation(venv, attack, single_episode=True, fused=fused)
        return run_episodes(env, view, seeds)

    with Progress(disable=not progress) as bar:
        task = bar.add_task("attacks", total=len(runs) + 1)
        clean = run(identity_attack)
        bar.advance(task)
        clean_episodes = [np.asarray(o) for o in clean.clean_obs] if stealth_on else []
        rows, traces, stealth = [], {"clean": clean}, {}
        for (spec, eps), budget in zip(runs, budgets, strict=True):
            bar.update(task, description=f"{spec.key} eps={eps}")
            frame_view = FrameStackView(view, frame_k) if frame_k else None
            settings = raw_settings(spec.settings, units, spec.name)
            policy = view if frame_view is None else frame_view
            trace = run(build_attack(spec.name, policy, budget, settings), frame_view)
            row = {
                "attack": spec.key,
                "eps": eps,
                **({} if flat else {"eps_raw": budget.eps}),
                **summarize_trace(trace, clean, view.action_kind),
            }
            if stealth_on:
                same_trace = attack_config.mmd_reference == "same_trace"
                reference = (
                    [np.asarray(o) for o in trace.clean_obs] if same_trace else clean_episodes
                )
                report = stealth_report(
                    reference,
                    [np.asarray(o) for o in trace.fed_obs],
                    feature_names=names,
                    steps_per_day=per_day,
                    permutations=attack_config.permutations,
                    seed=seed,
                    max_samples=attack_config.mmd_max_samples,
                    block_steps=per_day if blockwise else None,
                    paired=attack_config.mmd_permutation == "paired_days",
                    procedure=attack_config.mmd_procedure,
                    difference_mmd=attack_config.difference_mmd,
                )
                row.update(_stealth_columns(report))
                stealth[f"{spec.key}@{eps}"] = report
            elif attack_config.stealth:
                row.update(_stealth_columns(None))
            rows.append(row)
            traces[(spec.key, eps)] = trace
            bar.advance(task)
    clean_row = {"attack": "clean", "eps": 0.0, **summarize_trace(clean, None, view.action_kind)}
    null = None
    total_days = sum(len(o) for o in clean_episodes) // per_day if per_day else 0
    if stealth_on and total_days >= 4:
        null = split_by_day_null(
            clean_episodes,
            per_day,
            repeats=50,
            permutations=attack_config.permutations,
            seed=seed,
            max_samples=attack_config.mmd_max_samples,
            blockwise=blockwise and attack_config.mmd_null == "days",
            split=attack_config.mmd_null,
            **_procedure_rules(attack_config.mmd_procedure),
        ).to_dict()
    meta = {
        "episodes": n,
        "seeds": seeds,
        "feature_names": names,
        "obs_shape": list(shape),
        "action_units": action_units(view),
        "steps_per_day": per_day,
        "mmd_null": null,
        "stealth_note": STEALTH_SKIPPED if attack_config.stealth and not flat else None,
    }
    if not flat:
        meta["units"] = units
        meta["frame_level"] = frame_k > 0
        meta["frame_stack"] = frame_k or frame_stack_of(probe)
    return {"clean": clean_row, "rows": rows, "traces": traces, "stealth": stealth, "meta": meta}


def action_units(view: PolicyView) -> str:
    """What ``action_mae`` is measured in: the env's own action units (the agent's, after squash).

    :param view: the policy view.
    """
    if view.action_kind == "discrete":
        return "bin indices (attack_success_rate: share of steps whose bin changed)"
    low, high = getattr(view, "low", None), getattr(view, "high", None)
    if low is None or high is None:
        return "the policy's own output units"
    lo, hi = np.unique(low.cpu().numpy()), np.unique(high.cpu().numpy())
    bounds = f"[{lo[0]:g}, {hi[0]:g}]" if len(lo) == len(hi) == 1 else "its per-dimension bounds"
    return f"env action units {bounds} (after the policy's squash)"


def _procedure_rules(procedure: str) -> dict[str, str]:
    """Bandwidth and p-value rules of an MMD procedure ("paper" or "rlkit")."""
    options = PROCEDURES[procedure]
    return {"bandwidth_rule": options["bandwidth_rule"], "p_value_rule": options["p_value_rule"]}


def _stealth_columns(report: dict[str, Any] | None) -> dict[str, Any]:
    if report is None:
        return {
            "mmd_p_value": None,
            "mmd_diff_p_value": None,
            "mmd_detected": None,
            "ks_n_significant": None,
            "first_diff_within": None,
            "stealth_note": STEALTH_SKIPPED,
        }
    first = report.get("first_difference", {})
    ks = report.get("ks", {})
    difference = report.get("first_difference_mmd") or {}
    return {
        "mmd_p_value": report["mmd_p_value"],
        "mmd_diff_p_value": difference.get("p_value"),
        "mmd_detected": bool(report["detected"]),
        "ks_n_significant": ks.get("n_significant"),
        "first_diff_within": first.get("fraction_within"),
    }
