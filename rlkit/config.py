"""Typed experiment configs: YAML files mapped onto pydantic models.

A config file has the sections ``env``, ``agent``, ``train``, ``eval``, ``run``, ``seed`` and
optionally ``attack``. ``extends: base.yaml`` merges a base file first (paths relative to the
including file); ``key.sub=value`` overrides are parsed with YAML typing. Every problem is
reported as a :class:`ConfigError` naming the file, the dotted key, what was given and what is
allowed. The field descriptions below double as the CLI help (``rlkit help-config``).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from rlkit.registry import close_matches


class _Loader(yaml.SafeLoader):
    """``safe_load`` that also reads ``5e-3`` as a float (YAML 1.2; PyYAML's 1.1 needs
    ``5.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse YAML safely (no object construction), reading ``1e-3`` as a float."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506  _Loader is a SafeLoader


class ConfigError(ValueError):
    """A bad config: the message names the file, the dotted key, the value and what is allowed."""


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EnvConfig(Strict):
    """Which environment to train and evaluate on."""

    id: str = Field(description="registered env name (see `rlkit info`) or any gymnasium id")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="arguments of the env factory")
    n_envs: int = Field(1, ge=1, le=4096, description="parallel environments used for training")
    normalize_obs: bool = Field(
        False, description="running observation normalisation (saved with the model)"
    )
    discrete_bins: int | None = Field(
        None,
        ge=2,
        le=1000,
        description="discretise a Box action space into this many bins per dimension",
    )
    discrete_shared: bool = Field(
        False,
        description="with discrete_bins: one Discrete(bins) choice drives every action dimension",
    )
    max_episode_steps: int | None = Field(
        None, ge=1, description="truncate episodes after this many steps"
    )


class AgentConfig(Strict):
    """Which learning algorithm to use and its hyper-parameters."""

    name: str = Field(description="registered agent name (see `rlkit info`), e.g. sac, ppo, td3")
    net_arch: list[int] | None = Field(
        None, description="hidden layer sizes of the policy and value networks"
    )
    learning_rate: float | None = Field(
        None, gt=0, le=1, description="optimiser learning rate (agent default if unset)"
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict, description="other arguments of the agent's constructor"
    )
    init_from: str | None = Field(
        None,
        description="start from the policy of this run directory's final model, or of an SB3 "
        "model zip for SB3 agents (fine-tuning)",
    )


class TrainConfig(Strict):
    """How long to train, and how often to evaluate, log and checkpoint."""

    total_steps: int = Field(
        10_000, ge=1, description="environment steps to train for (summed over n_envs)"
    )
    eval_every: int = Field(
        5_000, ge=0, description="evaluate every this many steps (0: only at the end)"
    )
    eval_episodes: int = Field(5, ge=1, description="episodes per periodic evaluation")
    checkpoint_every: int = Field(
        5_000, ge=0, description="checkpoint every this many steps (0: only at the end)"
    )
    log_every: int = Field(1_000, ge=1, description="write training metrics every this many steps")
    keep_checkpoints: int = Field(
        2, ge=1, description="checkpoints kept on disk (older ones are pruned)"
    )
    replay_size: int = Field(
        1_000_000, ge=1, description="replay buffer capacity (native off-policy agents)"
    )
    progress: bool = Field(True, description="show a progress bar")
    device: str = Field("cpu", description="torch device")


class EvalConfig(Strict):
    """Clean evaluation of the trained agent."""

    episodes: int = Field(
        10, ge=1, description="episodes for `rlkit evaluate` and the final evaluation"
    )
    deterministic: bool = Field(True, description="use the deterministic (mean / argmax) action")
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="env kwargs overriding env.kwargs at evaluation, e.g. {split: test}",
    )
    video: bool = Field(
        False,
        description="record the first episode of each periodic and the final evaluation as "
        "videos/eval_<step>.mp4 (gif without imageio-ffmpeg) in the run directory",
    )


class RunConfig(Strict):
    """Where the run directory lives."""

    dir: str | None = Field(None, description="run directory (default runs/<config file stem>)")
    tensorboard: bool = Field(True, description="write TensorBoard events beside metrics.csv")


def budget_value(value: Any) -> Any:
    """A budget as a number: ``8/255`` (a fraction, as pixel budgets are written) becomes 8/255.

    :param value: a number or a ``"a/b"`` string (other values are left for pydantic to reject).
    """
    if isinstance(value, str) and "/" in value:
        try:
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            return value
    return value


def _budget_list(value: Any) -> Any:
    """Apply :func:`budget_value` to each item of a list of budgets."""
    return [budget_value(v) for v in value] if isinstance(value, list) else value


Budgets = Annotated[list[float], BeforeValidator(_budget_list)]


class AttackSpec(Strict):
    """One attack to evaluate: a registered attack with its budget shape and settings."""

    name: str = Field(description="registered attack name (see `rlkit info`)")
    label: str | None = Field(None, description="name used in results (default: the attack name)")
    norm: Literal["linf", "l2"] = Field("linf", description="norm of the perturbation budget")
    eps: Budgets | None = Field(
        None, description="budgets for this attack (default: attack.eps); '8/255' is 8/255"
    )
    mask: list[str] = Field(
        default_factory=list, description="observation groups the attack may not touch"
    )
    scale: dict[str, float] = Field(
        default_factory=dict, description="per-group factor on epsilon, e.g. {pv: 0.004}"
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="the attack's own settings (iterations, step_size, ...)"
    )

    @property
    def key(self) -> str:
        """The name used in results."""
        return self.label or self.name


class AttackConfig(Strict):
    """Attacks evaluated by `rlkit evaluate --attack`: every attack at every budget."""

    attacks: list[AttackSpec] = Field(description="the attacks to run")
    eps: Budgets = Field(
        default_factory=lambda: [0.01, 0.03, 0.05],
        description="default budgets (in attack.units; '8/255' is 8/255)",
    )
    units: Literal["auto", "raw", "pixels"] = Field(
        "auto",
        description="what eps (and a PGD step_size) mean: 'raw' = the env's raw observation "
        "units, 'pixels' = fractions of the 0..255 range of uint8 frames (eps 8/255 = 8 pixel "
        "levels; eps must be in [0, 1]), 'auto' = pixels for uint8 image observations, raw "
        "otherwise (see rlkit.attacks.pixels)",
    )
    frame_level: bool | None = Field(
        None,
        description="stacked frames: perturb each rendered frame once, before stacking (only "
        "the newest frame is optimised, the older ones keep their earlier perturbation); false "
        "= perturb the whole stack at every step; null = auto: frame-level when the env stacks "
        "frames (frame_stack > 1) of image observations",
    )
    quantize: bool | None = Field(
        None,
        description="round attacked observations to the integer grid (within the budget and "
        "bounds); null = auto: on for uint8 image observations",
    )
    episodes: int = Field(
        3, ge=1, description="episodes per (attack, budget); the same seeds as the clean run"
    )
    stealth: bool = Field(
        True, description="compute stealth statistics (MMD, KS, first differences)"
    )
    permutations: int = Field(
        1000, ge=10, description="permutations of the MMD test (the paper used 10,000)"
    )
    plot_features: int = Field(
        3, ge=0, description="perturbed features shown in the time-series plot"
    )
    mmd_procedure: Literal["paper", "rlkit"] = Field(
        "paper",
        description="MMD estimator: 'paper' = the authors' torchdrift kernel_mmd (median of all "
        "pairwise distances, diagonal kept in the sums, p = share of permutations strictly above); "
        "'rlkit' = the biased estimator with a (count + 1) / (B + 1) p-value",
    )
    mmd_reference: Literal["same_trace", "clean_run"] = Field(
        "same_trace",
        description="clean sample of the MMD: 'same_trace' = the clean observations of the "
        "attacked run itself (the paper), 'clean_run' = the observations of the separate clean run",
    )
    mmd_null: Literal["hours", "days"] = Field(
        "hours",
        description="null of the clean trace split in two: 'hours' = each day's hours 12/12 (the "
        "paper's MMD baseline.py), 'days' = whole days to each half (stricter on time series)",
    )
    difference_mmd: bool = Field(
        True, description="also test absolute first differences (the paper's second MMD)"
    )
    mmd_max_samples: int | None = Field(
        2000,
        ge=10,
        description="rows per side of the MMD (evenly spaced; null: all rows, as the paper)",
    )
    mmd_permutation: Literal["rows", "days", "paired_days"] = Field(
        "rows",
        description="MMD permutation scheme: 'rows' permutes single steps (the paper; "
        "anti-conservative on time series, see the day-split null in the report), 'days' moves "
        "whole days, 'paired_days' swaps the clean and attacked copies of each day (calibrated; "
        "needs an env that knows steps_per_day)",
    )

    @model_validator(mode="after")
    def _unique_labels(self) -> AttackConfig:
        keys = [a.key for a in self.attacks]
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(
                f"attacks {repeated} appear more than once: give each a distinct 'label'"
            )
        if any(
            not math.isfinite(e)
            for e in [*self.eps, *(x for a in self.attacks for x in (a.eps or []))]
        ):
            raise ValueError("budgets must be finite")
        return self


class AdversarialConfig(Strict):
    """Adversarial training: the agent trains on observations perturbed by an attack on its own
    live (current) policy."""

    attack: AttackSpec = Field(
        description="the attack (name, mask, scale, settings), e.g. {name: pgd} or "
        "{name: bifurcation}; its eps list is not used"
    )
    eps: float = Field(ge=0, description="budget of the training-time attack")
    probability: float = Field(
        0.5, ge=0, le=1, description="chance that a training observation is attacked (per step)"
    )
    start_step: int = Field(0, ge=0, description="train clean until this many env steps")


class DatasetConfig(Strict):
    """The offline dataset an offline agent (odice, bc) learns from."""

    path: str = Field(
        description="a D4RL-format HDF5 file, a Minari dataset folder, or a Minari dataset id "
        "(looked up under $MINARI_DATASETS_PATH, never downloaded)"
    )
    env: str | None = Field(
        None, description="gymnasium id (or registered env) to evaluate in (default: env.id)"
    )
    reward_scale: Literal["auto", "return_range", "none"] | float = Field(
        "auto",
        description="reward scaling: 'return_range' = max_episode_steps / (max - min episode "
        "return) as the O-DICE authors did on locomotion data, 'auto' = that for HalfCheetah, "
        "Hopper and Walker2d and none otherwise, 'none', or a number",
    )
    max_episode_steps: int = Field(
        1000, ge=1, description="episode length cap used by the return-range reward scaling"
    )
    zero_rewards: bool = Field(
        False, description="replace every reward by 0 (offline imitation from expert data)"
    )
    normalize_obs: bool = Field(
        False,
        description="standardise observations with the dataset's mean and std + 1e-3 (saved "
        "with the model; the authors' offline-imitation setting)",
    )
    episodes: list[int] | None = Field(
        None, description="keep only these episodes (0-based), e.g. [1] for one expert trajectory"
    )


class ExperimentConfig(Strict):
    """A whole experiment: what `rlkit train` runs and what is written to RUN_DIR/config.yaml."""

    env: EnvConfig
    agent: AgentConfig
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    seed: int = Field(0, ge=0, description="random seed of everything")
    attack: AttackConfig | None = Field(None, description="attacks for `rlkit evaluate --attack`")
    dataset: DatasetConfig | None = Field(
        None, description="offline data of offline agents (odice, bc); env defaults to dataset.env"
    )
    adversarial: AdversarialConfig | None = Field(
        None, description="adversarial training: attack the live policy's training observations"
    )

    @model_validator(mode="before")
    @classmethod
    def _env_from_dataset(cls, data: Any) -> Any:
        """An offline config may name its evaluation env only as ``dataset.env``."""
        if isinstance(data, dict) and "env" not in data:
            dataset = data.get("dataset")
            if isinstance(dataset, dict) and isinstance(dataset.get("env"), str):
                return {**data, "env": {"id": dataset["env"]}}
        return data

    @model_validator(mode="after")
    def _dataset_env_matches(self) -> ExperimentConfig:
        if self.dataset is not None and self.dataset.env not in (None, self.env.id):
            raise ValueError(
                f"dataset.env {self.dataset.env!r} differs from env.id {self.env.id!r}: give one"
            )
        return self


# ---------------------------------------------------------------------------------------------
# loading


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with ``safe_load``; ConfigError if missing, unreadable or not a mapping.

    :param path: the file.
    """
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
        started = f" ({context} started at line {start.line + 1})" if context and start else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}{started}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base`` (mappings merge, other values
    replace)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_raw(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read ``path`` and resolve its ``extends`` chain into one mapping.

    :param path: the config file.
    """
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular 'extends'")
    data = read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: key 'extends': expected a file path, got {parent!r}")
    parent_path = (path.parent / parent).resolve()
    if not parent_path.is_file():
        raise ConfigError(
            f"{path}: key 'extends': file {parent!r} not found (looked at {parent_path})"
        )
    return deep_merge(load_raw(parent_path, (*_seen, path)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], value), the value typed by YAML.

    :param text: one command-line override.
    """
    key, sep, value = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected key.sub=value")
    try:
        parsed = yaml_load(value) if value else None
    except yaml.YAMLError:
        parsed = value
    return key.split("."), parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides to a raw config mapping (returns a new mapping).

    :param data: the raw config.
    :param overrides: the overrides, applied in order.
    """
    data = deep_merge(data, {})
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                dotted = ".".join(keys[: depth + 1])
                raise ConfigError(f"override {text!r}: {dotted!r} is a value, not a section")
            else:
                child = node[key] = dict(child)
            node = child
        node[keys[-1]] = value
    return data


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The config model (inside ``root``) owning the field at ``loc``, for did-you-mean hints."""
    model: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if model is None:
            # list[AttackSpec] and friends
            for c in candidates:
                for sub in getattr(c, "__args__", ()):
                    if isinstance(sub, type) and issubclass(sub, BaseModel):
                        model = sub
    return model


def describe_error(
    err: dict[str, Any], source: str, model: type[BaseModel] | None = None, prefix: str = ""
) -> str:
    """Turn one pydantic error into "FILE: key 'a.b': given X; allowed: ..." text.

    :param err: one item of ``ValidationError.errors()``.
    :param source: the file (or "command line") the value came from.
    :param model: the model that was validated (for did-you-mean on unknown keys).
    :param prefix: dotted prefix of ``model`` inside the whole config.
    """
    loc = err.get("loc", ())
    dotted = (prefix + ".".join(str(p) for p in loc)).rstrip(".") or "(top level)"
    kind = err.get("type", "")
    given = err.get("input")
    if kind == "extra_forbidden":
        owner = _model_at(model or ExperimentConfig, tuple(loc))
        allowed = list(owner.model_fields) if owner else []
        hint = close_matches(str(loc[-1]), allowed)
        mean = f" (did you mean {'.'.join([*dotted.split('.')[:-1], hint[0]])!r}?)" if hint else ""
        return f"{source}: unknown key {dotted!r}{mean}; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return f"{source}: key {dotted!r} is required"
    allowed = err.get("msg", "")
    if isinstance(given, dict | list):  # a whole section failed a cross-field check
        return f"{source}: key {dotted!r}: {allowed.removeprefix('Value error, ')}"
    return (
        f"{source}: key {dotted!r}: given {given!r}; "
        f"{allowed[0].lower() + allowed[1:] if allowed else 'invalid'}"
    )


def validation_message(
    error: ValidationError, source: str, model: type[BaseModel] | None = None, prefix: str = ""
) -> str:
    """All errors of a pydantic ValidationError, one per line."""
    return "\n".join(describe_error(dict(e), source, model, prefix) for e in error.errors())


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, data: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Load and validate an experiment config.

    :param path: the YAML file (None when ``data`` is given).
    :param overrides: ``key.sub=value`` strings applied after the file.
    :param data: a raw mapping used instead of reading ``path``.
    :return: the validated config; names and kwargs are checked against the registries.
    :raises ConfigError: with a message naming the file, key, value and what is allowed.
    """
    source = str(path) if path is not None else "config"
    if data is None and path is None:
        raise ConfigError("no config file given")
    raw = load_raw(Path(str(path))) if data is None else dict(data)
    overrides = overrides or []
    raw = apply_overrides(raw, overrides)
    if overrides:
        source += f" (with overrides {' '.join(overrides)})"
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(validation_message(err, source, ExperimentConfig)) from None
    from rlkit.catalog import check_names  # the catalog imports config: import late

    check_names(config, source)
    return config


def load_attack_config(path: str | Path, eps: list[float] | None = None) -> AttackConfig:
    """Read an attack config: a YAML file with an ``attack:`` section (or only that section).

    :param path: the YAML file.
    :param eps: budgets replacing every attack's budgets (``--eps``).
    """
    raw = load_raw(Path(path))
    section = raw.get("attack", raw) if isinstance(raw, dict) else raw
    source = str(path)
    try:
        config = AttackConfig.model_validate(section)
    except ValidationError as err:
        raise ConfigError(validation_message(err, source, AttackConfig, prefix="attack.")) from None
    if eps is not None:
        config = config.model_copy(
            update={
                "eps": eps,
                "attacks": [a.model_copy(update={"eps": None}) for a in config.attacks],
            }
        )
    from rlkit.catalog import check_attacks

    check_attacks(config, source)
    return config


def parse_eps(text: str) -> list[float]:
    """Parse ``--eps 0.01,0.03`` into floats (ConfigError on bad input)."""
    try:
        values = [float(budget_value(v.strip())) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            f"--eps {text!r}: expected comma-separated numbers, e.g. 0.01,0.03,0.05 or 2/255,8/255"
        ) from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise ConfigError(f"--eps {text!r}: expected one or more finite budgets >= 0")
    return values


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as YAML text; loading it gives the same config."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
