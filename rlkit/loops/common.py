"""The one training-loop skeleton: seeding, construction, resume (or ``init_from``), metrics,
periodic evaluation, checkpoints, the final model and its clean evaluation.

A loop is a subclass of :class:`TrainLoop` that says how to build its env and agent, how to save
and restore its own state, and how to advance training; everything else lives here. Each agent's
registry entry names its loop (``loop="online"``, ``"sb3"``, ...), looked up in
:data:`rlkit.registry.LOOPS`, so a new training regime is one small file plus one line in the
catalog.
"""

from __future__ import annotations

import pickle
import shutil
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rlkit.agent import Agent
from rlkit.config import ConfigError, ExperimentConfig
from rlkit.evaluation import EVAL_SEED_OFFSET, evaluate
from rlkit.io import atomic_write_json, load_torch, save_torch
from rlkit.metrics import MetricSink, MetricsLog
from rlkit.registry import AGENTS
from rlkit.rundir import CHECKPOINT_SCHEMA, CheckpointError, RunDir, read_meta
from rlkit.seeding import rng_state, seed_everything, set_rng_state

LOOP_STATE = "loop.pt"
#: what a damaged checkpoint raises while being read (torch, numpy, zip, json, our own checks)
READ_ERRORS = (
    CheckpointError,
    OSError,
    EOFError,
    RuntimeError,
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    pickle.UnpicklingError,
    zipfile.BadZipFile,
)


class Schedules:
    """Periodic evaluation and checkpoints, and the progress bar.

    :param config: the resolved config.
    :param log: the metrics log.
    """

    def __init__(self, config: ExperimentConfig, log: MetricsLog) -> None:
        self.config, self.log = config, log
        self.start_step = self.next_eval = self.next_checkpoint = 0
        self.last_eval: float | None = None
        self._progress: Progress | None = None
        self._task: Any = None
        self._t0 = time.perf_counter()

    def start(self, step: int) -> None:
        """Begin (or resume) at ``step``: schedules and the progress bar.

        :param step: env steps so far.
        """
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
        self._task = self._progress.add_task(
            "train", total=train.total_steps, completed=step, speed="-", eval="-"
        )

    def steps_per_second(self, step: int) -> float:
        """Training speed since :meth:`start`.

        :param step: env steps so far.
        """
        return (step - self.start_step) / max(time.perf_counter() - self._t0, 1e-9)

    def tick(
        self,
        step: int,
        evaluate_fn: Callable[[], dict[str, Any]],
        checkpoint_fn: Callable[[int], None],
    ) -> None:
        """Evaluate and checkpoint when due, then update the progress bar.

        Call it where the agent's state is consistent (after the step's update).

        :param step: env steps so far.
        :param evaluate_fn: returns an evaluation summary (``return_mean``, ...).
        :param checkpoint_fn: writes a checkpoint at ``step``.
        """
        train = self.config.train
        if self.next_eval and step >= self.next_eval:
            result = evaluate_fn()
            self.last_eval = result["return_mean"]
            metrics = {
                "eval/return_mean": result["return_mean"],
                "eval/return_std": result["return_std"],
            }
            metrics.update({f"eval/{k}": v for k, v in result["kpis"].items()})
            self.log.log(step, metrics)
            self.next_eval = _next_multiple(step, train.eval_every)
        if self.next_checkpoint and step >= self.next_checkpoint:
            checkpoint_fn(step)
            self.next_checkpoint = _next_multiple(step, train.checkpoint_every)
        self.show(step)

    def show(self, step: int) -> None:
        """Update the progress bar (steps, steps/s, last evaluation return, ETA).

        :param step: env steps so far.
        """
        if self._progress is not None:
            eval_text = f"{self.last_eval:.1f}" if self.last_eval is not None else "-"
            self._progress.update(
                self._task,
                completed=step,
                speed=f"{self.steps_per_second(step):.0f}",
                eval=eval_text,
            )

    def close(self) -> None:
        """Stop the progress bar."""
        if self._progress is not None:
            self._progress.stop()


def _next_multiple(step: int, every: int) -> int:
    return 0 if every <= 0 else (step // every + 1) * every


class TrainLoop:
    """Skeleton of every training loop; subclasses fill in the regime-specific parts.

    :param config: the resolved config.
    :param run: the run directory (created, config written).
    :param sinks: extra metric sinks (e.g. a sweep runner's reporter).
    """

    def __init__(
        self, config: ExperimentConfig, run: RunDir, sinks: Iterable[MetricSink] = ()
    ) -> None:
        self.config, self.run, self.extra_sinks = config, run, list(sinks)
        self.entry = AGENTS.get(config.agent.name)
        self.agent: Agent
        self.step = 0
        self.resumed_from: Path | None = None
        self._eval_env: gym.Env | None = None

    # --- what a loop provides ---------------------------------------------------------------

    def build(self) -> None:
        """Construct the training env(s), ``self.agent`` and any data source."""
        raise NotImplementedError

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write the loop's own resumable state into ``folder``; return JSON facts for meta.json.

        :param folder: the checkpoint folder (the agent has already saved itself there).
        """
        return {}

    def load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        """Restore :meth:`save_state` (the agent is already loaded).

        :param folder: the checkpoint folder.
        :param meta: its meta.json.
        """

    def train(self, schedules: Schedules) -> None:
        """Advance ``self.step`` to ``train.total_steps``, calling ``schedules.tick`` when the
        state is consistent.

        :param schedules: evaluation/checkpoint schedules.
        """
        raise NotImplementedError

    def save_final(self, folder: Path) -> None:
        """Write the final model into ``folder`` (default: the agent's own save).

        :param folder: the temporary final folder.
        """
        self.agent.save(folder)

    def close(self) -> None:
        """Release envs."""

    # --- the skeleton -----------------------------------------------------------------------

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The evaluation policy (greedy unless ``eval.deterministic`` is false).

        :param obs: a batch of observations.
        """
        return self.agent.act(obs, self.step, explore=not self.config.eval.deterministic)

    def make_eval_env(self) -> gym.Env:
        """A new evaluation env (``eval.env_kwargs`` applied)."""
        from rlkit.envs import make_env

        return make_env(self.config.env, self.config.eval.env_kwargs)

    def evaluate(self, episodes: int) -> dict[str, Any]:
        """Evaluate the current policy on fixed seeds.

        :param episodes: episodes to run.
        """
        if self._eval_env is None:
            self._eval_env = self.make_eval_env()
        return self.describe(
            evaluate(
                self._eval_env,
                self.act,
                episodes,
                self.config.seed + EVAL_SEED_OFFSET,
                self.video_path(),
            )
        )

    def video_path(self, name: str | None = None) -> Path | None:
        """Where this evaluation's video goes (``eval.video``), else None.

        :param name: file stem (default ``eval_<step>``; the final evaluation's is ``final``).
        """
        if not self.config.eval.video:
            return None
        return self.run.path / "videos" / (name or f"eval_{self.step}")

    def describe(self, result: dict[str, Any]) -> dict[str, Any]:
        """Add loop-specific figures to an evaluation summary (e.g. a normalised score).

        :param result: what :func:`rlkit.evaluation.evaluate` returned.
        """
        return result

    def checkpoint(self, step: int) -> None:
        """Write a checkpoint of everything at ``step`` (atomically) and prune old ones.

        :param step: env steps so far.
        """
        tmp = self.run.begin_checkpoint(step)
        self.agent.save(tmp)
        save_torch(tmp / LOOP_STATE, {"rng": rng_state(), "step": step})
        facts = self.save_state(tmp)
        self.run.commit_checkpoint(
            tmp,
            step,
            {"agent": self.config.agent.name, **facts},
            self.config.train.keep_checkpoints,
        )
        self.after_prune()

    def after_prune(self) -> None:
        """Called after old checkpoints were pruned (e.g. to drop unreferenced replay chunks)."""

    def resume(self) -> bool:
        """Restore the newest readable checkpoint; True when one was restored.

        A checkpoint that fails to load is renamed ``.damaged-step_*`` (kept, never deleted) with
        a warning, and the one before it is tried.

        :raises ConfigError: when checkpoints exist but none can be read.
        """
        tried = []
        for folder in reversed(self.run.checkpoint_dirs()):
            try:
                meta = read_meta(folder)
                self.agent.load(folder)
                loop_state = load_torch(folder / LOOP_STATE)
                self.load_state(folder, meta)
                set_rng_state(loop_state["rng"])
                self.step = int(loop_state["step"])
                self.resumed_from = folder
                return True
            except READ_ERRORS as err:
                tried.append(folder.name)
                aside = folder.with_name(f".damaged-{folder.name}")
                shutil.rmtree(aside, ignore_errors=True)
                folder.rename(aside)
                warnings.warn(
                    f"{folder}: cannot be read ({type(err).__name__}: {err}); moved to "
                    f"{aside.name}, trying the previous checkpoint",
                    stacklevel=2,
                )
        if tried:
            raise ConfigError(
                f"{self.run.path}: no readable checkpoint (damaged: {', '.join(tried)}, "
                "kept as .damaged-*); use --fresh to start over"
            )
        return False

    def init_from(self, source: str) -> None:
        """Start from another run's final policy (fine-tuning).

        :param source: the run directory, or a stable-baselines3 zip for an SB3 agent.
        """
        if source.endswith(".zip"):
            load_zip = getattr(self.agent, "load_zip_policy", None)
            if load_zip is None:
                raise ConfigError(
                    f"key 'agent.init_from': {source}: a model zip starts SB3 agents only"
                )
            try:
                load_zip(Path(source))
            except (OSError, ValueError, KeyError) as err:
                raise ConfigError(
                    f"key 'agent.init_from': {source} cannot be used ({err})"
                ) from None
            return
        folder = Path(source) / "final"
        try:
            read_meta(folder)
            self.agent.load(folder, policy_only=True)
        except READ_ERRORS as err:
            raise ConfigError(f"key 'agent.init_from': {folder} cannot be read ({err})") from None

    def write_final(self) -> dict[str, Any]:
        """Write ``final/`` atomically (via a temporary folder), then the clean ``eval.json``."""
        run = self.run
        tmp = run.path / ".final.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self.save_final(tmp)
        meta = {
            "schema": CHECKPOINT_SCHEMA,
            "agent": self.config.agent.name,
            "loop": self.entry.extra.get("loop"),
            "step": self.step,
        }
        atomic_write_json(tmp / "meta.json", meta)
        if run.final.exists():
            shutil.rmtree(run.final)
        tmp.rename(run.final)
        env = self.make_eval_env()
        try:
            result = self.describe(
                evaluate(
                    env,
                    self.act,
                    self.config.eval.episodes,
                    self.config.seed + EVAL_SEED_OFFSET,
                    self.video_path("final"),
                )
            )
        finally:
            env.close()
        atomic_write_json(run.eval_path, {"step": self.step, **result})
        return result

    def run_all(self) -> Agent:
        """Build, resume (or ``init_from``), train, checkpoint and write the final model."""
        config = self.config
        seed_everything(config.seed)
        self.build()
        if not self.resume() and config.agent.init_from:
            self.init_from(config.agent.init_from)
        tensorboard = self.run.tb_path if config.run.tensorboard else None
        self.log = MetricsLog(self.run.metrics_path, tensorboard, self.extra_sinks)
        self.log.truncate(self.step)
        schedules = Schedules(config, self.log)
        schedules.start(self.step)
        try:
            self.train(schedules)
            schedules.tick(
                self.step, lambda: self.evaluate(config.train.eval_episodes), self.checkpoint
            )
            latest = self.run.latest_checkpoint()
            if latest is None or read_meta(latest)["step"] != self.step:
                self.checkpoint(self.step)
            self.write_final()
        finally:
            schedules.close()
            self.log.close()
            if self._eval_env is not None:
                self._eval_env.close()
            self.close()
        return self.agent

    def periodic_eval(self) -> dict[str, Any]:
        """The periodic evaluation (``train.eval_episodes`` episodes)."""
        return self.evaluate(self.config.train.eval_episodes)
