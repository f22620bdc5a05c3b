"""``rlkit train``: prepare (or resume) a run directory and hand it to the agent's loop."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rlkit.agent import build_agent
from rlkit.config import ConfigError, ExperimentConfig, dump_config, load_config, yaml_load
from rlkit.metrics import MetricSink
from rlkit.registry import AGENTS, LOOPS
from rlkit.rundir import RunDir

RESUMABLE_SECTIONS = ("train", "eval", "run", "attack")


def default_run_dir(config_path: str | Path | None) -> Path:
    """``runs/<config stem>`` for a config file."""
    return Path("runs") / (Path(config_path).stem if config_path else "run")


def prepare_run(config: ExperimentConfig, run_path: Path, fresh: bool) -> RunDir:
    """Create the run directory, or check that an existing one can be resumed with ``config``.

    :param config: the resolved config.
    :param run_path: the run directory.
    :param fresh: move an existing run aside and start over.
    :return: the run (its loop resumes from its newest readable checkpoint).
    :raises ConfigError: when an existing run was made with a different env/agent/seed.
    """
    run = RunDir(run_path)
    if fresh:
        run.move_aside()
    if run.config_path.is_file():
        try:  # compare as validated configs, so fields added since then take their defaults
            previous = ExperimentConfig.model_validate(
                yaml_load(run.config_path.read_text()) or {}
            ).model_dump(mode="json")
        except ValueError:
            previous = {}
        current = config.model_dump(mode="json")
        changed = [
            k for k in current if k not in RESUMABLE_SECTIONS and previous.get(k) != current[k]
        ]
        if changed:
            raise ConfigError(
                f"{run.path}: exists with a different {', '.join(changed)}; "
                "use --fresh to start over (the old run is moved aside) or choose another run.dir"
            )
    run.create(dump_config(config))
    return run


def preflight(config: ExperimentConfig, source: str) -> None:
    """Build the env (and a native agent) once before touching the run directory.

    Turns what only shows when things are built (bad gymnasium kwargs, an agent that cannot
    handle the action space, bad agent arguments) into a ConfigError.

    :param config: the validated config.
    :param source: where it came from, for messages.
    """
    from rlkit.envs import make_env

    init = config.agent.init_from
    is_zip = init is not None and init.endswith(".zip")
    if init is not None and is_zip and not Path(init).is_file():
        raise ConfigError(f"{source}: key 'agent.init_from': model zip {init!r} not found")
    if init is not None and not is_zip and not (Path(init) / "final" / "meta.json").is_file():
        raise ConfigError(
            f"{source}: key 'agent.init_from': {init!r} is not a run directory with a final "
            "model (or an SB3 model zip)"
        )
    try:
        env = make_env(config.env)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{source}: key 'env': cannot build env {config.env.id!r}: {err}"
        ) from None
    entry = AGENTS.get(config.agent.name)
    kind = type(env.action_space).__name__
    allowed = entry.extra.get("action_spaces", (kind,))
    try:
        if kind not in allowed:
            raise ConfigError(
                f"{source}: key 'agent.name': {config.agent.name!r} cannot act in a {kind} "
                f"action space (allowed: {', '.join(allowed)}); use another agent or "
                "env.discrete_bins"
            )
        if entry.extra.get("loop") != "sb3":  # SB3 models allocate their buffers when built
            try:
                build_agent(entry, config, env.observation_space, env.action_space)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{source}: key 'agent.kwargs': {err}") from None
    finally:
        env.close()


def train(
    config_path: str | Path | None,
    overrides: list[str] | None = None,
    fresh: bool = False,
    config: ExperimentConfig | None = None,
    sinks: Iterable[MetricSink] = (),
) -> RunDir:
    """Train the experiment described by a config file (resuming its run if it exists).

    :param config_path: the YAML config.
    :param overrides: ``key.sub=value`` overrides.
    :param fresh: start over, moving an existing run directory aside.
    :param config: an already loaded config (instead of reading ``config_path``).
    :param sinks: extra metric sinks (e.g. a sweep runner reporting intermediate results).
    :return: the run directory, with ``final/`` and ``eval.json`` written.
    """
    config = config or load_config(config_path, overrides)
    preflight(config, str(config_path or "config"))
    run_path = Path(config.run.dir) if config.run.dir else default_run_dir(config_path)
    if config.run.dir is None:
        config = config.model_copy(
            update={"run": config.run.model_copy(update={"dir": str(run_path)})}
        )
    run = prepare_run(config, run_path, fresh)
    loop_cls = LOOPS.get(AGENTS.get(config.agent.name).extra["loop"]).build
    loop_cls(config, run, sinks).run_all()
    return run
