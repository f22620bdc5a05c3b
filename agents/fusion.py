"""Proprioceptive state fused into a pixel agent's networks, as the MENTOR authors did on Adroit
(``agents/mentor_adroit.py``: ``StateEncoder``, used by ``Actor``, ``Critic`` and ``VNetwork``).

Each of actor, critic (and so its target) and value net has its own fusion, right after its
trunk: ``h = trunk(pixel features)`` (Linear -> LayerNorm -> Tanh, feature_dim), then
``fusion(h + state_encoder(state))`` with ``state_encoder`` = Linear(state_dim, hidden) -> ReLU
-> Linear(hidden, feature_dim) and ``fusion`` = Linear(feature_dim, hidden) -> ReLU ->
Linear(hidden, feature_dim); what follows the trunk (the actor's layers, the Q heads on
``[h, action]``, V's head) is unchanged. The state is the raw float vector (no normalisation),
and the networks' DrQ-v2 initialisation covers the fusion layers.

rlkit passes the state through the agent's code as extra columns of the encoder output
(:func:`with_state`): the networks' ``features`` are ``[pixel features, state]`` and
:class:`FusedTrunk` splits them, so every call site (acting, the update, the dormant ratio,
perturbation and S_top, which see the fusion layers as part of each network) stays one code path.
"""

from __future__ import annotations

import torch
from torch import nn

from rlkit.networks import Trunk, weight_init
from rlkit.observations import StateKeys

__all__ = ["FusedPolicy", "FusedTrunk", "StateFusion", "StateKeys", "fuse_trunk", "with_state"]


class StateFusion(nn.Module):
    """The authors' ``StateEncoder``: ``fusion(h + state_encoder(state))``.

    :param state_dim: proprioceptive state size (24 on Adroit).
    :param hidden_dim: hidden width (the agent's hidden_dim, 1024).
    :param feature_dim: trunk output size (50).
    """

    def __init__(self, state_dim: int, hidden_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.state_encoder = nn.Sequential(
            nn.Linear(state_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, feature_dim)
        )
        self.fusion = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, feature_dim)
        )

    def forward(self, h: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.fusion(h + self.state_encoder(state))


class FusedTrunk(nn.Module):
    """DrQ-v2's trunk on the pixel columns of ``features``, then :class:`StateFusion` with the
    last ``state_dim`` columns (the state).

    :param repr_dim: pixel encoder output size.
    :param state_dim: state size.
    :param feature_dim: trunk output size.
    :param hidden_dim: fusion hidden width.
    """

    def __init__(self, repr_dim: int, state_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.repr_dim, self.state_dim = int(repr_dim), int(state_dim)
        self.trunk = Trunk(repr_dim, feature_dim)
        self.state = StateFusion(state_dim, hidden_dim, feature_dim)
        self.apply(weight_init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pixels, state = features.split([self.repr_dim, self.state_dim], dim=-1)
        return self.state(self.trunk(pixels), state)


def fuse_trunk(net: nn.Module, state_dim: int, feature_dim: int, hidden_dim: int) -> nn.Module:
    """Replace ``net.trunk`` (a :class:`~rlkit.networks.Trunk`) by a :class:`FusedTrunk` of the
    same input size; return ``net``.

    :param net: an actor, critic or value net with a ``trunk`` attribute.
    :param state_dim: state size.
    :param feature_dim: trunk output size.
    :param hidden_dim: fusion hidden width.
    """
    repr_dim = int(net.trunk[0].in_features)  # type: ignore[index]
    net.trunk = FusedTrunk(repr_dim, state_dim, feature_dim, hidden_dim)
    return net


def with_state(features: torch.Tensor, state: torch.Tensor | None) -> torch.Tensor:
    """``[features, state]`` (what fused networks take); ``features`` unchanged without a state.

    :param features: pixel encoder outputs (B, repr_dim).
    :param state: states (B, state_dim), or None (not fused).
    """
    if state is None:
        return features
    return torch.cat([features, state.to(features.dtype)], dim=-1)


class FusedPolicy(nn.Module):
    """Encoder then a fused actor on *pixels*, the state held as context (set per batch with
    :meth:`set_context`): the body of a fused agent's policy view, so attacks perturb the pixels
    only.

    :param encoder: the pixel encoder.
    :param actor: the fused actor.
    """

    def __init__(self, encoder: nn.Module, actor: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.actor = actor
        self.register_buffer("state", torch.zeros(0), persistent=False)

    def set_context(self, state: torch.Tensor) -> None:
        """The states ``(B, state_dim)`` of the next call's pixels.

        :param state: raw proprioceptive states.
        """
        self.state = torch.as_tensor(state).float()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.state.shape[0] != pixels.shape[0]:
            raise ValueError(
                f"fused policy view: state context for {self.state.shape[0]} samples, called on "
                f"{pixels.shape[0]} images; call view.body.set_context(state) first"
            )
        features = with_state(self.encoder(pixels), self.state.to(pixels.device))
        return self.actor(features)
