"""Adroit hand tasks (gymnasium-robotics ``AdroitHand{Door,Hammer,Pen,Relocate}-v1``, on the pinned
mujoco 3.3.0) as the MENTOR authors ran them (``env.id: adroit/door``).

Pixels (default): 84x84 RGB, frame stack 1, action repeat 2, and the hand's 24 joint positions
(the authors' "sensor" state: ``qpos`` without the arm and object joints) fused in: the
observation is a ``Dict`` with ``"pixels"`` ``(3*k, 84, 84)`` uint8 and ``"state"`` ``(24,)``
float32. State (``pixels: false``): gymnasium-robotics' full observation vector as float32.

Episodes last the authors' horizons (200 simulator steps, pen 100: 100 / 50 agent steps).
``info["success"]`` is the authors' rule: the goal was achieved on more than 25 simulator steps of
the episode so far (more than 20 on pen); ``info["episode_kpis"]["success"]`` reports it at the
end. Rewards are rescaled as the authors did (door 1/20, hammer 1/100, pen 1/50, relocate 1/30).

Cameras: the authors' ``top`` (door, hammer) and ``cam1..3`` (relocate) are not in
gymnasium-robotics' models, so door and hammer use a free camera at the authors' ``top`` pose
(straight down from 1.5 m / 1.1 m), pen the shared ``vil_camera``, relocate ``vil_camera``
(one camera instead of the authors' three). Image rows are bottom-up as the authors' mujoco-py
renders returned them (``bottom_up: false`` for upright images). Always close the env: an EGL
context still alive at interpreter exit raises.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rlkit.envs.metaworld import EpisodeSuccess
from rlkit.envs.pixels import (
    ActionRepeat,
    FrameStack,
    RenderedGymTask,
    ensure_render_backend,
    pixel_space,
    unit_action_space,
)

ADROIT_TASKS: tuple[str, ...] = ("door", "hammer", "pen", "relocate")
#: simulator steps per episode (mj_envs' v0 registrations the authors used)
HORIZON = {"door": 200, "hammer": 200, "pen": 100, "relocate": 200}
#: the authors' reward scale
REWARD_SCALE = {"door": 1 / 20, "hammer": 1 / 100, "pen": 1 / 50, "relocate": 1 / 30}
#: success: goal achieved on more than this many simulator steps (mj_envs' thresholds)
GOAL_STEPS = {"door": 25, "hammer": 25, "pen": 20, "relocate": 25}
#: qpos slice of the 24 hand joints (the authors' rrl_multicam get_obs)
HAND_QPOS = {
    "door": slice(4, -2),
    "hammer": slice(2, -7),
    "pen": slice(0, -6),
    "relocate": slice(6, -6),
}
#: free cameras (lookat, distance, azimuth, elevation) standing in for the authors' ``top``
TOP_CAMERAS = {
    "door": ((0.0, 0.0, 0.0), 1.5, 90.0, -90.0),
    "hammer": ((0.0, 0.0, 0.0), 1.1, 90.0, -90.0),
}
HAND_DOFS = 24


class AdroitParams(BaseModel):
    """Settings of an Adroit task (``env.id: adroit/<task>``).

    :param pixels: observe frames plus the 24-dim hand state (true) or the full state (false).
    :param size: image height and width.
    :param camera: camera name, or "default" for the per-task camera (see the module doc).
    :param frame_stack: frames stacked in a pixel observation (the authors: 1).
    :param action_repeat: simulator steps per agent step (rewards summed).
    :param reward_rescale: scale rewards as the authors did.
    :param bottom_up: image rows bottom-up (the authors' mujoco-py images).
    :param hand_state: with pixels, fuse the 24-dim hand state (a Dict observation).
    """

    model_config = ConfigDict(extra="forbid")

    pixels: bool = Field(True, description="frames + 24-dim hand state (true) or full state")
    size: int = Field(84, ge=16, le=512, description="image height and width in pixels")
    camera: str = Field("default", description="camera name, or 'default' (per task)")
    frame_stack: int = Field(1, ge=1, description="frames stacked (the MENTOR authors: 1)")
    action_repeat: int = Field(2, ge=1, description="simulator steps per agent step")
    reward_rescale: bool = Field(True, description="scale rewards as the MENTOR authors did")
    bottom_up: bool = Field(
        True, description="image rows bottom-up, as the authors' mujoco-py renders returned them"
    )
    hand_state: bool = Field(
        True,
        description="pixels: fuse the 24-dim hand state (Dict observation, as the authors); "
        "false: frames only (a uint8 Box)",
    )


def check_task(task: str) -> str:
    """Return ``task`` if it is an Adroit task.

    :param task: ``door``, ``hammer``, ``pen`` or ``relocate``.
    :raises ValueError: otherwise (the message lists them).
    """
    if task not in ADROIT_TASKS:
        raise ValueError(f"unknown Adroit task {task!r}; allowed: {', '.join(ADROIT_TASKS)}")
    return task


def task_camera(task: str, camera: str) -> Any:
    """The camera to render ``task`` with: a name, or a free ``mujoco.MjvCamera``.

    :param task: the Adroit task.
    :param camera: a camera name, or ``"default"``.
    """
    if camera != "default":
        return camera
    if task not in TOP_CAMERAS:
        return "vil_camera"
    import mujoco

    lookat, distance, azimuth, elevation = TOP_CAMERAS[task]
    free = mujoco.MjvCamera()
    free.type = mujoco.mjtCamera.mjCAMERA_FREE
    free.lookat[:] = lookat
    free.distance, free.azimuth, free.elevation = distance, azimuth, elevation
    return free


class AdroitEnv(RenderedGymTask, gym.Env[Any, np.ndarray]):
    """One Adroit task, one simulator step per ``step``; counts the steps with the goal achieved.

    :param task: ``door``, ``hammer``, ``pen`` or ``relocate``.
    :param pixels: observe one frame (true) or the full state vector (false).
    :param size: image height and width.
    :param camera: camera name or ``"default"``.
    :param reward_rescale: scale rewards as the authors did.
    :param bottom_up: image rows bottom-up (the authors' mujoco-py images).
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        pixels: bool = True,
        size: int = 84,
        camera: str = "default",
        reward_rescale: bool = True,
        bottom_up: bool = True,
    ) -> None:
        self.task_name = check_task(task)
        self._bottom_up = bottom_up
        ensure_render_backend()
        try:
            import gymnasium_robotics
        except ImportError as err:
            raise ValueError(
                "Adroit needs gymnasium-robotics: pip install gymnasium-robotics==1.4.2"
            ) from err
        gym.register_envs(gymnasium_robotics)
        name = f"AdroitHand{task.capitalize()}-v1"
        self._env = gym.make(name, max_episode_steps=HORIZON[task], disable_env_checker=True)
        self.pixels, self.render_mode = pixels, "rgb_array"
        self._scale = REWARD_SCALE[task] if reward_rescale else 1.0
        self._size, self._camera = size, task_camera(task, camera)
        self._renderer = None
        self._goal_steps = 0
        self.action_space = unit_action_space(int(self._env.action_space.shape[0]))  # type: ignore[index]
        if pixels:
            self.observation_space = pixel_space(3, size)
        else:
            dim = int(self._env.observation_space.shape[0])  # type: ignore[index]
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)

    def hand_state(self) -> np.ndarray:
        """The 24 hand joint positions (the authors' proprioceptive "sensor" input), float32."""
        qpos = self._env.unwrapped.data.qpos  # type: ignore[attr-defined]
        return np.asarray(qpos[HAND_QPOS[self.task_name]], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode.

        :param seed: seeds the task's initial state.
        :param options: unused.
        """
        super().reset(seed=seed)
        state, _ = self._env.reset(seed=seed)
        self._goal_steps = 0
        return self._observe(state), {"success": False, "goal_steps": 0}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        """One simulator step.

        :param action: in [-1, 1] (gymnasium-robotics' own bounds).
        """
        unit = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        state, reward, terminated, truncated, info = self._env.step(unit)
        self._goal_steps += int(bool(info.get("success", False)))
        info = {
            "goal_achieved": bool(info.get("success", False)),
            "goal_steps": self._goal_steps,
            "success": self._goal_steps > GOAL_STEPS[self.task_name],
        }
        return self._observe(state), float(reward) * self._scale, terminated, truncated, info

    def _observe(self, state: np.ndarray) -> np.ndarray:
        return self._frame() if self.pixels else np.asarray(state, dtype=np.float32)


class FuseHandState(gym.Wrapper):
    """Observation ``{"pixels": stacked frames, "state": 24 hand joint positions}``.

    Forwards ``frame_stack`` and ``frame_shape`` of the frame stack it wraps.

    :param env: a :class:`FrameStack` over an :class:`AdroitEnv` chain.
    """

    def __init__(self, env: FrameStack) -> None:
        super().__init__(env)
        self.frame_stack, self.frame_shape = env.frame_stack, env.frame_shape
        state = gym.spaces.Box(-np.inf, np.inf, (HAND_DOFS,), dtype=np.float32)
        self.observation_space = gym.spaces.Dict({"pixels": env.observation_space, "state": state})

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset and fuse.

        :param kwargs: passed to the wrapped env's reset.
        """
        pixels, info = self.env.reset(**kwargs)
        return self._fuse(pixels), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict]:
        """Step and fuse.

        :param action: the action.
        """
        pixels, reward, terminated, truncated, info = self.env.step(action)
        return self._fuse(pixels), reward, terminated, truncated, info

    def _fuse(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        hand: AdroitEnv = self.env.unwrapped  # type: ignore[assignment]
        return {"pixels": pixels, "state": hand.hand_state()}


def make_adroit_env(task: str, **kwargs: Any) -> gym.Env:
    """Factory used by the rlkit registry: an Adroit task as the MENTOR authors ran it.

    :param task: ``door``, ``hammer``, ``pen`` or ``relocate`` (bound by ``adroit/<task>``).
    :param kwargs: :class:`AdroitParams` fields.
    """
    params = AdroitParams.model_validate(kwargs)
    env: gym.Env = AdroitEnv(
        task, params.pixels, params.size, params.camera, params.reward_rescale, params.bottom_up
    )
    env = EpisodeSuccess(ActionRepeat(env, params.action_repeat))
    if params.pixels:
        stacked = FrameStack(env, params.frame_stack)
        env = FuseHandState(stacked) if params.hand_state else stacked
    return env
