"""A trained pixel policy (MENTOR or DrQ-v2) under the pixel attacks: return and success regret.

Runs ``configs/attacks/pixels.yaml`` (random, FGSM, PGD and bifurcation at eps 2/255, 4/255 and
8/255, linf, frame-level: each rendered frame perturbed once) through the same code as
``rlkit evaluate RUN --attack configs/attacks/pixels.yaml`` and keeps, per (attack, eps), the
regret of the return (and of ``success`` where the env reports it), the largest change in pixel
levels and the mean absolute action change. The policies: the pixel runs of
:mod:`benchmarks.mentor_learning`, MENTOR with the pre-tanh penalty
(``runs/mentor/pixels_mentor_pen_cartpole-swingup_s0``, trained) and with the authors' loss
(``runs/mentor/pixels_mentor_cartpole-swingup_s0``, stopped at 20k frames, saturated); any
drqv2/mentor pixel run works. On the 2-core CPU (CPU-sized heads) a 500-step DMC episode takes
about 25 s per (attack, eps) at 10 gradient steps, so the 13 passes of 2 episodes about 11 min::

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python -m benchmarks.mentor_attacks \\
        runs/mentor/pixels_mentor_pen_cartpole-swingup_s0 [--episodes 2]

Writes ``benchmarks/results/mentor_attacks.json`` (one entry per attacked run), the attack
report (tables, regret plot, clean vs perturbed frames per attack at its largest budget) in
``benchmarks/results/mentor_attacks/<run name>/``, and prints the table.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, read_figures, results_lock, write_result

NAME = "mentor_attacks"
ATTACKS = "configs/attacks/pixels.yaml"
KEPT = ("return", "success", "linf_max", "action_mae", "eps_raw")


def attack_rows(run: Path, episodes: int | None, page: Path | None = None) -> dict[str, Any]:
    """The pixel attacks on ``run``'s model (its final one, else its newest checkpoint): the
    clean row and one row per (attack, eps).

    :param run: a drqv2 or mentor run directory on a pixel env.
    :param episodes: evaluation episodes (None: the attack config's).
    :param page: when given, the folder (replaced) that gets the attack report and its frames.
    """
    from rlkit.attacks.evaluation import evaluate_attacks
    from rlkit.attacks.pixels import pixel_label
    from rlkit.attacks.report import write_report
    from rlkit.config import load_attack_config
    from rlkit.loading import load_run
    from rlkit.rundir import RunDir

    folder = RunDir(run)
    latest = folder.latest_checkpoint()
    checkpoint = None if folder.final.is_dir() or latest is None else latest.name
    loaded = load_run(run, checkpoint)  # the model recorded is the one loaded
    model = checkpoint or "final"
    config = load_attack_config(ATTACKS)
    result = evaluate_attacks(
        loaded.make_env, loaded.view, config, loaded.seed, episodes=episodes, progress=False
    )
    if page is not None:
        shutil.rmtree(page, ignore_errors=True)
        context = {"run": str(run), "model": model, "attacks": ATTACKS, "episodes": episodes}
        write_report(result, page, f"Pixel attacks on {run.name} ({model})", context)

    def kept(row: dict[str, Any]) -> dict[str, Any]:
        keys = [k for k in row if k in KEPT or k.removeprefix("regret_") in KEPT]
        return {k: row[k] for k in keys if isinstance(row[k], int | float)}

    return {
        "model": model,
        "episodes": episodes or config.episodes,
        "clean": kept(result["clean"]),
        "attacks": {f"{r['attack']}@{pixel_label(r['eps'])}": kept(r) for r in result["rows"]},
        "frame_level": result["meta"].get("frame_level"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``RUN [--episodes N]``. The JSON keeps one entry per run name (a run
    attacked again replaces its entry), and each run gets its page
    ``benchmarks/results/mentor_attacks/<run name>/``.

    :param argv: arguments (default: sys.argv).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a drqv2/mentor run on a pixel env")
    parser.add_argument("--episodes", type=int, default=None, help="evaluation episodes")
    args = parser.parse_args(argv)
    run = args.run.resolve()
    rows = attack_rows(run, args.episodes, RESULTS / NAME / run.name)
    print(f"clean: {rows['clean']}")
    for name, row in rows["attacks"].items():
        cells = "  ".join(f"{k} {v:+.4g}" for k, v in row.items())
        print(f"{name:24} {cells}")
    with results_lock():
        figures = {**read_figures(NAME), run.name: rows}
        print(f"wrote {write_result(NAME, figures, {'attacks': ATTACKS})}")


if __name__ == "__main__":
    main()
