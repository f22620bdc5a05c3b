"""One observation as the env gives it (an array, or a dict of arrays for fused observations such
as Adroit's ``{"pixels", "state"}``) and the batch of one an agent acts on."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

Observation = np.ndarray | dict[str, np.ndarray]


def as_observation(obs: Any) -> Observation:
    """``obs`` as an array, or a dict of arrays (each entry converted).

    :param obs: what an env's ``reset`` or ``step`` returned as the observation.
    """
    if isinstance(obs, dict):
        return {key: np.asarray(value) for key, value in obs.items()}
    return np.asarray(obs)


def batch_of_one(obs: Any) -> Any:
    """A batch of one observation: ``obs[None]``, entry by entry for a dict (typed ``Any``: the
    agent contract types ``act``'s argument as an array; fused agents take the dict).

    :param obs: one observation (an array or a dict of arrays).
    """
    if isinstance(obs, dict):
        return {key: np.asarray(value)[None] for key, value in obs.items()}
    return np.asarray(obs)[None]


def split_dict_space(
    space: gym.spaces.Dict,
) -> tuple[str, gym.spaces.Box, dict[str, gym.spaces.Box]]:
    """(image key, image space, side spaces) of a fused Dict observation space (the layout the
    replay and the agents accept).

    :param space: one 3-D Box (the frames) and any number of 1-D float Boxes (side keys).
    :raises ValueError: any other layout (the message names the offending key).
    """
    images = [
        k for k, s in space.spaces.items() if isinstance(s, gym.spaces.Box) and len(s.shape) == 3
    ]
    if len(images) != 1:
        raise ValueError(
            "a Dict observation must hold exactly one image key (a 3-D Box) plus flat float "
            f"keys; got image keys {images} in {space}"
        )
    side: dict[str, gym.spaces.Box] = {}
    for key, sub in space.spaces.items():
        if key == images[0]:
            continue
        if not (
            isinstance(sub, gym.spaces.Box)
            and len(sub.shape) == 1
            and np.issubdtype(sub.dtype, np.floating)
        ):
            raise ValueError(f"Dict observation key {key!r} must be a flat float Box, got {sub}")
        side[key] = sub
    return images[0], space.spaces[images[0]], side  # type: ignore[return-value]


class StateKeys:
    """The layout of a fused Dict observation: its image key and the state keys, concatenated in
    the space's order into one state vector.

    :param space: a Dict of one image key and flat float keys (see
        :func:`rlkit.observations.split_dict_space`).
    """

    def __init__(self, space: gym.spaces.Dict) -> None:
        self.image_key, self.image_space, side = split_dict_space(space)
        if not side:
            raise ValueError(f"a fused observation needs a state key besides the image: {space}")
        self.keys = list(side)
        self.dim = sum(int(np.prod(sub.shape)) for sub in side.values())

    def from_obs(self, obs: dict[str, np.ndarray], device: torch.device) -> torch.Tensor:
        """The state batch (B, dim) of a dict observation batch.

        :param obs: ``{image key: (B, C, H, W), state key: (B, d), ...}``.
        :param device: torch device.
        """
        parts = [torch.as_tensor(np.asarray(obs[k]), device=device).float() for k in self.keys]
        return torch.cat(parts, dim=-1)

    def from_extras(self, extras: dict[str, torch.Tensor], prefix: str = "") -> torch.Tensor:
        """The state batch from a replay batch's ``extras`` (``prefix`` "next_" for next_obs).

        :param extras: ``Batch.extras``.
        :param prefix: "" or "next_".
        """
        missing = [prefix + k for k in self.keys if prefix + k not in extras]
        if missing:
            raise ValueError(
                f"the batch lacks extras {missing}: a fused agent learns from a replay of Dict "
                "observations (the side keys come back as extras)"
            )
        return torch.cat([extras[prefix + k].float() for k in self.keys], dim=-1)
