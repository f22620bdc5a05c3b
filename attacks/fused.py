"""Attacks on fused observations: pixels plus a proprioceptive state in one ``Dict`` (Adroit with
its 24-dim hand state, as the MENTOR authors ran it).

The attack perturbs the image key only, with the pixel budget of that image. The state keys pass
through clean and reach the policy as its context: a fused agent's policy view takes the pixels
and holds the states (``view.body.set_context(state)``, :class:`rlkit.agents.fusion.FusedPolicy`),
so before each attack call, and before the policy acts, the context is set to the states of
exactly the rows in that batch. Traces and distortion statistics record the images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlkit.config import ConfigError
from rlkit.observations import StateKeys, split_dict_space


def attacked_space(space: gym.spaces.Space) -> gym.spaces.Space:
    """The space an attack perturbs: the image key's of a fused Dict, else ``space`` itself.

    :param space: an observation space (a single env's).
    """
    if isinstance(space, gym.spaces.Dict):
        return split_dict_space(space)[1]
    return space


class FusedContext:
    """The split of fused observation batches into the image (attacked) and the states (the
    policy's context).

    :param space: the single-env Dict space (one image key plus flat float keys).
    :param view: the policy view whose ``body`` has ``set_context(state)``.
    :raises ConfigError: the policy takes no state context (it cannot be attacked on pixels
        alone).
    """

    def __init__(self, space: gym.spaces.Dict, view: Any) -> None:
        try:
            self.layout = StateKeys(space)
        except ValueError as err:
            raise ConfigError(f"attacks on Dict observations: {err}") from None
        setter = getattr(getattr(view, "body", None), "set_context", None)
        if not callable(setter):
            raise ConfigError(
                f"this policy observes a Dict ({space}) but its view takes no state context; "
                "attacks on fused observations need a fused agent's view (drqv2/mentor with "
                "hand_state)"
            )
        self._set_context: Callable[[torch.Tensor], None] = setter
        self.state = torch.zeros(0, 0)

    def split(self, obs: dict[str, Any]) -> np.ndarray:
        """The image batch of ``obs`` (N, C, H, W); its states are kept for :meth:`feed`.

        :param obs: a batch ``{image key: (N, C, H, W), state key: (N, d), ...}``.
        """
        self.state = self.layout.from_obs(obs, torch.device("cpu"))
        return np.asarray(obs[self.layout.image_key])

    def feed(self, rows: np.ndarray | None, device: torch.device) -> None:
        """Set the policy's context to the kept states of ``rows`` (None: all).

        :param rows: (N,) bool mask of the batch the policy is called on next.
        :param device: the policy's device.
        """
        state = self.state if rows is None else self.state[torch.from_numpy(rows)]
        self._set_context(state.to(device))

    def join(self, obs: dict[str, Any], image: np.ndarray) -> dict[str, Any]:
        """``obs`` with its image key replaced by ``image``.

        :param obs: the clean batch (or single observation).
        :param image: the perturbed image(s), same shape as ``obs[image key]``.
        """
        return {**obs, self.layout.image_key: image}
