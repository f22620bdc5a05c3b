"""Grid env throughput: pandapower-in-the-loop vs the batched Z-bus backend, side by side.

Run: ``python benchmarks/grid_powerflow.py [--quick]``. Writes
``benchmarks/results/grid_powerflow.json`` and prints a table. BLAS threads are pinned to 1
(``OPENBLAS_NUM_THREADS=1`` etc., set before numpy is imported) so the figures are per core.

Every env-step includes the full env logic (projection, SOC, reward, observation, KPIs) and, as
configured by default, the no-battery counterfactual, i.e. two power flows per env-step.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandapower as pp  # noqa: E402

from rlkit.envs.grid import GridBatteryEnv, GridBatteryVectorEnv  # noqa: E402
from rlkit.envs.grid.powerflow import ZBusSolver  # noqa: E402

RESULT = Path(__file__).resolve().parent / "results" / "grid_powerflow.json"
BASE = dict(network="case33bw", profiles="simbench", step_minutes=15, episode_days=1)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            timeout=10,
        )
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
    except Exception:
        return None


class SingleRunner:
    """Steps one ``GridBatteryEnv`` with uniform random actions (resets included)."""

    def __init__(self, **kw: Any) -> None:
        """Build and warm up (numba JIT, pandapower first run).

        :param kw: config overrides.
        """
        self.env = GridBatteryEnv(**{**BASE, **kw})
        self.rng = np.random.default_rng(0)
        self.env.reset(seed=0)
        self.n = 1
        for _ in range(5):
            self.step()

    def step(self) -> None:
        """One env-step."""
        _, _, _, trunc, _ = self.env.step(self.rng.uniform(-1, 1, self.env.action_space.shape))
        if trunc:
            self.env.reset()


class VectorRunner:
    """Steps ``GridBatteryVectorEnv(n)`` with uniform random actions (autoreset included)."""

    def __init__(self, n: int, **kw: Any) -> None:
        """Build and warm up.

        :param n: number of copies.
        :param kw: config overrides.
        """
        self.env = GridBatteryVectorEnv(n, **{**BASE, **kw})
        self.rng = np.random.default_rng(0)
        self.env.reset(seed=0)
        self.n = n
        for _ in range(3):
            self.step()

    def step(self) -> None:
        """One batched step (n env-steps)."""
        self.env.step(self.rng.uniform(-1, 1, self.env.action_space.shape))


def rate(
    runner: SingleRunner | VectorRunner, seconds: float, min_calls: int = 10
) -> tuple[float, float]:
    """Env-steps per wall-clock second and per CPU second of this process.

    :param runner: a runner.
    :param seconds: minimum measuring time.
    :param min_calls: minimum number of step calls.
    """
    calls, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds or calls < min_calls:
        runner.step()
        calls += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return calls * runner.n / wall, calls * runner.n / max(cpu, 1e-9)


def interleaved(
    runners: dict[str, SingleRunner | VectorRunner], seconds: float, rounds: int
) -> dict[str, dict[str, Any]]:
    """Measure all runners in alternating slices (robust to load from other processes).

    :param runners: label -> runner.
    :param seconds: slice length per runner and round.
    :param rounds: number of rounds.
    :return: label -> {"median": wall-clock median, "median_cpu": per-CPU-second median,
        "samples": [...]}.
    """
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
    for _ in range(rounds):
        for k, r in runners.items():
            samples[k].append(rate(r, seconds))
    return {
        k: {
            "median": float(np.median([x[0] for x in v])),
            "median_cpu": float(np.median([x[1] for x in v])),
            "samples": [x[0] for x in v],
        }
        for k, v in samples.items()
    }


def accuracy(n_states: int, seed: int = 0) -> dict[str, float]:
    """Max |dV| (pu) of the Z-bus solver vs ``pp.runpp`` on the env's network (batteries, PV).

    :param n_states: random states (loads 0.3-2x nominal, PV 0-1x peak, batteries +-p_max).
    :param seed: RNG seed.
    """
    env = GridBatteryEnv(**BASE, numba=False)
    net = copy.deepcopy(env.net)
    zb = ZBusSolver(copy.deepcopy(net))
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.3, 2.0, (n_states, len(net.load)))
    p = net.load["p_mw"].to_numpy() * f
    q = net.load["q_mvar"].to_numpy() * f
    sg = rng.uniform(0, 0.5, (n_states, len(net.sgen)))
    st = rng.uniform(-0.3, 0.3, (n_states, len(net.storage)))
    res = zb.run(p, q, sg, None, st)
    worst, worst_imp = 0.0, 0.0
    for r in range(n_states):
        net.load["p_mw"], net.load["q_mvar"] = p[r], q[r]
        net.sgen["p_mw"], net.storage["p_mw"] = sg[r], st[r]
        pp.runpp(net, numba=False)
        worst = max(worst, float(np.nanmax(np.abs(net.res_bus["vm_pu"].to_numpy() - res.vm[r]))))
        worst_imp = max(
            worst_imp, abs(float(net.res_ext_grid["p_mw"].sum()) - float(res.p_import_mw[r]))
        )
    return {
        "n_states": n_states,
        "max_abs_dv_pu": worst,
        "max_abs_dp_import_mw": worst_imp,
        "all_converged": bool(res.converged.all()),
    }


def main() -> None:
    """Run the benchmark, print a table and write the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter measurements")
    ap.add_argument("--out", default=str(RESULT), help="output JSON path")
    args = ap.parse_args()
    sec = 0.3 if args.quick else 1.0
    rounds = 3 if args.quick else 7
    labels = {
        "a": ("(a) env, backend=pandapower (runpp/step)", 1),
        "b": ("(b) env, zbus backend, numba kernel", 1),
        "b_np": ("(b') env, zbus backend, numpy only", 1),
        "c8": ("(c) vector env N=8", 8),
        "c64": ("(c) vector env N=64", 64),
        "c256": ("(c) vector env N=256", 256),
        "c1024": ("(c) vector env N=1024", 1024),
        "c64_nocf": ("(c') vector env N=64, counterfactual off", 64),
    }
    print("building and warming up ...", flush=True)
    runners: dict[str, SingleRunner | VectorRunner] = {
        "a": SingleRunner(backend="pandapower"),
        "b": SingleRunner(numba=True),
        "b_np": SingleRunner(numba=False),
        "c8": VectorRunner(8),
        "c64": VectorRunner(64),
        "c256": VectorRunner(256),
        "c1024": VectorRunner(1024),
        "c64_nocf": VectorRunner(64, counterfactual=False),
    }
    print(
        f"measuring: {rounds} interleaved rounds of {sec} s per setup (medians reported)",
        flush=True,
    )
    meas = interleaved(runners, sec, rounds)
    rows: list[dict[str, Any]] = []
    for key, (label, n) in labels.items():
        rows.append(
            {
                "setup": label,
                "num_envs": n,
                "env_steps_per_s": meas[key]["median"],
                "env_steps_per_cpu_s": meas[key]["median_cpu"],
                "samples": meas[key]["samples"],
            }
        )
    acc = accuracy(100)
    a = rows[0]["env_steps_per_s"]
    a_cpu = rows[0]["env_steps_per_cpu_s"]
    for r in rows:
        r["speedup_vs_pandapower"] = r["env_steps_per_s"] / a
        r["speedup_vs_pandapower_cpu"] = r["env_steps_per_cpu_s"] / a_cpu
    by = {r["setup"]: r["env_steps_per_s"] for r in rows}
    b = by["(b) env, zbus backend, numba kernel"]
    c64 = by["(c) vector env N=64"]
    b_cpu = rows[1]["env_steps_per_cpu_s"]
    c64_cpu = rows[4]["env_steps_per_cpu_s"]
    targets = {
        "single_env_ge_5000": {"value": b, "met": b >= 5000},
        "vector_n64_ge_1000x_pandapower": {"value": c64 / a, "met": c64 / a >= 1000},
        "single_env_ge_5000_per_cpu_s": {"value": b_cpu, "met": b_cpu >= 5000},
        "vector_n64_ge_1000x_pandapower_per_cpu_s": {
            "value": c64_cpu / a_cpu,
            "met": c64_cpu / a_cpu >= 1000,
        },
    }
    print()
    print(
        f"{'setup':<44s} {'N':>5s} {'steps/s':>10s} {'x pp':>8s} {'steps/cpu-s':>12s} {'x pp':>8s}"
    )
    for r in rows:
        print(
            f"{r['setup']:<44s} {r['num_envs']:>5d} {r['env_steps_per_s']:>10.1f} "
            f"{r['speedup_vs_pandapower']:>8.1f} {r['env_steps_per_cpu_s']:>12.1f} "
            f"{r['speedup_vs_pandapower_cpu']:>8.1f}"
        )
    print(
        f"accuracy vs runpp: max |dV| = {acc['max_abs_dv_pu']:.2e} pu over {acc['n_states']} states"
    )
    for k, v in targets.items():
        print(f"target {k}: {v['value']:.1f} -> {'met' if v['met'] else 'MISSED'}")
    out = {
        "benchmark": "grid_powerflow",
        "config": {
            **BASE,
            "actions": "uniform random",
            "counterfactual": True,
            "power_flows_per_env_step": 2,
            "slice_seconds": sec,
            "rounds": rounds,
            "method": "interleaved slices, median per setup",
            "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        },
        "results": rows,
        "accuracy": acc,
        "targets": targets,
        "commit": _git_commit(),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average_1_5_15min_at_end": list(os.getloadavg()),
            "numpy": np.__version__,
            "pandapower": pp.__version__,
        },
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
