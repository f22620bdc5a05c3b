"""Running a sweep.

:func:`run_sweep` validates the sweep file (every trial config, before anything starts), runs
the trials that are not finished yet (on Ray Tune: a local instance, or a cluster given by
``address``; without Ray, one after another in this process), then reads every trial's run
directory and writes the sweep's tables (``results.csv``, ``aggregate.csv``, ``summary.md``,
``sweep.png``). Running the same command again resumes: finished trials (and trials the
scheduler stopped) are not run again, interrupted ones resume from their checkpoints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from rlkit.config import ConfigError
from rlkit.io import atomic_write_json, atomic_write_text
from rlkit.sweep.results import (
    GroupStats,
    TrialResult,
    aggregate,
    collect,
    print_results,
    trial_specs,
)
from rlkit.sweep.spec import Sweep, TrialSpec, load_sweep
from rlkit.sweep.trial import (
    ERROR_FILE,
    NullReporter,
    TrialContext,
    execute_trial,
    is_complete,
    is_stopped,
)


@dataclass
class SweepOutcome:
    """What a sweep did.

    :param sweep: the sweep.
    :param ran: names of the trials started by this call.
    :param skipped: names of the trials already finished (done or stopped) before it.
    :param results: every trial's result after it.
    :param groups: the aggregated results.
    :param summary: the path of ``summary.md``.
    :param backend: ``ray`` or ``sequential``.
    :param seconds: wall time of running the trials.
    :param interrupted: the run was interrupted (Ctrl-C); re-running resumes it.
    """

    sweep: Sweep
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    results: list[TrialResult] = field(default_factory=list)
    groups: list[GroupStats] = field(default_factory=list)
    summary: Path | None = None
    backend: str = "sequential"
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def unfinished(self) -> list[TrialResult]:
        """Trials neither done nor stopped (failed, interrupted, not started)."""
        return [r for r in self.results if r.status not in ("done", "stopped")]


def finished(sweep: Sweep, spec: TrialSpec) -> bool:
    """True when a trial needs no more work: complete, or stopped by the scheduler.

    :param sweep: the sweep.
    :param spec: the trial.
    """
    run_dir = sweep.trials_dir / spec.name
    return is_complete(run_dir, sweep.total_steps, sweep.attack_stem) or is_stopped(run_dir)


def _choose_backend(sweep: Sweep, address: str | None, sequential: bool, console: Console) -> str:
    from rlkit.sweep.ray_backend import INSTALL_HINT, ray_available

    source = str(sweep.path)
    if sequential:
        if address is not None:
            raise ConfigError("--sequential runs in this process: leave out --address")
        if sweep.needs_ray:
            what = f"scheduler {sweep.config.scheduler.name!r}"
            if sweep.uses_search:
                what = f"search {sweep.config.search.name!r}"
            raise ConfigError(f"{source}: {what} needs Ray Tune; leave out --sequential")
        return "sequential"
    if ray_available():
        if sweep.config.search.name == "optuna":
            try:
                import optuna  # noqa: F401
            except ImportError:
                raise ConfigError(
                    f"{source}: key 'search.name': 'optuna' needs Optuna; {INSTALL_HINT}"
                ) from None
        return "ray"
    if address is not None:
        raise ConfigError(f"--address {address}: Ray is not installed; {INSTALL_HINT}")
    if sweep.needs_ray:
        key = "search.name" if sweep.uses_search else "scheduler.name"
        raise ConfigError(
            f"{source}: key {key!r}: needs Ray Tune, which is not installed; {INSTALL_HINT} "
            "(without Ray only plain grid and random sweeps run, one trial after another)"
        )
    console.out(f"Ray is not installed ({INSTALL_HINT}); running the trials one after another here")
    return "sequential"


def run_sequential(sweep: Sweep, todo: list[TrialSpec], console: Console) -> list[str]:
    """Run trials one after another in this process (no Ray, no scheduler).

    A trial that fails is recorded (``sweep_error.json``) and the next one starts.

    :param sweep: the sweep.
    :param todo: the trials to run.
    :param console: for progress lines.
    :return: the names of the trials that failed.
    """
    context = TrialContext.from_sweep(sweep)
    failed = []
    for i, spec in enumerate(todo):
        console.out(f"[{i + 1}/{len(todo)}] trial {spec.name}")
        try:
            execute_trial(context, spec, NullReporter())
        except Exception as err:  # noqa: BLE001  one failed trial does not end the sweep
            failed.append(spec.name)
            console.out(f"  trial {spec.name} failed: {type(err).__name__}: {err}")
            atomic_write_json(
                context.run_dir(spec) / ERROR_FILE, {"error": f"{type(err).__name__}: {err}"}
            )
    return failed


def run_sweep(
    path: str | Path,
    address: str | None = None,
    max_concurrent: int | None = None,
    sequential: bool = False,
    console: Console | None = None,
    verbose: int = 1,
    num_cpus: int | None = None,
) -> SweepOutcome:
    """Validate a sweep file, run its unfinished trials, write and print its results.

    :param path: the sweep YAML.
    :param address: a Ray cluster (``auto``, ``ray://host:10001``); None: a local Ray.
    :param max_concurrent: trials at once (overrides the sweep file's ``max_concurrent``).
    :param sequential: run the trials one after another in this process, without Ray.
    :param console: where tables and progress go (default: stdout).
    :param verbose: Ray Tune's verbosity (0-3).
    :param num_cpus: CPUs of a local Ray instance (default: all).
    :return: what ran and the results.
    :raises ConfigError: a bad sweep file, base config or option (nothing has started).
    """
    console = console or Console()
    sweep = load_sweep(path)
    backend = _choose_backend(sweep, address, sequential, console)
    outcome = SweepOutcome(sweep, backend=backend)
    sweep.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep.root / "sweep.yaml", Path(path).read_text())
    if not sweep.uses_search:
        atomic_write_json(sweep.root / "plan.json", [t.to_dict() for t in sweep.trials])
    todo = [t for t in sweep.trials if not finished(sweep, t)]
    known = sweep.trials if not sweep.uses_search else trial_specs(sweep)
    outcome.skipped = [t.name for t in known if finished(sweep, t)]
    if sweep.uses_search:
        console.out(f"sweep {sweep.path}: {sweep.config.search.name} search, {backend}")
    else:
        console.out(
            f"sweep {sweep.path}: {len(sweep.trials)} trials, {len(outcome.skipped)} already "
            f"finished, {len(todo)} to run ({backend}); directory {sweep.root}"
        )
    start = time.perf_counter()
    interrupted = False
    try:
        if backend == "ray" and (todo or sweep.uses_search):
            from rlkit.sweep.ray_backend import run_on_ray

            ran = run_on_ray(sweep, todo, address, max_concurrent, verbose, num_cpus)
            outcome.ran = ran.trials
        elif todo:
            run_sequential(sweep, todo, console)
            outcome.ran = [t.name for t in todo]
    except KeyboardInterrupt:
        interrupted = outcome.interrupted = True
    outcome.seconds = time.perf_counter() - start
    outcome.results = collect(sweep)
    outcome.groups = aggregate(sweep, outcome.results)
    from rlkit.sweep.results import write_results

    outcome.summary = write_results(sweep, outcome.results, outcome.groups)
    print_results(sweep, outcome.results, outcome.groups, console)
    console.out(
        f"results: {sweep.root / 'results.csv'}, {sweep.root / 'aggregate.csv'}; "
        f"summary: {outcome.summary}"
    )
    left = outcome.unfinished
    if interrupted or left:
        console.out(
            f"{len(left)} trials not finished"
            + (" (interrupted)" if interrupted else "")
            + "; run the same command again to resume them"
        )
    return outcome


def sweep_command(
    path: str, address: str | None, max_concurrent: int | None, sequential: bool
) -> int:
    """``rlkit sweep``: run a sweep; exit status 0 when every trial finished, 130 when
    interrupted, else 1.

    :param path: the sweep YAML.
    :param address: ``--address``.
    :param max_concurrent: ``--max-concurrent``.
    :param sequential: ``--sequential``.
    """
    outcome = run_sweep(path, address, max_concurrent, sequential)
    if outcome.interrupted:
        return 130
    return 1 if outcome.unfinished else 0
