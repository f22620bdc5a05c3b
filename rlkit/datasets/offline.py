"""An offline dataset as a data source: uniform minibatches of stored transitions."""

from __future__ import annotations

import numpy as np
import torch

from rlkit.batch import Batch
from rlkit.datasets.transitions import Transitions, dataset_error


class OfflineDataset:
    """Samples :class:`~rlkit.batch.Batch` es of single-step transitions from a dataset.

    Follows :class:`rlkit.batch.DataSource`. Every array becomes a torch tensor once, at
    construction (on ``device``); :meth:`sample` only indexes them.

    - ``reward`` = ``rewards * reward_scale + reward_shift`` (zeros with ``zero_rewards``), (B, 1);
    - ``discount`` = ``gamma * (1 - terminal)``, (B, 1): a timeout still bootstraps;
    - ``extras["terminated"]`` = the terminal flags as float32, (B, 1).

    Observations keep their stored dtype (uint8 pixels stay uint8); continuous actions are float32
    and discrete (integer) actions int64.

    :param transitions: the data.
    :param gamma: discount factor.
    :param reward_scale: multiplies every reward (see
        :func:`~rlkit.datasets.reward_scale_return_range`).
    :param reward_shift: added to every reward after scaling.
    :param zero_rewards: replace every reward by 0 (offline imitation).
    :param device: where the tensors live (sampling on a GPU then needs no copies).
    """

    def __init__(
        self,
        transitions: Transitions,
        gamma: float = 0.99,
        reward_scale: float = 1.0,
        reward_shift: float = 0.0,
        zero_rewards: bool = False,
        device: str | torch.device = "cpu",
    ) -> None:
        if len(transitions) == 0:
            raise dataset_error(
                transitions.metadata.get("source", "transitions"), "observations", "no rows"
            )
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.transitions = transitions
        self.gamma = float(gamma)
        self.size = len(transitions)
        self.device = torch.device(device)
        if zero_rewards:
            reward = np.zeros(self.size, dtype=np.float32)
        else:
            scaled = transitions.rewards.astype(np.float64) * reward_scale + reward_shift
            reward = scaled.astype(np.float32)
        terminated = transitions.terminals.astype(np.float32)
        actions = transitions.actions
        action_dtype = np.int64 if np.issubdtype(actions.dtype, np.integer) else np.float32
        self.obs = self._tensor(transitions.observations)
        self.next_obs = self._tensor(transitions.next_observations)
        self.action = self._tensor(actions.astype(action_dtype, copy=False))
        self.reward = self._tensor(reward[:, None])
        self.discount = self._tensor((self.gamma * (1.0 - terminated))[:, None].astype(np.float32))
        self.terminated = self._tensor(terminated[:, None])

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(array, copy=True, order="C")).to(self.device)

    def __len__(self) -> int:
        return self.size

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement.

        Draws ``rng.integers(0, len(self), batch_size)`` once, so the batch is determined by the
        generator's state (which the loop checkpoints).

        :param batch_size: transitions in the batch.
        :param rng: numpy generator.
        """
        index = torch.from_numpy(rng.integers(0, self.size, batch_size)).to(self.device)
        return Batch(
            self.obs[index],
            self.action[index],
            self.reward[index],
            self.discount[index],
            self.next_obs[index],
            {"terminated": self.terminated[index]},
        )
