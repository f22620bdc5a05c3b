"""Meta-World v3 tasks (gymnasium ``Meta-World/MT1``) as pixel or state envs
(``env.id: metaworld/<task>``, e.g. ``metaworld/reach`` for Meta-World's ``reach-v3``).

Pixels (default): 84x84 RGB from the ``corner2`` camera as the MENTOR authors saw it: placed
where they put it (``cam_pos = (0.75, 0.075, 0.7)``), rows bottom-up as mujoco-py's offscreen
render returned them (``corner2`` itself renders the scene upside down, so their images show the
table below the arm, mirrored); drawn by :class:`~rlkit.envs.pixels.FastRenderer` in training
and evaluation alike; action repeat 2; 3 frames stacked. State (``pixels: false``): Meta-World's
39-dim observation as float32.

Episodes last ``episode_steps`` = 250 *agent* steps, counted after action repeat as the authors'
``metaworld_env.py`` does (their TimeLimit wraps the action-repeated env), so 500 simulator steps
with repeat 2, which is also Meta-World's own ``max_path_length``. ``info["success"]`` is true
when any simulator step of the agent step succeeded; at the episode's end
``info["episode_kpis"]["success"]`` is 1.0 when any step succeeded (the authors' success rate).
Goals are drawn from MT1's 50 training tasks at every reset, as the authors' randomised goals.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rlkit.envs.pixels import (
    ActionRepeat,
    FrameStack,
    RenderedGymTask,
    ensure_render_backend,
    pixel_space,
    unit_action_space,
)

#: Meta-World 3.1.1's tasks without the ``-v3`` suffix (tests check they match)
_METAWORLD_TASKS_WORDS = (
    "assembly basketball bin-picking box-close button-press-topdown button-press-topdown-wall "
    "button-press button-press-wall coffee-button coffee-pull coffee-push dial-turn disassemble "
    "door-close door-lock door-open door-unlock drawer-close drawer-open faucet-close faucet-open "
    "hammer hand-insert handle-press-side handle-press handle-pull-side handle-pull lever-pull "
    "peg-insert-side peg-unplug-side pick-out-of-hole pick-place pick-place-wall "
    "plate-slide-back-side plate-slide-back plate-slide-side plate-slide push-back push push-wall "
    "reach reach-wall shelf-place soccer stick-pull stick-push sweep-into sweep window-close "
    "window-open"
)
METAWORLD_TASKS: tuple[str, ...] = tuple(_METAWORLD_TASKS_WORDS.split())
#: where the MENTOR authors move ``corner2`` before each episode
AUTHORS_CORNER2_POS = (0.75, 0.075, 0.7)
#: seed of MT1's task (goal) list, so every env built here draws from the same 50 goals
MT1_SEED = 0


class MetaWorldParams(BaseModel):
    """Settings of a Meta-World v3 task (``env.id: metaworld/<task>``).

    :param pixels: observe RGB frames (true) or the 39-dim state (false).
    :param size: image height and width.
    :param camera: Meta-World camera name.
    :param authors_camera: ``corner2`` at the MENTOR authors' position, rows bottom-up.
    :param frame_stack: frames stacked in a pixel observation.
    :param action_repeat: simulator steps per agent step (rewards summed).
    :param episode_steps: agent steps per episode (after action repeat).
    """

    model_config = ConfigDict(extra="forbid")

    pixels: bool = Field(True, description="observe RGB frames (true) or the 39-dim state (false)")
    size: int = Field(84, ge=16, le=512, description="image height and width in pixels")
    camera: str = Field("corner2", description="Meta-World camera name (corner2 as MENTOR)")
    authors_camera: bool = Field(
        True,
        description="corner2 as the MENTOR authors saw it: at (0.75, 0.075, 0.7), rows bottom-up "
        "(mujoco-py's offscreen order)",
    )
    frame_stack: int = Field(3, ge=1, description="frames stacked in a pixel observation")
    action_repeat: int = Field(2, ge=1, description="simulator steps per agent step")
    episode_steps: int = Field(
        250, ge=1, description="agent steps per episode, counted after action repeat (MENTOR)"
    )


def full_name(task: str) -> str:
    """``"reach"`` -> ``"reach-v3"``.

    :param task: a name of :data:`METAWORLD_TASKS`.
    :raises ValueError: not a Meta-World task (the message lists them).
    """
    if task not in METAWORLD_TASKS:
        raise ValueError(f"unknown Meta-World task {task!r}; allowed: {', '.join(METAWORLD_TASKS)}")
    return f"{task}-v3"


class MetaWorldEnv(RenderedGymTask, gym.Env[np.ndarray, np.ndarray]):
    """One Meta-World v3 task (MT1), one simulator step per ``step``.

    :param task: Meta-World task without the version (``"reach"``).
    :param pixels: observe frames (true) or the state (false).
    :param size: image height and width.
    :param camera: camera name.
    :param authors_camera: place ``corner2`` where the MENTOR authors did, rows bottom-up.
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        task: str,
        pixels: bool = True,
        size: int = 84,
        camera: str = "corner2",
        authors_camera: bool = True,
    ) -> None:
        name = full_name(task)
        ensure_render_backend()
        import metaworld

        gym.register_envs(metaworld)
        self.task_name = task
        self.pixels = pixels
        self.render_mode = "rgb_array"
        # no render_mode: Meta-World's own renderer (150-800 ms a frame here) is never used
        # a fixed benchmark seed fixes MT1's 50 goals (drawn from numpy's global RNG otherwise);
        # reset(seed) then picks one of them and the initial state
        self._env = gym.make(
            "Meta-World/MT1", env_name=name, seed=MT1_SEED, disable_env_checker=True
        )
        model = self._env.unwrapped.model  # type: ignore[attr-defined]
        if authors_camera and camera == "corner2":
            import mujoco

            cam = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "corner2")
            model.cam_pos[cam] = AUTHORS_CORNER2_POS
        self._camera, self._size, self._bottom_up = camera, size, authors_camera
        self._renderer = None
        self.action_space = unit_action_space(int(self._env.action_space.shape[0]))  # type: ignore[index]
        if pixels:
            self.observation_space = pixel_space(3, size)
        else:
            dim = int(self._env.observation_space.shape[0])  # type: ignore[index]
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode (a goal drawn from MT1's training tasks).

        :param seed: seeds the task choice and the simulator's randomness.
        :param options: unused.
        """
        super().reset(seed=seed)
        if seed is not None:
            # MT1 draws the goal from the RNG state *before* reseeding, so the goal would
            # depend on the previous episode; choose it from the seed instead
            tasks = self._env.get_wrapper_attr("tasks")
            index = int(np.random.default_rng(seed).integers(len(tasks)))
            self._env.unwrapped.set_task(tasks[index])  # type: ignore[attr-defined]
        self._env.get_wrapper_attr("toggle_sample_tasks_on_reset")(seed is None)
        state, info = self._env.reset(seed=seed)
        return self._observe(state), {"success": False}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict]:
        """One simulator step.

        :param action: in [-1, 1] (Meta-World's own bounds).
        """
        unit = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        state, reward, terminated, truncated, info = self._env.step(unit)
        info = {**info, "success": bool(info.get("success", 0.0))}
        return self._observe(state), float(reward), bool(terminated), bool(truncated), info

    def _observe(self, state: np.ndarray) -> np.ndarray:
        return self._frame() if self.pixels else np.asarray(state, dtype=np.float32)


class EpisodeSuccess(gym.Wrapper):
    """Report ``info["episode_kpis"]["success"]`` (1.0 if any step succeeded) at episode end.

    :param env: an env whose steps report ``info["success"]``.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._succeeded = False

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the episode's success flag.

        :param kwargs: passed to the wrapped env's reset.
        """
        self._succeeded = False
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step and, at the episode's end, add the episode's success.

        :param action: the action.
        """
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._succeeded = self._succeeded or bool(info.get("success", False))
        if terminated or truncated:
            kpis = {**(info.get("episode_kpis") or {}), "success": float(self._succeeded)}
            info = {**info, "episode_kpis": kpis}
        return obs, reward, terminated, truncated, info


def make_metaworld_env(task: str, **kwargs: Any) -> gym.Env:
    """Factory used by the rlkit registry: a Meta-World task with action repeat, the 250-step
    limit, the success KPI and frame stacking.

    :param task: task without the version (bound by the registry entry ``metaworld/<task>``).
    :param kwargs: :class:`MetaWorldParams` fields.
    """
    params = MetaWorldParams.model_validate(kwargs)
    env: gym.Env = MetaWorldEnv(
        task, params.pixels, params.size, params.camera, params.authors_camera
    )
    env = ActionRepeat(env, params.action_repeat)
    env = gym.wrappers.TimeLimit(env, max_episode_steps=params.episode_steps)
    env = EpisodeSuccess(env)
    if params.pixels:
        env = FrameStack(env, params.frame_stack)
    return env
