"""ATLA (Zhang et al., ICLR 2021): a victim and a learned adversary trained in alternation, one run
directory holding both (``agent.name: atla``, trained by :class:`rlkit.loops.atla.ATLALoop`).

The victim and the adversary are stable-baselines3 agents (``agent.kwargs.victim`` and
``agent.kwargs.adversary``, each an ``agent`` section). The adversary perturbs the victim's
observations as the ``adversary`` env does (:mod:`rlkit.envs.adversary`); its reward is minus the
victim's. The schedule is the authors' (their ``ATLA.ipynb``: 100 victim episodes then 20
adversary episodes per alternation, victim first, models never reset between alternations, the
adversary a SAC with 2x256 layers), given in env steps: ``victim_steps`` and ``adversary_steps``
per alternation; ``train.total_steps`` counts the steps of both.

A trained ATLA run evaluates and is attacked like any other run (its policy is the victim's); its
adversary attacks other victims with ``{name: learned, settings: {adversary: ATLA_RUN}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import Field

from rlkit.agents.sb3 import SB3Agent
from rlkit.attacks.learned import PerturbationFields
from rlkit.config import AgentConfig, ExperimentConfig
from rlkit.policy import PolicyView

VICTIM, ADVERSARY = "victim", "adversary"


class ATLAParams(PerturbationFields):
    """``agent.kwargs`` of ``atla``."""

    victim: AgentConfig = Field(description="the victim: an SB3 agent section (e.g. ppo)")
    adversary: AgentConfig = Field(
        default_factory=lambda: AgentConfig(name="sac", net_arch=[256, 256]),
        description="the adversary: an SB3 agent section with continuous actions (the "
        "authors': sac, 2x256)",
    )
    victim_steps: int = Field(ge=1, description="victim env steps per alternation")
    adversary_steps: int = Field(ge=1, description="adversary env steps per alternation")
    adversary_first: bool = Field(
        False, description="start each alternation with the adversary (the authors: victim first)"
    )


class ATLAAgent:
    """The victim and the adversary as one agent: it acts, evaluates and is attacked as the
    victim; it saves and loads both.

    :param victim: the victim.
    :param adversary: the adversary (None when loading the victim for evaluation).
    """

    def __init__(self, victim: SB3Agent, adversary: SB3Agent | None = None) -> None:
        self.victim, self.adversary = victim, adversary

    @property
    def action_kind(self) -> str:
        """The victim's action kind."""
        return self.victim.action_kind

    def act(self, obs: np.ndarray, step: int = 0, explore: bool = False) -> np.ndarray:
        """The victim's actions.

        :param obs: observations (B, n).
        :param step: unused.
        :param explore: sample instead of the deterministic action.
        """
        return self.victim.act(obs, step, explore)

    def policy_view(self, live: bool = False) -> PolicyView:
        """The victim's differentiable policy view.

        :param live: share the training weights.
        """
        return self.victim.policy_view(live)

    def on_episode_end(self, info: dict[str, Any]) -> None:
        """Nothing to do (SB3 keeps its own episode counters).

        :param info: the final step's info.
        """

    def save(self, folder: Path, with_buffer: bool = True) -> None:
        """Both agents, in ``folder/victim`` and ``folder/adversary``.

        :param folder: the checkpoint or final folder.
        :param with_buffer: include the replay buffers.
        """
        for name, agent in ((VICTIM, self.victim), (ADVERSARY, self.adversary)):
            if agent is not None:
                (Path(folder) / name).mkdir(exist_ok=True)
                agent.save(Path(folder) / name, with_buffer=with_buffer)

    def load(self, folder: Path, policy_only: bool = False) -> None:
        """Restore :meth:`save` (the adversary only when there is one to restore into). A plain
        SB3 run's folder (``agent.init_from: RUN``) gives the victim its policy, as the authors
        started their ATLA victim from a trained PPO.

        :param folder: the folder.
        :param policy_only: policy weights only.
        """
        folder = Path(folder)
        own = (folder / VICTIM).is_dir()
        self.victim.load(folder / VICTIM if own else folder, policy_only=policy_only)
        if self.adversary is not None and (folder / ADVERSARY).is_dir():
            self.adversary.load(folder / ADVERSARY, policy_only=policy_only)

    def load_zip_policy(self, path: Path) -> None:
        """Start the victim from an SB3 zip's policy (``agent.init_from: ZIP``, e.g. the authors'
        released PPO, as their ATLA victim started from a trained PPO).

        :param path: the zip.
        """
        self.victim.load_zip_policy(path)


def sb3_agent(
    agent: AgentConfig,
    config: ExperimentConfig,
    spaces: tuple[gym.Space, gym.Space] | None,
    env: Any,
) -> SB3Agent:
    """One of the pair as an SB3 agent.

    :param agent: its agent section.
    :param config: the experiment (seed, device, total steps).
    :param spaces: (observation, action) spaces when there is no env.
    :param env: its training VecEnv, or None.
    """
    from rlkit.catalog import SB3_ALGOS

    if agent.name not in SB3_ALGOS:
        raise ValueError(
            f"atla: agent {agent.name!r} is not a stable-baselines3 agent ({', '.join(SB3_ALGOS)})"
        )
    return SB3Agent(
        SB3_ALGOS[agent.name][0],
        agent,
        env=env,
        spaces=spaces,
        seed=config.seed,
        device=config.train.device,
        total_steps=config.train.total_steps,
    )


def build_atla(
    config: ExperimentConfig,
    observation_space: gym.Space,
    action_space: gym.Space,
    env: Any = None,
) -> ATLAAgent:
    """Registry factory: the victim only (for loading and evaluation); the loop builds the pair
    on its training envs.

    :param config: the experiment config.
    :param observation_space: the env's observation space.
    :param action_space: the env's action space.
    :param env: unused.
    """
    params = ATLAParams.model_validate(config.agent.kwargs)
    return ATLAAgent(sb3_agent(params.victim, config, (observation_space, action_space), None))
