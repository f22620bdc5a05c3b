"""D4RL reference returns and normalised scores."""

from __future__ import annotations

import numpy as np
import pytest

from rlkit.datasets import normalized_score, reference_scores
from rlkit.datasets.scores import D4RL_REFERENCE, d4rl_task


@pytest.mark.parametrize(
    "name, task",
    [
        ("Hopper-v5", "hopper"),
        ("hopper-medium-v2", "hopper"),
        ("hopper_medium-replay-v2", "hopper"),
        ("HalfCheetah-v4", "halfcheetah"),
        ("halfcheetah-medium-expert-v2", "halfcheetah"),
        ("Walker2d-v5", "walker2d"),
        ("mujoco/walker2d/expert-v0", "walker2d"),
        ("Ant-v5", "ant"),
        ("antmaze-umaze-v2", None),
        ("Pendulum-v1", None),
        (None, None),
    ],
)
def test_d4rl_task(name: str | None, task: str | None) -> None:
    assert d4rl_task(name) == task


def test_reference_scores() -> None:
    assert reference_scores("Hopper-v5", {}) == (-20.272305, 3234.3)
    assert reference_scores("halfcheetah-medium-v2", {}) == (-280.178953, 12135.0)
    assert reference_scores(None, {"env_id": "Walker2d-v5"}) == (1.629008, 4592.3)
    assert reference_scores(None, {"name": "ant-expert-v2"}) == (-325.6, 3879.7)
    # D4RL's win over the dataset's own for the locomotion tasks
    assert (
        reference_scores("Hopper-v5", {"ref_min_score": 0, "ref_max_score": 1})
        == (D4RL_REFERENCE["hopper"])
    )
    assert reference_scores("antmaze-umaze-v2", {"ref_min_score": 0, "ref_max_score": 1}) == (
        0.0,
        1.0,
    )
    assert reference_scores("Pendulum-v1", {"ref_min_score": -1200.0}) is None
    assert reference_scores("Pendulum-v1", {}) is None


def test_normalized_score() -> None:
    ref = reference_scores("Hopper-v5", {})
    assert ref is not None
    scores = normalized_score([-20.272305, 3234.3, (3234.3 - 20.272305) / 2], ref)
    np.testing.assert_allclose(scores, [0.0, 100.0, 50.0])
    np.testing.assert_allclose(normalized_score(1500.0, (1000.0, 3000.0)), 25.0)
    np.testing.assert_allclose(normalized_score([-150.0], (-1200.0, -150.0)), [100.0])
    with pytest.raises(ValueError, match="must differ"):
        normalized_score([1.0], (2.0, 2.0))
