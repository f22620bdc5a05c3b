"""``rlkit train``: prepare (or resume) a run directory and hand it to the agent's loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rlkit.config import ConfigError, ExperimentConfig, dump_config, load_config, yaml_load
from rlkit.evaluation import EVAL_SEED_OFFSET, evaluate
from rlkit.registry import AGENTS
from rlkit.rundir import MetricsLog, RunDir

RESUMABLE_SECTIONS = ("train", "eval", "run", "attack")


def default_run_dir(config_path: str | Path | None) -> Path:
    """``runs/<config stem>`` for a config file."""
    return Path("runs") / (Path(config_path).stem if config_path else "run")


def prepare_run(config: ExperimentConfig, run_path: Path, fresh: bool) -> tuple[RunDir, Path | None]:
    """Create the run directory or find the checkpoint to resume from.

    :param config: the resolved config.
    :param run_path: the run directory.
    :param fresh: move an existing run aside and start over.
    :return: the run and the checkpoint to resume from (None for a new run).
    :raises ConfigError: when an existing run was made with a different env/agent/seed.
    """
    run = RunDir(run_path)
    if fresh:
        run.move_aside()
    resume = None
    if run.config_path.is_file():
        try:  # compare as validated configs, so fields added since then take their defaults
            previous = ExperimentConfig.model_validate(yaml_load(run.config_path.read_text()) or {}).model_dump(mode="json")
        except ValueError:
            previous = {}
        current = config.model_dump(mode="json")
        changed = [k for k in current if k not in RESUMABLE_SECTIONS and previous.get(k) != current[k]]
        if changed:
            raise ConfigError(
                f"{run.path}: exists with a different {', '.join(changed)}; "
                "use --fresh to start over (the old run is moved aside) or choose another run.dir"
            )
        resume = run.latest_checkpoint()
    run.create(dump_config(config))
    return run, resume


@dataclass
class TrainContext:
    """What a training loop needs besides the agent: run, metrics, schedules and progress.

    :param config: the resolved config.
    :param run: the run directory.
    :param log: metrics writer.
    """

    config: ExperimentConfig
    run: RunDir
    log: MetricsLog
    start_step: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    last_eval: float | None = None
    _progress: Progress | None = None
    _task: Any = None
    _t0: float = field(default_factory=time.perf_counter)

    def start(self, step: int) -> None:
        """Begin (or resume) at ``step``: schedules and the progress bar."""
        train = self.config.train
        self.start_step = step
        self.next_eval = _next_multiple(step, train.eval_every)
        self.next_checkpoint = _next_multiple(step, train.checkpoint_every)
        self._t0 = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} steps/s"),
            TextColumn("eval {task.fields[eval]}"),
            TimeRemainingColumn(),
            disable=not train.progress,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=train.total_steps, completed=step, speed="-", eval="-")

    def steps_per_second(self, step: int) -> float:
        """Training speed since :meth:`start`."""
        return (step - self.start_step) / max(time.perf_counter() - self._t0, 1e-9)

    def tick(self, step: int, evaluate_fn: Callable[[], dict[str, Any]], checkpoint_fn: Callable[[int], None]) -> None:
        """Periodic evaluation and checkpoints when due, then the progress bar.

        Call it where the agent's state is consistent (after the step's update).

        :param step: environment steps so far.
        :param evaluate_fn: returns an evaluation summary (``return_mean``, ...).
        :param checkpoint_fn: writes a checkpoint at ``step``.
        """
        train = self.config.train
        if self.next_eval and step >= self.next_eval:
            result = evaluate_fn()
            self.last_eval = result["return_mean"]
            metrics = {"eval/return_mean": result["return_mean"], "eval/return_std": result["return_std"]}
            metrics.update({f"eval/{k}": v for k, v in result["kpis"].items()})
            self.log.log(step, metrics)
            self.next_eval = _next_multiple(step, train.eval_every)
        if self.next_checkpoint and step >= self.next_checkpoint:
            checkpoint_fn(step)
            self.next_checkpoint = _next_multiple(step, train.checkpoint_every)
        self.show(step)

    def show(self, step: int) -> None:
        """Update the progress bar (steps, steps/s, last evaluation return, ETA)."""
        if self._progress is not None:
            eval_text = f"{self.last_eval:.1f}" if self.last_eval is not None else "-"
            self._progress.update(self._task, completed=step, speed=f"{self.steps_per_second(step):.0f}", eval=eval_text)

    def close(self) -> None:
        """Stop the progress bar and flush metrics."""
        if self._progress is not None:
            self._progress.stop()
        self.log.close()


def _next_multiple(step: int, every: int) -> int:
    return 0 if every <= 0 else (step // every + 1) * every


def periodic_eval(config: ExperimentConfig, act: Callable, env_factory: Callable) -> Callable[[], dict[str, Any]]:
    """An evaluation closure over a lazily built eval env (same seeds every time)."""
    holder: dict[str, Any] = {}

    def run() -> dict[str, Any]:
        if "env" not in holder:
            holder["env"] = env_factory()
        return evaluate(holder["env"], act, config.train.eval_episodes, config.seed + EVAL_SEED_OFFSET)

    return run


def write_final(run: RunDir, config: ExperimentConfig, save_into: Callable[[Path], None], meta: dict[str, Any], act: Callable, env_factory: Callable) -> dict[str, Any]:
    """Write ``final/`` atomically (via a temporary folder) and the clean evaluation ``eval.json``.

    :param run: the run directory.
    :param config: the resolved config.
    :param save_into: writes the model files into the folder it is given.
    :param meta: JSON facts for ``final/meta.json`` (kind, step, ...).
    :param act: batch policy for the evaluation.
    :param env_factory: builds the evaluation env.
    """
    import shutil

    from rlkit.io import atomic_write_json

    tmp = run.path / ".final.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_into(tmp)
    atomic_write_json(tmp / "meta.json", {"schema": 1, **meta})
    if run.final.exists():
        shutil.rmtree(run.final)
    tmp.rename(run.final)
    env = env_factory()
    result = evaluate(env, act, config.eval.episodes, config.seed + EVAL_SEED_OFFSET)
    env.close()
    atomic_write_json(run.eval_path, {"step": meta.get("step"), **result})
    return result


def preflight(config: ExperimentConfig, source: str) -> None:
    """Build the env (and a native agent) once before touching the run directory.

    Turns what only shows when things are built (bad gymnasium kwargs, an agent that cannot
    handle the action space, bad agent arguments) into a ConfigError.

    :param config: the validated config.
    :param source: where it came from, for messages.
    """
    from rlkit.envs import make_env

    init = config.agent.init_from
    if init is not None and not (Path(init) / "final" / "meta.json").is_file():
        raise ConfigError(f"{source}: key 'agent.init_from': {init!r} is not a run directory with a final model")
    try:
        env = make_env(config.env)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: key 'env': cannot build env {config.env.id!r}: {err}") from None
    entry = AGENTS.get(config.agent.name)
    extra = entry.extra or {}
    kind = type(env.action_space).__name__
    if kind not in extra.get("action_spaces", (kind,)):
        env.close()
        raise ConfigError(
            f"{source}: key 'agent.name': {config.agent.name!r} cannot act in a {kind} action space "
            f"(allowed: {', '.join(extra['action_spaces'])}); use another agent or env.discrete_bins"
        )
    if extra.get("backend") == "native":
        from rlkit.loops.online import build_agent

        try:
            build_agent(config, env.observation_space, env.action_space)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{source}: key 'agent.kwargs': {err}") from None
        finally:
            env.close()
    else:
        env.close()


def train(config_path: str | Path | None, overrides: list[str] | None = None, fresh: bool = False, config: ExperimentConfig | None = None) -> RunDir:
    """Train the experiment described by a config file (resuming its run if it exists).

    :param config_path: the YAML config.
    :param overrides: ``key.sub=value`` overrides.
    :param fresh: start over, moving an existing run directory aside.
    :param config: an already loaded config (instead of reading ``config_path``).
    :return: the run directory, with ``final/`` and ``eval.json`` written.
    """
    config = config or load_config(config_path, overrides)
    preflight(config, str(config_path or "config"))
    run_path = Path(config.run.dir) if config.run.dir else default_run_dir(config_path)
    if config.run.dir is None:
        config = config.model_copy(update={"run": config.run.model_copy(update={"dir": str(run_path)})})
    run, resume = prepare_run(config, run_path, fresh)
    backend = (AGENTS.get(config.agent.name).extra or {}).get("backend", "native")
    if backend == "sb3":
        from rlkit.loops.sb3 import train_sb3 as loop
    else:
        from rlkit.loops.online import train_online as loop
    loop(config, run, resume)
    return run
