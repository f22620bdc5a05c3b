"""Speed of the 100-step bifurcation attack on a full-year hourly grid episode (CPU).

The bifurcation-attack authors report about 23 minutes per 8,759-step CityLearn episode for
their 100-step PGD on a GPU.  This benchmark attacks a 256x256 MLP policy (an SB3 SAC actor on
the grid env's spaces: untrained, or trained with ``--run``) on ``GridBatteryEnv`` with
``step_minutes=60, episode_days=365`` (8,760 steps), with the authors' myPGD settings
(``make_attack("bifurcation", ...)`` defaults: 100 sign steps from 0.01, halved four times),
eps = 0.05 linf inside the [0, 1] observation box, and measures in one run:

a. one full-year episode attacked with the MLP engine (``engine="mlp"``, backend "auto":
   numba kernel for small batches when numba is installed), one episode at a time;
b. the autograd engine on a prefix of the same episode, interleaved chunk by chunk with the
   MLP engine (both backends) on their own copies of the episode (same seed), so shared-CPU
   load hits all alike; full-episode times are extrapolated from the prefix (per-step time x
   8,760); the autograd runner also runs the MLP-engine attack, untimed, on its own
   observations and counts the steps where both give the identical perturbed observation;
c. E episodes at once in lock-step (``GridBatteryVectorEnv``, one attack call on the (E, n)
   batch per step) for several E, against E = 1 on the same code path, interleaved in chunks;
   throughput is extrapolated from a prefix to full-year episodes.

Times include stepping the simulator and computing the policy's action.  Run
``python -m benchmarks.attack_speed [--run RUN_DIR] [--quick]`` from the repository root.
BLAS/OpenMP threads are pinned to 1 (``--threads``) before numpy and torch are imported: on a
shared 2-core machine multi-threaded BLAS made the small matmuls of this workload and the vector
env's power flow many times slower.  Writes ``benchmarks/results/attack_speed.json`` and prints
a table.
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(default: int = 1) -> int:
    """The ``--threads`` value, read before numpy is imported (BLAS reads it at load time).

    :param default: the value without ``--threads``.
    """
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return default


_THREADS = _threads_from_argv()
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, str(_THREADS))

import argparse  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import write_result  # noqa: E402
from rlkit.attacks import AttackBudget, make_attack  # noqa: E402
from rlkit.attacks.fastgrad import NUMBA_MAX_BATCH, numba_available  # noqa: E402
from rlkit.envs.grid import GridBatteryEnv, GridBatteryVectorEnv, GridEnvConfig  # noqa: E402
from rlkit.policy import PolicyView  # noqa: E402

AUTHORS_GPU_SECONDS = 23 * 60  # "about 23 min per 8,759-step episode on a GPU" (myPGD, 100 steps)
AUTHORS_STEPS = 8759
TARGET_SECONDS = 60.0
EPS = 0.05


def env_config(profiles: str) -> GridEnvConfig:
    """The full-year hourly episode: 365 days from day 0 (8,760 steps).

    :param profiles: "simbench" or "synthetic".
    """
    return GridEnvConfig(
        step_minutes=60, episode_days=365, start_day=0, profiles=profiles, initial_soc_noise=0.2
    )


def build_policy(run: str | None, env: GridBatteryEnv) -> tuple[PolicyView, str]:
    """The attacked policy view and a description of it.

    :param run: an rlkit run directory with a trained policy for this env, or None for an
        untrained SB3 SAC actor with net_arch [256, 256] on the env's spaces.
    :param env: the benchmark env (for the spaces).
    """
    if run is not None:
        from rlkit.loading import load_run

        view = load_run(run).view
        if view.action_kind != "continuous":
            raise SystemExit("--run must hold a continuous-action policy for the grid env")
        try:
            with torch.no_grad():
                out = view(torch.zeros(1, *env.observation_space.shape))
        except RuntimeError as exc:
            raise SystemExit(
                f"--run {run}: the policy does not take this env's "
                f"{env.observation_space.shape} observations ({exc})"
            ) from exc
        if out.shape[-1] != env.action_space.shape[0]:
            raise SystemExit(
                f"--run {run}: {out.shape[-1]} actions, the env has {env.action_space.shape[0]}"
            )
        return view, f"trained policy from {run}"
    from rlkit.agents.sb3 import SB3Agent
    from rlkit.config import AgentConfig

    config = AgentConfig(name="sac", net_arch=[256, 256], kwargs={"buffer_size": 1000})
    agent = SB3Agent("SAC", config, spaces=(env.observation_space, env.action_space), seed=0)
    return agent.policy_view(), "untrained SB3 SAC actor, net_arch [256, 256]"


class Runner:
    """Steps E lock-step episodes under an attack, a chunk at a time, timing everything.

    :param name: label for the tables.
    :param env: a ``GridBatteryEnv`` (E = 1) or ``GridBatteryVectorEnv`` (E copies).
    :param view: the policy view.
    :param engine: the attack's ``engine`` setting.
    :param seed: reset seed (copy i of a vector env gets seed + i).
    :param start_days: per-copy start days of a vector env (None: the config's).
    :param backend: the MLP engine's PGD backend ("auto", "numba" or "numpy").
    """

    def __init__(
        self,
        name: str,
        env: Any,
        view: PolicyView,
        engine: str,
        seed: int,
        start_days: list[int] | None = None,
        backend: str = "auto",
    ) -> None:
        """Reset the env and build the attack."""
        self.name, self.env, self.view, self.engine = name, env, view, engine
        self.vector = isinstance(env, GridBatteryVectorEnv)
        self.episodes = env.num_envs if self.vector else 1
        space = env.single_observation_space if self.vector else env.observation_space
        budget = AttackBudget(EPS, low=space.low, high=space.high)
        self.attack = make_attack("bifurcation", view, budget, engine=engine)
        self.backend = backend if engine == "mlp" else "-"
        if engine == "mlp":
            self.attack.engines["mlp"].backend = backend
        # another attack run on the same observations, untimed, to compare the results
        self.shadow: Any = None
        self.compared = self.identical = 0
        self.max_diff = 0.0
        self.record = False  # keep (clean, fed) observations
        self.clean_log: list[np.ndarray] = []
        self.fed_log: list[np.ndarray] = []
        options = {"start_day": start_days} if start_days is not None else None
        obs, _ = env.reset(seed=seed, options=options)
        self.obs = np.asarray(obs, dtype=np.float32).reshape(self.episodes, -1)
        self.t = 0
        self.steps = 0
        self.seconds = 0.0
        self.attack_seconds = 0.0

    def advance(self, k: int) -> None:
        """Run ``k`` more steps (all copies), timing the whole loop and the attack calls.

        :param k: number of steps.
        """
        start = time.perf_counter()
        for _ in range(k):
            t0 = time.perf_counter()
            fed = self.attack(torch.from_numpy(self.obs), t=self.t)
            self.attack_seconds += time.perf_counter() - t0
            if self.record:
                self.clean_log.append(self.obs.copy())
                self.fed_log.append(fed.numpy().copy())
            if self.shadow is not None:
                t1 = time.perf_counter()
                other = self.shadow(torch.from_numpy(self.obs), t=self.t)
                diff = (other - fed).abs().amax(dim=1)
                self.compared += diff.numel()
                self.identical += int((diff == 0).sum())
                self.max_diff = max(self.max_diff, float(diff.max()))
                start += time.perf_counter() - t1  # not part of this runner's time
            with torch.no_grad():
                action = self.view.squash(self.view(fed)).numpy()
            if self.vector:
                obs, _, _, _, _ = self.env.step(action)
            else:
                obs, _, term, trunc, _ = self.env.step(action[0])
                if (term or trunc) and self.t + 1 < self.env_steps():
                    raise RuntimeError("episode ended early")
            self.obs = np.asarray(obs, dtype=np.float32).reshape(self.episodes, -1)
            self.t += 1
            self.steps += 1
        self.seconds += time.perf_counter() - start

    def env_steps(self) -> int:
        """Steps in one episode."""
        return int(self.env.episode_steps)

    def figures(self, episode_steps: int) -> dict[str, Any]:
        """Measured and full-episode-extrapolated timings.

        :param episode_steps: steps in a full episode (for the extrapolation).
        """
        per_step = self.seconds / max(self.steps, 1)
        episode_s = per_step * episode_steps
        out = {
            "engine": self.engine,
            "mlp_backend": self.backend,
            "episodes_in_batch": self.episodes,
            "measured_steps": self.steps,
            "measured_wall_s": round(self.seconds, 3),
            "measured_attack_s": round(self.attack_seconds, 3),
            "ms_per_step": round(1e3 * per_step, 4),
            "attack_ms_per_step": round(1e3 * self.attack_seconds / max(self.steps, 1), 4),
            "full_episode_s": round(episode_s, 2),
            "extrapolated": self.steps < episode_steps,
            "episodes_per_hour": round(3600 * self.episodes / episode_s, 2),
            "episodes_per_second": round(self.episodes / episode_s, 5),
        }
        stats = getattr(self.attack, "engine_stats", {})
        if stats.get("rows"):
            out["gradients_computed_fraction"] = round(stats["gradient_rows"] / stats["rows"], 4)
        if self.compared:
            out["compared_with_mlp_engine"] = {
                "samples": self.compared,
                "identical": self.identical,
                "identical_fraction": round(self.identical / self.compared, 5),
                "max_abs_diff": self.max_diff,
            }
        return out


def interleave(runners: list[Runner], steps: int, chunk: int) -> None:
    """Advance every runner by ``steps`` in round-robin chunks (shared CPU load hits all alike).

    :param runners: the runners.
    :param steps: total steps each.
    :param chunk: steps per turn.
    """
    done = 0
    while done < steps:
        k = min(chunk, steps - done)
        for runner in runners:
            runner.advance(k)
        done += k


def _parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None, help="rlkit run dir with a trained grid policy")
    parser.add_argument("--profiles", default="simbench", choices=["simbench", "synthetic"])
    parser.add_argument(
        "--autograd-steps", type=int, default=500, help="prefix measured with the autograd engine"
    )
    parser.add_argument(
        "--batch-steps", type=int, default=500, help="prefix measured for each batch size"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument(
        "--autograd-batch",
        type=int,
        default=64,
        help="also time the autograd engine at this batch size (0: skip)",
    )
    parser.add_argument(
        "--threads", type=int, default=_THREADS, help="BLAS/OpenMP/torch threads (default 1)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: prefixes only (no full-year run), not for results",
    )
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON")
    return parser.parse_args()


def phase_full_year(
    config: GridEnvConfig, env: GridBatteryEnv, view: PolicyView, steps: int, quick: bool
) -> tuple[dict[str, Any], int]:
    """(a) one full-year episode on the MLP engine, one episode at a time.

    :param config: the env config.
    :param env: the env to run (its full episode).
    :param view: the policy view.
    :param steps: steps in a full episode.
    :param quick: 1,000 steps only.
    :return: the runner's figures and the steps measured.
    """
    warm = Runner("warm-up", GridBatteryEnv(config), view, "mlp", seed=99)
    warm.advance(20)  # numba kernels of the env, first-call allocations
    year_steps = 1000 if quick else steps
    full = Runner("mlp, full episode", env, view, "mlp", seed=0)
    full.advance(year_steps)
    fig = full.figures(steps)
    print(
        f"(a) mlp engine: {full.steps} steps in {full.seconds:.1f} s "
        f"-> {fig['full_episode_s']:.1f} s per episode",
        flush=True,
    )
    return fig, year_steps


def phase_autograd_prefix(
    config: GridEnvConfig, view: PolicyView, steps: int, n_auto: int
) -> dict[str, Any]:
    """(b) autograd on a prefix, interleaved with the MLP engine (both backends).

    The autograd runner also runs the MLP-engine attack (untimed) on its own observations, and
    autograd is compared with itself (all prefix observations in one batch: other BLAS kernels,
    other summation order) as the rounding baseline.

    :param config: the env config.
    :param view: the policy view.
    :param steps: steps in a full episode (extrapolation).
    :param n_auto: prefix length.
    :return: the phase's figures (keys ``b_*``).
    """
    mlp_b = Runner("mlp (auto: numba)", GridBatteryEnv(config), view, "mlp", seed=0)
    numpy_b = Runner(
        "mlp (numpy backend)", GridBatteryEnv(config), view, "mlp", seed=0, backend="numpy"
    )
    auto_b = Runner("autograd", GridBatteryEnv(config), view, "autograd", seed=0)
    auto_b.shadow = make_attack("bifurcation", view, auto_b.attack.budget, engine="mlp")
    auto_b.record = True
    interleave([mlp_b, numpy_b, auto_b], n_auto, chunk=25)
    batched = auto_b.attack(torch.from_numpy(np.concatenate(auto_b.clean_log))).numpy()
    self_diff = np.abs(batched - np.concatenate(auto_b.fed_log)).max(axis=1)
    auto_fig, mlp_fig, numpy_fig = (r.figures(steps) for r in (auto_b, mlp_b, numpy_b))
    ratio = auto_b.seconds / mlp_b.seconds
    attack_ratio = auto_b.attack_seconds / mlp_b.attack_seconds
    same = auto_fig["compared_with_mlp_engine"]
    print(
        f"(b) autograd: {auto_b.steps} steps in {auto_b.seconds:.1f} s -> "
        f"{auto_fig['full_episode_s']:.0f} s per episode (extrapolated); side by side the MLP "
        f"engine is {ratio:.1f}x faster per step ({attack_ratio:.1f}x per attack call); "
        f"identical perturbations on {same['identical']}/{same['samples']} steps",
        flush=True,
    )
    return {
        "b_autograd_prefix": auto_fig,
        "b_mlp_same_prefix_interleaved": mlp_fig,
        "b_mlp_numpy_backend_same_prefix_interleaved": numpy_fig,
        "b_speedup_mlp_vs_autograd_per_step": round(ratio, 2),
        "b_speedup_mlp_vs_autograd_attack_only": round(attack_ratio, 2),
        "b_speedup_numpy_backend_vs_autograd_per_step": round(auto_b.seconds / numpy_b.seconds, 2),
        "b_rounding_baseline_autograd_batched_vs_single": {
            "samples": int(self_diff.size),
            "identical": int((self_diff == 0).sum()),
            "identical_fraction": round(float((self_diff == 0).mean()), 5),
            "max_abs_diff": float(self_diff.max()),
            "note": "float32: where a hidden ReLU input lies within rounding of 0 (PGD's sign "
            "steps oscillate across such kinks) any two summation orders can pick "
            "different gradients; this is autograd against itself",
        },
    }


def phase_batching(
    config: GridEnvConfig,
    view: PolicyView,
    steps: int,
    batches: list[int],
    autograd_batch: int,
    n_batch: int,
) -> list[dict[str, Any]]:
    """(c) E lock-step episodes per attack call against one at a time, interleaved.

    :param config: the env config.
    :param view: the policy view.
    :param steps: steps in a full episode (extrapolation).
    :param batches: the E values for the MLP engine.
    :param autograd_batch: E for the autograd engine (0: none).
    :param n_batch: prefix length.
    :return: one figures row per runner.
    """
    runners = []
    for e in batches:
        runners.append(
            Runner(
                f"mlp E={e}",
                GridBatteryVectorEnv(e, config),
                view,
                "mlp",
                seed=1000,
                start_days=[i % 2 for i in range(e)],
            )
        )
    if autograd_batch:
        e = autograd_batch
        runners.append(
            Runner(
                f"autograd E={e}",
                GridBatteryVectorEnv(e, config),
                view,
                "autograd",
                seed=1000,
                start_days=[i % 2 for i in range(e)],
            )
        )
    for runner in runners:  # warm-up outside the timing (numba JIT for small batches)
        runner.advance(3)
        runner.steps, runner.seconds, runner.attack_seconds = 0, 0.0, 0.0
        runner.attack.engine_stats.update(rows=0, gradient_rows=0)
    interleave(runners, n_batch, chunk=20)
    base = next((r for r in runners if r.engine == "mlp" and r.episodes == 1), None)
    base_rate = base.figures(steps)["episodes_per_hour"] if base is not None else None
    rows = []
    for runner in runners:
        fig = {"name": runner.name, **runner.figures(steps)}
        fig["chosen_backend"] = (
            "-"
            if runner.engine != "mlp"
            else ("numba" if numba_available() and runner.episodes <= NUMBA_MAX_BATCH else "numpy")
        )
        if base_rate:
            fig["throughput_speedup_vs_one_at_a_time"] = round(
                fig["episodes_per_hour"] / base_rate, 2
            )
        rows.append(fig)
    return rows


def main() -> None:
    """Run the benchmark, print the table and write the JSON."""
    args = _parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    config = env_config(args.profiles)
    env = GridBatteryEnv(config)
    view, policy_desc = build_policy(args.run, env)
    steps = int(env.episode_steps)
    probe = make_attack("bifurcation", view, AttackBudget(EPS), engine="auto")
    if probe.plan is None:
        raise SystemExit("the policy is not a plain MLP: the MLP engine cannot serve it")
    full_fig, year_steps = phase_full_year(config, env, view, steps, args.quick)
    n_auto = min(args.autograd_steps, 100 if args.quick else args.autograd_steps)
    b_figs = phase_autograd_prefix(config, view, steps, n_auto)
    n_batch = min(args.batch_steps, 60 if args.quick else args.batch_steps)
    batch_rows = phase_batching(config, view, steps, args.batches, args.autograd_batch, n_batch)
    year_s = full_fig["full_episode_s"]
    auto_rate = b_figs["b_autograd_prefix"]["episodes_per_hour"]
    figures: dict[str, Any] = {
        "episode_steps": steps,
        "authors": {
            "seconds_per_episode_gpu": AUTHORS_GPU_SECONDS,
            "episode_steps": AUTHORS_STEPS,
            "note": "myPGD, 100 iterations, single sample, CityLearn, GPU (their paper's "
            "code); different simulator and hardware, for context only",
        },
        "target_seconds_per_episode": TARGET_SECONDS,
        "a_full_episode_mlp": {**full_fig, "meets_target": bool(year_s < TARGET_SECONDS)},
        **b_figs,
        "b_autograd_full_episode_s_from_ratio": round(
            year_s * b_figs["b_speedup_mlp_vs_autograd_per_step"], 1
        ),
        "c_batching": batch_rows,
        "c_note": "speed-ups in c_batching are throughput (episodes per hour) against E=1 with "
        "the MLP engine on the same code path, measured interleaved; the ratios "
        "below mix phases (b) and (c), run one after the other",
        "c_autograd_batching_speedup_vs_autograd_one_at_a_time": {
            f"E={r['episodes_in_batch']}": round(r["episodes_per_hour"] / auto_rate, 1)
            for r in batch_rows
            if r["engine"] == "autograd"
        },
        "c_mlp_batched_speedup_vs_autograd_one_at_a_time": {
            f"E={r['episodes_in_batch']}": round(r["episodes_per_hour"] / auto_rate, 1)
            for r in batch_rows
            if r["engine"] == "mlp"
        },
        "speedup_vs_authors_gpu_episode": round(AUTHORS_GPU_SECONDS / year_s, 1),
        "benchmark_wall_s": round(time.perf_counter() - t_start, 1),
    }
    cfg = {
        "policy": policy_desc,
        "env": config.model_dump(mode="json", exclude={"network"})
        | {"network": str(config.network)},
        "attack": {
            "name": "bifurcation",
            "eps": EPS,
            "norm": "linf",
            "bounds": [0.0, 1.0],
            "settings": {k: v for k, v in probe.settings.items() if k != "engine"},
        },
        "threads": args.threads,
        "numba": numba_available(),
        "numba_max_batch_for_auto": NUMBA_MAX_BATCH,
        "quick": args.quick,
        "prefix_steps": {"autograd": n_auto, "batching": n_batch, "full_episode_mlp": year_steps},
        "method": "one process; (b) and (c) interleaved in chunks of 25/20 steps so shared-CPU "
        "load affects the compared variants alike; times include env stepping and the "
        "policy's action; extrapolated = per-step time x episode steps",
    }
    _print_table(figures)
    if not args.no_write:
        path = write_result("attack_speed", figures, cfg)
        print(f"wrote {path}")


def _print_table(fig: dict[str, Any]) -> None:
    """Print the headline figures and the batching table.

    :param fig: the figures of :func:`main`.
    """
    a, b = fig["a_full_episode_mlp"], fig["b_autograd_prefix"]
    authors = fig["authors"]
    rows = [
        (
            "authors, GPU (paper)",
            authors["episode_steps"],
            1e3 * authors["seconds_per_episode_gpu"] / authors["episode_steps"],
            authors["seconds_per_episode_gpu"],
            3600 / authors["seconds_per_episode_gpu"],
            "reference",
        ),
        (
            "(a) mlp, full episode, E=1",
            a["measured_steps"],
            a["ms_per_step"],
            a["full_episode_s"],
            a["episodes_per_hour"],
            f"{fig['speedup_vs_authors_gpu_episode']:.0f}x vs authors",
        ),
    ]
    for label, row, speedup in (
        ("(b) autograd, prefix", b, 1.0),
        (
            "(b) mlp (auto), same prefix",
            fig["b_mlp_same_prefix_interleaved"],
            fig["b_speedup_mlp_vs_autograd_per_step"],
        ),
        (
            "(b) mlp (numpy), same prefix",
            fig["b_mlp_numpy_backend_same_prefix_interleaved"],
            fig["b_speedup_numpy_backend_vs_autograd_per_step"],
        ),
    ):
        rows.append(
            (
                label,
                row["measured_steps"],
                row["ms_per_step"],
                row["full_episode_s"],
                row["episodes_per_hour"],
                f"{speedup:.1f}x vs autograd",
            )
        )
    for row in fig["c_batching"]:
        speedup = row.get("throughput_speedup_vs_one_at_a_time")
        rows.append(
            (
                f"(c) {row['name']} ({row['chosen_backend']})",
                row["measured_steps"],
                row["ms_per_step"],
                row["full_episode_s"],
                row["episodes_per_hour"],
                "" if speedup is None else f"{speedup:.2f}x vs E=1",
            )
        )
    print()
    print(f"{'variant':<36}{'steps':>6}{'ms/step':>10}{'s/episode':>11}{'ep/hour':>9}  speed-up")
    print("-" * 92)
    for name, n, ms, sec, rate, note in rows:
        print(f"{name:<36}{n:>6}{ms:>10.2f}{sec:>11.1f}{rate:>9.1f}  {note}")
    print(
        "s/episode and ep/hour are per full 8,760-step episode (extrapolated from the measured "
        "steps where fewer); ms/step is per lock-step batch step"
    )
    same = b["compared_with_mlp_engine"]
    base = fig["b_rounding_baseline_autograd_batched_vs_single"]
    print(
        f"target < {fig['target_seconds_per_episode']:.0f} s per episode: "
        f"{'met' if a['meets_target'] else 'NOT met'}; mlp == autograd (bit-identical "
        f"perturbed obs) on {same['identical']}/{same['samples']} steps; autograd batched == "
        f"autograd one-at-a-time on {base['identical']}/{base['samples']}"
    )


if __name__ == "__main__":
    main()
