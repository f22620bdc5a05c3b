"""Adversarial training (the ``adversarial`` config section): training observations perturbed by
an attack on the agent's live policy.

The attack is any registered attack (``pgd``, ``bifurcation``, ...), built on
``agent.policy_view(live=True)``: the view shares the training weights, so every perturbation is
computed against the policy as it is at that step, not a copy taken when training started. Each
training observation is attacked with probability ``adversarial.probability`` (independently per
env and step) once ``adversarial.start_step`` env steps are done; the agent stores and learns from
what it saw. The budget is built as an evaluation budget (``eps``, ``mask`` and ``scale`` groups
in the raw observation space); ``terminal_observation`` (used to bootstrap) stays clean.

In the stable-baselines3 loop it is a ``VecEnvWrapper`` placed under any ``VecNormalize``; in
the native online loop (drqv2, mentor) the loop perturbs each observation as it arrives, stores the
perturbed one (the final observation of an episode stays clean, as in SB3) and saves the attack's
random state with its checkpoints, so a resumed run continues exactly. Stacked frames are not
supported there: a perturbed stack would not continue the previous one frame by frame. Fused
observations (pixels + state, :mod:`rlkit.attacks.fused`) have their image attacked, the state
kept clean.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from rlkit.attacks.evaluation import build_budget
from rlkit.attacks.fused import FusedContext, attacked_space
from rlkit.attacks.pixels import raw_settings, resolve_units
from rlkit.attacks.wrappers import _run_attack
from rlkit.config import AdversarialConfig, ConfigError


class LiveAttack:
    """The training-time attack, bound to the agent once it exists.

    :param config: the ``adversarial`` section.
    :param seed: seed of the attack-or-not draws.
    """

    def __init__(self, config: AdversarialConfig, seed: int) -> None:
        self.config = config
        self.attack: Any = None
        self.fused: FusedContext | None = None
        self.rng = np.random.default_rng(seed)
        self.device = torch.device("cpu")

    def bind(self, agent: Any, probe_env: Any) -> None:
        """Build the attack on ``agent``'s live policy view.

        :param agent: the agent (``policy_view(live=True)``).
        :param probe_env: an env of the run's kind (observation groups and bounds).
        """
        from rlkit.attacks.attacks import policy_device
        from rlkit.catalog import build_attack

        spec, eps = self.config.attack, self.config.eps
        space = probe_env.observation_space
        try:  # as an evaluation reads them: pixel budgets and step sizes in 0..255 fractions
            units = resolve_units("auto", attacked_space(space), [eps])
        except ValueError as err:
            raise ConfigError(f"adversarial: {err}") from None
        budget = build_budget(spec, eps, probe_env, units)
        view = agent.policy_view(live=True)
        if isinstance(space, gym.spaces.Dict):
            self.fused = FusedContext(space, view)
        self.attack = build_attack(
            spec.name, view, budget, raw_settings(spec.settings, units, spec.name)
        )
        self.device = policy_device(view)

    def rows(self, n: int, steps_done: int) -> np.ndarray:
        """Which of ``n`` observations to attack now.

        :param n: observations in the batch.
        :param steps_done: env steps so far.
        """
        if self.attack is None or steps_done < self.config.start_step:
            return np.zeros(n, dtype=bool)
        return self.rng.random(n) < self.config.probability

    def perturb(self, obs: Any, t: np.ndarray, steps_done: int) -> tuple[Any, int]:
        """Attack the rows :meth:`rows` draws; return the batch and how many were attacked.

        :param obs: (N, ...) clean observations, or a dict batch of fused ones (the image is
            attacked, the states are the policy's context).
        :param t: (N,) episode step of each.
        :param steps_done: env steps so far.
        """
        image = obs if self.fused is None else self.fused.split(obs)
        rows = self.rows(len(image), steps_done)
        if not rows.any():
            return obs, 0
        if self.fused is not None:
            self.fused.feed(rows, self.device)
        adv, _ = _run_attack(self.attack, image, t.copy(), self.device, rows)
        adv = adv.astype(image.dtype, copy=False)
        return (adv if self.fused is None else self.fused.join(obs, adv)), int(rows.sum())

    def state(self) -> dict[str, Any]:
        """The attack-or-not generator's state and the attack's own (a seeded random attack or
        random start), for exact resume."""
        from rlkit.seeding import generator_state

        state: dict[str, Any] = {"rng": generator_state(self.rng)}
        attack_rng = getattr(self.attack, "random_state", lambda: None)()
        if attack_rng is not None:
            state["attack_rng"] = attack_rng
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`.

        :param state: what :meth:`state` returned.
        """
        from rlkit.seeding import set_generator_state

        set_generator_state(self.rng, state["rng"])
        if "attack_rng" in state and hasattr(self.attack, "set_random_state"):
            self.attack.set_random_state(state["attack_rng"])


class AdversarialVecEnv(VecEnvWrapper):
    """An SB3 VecEnv whose observations the :class:`LiveAttack` perturbs.

    ``attacked_steps`` counts attacked observations, ``steps`` all of them.

    :param venv: the training VecEnv (raw observations).
    :param live: the training-time attack.
    """

    def __init__(self, venv: VecEnv, live: LiveAttack) -> None:
        super().__init__(venv)
        self.live = live
        self.t = np.zeros(venv.num_envs, dtype=np.int64)
        self.steps = 0
        self.attacked_steps = 0

    def _perturb(self, obs: np.ndarray) -> np.ndarray:
        adv, attacked = self.live.perturb(obs, self.t, self.steps)
        self.steps += len(obs)
        self.attacked_steps += attacked
        return adv

    def reset(self) -> Any:
        """Reset every env; the first observations may be attacked too."""
        obs = self.venv.reset()
        self.t[:] = 0
        return self._perturb(np.asarray(obs))

    def step_wait(self) -> Any:
        """Step, advance the per-env episode clocks, perturb the new observations."""
        obs, rewards, dones, infos = self.venv.step_wait()
        self.t += 1
        self.t[np.asarray(dones, dtype=bool)] = 0  # SB3 autoresets: obs is the next episode's
        return self._perturb(np.asarray(obs)), rewards, dones, infos
