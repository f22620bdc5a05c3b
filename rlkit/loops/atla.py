"""The ATLA loop: a victim and its learned adversary trained in alternation (see
:mod:`rlkit.agents.atla`).

Each alternation runs ``model.learn`` of one, then of the other, models never reset (the
authors' ``reset_num_timesteps=False``). The victim learns on a :class:`~rlkit.envs.adversary.
VictimEnv` (observations perturbed by the adversary's current policy); the adversary on an
:class:`~rlkit.envs.adversary.AdversaryEnv` (the victim's current policy acting on what it
perturbs). The run's step is the sum of both models' env steps, so checkpoints taken inside
either phase are ordered, and a resumed run picks up mid-alternation: the phase and how far it got
are read back from the two models' step counters.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger

from rlkit.agents.atla import (
    ADVERSARY,
    VICTIM,
    ATLAAgent,
    ATLAParams,
    sb3_agent,
)
from rlkit.attacks.evaluation import build_budget
from rlkit.attacks.learned import PERTURBATION_FILE, Perturbation, trace_scale
from rlkit.config import AttackSpec, ConfigError
from rlkit.envs import make_env
from rlkit.envs.adversary import AdversaryEnv, VictimEnv, clean_trace
from rlkit.io import atomic_write_json
from rlkit.loops.common import Schedules, TrainLoop


class _Writer(KVWriter):
    """SB3's logger of one of the pair into rlkit's metrics, keys prefixed, at the run's step."""

    def __init__(self, loop: ATLALoop, prefix: str) -> None:
        self.loop, self.prefix = loop, prefix

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0
    ) -> None:
        numeric = {
            f"{self.prefix}/{k}": v
            for k, v in key_values.items()
            if isinstance(v, int | float | np.number) and not isinstance(v, bool)
        }
        if numeric:
            self.loop.log.log(self.loop.total_steps_done(), numeric)

    def close(self) -> None:
        pass


class _Hooks(BaseCallback):
    def __init__(self, loop: ATLALoop, schedules: Schedules) -> None:
        super().__init__()
        self.loop, self.schedules = loop, schedules

    def _on_step(self) -> bool:
        self.schedules.show(self.loop.total_steps_done())
        return True

    def _on_rollout_start(self) -> None:
        # as in the sb3 loop: the previous step is stored and trained on, a consistent state
        self.loop.step = self.loop.total_steps_done()
        self.schedules.tick(self.loop.step, self.loop.periodic_eval, self.loop.checkpoint)


class ATLALoop(TrainLoop):
    """Alternate victim and adversary training inside one run directory."""

    agent: ATLAAgent

    def build(self) -> None:
        """The budget, the two training envs and the pair of SB3 agents."""
        config = self.config
        if config.env.normalize_obs:
            raise ConfigError("atla: env.normalize_obs is not supported (the budget is raw)")
        self.params = params = ATLAParams.model_validate(config.agent.kwargs)
        self.probe = make_env(config.env)
        spec = AttackSpec(name="learned", mask=params.mask, scale=params.scale)
        budget = build_budget(spec, params.eps, self.probe)
        n = int(np.prod(self.probe.observation_space.shape))
        self.perturbation = Perturbation.from_budget(
            params.perturbation, budget, n, params.feature_scale, deferred=True
        )
        self.feature_scale = params.feature_scale
        self.victim_venv = make_vec_env(
            lambda: VictimEnv(make_env(config.env), self._adversary_act, self.perturbation),
            n_envs=config.env.n_envs,
            seed=config.seed,
        )
        self.adversary_venv = make_vec_env(
            lambda: AdversaryEnv(make_env(config.env), self._victim_act, self.perturbation),
            n_envs=config.env.n_envs,
            seed=config.seed + 1,
        )
        self.agent = ATLAAgent(
            sb3_agent(params.victim, config, None, self.victim_venv),
            sb3_agent(params.adversary, config, None, self.adversary_venv),
        )

    def _victim_act(self, obs: np.ndarray) -> np.ndarray:
        return self.agent.victim.act(obs)

    def _adversary_act(self, obs: np.ndarray) -> np.ndarray:
        assert self.agent.adversary is not None
        return self.agent.adversary.act(obs)

    def total_steps_done(self) -> int:
        """Env steps of the victim and the adversary together (the run's step)."""
        assert self.agent.adversary is not None
        return int(self.agent.victim.model.num_timesteps + self.agent.adversary.model.num_timesteps)

    def phases(self) -> Iterator[tuple[str, int]]:
        """(``"victim"`` or ``"adversary"``, that model's step count at the phase's end), in
        order, until ``train.total_steps`` is covered."""
        p = self.params
        alternations = math.ceil(
            self.config.train.total_steps / (p.victim_steps + p.adversary_steps)
        )
        order = (ADVERSARY, VICTIM) if p.adversary_first else (VICTIM, ADVERSARY)
        for k in range(1, alternations + 1):
            for who in order:
                yield who, k * (p.victim_steps if who == VICTIM else p.adversary_steps)

    def save_state(self, folder: Path) -> dict[str, Any]:
        """The feature scale the run trains with (fixed once computed).

        :param folder: the checkpoint folder.
        """
        return {"feature_scale": self.feature_scale}

    def load_state(self, folder: Path, meta: dict[str, Any]) -> None:
        """Restore the feature scale and the run's step.

        :param folder: the checkpoint folder.
        :param meta: its meta.json.
        """
        self._set_scale(meta.get("feature_scale"))
        self.step = self.total_steps_done()

    def _set_scale(self, scale: list[float] | None) -> None:
        if scale is not None and self.perturbation.kind == "scaled_sum":
            self.perturbation.set_feature_scale(scale)
            self.feature_scale = [float(v) for v in scale]

    def train(self, schedules: Schedules) -> None:
        """Run the remaining phases.

        :param schedules: evaluation/checkpoint schedules.
        """
        if self.perturbation.kind == "scaled_sum" and self.feature_scale is None:
            trace = clean_trace(self.probe, self._victim_act, seed=self.config.seed)
            self._set_scale(trace_scale(trace, self.params.statistic).tolist())
        for who, target in self.phases():
            agent = self.agent.victim if who == VICTIM else self.agent.adversary
            assert agent is not None
            model = agent.model
            remaining = target - int(model.num_timesteps)
            if remaining <= 0:
                continue
            model.set_logger(Logger(folder=None, output_formats=[_Writer(self, who)]))
            model.learn(
                remaining,
                callback=_Hooks(self, schedules),
                reset_num_timesteps=False,
                log_interval=1,
            )
            self.step = self.total_steps_done()

    def save_final(self, folder: Path) -> None:
        """Both models (weights only, plus SB3 zips) and the adversary's perturbation.

        :param folder: the temporary final folder.
        """
        self.agent.save(folder, with_buffer=False)
        for name, agent in ((VICTIM, self.agent.victim), (ADVERSARY, self.agent.adversary)):
            assert agent is not None
            agent.model.save(folder / name / "sb3_model.zip", exclude=["env", "replay_buffer"])
        p = self.params
        atomic_write_json(
            folder / PERTURBATION_FILE,
            {
                "perturbation": p.perturbation,
                "eps": p.eps,
                "mask": p.mask,
                "scale": p.scale,
                "feature_scale": self.feature_scale,
            },
        )

    def close(self) -> None:
        """Close the training envs."""
        self.victim_venv.close()
        self.adversary_venv.close()
        self.probe.close()
