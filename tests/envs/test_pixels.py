"""Shared pixel pieces: frame stacking, action repeat, backend choice, video files."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rlkit.envs import pixels
from rlkit.envs.pixels import ActionRepeat, FrameStack, VideoWriter, ensure_render_backend

ensure_render_backend()  # before MuJoCo is imported (here or by the tests below)


class CountingFrames(gym.Env[np.ndarray, np.ndarray]):
    """Frame ``t`` is filled with ``t``; reward ``t``; truncates after ``horizon`` steps."""

    def __init__(self, horizon: int = 5) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (3, 4, 4), dtype=np.uint8)
        self.action_space = gym.spaces.Box(-1, 1, (1,), dtype=np.float32)
        self.horizon, self.t = horizon, 0

    def _frame(self) -> np.ndarray:
        return np.full((3, 4, 4), self.t, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        self.t = 0
        return self._frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._frame(), float(self.t), False, self.t >= self.horizon, {"success": self.t == 2}


def test_frame_stack_repeats_first_frame_and_puts_newest_last():
    env = FrameStack(CountingFrames(), 3)
    assert env.observation_space.shape == (9, 4, 4)
    assert env.frame_stack == 3 and env.frame_shape == (3, 4, 4)
    obs, _ = env.reset()
    assert obs.dtype == np.uint8 and (obs == 0).all()
    obs, *_ = env.step(np.zeros(1))
    obs, *_ = env.step(np.zeros(1))
    assert [int(obs[3 * i, 0, 0]) for i in range(3)] == [0, 1, 2]
    obs, *_ = env.step(np.zeros(1))
    assert [int(obs[3 * i, 0, 0]) for i in range(3)] == [1, 2, 3]


def test_frame_stack_rejects_non_frames():
    with pytest.raises(ValueError, match="uint8"):
        FrameStack(gym.make("Pendulum-v1"), 3)


def test_action_repeat_sums_rewards_ors_success_and_stops_at_the_end():
    env = ActionRepeat(CountingFrames(horizon=5), 2)
    env.reset()
    _, reward, _, truncated, info = env.step(np.zeros(1))
    assert reward == 1 + 2 and not truncated and info["success"] is True
    _, reward, _, _, info = env.step(np.zeros(1))
    assert reward == 3 + 4 and info["success"] is False
    _, reward, _, truncated, _ = env.step(np.zeros(1))
    assert reward == 5 and truncated  # stopped after one of two repeats


def clear_backend(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MUJOCO_GL / PYOPENGL_PLATFORM and no earlier choice; whatever the test sets is undone."""
    for name in ("MUJOCO_GL", "PYOPENGL_PLATFORM"):
        monkeypatch.setenv(name, "placeholder")  # records the original value for teardown
        monkeypatch.delenv(name)
    monkeypatch.setattr(pixels, "_chosen_backend", None)
    return monkeypatch


@pytest.fixture
def no_backend(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """:func:`clear_backend` as a fixture."""
    return clear_backend(monkeypatch)


def test_backend_keeps_user_choice(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert ensure_render_backend(probe=lambda b: pytest.fail("probed")) == "osmesa"


def test_backend_falls_back_to_osmesa_with_one_warning(no_backend):
    no_backend.delitem(__import__("sys").modules, "mujoco", raising=False)
    with pytest.warns(RuntimeWarning, match="falling back to OSMesa"):
        assert ensure_render_backend(probe=lambda b: b == "osmesa") == "osmesa"
    assert pixels.os.environ["MUJOCO_GL"] == "osmesa"


def test_backend_switches_an_already_imported_mujoco(monkeypatch):
    from mujoco import gl_context  # imported with the suite's backend, before clearing it

    egl = pytest.importorskip("mujoco.egl")

    no_backend = clear_backend(monkeypatch)
    no_backend.setattr(gl_context, "GLContext", None)  # as if GLFW had been picked
    assert ensure_render_backend(probe=lambda b: b == "egl") == "egl"
    assert gl_context.GLContext is egl.GLContext


def test_backend_error_when_nothing_renders(no_backend):
    with pytest.raises(pixels.RenderBackendError, match="libosmesa6"):
        ensure_render_backend(probe=lambda b: False)


def test_video_writer_writes_all_frames(tmp_path):
    import imageio.v2 as imageio

    writer = VideoWriter(tmp_path / "videos" / "eval_0", fps=10)
    for t in range(7):
        writer.add(np.full((3, 16, 16), 30 * t, dtype=np.uint8))
    path = writer.save()
    assert path.exists() and path.suffix in (".mp4", ".gif")
    frames = imageio.mimread(path)
    assert len(frames) == 7
    assert abs(int(np.asarray(frames[3])[..., 0].mean()) - 90) <= 3


def test_fast_renderer_bottom_up_flips_rows():
    import mujoco

    xml = """<mujoco><worldbody><light pos="0 0 3"/>
      <camera name="c" pos="0 0 2"/>
      <geom type="box" size="0.3 0.3 0.01" pos="0 0.5 0" rgba="1 0 0 1"/>
    </worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    upright, flipped = (pixels.FastRenderer(model, 32, "c", bottom_up=b) for b in (False, True))
    try:
        top = upright.render(data)
        assert top.shape == (3, 32, 32) and top.dtype == np.uint8
        assert model.vis.quality.offsamples == 4  # restored after building the context
        np.testing.assert_array_equal(flipped.render(data), top[:, ::-1])
        red = top[0].astype(int) - top[1]
        assert red[:16].mean() > red[16:].mean() + 20  # +y is up in the camera's image
    finally:
        upright.close()
        flipped.close()
