"""A plain transcription of the MENTOR authors' DMC update, the reference rlkit's agent is timed
and checked against.

It follows ``agents/mentor.py``, ``moe.py`` and ``utils.py`` of the authors' code (fork
emlynw/mentor at 2005f05, DMC agent, ``encoder_type: scratch``), step by step and with their
costs: random-shift augmentation of obs and next_obs, the CNN encoder, the dormant ratio of the
actor recomputed on every update through forward hooks on every ``nn.Linear`` (an extra actor
forward, one ``len(nonzero())`` host sync per layer), the dense MoE (all 16 experts run, the top-4
gathered), the expert-usage metrics (16 ``.item()`` calls per actor update), the expectile value
update (which also back-propagates into the critic, whose gradient is then discarded), the
lambda-mixed critic target, the actor update with the unscaled auxiliary loss, the ``grad_mean``
host sync and the 0.001 gradient-norm clip, the parameter-by-parameter Polyak update, and every
``.item()`` of their ``use_tb`` metrics.

Kept as they are, on purpose (they are what is being measured or compared):

* ``ReLU(inplace=True)`` after Linear layers: the dormant-ratio hooks therefore see the
  *post-ReLU* output of ``policy1``, of each expert's first layer and of the gate's first layer
  (the in-place ReLU overwrites the tensor the hook stored), and the pre-activation output of the
  others.
* The gate's Dropout(0.1) is active during the dormant-ratio forward (the actor is in train mode).
* The MoE's xavier initialisation is overwritten by the actor's ``apply(weight_init)``
  (orthogonal, zero bias), as in their code.

Left out: the task-oriented perturbation (it fires once every 10k updates, outside the per-update
path being timed; ``n_updates`` is counted as they do, and the benchmark stays below the first
perturbation), the ``spawnnet`` encoder and the aux-loss warm-up (both off in their DMC configs),
and the replay iterator (a batch is passed in). Added for states (their code is pixels only):
with a flat observation shape the encoder is the identity and there is no augmentation, as in
rlkit's state form.

:func:`load_rlkit_weights` copies an rlkit MENTOR agent's networks into this module, so the
benchmark can run both updates from the same weights on the same batch and compare their losses.
Both consume torch's global RNG in the same order (shifts of obs then next_obs, gate dropout in
the dormant forward, the target actor, the actor loss), so under one seed they see the same
noise. As released their dormant ratio counts the ReLU-fed layers after the ReLU; rlkit's
default does the same, and with the ReLUs made out-of-place (``pre_activation`` in
:mod:`benchmarks.mentor_speed`) it matches rlkit's ``dormant_post_relu=False``. Either way
losses agree to about 1e-9 and weights after an update to about 1e-6.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import distributions as pyd
from torch import nn
from torch.distributions.utils import _standard_normal

# ---------------------------------------------------------------------------------- utils.py

NO_SHAPE = torch.Size()


def weight_init(m: nn.Module) -> None:
    """DrQ-v2's init: orthogonal weights (relu gain for convolutions), zero biases.

    :param m: a module (applied through ``module.apply``).
    """
    if isinstance(m, nn.Linear):
        nn.init.orthogonal_(m.weight.data)
        if hasattr(m.bias, "data"):
            m.bias.data.fill_(0.0)
    elif isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        gain = nn.init.calculate_gain("relu")
        nn.init.orthogonal_(m.weight.data, gain)
        if hasattr(m.bias, "data"):
            m.bias.data.fill_(0.0)


def soft_update_params(net: nn.Module, target_net: nn.Module, tau: float) -> None:
    """Polyak update, parameter by parameter, as they write it.

    :param net: the online network.
    :param target_net: the target network (updated).
    :param tau: the mixing rate.
    """
    for param, target_param in zip(net.parameters(), target_net.parameters(), strict=True):
        target_param.data.copy_(tau * param.data + (1 - tau) * target_param.data)


class TruncatedNormal(pyd.Normal):
    """Their clipped-noise Normal: samples clamped to (low, high) with a straight-through grad.

    :param loc: the mean.
    :param scale: the std.
    :param low: lower bound.
    :param high: upper bound.
    :param eps: margin inside the bounds.
    """

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        low: float = -1.0,
        high: float = 1.0,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(loc, scale, validate_args=False)
        self.low, self.high, self.eps = low, high, eps

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        clamped_x = torch.clamp(x, self.low + self.eps, self.high - self.eps)
        return x - x.detach() + clamped_x.detach()

    def sample(  # type: ignore[override]
        self, clip: float | None = None, sample_shape: torch.Size = NO_SHAPE
    ) -> torch.Tensor:
        """A clipped-noise sample.

        :param clip: clip of the noise (None: unclipped).
        :param sample_shape: extra leading shape.
        """
        shape = self._extended_shape(sample_shape)
        eps = _standard_normal(shape, dtype=self.loc.dtype, device=self.loc.device)
        eps *= self.scale
        if clip is not None:
            eps = torch.clamp(eps, -clip, clip)
        return self._clamp(self.loc + eps)


class LinearOutputHook:
    """Forward hook that keeps every output of the module it is attached to."""

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def __call__(self, module: nn.Module, module_in: Any, module_out: torch.Tensor) -> None:
        self.outputs.append(module_out)


def cal_dormant_ratio(
    model: nn.Module,
    *inputs: Any,
    percentage: float = 0.025,
    metrics: dict[str, float] | None = None,
) -> tuple[float, dict[str, float] | None]:
    """Their dormant ratio: hooks on every Linear, one no-grad forward, per-layer counts.

    :param model: the network (the actor).
    :param inputs: its forward arguments.
    :param percentage: a neuron is dormant below ``percentage`` x its layer's mean activation.
    :param metrics: per-layer ratios are written here when given.
    """
    hooks, handlers = [], []
    total_neurons = dormant_neurons = 0
    for _, module in model.named_modules():
        if isinstance(module, nn.Linear):
            hook = LinearOutputHook()
            hooks.append(hook)
            handlers.append(module.register_forward_hook(hook))
    with torch.no_grad():
        model(*inputs)
    layer_id = 0
    linears = (m for m in model.modules() if isinstance(m, nn.Linear))
    for module, hook in zip(linears, hooks, strict=True):
        with torch.no_grad():
            for output_data in hook.outputs:
                mean_output = output_data.abs().mean(0)
                avg_neuron_output = mean_output.mean()
                dormant = (mean_output < avg_neuron_output * percentage).nonzero(as_tuple=True)[0]
                total_neurons += module.weight.shape[0]
                dormant_neurons += len(dormant)
                if metrics is not None:
                    metrics[f"layer_{layer_id}_dormant_ratio"] = (
                        len(dormant) / module.weight.shape[0]
                    )
                layer_id += 1
    for hook in hooks:
        hook.outputs.clear()
    for handler in handlers:
        handler.remove()
    return dormant_neurons / total_neurons, metrics


# ------------------------------------------------------------------------------------ moe.py


class MoE(nn.Module):
    """Their dense mixture of experts: every expert runs, the top-k outputs are gathered.

    :param num_experts: experts.
    :param input_dim: input width.
    :param output_dim: output width.
    :param gate_dim: gate hidden width.
    :param hidden_dim: expert hidden width.
    :param top_k: experts used per sample.
    :param dropout: gate dropout.
    """

    def __init__(
        self,
        num_experts: int,
        input_dim: int,
        output_dim: int,
        gate_dim: int,
        hidden_dim: int,
        top_k: int,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.num_experts, self.output_dim, self.top_k = num_experts, output_dim, top_k
        self.experts = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Linear(input_dim, hidden_dim),
                    nn.ReLU(inplace=True),
                    nn.Linear(hidden_dim, output_dim),
                )
                for _ in range(num_experts)
            ]
        )
        self.gate = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Linear(input_dim, gate_dim),
                    nn.ReLU(inplace=True),
                    nn.Dropout(dropout),
                    nn.Linear(gate_dim, num_experts),
                )
            ]
        )
        for m in self.modules():  # overwritten by the actor's weight_init, as in their code
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.constant_(m.bias, 0)

    def forward(
        self, x: torch.Tensor, metrics: dict[str, float] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Combined output and auxiliary loss.

        :param x: input (B, input_dim).
        :param metrics: expert usage rates are written here when given (16 host syncs).
        """
        batch_size = x.size(0)
        gate_scores = F.softmax(self.gate[0](x), dim=1)
        top_k_scores, top_k_indices = torch.topk(gate_scores, self.top_k, dim=1)
        if metrics is not None:
            for i in range(self.num_experts):
                metrics[f"expert_{i}_usage_rate"] = (top_k_indices == i).sum().item() / batch_size
        expert_outputs = torch.stack([expert(x) for expert in self.experts]).permute(1, 0, 2)
        batch_indices = (
            torch.arange(batch_size).unsqueeze(1).expand(-1, self.top_k).reshape(-1).to(x.device)
        )
        selected = expert_outputs[batch_indices, top_k_indices.reshape(-1)]
        selected = selected.reshape(batch_size, self.top_k, self.output_dim)
        scaled = selected * top_k_scores.unsqueeze(2)
        scaled /= top_k_scores.sum(dim=1, keepdim=True).unsqueeze(2) + 1e-9
        return scaled.sum(dim=1), self.moe_auxiliary_loss(gate_scores, top_k_indices)

    def moe_auxiliary_loss(
        self,
        gate_scores: torch.Tensor,
        top_k_indices: torch.Tensor,
        lambda_balance: float = 1.0,
        lambda_entropy: float = 1.0,
    ) -> torch.Tensor:
        """Variance of the hard expert load plus the mean gate entropy (both weighted 1).

        :param gate_scores: softmax gate (B, E).
        :param top_k_indices: chosen experts (B, k).
        :param lambda_balance: load weight.
        :param lambda_entropy: entropy weight.
        """
        batch_size, num_experts = gate_scores.size()
        one_hot = F.one_hot(top_k_indices, num_classes=num_experts).float()
        expert_load = one_hot.sum(dim=[0, 1]) / (batch_size + 1e-9)
        entropy = -(gate_scores * torch.log(gate_scores + 1e-9)).sum(dim=1).mean()
        return lambda_balance * expert_load.var() + lambda_entropy * entropy


# ---------------------------------------------------------------------- agents/mentor.py


class RandomShiftsAug(nn.Module):
    """DrQ-v2's random shift: replicate-pad, then a shifted grid_sample.

    :param pad: padding in pixels.
    """

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shift each image of the batch by a random integer offset in [-pad, pad].

        :param x: float images (B, C, H, W), H == W.
        """
        n, _, h, w = x.size()
        assert h == w
        x = F.pad(x, (self.pad,) * 4, "replicate")
        eps = 1.0 / (h + 2 * self.pad)
        arange = torch.linspace(
            -1.0 + eps, 1.0 - eps, h + 2 * self.pad, device=x.device, dtype=x.dtype
        )[:h]
        arange = arange.unsqueeze(0).repeat(h, 1).unsqueeze(2)
        base_grid = torch.cat([arange, arange.transpose(1, 0)], dim=2)
        base_grid = base_grid.unsqueeze(0).repeat(n, 1, 1, 1)
        shift = torch.randint(
            0, 2 * self.pad + 1, size=(n, 1, 1, 2), device=x.device, dtype=x.dtype
        )
        shift *= 2.0 / (h + 2 * self.pad)
        return F.grid_sample(x, base_grid + shift, padding_mode="zeros", align_corners=False)


class Encoder(nn.Module):
    """Their ``scratch`` CNN: 4 conv layers of 32 channels, the first with stride 2.

    :param obs_shape: (C, H, W).
    """

    def __init__(self, obs_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.repr_dim = 32 * 35 * 35
        self.convnet = nn.Sequential(
            nn.Conv2d(obs_shape[0], 32, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=1),
            nn.ReLU(),
        )
        self.apply(weight_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened features of uint8-range frames.

        :param x: frames (B, C, 84, 84) in 0..255.
        """
        h = self.convnet(x / 255.0 - 0.5)
        return h.view(h.shape[0], -1)


class StateEncoder(nn.Module):
    """Identity for state vectors (not in their code; rlkit's state form).

    :param obs_dim: state dimension.
    """

    def __init__(self, obs_dim: int) -> None:
        super().__init__()
        self.repr_dim = obs_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The states as float.

        :param x: (B, obs_dim).
        """
        return x.float()


class Actor(nn.Module):
    """trunk -> policy1 (Linear, ReLU) -> MoE -> policy2 (ReLU, Linear) -> tanh.

    :param repr_dim: encoder output width.
    :param action_dim: action dimension.
    :param feature_dim: trunk width.
    :param hidden_dim: hidden width.
    :param moe_gate_dim: gate hidden width.
    :param moe_hidden_dim: expert hidden width.
    :param num_experts: experts.
    :param top_k: experts per sample.
    :param dropout: gate dropout.
    """

    def __init__(
        self,
        repr_dim: int,
        action_dim: int,
        feature_dim: int,
        hidden_dim: int,
        moe_gate_dim: int = 256,
        moe_hidden_dim: int = 256,
        num_experts: int = 16,
        top_k: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh()
        )
        self.policy1 = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(inplace=True))
        self.policy2 = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(hidden_dim, action_dim))
        self.moe = MoE(
            input_dim=hidden_dim,
            output_dim=hidden_dim,
            gate_dim=moe_gate_dim,
            hidden_dim=moe_hidden_dim,
            num_experts=num_experts,
            top_k=top_k,
            dropout=dropout,
        )
        self.apply(weight_init)

    def forward(
        self, obs: torch.Tensor, std: float, metrics: dict[str, float] | None = None
    ) -> tuple[TruncatedNormal, torch.Tensor]:
        """The action distribution and the MoE auxiliary loss.

        :param obs: features (B, repr_dim).
        :param std: exploration std.
        :param metrics: expert usage metrics go here when given.
        """
        x = self.policy1(self.trunk(obs))
        x, aux_loss = self.moe(x, metrics)
        mu = torch.tanh(self.policy2(x))
        return TruncatedNormal(mu, torch.ones_like(mu) * std), aux_loss


def _q_head(inp: int, hidden_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inp, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, 1),
    )


class Critic(nn.Module):
    """Twin Q on a LayerNorm/Tanh trunk.

    :param repr_dim: encoder output width.
    :param action_dim: action dimension.
    :param feature_dim: trunk width.
    :param hidden_dim: hidden width.
    """

    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh()
        )
        self.Q1 = _q_head(feature_dim + action_dim, hidden_dim)
        self.Q2 = _q_head(feature_dim + action_dim, hidden_dim)
        self.apply(weight_init)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q1, Q2), each (B, 1).

        :param obs: features (B, repr_dim).
        :param action: actions (B, A) in [-1, 1].
        """
        h = self.trunk(obs.reshape(obs.shape[0], -1))
        h_action = torch.cat([h, action], dim=-1)
        return self.Q1(h_action), self.Q2(h_action)


class VNetwork(nn.Module):
    """DrM's state-value network on its own trunk.

    :param repr_dim: encoder output width.
    :param feature_dim: trunk width.
    :param hidden_dim: hidden width.
    """

    def __init__(self, repr_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh()
        )
        self.V = _q_head(feature_dim, hidden_dim)
        self.apply(weight_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """V (B, 1).

        :param obs: features (B, repr_dim).
        """
        return self.V(self.trunk(obs.reshape(obs.shape[0], -1)))


class ReferenceMENTOR:
    """Their ``MENTORAgent`` update on one given batch (DMC defaults of ``cfgs/agent/mentor.yaml``).

    :param obs_shape: (9, 84, 84) for pixels or (obs_dim,) for states.
    :param action_dim: action dimension.
    :param lr: Adam learning rate (all four optimisers; lr_actor_ratio 1).
    :param feature_dim: trunk width.
    :param hidden_dim: hidden width.
    :param critic_target_tau: Polyak rate.
    :param dormant_threshold: dormant-neuron threshold.
    :param target_dormant_ratio: beta at which sigma and lambda sit at their midpoints.
    :param dormant_temp: temperature of the sigma sigmoid.
    :param target_lambda: lambda's maximum (their DMC tasks: 0.6).
    :param lambda_temp: temperature of the lambda sigmoid.
    :param stddev_clip: clip of the policy noise.
    :param expectile: expectile of the value regression.
    :param num_experts: experts.
    :param top_k: experts per sample.
    :param moe_gate_dim: gate hidden width.
    :param moe_hidden_dim: expert hidden width.
    :param dropout: gate dropout.
    :param use_tb: compute their logged metrics (every ``.item()``), as their configs do.
    :param device: torch device.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        action_dim: int,
        lr: float = 1e-4,
        feature_dim: int = 50,
        hidden_dim: int = 1024,
        critic_target_tau: float = 0.01,
        dormant_threshold: float = 0.025,
        target_dormant_ratio: float = 0.2,
        dormant_temp: float = 10.0,
        target_lambda: float = 0.6,
        lambda_temp: float = 50.0,
        stddev_clip: float = 0.3,
        expectile: float = 0.9,
        num_experts: int = 16,
        top_k: int = 4,
        moe_gate_dim: int = 256,
        moe_hidden_dim: int = 256,
        dropout: float = 0.1,
        use_tb: bool = True,
        device: str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.pixels = len(obs_shape) == 3
        self.critic_target_tau, self.use_tb = critic_target_tau, use_tb
        self.stddev_clip, self.expectile = stddev_clip, expectile
        self.dormant_threshold, self.target_dormant_ratio = dormant_threshold, target_dormant_ratio
        self.dormant_temp, self.target_lambda, self.lambda_temp = (
            dormant_temp,
            target_lambda,
            lambda_temp,
        )
        self.dormant_ratio = 1.0
        encoder = Encoder(obs_shape) if self.pixels else StateEncoder(int(obs_shape[0]))
        self.encoder = encoder.to(self.device)
        repr_dim = encoder.repr_dim
        self.actor = Actor(
            repr_dim,
            action_dim,
            feature_dim,
            hidden_dim,
            moe_gate_dim,
            moe_hidden_dim,
            num_experts,
            top_k,
            dropout,
        ).to(self.device)
        self.value_predictor = VNetwork(repr_dim, feature_dim, hidden_dim).to(self.device)
        self.critic = Critic(repr_dim, action_dim, feature_dim, hidden_dim).to(self.device)
        self.critic_target = Critic(repr_dim, action_dim, feature_dim, hidden_dim).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.lr = lr
        self.make_optimizers()
        self.aug = RandomShiftsAug(pad=4)
        self.n_updates = 0
        self.train()
        self.critic_target.train()

    def make_optimizers(self) -> None:
        """Fresh Adam optimisers (call again after loading other weights)."""
        params = list(self.encoder.parameters())
        self.encoder_opt = torch.optim.Adam(params, lr=self.lr) if params else None
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.lr)
        self.predictor_opt = torch.optim.Adam(self.value_predictor.parameters(), lr=self.lr)

    def train(self, training: bool = True) -> None:
        """Train mode on encoder, actor, critic and value net (as their ``train``).

        :param training: the mode.
        """
        for net in (self.encoder, self.actor, self.critic, self.value_predictor):
            net.train(training)

    @property
    def dormant_stddev(self) -> float:
        """sigma = 0.8 / (1 + exp(-temp (beta - target)))."""
        return 0.8 / (
            1 + math.exp(-self.dormant_temp * (self.dormant_ratio - self.target_dormant_ratio))
        )

    def stddev(self, step: int) -> float:
        """Exploration std (the dormant one: their schedule is dead code).

        :param step: unused, as in their code.
        """
        return self.dormant_stddev

    @property
    def lambda_(self) -> float:
        """lambda = target_lambda / (1 + exp(temp (beta - target)))."""
        return self.target_lambda / (
            1 + math.exp(self.lambda_temp * (self.dormant_ratio - self.target_dormant_ratio))
        )

    def update_predictor(self, obs: torch.Tensor, action: torch.Tensor) -> dict[str, float]:
        """Expectile regression of V toward min Q.

        :param obs: detached features.
        :param action: batch actions.
        """
        metrics: dict[str, float] = {}
        q1, q2 = self.critic(obs, action)
        vf_err = self.value_predictor(obs) - torch.min(q1, q2)
        vf_sign = (vf_err > 0).float()
        vf_weight = (1 - vf_sign) * self.expectile + vf_sign * (1 - self.expectile)
        predictor_loss = (vf_weight * (vf_err**2)).mean()
        if self.use_tb:
            metrics["predictor_loss"] = predictor_loss.item()
        self.predictor_opt.zero_grad(set_to_none=True)
        predictor_loss.backward()
        self.predictor_opt.step()
        return metrics

    def update_critic(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        discount: torch.Tensor,
        next_obs: torch.Tensor,
        step: int,
    ) -> dict[str, float]:
        """Critic and encoder on the lambda-mixed target.

        :param obs: features (with grad into the encoder).
        :param action: batch actions.
        :param reward: n-step rewards (B, 1).
        :param discount: bootstrap factors (B, 1).
        :param next_obs: next features (no grad).
        :param step: env steps.
        """
        metrics: dict[str, float] = {}
        with torch.no_grad():
            dist, _ = self.actor(next_obs, self.stddev(step))
            next_action = dist.sample(clip=self.stddev_clip)
            target_q1, target_q2 = self.critic_target(next_obs, next_action)
            target_v_explore = torch.min(target_q1, target_q2)
            target_v_exploit = self.value_predictor(next_obs)
            target_v = self.lambda_ * target_v_exploit + (1 - self.lambda_) * target_v_explore
            target_q = reward + discount * target_v
        q1, q2 = self.critic(obs, action)
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        if self.use_tb:
            metrics["critic_target_q"] = target_q.mean().item()
            metrics["critic_q1"] = q1.mean().item()
            metrics["critic_q2"] = q2.mean().item()
            metrics["critic_loss"] = critic_loss.item()
        if self.encoder_opt is not None:
            self.encoder_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        if self.encoder_opt is not None:
            self.encoder_opt.step()
        return metrics

    def update_actor(self, obs: torch.Tensor, step: int) -> dict[str, float]:
        """-min Q + aux loss, gradient-norm clip 0.001.

        :param obs: detached features.
        :param step: env steps.
        """
        metrics: dict[str, float] = {}
        dist, aux_loss = self.actor(obs, self.stddev(step), metrics)
        action = dist.sample(clip=self.stddev_clip)
        log_prob = dist.log_prob(action).sum(-1, keepdim=True)
        q1, q2 = self.critic(obs, action)
        actor_loss = -torch.min(q1, q2).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        (actor_loss + aux_loss).backward()
        grads = [p.grad.flatten() for p in self.actor.parameters() if p.grad is not None]
        grad_mean = torch.mean(torch.abs(torch.cat(grads)))
        torch.nn.utils.clip_grad_norm_(self.actor.parameters(), 0.001)
        self.actor_opt.step()
        if self.use_tb:
            metrics["aux_loss"] = aux_loss.item()
            metrics["actor_grad_mean"] = grad_mean.item()
            metrics["actor_loss"] = actor_loss.item()
            metrics["actor_logprob"] = log_prob.mean().item()
            metrics["actor_ent"] = dist.entropy().sum(dim=-1).mean().item()
        return metrics

    def update(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        discount: torch.Tensor,
        next_obs: torch.Tensor,
        step: int = 0,
    ) -> dict[str, float]:
        """One update of their agent on the given batch.

        :param obs: uint8 frames (B, 9, 84, 84) or states (B, obs_dim).
        :param action: actions (B, A) in [-1, 1].
        :param reward: n-step rewards (B, 1).
        :param discount: bootstrap factors (B, 1).
        :param next_obs: like ``obs``.
        :param step: env steps (only their awaken-step bookkeeping reads it).
        :return: their metrics.
        """
        metrics: dict[str, float] = {}
        self.n_updates += 1
        obs, action, reward, discount, next_obs = (
            torch.as_tensor(x, device=self.device)
            for x in (obs, action, reward, discount, next_obs)
        )
        obs, next_obs = obs.float(), next_obs.float()
        if self.pixels:
            obs, next_obs = self.aug(obs), self.aug(next_obs)
        obs = self.encoder(obs)
        with torch.no_grad():
            next_obs = self.encoder(next_obs)
        ratio, _ = cal_dormant_ratio(
            self.actor, obs.detach(), 0, percentage=self.dormant_threshold, metrics=metrics
        )
        self.dormant_ratio = ratio
        if self.use_tb:
            metrics["perturb_time"] = 0
            metrics["batch_reward"] = reward.mean().item()
            metrics["actor_dormant_ratio"] = self.dormant_ratio
        metrics.update(self.update_predictor(obs.detach(), action))
        metrics.update(self.update_critic(obs, action, reward, discount, next_obs, step))
        metrics.update(self.update_actor(obs.detach(), step))
        soft_update_params(self.critic, self.critic_target, self.critic_target_tau)
        return metrics

    def networks(self) -> dict[str, nn.Module]:
        """The networks by role: encoder, actor, critic, critic_target, value."""
        return {
            "encoder": self.encoder,
            "actor": self.actor,
            "critic": self.critic,
            "critic_target": self.critic_target,
            "value": self.value_predictor,
        }


# ------------------------------------------------------------------------ weight sharing


def load_rlkit_weights(reference: ReferenceMENTOR, agent: Any) -> dict[str, int]:
    """Copy an rlkit MENTOR agent's networks into ``reference`` (then fresh optimisers).

    Networks are matched by role; inside each, parameters and buffers are matched by the
    translation :func:`rlkit_to_reference` makes of rlkit's names, and every tensor of the
    reference must be filled with one of the same shape (a mismatch raises, naming both sides).

    :param reference: the transcription (its weights are overwritten).
    :param agent: an ``rlkit.agents.mentor.MentorAgent`` with ``moe=True``.
    :return: tensors copied per network.
    """
    copied: dict[str, int] = {}
    for role, net in reference.networks().items():
        source = rlkit_network(agent, role)
        state = rlkit_to_reference(role, source.state_dict())
        target = net.state_dict()
        missing = sorted(set(target) - set(state))
        extra = sorted(set(state) - set(target))
        if missing or extra:
            raise KeyError(
                f"{role}: reference names without rlkit tensors {missing}; extra {extra}"
            )
        for name, value in state.items():
            if value.shape != target[name].shape:
                raise ValueError(
                    f"{role}.{name}: rlkit {tuple(value.shape)} vs {target[name].shape}"
                )
        net.load_state_dict(state)
        copied[role] = len(state)
    reference.make_optimizers()
    return copied


def rlkit_network(agent: Any, role: str) -> nn.Module:
    """The rlkit agent's module playing ``role`` (encoder, actor, critic, critic_target, value).

    :param agent: the rlkit agent.
    :param role: the role.
    """
    if not hasattr(agent, role):
        raise AttributeError(f"the rlkit agent has no {role!r} network")
    return getattr(agent, role)


ACTOR_NAMES = (  # rlkit DrQActor/MoE prefix -> the authors' Actor prefix
    ("input.", "policy1.0."),
    ("head.", "policy2.1."),
    ("middle.experts.", "moe.experts."),
    ("middle.gate.", "moe.gate.0."),
)
CRITIC_NAMES = (("q1.", "Q1."), ("q2.", "Q2."))
VALUE_NAMES = (("v.", "V."),)


def rlkit_to_reference(role: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Translate one rlkit network's state dict to the transcription's names.

    rlkit's :class:`~rlkit.networks.DrQActor` calls its layers ``trunk``, ``input``, ``middle``
    (the :class:`~rlkit.agents.moe.MoE`: ``experts.i.{0,2}``, ``gate.{0,3}``) and ``head``;
    the authors' Actor ``trunk``, ``policy1.0``, ``moe`` (``experts.i.{0,2}``,
    ``gate.0.{0,3}``) and ``policy2.1``. Critics: ``q1``/``q2`` vs ``Q1``/``Q2``; value net:
    ``v`` vs ``V``; trunks and the encoder's ``convnet`` share their names.

    :param role: the network's role.
    :param state: rlkit's state dict of that network.
    """
    table = {"actor": ACTOR_NAMES, "critic": CRITIC_NAMES, "critic_target": CRITIC_NAMES}
    rules = table.get(role, VALUE_NAMES if role == "value" else ())
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        for prefix, theirs in rules:
            if name.startswith(prefix):
                name = theirs + name[len(prefix) :]
                break
        out[name] = value.detach().clone()
    return out
