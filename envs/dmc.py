"""DeepMind Control Suite tasks as gymnasium envs (``env.id: dmc/<domain>-<task>``).

Pixels (default): 84x84 RGB from camera 0 (2 for quadruped, as DrQ-v2), action repeat 2, 3 frames
stacked into ``(9, 84, 84)`` uint8. State (``pixels: false``): the task's observation dict
flattened in dm_control's own key order, float32. Actions are ``Box(-1, 1)`` float32, rescaled to
the task's bounds. An episode is 1000 env steps (500 agent steps with action repeat 2) and ends
``truncated``; ``terminated`` only if the task itself ends with discount 0.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rlkit.envs.pixels import (
    ActionRepeat,
    FrameStack,
    RenderedTask,
    ensure_render_backend,
    pixel_space,
    unit_action_space,
)

#: every ``domain-task`` of dm_control 1.0.28's ``suite.ALL_TASKS`` (tests check they match)
_DMC_TASKS_WORDS = (
    "acrobot-swingup acrobot-swingup_sparse ball_in_cup-catch cartpole-balance "
    "cartpole-balance_sparse cartpole-swingup cartpole-swingup_sparse cartpole-two_poles "
    "cartpole-three_poles cheetah-run dog-stand dog-walk dog-trot dog-run dog-fetch finger-spin "
    "finger-turn_easy finger-turn_hard fish-upright fish-swim hopper-stand hopper-hop "
    "humanoid-stand humanoid-walk humanoid-run humanoid-run_pure_state humanoid_CMU-stand "
    "humanoid_CMU-walk humanoid_CMU-run lqr-lqr_2_1 lqr-lqr_6_2 manipulator-bring_ball "
    "manipulator-bring_peg manipulator-insert_ball manipulator-insert_peg pendulum-swingup "
    "point_mass-easy point_mass-hard quadruped-walk quadruped-run quadruped-escape "
    "quadruped-fetch reacher-easy reacher-hard stacker-stack_2 stacker-stack_4 swimmer-swimmer6 "
    "swimmer-swimmer15 walker-stand walker-walk walker-run"
)
DMC_TASKS: tuple[str, ...] = tuple(_DMC_TASKS_WORDS.split())


class DMCParams(BaseModel):
    """Settings of a DeepMind Control task (``env.id: dmc/<domain>-<task>``).

    :param pixels: observe 84x84 RGB frames (true) or the flattened state vector (false).
    :param size: image height and width.
    :param camera: camera id (default: 0, or 2 for quadruped as DrQ-v2).
    :param frame_stack: frames stacked in a pixel observation.
    :param action_repeat: env steps per agent step (rewards summed).
    """

    model_config = ConfigDict(extra="forbid")

    pixels: bool = Field(True, description="observe RGB frames (true) or the state vector (false)")
    size: int = Field(84, ge=16, le=512, description="image height and width in pixels")
    camera: int | None = Field(
        None, ge=0, description="camera id (default: 0, or 2 for quadruped as DrQ-v2)"
    )
    frame_stack: int = Field(3, ge=1, description="frames stacked in a pixel observation")
    action_repeat: int = Field(2, ge=1, description="env steps per agent step (rewards summed)")


def split_task(task: str) -> tuple[str, str]:
    """``"cartpole-swingup"`` -> ``("cartpole", "swingup")``.

    :param task: a name of :data:`DMC_TASKS`.
    :raises ValueError: not a dm_control task (the message lists them).
    """
    if task not in DMC_TASKS:
        raise ValueError(f"unknown DeepMind Control task {task!r}; allowed: {', '.join(DMC_TASKS)}")
    domain, _, name = task.partition("-")
    return domain, name


def default_camera(domain: str) -> int:
    """DrQ-v2's camera: 2 for quadruped (the tracking camera), 0 otherwise.

    :param domain: the dm_control domain.
    """
    return 2 if domain == "quadruped" else 0


class DMCEnv(RenderedTask, gym.Env[np.ndarray, np.ndarray]):
    """One dm_control task, one env step per ``step`` (no action repeat, no stacking).

    Observations are single ``(3, size, size)`` uint8 frames (``pixels``) or float32 state
    vectors. ``reset(seed=s)`` reseeds the task's random state, so an episode is a function of the
    seed and the actions.

    :param task: ``"<domain>-<task>"`` (see :data:`DMC_TASKS`).
    :param pixels: observe frames (true) or the flattened state (false).
    :param size: image height and width.
    :param camera: camera id (None: :func:`default_camera`).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self, task: str, pixels: bool = True, size: int = 84, camera: int | None = None
    ) -> None:
        domain, name = split_task(task)
        ensure_render_backend()
        from dm_control import suite

        self.task_name = task
        self.pixels = pixels
        self.render_mode = "rgb_array"
        self._env = suite.load(domain, name, task_kwargs={"random": 0})
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float64), spec.maximum.astype(np.float64)
        self.action_space = unit_action_space(int(spec.shape[0]))
        self._camera = default_camera(domain) if camera is None else camera
        self._size = size
        self._renderer = None
        if pixels:
            self.observation_space = pixel_space(3, size)
        else:
            dim = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode.

        :param seed: reseeds the task's random state (initial pose, targets).
        :param options: unused.
        """
        super().reset(seed=seed)
        if seed is not None:
            # the suite draws initial states from task.random; reseeding it makes episodes
            # reproducible without rebuilding physics (and the renderer bound to its model)
            self._env.task._random = np.random.RandomState(seed)
        time_step = self._env.reset()
        return self._observe(time_step), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        """One physics control step.

        :param action: in [-1, 1], rescaled to the task's action bounds.
        """
        unit = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        scaled = self._low + (unit + 1.0) * 0.5 * (self._high - self._low)
        time_step = self._env.step(scaled)
        ended = time_step.last()
        terminated = bool(ended and time_step.discount == 0.0)
        return (
            self._observe(time_step),
            float(time_step.reward or 0.0),
            terminated,
            (ended and not terminated),
            {},
        )

    def close(self) -> None:
        """Free the renderer's OpenGL context."""
        self._close_renderer()

    def _model_and_data(self) -> tuple[Any, Any]:
        physics = self._env.physics
        return physics.model.ptr, physics.data.ptr

    def _observe(self, time_step: Any) -> np.ndarray:
        if self.pixels:
            return self._frame()
        parts = [np.asarray(v, dtype=np.float32).ravel() for v in time_step.observation.values()]
        return np.concatenate(parts)


def make_dmc_env(task: str, **kwargs: Any) -> gym.Env:
    """Factory used by the rlkit registry: a DMC task with action repeat and frame stacking.

    :param task: ``"<domain>-<task>"`` (bound by the registry entry ``dmc/<domain>-<task>``).
    :param kwargs: :class:`DMCParams` fields.
    """
    params = DMCParams.model_validate(kwargs)
    env: gym.Env = DMCEnv(task, pixels=params.pixels, size=params.size, camera=params.camera)
    env = ActionRepeat(env, params.action_repeat)
    if params.pixels:
        env = FrameStack(env, params.frame_stack)
    return env
