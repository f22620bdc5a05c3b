"""MENTOR update speed against DrQ-v2 and a plain transcription of the authors' update, plus the
render rates of the pixel envs, in one run.

Updates/s at batch 256 (``--batch``) on pixels (9x84x84 uint8, three stacked RGB frames) and on
states (``--state-dim``, cartpole's 5 by default), for

* ``drqv2``: rlkit's DrQ-v2 (hidden 1024, feature 50);
* ``mentor_sparse``: rlkit's MENTOR with sparse MoE dispatch (each expert on its routed rows);
* ``mentor_dense``: the same with the authors' dense dispatch (all 16 experts on every row);
* ``authors``: :mod:`benchmarks.mentor_reference`, the transcription of the authors' update
  (dense MoE, hooks, ``.item()`` host syncs and all), started from the same weights as
  ``mentor_dense``;
* ``mentor_sparse_bf16`` (pixels): ``mentor_sparse`` with ``encoder_bf16: true``, the pixel
  encoder's convolutions under bfloat16 autocast (rlkit's option; the authors ran float32).

Every subject updates on the same fixed batches (random uint8 frames or Gaussian states,
actions in [-1, 1]); subjects are interleaved round by round so the load of a shared CPU hits
them alike, and the table reports the median over ``--repeats`` timed rounds after
``--warmup`` untimed updates, both as wall-clock rates and as rates per second of process CPU
time (the fairer figure on a machine shared with other jobs; with two threads it counts both
threads' time, so compare two-thread rows by wall clock). torch uses one thread
(``torch.set_num_threads(1)``, OMP/MKL set to 1 before import); ``--threads 1 2`` adds a
two-thread row (the committed results have none: the 2-core machine was shared, load 5-9).

Before timing, the benchmark checks that rlkit's MENTOR and the transcription compute the same
losses from the same weights on the same batch and torch seed (the differences are reported):

* ``as_released``: the transcription as written, against rlkit's default. The authors' Linear
  layers followed by ``ReLU(inplace=True)`` (``policy1``, each expert's first layer, the gate's
  first layer) hand their forward hook a tensor the in-place ReLU then overwrites, so their
  dormant ratio counts those layers' *post-ReLU* activity; rlkit's ``dormant_post_relu=True``
  (the default) measures the same thing on purpose.
* ``pre_activation``: the transcription with those ReLUs made out-of-place (every Linear
  measured as it leaves the layer), against rlkit with ``dormant_post_relu=False``.

Both must agree; the remaining differences are rlkit's documented changes: the
TruncatedNormal's 1e-6 margin inside [-1, 1] dropped, the MoE renormalisation without its 1e-9.

Render rates come from :func:`benchmarks.mentor_render.measure_render` (DMC and Meta-World
frames/s before and after the fast render settings).

Run from the repository root::

    OMP_NUM_THREADS=1 MUJOCO_GL=egl .venv/bin/python -m benchmarks.mentor_speed \\
        [--repeats 5 --warmup 2 --state-updates 10 --threads 1 2 --render-frames 200]

Writes ``benchmarks/results/mentor_speed.json`` and prints the table.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import write_result  # noqa: E402
from benchmarks.mentor_reference import ReferenceMENTOR, load_rlkit_weights  # noqa: E402
from rlkit.agents.drqv2 import DrQV2Agent  # noqa: E402
from rlkit.agents.mentor import MentorAgent  # noqa: E402
from rlkit.batch import Batch  # noqa: E402

NAME = "mentor_speed"
PIXEL_SHAPE = (9, 84, 84)
SUBJECTS = ("drqv2", "mentor_sparse", "mentor_dense", "authors")
# rlkit metric -> the authors' metric of the same quantity
SAME_QUANTITY = {
    "value_loss": "predictor_loss",
    "critic_loss": "critic_loss",
    "actor_loss": "actor_loss",
    "aux_loss": "aux_loss",
    "dormant_ratio": "actor_dormant_ratio",
    "target_q": "critic_target_q",
    "q": "critic_q1",
}
Step = Callable[[int], None]


def spaces(kind: str, state_dim: int, action_dim: int) -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """Observation and action spaces of a pixel or state env.

    :param kind: "pixels" or "states".
    :param state_dim: state size.
    :param action_dim: action size.
    """
    obs: gym.spaces.Box = (
        gym.spaces.Box(0, 255, PIXEL_SHAPE, np.uint8)
        if kind == "pixels"
        else gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)
    )
    return obs, gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32)


def batches(kind: str, size: int, state_dim: int, action_dim: int, count: int = 2) -> list[Batch]:
    """Fixed random batches (uint8 frames or Gaussian states; actions in [-1, 1]).

    :param kind: "pixels" or "states".
    :param size: batch size.
    :param state_dim: state size.
    :param action_dim: action size.
    :param count: how many distinct batches.
    """
    gen = torch.Generator().manual_seed(0)
    out = []
    for _ in range(count):
        if kind == "pixels":
            obs = torch.randint(0, 256, (2, size, *PIXEL_SHAPE), generator=gen, dtype=torch.uint8)
        else:
            obs = torch.randn(2, size, state_dim, generator=gen)
        out.append(
            Batch(
                obs[0],
                torch.rand(size, action_dim, generator=gen) * 2 - 1,
                torch.randn(size, 1, generator=gen),
                torch.full((size, 1), 0.99**3),
                obs[1],
            )
        )
    return out


def build(kind: str, state_dim: int, action_dim: int, size: int) -> dict[str, Any]:
    """The four subjects, MENTOR dense and the transcription from the same weights.

    :param kind: "pixels" or "states".
    :param state_dim: state size.
    :param action_dim: action size.
    :param size: batch size.
    """
    obs_space, act_space = spaces(kind, state_dim, action_dim)
    torch.manual_seed(0)
    drqv2 = DrQV2Agent(obs_space, act_space, batch_size=size)
    torch.manual_seed(0)
    sparse = MentorAgent(obs_space, act_space, batch_size=size, sparse_moe=True)
    dense = MentorAgent(obs_space, act_space, batch_size=size, sparse_moe=False)
    dense.load_state_dict(sparse.state_dict())
    authors = ReferenceMENTOR(tuple(obs_space.shape), action_dim)
    load_rlkit_weights(authors, dense)
    subjects = {"drqv2": drqv2, "mentor_sparse": sparse, "mentor_dense": dense, "authors": authors}
    if kind == "pixels":
        bf16 = MentorAgent(obs_space, act_space, batch_size=size, encoder_bf16=True)
        bf16.load_state_dict(sparse.state_dict())
        subjects["mentor_sparse_bf16"] = bf16
    return subjects


def step_fn(subject: Any, data: list[Batch]) -> Step:
    """One update of ``subject`` on batch ``i mod len(data)``.

    :param subject: an rlkit agent or the transcription.
    :param data: the batches.
    """
    if isinstance(subject, ReferenceMENTOR):

        def authors(i: int) -> None:
            b = data[i % len(data)]
            subject.update(b.obs, b.action, b.reward, b.discount, b.next_obs, i)

        return authors

    def rlkit(i: int) -> None:
        subject.update(data[i % len(data)], i)

    return rlkit


def time_subjects(steps: dict[str, Step], warmup: int, repeats: int, per_round: int) -> dict:
    """Median updates/s per subject, rounds interleaved, by wall clock and by process CPU time
    (the CPU-time rate is the fairer one on a machine shared with other jobs).

    :param steps: subject -> one update.
    :param warmup: untimed updates each first.
    :param repeats: timed rounds.
    :param per_round: updates per round.
    """
    counter = 0
    for step in steps.values():
        for _ in range(warmup):
            step(counter)
            counter += 1
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(per_round):
                step(counter)
                counter += 1
            wall[name].append(per_round / (time.perf_counter() - start))
            cpu[name].append(per_round / max(time.process_time() - start_cpu, 1e-9))
    return {
        name: {
            "updates_per_s": statistics.median(wall[name]),
            "updates_per_cpu_s": statistics.median(cpu[name]),
            "rounds_wall": wall[name],
            "rounds_cpu": cpu[name],
        }
        for name in steps
    }


def compare_losses(dense: MentorAgent, data: Batch) -> dict[str, Any]:
    """Losses of one update of rlkit's MENTOR and of the transcription from the same weights,
    batch and torch seed: the authors' hooks as released against rlkit's default (post-ReLU)
    dormant ratio, and out-of-place ReLUs against rlkit's pre-activation one.

    :param dense: an rlkit MENTOR (its weights are copied, it is not changed).
    :param data: the batch.
    """
    out: dict[str, Any] = {}
    for label, pre_activation in (("as_released", False), ("pre_activation", True)):
        agent = copy.deepcopy(dense)
        agent.dormant_post_relu = not pre_activation
        shape = tuple(data.obs.shape[1:])
        reference = ReferenceMENTOR(shape, int(data.action.shape[1]))
        load_rlkit_weights(reference, agent)
        if pre_activation:
            for module in reference.actor.modules():
                if isinstance(module, nn.ReLU):
                    module.inplace = False
        torch.manual_seed(123)
        ours = agent.update(data, 0)
        torch.manual_seed(123)
        theirs = reference.update(data.obs, data.action, data.reward, data.discount, data.next_obs)
        rows = {
            key: {
                "rlkit": ours[key],
                "authors": theirs[their_key],
                "abs_diff": abs(ours[key] - theirs[their_key]),
            }
            for key, their_key in SAME_QUANTITY.items()
        }
        out[label] = {"losses": rows, "weights_after": weight_gaps(agent, reference)}
    return out


def weight_gaps(agent: MentorAgent, reference: ReferenceMENTOR) -> dict[str, dict[str, float]]:
    """Per network after the update: the largest absolute weight difference and the fraction of
    weights that differ by more than :data:`TOLERANCE`.

    Adam's first step moves every weight by about ``lr`` in the sign of its gradient, so a
    gradient within rounding of 0 (the channels-last encoder rounds differently from the
    authors' NCHW one) may move a weight the other way: ``2 lr`` apart at most.

    :param agent: rlkit's agent.
    :param reference: the transcription.
    """
    from benchmarks.mentor_reference import rlkit_to_reference

    gaps = {}
    for role, net in reference.networks().items():
        mine = rlkit_to_reference(role, getattr(agent, role).state_dict())
        theirs = net.state_dict()
        parts = [(mine[k].float() - theirs[k].float()).abs().reshape(-1) for k in theirs]
        diffs = torch.cat([torch.zeros(0), *parts])
        gaps[role] = {
            "max_abs_diff": float(diffs.max()) if diffs.numel() else 0.0,
            "fraction_beyond_tolerance": float((diffs > TOLERANCE).float().mean())
            if diffs.numel()
            else 0.0,
        }
    return gaps


def sparse_dense_gap(sparse: MentorAgent, dense: MentorAgent, data: Batch) -> float:
    """Largest |sparse - dense| actor output on a batch (eval mode, same weights).

    :param sparse: MENTOR with sparse dispatch.
    :param dense: the same weights with dense dispatch.
    :param data: the batch.
    """
    with torch.no_grad():
        features = sparse.encoder(data.obs)
        return float((sparse.actor(features) - dense.actor(features)).abs().max())


def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Loss agreement and timing rows of one observation kind.

    :param kind: "pixels" or "states".
    :param args: the command line.
    """
    torch.set_num_threads(1)
    data = batches(kind, args.batch, args.state_dim, args.action_dim)
    subjects = build(kind, args.state_dim, args.action_dim, args.batch)
    facts: dict[str, Any] = {
        "sparse_vs_dense_max_abs_diff": sparse_dense_gap(
            subjects["mentor_sparse"], subjects["mentor_dense"], data[0]
        ),
        "loss_agreement": compare_losses(subjects["mentor_dense"], data[0]),
    }
    print_agreement(kind, facts)
    check_agreement(facts)
    per_round = 1 if kind == "pixels" else args.state_updates
    for threads in args.threads:
        torch.set_num_threads(threads)
        steps = {name: step_fn(subject, data) for name, subject in subjects.items()}
        rows = time_subjects(steps, args.warmup, args.repeats, per_round)
        facts[f"threads_{threads}"] = rows
        print_rates(kind, threads, rows)
    torch.set_num_threads(1)
    return facts


TOLERANCE = 1e-5  # relative (to max(1, |value|)); float32 rounding is far below it
LR = 1e-4  # the agents' Adam learning rate (MENTOR's default)


def check_agreement(facts: dict[str, Any]) -> None:
    """Fail unless sparse equals dense and, in both dormant-ratio modes, rlkit's losses and
    updated weights equal the transcription's within :data:`TOLERANCE`.

    :param facts: :func:`measure`'s figures so far.
    :raises AssertionError: naming the quantity that differs.
    """
    assert facts["sparse_vs_dense_max_abs_diff"] < TOLERANCE, "sparse and dense MoE differ"
    for label, same in facts["loss_agreement"].items():
        for key, row in same["losses"].items():
            bound = TOLERANCE * max(1.0, abs(row["authors"]))
            assert row["abs_diff"] <= bound, f"{label} {key}: {row['rlkit']} vs {row['authors']}"
        for role, gap in same["weights_after"].items():
            assert gap["max_abs_diff"] <= 2.0 * LR + TOLERANCE, f"{label}: {role} weights: {gap}"
            assert gap["fraction_beyond_tolerance"] <= 1e-3, f"{label}: {role} weights: {gap}"


def print_agreement(kind: str, facts: dict[str, Any]) -> None:
    """Print the loss comparison.

    :param kind: "pixels" or "states".
    :param facts: :func:`measure`'s figures so far.
    """
    gap = facts["sparse_vs_dense_max_abs_diff"]
    print(f"{kind}: sparse vs dense actor output max |diff| {gap:.2e}")
    for label, result in facts["loss_agreement"].items():
        cells = ", ".join(
            f"{key} {row['rlkit']:.5g}/{row['authors']:.5g} (|d| {row['abs_diff']:.1e})"
            for key, row in result["losses"].items()
        )
        print(f"  {label}: rlkit/authors {cells}")


def print_rates(kind: str, threads: int, rows: dict[str, Any]) -> None:
    """Print one timing row (wall and CPU-time rates) with ratios to the transcription.

    :param kind: "pixels" or "states".
    :param threads: torch threads.
    :param rows: :func:`time_subjects` output.
    """
    for key, unit in (("updates_per_s", "wall"), ("updates_per_cpu_s", "cpu")):
        ref = rows["authors"][key]
        cells = "  ".join(
            f"{name} {row[key]:7.3f}/s ({row[key] / ref:4.2f}x)" for name, row in rows.items()
        )
        print(f"{kind:<6} threads={threads} {unit:<4} {cells}", flush=True)


def ratios(figures: dict[str, Any], threads: Sequence[int]) -> dict[str, Any]:
    """Headline ratios (speed-ups over the transcription, MENTOR's cost over DrQ-v2), from the
    CPU-time rates and from the wall-clock rates.

    :param figures: per-kind figures.
    :param threads: thread counts timed.
    """
    out: dict[str, Any] = {}
    for kind, facts in figures.items():
        for t in threads:
            rows = facts.get(f"threads_{t}")
            if not rows:
                continue
            for key, unit in (("updates_per_cpu_s", "cpu"), ("updates_per_s", "wall")):
                rate = {name: row[key] for name, row in rows.items()}
                out[f"{kind}_threads_{t}_{unit}"] = {
                    "mentor_sparse_over_authors": rate["mentor_sparse"] / rate["authors"],
                    "mentor_dense_over_authors": rate["mentor_dense"] / rate["authors"],
                    "sparse_over_dense": rate["mentor_sparse"] / rate["mentor_dense"],
                    "drqv2_over_mentor_sparse": rate["drqv2"] / rate["mentor_sparse"],
                }
                if "mentor_sparse_bf16" in rate:
                    out[f"{kind}_threads_{t}_{unit}"]["bf16_encoder_over_float32"] = (
                        rate["mentor_sparse_bf16"] / rate["mentor_sparse"]
                    )
    return out


def render(frames: int) -> dict[str, Any]:
    """Frames/s of the pixel envs through the env helper's benchmark (or why not).

    :param frames: frames rendered per setting.
    """
    try:
        from benchmarks.mentor_render import measure_render
    except ImportError as err:
        return {"unavailable": f"benchmarks.mentor_render: {err}"}
    try:
        return measure_render(frames)
    except Exception as err:  # noqa: BLE001 - a render failure must not lose the update figures
        return {"failed": f"{type(err).__name__}: {err}"}


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print and write ``benchmarks/results/mentor_speed.json``.

    :param argv: command-line arguments.
    """
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per subject")
    p.add_argument("--warmup", type=int, default=2, help="untimed updates per subject")
    p.add_argument("--state-updates", type=int, default=10, help="updates per state round")
    p.add_argument("--state-dim", type=int, default=5)
    p.add_argument("--action-dim", type=int, default=1)
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--kinds", nargs="+", default=["states", "pixels"])
    p.add_argument("--render-frames", type=int, default=200, help="0 skips the render part")
    args = p.parse_args(argv)
    figures: dict[str, Any] = {kind: measure(kind, args) for kind in args.kinds}
    figures["ratios"] = ratios(figures, args.threads)
    if args.render_frames > 0:
        figures["render"] = render(args.render_frames)
        print("render:", figures["render"])
    for key, row in figures["ratios"].items():
        print(key, {k: round(v, 2) for k, v in row.items()})
    path = write_result(NAME, figures, vars(args) | {"pixel_shape": list(PIXEL_SHAPE)})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
