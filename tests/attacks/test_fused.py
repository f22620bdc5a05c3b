"""Attacks on fused pixel+state observations: the image is attacked within its pixel budget, the
state reaches the policy unperturbed as its context, row by row (episodes of unequal length)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.agents.mentor import MentorAgent
from rlkit.attacks.evaluation import evaluate_attacks
from rlkit.attacks.fused import FusedContext, attacked_space
from rlkit.config import AdversarialConfig, AttackConfig, ConfigError, ExperimentConfig
from rlkit.loops.adversarial import LiveAttack

ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
SMALL = {
    "feature_dim": 8,
    "hidden_dim": 16,
    "expert_hidden": 6,
    "gate_hidden": 5,
    "num_experts": 4,
    "top_k": 2,
    "batch_size": 8,
    "num_expl_steps": 0,
}


class FusedEnv(gym.Env):
    """Random 3x16x16 frames plus a 3-dim state ``[t, seed, 1]``; episodes last ``3 + seed`` steps
    (so two sub-envs end at different steps)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (3, 16, 16), np.uint8),
                "state": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            }
        )
        self.action_space = ACT
        self.t, self.seed_ = 0, 0

    def _obs(self) -> dict[str, np.ndarray]:
        frame = self.np_random.integers(0, 256, (3, 16, 16), dtype=np.uint8)
        return {"pixels": frame, "state": np.array([self.t, self.seed_, 1.0], np.float32)}

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.t, self.seed_ = 0, int(seed or 0)
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.t += 1
        return self._obs(), float(np.sum(action)), False, self.t >= 3 + self.seed_, {}


def fused_agent() -> MentorAgent:
    torch.manual_seed(0)
    return MentorAgent(FusedEnv().observation_space, ACT, **SMALL)


def test_attacked_space_is_the_image_of_a_fused_dict() -> None:
    space = FusedEnv().observation_space
    assert attacked_space(space) == space["pixels"]
    box = gym.spaces.Box(0.0, 1.0, (4,))
    assert attacked_space(box) is box


def test_a_view_without_state_context_is_refused() -> None:
    view = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigError, match="takes no state context"):
        FusedContext(FusedEnv().observation_space, view)


def test_evaluation_attacks_the_pixels_and_feeds_each_row_its_state() -> None:
    agent = fused_agent()
    view = agent.policy_view()
    config = AttackConfig(
        attacks=[{"name": "pgd", "settings": {"iterations": 5, "step_size": 2 / 255}}],
        eps=[8 / 255],
        episodes=2,
    )
    result = evaluate_attacks(FusedEnv, view, config, seed=0, progress=False)
    trace = result["traces"][("pgd", 8 / 255)]
    assert [len(o) for o in trace.clean_obs] == [3, 4]  # unequal episodes: rows drop out
    changed = 0
    for episode, seed in enumerate((0, 1)):
        for t, (clean, fed) in enumerate(
            zip(trace.clean_obs[episode], trace.fed_obs[episode], strict=True)
        ):
            assert clean.shape == (3, 16, 16) and clean.dtype == np.uint8
            assert np.abs(fed - clean.astype(np.float32)).max() <= 8 + 1e-4  # 8/255 in pixels
            state = np.array([[t, seed, 1.0]], np.float32)
            for obs, acted in ((clean, trace.clean_actions), (fed, trace.actions)):
                expected = agent.act({"pixels": obs[None], "state": state})[0]
                np.testing.assert_allclose(acted[episode][t], expected, rtol=1e-5, atol=1e-6)
            changed += not np.allclose(trace.actions[episode][t], trace.clean_actions[episode][t])
    assert changed > 0  # the attack moved the policy
    row = result["rows"][0]
    assert 0 < row["linf_max"] <= 8  # raw pixel levels of the image


def test_frame_level_attacks_on_fused_observations_are_refused() -> None:
    config = AttackConfig(attacks=[{"name": "random"}], eps=[8 / 255], frame_level=True)
    with pytest.raises(ConfigError, match="fused"):
        evaluate_attacks(FusedEnv, fused_agent().policy_view(), config, seed=0, progress=False)


def test_adversarial_training_perturbs_the_image_and_keeps_the_state() -> None:
    agent = fused_agent()
    config = AdversarialConfig(
        attack={"name": "pgd", "settings": {"iterations": 3, "step_size": 2 / 255}},
        eps=8 / 255,
        probability=1.0,
    )
    live = LiveAttack(config, seed=0)
    live.bind(agent, FusedEnv())
    env = FusedEnv()
    first, _ = env.reset(seed=0)
    second, _ = env.reset(seed=1)
    batch = {key: np.stack([first[key], second[key]]) for key in first}
    adv, attacked = live.perturb(batch, np.zeros(2, np.int64), steps_done=0)
    assert attacked == 2 and set(adv) == {"pixels", "state"}
    assert adv["pixels"].dtype == np.uint8
    np.testing.assert_array_equal(adv["state"], batch["state"])
    diff = np.abs(adv["pixels"].astype(int) - batch["pixels"].astype(int))
    assert 0 < diff.max() <= 8


# ---------------------------------------------------------------------------------------------
# adversarial training in the native online loop on fused observations

gym.register(id="RlkitTestFused-v0", entry_point=FusedEnv)


def fused_config(folder: Path, total: int) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "env": {"id": "RlkitTestFused-v0", "max_episode_steps": 7},
            "agent": {"name": "mentor", "kwargs": {**SMALL, "num_expl_steps": 10}},
            "train": {
                "total_steps": total,
                "eval_every": 0,
                "checkpoint_every": 20,
                "replay_size": 100,
                "progress": False,
            },
            "eval": {"episodes": 1},
            "run": {"dir": str(folder), "tensorboard": False},
            "adversarial": {
                "attack": {"name": "random", "settings": {"seed": 0}},
                "eps": 8 / 255,
                "probability": 0.5,
            },
        }
    )


def test_online_adversarial_training_on_fused_observations_resumes_exactly(
    tmp_path: Path, train_loop
) -> None:
    straight = train_loop(fused_config(tmp_path / "straight", 40))
    train_loop(
        fused_config(tmp_path / "resumed", 20)
    )  # stops mid-episode (episodes of 3 and 4 steps)
    resumed = train_loop(fused_config(tmp_path / "resumed", 40))
    rng = np.random.default_rng(0)
    a = straight.buffer.sample(len(straight.buffer), rng)
    b = resumed.buffer.sample(len(resumed.buffer), np.random.default_rng(0))
    np.testing.assert_array_equal(a.obs.numpy(), b.obs.numpy())
    np.testing.assert_array_equal(a.extras["state"].numpy(), b.extras["state"].numpy())
    assert straight.live.fused is not None and straight.live.attack is not None
    for name, tensor in straight.agent.state_dict()["actor"].items():
        assert torch.equal(tensor, resumed.agent.state_dict()["actor"][name]), name
