"""Plumbing for the ART-based attacks of :mod:`rlkit.attacks.art`.

adversarial-robustness-toolbox (ART) attacks classifiers on numpy arrays.  An rlkit attack works on
torch batches, in an observation budget with per-feature radii (``eps * scale``), masked features
and per-sample bounds.  This module bridges the two:

* :class:`ClassHead`: policy output -> class logits, either the action-bin logits themselves
  (``"actions"``, discrete policies) or the two bifurcation group logits (``"groups"``, the
  authors' ``MaximumBifuricationWrapper`` / ``RegressorLinearWrapper``).
* :class:`InputMap`: the network ART sees.  Its input ``u`` holds the *active* (unmasked)
  features only; the clean observation (``base``) supplies the rest, so ART can never move a
  masked feature (ART's own ``mask`` argument does not cover the random restarts of
  AutoPGD/ACG, which perturb every input).  In ``"delta"`` mode ``u = delta / scale``, so
  ART's uniform ``eps`` is exactly the budget's per-feature radius ``eps * scale`` (linf) or its
  scaled ellipsoid (l2); in ``"absolute"`` mode ``u`` is the raw active features (Brendel-Bethge
  needs scalar bounds).
* :class:`GroupCW` (the authors' ``CWLoss`` as written) and :class:`GroupGDL` (the stated
  Group Difference Logits loss), with the ``reduction`` attribute ART sets.
* the snooping proxy: :func:`make_proxy`, :func:`fit_proxy`, :func:`load_observations`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .bifurcation import Bifurcation

ART_HINT = (
    "the ART attacks need adversarial-robustness-toolbox: pip install 'rlkit[art]' "
    "(or pip install 'adversarial-robustness-toolbox>=1.17')"
)


def require_art() -> None:
    """Raise ImportError with the install hint when ART is missing."""
    try:
        import art  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without ART
        raise ImportError(ART_HINT) from exc


def policy_output(policy: Callable[[torch.Tensor], Any], x: torch.Tensor) -> torch.Tensor:
    """Policy output for batch ``x`` as (B, k) (a tuple's first item).

    :param policy: the policy view.
    :param x: observation batch (B, *shape).
    """
    out = policy(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.reshape(out.shape[0], -1)


class ClassHead:
    """Policy output (B, k) -> class logits (B, C).

    :param classes: ``"actions"`` (the discrete policy's bin logits, C = n_bins) or ``"groups"``
        (the bifurcation layer's two group logits, C = 2).
    :param layer: the bifurcation layer (used for ``"groups"``).
    :param action_index: which action dimension's groups (continuous policies with act_dim > 1).
    """

    def __init__(self, classes: str, layer: Bifurcation, action_index: int = 0) -> None:
        self.classes = classes
        self.layer = layer
        self.action_index = int(action_index)

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        """Class logits of policy outputs ``out``."""
        if self.classes == "actions":
            return out
        groups = self.layer(out)  # (B, D, 2)
        if not 0 <= self.action_index < groups.shape[1]:
            raise ValueError(
                f"setting 'action_index'={self.action_index} is out of range for "
                f"{groups.shape[1]} action dimension(s)"
            )
        return groups[:, self.action_index, :]


class InputMap(nn.Module):
    """The network ART attacks: active-feature input ``u`` -> class logits.

    The victim (or proxy) is kept out of the module tree, so ART's ``.to(device)`` and
    ``.train()/.eval()`` calls never touch it (the attack runs it frozen, in eval mode).

    :param network: observation batch -> policy output.
    :param head: policy output -> class logits.
    :param obs_shape: one observation's shape.
    :param active: flat indices of the features ART may change.
    :param scale: per active feature, the budget scale (``"delta"`` mode).
    :param mode: ``"delta"`` (``x_active = base_active + u * scale``) or ``"absolute"``
        (``x_active = u``).
    """

    active: torch.Tensor
    scale: torch.Tensor
    network: Callable[[torch.Tensor], Any]

    def __init__(
        self,
        network: Callable[[torch.Tensor], Any],
        head: ClassHead,
        obs_shape: tuple[int, ...],
        active: torch.Tensor,
        scale: torch.Tensor,
        mode: str = "delta",
    ) -> None:
        super().__init__()
        object.__setattr__(self, "network", network)
        self.head = head
        self.obs_shape = tuple(obs_shape)
        self.mode = mode
        self.register_buffer("active", active.long())
        self.register_buffer("scale", scale.float())
        self.base: torch.Tensor | None = None

    def set_base(self, base: torch.Tensor) -> None:
        """Set the clean observations (B, n_flat) the inputs are relative to (B = 1 broadcasts).

        :param base: flat clean observations.
        """
        self.base = base.detach().reshape(base.shape[0], -1).float()

    def full(self, u: torch.Tensor) -> torch.Tensor:
        """Flat observations (N, n_flat) for inputs ``u`` (N, n_active).

        :param u: ART's inputs.
        """
        if self.base is None:
            raise RuntimeError("InputMap.set_base was not called")
        base = self.base.to(u.device)
        if base.shape[0] != u.shape[0]:
            if base.shape[0] != 1:
                raise RuntimeError(f"InputMap: {u.shape[0]} inputs for {base.shape[0]} bases")
            base = base.expand(u.shape[0], -1)
        u = u.to(base.dtype)
        values = base[:, self.active] + u * self.scale if self.mode == "delta" else u
        return torch.index_copy(base, 1, self.active, values)

    def to_inputs(self, x_flat: torch.Tensor) -> torch.Tensor:
        """The inputs ``u`` that give flat observations ``x_flat`` (the inverse of :meth:`full`).

        :param x_flat: flat observations (N, n_flat).
        """
        values = x_flat[:, self.active]
        if self.mode == "delta":
            assert self.base is not None
            values = (values - self.base[:, self.active]) / self.scale
        return values

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Class logits (N, C) of inputs ``u`` (N, n_active)."""
        x = self.full(u)
        return self.head(policy_output(self.network, x.reshape(x.shape[0], *self.obs_shape)))


class _Reduced(nn.Module):
    """A per-sample loss with the ``reduction`` attribute ART's ``compute_loss`` sets."""

    def __init__(self, reduction: str = "sum") -> None:
        super().__init__()
        self.reduction = reduction

    def per_sample(self, logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (N, C) for one-hot labels ``target`` (N, C)."""
        if target.dim() == 1:  # class indices
            target = torch.nn.functional.one_hot(target.long(), logits.shape[1])
        loss = self.per_sample(logits, target.to(logits.dtype))
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


class GroupCW(_Reduced):
    """The authors' ``CWLoss`` as they wrote it: ``max((1 - y) * z) - z_y``.

    Multiplying the labelled logit by 0 (instead of masking it) makes the "other" term
    ``max(0, max_{j != y} z_j)``: it differs from the stated loss whenever every other logit is
    negative.
    """

    def per_sample(self, logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        target = (onehot * logits).sum(dim=1)
        other = ((1 - onehot) * logits).max(dim=1).values
        return other - target


class GroupGDL(_Reduced):
    """The stated Group Difference Logits loss: ``max_{j != y} z_j - z_y`` (no margin)."""

    def per_sample(self, logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        target = (onehot * logits).sum(dim=1)
        other = logits.masked_fill(onehot > 0, float("-inf")).max(dim=1).values
        return other - target


def make_loss(name: str) -> nn.Module:
    """The classifier loss for ``name`` (ART's built-in losses get a placeholder).

    :param name: ``"cw"``, ``"gdl"``, ``"cross_entropy"`` or ``"difference_logits_ratio"``.
    """
    if name == "gdl":
        return GroupGDL()
    if name == "cross_entropy":
        return nn.CrossEntropyLoss()
    return GroupCW()


def art_loss_type(name: str) -> str | None:
    """ART's ``loss_type`` for loss ``name`` (None = use the classifier's loss).

    :param name: an rlkit loss name.
    """
    return name if name in ("cross_entropy", "difference_logits_ratio") else None


def art_norm(norm: str) -> Any:
    """ART's norm argument for an rlkit budget norm.

    :param norm: ``"linf"`` or ``"l2"``.
    """
    return np.inf if norm == "linf" else 2


def device_type(network: Any) -> str:
    """``"gpu"`` when ``network`` lives on CUDA, else ``"cpu"`` (ART's ``device_type``).

    :param network: a module or callable.
    """
    if isinstance(network, nn.Module):
        for t in (*network.parameters(), *network.buffers()):
            return "gpu" if t.device.type == "cuda" else "cpu"
    return "cpu"


def make_classifier(
    model: InputMap,
    loss: nn.Module,
    nb_classes: int,
    n_inputs: int,
    clip_values: tuple[float, float] | None = None,
) -> Any:
    """An ART ``PyTorchClassifier`` around ``model``.

    :param model: the input map.
    :param loss: the classifier's loss.
    :param nb_classes: number of classes C.
    :param n_inputs: number of active features.
    :param clip_values: scalar (min, max) (Brendel-Bethge needs them); the attacks replace them
        per sample with :func:`set_clip`.
    """
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=model,
        loss=loss,
        nb_classes=int(nb_classes),
        input_shape=(int(n_inputs),),
        clip_values=clip_values,
        device_type=device_type(model.network),
    )


def set_clip(attack: Any, low: np.ndarray | float | None, high: np.ndarray | float | None) -> None:
    """Replace the clip values of ``attack``'s estimator (ART clips with ``np.clip``).

    :param attack: an ART evasion attack.
    :param low: lower bound (array broadcastable to the inputs, or a scalar); None = no clipping.
    :param high: upper bound, like ``low``.
    """
    estimator = attack.estimator
    if low is None or high is None:
        estimator._clip_values = None
        return
    estimator._clip_values = np.stack([np.asarray(low, np.float32), np.asarray(high, np.float32)])


@contextlib.contextmanager
def numpy_seed(entropy: Sequence[int] | None) -> Iterator[None]:
    """Seed numpy's global RNG (which ART's random restarts use) inside the block, then restore.

    :param entropy: integers to seed from; None = leave the global RNG alone.
    """
    if entropy is None:
        yield
        return
    state = np.random.get_state()
    np.random.seed(np.random.SeedSequence([int(e) for e in entropy]).generate_state(4))
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def quiet_tqdm() -> Iterator[None]:
    """Silence the progress bar ART's Brendel-Bethge attack opens (``tqdm.auto.trange``)."""
    import tqdm.auto

    original = tqdm.auto.trange

    def trange(*args: Any, **kwargs: Any) -> Any:
        kwargs["disable"] = True
        return original(*args, **kwargs)

    tqdm.auto.trange = trange
    try:
        yield
    finally:
        tqdm.auto.trange = original


def onehot(labels: np.ndarray, n: int) -> np.ndarray:
    """One-hot float32 rows of integer ``labels``.

    :param labels: (N,) class indices.
    :param n: number of classes.
    """
    out = np.zeros((len(labels), n), dtype=np.float32)
    out[np.arange(len(labels)), np.asarray(labels, dtype=int)] = 1.0
    return out


# ----------------------------------------------------------------------- the snooping proxy
ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def make_proxy(
    n_in: int, n_out: int, hidden: Sequence[int], activation: str, dropout: Sequence[float]
) -> nn.Sequential:
    """An MLP ``n_in -> hidden... -> n_out`` with ``activation`` and dropout after each layer.

    :param n_in: input features.
    :param n_out: outputs (bins, or action dimensions).
    :param hidden: hidden widths.
    :param activation: ``"tanh"`` or ``"relu"``.
    :param dropout: dropout probability after each hidden layer (padded with its last value).
    """
    layers: list[nn.Module] = []
    width = n_in
    rates = list(dropout) or [0.0]
    for i, h in enumerate(hidden):
        layers += [nn.Linear(width, int(h)), ACTIVATIONS[activation]()]
        rate = rates[min(i, len(rates) - 1)]
        if rate > 0:
            layers.append(nn.Dropout(rate))
        width = int(h)
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def fit_proxy(
    make: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    classify: bool,
    optimizer: str,
    lr: float,
    batch_size: int,
    epochs: int,
    keep_best: bool,
    shuffle: bool,
    seed: int | None,
) -> tuple[nn.Module, dict[str, float]]:
    """Supervised imitation: build a proxy with ``make`` and fit it to (observation, label) pairs.

    Classification (discrete victims): cross-entropy on the victim's bins, scored by accuracy.
    Regression (continuous victims): Huber loss on the victim's action mean, scored by RMSE.
    Each epoch runs over the data in order (``shuffle=False`` is the authors' choice: the samples
    are a time series), then scores the whole training set; with ``keep_best`` the best epoch's
    weights are kept (the authors' "imitator best.pth"), else the last epoch's.

    :param make: builds the untrained proxy (called under the seed).
    :param x: observations (N, n_in), float32.
    :param y: bin indices (N,) or action means (N, d).
    :param classify: classification (True) or regression.
    :param optimizer: ``"rmsprop"``, ``"sgd"`` or ``"adam"``.
    :param lr: learning rate.
    :param batch_size: minibatch size.
    :param epochs: passes over the data.
    :param keep_best: keep the best epoch instead of the last.
    :param shuffle: shuffle the samples each epoch.
    :param seed: seed of the weight init, dropout and shuffling (None = torch's global RNG).
    :return: the fitted proxy (eval mode, no gradients on its weights) and
        ``{"accuracy" or "rmse": final training score, "epochs": ..., "samples": N}``.
    """
    opt_cls = {"rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD, "adam": torch.optim.Adam}[
        optimizer
    ]
    loss_fn: nn.Module = nn.CrossEntropyLoss() if classify else nn.HuberLoss()
    n = x.shape[0]
    fork: Any = contextlib.nullcontext()
    if seed is not None:
        fork = torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else [])
    with fork:
        if seed is not None:
            torch.manual_seed(int(seed))
        model = make().to(x.device)
        opt = opt_cls(model.parameters(), lr=lr)
        best_score: float | None = None
        best_state: dict[str, torch.Tensor] | None = None

        def score() -> float:
            model.eval()
            with torch.no_grad():
                out = model(x)
                if classify:
                    return float((out.argmax(dim=1) == y).float().mean())
                return float(torch.sqrt(torch.mean((out - y) ** 2)))

        with torch.enable_grad():
            for _ in range(int(epochs)):
                model.train()
                order = torch.randperm(n, device=x.device) if shuffle else None
                for start in range(0, n, batch_size):
                    idx = (
                        order[start : start + batch_size]
                        if order is not None
                        else slice(start, start + batch_size)
                    )
                    opt.zero_grad()
                    loss = loss_fn(model(x[idx]), y[idx])
                    loss.backward()
                    opt.step()
                if keep_best:
                    s = score()
                    if best_score is None or (s > best_score if classify else s < best_score):
                        best_score = s
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if best_state is not None:
            model.load_state_dict(best_state)
        final = score()
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model, {
        "accuracy" if classify else "rmse": final,
        "epochs": float(epochs),
        "samples": float(n),
    }


def load_observations(path: str | os.PathLike[str], n_features: int) -> np.ndarray:
    """Observations (N, n_features) from a ``.npy``, ``.npz`` or ``.csv`` file.

    ``.npz``: the array ``obs`` (or ``observations``, or the only array).  ``.csv``: numeric
    columns after an index column, as the authors' ``baseline_obs-a.csv`` (31 features, then the
    action column ``a``, dropped here: labels come from the victim).

    :param path: the file.
    :param n_features: the observation size the victim takes.
    :raises ValueError: missing file, unknown format or a shape that does not fit.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"setting 'dataset': no such file {path!r}")
    if path.endswith(".npy"):
        data = np.load(path, allow_pickle=False)
    elif path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            key = next(
                (k for k in ("obs", "observations") if k in keys),
                keys[0] if len(keys) == 1 else None,
            )
            if key is None:
                raise ValueError(f"setting 'dataset': {path} has arrays {keys}; name one 'obs'")
            data = archive[key]
    elif path.endswith(".csv"):
        import pandas as pd

        frame = pd.read_csv(path, index_col=0)
        frame = frame.drop(columns=[c for c in frame.columns if str(c) in ("a", "action")])
        data = frame.to_numpy(dtype=np.float32)
    else:
        raise ValueError(f"setting 'dataset': {path!r} is not a .npy, .npz or .csv file")
    data = np.asarray(data, dtype=np.float32).reshape(len(data), -1)
    if data.shape[1] != n_features:
        raise ValueError(
            f"setting 'dataset': {path} has {data.shape[1]} features per row, the "
            f"victim observes {n_features}"
        )
    return data
