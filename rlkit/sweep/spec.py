"""Sweep files: a typed model, its validation, and the expansion into trials.

A sweep file names a base experiment config and what varies between trials::

    base: ../gym/pendulum_sac.yaml          # relative to the sweep file
    overrides: [train.total_steps=5000]      # applied to every trial
    grid: {agent.learning_rate: [3e-4, 1e-3]}
    samples: {agent.kwargs.tau: {loguniform: [0.001, 0.05]}}
    num_samples: 4
    seeds: [0, 1, 2]
    metric: eval/return_mean
    mode: max
    scheduler: {name: asha, grace_period: 2000}
    search: {name: random, seed: 0}
    trial: {cpus: 1, threads: 1}
    attack: {config: ../attacks/quick.yaml, eps: [0.01, 0.05], robust: true}
    dir: runs/sweeps/pendulum_lr

Trials are the grid's cartesian product times ``num_samples`` draws from ``samples`` times the
seeds: every configuration runs with every seed, so results aggregate over seeds. Each trial's
config is the base, then ``overrides``, then its values, then ``seed=S`` and
``run.dir=<dir>/trials/<trial name>``; every one is validated (:func:`rlkit.config.load_config`)
by :func:`load_sweep` before anything starts. With ``search: {name: optuna}`` the
configurations are proposed by Optuna during the sweep instead (one seed; no grid).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from rlkit.config import (
    AttackConfig,
    ConfigError,
    ExperimentConfig,
    Strict,
    describe_error,
    load_attack_config,
    load_config,
    load_raw,
    read_yaml,
)

#: Metric prefixes a sweep can rank trials by: metrics.csv columns, the final evaluation
#: (eval.json) and the attack stage.
TRAINING_PREFIXES = ("eval/", "train/", "rollout/", "time/")
FINAL_PREFIXES = ("final/", "attack/")
RESERVED_KEYS = ("seed", "run.dir")


class Distribution(Strict):
    """A random-search dimension: exactly one of uniform, loguniform, choice, randint."""

    uniform: tuple[float, float] | None = Field(None, description="[low, high]: uniform floats")
    loguniform: tuple[float, float] | None = Field(
        None, description="[low, high], low > 0: floats uniform in log space"
    )
    choice: list[Any] | None = Field(None, description="one of these values")
    randint: tuple[int, int] | None = Field(
        None, description="[low, high): whole numbers, high excluded"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [k for k in ("uniform", "loguniform", "choice", "randint") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of uniform, loguniform, choice, randint "
                f"(given: {', '.join(given) or 'none'})"
            )
        kind = given[0]
        if kind == "choice":
            if not self.choice:
                raise ValueError("choice: give at least one value")
            return self
        low, high = getattr(self, kind)
        if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
            raise ValueError(f"{kind}: expected [low, high] with low < high, got [{low}, {high}]")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform: low must be > 0, got {low}")
        return self

    @property
    def kind(self) -> str:
        """uniform, loguniform, choice or randint."""
        return next(k for k in ("uniform", "loguniform", "choice", "randint") if getattr(self, k))

    def corners(self) -> list[Any]:
        """Values that validate the whole range: the bounds, or every choice."""
        if self.choice is not None:
            return list(self.choice)
        low, high = getattr(self, self.kind)
        return [low, high - 1] if self.kind == "randint" else [low, high]

    def draw(self, rng: np.random.Generator) -> Any:
        """One value (floats rounded to 4 significant digits, for readable configs).

        :param rng: the generator.
        """
        if self.choice is not None:
            return self.choice[int(rng.integers(len(self.choice)))]
        if self.randint is not None:
            return int(rng.integers(*self.randint))
        if self.loguniform is not None:
            low, high = self.loguniform
            return float(f"{math.exp(rng.uniform(math.log(low), math.log(high))):.4g}")
        assert self.uniform is not None
        return float(f"{rng.uniform(*self.uniform):.4g}")


class FifoScheduler(Strict):
    """Run every trial to the end (no early stopping)."""

    name: Literal["fifo"] = Field(description="first in, first out")


class AshaScheduler(Strict):
    """ASHA (asynchronous successive halving): stop trials whose metric lags at a rung."""

    name: Literal["asha"] = Field(description="asynchronous successive halving")
    grace_period: int = Field(
        ge=1, description="env steps every trial trains before it can be stopped"
    )
    reduction_factor: float = Field(
        3.0, gt=1, description="keep the best 1/reduction_factor of trials at each rung"
    )
    max_t: int | None = Field(
        None, ge=1, description="env steps of the last rung (default: train.total_steps)"
    )
    brackets: int = Field(1, ge=1, le=10, description="number of brackets (ASHA's s)")


class PBTScheduler(Strict):
    """Population based training: bad trials copy a good trial's checkpoint and mutate."""

    name: Literal["pbt"] = Field(description="population based training")
    perturbation_interval: int = Field(
        ge=1,
        description="env steps between exploit/explore decisions (a multiple of "
        "train.checkpoint_every: trials exchange rlkit checkpoints)",
    )
    mutations: dict[str, Distribution] = Field(
        description="dotted config keys and the distributions new values are drawn from"
    )
    quantile_fraction: float = Field(
        0.25, gt=0, le=0.5, description="bottom fraction that copies the top fraction"
    )
    resample_probability: float = Field(
        0.25, ge=0, le=1, description="chance of drawing a new value instead of perturbing"
    )
    synch: bool = Field(
        False,
        description="wait for every trial at each perturbation (decisions independent of "
        "timing; trials that arrive first sit idle)",
    )


Scheduler = Annotated[FifoScheduler | AshaScheduler | PBTScheduler, Field(discriminator="name")]
SCHEDULERS: dict[str, type[BaseModel]] = {
    "fifo": FifoScheduler,
    "asha": AshaScheduler,
    "pbt": PBTScheduler,
}


class SearchConfig(Strict):
    """Where the values of ``samples`` come from."""

    name: Literal["random", "optuna"] = Field(
        "random",
        description="random: num_samples draws made up front (seeded); optuna: Optuna's TPE "
        "proposes num_samples configurations during the sweep (needs Ray)",
    )
    seed: int = Field(0, ge=0, description="seed of the random draws / of Optuna's sampler")


class TrialResources(Strict):
    """What each trial may use."""

    cpus: float = Field(1.0, gt=0, description="CPUs Ray reserves for each trial")
    gpus: float = Field(0.0, ge=0, description="GPUs Ray reserves for each trial")
    threads: int = Field(1, ge=1, le=256, description="torch threads inside each trial")


class SweepAttack(Strict):
    """Evaluation under attack of every trained trial (``rlkit evaluate --attack``)."""

    config: str = Field(description="attack config YAML (relative to the sweep file)")
    eps: list[float] | None = Field(
        None, description="budgets replacing the attack config's (like --eps)"
    )
    episodes: int | None = Field(None, ge=1, description="episodes per (attack, budget)")
    robust: bool = Field(
        False,
        description="robust-RL summary: natural return and worst case over attacks at 'budget'",
    )
    budget: float | None = Field(
        None, ge=0, description="budget of the robust summary (default: the largest budget)"
    )


class SweepConfig(Strict):
    """A sweep: a base config, what varies, how trials are ranked, scheduled and evaluated."""

    base: str = Field(description="the base experiment config (relative to the sweep file)")
    overrides: list[str] = Field(
        default_factory=list, description="key.sub=value overrides applied to every trial"
    )
    grid: dict[str, list[Any]] | None = Field(
        None, description="dotted config keys and the values to try (cartesian product)"
    )
    samples: dict[str, Distribution] = Field(
        default_factory=dict,
        description="dotted config keys and distributions ({uniform|loguniform|choice|randint})",
    )
    num_samples: int = Field(
        1, ge=1, le=10_000, description="configurations drawn from samples (per grid point)"
    )
    seeds: list[int] = Field(
        default_factory=lambda: [0], description="seeds every configuration runs with"
    )
    metric: str = Field(
        "eval/return_mean",
        description="what ranks trials: a metrics.csv column (eval/return_mean, reported to Tune "
        "during training), final/return_mean (eval.json) or attack/worst@EPS",
    )
    mode: Literal["max", "min"] = Field("max", description="whether larger metric is better")
    scheduler: Scheduler = Field(
        default_factory=lambda: FifoScheduler(name="fifo"),
        description="trial scheduler: {name: fifo | asha | pbt, ...}",
    )
    search: SearchConfig = Field(default_factory=SearchConfig)
    trial: TrialResources = Field(default_factory=TrialResources)
    attack: SweepAttack | None = Field(None, description="evaluation under attack of each trial")
    max_concurrent: int | None = Field(
        None, ge=1, description="trials running at once (default: as many as the CPUs allow)"
    )
    dir: str | None = Field(
        None,
        description="sweep directory, relative to the current directory like run.dir "
        "(default runs/sweeps/<file stem>)",
    )

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("give at least one seed")
        if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
            raise ValueError(f"expected distinct whole numbers >= 0, got {seeds}")
        return seeds


@dataclass
class TrialSpec:
    """One trial: its name (the folder under ``trials/``), seed and varied values.

    :param name: unique, filesystem-safe name.
    :param seed: the trial's seed.
    :param params: dotted key -> value (grid and sample values).
    :param group: the configuration without the seed (what results aggregate over).
    """

    name: str
    seed: int
    params: dict[str, Any]
    group: str

    def to_dict(self) -> dict[str, Any]:
        """Plain data (Tune configs, ``sweep_trial.json``)."""
        return {"name": self.name, "seed": self.seed, "params": self.params, "group": self.group}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        """Inverse of :meth:`to_dict`.

        :param data: the mapping.
        """
        return cls(str(data["name"]), int(data["seed"]), dict(data["params"]), str(data["group"]))


@dataclass
class Sweep:
    """A validated sweep file with everything resolved.

    :param config: the model.
    :param path: the sweep file.
    :param base_path: the base config file.
    :param base_raw: the base config mapping (``extends`` resolved), for workers elsewhere.
    :param root: the sweep directory (absolute).
    :param trials: the planned trials (empty with a search algorithm: proposed during the sweep).
    :param attack: the resolved attack config, or None.
    :param attack_stem: the attack file's stem (``RUN/attacks/<stem>/``).
    :param total_steps: ``train.total_steps`` of the base config with the overrides.
    """

    config: SweepConfig
    path: Path
    base_path: Path
    base_raw: dict[str, Any]
    root: Path
    trials: list[TrialSpec] = field(default_factory=list)
    attack: AttackConfig | None = None
    attack_stem: str | None = None
    total_steps: int = 0

    @property
    def trials_dir(self) -> Path:
        """``<dir>/trials``: one rlkit run directory per trial."""
        return self.root / "trials"

    @property
    def uses_search(self) -> bool:
        """True when a search algorithm proposes the configurations during the sweep."""
        return self.config.search.name != "random"

    @property
    def needs_ray(self) -> bool:
        """True when the sweep needs Ray Tune (a scheduler or a search algorithm)."""
        return self.uses_search or self.config.scheduler.name != "fifo"

    @property
    def robust_budget(self) -> float | None:
        """The budget of the robust summary (None without ``attack.robust``)."""
        if self.config.attack is None or not self.config.attack.robust or self.attack is None:
            return None
        if self.config.attack.budget is not None:
            return self.config.attack.budget
        return max(attack_budgets(self.attack))

    def trial_overrides(self, spec: TrialSpec) -> list[str]:
        """The overrides that make a trial's config from the base.

        :param spec: the trial.
        """
        return trial_overrides(self.config.overrides, spec, self.trials_dir)


def trial_overrides(overrides: list[str], spec: TrialSpec, trials_dir: str | Path) -> list[str]:
    """A trial's overrides of the base config: no progress bar, the sweep's overrides, the
    trial's values, its seed and its run directory ``<trials_dir>/<name>``.

    :param overrides: the sweep's overrides of every trial.
    :param spec: the trial.
    :param trials_dir: the sweep's ``trials`` folder.
    """
    return [
        "train.progress=false",
        *overrides,
        *(f"{k}={json.dumps(v)}" for k, v in spec.params.items()),
        f"seed={spec.seed}",
        f"run.dir={Path(trials_dir) / spec.name}",
    ]


def attack_budgets(attack: AttackConfig) -> list[float]:
    """Every budget an attack config runs (each attack's own, or the default list).

    :param attack: the attack config.
    """
    return sorted({e for a in attack.attacks for e in (a.eps or attack.eps)})


def sweep_help() -> list[str]:
    """One line per sweep-file key, from the models' field descriptions (``rlkit sweep -h``)."""

    def fields(model: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
        lines = []
        for name, info in model.model_fields.items():
            if name in skip:
                continue
            default = (
                "required"
                if info.is_required()
                else f"default {info.get_default(call_default_factory=True)!r}"
            )
            if isinstance(default, str) and len(default) > 40:
                default = "default: see below"
            lines.append(f"  {prefix}{name} ({default}): {info.description or ''}")
        return lines

    lines = fields(SweepConfig, "", skip=("scheduler", "search", "trial", "attack"))
    lines.append("  samples.KEY: one of " + ", ".join(Distribution.model_fields))
    for name, model in SCHEDULERS.items():
        lines.append(f"scheduler: {{name: {name}}}: {(model.__doc__ or '').strip()}")
        lines += fields(model, "scheduler.", skip=("name",))
    for key, model in (("search", SearchConfig), ("trial", TrialResources)):
        lines.append(f"{key}: {(model.__doc__ or '').strip()}")
        lines += fields(model, f"{key}.")
    lines.append(f"attack: {(SweepAttack.__doc__ or '').strip()}")
    lines += fields(SweepAttack, "attack.")
    return lines


# ---------------------------------------------------------------------------------------------
# names


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "-".join(_format_value(v) for v in value)
    if isinstance(value, dict):
        return "-".join(f"{k}{_format_value(v)}" for k, v in value.items())
    return str(value)


def short_keys(keys: list[str]) -> dict[str, str]:
    """The last part of each dotted key, or more parts where two would look the same.

    :param keys: dotted keys.
    """
    out: dict[str, str] = {}
    for key in keys:
        parts = key.split(".")
        depth = 1
        while depth < len(parts):
            tail = ".".join(parts[-depth:])
            clash = [k for k in keys if k != key and ".".join(k.split(".")[-depth:]) == tail]
            if not clash:
                break
            depth += 1
        out[key] = ".".join(parts[-depth:])
    return out


def safe_name(text: str, limit: int = 120) -> str:
    """A folder name: characters outside ``[A-Za-z0-9._=,+-]`` become ``-``; long names keep a
    hash of the whole text.

    :param text: the readable name.
    :param limit: longest name kept as it is.
    """
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "-", text).strip(".") or "trial"
    if len(name) > limit:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = f"{name[: limit - 9]}-{digest}"
    return name


def params_label(params: dict[str, Any], short: dict[str, str] | None = None) -> str:
    """``learning_rate=0.001,tau=0.01`` (``base`` when nothing varies).

    :param params: dotted key -> value.
    :param short: display names of the keys (default :func:`short_keys`).
    """
    short = short or short_keys(list(params))
    return ",".join(f"{short[k]}={_format_value(v)}" for k, v in params.items()) or "base"


def plan_trials(config: SweepConfig) -> list[TrialSpec]:
    """Expand grid x samples x seeds into trials with stable names (same file, same names).

    :param config: the sweep model (with ``search.name == "random"``).
    """
    grid = config.grid or {}
    keys = [*grid, *config.samples]
    short = short_keys(keys)
    rng = np.random.default_rng(config.search.seed)
    sampled = bool(config.samples)
    trials: list[TrialSpec] = []
    seen: set[str] = set()
    for point in product(*grid.values()):
        for k in range(config.num_samples if sampled else 1):
            params = dict(zip(grid, point, strict=True))
            params.update({key: dist.draw(rng) for key, dist in config.samples.items()})
            label = params_label(params, short)
            if sampled:
                label = f"sample={k:03d},{label}"
            group = safe_name(label)
            for seed in config.seeds:
                name = safe_name(f"{label},seed={seed}" if label != "base" else f"seed={seed}")
                if name in seen:
                    name = f"{name}-{len(trials)}"
                seen.add(name)
                trials.append(TrialSpec(name, seed, params, group))
    return trials


def search_trial(params: dict[str, Any], seed: int, trial_id: str) -> TrialSpec:
    """The trial of a configuration a search algorithm proposed.

    :param params: dotted key -> value.
    :param seed: the sweep's seed.
    :param trial_id: Tune's trial id (keeps names unique and stable across a restore).
    """
    label = params_label(params)
    return TrialSpec(safe_name(f"{trial_id},{label}"), seed, params, safe_name(label))


# ---------------------------------------------------------------------------------------------
# loading and validation


def _sweep_error(err: ValidationError, source: str) -> ConfigError:
    """One line per error, naming the sweep file and the dotted key (the scheduler's tag,
    which pydantic puts in the location, is left out)."""
    lines = []
    sections: dict[str, type[BaseModel]] = {
        "search": SearchConfig,
        "trial": TrialResources,
        "attack": SweepAttack,
    }
    # an unknown key explains a missing one next to it ("grace_perod"): report it first
    items = sorted(err.errors(), key=lambda e: e.get("type") != "extra_forbidden")
    for item in items:
        error: dict[str, Any] = dict(item)
        loc: tuple[Any, ...] = tuple(error.get("loc", ()))
        model: type[BaseModel] = SweepConfig
        prefix = ""
        if len(loc) >= 2 and loc[0] == "scheduler" and loc[1] in SCHEDULERS:
            model, prefix, loc = SCHEDULERS[str(loc[1])], "scheduler.", loc[2:]
        elif loc and loc[0] in sections:
            model, prefix, loc = sections[str(loc[0])], f"{loc[0]}.", loc[1:]
        if error.get("type") == "union_tag_invalid":
            given = error.get("input")
            lines.append(
                f"{source}: key 'scheduler.name': given {given.get('name')!r}; "
                f"allowed: {', '.join(SCHEDULERS)}"
                if isinstance(given, dict)
                else f"{source}: key 'scheduler': expected a mapping with a name"
            )
            continue
        if error.get("type") == "union_tag_not_found":
            lines.append(f"{source}: key 'scheduler.name' is required ({', '.join(SCHEDULERS)})")
            continue
        # keys inside grid/samples/mutations are config keys, not model fields
        error["loc"] = loc
        lines.append(describe_error(error, source, model, prefix))
    return ConfigError("\n".join(lines))


def _reason(err: ConfigError) -> str:
    """A load_config message without its leading "FILE (with overrides ...): " part."""
    head, sep, rest = str(err).partition("): ")
    return rest if sep and " (with overrides " in head else str(err)


def _resolve(path: Path, relative: str) -> Path:
    return (path.parent / relative).resolve()


def load_sweep(path: str | Path, check_env: bool = True) -> Sweep:
    """Read, validate and expand a sweep file; nothing is written.

    :param path: the sweep YAML.
    :param check_env: also build the first trial's env and agent once (as ``rlkit train`` does
        before it touches a run directory).
    :return: the sweep, with its trials planned (unless a search algorithm proposes them).
    :raises ConfigError: one message naming the sweep file (or the base config) and the key.
    """
    path = Path(path)
    source = str(path)
    raw = read_yaml(path)
    try:
        config = SweepConfig.model_validate(raw)
    except ValidationError as err:
        raise _sweep_error(err, source) from None
    base_path = _resolve(path, config.base)
    if not base_path.is_file():
        raise ConfigError(
            f"{source}: key 'base': file {config.base!r} not found (looked at {base_path})"
        )
    try:
        base_raw = load_raw(base_path)
        load_config(base_path)
    except ConfigError as err:
        raise ConfigError(f"{source}: key 'base': {err}") from None
    try:
        base = load_config(base_path, ["train.progress=false", *config.overrides])
    except ConfigError as err:
        raise ConfigError(f"{source}: key 'overrides': {_reason(err)}") from None
    root = Path(config.dir or Path("runs") / "sweeps" / path.stem).resolve()
    sweep = Sweep(config, path, base_path, base_raw, root, total_steps=base.train.total_steps)
    _check_keys(sweep, source)
    _check_values(sweep, source)
    if config.attack is not None:
        attack_path = _resolve(path, config.attack.config)
        if not attack_path.is_file():
            raise ConfigError(
                f"{source}: key 'attack.config': file {config.attack.config!r} not found "
                f"(looked at {attack_path})"
            )
        sweep.attack = load_attack_config(attack_path, config.attack.eps)
        sweep.attack_stem = attack_path.stem
        budgets = attack_budgets(sweep.attack)
        if config.attack.budget is not None and config.attack.budget not in budgets:
            raise ConfigError(
                f"{source}: key 'attack.budget': given {config.attack.budget}; the attacks run "
                f"at {', '.join(f'{b:g}' for b in budgets)}"
            )
    _check_metric(sweep, base, source)
    _check_scheduler(sweep, base, source)
    if not sweep.uses_search:
        sweep.trials = plan_trials(config)
        if isinstance(config.scheduler, PBTScheduler):
            _initial_mutations(sweep.trials, config.scheduler, base, config.search.seed)
        first = None
        for spec in sweep.trials:
            try:
                trial_config = load_config(base_path, sweep.trial_overrides(spec))
            except ConfigError as err:
                values = ", ".join(f"{k}={v!r}" for k, v in spec.params.items())
                raise ConfigError(
                    f"{source}: trial {spec.name} ({values}): {_reason(err)}"
                ) from None
            first = first or trial_config
        _check_existing(sweep, source)
        if check_env and first is not None:
            _preflight(first, source)
    elif check_env:
        _preflight(base, source)
    return sweep


def _lookup(data: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _initial_mutations(
    trials: list[TrialSpec], scheduler: PBTScheduler, base: ExperimentConfig, seed: int
) -> None:
    """Give every trial a starting value of each key PBT mutates (PBT changes values it finds
    in a trial's config): the base config's value, else a draw from the mutation's
    distribution (seeded)."""
    dump = base.model_dump(mode="json")
    rng = np.random.default_rng(seed)
    for spec in trials:
        for key, dist in scheduler.mutations.items():
            if key not in spec.params:
                value = _lookup(dump, key)
                spec.params[key] = value if value is not None else dist.draw(rng)


def _preflight(config: ExperimentConfig, source: str) -> None:
    from rlkit.train import preflight

    try:
        preflight(config, f"{source}: trial config")
    except ConfigError as err:
        raise ConfigError(str(err)) from None


def _check_keys(sweep: Sweep, source: str) -> None:
    config = sweep.config
    if config.grid is not None and not config.grid:
        raise ConfigError(
            f"{source}: key 'grid': empty; give at least one key with values, e.g. "
            "{agent.learning_rate: [3e-4, 1e-3]}, or leave grid out"
        )
    sections: list[tuple[str, list[str]]] = [
        ("grid", list(config.grid or {})),
        ("samples", list(config.samples)),
    ]
    if isinstance(config.scheduler, PBTScheduler):
        sections.append(("scheduler.mutations", list(config.scheduler.mutations)))
    for section, keys in sections:
        for key in keys:
            if key in RESERVED_KEYS:
                hint = "list them under 'seeds'" if key == "seed" else "set the sweep's 'dir'"
                raise ConfigError(
                    f"{source}: key '{section}.{key}': set by the sweep for each trial; {hint}"
                )
            if not key or any(not part for part in key.split(".")):
                raise ConfigError(
                    f"{source}: key '{section}.{key}': expected a dotted config key, e.g. "
                    "agent.learning_rate"
                )
    both = set(config.grid or {}) & set(config.samples)
    if both:
        raise ConfigError(
            f"{source}: key 'samples.{sorted(both)[0]}': also in grid; give each key once"
        )
    for key, values in (config.grid or {}).items():
        if not values:
            raise ConfigError(f"{source}: key 'grid.{key}': empty list of values")


def _check_values(sweep: Sweep, source: str) -> None:
    """Every grid value and every distribution's range on the base config, one key at a time
    (so a bad value is reported with its own key)."""
    config = sweep.config
    checks: list[tuple[str, str, list[Any]]] = [
        ("grid", k, v) for k, v in (config.grid or {}).items()
    ]
    checks += [("samples", k, d.corners()) for k, d in config.samples.items()]
    if isinstance(config.scheduler, PBTScheduler):
        checks += [
            ("scheduler.mutations", k, d.corners()) for k, d in config.scheduler.mutations.items()
        ]
    for section, key, values in checks:
        for value in values:
            overrides = ["train.progress=false", *config.overrides, f"{key}={json.dumps(value)}"]
            try:
                load_config(sweep.base_path, overrides)
            except ConfigError as err:
                raise ConfigError(
                    f"{source}: key '{section}.{key}': value {value!r} is rejected: {_reason(err)}"
                ) from None


def _check_metric(sweep: Sweep, base: ExperimentConfig, source: str) -> None:
    metric = sweep.config.metric
    if not metric.startswith(TRAINING_PREFIXES + FINAL_PREFIXES):
        raise ConfigError(
            f"{source}: key 'metric': given {metric!r}; expected a metrics.csv column "
            f"({', '.join(p + '...' for p in TRAINING_PREFIXES)}), final/return_mean (eval.json) "
            "or attack/natural, attack/worst@EPS, attack/NAME@EPS"
        )
    if metric.startswith("attack/") and sweep.config.attack is None:
        raise ConfigError(
            f"{source}: key 'metric': {metric!r} needs an 'attack' section (evaluation under "
            "attack of each trial)"
        )
    if metric.startswith("eval/") and base.train.eval_every == 0 and sweep.needs_ray:
        raise ConfigError(
            f"{source}: key 'metric': {metric!r} is reported at periodic evaluations, but the "
            "base config has train.eval_every=0; set train.eval_every (overrides) or use "
            "final/return_mean"
        )


def _check_scheduler(sweep: Sweep, base: ExperimentConfig, source: str) -> None:
    config = sweep.config
    scheduler = config.scheduler
    early = scheduler.name in ("asha", "pbt")
    if early and config.metric.startswith(FINAL_PREFIXES):
        raise ConfigError(
            f"{source}: key 'metric': {config.metric!r} is known only when a trial ends; "
            f"scheduler {scheduler.name!r} needs a metric reported during training "
            "(eval/return_mean)"
        )
    if isinstance(scheduler, AshaScheduler) and scheduler.grace_period >= sweep.total_steps:
        raise ConfigError(
            f"{source}: key 'scheduler.grace_period': given {scheduler.grace_period}; expected "
            f"fewer env steps than train.total_steps ({sweep.total_steps})"
        )
    if isinstance(scheduler, PBTScheduler):
        every = base.train.checkpoint_every
        if every == 0 or scheduler.perturbation_interval % every:
            raise ConfigError(
                f"{source}: key 'scheduler.perturbation_interval': given "
                f"{scheduler.perturbation_interval}; expected a multiple of "
                f"train.checkpoint_every ({every}): trials exchange rlkit checkpoints"
            )
    if config.search.name == "optuna":
        if config.grid:
            raise ConfigError(
                f"{source}: key 'grid': not used with search 'optuna'; give the values as "
                "samples: {KEY: {choice: [...]}}"
            )
        if not config.samples:
            raise ConfigError(
                f"{source}: key 'samples': search 'optuna' needs a search space "
                "(samples: {KEY: {uniform|loguniform|choice|randint: ...}})"
            )
        if len(config.seeds) != 1:
            raise ConfigError(
                f"{source}: key 'seeds': search 'optuna' tunes one seed (given "
                f"{len(config.seeds)}); re-run the best configuration over seeds with a grid"
            )


def _check_existing(sweep: Sweep, source: str) -> None:
    """A trial folder left by an earlier run of the sweep must still match its config."""
    from rlkit.config import yaml_load
    from rlkit.train import RESUMABLE_SECTIONS

    for spec in sweep.trials:
        path = sweep.trials_dir / spec.name / "config.yaml"
        if not path.is_file():
            continue
        try:
            previous = ExperimentConfig.model_validate(yaml_load(path.read_text()) or {})
        except ValueError:
            continue
        current = load_config(sweep.base_path, sweep.trial_overrides(spec))
        old, new = previous.model_dump(mode="json"), current.model_dump(mode="json")
        changed = [k for k in new if k not in RESUMABLE_SECTIONS and old.get(k) != new[k]]
        if changed:
            raise ConfigError(
                f"{source}: trial {spec.name} exists in {sweep.trials_dir} with a different "
                f"{', '.join(changed)} section; choose another sweep 'dir' (or move the old "
                "sweep aside)"
            )
