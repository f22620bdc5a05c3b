"""MENTOR (Huang et al., ICML 2025): DrQ-v2 + DrM's dormant-ratio machinery, a mixture-of-experts
actor and task-oriented perturbation.

Built from rlkit's shared DrQ-v2 networks (:mod:`rlkit.networks`): encoder (pixels: DrQ-v2's CNN
with random-shift augmentation; states: the identity), :class:`~rlkit.networks.DrQActor` with
:class:`~rlkit.agents.moe.MoE` as its middle layer, :class:`~rlkit.networks.DrQCritic`, and
DrM's value network V trained by expectile regression toward min Q. One update, in the
authors' order:

1. every ``perturb_every`` updates: perturb (:mod:`rlkit.agents.perturbation`) with
   ``alpha = clip(1 - 2 beta, alpha_min, alpha_max)``, resetting all Adam states;
2. augment and encode (next observations without gradient);
3. beta = the actor's dormant ratio on this batch (:mod:`rlkit.agents.dormant`);
4. V toward min Q(s, a) by expectile regression (``expectile`` 0.9);
5. critic and encoder toward ``r + gamma^n [lambda V(s') + (1 - lambda) min Q'(s', a')]``,
   ``lambda`` from beta (or fixed 0.5 on Meta-World);
6. actor on ``-min Q + aux_loss_scale * aux`` with its gradient norm clipped to 0.001;
7. Polyak update of the target critic (tau 0.01).

Exploration: uniform for ``num_expl_steps`` agent steps, then Gaussian noise with
``sigma = c / (1 + exp(-10 (beta - 0.2)))``. ``preset`` (dmc, metaworld, adroit) fills the
per-domain settings the authors spread over three copied agents; any explicit argument wins:

======================  ========  ==========  ========
setting                 dmc       metaworld   adroit
======================  ========  ==========  ========
std_scale (c)           0.8       1.0         1.0
lambda                  sigmoid   0.5 fixed   sigmoid
expectile               0.9       0.9         0.7
perturb_every           10000     50000       50000
alpha_max               1.0       0.95        0.9
nstep / discount        3 / 0.99  10 / 0.97   3 / 0.99
critic LayerNorm+drop   no        yes (0.01)  no
update noise std        dormant   dormant     awake
======================  ========  ==========  ========

("awake": the authors' Adroit agent's ``stddev_type: awake``; its updates use the larger of the
dormant std and ``linear(1.0,0.1,500000)`` counted from the first update past the seed steps
with beta below 0.2; acting keeps the dormant std.)
(Meta-World's n-step 10 and gamma 0.97 are what the released ``train_mw.py`` trains with, as it
never calls its annealing; Adroit Door uses expectile 0.6 in the authors' task config.)

Differences from the released code (emlynw/mentor 2005f05), besides those listed in
:mod:`rlkit.agents.moe` and :mod:`rlkit.agents.perturbation`:

- the policy acts and is viewed in eval mode (gate dropout off); updates run in train mode
  (dropout on in the dormant forward, the TD target and the actor loss, as theirs);
- the value net's regression target min Q(s, a) is computed without gradient (theirs builds
  the graph and discards the critic's gradient; same values);
- target actions and actor-loss actions use DrQ-v2's clipped noise with a straight-through
  clamp to [-1, 1] (their TruncatedNormal; the ``1e-6`` margin is dropped);
- the dormant ratio is computed with every expert on every row (``dense_dormant=True``, as
  theirs); ``dense_dormant=False`` measures the experts on their routed rows only (cheaper);
  ReLU-fed layers count their post-ReLU activity, which is what their hooks see through the
  in-place ReLUs (``dormant_post_relu=True``; False measures every layer before its activation);
- ``pre_tanh_penalty`` (rlkit's option; default 0, the authors' loss): adds
  ``c * mean(mu^2)`` on the pre-tanh mean to the actor loss. Why: on state cartpole-swingup
  (the CPU config, width 256) the MoE actor, and the authors' transcription identically, slides
  within ~500 updates of the seed steps to one saturated action (pre-tanh mean -8 to -15 on
  every state; seeds 0-2 of 0-3), where the gradient through tanh (~4 exp(-2|mu|)) leaves an
  actor-loss gradient norm of ~1e-8, too small for Adam (eps 1e-8) to act on: it never
  recovers. The plain actor slides too on some seeds but stops shallower (-6.5 to -7.5) and
  recovers as its dead middle units (107 of 256) raise beta (0.03 to 0.19) and so the
  exploration noise; the MoE's beta stays at 0.035, its 16 expert output layers, counted before
  activation, never reading dormant. With c = 1e-3 the penalty balances the Q gradient near
  ``|mu|`` 3 to 4 (tanh 0.995 and more), the gradient stays alive and the actor stays
  state-dependent (seeds 0-3, :mod:`benchmarks.mentor_saturation`; seed 0 evaluates 124
  after 6k steps instead of 75).
- (no difference) on Adroit the authors also run their perturbation on the pixel encoder; it
  blends Linear layers only and their conv encoder has none, so it only resets the encoder's
  optimiser state, which every perturbation here does too.

Proprioceptive fusion (Adroit): given a Dict observation space (one image key plus flat float
state keys, e.g. ``adroit/door``'s ``{"pixels": (3, 84, 84), "state": (24,)}``), the agent fuses
the state into actor, critic (and target) and V after each trunk, as the authors'
``mentor_adroit.py`` does (:mod:`rlkit.agents.fusion`). ``act`` takes a dict batch; ``update``
reads the states from ``batch.extras`` (``state`` / ``next_state``, as the replay samples a
Dict space); the pixels alone are augmented and encoded. The policy view takes the pixels
and holds the state as context (``view.body.set_context(state)``), so attacks perturb pixels
only; evaluation and adversarial training feed each batch's states (:mod:`rlkit.attacks.fused`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlkit.agent import UpdateSchedule
from rlkit.agents.dormant import dormant_ratio, exploration_std, perturb_factor, value_mix
from rlkit.agents.drqv2 import clipped_sample
from rlkit.agents.drqv2 import schedule as drq_schedule
from rlkit.agents.fusion import FusedPolicy, StateKeys, fuse_trunk, with_state
from rlkit.agents.moe import MoE
from rlkit.agents.perturbation import (
    BestAgents,
    blend,
    fresh_like,
    is_blended,
    named_parameters,
    reset_optimizer,
)
from rlkit.agents.sa_sgld import check_sa_settings, sa_regularizer, tanh_mean_divergence
from rlkit.batch import Batch
from rlkit.io import load_torch, save_torch
from rlkit.networks import (
    DrQActor,
    DrQCritic,
    EncodedPolicy,
    RandomShift,
    Trunk,
    is_pixel_space,
    make_encoder,
    mlp,
    weight_init,
)
from rlkit.policy import PolicyView, continuous_view

STATE_FILE = "agent.pt"
NETWORKS = ("encoder", "actor", "critic", "critic_target", "value")
OPTIMISERS = ("encoder_opt", "actor_opt", "critic_opt", "value_opt")
Preset = Literal["dmc", "metaworld", "adroit"]
Perturbation = Literal["task_oriented", "reset", "none"]

PRESETS: dict[str, dict[str, Any]] = {
    "dmc": {
        "std_scale": 0.8,
        "lambda_mode": "dormant",
        "target_lambda": 0.6,
        "expectile": 0.9,
        "perturb_every": 10_000,
        "alpha_max": 1.0,
        "nstep": 3,
        "discount": 0.99,
        "critic_dropout": 0.0,
        "stddev_type": "dormant",
    },
    "metaworld": {
        "std_scale": 1.0,
        "lambda_mode": "fixed",
        "target_lambda": 0.5,
        "expectile": 0.9,
        "perturb_every": 50_000,
        "alpha_max": 0.95,
        "nstep": 10,
        "discount": 0.97,
        "critic_dropout": 0.01,
        "stddev_type": "dormant",
    },
    "adroit": {
        "std_scale": 1.0,
        "lambda_mode": "dormant",
        "target_lambda": 0.6,
        "expectile": 0.7,
        "perturb_every": 50_000,
        "alpha_max": 0.9,
        "nstep": 3,
        "discount": 0.99,
        "critic_dropout": 0.0,
        "stddev_type": "awake",
    },
}


class ValueNet(nn.Module):
    """DrM's state-value network: trunk then Linear -> ReLU -> Linear -> ReLU -> Linear(1).

    :param repr_dim: encoder output size.
    :param feature_dim: trunk output size.
    :param hidden_dim: hidden width.
    """

    def __init__(self, repr_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.trunk = Trunk(repr_dim, feature_dim)
        self.v = mlp([feature_dim, hidden_dim, hidden_dim, 1])
        self.apply(weight_init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.v(self.trunk(features))


def regularised_head(inp: int, hidden: int, dropout: float) -> nn.Sequential:
    """DrM/MENTOR Meta-World Q head: (Linear, Dropout, LayerNorm, ReLU) x 2, Linear(1).

    :param inp: input size.
    :param hidden: hidden width.
    :param dropout: dropout probability.
    """
    layers: list[nn.Module] = []
    for width_in in (inp, hidden):
        layers += [nn.Linear(width_in, hidden), nn.Dropout(dropout), nn.LayerNorm(hidden)]
        layers.append(nn.ReLU())
    return nn.Sequential(*layers, nn.Linear(hidden, 1))


class RegularisedCritic(DrQCritic):
    """:class:`~rlkit.networks.DrQCritic` with Dropout and LayerNorm in its Q heads (Meta-World).

    :param repr_dim: encoder output size.
    :param action_dim: action size.
    :param feature_dim: trunk output size.
    :param hidden_dim: hidden width.
    :param dropout: dropout probability (0.01).
    """

    def __init__(
        self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int, dropout: float
    ) -> None:
        super().__init__(repr_dim, action_dim, feature_dim, hidden_dim)
        self.q1 = regularised_head(feature_dim + action_dim, hidden_dim, dropout)
        self.q2 = regularised_head(feature_dim + action_dim, hidden_dim, dropout)
        self.apply(weight_init)


def noisy_action(mean: torch.Tensor, std: float, clip: float) -> torch.Tensor:
    """``mean + clip(N(0, std), -clip, clip)`` clamped to [-1, 1] with a straight-through
    gradient (the authors' ``TruncatedNormal.sample(clip)``).

    :param mean: tanh action means.
    :param std: noise std.
    :param clip: noise clip.
    """
    return clipped_sample(mean, std, clip, margin=0.0)


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """``mean(|tau - 1(diff > 0)| diff^2)`` for ``diff = V - Q`` (DrM's value loss).

    :param diff: V - Q.
    :param expectile: tau (0.9: V tracks an upper expectile of Q).
    """
    weight = torch.where(diff > 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


class MentorAgent:
    """MENTOR on pixels (3-D uint8 Box), states (any other Box) or pixels fused with a
    proprioceptive state (a Dict, see the module doc); actions in [-1, 1], rescaled to the env's
    bounds.

    :param observation_space: Box observations (pixels (C, H, W) uint8, or a vector), or a Dict
        of one image key and flat float state keys (fused as the authors did on Adroit).
    :param action_space: Box actions.
    :param preset: per-domain settings: dmc, metaworld or adroit (see the module table).
    :param feature_dim: trunk output size (50).
    :param hidden_dim: hidden width of actor, critic and value net (1024).
    :param lr: Adam learning rate of every network (1e-4).
    :param critic_target_tau: Polyak factor of the target critic (0.01).
    :param update_every_steps: agent steps per update (2).
    :param num_expl_steps: agent steps of uniform actions at the start (2000 = 4000 frames).
    :param stddev_clip: clip of the target and actor-loss noise (0.3).
    :param batch_size: replay batch size (256).
    :param nstep: n-step horizon (None: the preset's).
    :param discount: discount (None: the preset's).
    :param moe: the mixture-of-experts middle layer (False: DrQ-v2's Linear; the w/o-MoE
        ablation).
    :param num_experts: experts (16).
    :param top_k: experts per row (4).
    :param expert_hidden: experts' hidden width (256).
    :param gate_hidden: gate's hidden width (256).
    :param gate_dropout: gate dropout (0.1).
    :param sparse_moe: run each expert only on its routed rows (same result as dense).
    :param aux_loss_scale: weight of the MoE aux loss in the actor loss (1.0: what the released
        code applies; their configured 0.002 is unused).
    :param perturbation: task_oriented (MENTOR), reset (DrM: toward a fresh init) or none.
    :param perturb_every: updates between perturbations (None: the preset's).
    :param alpha_min: lower clip of the perturbation factor (0.2).
    :param alpha_max: upper clip (None: the preset's; per task in the paper).
    :param perturb_rate: slope of ``1 - rate * beta`` (2).
    :param best_agents: size of S_top (10).
    :param blend_layernorm: blend LayerNorm parameters too (the authors keep them).
    :param dormant_threshold: dormant-neuron threshold (0.025).
    :param dense_dormant: measure the dormant ratio with every expert on every row (authors).
    :param dormant_post_relu: count ReLU-fed layers after their ReLU, as the authors' in-place
        ReLUs make their hooks do (False: every layer before its activation).
    :param target_dormant_ratio: the ratio centring both sigmoids (0.2).
    :param std_scale: maximum exploration std c (None: the preset's).
    :param std_temperature: exploration sigmoid temperature (10).
    :param lambda_mode: "dormant" (sigmoid of beta) or "fixed" (None: the preset's).
    :param target_lambda: lambda's maximum (dormant) or value (fixed) (None: the preset's).
    :param lambda_temperature: lambda sigmoid temperature (50).
    :param expectile: expectile of the value regression (None: the preset's).
    :param critic_dropout: dropout with LayerNorm in the Q heads (None: the preset's; 0: none).
    :param stddev_type: the noise std of the updates' target and actor actions: "dormant" (the
        dormant-ratio std, as acting uses) or "awake" (the authors' Adroit agent: once the ratio
        first falls below its target after the seed steps, the larger of that std and
        ``awake_schedule`` counted from then); None: the preset's.
    :param awake_schedule: DrQ-v2 schedule of "awake" (agent steps since awakening).
    :param actor_grad_clip: actor gradient-norm clip (0.001, the authors'; 0 disables).
    :param pre_tanh_penalty: weight c of ``c * mean(mu^2)`` on the actor's pre-tanh mean, added
        to the actor loss (0: none, the authors'; rlkit's option, see the module docstring).
    :param sa_kappa: weight of the SA regulariser on the actor loss (0: none), as ``drqv2``'s:
        SA-DDPG's ``||tanh(mu(s')) - tanh(mu(s))||^2`` at the SGLD maximiser within ``sa_eps``
        of the raw observations (see :mod:`rlkit.agents.sa`), through encoder and actor (in
        eval mode: no gate dropout), its gradient clipped with the actor's; not with fused
        pixels and states.
    :param sa_eps: its observation box radius (raw observation units).
    :param sa_steps: its SGLD steps.
    :param encoder_bf16: run the pixel encoder's convolutions under bfloat16 autocast (weights,
        gradients and the heads stay float32): about 3x faster encoder passes on CPUs with AMX;
        the authors ran float32, hence off by default (see :class:`rlkit.networks.PixelEncoder`).
    :param device: torch device.
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box | gym.spaces.Dict,
        action_space: gym.spaces.Box,
        preset: Preset = "dmc",
        feature_dim: int = 50,
        hidden_dim: int = 1024,
        lr: float = 1e-4,
        critic_target_tau: float = 0.01,
        update_every_steps: int = 2,
        num_expl_steps: int = 2000,
        stddev_clip: float = 0.3,
        batch_size: int = 256,
        nstep: int | None = None,
        discount: float | None = None,
        moe: bool = True,
        num_experts: int = 16,
        top_k: int = 4,
        expert_hidden: int = 256,
        gate_hidden: int = 256,
        gate_dropout: float = 0.1,
        sparse_moe: bool = True,
        aux_loss_scale: float = 1.0,
        perturbation: Perturbation = "task_oriented",
        perturb_every: int | None = None,
        alpha_min: float = 0.2,
        alpha_max: float | None = None,
        perturb_rate: float = 2.0,
        best_agents: int = 10,
        blend_layernorm: bool = True,
        dormant_threshold: float = 0.025,
        dense_dormant: bool = True,
        dormant_post_relu: bool = True,
        target_dormant_ratio: float = 0.2,
        std_scale: float | None = None,
        std_temperature: float = 10.0,
        lambda_mode: Literal["dormant", "fixed"] | None = None,
        target_lambda: float | None = None,
        lambda_temperature: float = 50.0,
        expectile: float | None = None,
        critic_dropout: float | None = None,
        stddev_type: Literal["dormant", "awake"] | None = None,
        awake_schedule: str = "linear(1.0,0.1,500000)",
        actor_grad_clip: float = 0.001,
        pre_tanh_penalty: float = 0.0,
        sa_kappa: float = 0.0,
        sa_eps: float = 0.05,
        sa_steps: int = 10,
        encoder_bf16: bool = False,
        device: str = "cpu",
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError("mentor needs a continuous (Box) action space")
        given: dict[str, Any] = {
            "std_scale": std_scale,
            "lambda_mode": lambda_mode,
            "target_lambda": target_lambda,
            "expectile": expectile,
            "perturb_every": perturb_every,
            "alpha_max": alpha_max,
            "nstep": nstep,
            "discount": discount,
            "critic_dropout": critic_dropout,
            "stddev_type": stddev_type,
        }
        self.settings = {k: v if given[k] is None else given[k] for k, v in PRESETS[preset].items()}
        if self.settings["perturb_every"] < 1:
            raise ValueError("mentor: perturb_every must be >= 1 (perturbation: none disables)")
        self.preset, self.perturbation = preset, perturbation
        self.tau, self.num_expl_steps, self.stddev_clip = (
            critic_target_tau,
            num_expl_steps,
            stddev_clip,
        )
        self.aux_loss_scale, self.actor_grad_clip = float(aux_loss_scale), float(actor_grad_clip)
        self.alpha_min, self.perturb_rate = float(alpha_min), float(perturb_rate)
        self.blend_layernorm, self.dense_dormant = bool(blend_layernorm), bool(dense_dormant)
        self.dormant_post_relu = bool(dormant_post_relu)
        if not pre_tanh_penalty >= 0:  # NaN too
            raise ValueError(f"mentor: pre_tanh_penalty must be >= 0, got {pre_tanh_penalty}")
        self.pre_tanh_penalty = float(pre_tanh_penalty)
        check_sa_settings("mentor", sa_kappa, sa_eps, sa_steps)
        self.sa_kappa, self.sa_eps, self.sa_steps = float(sa_kappa), float(sa_eps), int(sa_steps)
        self.dormant_threshold, self.target_dormant_ratio = dormant_threshold, target_dormant_ratio
        self.std_temperature, self.lambda_temperature = std_temperature, lambda_temperature
        self.low = np.asarray(action_space.low, dtype=np.float32)
        self.high = np.asarray(action_space.high, dtype=np.float32)
        self.action_dim = int(np.prod(action_space.shape))
        self.device = torch.device(device)
        self.schedule = UpdateSchedule(
            batch_size,
            update_every_steps,
            num_expl_steps,
            int(self.settings["nstep"]),
            float(self.settings["discount"]),
        )
        self.encoder_bf16 = bool(encoder_bf16)
        self.fused: StateKeys | None = None
        if isinstance(observation_space, gym.spaces.Dict):
            if self.sa_kappa > 0:
                raise ValueError("mentor: sa_kappa needs Box observations (not fused pixels+state)")
            self.fused = StateKeys(observation_space)
            image_space = self.fused.image_space
        else:
            image_space = observation_space
        self.pixels = is_pixel_space(image_space)
        self.aug: nn.Module = RandomShift(4) if self.pixels else nn.Identity()
        self.build_networks(
            image_space, feature_dim, hidden_dim,
            MoE(hidden_dim, num_experts, top_k, expert_hidden, gate_hidden, gate_dropout,
                sparse_moe) if moe else None,
        )  # fmt: skip
        encoder_params = list(self.encoder.parameters())  # none for state vectors
        self.encoder_opt = (
            torch.optim.Adam(encoder_params, lr=lr, fused=True) if encoder_params else None
        )
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr, fused=True)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=lr, fused=True)
        self.best = BestAgents(best_agents)
        self.beta = 1.0  # the authors start from a dormant ratio of 1
        drq_schedule(awake_schedule, 0)  # reject a bad schedule now
        self.awake_schedule = awake_schedule
        self.awaken_step: int | None = None
        self.n_updates, self.perturbations, self.last_alpha = 0, 0, 0.0

    def build_networks(
        self,
        observation_space: gym.spaces.Box,
        feature_dim: int,
        hidden_dim: int,
        middle: nn.Module | None,
    ) -> None:
        """Encoder, actor (``middle`` as its middle layer), critics and value net, eval mode.

        :param observation_space: the observations (a fused agent's: the image space).
        :param feature_dim: trunk output size.
        :param hidden_dim: hidden width.
        :param middle: the actor's middle layer (None: Linear).
        """
        self.encoder = make_encoder(observation_space, self.encoder_bf16).to(self.device)
        repr_dim, act = int(self.encoder.repr_dim), self.action_dim
        dropout = float(self.settings["critic_dropout"])

        def fused(net: nn.Module) -> nn.Module:
            if self.fused is None:
                return net.to(self.device)
            return fuse_trunk(net, self.fused.dim, feature_dim, hidden_dim).to(self.device)

        def critic() -> DrQCritic:
            net: DrQCritic
            if dropout > 0:
                net = RegularisedCritic(repr_dim, act, feature_dim, hidden_dim, dropout)
            else:
                net = DrQCritic(repr_dim, act, feature_dim, hidden_dim)
            return fused(net)  # type: ignore[return-value]

        self.actor: DrQActor = fused(DrQActor(repr_dim, act, feature_dim, hidden_dim, middle))  # type: ignore[assignment]
        self.critic = critic()
        self.critic_target = critic()
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.value = fused(ValueNet(repr_dim, feature_dim, hidden_dim))
        self.set_training(False)

    # ---------------------------------------------------------------- schedules from beta

    @property
    def stddev(self) -> float:
        """Exploration / target-noise std from the current dormant ratio."""
        return exploration_std(
            self.beta, self.settings["std_scale"], self.target_dormant_ratio, self.std_temperature
        )

    @property
    def lambda_(self) -> float:
        """Weight of V(s') in the TD target."""
        if self.settings["lambda_mode"] == "fixed":
            return float(self.settings["target_lambda"])
        return value_mix(
            self.beta,
            self.settings["target_lambda"],
            self.target_dormant_ratio,
            self.lambda_temperature,
        )

    @property
    def alpha(self) -> float:
        """Share of the weights a perturbation keeps now."""
        return perturb_factor(
            self.beta, self.perturb_rate, self.alpha_min, self.settings["alpha_max"]
        )

    # ---------------------------------------------------------------- acting

    def to_env_action(self, unit: np.ndarray) -> np.ndarray:
        """Map actions in [-1, 1] to the env's bounds."""
        return self.low + (unit + 1.0) * 0.5 * (self.high - self.low)

    def to_unit_action(self, action: torch.Tensor) -> torch.Tensor:
        """Map env actions to [-1, 1] (what the critic sees)."""
        low = torch.as_tensor(self.low, device=action.device)
        high = torch.as_tensor(self.high, device=action.device)
        return 2.0 * (action.float() - low) / (high - low) - 1.0

    def features(self, obs: Any) -> torch.Tensor:
        """Encoder outputs of a batch of raw observations (fused: with the state columns).

        :param obs: (B, *obs_shape) observations, or a dict batch for a fused agent.
        """
        if self.fused is None:
            return self.encoder(torch.as_tensor(np.asarray(obs), device=self.device))
        if not isinstance(obs, dict):
            raise ValueError(
                f"this MENTOR agent fuses a state: act on dict batches with keys "
                f"{[self.fused.image_key, *self.fused.keys]}"
            )
        pixels = torch.as_tensor(np.asarray(obs[self.fused.image_key]), device=self.device)
        return with_state(self.encoder(pixels), self.fused.from_obs(obs, self.device))

    def batch_features(self, batch: Batch, next_obs: bool = False) -> torch.Tensor:
        """Augmented encoder outputs of a replay batch's obs (or next_obs), fused with its
        states (``batch.extras``) for a fused agent.

        :param batch: the batch, on the device.
        :param next_obs: encode ``next_obs`` (with ``next_state``).
        """
        images = batch.next_obs if next_obs else batch.obs
        encoded = self.encoder(self.aug(images.float()))
        if self.fused is None:
            return encoded
        return with_state(
            encoded, self.fused.from_extras(batch.extras, "next_" if next_obs else "")
        )

    @torch.no_grad()
    def act(self, obs: Any, step: int = 0, explore: bool = False) -> np.ndarray:
        """Actions (env units) for a batch of raw observations.

        :param obs: (B, *obs_shape) observations (pixels: uint8 range); a fused agent takes a
            dict batch (``{"pixels": (B, C, H, W), "state": (B, d)}``).
        :param step: agent steps so far.
        :param explore: uniform before ``num_expl_steps``, then Gaussian noise of std sigma(beta).
        """
        mean = torch.tanh(self.actor(self.features(obs)))
        if explore:
            if step < self.num_expl_steps:
                mean = torch.empty_like(mean).uniform_(-1.0, 1.0)
            else:
                mean = (mean + torch.randn_like(mean) * self.stddev).clamp(-1.0, 1.0)
        return self.to_env_action(mean.cpu().numpy())

    # ---------------------------------------------------------------- learning

    def set_training(self, training: bool) -> None:
        """Train mode (dropout on) for updates, eval mode otherwise.

        :param training: the mode.
        """
        for name in NETWORKS:
            getattr(self, name).train(training)

    def optimisers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers by attribute name (no encoder optimiser for state vectors)."""
        found = {name: getattr(self, name) for name in OPTIMISERS}
        return {name: opt for name, opt in found.items() if opt is not None}

    def blend_nets(self) -> dict[str, nn.Module]:
        """The networks a perturbation blends (and S_top stores)."""
        return {
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "value": self.value,
        }

    def blended_names(self) -> list[str]:
        """Parameter names a perturbation blends."""
        nets = self.blend_nets()
        return [n for n in named_parameters(nets) if is_blended(n, nets, self.blend_layernorm)]

    def perturb(self, generator: torch.Generator | None = None) -> float:
        """Blend toward S_top samples (task_oriented) or a fresh init (reset); reset every
        optimiser's state. Returns alpha.

        :param generator: random generator of the S_top sample (None: torch's global RNG).
        """
        alpha, nets, names = self.alpha, self.blend_nets(), self.blended_names()
        if self.perturbation == "task_oriented" and len(self.best):
            blend(nets, self.best.sample(names, generator), alpha, names)
        elif self.perturbation == "reset":
            blend(nets, fresh_like(nets, weight_init), alpha, names)
        for optimizer in self.optimisers().values():
            reset_optimizer(optimizer)
        self.perturbations += 1
        self.last_alpha = alpha
        return alpha

    @contextlib.contextmanager
    def dense_moe(self) -> Iterator[None]:
        """Run the MoE densely inside the block (the authors' dormant-ratio forward)."""
        moe = self.actor.middle if isinstance(self.actor.middle, MoE) else None
        sparse = moe.sparse if moe is not None else False
        if moe is not None and self.dense_dormant:
            moe.sparse = False
        try:
            yield
        finally:
            if moe is not None:
                moe.sparse = sparse

    def update(self, batch: Batch, step: int) -> dict[str, float]:
        """One MENTOR update (perturbation when due, dormant ratio, V, critic+encoder, actor).

        :param batch: n-step transitions (actions in env units).
        :param step: agent steps so far.
        :return: metrics.
        """
        self.n_updates += 1
        perturbing = self.perturbation != "none"
        if perturbing and self.n_updates % self.settings["perturb_every"] == 0:
            self.perturb()
        self.set_training(True)
        try:
            metrics = self.learn(batch.to(self.device), step)
        finally:
            self.set_training(False)
        return metrics | {
            "perturbations": float(self.perturbations),
            "perturb_alpha": self.last_alpha,
            "best_agents_mean_return": float(np.mean(self.best.returns)) if len(self.best) else 0.0,
        }

    def update_stddev(self, step: int) -> float:
        """The noise std of this update's target and actor actions (see ``stddev_type``); marks
        the awakening step on the first update past the seed steps with beta below its target.

        :param step: agent steps so far.
        """
        if self.settings["stddev_type"] == "dormant":
            return self.stddev
        waking = step > self.num_expl_steps and self.beta < self.target_dormant_ratio
        if self.awaken_step is None and waking:
            self.awaken_step = step
        if self.awaken_step is None:
            return self.stddev
        return max(self.stddev, drq_schedule(self.awake_schedule, step - self.awaken_step))

    def learn(self, batch: Batch, step: int = 0) -> dict[str, float]:
        """Steps 2-7 of the update on a batch already on the device.

        :param batch: n-step transitions.
        :param step: agent steps so far (the "awake" noise schedule).
        """
        obs = self.batch_features(batch)
        with torch.no_grad():
            next_obs = self.batch_features(batch, next_obs=True)
        action = self.to_unit_action(batch.action)
        with self.dense_moe():
            self.beta, _ = dormant_ratio(
                self.actor,
                obs.detach(),
                threshold=self.dormant_threshold,
                post_relu=self.dormant_post_relu,
            )
        std, lam = self.update_stddev(step), self.lambda_

        with torch.no_grad():
            q_data = torch.min(*self.critic(obs.detach(), action))
        value_loss = expectile_loss(self.value(obs.detach()) - q_data, self.settings["expectile"])
        self.value_opt.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_opt.step()

        with torch.no_grad():
            next_action = noisy_action(torch.tanh(self.actor(next_obs)), std, self.stddev_clip)
            explore_v = torch.min(*self.critic_target(next_obs, next_action))
            target_v = lam * self.value(next_obs) + (1.0 - lam) * explore_v
            target_q = batch.reward + batch.discount * target_v
        q1, q2 = self.critic(obs, action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        for optimizer in (self.encoder_opt, self.critic_opt):
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        if self.encoder_opt is not None:
            self.encoder_opt.step()

        mean, aux = self.actor.forward_with_aux(obs.detach())
        policy_action = noisy_action(torch.tanh(mean), std, self.stddev_clip)
        actor_loss = -torch.min(*self.critic(obs.detach(), policy_action)).mean()
        loss = actor_loss + self.aux_loss_scale * aux
        if self.pre_tanh_penalty > 0:
            loss = loss + self.pre_tanh_penalty * mean.pow(2).mean()
        extra: dict[str, float] = {}
        if self.sa_kappa > 0:
            penalty = self.sa_penalty(batch.obs)
            loss = loss + self.sa_kappa * penalty
            extra["sa_regularizer"] = float(penalty.detach())
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.actor_grad_clip > 0:
            nn.utils.clip_grad_norm_(self.actor.parameters(), self.actor_grad_clip)
        self.actor_opt.step()

        with torch.no_grad():
            for p, tp in zip(
                self.critic.parameters(), self.critic_target.parameters(), strict=True
            ):
                tp.lerp_(p, self.tau)
        return {
            "critic_loss": critic_loss.item(),
            "actor_loss": actor_loss.item(),
            "value_loss": value_loss.item(),
            "aux_loss": float(aux.detach()),
            "q": q1.mean().item(),
            "target_q": target_q.mean().item(),
            "dormant_ratio": self.beta,
            "stddev": std,
            "lambda": lam,
            **extra,
        }

    def sa_penalty(self, obs: torch.Tensor) -> torch.Tensor:
        """The SA regulariser of a batch of raw observations (see ``sa_kappa``).

        :param obs: raw observations (B, *obs_shape), un-augmented.
        """
        training = self.actor.training
        self.actor.eval()  # the gate's dropout would make even the clean side move
        try:
            return sa_regularizer(
                EncodedPolicy(self.encoder, self.actor),
                obs.float(),
                self.sa_eps,
                self.sa_steps,
                divergence=tanh_mean_divergence,
            )
        finally:
            self.actor.train(training)

    def on_episode_end(self, info: dict[str, Any]) -> None:
        """Offer the current networks to S_top with the episode's training return.

        :param info: the final info with ``episode_return``.
        """
        if self.perturbation == "task_oriented":
            params = named_parameters(self.blend_nets())
            self.best.offer(
                float(info["episode_return"]), {k: params[k] for k in self.blended_names()}
            )

    # ---------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, counters, beta and S_top."""
        state: dict[str, Any] = {name: getattr(self, name).state_dict() for name in NETWORKS}
        state |= {name: opt.state_dict() for name, opt in self.optimisers().items()}
        state["best"] = self.best.state_dict()
        state["counters"] = {
            "n_updates": self.n_updates,
            "perturbations": self.perturbations,
            "beta": self.beta,
            "last_alpha": self.last_alpha,
            "awaken_step": -1 if self.awaken_step is None else self.awaken_step,
        }
        return state

    def load_state_dict(self, state: dict[str, Any], policy_only: bool = False) -> None:
        """Restore :meth:`state_dict` (encoder and actor only when ``policy_only``).

        :param state: what :meth:`state_dict` returned.
        :param policy_only: load what acting needs only.
        """
        names = ("encoder", "actor") if policy_only else NETWORKS + tuple(self.optimisers())
        for name in names:
            getattr(self, name).load_state_dict(state[name])
        if policy_only:
            return
        self.best.load_state_dict(state["best"])
        counters = state["counters"]
        self.n_updates, self.perturbations = (
            int(counters["n_updates"]),
            int(counters["perturbations"]),
        )
        self.beta, self.last_alpha = float(counters["beta"]), float(counters["last_alpha"])
        awaken = int(counters.get("awaken_step", -1))
        self.awaken_step = None if awaken < 0 else awaken

    def save(self, folder: Path) -> None:
        """Write everything to ``folder/agent.pt`` (weights-only loadable).

        :param folder: the checkpoint or final folder.
        """
        save_torch(Path(folder) / STATE_FILE, self.state_dict())

    def load(self, folder: Path, policy_only: bool = False) -> None:
        """Restore :meth:`save`.

        :param folder: the folder.
        :param policy_only: load encoder and actor only.
        """
        self.load_state_dict(load_torch(Path(folder) / STATE_FILE), policy_only)

    def policy_view(self, live: bool = False) -> PolicyView:
        """Encoder -> actor (MoE included, eval mode) on raw observations; squash tanh to the
        env bounds. A fused agent's view takes the pixels and holds the states as context
        (:class:`~rlkit.agents.fusion.FusedPolicy`: ``view.body.set_context(state)``).

        :param live: share the training weights instead of a frozen CPU copy.
        """
        body: nn.Module = EncodedPolicy(self.encoder, self.actor)
        if self.fused is not None:
            body = FusedPolicy(self.encoder, self.actor)
        return continuous_view(body, self.low, self.high, live, self.device)
