"""Black-box snooping (``art_snooping_fgm``): ART's ``FastGradientMethod`` on an imitation
proxy of the victim, fitted on observed (observation, action) pairs, transferred to the victim.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from rlkit.attacks.art_support import (
    art_norm,
    fit_proxy,
    load_observations,
    make_proxy,
    onehot,
    policy_output,
    set_clip,
)
from rlkit.attacks.budget import AttackBudget, BoundBudget

from .base import ARTSettings, _ARTAttack


# ------------------------------------------------------------------------------------ settings
class SnoopingSettings(ARTSettings):
    """Settings of black-box snooping: an imitation proxy attacked with FGM, transferred."""

    objective: Literal["actions", "groups", "toggle"] | None = Field(
        None,
        description=(
            "'actions' (untargeted FGM, cross-entropy on the proxy's bins: the authors' imitator "
            "FGM, discrete only), 'groups' (untargeted, CW loss on the proxy's bifurcation groups) "
            "or 'toggle' (targeted at group t mod 2, CW loss: their eps-vs-ASR runs); null = "
            "'actions' for discrete victims, 'toggle' for continuous ones"
        ),
    )
    dataset: str | None = Field(
        None,
        description=(
            "observations the proxy is fitted on before the first call (.npy, .npz with 'obs', or "
            ".csv like the authors' baseline_obs-a.csv): the authors fitted it on one clean "
            "episode of the victim; labels are the victim's deterministic actions on them. "
            "null = warm-up"
        ),
    )
    warmup_steps: int = Field(
        168,
        ge=0,
        description=(
            "without a dataset: calls (time steps) passed through clean while the (observation, "
            "action) pairs are recorded; the proxy is fitted after them (168 = a week of hours)"
        ),
    )
    refit_every: int = Field(
        0,
        ge=0,
        description=(
            "refit the proxy every this many attacked calls on every pair observed so far (the "
            "perturbed observation the victim saw and its action); 0 = fit once"
        ),
    )
    hidden: list[int] | None = Field(
        None,
        description=(
            "proxy hidden widths; null = the authors' (discrete [300, 493], continuous [464, 192])"
        ),
    )
    activation: Literal["tanh", "relu"] | None = Field(
        None, description=("proxy activation; null = the authors' (discrete tanh, continuous relu)")
    )
    dropout: list[float] | None = Field(
        None,
        description=(
            "dropout after each hidden layer; null = the authors' (discrete [0.388, 0.145], "
            "continuous [0.25, 0.45])"
        ),
    )
    optimizer: Literal["rmsprop", "sgd", "adam"] | None = Field(
        None,
        description=("proxy optimiser; null = the authors' (discrete RMSprop, continuous SGD)"),
    )
    lr: float | None = Field(
        None,
        gt=0,
        description="proxy learning rate; null = the authors' (discrete 3.3e-4, continuous 0.0622)",
    )
    batch_size: int | None = Field(
        None, ge=1, description="proxy minibatch; null = the authors' (discrete 64, continuous 8)"
    )
    epochs: int = Field(1000, ge=1, description="proxy training epochs (the authors: 1000)")
    shuffle: bool = Field(
        False, description="shuffle the pairs each epoch (the authors: no, a time series)"
    )

    @field_validator("hidden")
    @classmethod
    def _widths(cls, values: list[int] | None) -> list[int] | None:
        if values is not None and any(v < 1 for v in values):
            raise ValueError("allowed: a list of integers >= 1")
        return values

    @field_validator("dropout")
    @classmethod
    def _rates(cls, values: list[float] | None) -> list[float] | None:
        if values is not None and any(not 0 <= v < 1 for v in values):
            raise ValueError("allowed: a list of probabilities in [0, 1)")
        return values

    @model_validator(mode="after")
    def _has_data(self) -> SnoopingSettings:
        if self.dataset is None and self.warmup_steps == 0:
            raise ValueError(
                "allowed: a dataset, or warmup_steps >= 1 (the proxy needs observed pairs)"
            )
        return self


_PROXY_DEFAULTS = {
    # optuna/proxy policy 20 bin PPO 500 + "train snooping classifier.ipynb"
    "discrete": {
        "hidden": [300, 493],
        "activation": "tanh",
        "dropout": [0.388, 0.145],
        "optimizer": "rmsprop",
        "lr": 3.3e-4,
        "batch_size": 64,
        "keep_best": False,
    },
    # optuna/proxy PPO continuous 3-26-5 + "train snooping regressor.ipynb" ("imitator best")
    "continuous": {
        "hidden": [464, 192],
        "activation": "relu",
        "dropout": [0.25, 0.45],
        "optimizer": "sgd",
        "lr": 0.0622,
        "batch_size": 8,
        "keep_best": True,
    },
}


# ------------------------------------------------------------------------------------- attacks
class ARTSnoopingFGM(_ARTAttack):
    """Black-box snooping: FGM (ART ``FastGradientMethod``) on an imitation proxy, transferred.

    The authors (``train snooping classifier.ipynb`` / ``train snooping regressor.ipynb``,
    hyper-parameters from their optuna studies ``optuna/proxy*/optimize_immitator.py``) fitted
    an MLP proxy by supervised learning on one clean episode of the victim (8,759 (observation,
    action) pairs, ``baseline_obs-a.csv``): discrete 31-300-tanh-493-tanh-20 with dropout
    0.388/0.145, RMSprop 3.3e-4, batch 64, 1000 epochs, cross-entropy; continuous
    31-464-relu-192-relu-1 with dropout 0.25/0.45, SGD 0.0622, batch 8, Huber loss, the best
    epoch kept.  They then attacked the proxy with FGM (linf; ``5 run imitator FGM``: eps 0.05,
    cross-entropy with the proxy's own predictions as labels, no mask) and fed the perturbed
    observation to the victim; their eps-vs-ASR runs put the bifurcation layer on the proxy and
    targeted group ``t mod 2`` with CWLoss (``attack untargeted snooping FGM eps vs ASR.ipynb``,
    ``attack untargeted continuous snooping FGM eps vs MAE.ipynb``).

    Where the pairs come from (the choice documented here): with ``dataset`` the proxy is fitted
    before the first call on those observations (the authors' clean episode), labelled with the
    victim's deterministic action (its bin, or for continuous victims its pre-squash mean, a
    one-to-one function of a tanh-squashed action); without it the attack first watches
    ``warmup_steps`` calls (returning them clean, recording what the victim sees and does) and
    fits the proxy on them; ``refit_every`` refits it on everything observed so far.
    :attr:`proxy` is the fitted proxy, :attr:`proxy_metrics` its training score, and
    :meth:`agreement` its agreement with the victim on given observations.
    """

    settings_model = SnoopingSettings

    def __init__(
        self,
        name: str,
        policy: Callable[[torch.Tensor], Any],
        budget: AttackBudget,
        settings: dict[str, Any],
    ) -> None:
        """As :class:`_ARTAttack`; resolve the objective."""
        super().__init__(name, policy, budget, settings)
        objective = settings.get("objective") or (
            "actions" if self.action_kind == "discrete" else "toggle"
        )
        if objective == "actions" and self.action_kind != "discrete":
            raise ValueError(
                "setting 'objective'='actions' needs a discrete policy; use 'groups' or 'toggle'"
            )
        self.objective: str = objective
        self.classes = "actions" if objective == "actions" else "groups"
        self.proxy: torch.nn.Module | None = None
        self.proxy_metrics: dict[str, float] = {}
        self.fits = 0
        self._seen: list[torch.Tensor] = []
        self._attacked_calls = 0

    # ------------------------------------------------------------------ the proxy
    def proxy_config(self) -> dict[str, Any]:
        """The proxy's hyper-parameters (settings, the authors' defaults where null)."""
        defaults = _PROXY_DEFAULTS[self.action_kind]
        s = self.settings
        return {
            key: (s[key] if s.get(key) is not None else value) for key, value in defaults.items()
        }

    def labels(self, x: torch.Tensor) -> torch.Tensor:
        """What the attacker records as the victim's action on observations ``x``.

        :param x: observations (N, *shape).
        """
        with torch.no_grad():
            out = policy_output(self.policy, x)
        return out.argmax(dim=-1) if self.action_kind == "discrete" else out.float()

    def fit(self, observations: torch.Tensor) -> dict[str, float]:
        """Fit a fresh proxy on ``observations`` labelled by the victim.

        :param observations: (N, *shape) observations the attacker has seen.
        """
        cfg = self.proxy_config()
        x = observations.reshape(observations.shape[0], -1).float()
        y = self.labels(observations)
        n_out = int(policy_output(self.policy, observations[:1]).shape[1])

        def make() -> torch.nn.Module:
            return make_proxy(x.shape[1], n_out, cfg["hidden"], cfg["activation"], cfg["dropout"])

        shape = tuple(observations.shape[1:])
        proxy, metrics = fit_proxy(
            make,
            x,
            y,
            classify=self.action_kind == "discrete",
            optimizer=cfg["optimizer"],
            lr=float(cfg["lr"]),
            batch_size=int(cfg["batch_size"]),
            epochs=int(self.settings["epochs"]),
            keep_best=bool(cfg["keep_best"]),
            shuffle=bool(self.settings["shuffle"]),
            seed=self.settings.get("seed"),
        )
        self.proxy = _Unflatten(proxy, shape)
        self.proxy_metrics = metrics
        self.fits += 1
        return metrics

    def agreement(self, observations: torch.Tensor) -> float:
        """Fraction of ``observations`` where the proxy's class equals the victim's.

        Classes are the bins for discrete victims and the groups for continuous ones.

        :param observations: (N, *shape).
        """
        if self.proxy is None:
            raise RuntimeError("the proxy is not fitted yet")
        victim = self.classes_of(observations)
        proxy = self.classes_of(observations, self.proxy)
        return float((victim == proxy).float().mean())

    # ------------------------------------------------------------------ the attack
    def perturb(
        self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget
    ) -> torch.Tensor:
        """Watch (warm-up) or attack the proxy with FGM and hand the perturbation to the victim.

        :param obs: clean batch (B, *shape).
        :param t: time steps (needed by ``objective: toggle``).
        :param bound: the budget bound to ``obs``.
        """
        s = self.settings
        if self.proxy is None and s["dataset"] is not None:
            data = load_observations(s["dataset"], int(np.prod(obs.shape[1:])))
            self.fit(torch.as_tensor(data, device=obs.device).reshape(-1, *obs.shape[1:]))
        clean = self.classes_of(obs)
        if self.proxy is None:  # warm-up: watch
            self._seen.append(obs.detach().clone())
            out = self.finish(obs.clone(), obs, bound, clean)
            if self.calls >= s["warmup_steps"]:
                self.fit(torch.cat(self._seen))
            return out
        if self.objective == "toggle" and t is None:
            raise ValueError("art_snooping_fgm with objective 'toggle' needs the time step t")
        if bound.eps <= 0 or not bool(bound.active.any()):
            adv = obs.clone()
        else:
            adv = self.fgm(obs, t, bound)
        out = self.finish(adv, obs, bound, clean)
        self._attacked_calls += 1
        if s["refit_every"]:
            self._seen.append(out.detach().clone())
            if self._attacked_calls % s["refit_every"] == 0:
                self.fit(torch.cat(self._seen))
        return out

    def fgm(self, obs: torch.Tensor, t: torch.Tensor | None, bound: BoundBudget) -> torch.Tensor:
        """FGM on the proxy for the whole batch (un-clipped candidate).

        :param obs: clean batch.
        :param t: time steps (toggle).
        :param bound: the budget.
        """
        from art.attacks.evasion import FastGradientMethod

        batch = obs.shape[0]
        flat = obs.reshape(batch, -1)
        loss = "cross_entropy" if self.objective == "actions" else "cw"
        imap, classifier = self.input_map(
            obs, bound, "delta", network=self.proxy, key=self.fits, loss=loss
        )
        key = ("fgm", id(classifier), bound.norm, float(bound.eps))
        if key not in self._art:
            self._art[key] = FastGradientMethod(
                estimator=classifier,
                norm=art_norm(bound.norm),
                eps=float(bound.eps),
                targeted=self.objective == "toggle",
                num_random_init=0,
                batch_size=batch,
            )
        attack = self._art[key]
        attack.batch_size = batch  # rows must stay aligned with the bases
        imap.set_base(flat)
        set_clip(attack, *self.delta_clip(imap, bound, flat))
        u0 = np.zeros((batch, len(imap.active)), dtype=np.float32)
        y = None
        if self.objective == "toggle":
            assert t is not None
            y = onehot((t.cpu().numpy() % 2).astype(int), classifier.nb_classes)
        u = attack.generate(u0, y=y)
        with torch.no_grad():
            return imap.full(torch.as_tensor(u, device=obs.device)).reshape(obs.shape)


class _Unflatten(torch.nn.Module):
    """A flat-input proxy taking observations of any shape (flattens them first)."""

    def __init__(self, body: torch.nn.Module, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.body = body
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(x.shape[0], -1))
