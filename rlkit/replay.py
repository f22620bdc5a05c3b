"""A numpy replay buffer with n-step sampling; terminated and truncated are kept apart."""

from __future__ import annotations

import numpy as np
import torch

from rlkit.batch import Batch


class ReplayBuffer:
    """Circular buffer of single-env transitions, sampled as n-step :class:`Batch` es.

    :param capacity: maximum number of transitions.
    :param obs_shape: shape of one observation.
    :param action_shape: shape of one action.
    """

    KEYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...]) -> None:
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.action = np.zeros((capacity, *action_shape), dtype=np.float32)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=bool)
        self.truncated = np.zeros(capacity, dtype=bool)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminated: bool, truncated: bool) -> None:
        """Store one transition.

        :param obs: observation before the step.
        :param action: the action taken.
        :param reward: the reward received.
        :param next_obs: the observation after the step (the true final one at episode end).
        :param terminated: the MDP ended (no bootstrap).
        :param truncated: the episode was cut (time limit): still bootstrap.
        """
        i = self.pos
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.terminated[i], self.truncated[i] = next_obs, terminated, truncated
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def recent_actions(self, count: int) -> np.ndarray:
        """The last ``count`` actions, oldest first (used to restore an env after resuming)."""
        idx = (self.pos - count + np.arange(count)) % self.capacity
        return self.action[idx]

    def sample(self, batch_size: int, rng: np.random.Generator, n_step: int = 1, gamma: float = 0.99) -> Batch:
        """Sample n-step transitions uniformly.

        The n-step sum stops early at an episode end (terminated or truncated) and at the newest
        stored transition; ``discount`` is ``gamma**k`` times ``1 - terminated`` of the last step.

        :param batch_size: transitions in the batch.
        :param rng: numpy generator (its state is checkpointed by the loop).
        :param n_step: return horizon.
        :param gamma: discount factor.
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        oldest = (self.pos - self.size) % self.capacity
        logical = rng.integers(0, self.size, size=batch_size)
        reward = np.zeros(batch_size, dtype=np.float64)
        discount = np.ones(batch_size, dtype=np.float64)
        active = np.ones(batch_size, dtype=bool)
        last = (oldest + logical) % self.capacity
        for k in range(n_step):
            idx = (oldest + logical + k) % self.capacity
            valid = active & (logical + k < self.size)
            reward[valid] += discount[valid] * self.reward[idx[valid]]
            discount[valid] *= gamma
            last[valid] = idx[valid]
            ended = self.terminated[idx] | self.truncated[idx]
            discount[valid & self.terminated[idx]] = 0.0
            active = valid & ~ended
        first = (oldest + logical) % self.capacity
        as_t = lambda x: torch.as_tensor(np.asarray(x, dtype=np.float32))  # noqa: E731
        return Batch(as_t(self.obs[first]), as_t(self.action[first]), as_t(reward)[:, None], as_t(discount)[:, None], as_t(self.next_obs[last]))

    def _logical(self) -> np.ndarray:
        """Storage indices from the oldest to the newest transition."""
        return (self.pos - self.size + np.arange(self.size)) % self.capacity

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The stored transitions, oldest first, for checkpoints."""
        order = self._logical()
        return {f"buffer_{k}": getattr(self, k)[order] for k in self.KEYS}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_arrays` returned (the capacity may differ if large enough)."""
        size = len(arrays["buffer_reward"])
        if size > self.capacity:
            raise ValueError(f"checkpointed buffer holds {size} transitions, more than the capacity {self.capacity}")
        for key in self.KEYS:
            getattr(self, key)[:size] = arrays[f"buffer_{key}"]
        self.size, self.pos = size, size % self.capacity
