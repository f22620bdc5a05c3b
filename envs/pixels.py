"""Shared pieces of the pixel environments (DeepMind Control, Meta-World, Adroit).

- :func:`ensure_render_backend`: pick ``MUJOCO_GL`` (EGL, else OSMesa with one warning) before
  MuJoCo is imported; a user's own ``MUJOCO_GL`` is always kept.
- :class:`FastRenderer`: a MuJoCo offscreen renderer sized to the image, shadows, reflections and
  multisampling off (benchmarks/mentor_render.py: ~25x faster than Meta-World's ``render()``);
  the same renderer serves training and evaluation, so both see the same image.
- :class:`ActionRepeat`: repeat an action, summing rewards; stops at the end of an episode.
- :class:`FrameStack`: stack the last ``k`` single frames ``(C, H, W)`` into ``(k*C, H, W)``, oldest
  first (DrQ-v2 layout), the first frame repeated ``k`` times at reset. It is the outermost pixel
  wrapper and exposes ``frame_stack`` and ``frame_shape``.
- :class:`VideoWriter`: write evaluation frames as mp4 (imageio-ffmpeg) or, without ffmpeg, gif.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np

BACKENDS = ("egl", "osmesa")
_PROBE = "import mujoco; ctx = mujoco.GLContext(8, 8); ctx.make_current(); ctx.free()"
_chosen_backend: str | None = None


class RenderBackendError(RuntimeError):
    """No headless OpenGL backend (EGL or OSMesa) works on this machine."""


def probe_backend(backend: str) -> bool:
    """True when MuJoCo can create an offscreen context with ``backend`` (in a subprocess, so a
    failing backend cannot poison this process's OpenGL state).

    :param backend: ``"egl"`` or ``"osmesa"``.
    """
    env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_render_backend(probe: Callable[[str], bool] = probe_backend) -> str:
    """Choose the headless OpenGL backend before MuJoCo is imported; return its name.

    A ``MUJOCO_GL`` set by the user is kept as it is. Otherwise EGL is used when it works, then
    OSMesa with one warning. MuJoCo reads the variable at import; when it was imported already
    (without ``MUJOCO_GL``, so with GLFW), its context class is switched to the chosen backend.

    :param probe: ``probe(backend) -> bool`` (tests replace it).
    :raises RenderBackendError: neither EGL nor OSMesa works (the message says what to install).
    """
    global _chosen_backend
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if _chosen_backend is not None:
        return _chosen_backend
    for backend in BACKENDS:
        if probe(backend):
            if backend != BACKENDS[0]:
                warnings.warn(
                    "MuJoCo rendering: EGL is not available here, falling back to OSMesa "
                    "(software, slower); set MUJOCO_GL to choose a backend yourself",
                    RuntimeWarning,
                    stacklevel=2,
                )
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            if "mujoco" in sys.modules:
                _switch_imported_mujoco(backend)
            _chosen_backend = backend
            return backend
    raise RenderBackendError(
        "MuJoCo cannot render offscreen: neither EGL (libEGL, e.g. apt install libegl1) nor "
        "OSMesa (apt install libosmesa6) works. Install one, or set MUJOCO_GL yourself."
    )


def _switch_imported_mujoco(backend: str) -> None:
    """MuJoCo imported before a backend was chosen has GLFW (needs a display): point its context
    class at ``backend`` (``mujoco.Renderer`` looks it up on every construction)."""
    import importlib

    from mujoco import gl_context

    gl_context.GLContext = importlib.import_module(f"mujoco.{backend}").GLContext


class FastRenderer:
    """Offscreen MuJoCo renderer sized to the observation: shadows, reflections and
    multisampling off.

    :param model: the ``mujoco.MjModel`` to draw.
    :param size: image height and width in pixels.
    :param camera: camera name or id, or a free camera given as a ``mujoco.MjvCamera``.
    :param bottom_up: return rows bottom-up, as mujoco-py's offscreen ``sim.render`` did (the
        MENTOR authors' Meta-World and Adroit images).
    """

    def __init__(self, model: Any, size: int, camera: Any, bottom_up: bool = False) -> None:
        import mujoco

        self.size = int(size)
        self.camera = camera
        self.bottom_up = bottom_up
        # multisampling off: at 84x84 anti-aliasing costs the software rasteriser (Mesa
        # llvmpipe) about 3x for a change of ~2.6 grey levels; the context reads it at creation
        samples = model.vis.quality.offsamples
        model.vis.quality.offsamples = 0
        try:
            self._renderer = mujoco.Renderer(model, self.size, self.size)
        finally:
            model.vis.quality.offsamples = samples
        flags = self._renderer.scene.flags
        # the two costliest passes of the software rasteriser; the image stays informative
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def render(self, data: Any) -> np.ndarray:
        """Draw ``data`` and return a channels-first ``(3, size, size)`` uint8 image.

        :param data: the ``mujoco.MjData`` to draw.
        """
        self._renderer.update_scene(data, camera=self.camera)
        image = self._renderer.render()
        if self.bottom_up:
            image = image[::-1]
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def close(self) -> None:
        """Free the OpenGL context (explicitly: at interpreter exit EGL may already be gone)."""
        renderer, self._renderer = self._renderer, None
        if renderer is not None:
            renderer.close()


class RenderedTask:
    """``render`` and the renderer's lifetime for an env drawn by one :class:`FastRenderer`.

    The env sets ``_size``, ``_camera`` and ``_bottom_up`` and implements :meth:`_model_and_data`
    (the MuJoCo ``MjModel``/``MjData`` to draw); the renderer is made on the first frame.
    """

    _renderer: FastRenderer | None = None
    _size: int
    _camera: Any
    _bottom_up: bool = False

    def _model_and_data(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def render(self) -> np.ndarray:
        """The current camera image, ``(size, size, 3)`` uint8 (the observation's frame)."""
        return self._frame().transpose(1, 2, 0)

    def _frame(self) -> np.ndarray:
        model, data = self._model_and_data()
        if self._renderer is None:
            self._renderer = FastRenderer(model, self._size, self._camera, self._bottom_up)
        return self._renderer.render(data)

    def _close_renderer(self) -> None:
        """Free the renderer's OpenGL context (an EGL context left at exit raises)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class RenderedGymTask(RenderedTask):
    """:class:`RenderedTask` around a gymnasium MuJoCo env held as ``_env`` (Meta-World, Adroit):
    draws its ``model``/``data`` and closes it with the renderer."""

    _env: gym.Env

    def _model_and_data(self) -> tuple[Any, Any]:
        unwrapped = self._env.unwrapped
        return unwrapped.model, unwrapped.data  # type: ignore[attr-defined]

    def close(self) -> None:
        """Free the renderer's OpenGL context and the simulator."""
        self._close_renderer()
        self._env.close()


def pixel_space(channels: int, size: int) -> gym.spaces.Box:
    """A ``(channels, size, size)`` uint8 Box in [0, 255].

    :param channels: image channels (3 per RGB frame).
    :param size: height and width.
    """
    return gym.spaces.Box(0, 255, (channels, size, size), dtype=np.uint8)


def unit_action_space(dim: int) -> gym.spaces.Box:
    """``Box(-1, 1, (dim,), float32)``, the action space of every pixel/state env here.

    :param dim: action dimension.
    """
    return gym.spaces.Box(-1.0, 1.0, (dim,), dtype=np.float32)


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times and sum the rewards (DrQ-v2's action repeat).

    Stops early when the episode ends. ``info`` is the last raw step's, except ``success``: true
    when any repeated step succeeded (as the MENTOR authors' Meta-World wrapper counts it).

    :param env: the env to wrap.
    :param repeat: env steps per agent step (>= 1).
    """

    def __init__(self, env: gym.Env, repeat: int) -> None:
        if repeat < 1:
            raise ValueError(f"action repeat must be >= 1, got {repeat}")
        super().__init__(env)
        self.repeat = int(repeat)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step ``repeat`` times (fewer when the episode ends).

        :param action: the action, repeated.
        """
        total, success = 0.0, False
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            success = success or bool(info.get("success", False))
            if terminated or truncated:
                break
        if "success" in info:
            info = {**info, "success": success}
        return obs, total, terminated, truncated, info


class FrameStack(gym.Wrapper):
    """Stack the last ``k`` frames of a single-frame ``(C, H, W)`` uint8 env, oldest first.

    The first observation of an episode repeats the first frame ``k`` times (DrQ-v2). Exposes
    ``frame_stack`` (k) and ``frame_shape`` ((C, H, W)) for the replay buffer; a perturbation
    wrapper placed inside it changes only the newest frame.

    :param env: an env whose observations are ``(C, H, W)`` uint8 frames.
    :param k: frames to stack (>= 1).
    """

    def __init__(self, env: gym.Env, k: int) -> None:
        if k < 1:
            raise ValueError(f"frame_stack must be >= 1, got {k}")
        super().__init__(env)
        space = env.observation_space
        if (
            not isinstance(space, gym.spaces.Box)
            or space.dtype != np.uint8
            or len(space.shape) != 3
        ):
            raise ValueError(f"FrameStack needs (C, H, W) uint8 frames, got {space}")
        self.frame_stack = int(k)
        self.frame_shape: tuple[int, int, int] = tuple(space.shape)  # type: ignore[assignment]
        channels, height, width = self.frame_shape
        self.observation_space = gym.spaces.Box(
            0, 255, (channels * self.frame_stack, height, width), dtype=np.uint8
        )
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset and fill the stack with the first frame.

        :param kwargs: passed to the wrapped env's reset (seed, options).
        """
        frame, info = self.env.reset(**kwargs)
        for _ in range(self.frame_stack):
            self._frames.append(frame)
        return self._stacked(), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step and push the new frame.

        :param action: the action.
        """
        frame, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(frame)
        return self._stacked(), reward, terminated, truncated, info

    def _stacked(self) -> np.ndarray:
        return np.concatenate(list(self._frames), axis=0)


def ffmpeg_available() -> bool:
    """True when imageio can write mp4 (the imageio-ffmpeg plug-in is installed)."""
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


class VideoWriter:
    """Collect ``(H, W, 3)`` or ``(3, H, W)`` uint8 frames and write them as one video file.

    :param path: the file to write without extension; ``.mp4`` is added when imageio-ffmpeg is
        installed, else ``.gif``.
    :param fps: frames per second.
    """

    def __init__(self, path: Path | str, fps: int = 20) -> None:
        suffix = ".mp4" if ffmpeg_available() else ".gif"
        self.path = Path(path).with_suffix(suffix)
        self.fps = int(fps)
        self.frames: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        """Append one frame (channels-first frames are transposed).

        :param frame: a uint8 RGB image, ``(H, W, 3)`` or ``(3, H, W)``.
        """
        image = np.asarray(frame)
        if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
            image = image.transpose(1, 2, 0)
        self.frames.append(np.ascontiguousarray(image, dtype=np.uint8))

    def save(self) -> Path:
        """Write the frames (atomically: a temporary file, then a rename) and return the path."""
        import imageio.v2 as imageio

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix}")
        frames: list[Any] = list(self.frames)
        if self.path.suffix == ".mp4":
            imageio.mimwrite(tmp, frames, fps=self.fps, macro_block_size=1)
        else:
            # gif frame durations are in milliseconds; loop=0 repeats forever
            imageio.mimwrite(tmp, frames, format="GIF", duration=1000 / self.fps, loop=0)
        tmp.replace(self.path)
        return self.path


def newest_frame(obs: np.ndarray, channels: int = 3) -> np.ndarray:
    """The newest ``(channels, H, W)`` frame of a stacked ``(k*channels, H, W)`` observation.

    :param obs: a stacked pixel observation.
    :param channels: channels per frame.
    """
    return np.asarray(obs)[-channels:]
