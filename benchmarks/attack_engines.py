"""Seconds per 100-step PGD attack call on each attack engine, by batch size (CPU).

Engines (:mod:`rlkit.attacks.engines`): ``autograd``, ``compiled`` (torch.compile of the policy
forward + input gradient) and ``mlp`` (the hand-written numpy/numba MLP gradient), on

* the paper's victims' shape: an SB3 policy view with a 256x256 MLP on 31 inputs (untrained),
  attacked by ``bifurcation`` (continuous SAC actor: GDL on ``[a, -a]``, affine in the action, so
  the MLP engine's numba kernel serves batches up to 8), by ``pgd`` (the same actor, MSE distance
  from the clean action, random start), and by ``pgd`` (difference of logits) and
  ``bifurcation`` (GDL on group maxima) on a discrete PPO policy, whose output gradients the MLP
  engine looks up once per cell the loss declares (``mlp``: the tie sets of its maxima), once
  per order of the logits (``mlp_order_key``, the key before losses declared cells) or takes
  from torch at every iteration (``mlp_torch_loss``: the same engine with every ordinal loss
  given a :class:`rlkit.attacks.fastgrad.TorchOutputGrad`);
* a small CNN on 3x32x32 frames (two stride-2 convolutions, linear head, 6 logits), discrete
  ``pgd`` under an eps = 4 linf budget in 0..255 units: autograd and compiled only.

Each (policy, engine, batch) is called once untimed first (numba JIT, torch.compile: that first
call's time is reported as the compile time), then timed ``--repeats`` times, the engines
interleaved call by call so that the load of a shared CPU hits them alike; the table gives the
median seconds per call.  The authors' myPGD settings: 100 sign steps from 0.01, halved every
25 (``decay_schedule: authors``), eps = 0.05 linf in [0, 1].  torch, BLAS and OpenMP use one
thread (``torch.set_num_threads(1)``, ``OMP/MKL/OPENBLAS_NUM_THREADS=1`` set before import).

Run ``python -m benchmarks.attack_engines [--quick]`` from the repository root; writes
``benchmarks/results/attack_engines.json`` and prints the tables.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import write_result  # noqa: E402
from rlkit.attacks import AUTO_MLP_MAX_BATCH, AttackBudget, make_attack  # noqa: E402

BATCHES = (1, 16, 64, 256)
N_IN = 31
ITERATIONS = 100


class SmallCNN(nn.Module):
    """3x32x32 frames in 0..255 -> 6 logits: two stride-2 convolutions and a linear head."""

    def __init__(self) -> None:
        """Build the layers (seeded by the caller)."""
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.head = nn.Linear(16 * 7 * 7, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a frame batch.

        :param x: frames (B, 3, 32, 32) in 0..255.
        """
        return self.head(self.conv(x / 255.0))


def sb3_view(algo: str, discrete: bool) -> Any:
    """An untrained SB3 policy view with net_arch [256, 256] on a Box(0, 1, (31,)) space.

    :param algo: "SAC" or "PPO".
    :param discrete: a Discrete(20) action space, the paper's 20-bin PPO (else Box(-1, 1, (1,))).
    """
    import gymnasium as gym

    from rlkit.agents.sb3 import SB3Agent
    from rlkit.config import AgentConfig

    obs_space = gym.spaces.Box(0.0, 1.0, (N_IN,), np.float32)
    act_space = gym.spaces.Discrete(20) if discrete else gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    extra = {"buffer_size": 1000} if algo == "SAC" else {}
    config = AgentConfig(name=algo.lower(), net_arch=[256, 256], kwargs=extra)
    return SB3Agent(algo, config, spaces=(obs_space, act_space), seed=0).policy_view()


class TorchLossMLP:
    """The ``mlp`` engine's attack with ordinal losses differentiated by torch at every
    iteration (the path before :class:`rlkit.attacks.fastgrad.OrdinalGrad`), for the ratio.

    :param attack: an attack on the ``mlp`` engine.
    """

    def __init__(self, attack: Any) -> None:
        """Wrap ``attack``."""
        self.attack = attack

    def __call__(self, obs: torch.Tensor, t: int = 0) -> torch.Tensor:
        """The attack on ``obs`` at time ``t`` without ordinal lookups."""
        from rlkit.attacks import engines, fastgrad

        declared = engines.output_grad_for

        def torch_every_iteration(loss: Any, clean: Any, args: Any, cache: Any = None) -> Any:
            if loss.ordinal:
                return fastgrad.TorchOutputGrad(loss, args)
            return declared(loss, clean, args, cache)

        engines.output_grad_for = torch_every_iteration  # type: ignore[assignment]
        try:
            return self.attack(obs, t=t)
        finally:
            engines.output_grad_for = declared  # type: ignore[assignment]


class OrderKeyMLP:
    """The ``mlp`` engine's attack with its ordinal cache keyed by the whole order of the
    outputs and 0 (the key before losses declared their cells, ``OutputLoss.cells``).

    :param attack: an attack on the ``mlp`` engine.
    """

    def __init__(self, attack: Any) -> None:
        """Wrap ``attack``."""
        self.attack = attack

    def __call__(self, obs: torch.Tensor, t: int = 0) -> torch.Tensor:
        """The attack on ``obs`` at time ``t`` with order keys."""
        from rlkit.attacks.fastgrad import OrdinalGrad

        declared = OrdinalGrad._cell_codes

        def order_codes(grad: OrdinalGrad, z: np.ndarray, index: np.ndarray) -> list[bytes]:
            loss = grad.loss
            grad.loss = dataclasses.replace(loss, cells=None)
            try:
                return declared(grad, z, index)
            finally:
                grad.loss = loss

        OrdinalGrad._cell_codes = order_codes  # type: ignore[method-assign]
        try:
            return self.attack(obs, t=t)
        finally:
            OrdinalGrad._cell_codes = declared  # type: ignore[method-assign]


def build(case_attack: str, policy: Any, budget: AttackBudget, engine: str, **kw: Any) -> Any:
    """``make_attack`` on ``engine`` (``mlp_torch_loss``: :class:`TorchLossMLP`;
    ``mlp_order_key``: :class:`OrderKeyMLP`).

    :param case_attack: attack name.
    :param policy: the policy view.
    :param budget: the budget.
    :param engine: an engine name or ``mlp_torch_loss``.
    :param kw: attack settings.
    """
    if engine == "mlp_torch_loss":
        return TorchLossMLP(make_attack(case_attack, policy, budget, engine="mlp", **kw))
    if engine == "mlp_order_key":
        return OrderKeyMLP(make_attack(case_attack, policy, budget, engine="mlp", **kw))
    return make_attack(case_attack, policy, budget, engine=engine, **kw)


@dataclass
class Case:
    """One attacked policy and loss.

    :param name: label in the tables.
    :param attack: attack name.
    :param policy: the policy view.
    :param budget: the budget.
    :param settings: attack settings (besides ``engine``).
    :param sample: batch size -> clean observation batch.
    :param engines: engines to time.
    """

    name: str
    attack: str
    policy: Any
    budget: AttackBudget
    settings: dict[str, Any]
    sample: Callable[[int], torch.Tensor]
    engines: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)


def cases(quick: bool) -> list[Case]:
    """The benchmarked (policy, loss) cases.

    :param quick: smaller CNN batches (smoke test).
    """
    gen = torch.Generator().manual_seed(0)
    flat = torch.rand(max(BATCHES), N_IN, generator=gen)
    frames = torch.randint(0, 256, (max(BATCHES), 3, 32, 32), generator=gen).float()
    sac, ppo = sb3_view("SAC", False), sb3_view("PPO", True)
    torch.manual_seed(0)
    cnn = SmallCNN()
    box = AttackBudget(0.05, low=0.0, high=1.0)
    all_engines = ("autograd", "compiled", "mlp")
    return [
        Case(
            "mlp256 bifurcation (affine)",
            "bifurcation",
            sac,
            box,
            {},
            lambda b: flat[:b],
            all_engines,
        ),
        Case(
            "mlp256 pgd mse (continuous)",
            "pgd",
            sac,
            box,
            {"random_start": True, "seed": 0},
            lambda b: flat[:b],
            all_engines,
        ),
        Case(
            "mlp256 pgd logits (discrete)",
            "pgd",
            ppo,
            box,
            {},
            lambda b: flat[:b],
            (*all_engines, "mlp_order_key", "mlp_torch_loss"),
        ),
        Case(
            "mlp256 bifurcation (discrete)",
            "bifurcation",
            ppo,
            box,
            {},
            lambda b: flat[:b],
            ("autograd", "mlp", "mlp_order_key", "mlp_torch_loss"),
        ),
        Case(
            "cnn 3x32x32 pgd logits",
            "pgd",
            cnn,
            AttackBudget(4.0, low=0, high=255),
            {"action_kind": "discrete", "step_size": 1.0},
            lambda b: frames[:b],
            ("autograd", "compiled"),
        ),
    ]


def time_case(case: Case, batches: tuple[int, ...], repeats: int) -> None:
    """Time every engine of ``case`` at every batch size into ``case.rows``.

    :param case: the case (rows are appended).
    :param batches: batch sizes.
    :param repeats: timed calls per (engine, batch).
    """
    attacks = {
        e: build(case.attack, case.policy, case.budget, e, **case.settings) for e in case.engines
    }
    for batch in batches:
        obs = case.sample(batch)
        first, outs = {}, {}
        times: dict[str, list[float]] = {e: [] for e in case.engines}
        for engine, attack in attacks.items():
            t0 = time.perf_counter()
            outs[engine] = attack(obs, t=0)
            first[engine] = time.perf_counter() - t0
        for _ in range(repeats):
            for engine, attack in attacks.items():
                t0 = time.perf_counter()
                attack(obs, t=0)
                times[engine].append(time.perf_counter() - t0)
        ref = outs["autograd"]
        row: dict[str, Any] = {"batch": batch}
        for engine in case.engines:
            diff = (outs[engine] - ref).flatten(1).abs().amax(dim=1)
            row[engine] = {
                "median_s": statistics.median(times[engine]),
                "min_s": min(times[engine]),
                "first_call_s": first[engine],
                "identical_to_autograd": float((diff == 0).float().mean()),
                "max_abs_diff_vs_autograd": float(diff.max()),
            }
        case.rows.append(row)
        print(
            f"  {case.name:<30} B={batch:<4} "
            + "  ".join(f"{e} {row[e]['median_s']:.4f}s" for e in case.engines),
            flush=True,
        )


def print_tables(all_cases: list[Case]) -> None:
    """Print one table per case: median seconds per 100-step call.

    :param all_cases: the timed cases.
    """
    for case in all_cases:
        print(f"\n{case.name}: median s per {ITERATIONS}-step PGD call (first call: compile/JIT)")
        print(f"{'batch':>6}" + "".join(f"{e:>22}" for e in case.engines))
        for row in case.rows:
            cells = "".join(
                f"{row[e]['median_s']:>10.4f} ({row[e]['first_call_s']:>7.2f})"
                for e in case.engines
            )
            print(f"{row['batch']:>6}{cells}")


def main() -> None:
    """Run the benchmark, print the tables and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per cell")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 repeats")
    parser.add_argument("--no-write", action="store_true", help="do not write the JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    repeats = 2 if args.quick else args.repeats
    start = time.perf_counter()
    all_cases = cases(args.quick)
    for case in all_cases:
        time_case(case, BATCHES, repeats)
    print_tables(all_cases)
    figures = {
        "seconds_per_call": {case.name: case.rows for case in all_cases},
        "auto_rule": f"mlp when the policy is a plain MLP on the CPU and the batch has at most "
        f"{AUTO_MLP_MAX_BATCH} samples, else autograd; never compiled",
        "benchmark_wall_s": round(time.perf_counter() - start, 1),
    }
    config = {
        "iterations": ITERATIONS,
        "batches": list(BATCHES),
        "repeats": repeats,
        "statistic": "median seconds per attack call; engines interleaved call by call",
        "mlp_policies": "untrained SB3 SAC actor / 20-bin discrete PPO policy views, net_arch "
        "[256, 256], 31 inputs, float32",
        "cnn": "Conv2d(3,16,3,s2)-ReLU-Conv2d(16,16,3,s2)-ReLU-Linear(784,6), frames 0..255",
        "budgets": {"mlp": "eps 0.05 linf in [0, 1]", "cnn": "eps 4 linf in [0, 255]"},
        "settings": "authors' myPGD defaults (step 0.01 halved every 25, decay_schedule "
        "authors); cnn step_size 1.0",
        "threads": torch.get_num_threads(),
        "quick": args.quick,
    }
    if not args.no_write:
        path = write_result("attack_engines", figures, config)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
