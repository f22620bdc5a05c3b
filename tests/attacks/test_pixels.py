"""Attacks on pixel policies: pixel-unit budgets, channel masks, frame-level attacks, frames plot.

A tiny synthetic pixel env (seeded uint8 RGB frames (3, 10, 10) spanning 0..255, stacked k = 3
oldest first, the first observation repeating its frame) and a tiny CNN policy view (the /255
inside) stand in for DMC / Meta-World and the drqv2 / mentor views.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import SyncVectorEnv
from torch import nn

from rlkit.attacks.bifurcation import Bifurcation
from rlkit.attacks.evaluation import (
    HoldAfterEpisode,
    build_budget,
    evaluate_attacks,
    frame_level_stack,
    run_episodes,
)
from rlkit.attacks.losses import group_difference_logits
from rlkit.attacks.pixels import (
    FrameAttackedVectorObservation,
    FrameStackView,
    channel_arrays,
    channel_groups,
    pixel_label,
    raw_eps,
    raw_settings,
    resolve_units,
)
from rlkit.attacks.report import budget_caption, write_report
from rlkit.catalog import build_attack
from rlkit.config import AttackConfig, AttackSpec, ConfigError, load_attack_config, parse_eps
from rlkit.policy import PolicyView

K, C, H = 3, 3, 10
STEPS = 4  # agent steps per episode
PIXELS = gym.spaces.Box(0, 255, (C * K, H, H), dtype=np.uint8)


class FrameEnv(gym.Env):
    """Seeded uint8 frames (3, 10, 10) over the whole 0..255 range (0 and 255 included, so the
    bounds bite); ``STEPS`` steps; reward ``-|a_0|``; Meta-World's ``success`` KPI (1 when
    ``|a_0| < 0.5`` on the last step)."""

    observation_space = gym.spaces.Box(0, 255, (C, H, H), dtype=np.uint8)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def _frame(self) -> np.ndarray:
        frame = self._rng.integers(0, 256, (C, H, H))
        frame[:, 0, 0], frame[:, 0, 1] = 0, 255
        return frame.astype(np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._rng, self.t = np.random.default_rng(seed), 0
        return self._frame(), {}

    def step(self, action: Any):
        a0 = abs(float(np.asarray(action).reshape(-1)[0]))
        self.t += 1
        done = self.t >= STEPS
        info = {"episode_kpis": {"success": float(a0 < 0.5)}} if done else {}
        return self._frame(), -a0, False, done, info


class Stack(gym.Wrapper):
    """k frames stacked along channels, oldest first; the first observation repeats its frame."""

    def __init__(self, env: gym.Env, k: int = K) -> None:
        super().__init__(env)
        self.frame_stack = k
        c, h, w = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (c * k, h, w), dtype=np.uint8)
        self._frames: deque[np.ndarray] = deque(maxlen=k)

    def reset(self, **kwargs: Any):
        frame, info = self.env.reset(**kwargs)
        self._frames.extend([frame] * self.frame_stack)
        return np.concatenate(self._frames), info

    def step(self, action: Any):
        frame, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(frame)
        return np.concatenate(self._frames), reward, terminated, truncated, info


def make_env() -> gym.Env:
    return Stack(FrameEnv())


class Scale(nn.Module):
    """The /255 of a pixel view (DrQ-v2: obs / 255 - 0.5)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return obs / 255.0 - 0.5


def cnn_view(seed: int = 0) -> PolicyView:
    """A tiny CNN policy view of stacked frames, tanh-squashed to [-1, 1]^2."""
    torch.manual_seed(seed)
    body = nn.Sequential(
        nn.Conv2d(C * K, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)
    )
    return PolicyView(body, "continuous", "tanh", -np.ones(2), np.ones(2), normalizer=Scale())


def config(attacks: list[dict[str, Any]], **extra: Any) -> AttackConfig:
    return AttackConfig.model_validate(
        {"eps": ["8/255"], "episodes": 2, "stealth": False, "attacks": attacks, **extra}
    )


def frames_of(stack: np.ndarray) -> np.ndarray:
    """(T, C*K, H, W) stacks -> (T, K, C, H, W) frames."""
    return stack.reshape(len(stack), K, C, H, H)


@pytest.fixture(scope="module")
def pgd_results() -> dict[str, Any]:
    # step_size in pixel units too: 2/255 = 2 levels per step
    attacks = [
        {"name": "pgd", "settings": {"iterations": 5, "step_size": 2 / 255, "decay_every": 0}}
    ]
    return evaluate_attacks(make_env, cnn_view(), config(attacks), seed=3, progress=False)


# --------------------------------------------------------------------------- units
def test_pixel_budgets_are_fractions_of_255_and_ambiguous_ones_are_rejected():
    assert AttackConfig.model_validate({"eps": ["2/255", 0.5], "attacks": []}).eps == [
        2 / 255,
        0.5,
    ]
    assert parse_eps("2/255,8/255") == [2 / 255, 8 / 255]
    with pytest.raises(ConfigError, match="2/255,8/255"):
        parse_eps("2/x")
    fractions = [2 / 255, 4 / 255, 8 / 255]
    assert resolve_units("auto", PIXELS, fractions) == "pixels"
    assert [raw_eps(e, "pixels") for e in fractions] == pytest.approx([2.0, 4.0, 8.0])
    assert resolve_units("auto", PIXELS, [2.0, 8.0]) == "raw"  # pixel levels
    assert resolve_units("auto", gym.spaces.Box(-1, 1, (4,)), [0.03]) == "raw"
    with pytest.raises(ValueError, match="ambiguous.*1/255"):
        resolve_units("auto", PIXELS, [1.0])
    with pytest.raises(ValueError, match="mix fractions"):
        resolve_units("auto", PIXELS, [8 / 255, 8.0])
    with pytest.raises(ValueError, match="8/255"):
        resolve_units("pixels", PIXELS, [8.0])
    with pytest.raises(ValueError, match="rounds to 0"):
        resolve_units("raw", PIXELS, [0.03])
    with pytest.raises(ValueError, match="needs uint8 image"):
        resolve_units("pixels", gym.spaces.Box(0.0, 1.0, (3, 4, 4)), [0.03])
    assert raw_settings({"step_size": 1 / 255, "iterations": 3}, "pixels") == {
        "step_size": pytest.approx(1.0),
        "iterations": 3,
    }
    # a default step size is in the budget's units too: PGD's 0.01 is 2.55 pixel levels
    assert raw_settings({}, "pixels", "pgd") == {"step_size": pytest.approx(2.55)}
    assert raw_settings({}, "pixels", "random") == {} and raw_settings({}, "raw", "pgd") == {}
    assert pixel_label(8 / 255) == "8/255" and budget_caption(4 / 255, 4.0, "pixels") == (
        "eps 4/255 (4 pixel levels)"
    )


def test_frame_budget_and_whole_stack_budget_have_the_right_shape_and_masks():
    env = make_env()
    spec = AttackSpec(name="pgd", mask=["red"], scale={"blue": 0.5})
    frame = build_budget(spec, 8 / 255, env, "pixels", frame_level=True)
    stack = build_budget(spec, 8 / 255, env, "pixels", frame_level=False)
    assert frame.eps == pytest.approx(8.0) and frame.quantize and stack.quantize
    np.testing.assert_array_equal(np.ravel(frame.mask), [0, 1, 1])
    np.testing.assert_array_equal(np.ravel(frame.scale), [1, 1, 0.5])
    np.testing.assert_array_equal(np.ravel(stack.mask), [0, 1, 1] * K)
    assert np.shape(frame.low) == (C, H, H) and np.shape(stack.high) == (C * K, H, H)
    like = torch.zeros(1, C, H, H)
    eps_vec = frame.bind(like).eps_vec
    assert eps_vec[0].max() == 0 and eps_vec[1].min() == 8 and eps_vec[2].max() == 4
    assert frame_level_stack(config([]), env) == K
    assert frame_level_stack(config([], frame_level=False), env) == 0
    assert channel_groups(3)["channel_2"] == [2] and channel_groups(1) == {"channel_0": [0]}
    with pytest.raises(ValueError, match="channel groups: channel_0, channel_1, channel_2, red"):
        channel_arrays(channel_groups(3), 3, 1, mask=["alpha"])
    with pytest.raises(ConfigError, match="ambiguous"):
        build_budget(AttackSpec(name="pgd"), 1.0, env)


# --------------------------------------------------------------------------- frame-level
def test_every_frame_is_perturbed_once_within_budget_on_the_integer_grid(pgd_results):
    trace = pgd_results["traces"][("pgd", 8 / 255)]
    assert pgd_results["meta"]["units"] == "pixels" and pgd_results["meta"]["frame_level"]
    assert pgd_results["rows"][0]["eps_raw"] == pytest.approx(8.0)
    for episode in range(2):
        fed, clean = trace.stacked("fed_obs", episode), trace.stacked("clean_obs", episode)
        assert clean.dtype == np.uint8 and fed.shape == clean.shape == (STEPS, C * K, H, H)
        assert np.array_equal(fed, np.round(fed)) and fed.min() >= 0 and fed.max() <= 255
        delta = np.abs(fed.astype(np.float64) - clean)
        assert delta.max() == 8.0  # PGD spends the budget, never more
        newest = fed[:, -C:]
        for t in range(STEPS):
            # [p_{t-2}, p_{t-1}, p_t], bit for bit; the first frame repeats p_0
            expected = np.concatenate([newest[max(t - j, 0)] for j in range(K - 1, -1, -1)])
            np.testing.assert_array_equal(fed[t], expected)
        moved = np.abs(newest.astype(np.float64) - clean[:, -C:]).reshape(STEPS, -1)
        assert (moved.max(axis=1) == 8.0).all()  # every step's new frame attacked
        assert ((fed == 0) | (fed == 255)).any()  # the bounds held where they bite


def test_per_channel_mask_leaves_masked_channels_untouched_in_every_frame():
    results = evaluate_attacks(
        make_env,
        cnn_view(),
        config([{"name": "random", "mask": ["red", "channel_2"], "settings": {"seed": 1}}]),
        seed=0,
        progress=False,
    )
    trace = results["traces"][("random", 8 / 255)]
    fed = frames_of(trace.stacked("fed_obs", 0)).astype(np.float64)
    clean = frames_of(trace.stacked("clean_obs", 0))
    np.testing.assert_array_equal(fed[:, :, [0, 2]], clean[:, :, [0, 2]])
    green = np.abs(fed[:, :, 1] - clean[:, :, 1])
    assert green.max() == 8.0 and (green > 0).mean() > 0.5


def test_whole_stack_attack_reperturbs_old_frames_within_the_same_budget():
    attack = {"name": "random", "settings": {"seed": 1}}
    results = evaluate_attacks(
        make_env, cnn_view(), config([attack], frame_level=False), seed=0, progress=False
    )
    assert not results["meta"]["frame_level"]
    fed = results["traces"][("random", 8 / 255)].stacked("fed_obs", 0).astype(np.float64)
    clean = results["traces"][("random", 8 / 255)].stacked("clean_obs", 0)
    assert np.abs(fed - clean).max() == 8.0 and np.array_equal(fed, np.round(fed))
    # the same rendered frame is perturbed afresh in each stack it appears in
    assert not np.array_equal(fed[1, C : 2 * C], fed[2, :C])
    # frame-level: all k copies of the first frame share one perturbation; whole-stack: not
    assert not np.array_equal(fed[0, :C], fed[0, -C:])


def test_frame_view_stacks_older_frames_and_repeats_a_fresh_first_frame():
    view = cnn_view()
    frame_view = FrameStackView(view, K)
    older = torch.arange(2 * C * (K - 1) * H * H, dtype=torch.float32).reshape(2, -1, H, H)
    frame = torch.full((2, C, H, H), 7.0)
    frame_view.set_context(older, torch.tensor([True, False]))
    stacked = frame_view.stack(frame)
    assert torch.equal(stacked[0], frame[0].repeat(K, 1, 1))
    assert torch.equal(stacked[1], torch.cat([older[1], frame[1]]))
    assert torch.equal(frame_view(frame), view(stacked))
    assert frame_view.squash_kind == "tanh" and frame_view.action_kind == "continuous"
    with pytest.raises(ValueError, match="set_context"):
        frame_view(frame[:1])


def test_pgd_and_bifurcation_move_the_action_and_raise_the_bifurcation_loss(pgd_results):
    clean_row, pgd_row = pgd_results["clean"], pgd_results["rows"][0]
    assert pgd_row["action_mae"] > 0.01 and clean_row["linf_max"] == 0.0
    assert "regret_return" in pgd_row and "regret_success" in pgd_row
    view = cnn_view()
    frame_view = FrameStackView(view, K)
    env = make_env()
    obs, _ = env.reset(seed=5)
    for _ in range(2):
        obs, *_ = env.step(np.zeros(2))
    frame = torch.as_tensor(obs[None, -C:], dtype=torch.float32)
    frame_view.set_context(torch.as_tensor(obs[None, :-C], dtype=torch.float32), torch.tensor([0]))
    spec = AttackSpec(name="bifurcation")
    budget = build_budget(spec, 8 / 255, env, "pixels", frame_level=True)
    attack = build_attack("bifurcation", frame_view, budget, {"iterations": 10, "step_size": 2.0})
    adv = attack(frame)
    assert torch.equal(adv, adv.round()) and (adv - frame).abs().max() <= 8.0
    layer = Bifurcation("continuous")
    with torch.no_grad():
        clean_groups, adv_groups = layer(frame_view(frame)), layer(frame_view(adv))
        label = clean_groups.argmax(dim=-1)
        gain = group_difference_logits(adv_groups, label) - group_difference_logits(
            clean_groups, label
        )
    assert gain.item() > 0.05


def test_wrapper_rejects_observations_that_are_not_a_frame_stack():
    class Shuffled(Stack):
        def step(self, action: Any):
            obs, *rest = super().step(action)
            return obs[::-1].copy(), *rest  # newest frame first

    venv = SyncVectorEnv([lambda: HoldAfterEpisode(Shuffled(FrameEnv()))])
    view = cnn_view()
    frame_view = FrameStackView(view, K)
    budget = build_budget(
        AttackSpec(name="random"), 8 / 255, make_env(), "pixels", frame_level=True
    )
    attack = build_attack("random", frame_view, budget, {"seed": 0})
    env = FrameAttackedVectorObservation(venv, attack, frame_view, single_episode=True)
    with pytest.raises(ValueError, match="not a stack of 3 frames"):
        run_episodes(env, view, [0])


# --------------------------------------------------------------------------- config and report
def test_pixels_config_loads_four_attacks_at_three_pixel_budgets():
    cfg = load_attack_config("configs/attacks/pixels.yaml")
    assert cfg.units == "pixels" and cfg.eps == [2 / 255, 4 / 255, 8 / 255]
    assert [a.name for a in cfg.attacks] == ["random", "fgsm", "pgd", "bifurcation"]
    assert all(a.norm == "linf" for a in cfg.attacks)


def test_report_draws_the_newest_frame_with_its_budget(pgd_results, tmp_path):
    write_report(pgd_results, tmp_path, "pixels", {})
    assert (tmp_path / "frames_pgd.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["rows"][0]["eps_raw"] == pytest.approx(8.0)
    html = (tmp_path / "report.html").read_text()
    assert "newest frame" in html
