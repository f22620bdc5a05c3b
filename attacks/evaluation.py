"""Evaluate a trained policy clean and under every (attack, epsilon) on the same episodes.

Episodes run in lock-step: E envs (one per episode seed) are stepped together and one attack
call perturbs the whole batch of E observations, so a 100-iteration PGD costs 100 batched
forward/backward passes per time step, not per episode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rich.progress import Progress

from rlkit.attacks.attacks import make_attack
from rlkit.attacks.budget import AttackBudget
from rlkit.attacks.stealth import split_by_day_null, stealth_report
from rlkit.config import AttackConfig, AttackSpec, ConfigError
from rlkit.envs import feature_groups, feature_names
from rlkit.policy import PolicyView

Perturb = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class Trace:
    """Everything recorded over a batch of episodes (lists indexed by episode).

    Per episode: clean observations, observations fed to the policy, actions taken, actions the
    policy would have taken on the clean observations, rewards, and the env's episode KPIs.
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


def run_batch(envs: list[gym.Env], view: PolicyView, seeds: list[int], perturb: Perturb | None) -> Trace:
    """Run one episode per env in lock-step, perturbing the whole batch each step.

    :param envs: one env per episode.
    :param view: the policy view (actions are ``view.squash(view(obs))``).
    :param seeds: reset seed per env.
    :param perturb: ``(obs_batch, t) -> perturbed batch`` or None for the clean run.
    """
    n = len(envs)
    trace = Trace(*([[] for _ in range(n)] for _ in range(5)), kpis=[{} for _ in range(n)])
    obs = [np.asarray(env.reset(seed=s)[0], dtype=np.float32) for env, s in zip(envs, seeds, strict=True)]
    active = list(range(n))
    t = 0
    while active:
        clean = torch.as_tensor(np.stack([obs[i] for i in active]))
        fed = perturb(clean, t) if perturb is not None else clean
        with torch.no_grad():
            actions = view.squash(view(fed)).cpu().numpy()
            clean_actions = view.squash(view(clean)).cpu().numpy() if perturb is not None else actions
        still = []
        for row, i in enumerate(active):
            trace.clean_obs[i].append(clean[row].numpy())
            trace.fed_obs[i].append(fed[row].numpy())
            trace.actions[i].append(actions[row])
            trace.clean_actions[i].append(clean_actions[row])
            next_obs, reward, terminated, truncated, info = envs[i].step(actions[row])
            trace.rewards[i].append(float(reward))
            obs[i] = np.asarray(next_obs, dtype=np.float32)
            if terminated or truncated:
                trace.kpis[i] = {k: float(v) for k, v in (info.get("episode_kpis") or {}).items()}
            else:
                still.append(i)
        active = still
        t += 1
    return trace


def build_budget(spec: AttackSpec, eps: float, env: gym.Env) -> AttackBudget:
    """The budget of ``spec`` at ``eps`` in ``env``'s raw observation space (groups by name).

    :param spec: the attack spec (norm, mask and scale groups).
    :param eps: the radius.
    :param env: the env (for groups, size and observation bounds).
    """
    groups = feature_groups(env)
    for name in [*spec.mask, *spec.scale]:
        if name not in groups:
            raise ConfigError(f"attack {spec.key!r}: unknown observation group {name!r}; this env has: {', '.join(groups) or 'no groups'}")
    space = env.observation_space
    low = np.where(np.isfinite(space.low), space.low, -np.inf).astype(np.float32)
    high = np.where(np.isfinite(space.high), space.high, np.inf).astype(np.float32)
    bounded = np.isfinite(low).all() and np.isfinite(high).all()
    return AttackBudget.from_groups(
        eps,
        groups,
        int(np.prod(space.shape)),
        mask_groups=spec.mask,
        scale_groups=spec.scale,
        norm=spec.norm,
        low=low if bounded else None,
        high=high if bounded else None,
    )


def summarize_trace(trace: Trace, clean: Trace | None, action_kind: str) -> dict[str, Any]:
    """Return, KPIs, action damage and distortion of a trace (regret against ``clean``).

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
    delta = np.concatenate([np.asarray(f) - np.asarray(c) for f, c in zip(trace.fed_obs, trace.clean_obs, strict=True)])
    linf, l2 = np.abs(delta).max(axis=1), np.linalg.norm(delta, axis=1)
    row.update({"linf_mean": float(linf.mean()), "linf_max": float(linf.max()), "l2_mean": float(l2.mean()), "l2_max": float(l2.max())})
    return row


def steps_per_day(env: gym.Env) -> int | None:
    """Observations per simulated day, when the env knows it (grid envs), else None."""
    value = getattr(env.unwrapped, "steps_per_day", None)
    return int(value) if value else None


def evaluate_attacks(
    make_env: Callable[[], gym.Env],
    view: PolicyView,
    attack_config: AttackConfig,
    seed: int,
    episodes: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the clean baseline once, then each (attack, epsilon) on the same episode seeds.

    :param make_env: builds one evaluation env.
    :param view: the policy view.
    :param attack_config: attacks, budgets, episodes, stealth options.
    :param seed: first episode seed.
    :param episodes: overrides ``attack_config.episodes``.
    :param progress: show a progress bar.
    :return: ``{"clean": row, "rows": [row per (attack, eps)], "traces": {...}, "meta": {...}}``.
    """
    n = episodes or attack_config.episodes
    envs = [make_env() for _ in range(n)]
    seeds = [seed + i for i in range(n)]
    names = feature_names(envs[0])
    per_day = steps_per_day(envs[0])
    blockwise = attack_config.mmd_permutation != "rows" and per_day is not None
    runs = [(spec, eps) for spec in attack_config.attacks for eps in (spec.eps or attack_config.eps)]
    budgets = [build_budget(spec, eps, envs[0]) for spec, eps in runs]  # validate before the long work
    with Progress(disable=not progress) as bar:
        task = bar.add_task("attacks", total=len(runs) + 1)
        clean = run_batch(envs, view, seeds, None)
        bar.advance(task)
        clean_episodes = [np.asarray(o) for o in clean.clean_obs]
        rows, traces, stealth = [], {"clean": clean}, {}
        for (spec, eps), budget in zip(runs, budgets, strict=True):
            bar.update(task, description=f"{spec.key} eps={eps}")
            attack = make_attack(spec.name, view, budget, **spec.settings)
            trace = run_batch(envs, view, seeds, lambda obs, t, a=attack: a(obs, t=t))
            row = {"attack": spec.key, "eps": eps, **summarize_trace(trace, clean, view.action_kind)}
            if attack_config.stealth:
                report = stealth_report(
                    clean_episodes, [np.asarray(o) for o in trace.fed_obs], feature_names=names,
                    permutations=attack_config.permutations, seed=seed,
                    block_steps=per_day if blockwise else None,
                    paired=attack_config.mmd_permutation == "paired_days",
                )
                row.update(_stealth_columns(report))
                stealth[f"{spec.key}@{eps}"] = report
            rows.append(row)
            traces[(spec.key, eps)] = trace
            bar.advance(task)
    for env in envs:
        env.close()
    clean_row = {"attack": "clean", "eps": 0.0, **summarize_trace(clean, None, view.action_kind)}
    null = None
    total_days = sum(len(o) for o in clean_episodes) // per_day if per_day else 0
    if attack_config.stealth and total_days >= 4:
        null = split_by_day_null(
            clean_episodes, per_day, repeats=50, permutations=attack_config.permutations, seed=seed,
            max_samples=2000, blockwise=blockwise,
        ).to_dict()
    meta = {"episodes": n, "seeds": seeds, "feature_names": names, "steps_per_day": per_day, "mmd_null": null}
    return {"clean": clean_row, "rows": rows, "traces": traces, "stealth": stealth, "meta": meta}


def _stealth_columns(report: dict[str, Any]) -> dict[str, Any]:
    first = report.get("first_difference", {})
    ks = report.get("ks", {})
    return {
        "mmd_p_value": report["mmd_p_value"],
        "mmd_detected": bool(report["detected"]),
        "ks_n_significant": ks.get("n_significant"),
        "first_diff_within": first.get("fraction_within"),
    }
