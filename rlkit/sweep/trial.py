"""One trial of a sweep: train an rlkit run directory, evaluate it under attack, report.

The same function runs a trial in a Ray worker and in the sequential fallback; only the
reporter differs. Everything a worker needs travels in a :class:`TrialContext` (the base config
as a mapping, the resolved attack config), so workers on other machines need rlkit and the sweep
directory (a shared filesystem), not the config files.

A trial's run directory is a normal rlkit run directory plus small bookkeeping files:
``sweep_trial.json`` (name, seed, values), ``sweep_stopped.json`` (stopped early by the
scheduler, written by the driver), ``sweep_error.json`` (the last failure) and, under PBT,
``pbt.jsonl`` (one line per restart PBT gave the trial: a checkpoint taken over from another
trial, or its own checkpoint with mutated values).
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rlkit.config import AttackConfig, ExperimentConfig, dump_config, load_config
from rlkit.io import atomic_write_json, atomic_write_text
from rlkit.rundir import RunDir
from rlkit.sweep.spec import Sweep, TrialSpec, trial_overrides

TRIAL_FILE = "sweep_trial.json"
STOPPED_FILE = "sweep_stopped.json"
ERROR_FILE = "sweep_error.json"
PBT_LOG = "pbt.jsonl"
SOURCE_FILE = "source.json"
LOCK_FILE = ".sweep.lock"
LOCK_TIMEOUT_S = 120.0


class Reporter(Protocol):
    """Where a trial's results go (Ray Tune, or nowhere in the sequential fallback)."""

    def report(self, metrics: dict[str, float], checkpoint: Path | None = None) -> None:
        """Report ``metrics`` (and a checkpoint folder, for PBT).

        :param metrics: name -> value, with ``step``.
        :param checkpoint: a folder the reporter may copy, or None.
        """
        ...


class NullReporter:
    """Drops every report (the sequential fallback has no scheduler)."""

    def report(self, metrics: dict[str, float], checkpoint: Path | None = None) -> None:
        """Ignore the report.

        :param metrics: name -> value.
        :param checkpoint: ignored.
        """


@dataclass
class TrialContext:
    """What every trial of a sweep shares (plain data: it is sent to Ray workers).

    :param base_raw: the base config mapping (``extends`` resolved).
    :param base_source: the base config's path, for messages.
    :param overrides: the sweep's overrides of every trial.
    :param trials_dir: ``<sweep dir>/trials``.
    :param metric: the metric reported to the scheduler.
    :param threads: torch threads of a trial.
    :param attack: the resolved attack config (JSON form), or None.
    :param attack_stem: folder name of the attack results (``RUN/attacks/<stem>``).
    :param attack_episodes: episodes per (attack, budget), or None.
    :param pbt: report checkpoints with intermediate results (population based training).
    :param scheduler: the scheduler's name (for the bookkeeping files).
    :param search_seed: the seed of trials proposed by a search algorithm.
    """

    base_raw: dict[str, Any]
    base_source: str
    overrides: list[str]
    trials_dir: str
    metric: str
    threads: int = 1
    attack: dict[str, Any] | None = None
    attack_stem: str | None = None
    attack_episodes: int | None = None
    pbt: bool = False
    scheduler: str = "fifo"
    search_seed: int = 0

    @classmethod
    def from_sweep(cls, sweep: Sweep) -> TrialContext:
        """The context of a validated sweep.

        :param sweep: the sweep.
        """
        config = sweep.config
        return cls(
            base_raw=sweep.base_raw,
            base_source=str(sweep.base_path),
            overrides=list(config.overrides),
            trials_dir=str(sweep.trials_dir),
            metric=config.metric,
            threads=config.trial.threads,
            attack=sweep.attack.model_dump(mode="json") if sweep.attack else None,
            attack_stem=sweep.attack_stem,
            attack_episodes=config.attack.episodes if config.attack else None,
            pbt=config.scheduler.name == "pbt",
            scheduler=config.scheduler.name,
            search_seed=config.seeds[0],
        )

    def run_dir(self, spec: TrialSpec) -> Path:
        """The trial's run directory.

        :param spec: the trial.
        """
        return Path(self.trials_dir) / spec.name

    def trial_config(self, spec: TrialSpec) -> ExperimentConfig:
        """The trial's validated config: base + overrides + values + seed + run.dir.

        :param spec: the trial.
        """
        overrides = trial_overrides(self.overrides, spec, self.trials_dir)
        return load_config(self.base_source, overrides, data=self.base_raw)


# ---------------------------------------------------------------------------------------------
# the state of a run directory


def final_step(run_dir: Path) -> int | None:
    """The step of the final model when both ``final/`` and ``eval.json`` are written.

    :param run_dir: the trial's run directory.
    """
    run = RunDir(run_dir)
    try:
        meta = json.loads((run.final / "meta.json").read_text())
        json.loads(run.eval_path.read_text())
    except (OSError, ValueError):
        return None
    return int(meta.get("step", 0))


def attack_done(run_dir: Path, stem: str | None) -> bool:
    """True when the attack stage wrote its report (``report.md`` is written last).

    :param run_dir: the trial's run directory.
    :param stem: the attack results folder name, or None (no attack stage).
    """
    return stem is None or (run_dir / "attacks" / stem / "report.md").is_file()


def is_complete(run_dir: Path, total_steps: int, attack_stem: str | None) -> bool:
    """A trial is complete when its final model covers ``total_steps`` and its attack stage (if
    any) is written; a complete trial is never run again.

    :param run_dir: the trial's run directory.
    :param total_steps: the trial config's ``train.total_steps``.
    :param attack_stem: the attack results folder name, or None.
    """
    step = final_step(run_dir)
    return step is not None and step >= total_steps and attack_done(run_dir, attack_stem)


def is_stopped(run_dir: Path) -> bool:
    """True when the scheduler stopped the trial early (it is not run again).

    :param run_dir: the trial's run directory.
    """
    return (run_dir / STOPPED_FILE).is_file()


# ---------------------------------------------------------------------------------------------
# results of a trial, read from its run directory


def _last_values(path: Path) -> tuple[dict[str, float], int | None]:
    """The last value of every metrics.csv column, and the last step."""
    if not path.is_file():
        return {}, None
    last: dict[str, float] = {}
    step = None
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key is None or value in (None, ""):
                    continue
                try:
                    number = float(value)
                except ValueError:
                    continue
                if key == "step":
                    step = int(number)
                else:
                    last[key] = number
    return last, step


def metric_curve(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) of every metrics.csv row that has ``metric``.

    :param run_dir: the trial's run directory.
    :param metric: the column.
    """
    path = RunDir(run_dir).metrics_path
    if not path.is_file():
        return []
    points = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            value = row.get(metric)
            if value not in (None, "") and row.get("step") not in (None, ""):
                try:
                    points.append((int(float(row["step"])), float(value)))
                except ValueError:
                    continue
    return points


def attack_metrics(run_dir: Path, stem: str) -> dict[str, float]:
    """``attack/natural`` (clean return of the attack evaluation), ``attack/NAME@EPS`` (return
    under each attack) and ``attack/worst@EPS`` (the lowest return over attacks at each budget).

    :param run_dir: the trial's run directory.
    :param stem: the attack results folder name.
    """
    path = run_dir / "attacks" / stem / "results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    from rlkit.attacks.findings import worst_cases

    out = {"attack/natural": float(data["clean"]["return"])}
    for row in data.get("rows", []):
        out[f"attack/{row['attack']}@{float(row['eps']):g}"] = float(row["return"])
    out.update({f"attack/worst@{c['eps']:g}": c["worst"] for c in worst_cases(data)})
    return out


def trial_metrics(run_dir: Path, attack_stem: str | None = None) -> dict[str, float]:
    """Everything known about a trial, flat: the last value of each metrics.csv column, the
    final evaluation (``final/return_mean``, ``final/return_std``, ``final/<kpi>``), the attack
    stage (:func:`attack_metrics`) and ``step`` (the final step, else the last logged one).

    Without periodic evaluations (``train.eval_every: 0``), ``eval/X`` is the final one's X.

    :param run_dir: the trial's run directory.
    :param attack_stem: the attack results folder name, or None.
    """
    run = RunDir(run_dir)
    metrics, step = _last_values(run.metrics_path)
    try:
        final = json.loads(run.eval_path.read_text())
    except (OSError, ValueError):
        final = None
    if final is not None:
        summary = {
            "return_mean": final.get("return_mean"),
            "return_std": final.get("return_std"),
            "length_mean": final.get("length_mean"),
            **(final.get("kpis") or {}),
        }
        periodic = any(k.startswith("eval/") for k in metrics)
        for key, value in summary.items():
            if isinstance(value, int | float):
                metrics[f"final/{key}"] = float(value)
                if not periodic:  # no periodic evaluation: eval/X is the final one
                    metrics[f"eval/{key}"] = float(value)
        step = final.get("step", step)
    if attack_stem is not None:
        metrics.update(attack_metrics(run_dir, attack_stem))
    if step is not None:
        metrics["step"] = float(step)
    return metrics


# ---------------------------------------------------------------------------------------------
# reporting from inside the training loop


class ReportSink:
    """A metric sink that reports every row holding the sweep's metric to the scheduler.

    The reported result is the latest value of every metric so far plus ``step``. Rows at or
    after ``total_steps`` are left to the trial's final report (the scheduler must not stop a
    trial between its last evaluation and its final model). With ``export`` (PBT) a result is
    held back until a checkpoint at or after its step exists, and reported with that checkpoint.

    :param reporter: where reports go.
    :param metric: the sweep's metric.
    :param total_steps: the trial's ``train.total_steps``.
    :param export: ``min_step -> folder`` exporting the newest checkpoint at or after
        ``min_step`` (None while there is none), or None.
    """

    def __init__(
        self,
        reporter: Reporter,
        metric: str,
        total_steps: int,
        export: Any = None,
    ) -> None:
        self.reporter, self.metric, self.total_steps, self.export = (
            reporter,
            metric,
            total_steps,
            export,
        )
        self.latest: dict[str, float] = {}
        self.pending: tuple[int, dict[str, float]] | None = None
        self.reports = 0

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Remember the values; report when the row has the metric.

        :param step: env steps so far.
        :param metrics: name -> value.
        """
        self.latest.update(metrics)
        self._flush()
        if self.metric not in metrics or step >= self.total_steps:
            return
        row = {**self.latest, "step": float(step)}
        if self.export is None:
            self.reports += 1
            self.reporter.report(row)
        else:
            self.pending = (step, row)
            self._flush()

    def _flush(self) -> None:
        if self.pending is None or self.export is None:
            return
        step, row = self.pending
        folder = self.export(step)
        if folder is None:
            return
        self.pending = None
        try:
            self.reports += 1
            self.reporter.report(row, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Report a held-back result if its checkpoint has appeared."""
        self._flush()


def export_checkpoint(run_dir: Path, min_step: int, spec: TrialSpec) -> Path | None:
    """Copy the newest checkpoint at or after ``min_step`` (and the replay chunks it may use)
    into a temporary folder, with ``source.json`` naming the trial, step and values.

    :param run_dir: the trial's run directory.
    :param min_step: the earliest acceptable checkpoint step.
    :param spec: the trial.
    :return: the folder (the caller removes it), or None when there is no such checkpoint.
    """
    run = RunDir(run_dir)
    found = [d for d in run.checkpoint_dirs() if int(d.name.split("_")[1]) >= min_step]
    if not found:
        return None
    folder = found[-1]
    tmp = Path(tempfile.mkdtemp(prefix="rlkit-pbt-"))
    shutil.copytree(folder, tmp / "checkpoints" / folder.name)
    if run.replay_store.is_dir():
        shutil.copytree(run.replay_store, tmp / "replay", ignore=shutil.ignore_patterns(".*"))
    step = int(folder.name.split("_")[1])
    atomic_write_json(tmp / SOURCE_FILE, {"trial": spec.name, "step": step, "params": spec.params})
    return tmp


def adopt_checkpoint(
    folder: Path, run_dir: Path, spec: TrialSpec, config: ExperimentConfig
) -> bool:
    """Start a trial from a checkpoint another trial exported (PBT's exploit step).

    The trial's checkpoints, replay, final model and evaluation are replaced by the donor's
    checkpoint; ``config.yaml`` is rewritten with the trial's (mutated) config, so the run
    resumes from the donor's state with the new values. Its own checkpoint is left alone.

    :param folder: the folder :func:`export_checkpoint` wrote (as restored by Tune).
    :param run_dir: the trial's run directory.
    :param spec: the trial (with its current values).
    :param config: the trial's config.
    :return: True when the donor's checkpoint was taken over.
    """
    try:
        source = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return False
    run = RunDir(run_dir)
    own_steps = {int(d.name.split("_")[1]) for d in run.checkpoint_dirs()}
    if source.get("trial") == spec.name and int(source["step"]) in own_steps:
        # its own checkpoint: rlkit resumes by itself, with the (possibly mutated) config
        atomic_write_text(run.config_path, dump_config(config))
        _log_restart(run_dir, source, spec)
        return False
    for name in ("checkpoints", "replay", "final"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in ("eval.json", STOPPED_FILE):
        (run_dir / name).unlink(missing_ok=True)
    shutil.copytree(folder / "checkpoints", run.checkpoints)
    if (folder / "replay").is_dir():
        shutil.copytree(folder / "replay", run.replay_store)
    atomic_write_text(run.config_path, dump_config(config))
    _log_restart(run_dir, source, spec)
    return True


def _log_restart(run_dir: Path, source: dict[str, Any], spec: TrialSpec) -> None:
    """Append the restart to ``pbt.jsonl``: the checkpoint's trial and step, and the values the
    trial goes on with (so the log's last line always matches ``config.yaml``)."""
    line = {"step": source["step"], "from": source.get("trial"), "params": spec.params}
    with (run_dir / PBT_LOG).open("a") as handle:
        handle.write(json.dumps(line) + "\n")


# ---------------------------------------------------------------------------------------------
# running a trial


@contextmanager
def trial_lock(run_dir: Path, name: str, timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``RUN/.sweep.lock`` while a trial runs, so that two processes never train the same
    run directory (a driver killed a moment ago may leave a worker that is still stopping).

    The lock is an ``flock``: the system releases it when its process dies.

    :param run_dir: the trial's run directory.
    :param name: the trial's name, for the message.
    :param timeout: seconds to wait for another holder to finish.
    :raises RuntimeError: still held by another process after ``timeout``.
    """
    import fcntl

    path = run_dir / LOCK_FILE
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"trial {name} is running in another process ({path} is locked)"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def run_attack_stage(run_dir: Path, context: TrialContext) -> None:
    """Evaluate the trained trial under the sweep's attacks, as ``rlkit evaluate RUN --attack``
    does: ``RUN/attacks/<stem>/`` (results.csv, results.json, report.md, plots).

    :param run_dir: the trial's run directory.
    :param context: the sweep's context (with an attack config).
    """
    from rlkit.attacks.evaluation import evaluate_attacks
    from rlkit.attacks.report import write_report
    from rlkit.evaluation import EVAL_SEED_OFFSET
    from rlkit.loading import load_run

    assert context.attack is not None and context.attack_stem is not None
    attack = AttackConfig.model_validate(context.attack)
    loaded = load_run(run_dir)
    results = evaluate_attacks(
        loaded.make_env,
        loaded.view,
        attack,
        loaded.seed + EVAL_SEED_OFFSET,
        context.attack_episodes,
        progress=False,
    )
    out = run_dir / "attacks" / context.attack_stem
    write_report(
        results,
        out,
        f"Attacks on {run_dir.name}",
        {"source": str(run_dir), "attack_config": attack.model_dump(mode="json")},
        attack.plot_features,
    )


def execute_trial(
    context: TrialContext,
    spec: TrialSpec,
    reporter: Reporter,
    checkpoint: Path | None = None,
) -> dict[str, float]:
    """Run one trial to its end (or until the scheduler stops it) and report its final result.

    A trial whose run directory is already complete is not trained again: its stored result is
    reported. A partly trained one resumes from its newest checkpoint (rlkit's own resume).

    :param context: the sweep's context.
    :param spec: the trial.
    :param reporter: where intermediate and final results go.
    :param checkpoint: a checkpoint Tune handed the trial (PBT), or None.
    :return: the final result (:func:`trial_metrics`).
    """
    run_dir = context.run_dir(spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    with trial_lock(run_dir, spec.name):
        return _execute(context, spec, reporter, checkpoint, run_dir)


def _execute(
    context: TrialContext,
    spec: TrialSpec,
    reporter: Reporter,
    checkpoint: Path | None,
    run_dir: Path,
) -> dict[str, float]:
    import torch

    from rlkit.train import train

    atomic_write_json(run_dir / TRIAL_FILE, spec.to_dict())
    (run_dir / ERROR_FILE).unlink(missing_ok=True)
    config = context.trial_config(spec)
    if checkpoint is not None:
        adopt_checkpoint(checkpoint, run_dir, spec, config)
    total = config.train.total_steps
    threads = torch.get_num_threads()
    torch.set_num_threads(context.threads)
    try:
        step = final_step(run_dir)
        if step is None or step < total:
            export = None
            if context.pbt:

                def export(min_step: int) -> Path | None:
                    return export_checkpoint(run_dir, min_step, spec)

            sink = ReportSink(reporter, context.metric, total, export)
            train(None, config=config, sinks=[sink])
        if not attack_done(run_dir, context.attack_stem):
            run_attack_stage(run_dir, context)
    finally:
        torch.set_num_threads(threads)
    result = trial_metrics(run_dir, context.attack_stem)
    result.setdefault("step", float(total))
    reporter.report(result)
    return result
