"""Running a sweep's trials on Ray Tune: a local Ray instance or an existing cluster.

Planned trials (grid and random samples) become one ``tune.grid_search`` over their
:class:`~rlkit.sweep.spec.TrialSpec` mappings; only the unfinished ones are handed to Tune, so a
re-run never starts a finished trial. Trials proposed by a search algorithm (Optuna) are named
after their Tune trial id; their experiment is resumed with ``Tuner.restore``, which keeps the
searcher's state and does not restart finished trials.

Intermediate results reach Tune through :class:`~rlkit.sweep.trial.ReportSink` (one report per
periodic evaluation, ``time_attr`` = ``step``, the env steps), so ASHA and PBT decide on what the
training loop measures. A trial the scheduler stops leaves a normal, resumable run directory; the
driver marks it ``sweep_stopped.json`` so that re-running the sweep does not restart it.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.config import ConfigError
from rlkit.io import atomic_write_json
from rlkit.sweep.spec import (
    AshaScheduler,
    Distribution,
    PBTScheduler,
    Sweep,
    TrialSpec,
    search_trial,
)
from rlkit.sweep.trial import (
    ERROR_FILE,
    STOPPED_FILE,
    TrialContext,
    execute_trial,
    is_complete,
)

INSTALL_HINT = "install it with: pip install 'rlkit[ray]' (`make setup` installs it)"
GRID_EXPERIMENT = "grid"
SEARCH_EXPERIMENT = "search"
#: Tune checkpoints kept per PBT trial (fewer than 3 can vanish before another trial copies them)
PBT_KEEP = 4


def ray_available() -> bool:
    """True when Ray Tune can be imported."""
    try:
        return importlib.util.find_spec("ray") is not None and (
            importlib.util.find_spec("ray.tune") is not None
        )
    except (ImportError, ValueError):
        return False


@dataclass
class RayOutcome:
    """What Tune reported back.

    :param errors: trial name -> where its error is written.
    :param trials: the trials Tune ran (names), in order.
    """

    errors: dict[str, str] = field(default_factory=dict)
    trials: list[str] = field(default_factory=list)


class _TuneReporter:
    """Reports to Ray Tune (``ray.tune.report``; checkpoints as ``ray.tune.Checkpoint``)."""

    def report(self, metrics: dict[str, float], checkpoint: Path | None = None) -> None:
        from ray import tune

        clean = {k: v for k, v in metrics.items() if not math.isnan(v)}
        if checkpoint is None:
            tune.report(clean)
        else:
            tune.report(clean, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))


def _spec_of(
    config: dict[str, Any],
    name: str,
    plan: dict[str, TrialSpec],
    context: TrialContext,
    trial_id: str,
) -> TrialSpec:
    """The trial a Tune trial runs.

    A planned trial is found by its Tune name (which never changes), with the values of its
    current config: PBT's exploit step copies the whole config of a better trial (its name and
    seed too) before mutating it, so only the values are taken from the config. A trial proposed
    by a search algorithm is named after its Tune trial id.
    """
    if "trial" in config:
        planned = plan[name]
        params = dict(config["trial"].get("params", planned.params))
        return TrialSpec(planned.name, planned.seed, params, planned.group)
    return search_trial(dict(config["params"]), context.search_seed, trial_id)


def _trainable(context: TrialContext, plan: dict[str, TrialSpec]) -> Any:
    """The function trainable of a sweep (a closure over its context and plan)."""

    def rlkit_trial(config: dict[str, Any]) -> None:
        from ray import tune

        tune_context = tune.get_context()
        spec = _spec_of(
            config, tune_context.get_trial_name(), plan, context, tune_context.get_trial_id()
        )
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            execute_trial(context, spec, _TuneReporter())
            return
        with checkpoint.as_directory() as folder:
            execute_trial(context, spec, _TuneReporter(), Path(folder))

    return rlkit_trial


def _domain(dist: Distribution) -> Any:
    from ray import tune

    if dist.choice is not None:
        return tune.choice(dist.choice)
    if dist.randint is not None:
        return tune.randint(*dist.randint)
    if dist.loguniform is not None:
        return tune.loguniform(*dist.loguniform)
    assert dist.uniform is not None
    return tune.uniform(*dist.uniform)


def _scheduler(sweep: Sweep) -> Any:
    """The Tune scheduler of the sweep file (None: FIFO)."""
    scheduler = sweep.config.scheduler
    if isinstance(scheduler, AshaScheduler):
        from ray.tune.schedulers import ASHAScheduler

        return ASHAScheduler(
            time_attr="step",
            max_t=scheduler.max_t or sweep.total_steps,
            grace_period=scheduler.grace_period,
            reduction_factor=scheduler.reduction_factor,
            brackets=scheduler.brackets,
        )
    if isinstance(scheduler, PBTScheduler):
        from ray.tune.schedulers import PopulationBasedTraining

        return PopulationBasedTraining(
            time_attr="step",
            perturbation_interval=scheduler.perturbation_interval,
            hyperparam_mutations={
                "trial": {"params": {k: _domain(d) for k, d in scheduler.mutations.items()}}
            },
            quantile_fraction=scheduler.quantile_fraction,
            resample_probability=scheduler.resample_probability,
            synch=scheduler.synch,
        )
    return None


class _Bookkeeping:
    """Tune callback (driver side): marks trials the scheduler stopped, and failed ones."""

    def __init__(self, context: TrialContext, total_steps: int, plan: dict[str, TrialSpec]) -> None:
        self.context, self.total_steps, self.plan = context, total_steps, plan
        self.errors: dict[str, str] = {}
        self.seen: list[str] = []

    def _run_dir(self, trial: Any) -> tuple[TrialSpec, Path]:
        spec = _spec_of(trial.config, str(trial), self.plan, self.context, trial.trial_id)
        return spec, self.context.run_dir(spec)

    def on_trial_start(self, trial: Any) -> None:
        spec, _ = self._run_dir(trial)
        if spec.name not in self.seen:
            self.seen.append(spec.name)

    def on_trial_complete(self, trial: Any) -> None:
        spec, run_dir = self._run_dir(trial)
        if is_complete(run_dir, self.total_steps, self.context.attack_stem):
            return
        last = dict(trial.last_result or {})
        atomic_write_json(
            run_dir / STOPPED_FILE,
            {
                "scheduler": self.context.scheduler,
                "step": last.get("step"),
                self.context.metric: last.get(self.context.metric),
            },
        )

    def on_trial_error(self, trial: Any) -> None:
        spec, run_dir = self._run_dir(trial)
        where = str(trial.error_file or "")
        self.errors[spec.name] = where
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / ERROR_FILE, {"error_file": where})


def _callback(book: _Bookkeeping) -> Any:
    from ray import tune

    class SweepBookkeeping(tune.Callback):  # type: ignore[misc]
        def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any):
            book.on_trial_start(trial)

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **info: Any
        ) -> None:
            book.on_trial_complete(trial)

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any):
            book.on_trial_error(trial)

    return SweepBookkeeping()


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to Ray: an existing cluster at ``address`` (``auto``, ``ray://host:port``), or a
    new local instance; nothing when Ray is already initialised in this process.

    :param address: the cluster address, or None for a local instance.
    :param num_cpus: CPUs of a local instance (default: all).
    :return: True when this call started the connection (the caller shuts it down).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address is None and num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as err:
        raise ConfigError(
            f"--address {address}: cannot connect to a Ray cluster ({err}); start one with "
            "`ray start --head` or leave --address out for a local Ray"
        ) from None
    return True


def run_on_ray(
    sweep: Sweep,
    todo: list[TrialSpec],
    address: str | None = None,
    max_concurrent: int | None = None,
    verbose: int = 1,
    num_cpus: int | None = None,
) -> RayOutcome:
    """Run the sweep's unfinished trials (or its search) with Ray Tune.

    :param sweep: the validated sweep.
    :param todo: the planned trials still to run (ignored with a search algorithm).
    :param address: Ray cluster address, or None for a local instance.
    :param max_concurrent: trials at once (default: the sweep file's, else what CPUs allow).
    :param verbose: Tune's verbosity (0 silent, 1 status, 2 trial results).
    :param num_cpus: CPUs of a local Ray instance (default: all).
    """
    from ray import tune

    context = TrialContext.from_sweep(sweep)
    config = sweep.config
    started = init_ray(address, num_cpus)
    try:
        resources = {"cpu": config.trial.cpus, "gpu": config.trial.gpus}
        plan = {t.name: t for t in todo}
        trainable = tune.with_resources(_trainable(context, plan), resources)
        book = _Bookkeeping(context, sweep.total_steps, plan)
        storage = sweep.root / "tune"
        storage.mkdir(parents=True, exist_ok=True)
        concurrent = max_concurrent or config.max_concurrent

        def name_of(trial: Any) -> str:
            if "trial" in trial.config:
                return str(trial.config["trial"]["name"])
            return search_trial(trial.config["params"], context.search_seed, trial.trial_id).name

        run_config = tune.RunConfig(
            name=SEARCH_EXPERIMENT if sweep.uses_search else GRID_EXPERIMENT,
            storage_path=str(storage),
            verbose=verbose,
            callbacks=[_callback(book)],
            failure_config=tune.FailureConfig(max_failures=0),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=PBT_KEEP) if context.pbt else None,
        )
        tune_config = tune.TuneConfig(
            metric=config.metric,
            mode=config.mode,
            scheduler=_scheduler(sweep),
            max_concurrent_trials=concurrent,
            trial_name_creator=name_of,
            trial_dirname_creator=name_of,
            reuse_actors=True,
        )
        if sweep.uses_search:
            tuner = _search_tuner(sweep, trainable, tune_config, run_config, storage)
        else:
            if not todo:
                return RayOutcome()
            tune_config.num_samples = 1
            param_space = {"trial": tune.grid_search([t.to_dict() for t in todo])}
            tuner = tune.Tuner(
                trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
            )
        tuner.fit()
        return RayOutcome(errors=dict(book.errors), trials=list(book.seen))
    finally:
        if started:
            import ray

            ray.shutdown()


def _search_tuner(
    sweep: Sweep, trainable: Any, tune_config: Any, run_config: Any, storage: Path
) -> Any:
    """A Tuner proposing configurations with the sweep's search algorithm (restored when an
    earlier run of the same sweep left its experiment state)."""
    from ray import tune

    path = storage / SEARCH_EXPERIMENT
    if tune.Tuner.can_restore(str(path)):
        return tune.Tuner.restore(str(path), trainable=trainable, resume_errored=True)
    from ray.tune.search.optuna import OptunaSearch

    config = sweep.config
    tune_config.search_alg = OptunaSearch(seed=config.search.seed)
    tune_config.num_samples = config.num_samples
    param_space = {"params": {k: _domain(d) for k, d in config.samples.items()}}
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    )
