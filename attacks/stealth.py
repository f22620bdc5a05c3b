"""Stealth statistics for observation-perturbation attacks.

These are the detectability checks of the bifurcation-attack stealth analysis
(Broda-Milian, Dagdougui, Al-Mallah 2024): a distribution-level two-sample test
between clean and attacked observation traces, a calibration of that test on
clean data alone, and time-series plausibility checks on consecutive
observations.

* :func:`mmd_test` -- kernel two-sample test (maximum mean discrepancy, Gaussian
  kernel, median-heuristic bandwidth, permutation p-value) after Grosse et al.
  2017, with row, day-block or paired-day permutations.
* :func:`paper_mmd_test` -- the authors' test exactly: torchdrift 0.1.0.post1
  ``kernel_mmd`` with ``GaussianKernel()``, 10,000 row permutations (see
  ``PROCEDURES["paper"]``).
* :func:`split_by_day_null` -- null calibration on a clean trace: random halves
  tested against each other, repeatedly. ``split="hours"`` is the authors'
  ``MMD baseline.py`` (each day's hours shuffled, half of them in each half, so
  every day is in both halves; :func:`hour_split_null` has their defaults);
  ``split="days"`` puts whole days in each half (rlkit's stricter null).
* :func:`first_difference_mmd` -- the MMD test on absolute first differences
  of consecutive observations (the authors' ``MMD feature absolute
  variation.ipynb``, which detected their stealthy SAC attack, p = 0).
* :func:`ks_per_feature` -- per-feature two-sample Kolmogorov-Smirnov tests
  (an addition; the paper's code has no KS test).
* :func:`first_difference_check` -- fraction of attacked steps whose
  consecutive-observation change stays, for every feature, within the largest
  change seen in the clean trace (the paper reports 97.6 % for its stealthy
  SAC attack).
* :func:`stealth_report` -- all of the above as one JSON-serialisable dict
  (``PAPER_STEALTH`` holds its options for the paper's procedure).

Observation inputs are ``(T, F)`` array-likes (a 1-D ``(T,)`` input is one
feature). Where noted, a list of episodes (each ``(T_i, F)``) or a 3-D
``(E, T, F)`` array is accepted as well; rows are pooled for the
distribution tests, while first differences are taken within episodes only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypedDict

import numpy as np
from scipy import stats as sps

__all__ = [
    "PAPER_STEALTH",
    "PROCEDURES",
    "FeatureKS",
    "FirstDiffResult",
    "MMDOptions",
    "MMDResult",
    "SplitNullResult",
    "first_difference_check",
    "first_difference_mmd",
    "hour_split_null",
    "ks_per_feature",
    "median_heuristic",
    "mmd_test",
    "null_splits",
    "paper_mmd_test",
    "split_by_day_null",
    "stealth_report",
]

Estimator = Literal["biased", "unbiased", "torchdrift"]
BandwidthRule = Literal["pairs", "torchdrift"]
PValueRule = Literal["plus_one", "torchdrift"]
Split = Literal["days", "hours"]
Procedure = Literal["rlkit", "paper"]


class MMDOptions(TypedDict):
    """The options of :func:`mmd_test` that make up a procedure."""

    estimator: Estimator
    bandwidth_rule: BandwidthRule
    p_value_rule: PValueRule


#: The MMD options of each procedure: ``"rlkit"`` (the V-statistic, the median
#: over pairs, the conservative ``(count + 1) / (B + 1)`` p-value) and
#: ``"paper"`` (torchdrift's ``kernel_mmd`` as the authors ran it).
PROCEDURES: dict[str, MMDOptions] = {
    "rlkit": {"estimator": "biased", "bandwidth_rule": "pairs", "p_value_rule": "plus_one"},
    "paper": {
        "estimator": "torchdrift",
        "bandwidth_rule": "torchdrift",
        "p_value_rule": "torchdrift",
    },
}

#: :func:`stealth_report` options that reproduce the paper's stealth analysis
#: (together with ``steps_per_day``, 24 for the hourly CityLearn building).
PAPER_STEALTH: dict[str, Any] = {
    "procedure": "paper",
    "permutations": 10_000,
    "max_samples": None,
    "null_split": "hours",
    "null_repeats": 80,
    "difference_mmd": True,
}

# Permutation statistics within this absolute distance of the observed one are
# ties: they count as "at least as extreme" for the plus-one p-value and as "not
# greater" for torchdrift's strict count, so floating-point summation order can
# never decide a comparison. MMD^2 with a Gaussian kernel is O(1), so this is far
# below any meaningful difference.
_TIE_TOL = 1e-12
# Upper bound on elements of one (chunk x N) float64 indicator block (32 MiB).
_CHUNK_ELEMS = 1 << 22
_ESTIMATORS = ("biased", "unbiased", "torchdrift")
_BANDWIDTH_RULES = ("pairs", "torchdrift")
_P_VALUE_RULES = ("plus_one", "torchdrift")
_SPLITS = ("days", "hours")


# --------------------------------------------------------------------------- #
# input handling
# --------------------------------------------------------------------------- #
def _as_2d(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a (T, F) array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def _episodes(obs: Any, name: str) -> list[np.ndarray]:
    """Split ``obs`` into a list of (T_i, F) float64 episodes."""
    if isinstance(obs, (list, tuple)) and len(obs) > 0 and all(np.ndim(e) == 2 for e in obs):
        eps = [_as_2d(e, f"{name}[{i}]") for i, e in enumerate(obs)]
    elif np.ndim(obs) == 3:
        arr = np.asarray(obs, dtype=np.float64)
        eps = [_as_2d(e, f"{name}[{i}]") for i, e in enumerate(arr)]
    else:
        eps = [_as_2d(obs, name)]
    if not eps:
        raise ValueError(f"{name}: no episodes")
    n_feat = {e.shape[1] for e in eps}
    if len(n_feat) != 1:
        raise ValueError(f"{name}: episodes have different feature counts {sorted(n_feat)}")
    return eps


def _pooled(obs: Any, name: str) -> np.ndarray:
    return np.concatenate(_episodes(obs, name), axis=0)


def _feature_names(feature_names: Sequence[str] | None, n_features: int) -> list[str]:
    if feature_names is None:
        return [f"f{j}" for j in range(n_features)]
    names = [str(f) for f in feature_names]
    if len(names) != n_features:
        raise ValueError(f"feature_names has {len(names)} entries for {n_features} features")
    return names


def _even_subsample(n: int, k: int) -> np.ndarray:
    """``k`` strictly increasing, evenly spaced indices into ``range(n)`` (``k <= n``)."""
    return (np.arange(k, dtype=np.int64) * n) // k


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _procedure_options(procedure: str) -> MMDOptions:
    _check_choice("procedure", procedure, tuple(PROCEDURES))
    return PROCEDURES[procedure].copy()


# --------------------------------------------------------------------------- #
# kernel and bandwidth
# --------------------------------------------------------------------------- #
def _sq_dists(z: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, (N, N) float64, zero diagonal."""
    sq = np.einsum("ij,ij->i", z, z)
    d2 = z @ z.T
    d2 *= -2.0
    d2 += sq[:, None]
    d2 += sq[None, :]
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    # enforce exact symmetry (matmul rounding can differ between (i, j) and (j, i))
    d2 += d2.T
    d2 *= 0.5
    return d2


def median_heuristic(z: Any, rule: BandwidthRule = "pairs") -> float:
    """Median-heuristic bandwidth of a pooled sample.

    ``rule="pairs"``: ``sigma = median{ ||z_i - z_j||_2 : i < j }`` (``np.median``,
    so the mean of the two middle values for an even count). ``rule="torchdrift"``:
    torchdrift's ``dists.median()``, the lower median (sorted position
    ``(N^2 - 1) // 2``) of all ``N^2`` entries of the distance matrix, zero
    diagonal and both triangles included. If the median is 0 (most pairs
    coincide) the mean of the positive distances is used instead (torchdrift
    would divide by zero), and 1.0 if all points coincide.

    :param z: ``(N, F)`` pooled sample.
    :param rule: ``"pairs"`` or ``"torchdrift"``.
    :return: the bandwidth sigma.
    """
    _check_choice("rule", rule, _BANDWIDTH_RULES)
    return _median_from_sq(_sq_dists(_as_2d(z, "z")), rule)


def _median_positions(big_n: int, rule: str) -> list[int]:
    """Sorted positions, in the flattened (N, N) matrix, of the median entries of ``rule``."""
    if rule == "torchdrift":
        return [(big_n * big_n - 1) // 2]
    # The flattened symmetric matrix holds the N zero diagonal entries plus every
    # pair value twice, and pair values are >= 0, so in sorted order pair rank k
    # (1-based) sits at 0-based positions N + 2k - 2 and N + 2k - 1: the pair median
    # needs one partial sort and no triangle copy.
    n_pairs = big_n * (big_n - 1) // 2
    if n_pairs % 2:
        return [big_n + n_pairs - 1]
    return [big_n + n_pairs - 2, big_n + n_pairs]


def _median_from_sq(d2: np.ndarray, rule: str = "pairs") -> float:
    big_n = d2.shape[0]
    if big_n < 2:
        return 1.0
    kth = _median_positions(big_n, rule)
    part = np.partition(d2.ravel(), kth)
    sigma = float(np.mean(np.sqrt(part[kth])))
    if sigma > 0.0:
        return sigma
    pos = d2[d2 > 0.0]
    return float(np.sqrt(pos).mean()) if pos.size else 1.0


def _gaussian_kernel(
    z: np.ndarray, bandwidth: float | None, rule: str = "pairs"
) -> tuple[np.ndarray, float]:
    """Kernel matrix ``exp(-||z_i - z_j||^2 / (2 sigma^2))`` and the sigma used."""
    d2 = _sq_dists(z)
    if bandwidth is None:
        sigma = _median_from_sq(d2, rule)
    else:
        sigma = float(bandwidth)
        if not (sigma > 0.0 and math.isfinite(sigma)):
            raise ValueError(f"bandwidth must be positive and finite, got {bandwidth}")
    d2 *= -1.0 / (2.0 * sigma * sigma)
    np.exp(d2, out=d2)  # in place: d2 is now the kernel matrix
    return d2, sigma


# --------------------------------------------------------------------------- #
# MMD statistics over splits of one kernel matrix
# --------------------------------------------------------------------------- #
def _mmd2(xx: Any, xy: Any, yy: Any, n: Any, m: Any, estimator: str) -> Any:
    """MMD^2 from the block sums of a kernel matrix with a unit diagonal.

    ``biased``: the V-statistic (diagonals kept). ``unbiased``: the U-statistic
    (diagonals dropped). ``torchdrift``: diagonals kept but the within-sample
    sums divided by ``n (n - 1)``, as torchdrift's ``kernel_mmd`` does (it equals
    the U-statistic plus ``1 / (n - 1) + 1 / (m - 1)``).
    """
    cross = 2.0 * xy / (n * m)
    if estimator == "biased":
        return xx / (n * n) + yy / (m * m) - cross
    if estimator == "unbiased":
        return (xx - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - cross
    return xx / (n * (n - 1)) + yy / (m * (m - 1)) - cross


class _KernelStats:
    """MMD^2 for any split of a fixed pooled kernel matrix, from index sums.

    With X the first group (size n), Y the rest (size m), ``S = sum(K)``,
    ``r = K @ 1`` (row sums), ``R_X = sum_{i in X} r_i`` and
    ``A = sum_{i, j in X} K_ij``, the block sums are
    ``sum_XX = A``, ``sum_XY = R_X - A``, ``sum_YY = S - 2 R_X + A``, so only the
    quadratic form ``A`` has to be computed per split (a matmul over a batch of
    0/1 indicator rows).
    """

    def __init__(self, kernel: np.ndarray, estimator: str) -> None:
        _check_choice("estimator", estimator, _ESTIMATORS)
        self.k = kernel
        self.estimator = estimator
        self.r = kernel.sum(axis=1)
        self.total = float(self.r.sum())
        self.n_total = kernel.shape[0]

    def from_indicators(self, ind: np.ndarray, n: int | np.ndarray) -> np.ndarray:
        """MMD^2 for each row of ``ind``.

        :param ind: ``(c, N)`` 0/1 float64 rows, ``n`` ones per row.
        :param n: ones per row; a per-row array when split sizes differ (block permutations).
        """
        a = np.einsum("ij,ij->i", ind @ self.k, ind)
        rx = ind @ self.r
        return _mmd2(a, rx - a, self.total - 2.0 * rx + a, n, self.n_total - n, self.estimator)

    def direct(self, n: int) -> float:
        """MMD^2 of the split X = first ``n`` rows, from block sums (no cancellation).

        :param n: rows in X.
        """
        k = self.k
        xx, yy, xy = float(k[:n, :n].sum()), float(k[n:, n:].sum()), float(k[:n, n:].sum())
        return float(_mmd2(xx, xy, yy, n, self.n_total - n, self.estimator))

    def _in_chunks(
        self, permutations: int, draw: Callable[[int], tuple[np.ndarray, Any]]
    ) -> np.ndarray:
        """Statistics of ``permutations`` splits; ``draw(c)`` gives ``c`` indicator rows and n."""
        out = np.empty(permutations, dtype=np.float64)
        chunk = max(1, _CHUNK_ELEMS // self.n_total)
        for done in range(0, permutations, chunk):
            ind, n = draw(min(chunk, permutations - done))
            out[done : done + ind.shape[0]] = self.from_indicators(ind, n)
        return out

    def _indicators(self, members: np.ndarray) -> np.ndarray:
        ind = np.zeros((members.shape[0], self.n_total), dtype=np.float64)
        np.put_along_axis(ind, members, 1.0, axis=1)
        return ind

    def permutation_stats(self, n: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
        """MMD^2 of ``permutations`` uniform random splits into sizes ``(n, N - n)``.

        Permutation ``k`` puts into X the ``n`` positions holding the smallest of
        the ``N`` uniforms ``rng.random(N)`` of draw ``k`` (the first ``n``
        entries of ``argsort``); draws come in chunks, which does not change the
        random stream.

        :param n: size of X.
        :param permutations: number of splits.
        :param rng: random generator.
        """

        def draw(c: int) -> tuple[np.ndarray, int]:
            u = rng.random((c, self.n_total))
            return self._indicators(np.argpartition(u, n - 1, axis=1)[:, :n]), n

        return self._in_chunks(permutations, draw)

    def composed_permutation_stats(
        self,
        n: int,
        permutations: int,
        rng: np.random.Generator,
        order: np.ndarray | None = None,
    ) -> np.ndarray:
        """MMD^2 of row permutations drawn as torchdrift's ``kernel_mmd`` draws them.

        torchdrift permutes its (already permuted) kernel matrix again at every
        step, ``k = k[pi][:, pi]`` with ``pi = randperm(N)``, and scores the first
        ``n`` rows as X. Here ``pi = rng.permutation(N)``, the composed order is
        ``s = s[pi]`` and X is ``order[s[:n]]``: the same splits from the same
        stream, without moving the matrix.

        :param n: size of X.
        :param permutations: number of splits.
        :param rng: random generator.
        :param order: kernel-matrix rows in the order of the caller's sample
            ``[x; y]``; default ``arange(N)``.
        """
        s = np.arange(self.n_total) if order is None else np.asarray(order, dtype=np.int64)

        def draw(c: int) -> tuple[np.ndarray, int]:
            nonlocal s
            members = np.empty((c, n), dtype=np.int64)
            for i in range(c):
                s = s[rng.permutation(self.n_total)]
                members[i] = s[:n]
            return self._indicators(members), n

        return self._in_chunks(permutations, draw)

    def block_permutation_stats(
        self, blocks: np.ndarray, n_x_blocks: int, permutations: int, rng: np.random.Generator
    ) -> np.ndarray:
        """MMD^2 of ``permutations`` random splits that move whole blocks.

        Rows with the same label in ``blocks`` (e.g. one simulated day) stay
        together: each split puts ``n_x_blocks`` randomly chosen blocks into X.
        Permuting blocks instead of rows keeps the dependence between
        consecutive steps of a time series out of the null.

        :param blocks: a block label per row of the kernel matrix.
        :param n_x_blocks: blocks in X.
        :param permutations: number of splits.
        :param rng: random generator.
        """
        labels, row_block = np.unique(blocks, return_inverse=True)
        member = np.zeros((labels.size, self.n_total), dtype=np.float64)
        member[row_block, np.arange(self.n_total)] = 1.0

        def draw(c: int) -> tuple[np.ndarray, np.ndarray]:
            u = rng.random((c, labels.size))
            chosen = np.zeros((c, labels.size), dtype=np.float64)
            picks = np.argpartition(u, n_x_blocks - 1, axis=1)[:, :n_x_blocks]
            np.put_along_axis(chosen, picks, 1.0, axis=1)
            ind = chosen @ member
            return ind, ind.sum(axis=1)

        return self._in_chunks(permutations, draw)

    def paired_permutation_stats(
        self,
        x_rows: list[np.ndarray],
        y_rows: list[np.ndarray],
        permutations: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """MMD^2 of ``permutations`` random swaps within pairs of blocks.

        Pair ``i`` is (rows ``x_rows[i]`` of X, rows ``y_rows[i]`` of Y), e.g. the
        same day clean and attacked; each permutation swaps every pair's two
        blocks with probability 1/2. Differences between pairs (days, seasons)
        stay out of the null, so the test is calibrated and keeps its power on
        paired time series.

        :param x_rows: kernel-matrix rows of each pair's X block.
        :param y_rows: kernel-matrix rows of each pair's Y block.
        :param permutations: number of swaps.
        :param rng: random generator.
        """
        pairs = len(x_rows)
        member_x = np.zeros((pairs, self.n_total))
        member_y = np.zeros((pairs, self.n_total))
        for i, (xr, yr) in enumerate(zip(x_rows, y_rows, strict=True)):
            member_x[i, xr], member_y[i, yr] = 1.0, 1.0

        def draw(c: int) -> tuple[np.ndarray, np.ndarray]:
            swap = (rng.random((c, pairs)) < 0.5).astype(np.float64)
            ind = (1.0 - swap) @ member_x + swap @ member_y
            return ind, ind.sum(axis=1)

        return self._in_chunks(permutations, draw)

    def row_stats(
        self,
        n: int,
        permutations: int,
        rng: np.random.Generator,
        p_value_rule: str,
        order: np.ndarray | None = None,
    ) -> np.ndarray:
        """Row permutations in the random stream of ``p_value_rule`` (uniform or torchdrift's).

        :param n: size of X.
        :param permutations: number of splits.
        :param rng: random generator.
        :param p_value_rule: ``"plus_one"`` or ``"torchdrift"``.
        :param order: see :meth:`composed_permutation_stats` (torchdrift stream only).
        """
        if p_value_rule == "torchdrift":
            return self.composed_permutation_stats(n, permutations, rng, order)
        return self.permutation_stats(n, permutations, rng)


def _perm_p_value(observed: float, perm: np.ndarray, rule: str = "plus_one") -> float:
    """``plus_one``: ``(#{perm >= obs} + 1) / (B + 1)``; ``torchdrift``: ``#{perm > obs} / B``."""
    if rule == "torchdrift":
        return int(np.count_nonzero(perm > observed + _TIE_TOL)) / perm.size
    return (int(np.count_nonzero(perm >= observed - _TIE_TOL)) + 1) / (perm.size + 1)


def _check_sizes(n: int, m: int, estimator: str) -> None:
    lo = 1 if estimator == "biased" else 2
    if n < lo or m < lo:
        raise ValueError(
            f"need at least {lo} rows per sample for the {estimator} MMD, got {n}, {m}"
        )


# --------------------------------------------------------------------------- #
# MMD test
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class MMDResult:
    """Outcome of :func:`mmd_test`.

    :ivar mmd2: MMD^2 estimate between the (possibly subsampled) samples.
    :ivar p_value: permutation p-value (see ``p_value_rule``).
    :ivar bandwidth: Gaussian kernel bandwidth sigma that was used.
    :ivar n_x: rows of ``x`` used (after subsampling).
    :ivar n_y: rows of ``y`` used (after subsampling).
    :ivar permutations: number of random permutations drawn.
    :ivar estimator: ``"biased"``, ``"unbiased"`` or ``"torchdrift"``.
    :ivar bandwidth_rule: median rule, ``"pairs"`` or ``"torchdrift"`` (``"fixed"`` when
        the bandwidth was given).
    :ivar p_value_rule: ``"plus_one"`` or ``"torchdrift"``.
    :ivar scheme: permutation scheme, ``"rows"``, ``"blocks"`` or ``"paired"``.
    """

    mmd2: float
    p_value: float
    bandwidth: float
    n_x: int
    n_y: int
    permutations: int
    estimator: str = "biased"
    bandwidth_rule: str = "pairs"
    p_value_rule: str = "plus_one"
    scheme: str = "rows"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields."""
        return asdict(self)


def _labels(blocks: Any, n_rows: int) -> np.ndarray:
    labels = np.asarray(blocks).reshape(-1)
    if labels.size != n_rows:
        raise ValueError("x_blocks / y_blocks need one label per row of x / y")
    return labels


def _subsample(
    a: np.ndarray, labels: np.ndarray | None, max_samples: int | None
) -> tuple[np.ndarray, np.ndarray | None]:
    if max_samples is None or a.shape[0] <= max_samples:
        return a, labels
    keep = _even_subsample(a.shape[0], max_samples)
    return a[keep], None if labels is None else labels[keep]


def _prepare_samples(
    x: Any, y: Any, x_blocks: Any, y_blocks: Any, max_samples: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validated, subsampled ``(x, y, x_labels, y_labels)``."""
    xa, ya = _as_2d(x, "x"), _as_2d(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x has {xa.shape[1]} features, y has {ya.shape[1]}")
    if (x_blocks is None) != (y_blocks is None):
        raise ValueError("give both x_blocks and y_blocks, or neither")
    xb = None if x_blocks is None else _labels(x_blocks, xa.shape[0])
    yb = None if y_blocks is None else _labels(y_blocks, ya.shape[0])
    if max_samples is not None and max_samples < 1:
        raise ValueError("max_samples must be >= 1")
    xa, xb = _subsample(xa, xb, max_samples)
    ya, yb = _subsample(ya, yb, max_samples)
    return xa, ya, xb, yb


def _check_mmd_options(
    permutations: int, estimator: str, bandwidth_rule: str, p_value_rule: str
) -> None:
    if permutations < 1:
        raise ValueError("permutations must be >= 1")
    _check_choice("estimator", estimator, _ESTIMATORS)
    _check_choice("bandwidth_rule", bandwidth_rule, _BANDWIDTH_RULES)
    _check_choice("p_value_rule", p_value_rule, _P_VALUE_RULES)


def _block_reference(
    ks: _KernelStats,
    xb: np.ndarray,
    yb: np.ndarray,
    paired: bool,
    permutations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Permutation statistics that move whole blocks (or swap paired blocks)."""
    n = xb.size
    if paired:
        common = np.intersect1d(xb, yb)
        if common.size != np.union1d(xb, yb).size:
            raise ValueError("paired blocks need the same block labels in x and y")
        x_rows = [np.flatnonzero(xb == b) for b in common]
        y_rows = [n + np.flatnonzero(yb == b) for b in common]
        return ks.paired_permutation_stats(x_rows, y_rows, permutations, rng)
    # labels made distinct per side: a block never mixes the two samples
    _, x_ids = np.unique(xb, return_inverse=True)
    _, y_ids = np.unique(yb, return_inverse=True)
    labels = np.concatenate([x_ids, x_ids.max() + 1 + y_ids])
    return ks.block_permutation_stats(labels, int(x_ids.max()) + 1, permutations, rng)


def mmd_test(
    x: Any,
    y: Any,
    *,
    permutations: int = 1000,
    bandwidth: float | None = None,
    seed: int = 0,
    max_samples: int | None = None,
    estimator: Estimator = "biased",
    x_blocks: Sequence[int] | np.ndarray | None = None,
    y_blocks: Sequence[int] | np.ndarray | None = None,
    paired: bool = False,
    bandwidth_rule: BandwidthRule = "pairs",
    p_value_rule: PValueRule = "plus_one",
) -> MMDResult:
    """Two-sample kernel MMD permutation test with a Gaussian kernel.

    Kernel: ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))``. Unless ``bandwidth``
    is given, sigma is a median heuristic over the *pooled* sample
    (``bandwidth_rule``, see :func:`median_heuristic`), fixed once and shared by
    all permutations.

    Statistic: ``estimator="biased"`` (default, the V-statistic)
    ``mean K_XX + mean K_YY - 2 mean K_XY`` with the diagonals included (>= 0, and
    0 when the samples are the same multiset); ``"unbiased"`` (the U-statistic)
    excludes the diagonals of ``K_XX`` and ``K_YY`` and can be negative;
    ``"torchdrift"`` keeps the diagonals but divides by ``n (n - 1)`` and
    ``m (m - 1)``, as torchdrift's ``kernel_mmd`` does.

    Permutations: the pooled kernel matrix is computed once and each split is
    scored from index sums of it, vectorised in bounded-memory chunks. By
    default X is a uniform random subset of ``n_x`` pooled rows. With
    ``x_blocks``/``y_blocks`` (a block label per row, e.g. the day of each step)
    the permutations move whole blocks between the samples instead: rows of a
    time series are not exchangeable (consecutive steps are alike) and the
    row-wise test then rejects too often; block permutation keeps the test
    calibrated at the price of power (with B blocks in all there are at most
    C(B, B_x) distinct splits). ``paired=True``: blocks with the same label in x
    and y form a pair (the same day, clean and attacked) and permutations swap
    the two blocks of a pair, so between-day differences stay out of the null
    (calibrated and powerful when the attacked trace replays the clean days).

    p-value: ``p_value_rule="plus_one"`` (default) gives
    ``(#{perm stat >= observed} + 1) / (permutations + 1)`` (never 0), row
    permutations drawn as in :meth:`_KernelStats.permutation_stats`;
    ``"torchdrift"`` gives ``#{perm stat > observed} / permutations`` (0 when no
    permutation exceeds), row permutations composed one on another from
    ``rng.permutation`` as torchdrift composes ``randperm``. Ties within 1e-12
    never decide. All draws come from ``np.random.default_rng(seed)``.

    Cost: the kernel matrix takes ``8 N^2`` bytes (``N = n_x + n_y``) and the
    permutations about ``2 * permutations * N^2`` flops (10,000 permutations at
    ``n_x = n_y = 1000`` take a few seconds on two CPU cores; a year of hourly
    steps, N = 17,518, about 6e12 flops and 2.5 GB). For long traces set
    ``max_samples``.

    :param x: first sample, ``(n, F)`` (or ``(n,)`` for one feature).
    :param y: second sample, ``(m, F)``.
    :param permutations: number of random permutations (>= 1).
    :param bandwidth: Gaussian sigma; ``None`` for the median heuristic.
    :param seed: seed of the permutation generator.
    :param max_samples: if set, a sample with more rows is reduced to
        ``max_samples`` rows deterministically, by evenly spaced indices
        ``floor(k * n / max_samples)``, ``k = 0..max_samples-1`` (this keeps the
        whole time span of a trace). ``None`` uses all rows.
    :param estimator: ``"biased"`` (default), ``"unbiased"`` or ``"torchdrift"``.
    :param x_blocks: a block label per row of ``x`` (block permutations).
    :param y_blocks: a block label per row of ``y``.
    :param paired: swap the x and y blocks that share a label instead of moving blocks.
    :param bandwidth_rule: ``"pairs"`` (default) or ``"torchdrift"``.
    :param p_value_rule: ``"plus_one"`` (default) or ``"torchdrift"``.
    :return: an :class:`MMDResult`.
    """
    _check_mmd_options(permutations, estimator, bandwidth_rule, p_value_rule)
    xa, ya, xb, yb = _prepare_samples(x, y, x_blocks, y_blocks, max_samples)
    n, m = xa.shape[0], ya.shape[0]
    _check_sizes(n, m, estimator)
    kernel, sigma = _gaussian_kernel(np.concatenate([xa, ya], axis=0), bandwidth, bandwidth_rule)
    ks = _KernelStats(kernel, estimator)
    observed = ks.direct(n)
    rng = np.random.default_rng(seed)
    if xb is None or yb is None:
        perm, scheme = ks.row_stats(n, permutations, rng, p_value_rule), "rows"
    else:
        perm = _block_reference(ks, xb, yb, paired, permutations, rng)
        scheme = "paired" if paired else "blocks"
    p = _perm_p_value(observed, perm, p_value_rule)
    if estimator == "biased":
        observed = max(observed, 0.0)  # the V-statistic is non-negative; drop rounding noise
    return MMDResult(
        mmd2=observed,
        p_value=float(p),
        bandwidth=sigma,
        n_x=n,
        n_y=m,
        permutations=int(permutations),
        estimator=estimator,
        bandwidth_rule="fixed" if bandwidth is not None else bandwidth_rule,
        p_value_rule=p_value_rule,
        scheme=scheme,
    )


def paper_mmd_test(
    x: Any,
    y: Any,
    *,
    permutations: int = 10_000,
    seed: int = 0,
    max_samples: int | None = None,
    bandwidth: float | None = None,
) -> MMDResult:
    """The authors' MMD test: torchdrift 0.1.0.post1 ``kernel_mmd(x, y, n_perm, GaussianKernel())``.

    Euclidean distances of the pooled ``[x; y]``; bandwidth the lower median of
    the whole distance matrix (diagonal included); kernel
    ``exp(-d^2 / (2 sigma^2))``; statistic ``sum K_XX / (n (n - 1)) + sum K_YY /
    (m (m - 1)) - 2 sum K_XY / (n m)`` with the diagonals in the sums; p-value
    ``#{perm stat > observed} / permutations`` over row permutations (10,000 in
    the paper, all rows). Same as ``mmd_test(x, y, **PROCEDURES["paper"], ...)``.
    Deviations, none of which changes a result: float64 instead of their
    float32, numpy's generator instead of torch's, exact ties never counted, and
    a zero median replaced as in :func:`median_heuristic`.

    :param x: first sample ``(n, F)`` (the authors: clean observations of the attacked trace).
    :param y: second sample ``(m, F)`` (the perturbed observations of the same trace).
    :param permutations: number of row permutations.
    :param seed: seed of the permutation generator.
    :param max_samples: row cap per sample (see :func:`mmd_test`); the paper uses all rows.
    :param bandwidth: Gaussian sigma; ``None`` for torchdrift's median.
    :return: an :class:`MMDResult`.
    """
    return mmd_test(
        x,
        y,
        permutations=permutations,
        seed=seed,
        max_samples=max_samples,
        bandwidth=bandwidth,
        **_procedure_options("paper"),
    )


# --------------------------------------------------------------------------- #
# null calibration
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class SplitNullResult:
    """Outcome of :func:`split_by_day_null`.

    :ivar p_values: one MMD permutation p-value per random split.
    :ivar mmd2: the matching MMD^2 statistics.
    :ivar bandwidth: the Gaussian sigma (median heuristic over the whole trace
        unless given), shared by all splits.
    :ivar n_days: number of day blocks (a trailing partial day counts as one).
    :ivar n_samples: rows used (after subsampling).
    :ivar permutations: permutations per p-value.
    :ivar mean_p: mean of ``p_values`` (paper, hours split: 0.69 PPO, 0.74 SAC).
    :ivar median_p: median of ``p_values``.
    :ivar min_p: minimum of ``p_values``.
    :ivar split: ``"days"`` (whole days to each half) or ``"hours"`` (the authors'
        split of every day's hours).
    """

    p_values: list[float]
    mmd2: list[float]
    bandwidth: float
    n_days: int
    n_samples: int
    permutations: int
    mean_p: float
    median_p: float
    min_p: float
    split: str = "days"

    def fraction_below(self, alpha: float = 0.05) -> float:
        """Fraction of splits with ``p < alpha`` (the test's false-alarm rate).

        :param alpha: significance level.
        """
        return float(np.mean(np.asarray(self.p_values) < alpha))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields."""
        return asdict(self)


def _subsample_days(
    days: list[np.ndarray], steps_per_day: int, max_samples: int
) -> tuple[list[np.ndarray], int]:
    """Keep ``max(1, 2 * max_samples // n_days)`` evenly spaced rows of every full day.

    A partial day keeps proportionally fewer, at least one. Returns the kept
    days and the rows kept per full day.
    """
    per_day = max(1, (2 * max_samples) // len(days))
    kept = []
    for d in days:
        k = max(1, min(d.size, (per_day * d.size) // steps_per_day))
        kept.append(d[_even_subsample(d.size, k)])
    return kept, per_day


def _day_rows(
    obs: Any, steps_per_day: int, max_samples: int | None
) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Pooled rows, the pooled-row indices of each day block, and the rows kept per full day.

    Days never span episodes; a trailing partial day is its own block. With
    ``max_samples``, a trace of more than ``2 * max_samples`` rows is reduced by
    :func:`_subsample_days`.
    """
    eps = _episodes(obs, "obs")
    days, offset = [], 0
    for e in eps:
        starts = range(0, e.shape[0], steps_per_day)
        days += [offset + np.arange(s, min(s + steps_per_day, e.shape[0])) for s in starts]
        offset += e.shape[0]
    if len(days) < 2:
        raise ValueError(f"need at least 2 day blocks, got {len(days)}")
    if max_samples is not None and max_samples < 1:
        raise ValueError("max_samples must be >= 1")
    per_day = steps_per_day
    if max_samples is not None and offset > 2 * max_samples:
        days, per_day = _subsample_days(days, steps_per_day, max_samples)
    return np.concatenate(eps, axis=0), days, per_day


def _draw_split(
    days: list[np.ndarray], split: str, half_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random split of the day blocks into (X rows, Y rows), pooled-row indices.

    ``days``: ``rng.permutation(n_days)`` puts its first ``n_days // 2`` days in X
    (in that order), the others in Y (in day order). ``hours``: day by day,
    ``rng.permutation`` shuffles the day's rows and the first ``half_rows`` go to X,
    the rest to Y (a shorter partial day puts all its rows in X), as the
    authors' ``daily_samples.sample(frac=1)``, ``iloc[:12]``, ``iloc[12:]``.
    """
    if split == "days":
        order = rng.permutation(len(days))
        chosen = order[: len(days) // 2]
        rest = np.setdiff1d(np.arange(len(days)), chosen)
        return np.concatenate([days[d] for d in chosen]), np.concatenate([days[d] for d in rest])
    x_parts, y_parts = [], []
    for d in days:
        shuffled = d[rng.permutation(d.size)]
        x_parts.append(shuffled[:half_rows])
        y_parts.append(shuffled[half_rows:])
    return np.concatenate(x_parts), np.concatenate(y_parts)


def _null_rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """(split generator, permutation generator) of the null calibration."""
    split_ss, perm_ss = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(split_ss), np.random.default_rng(perm_ss)


def _check_null_args(steps_per_day: int, repeats: int, permutations: int, split: str) -> None:
    if steps_per_day < 1:
        raise ValueError("steps_per_day must be >= 1")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if permutations < 1:
        raise ValueError("permutations must be >= 1")
    _check_choice("split", split, _SPLITS)


def null_splits(
    obs: Any,
    steps_per_day: int,
    *,
    split: Split = "hours",
    repeats: int = 1,
    seed: int = 0,
    max_samples: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The random halves that :func:`split_by_day_null` tests, with the same seed.

    :param obs: clean trace ``(T, F)``, or a list of episodes.
    :param steps_per_day: steps per day block (24 for hourly data).
    :param split: ``"hours"`` or ``"days"`` (see :func:`split_by_day_null`).
    :param repeats: number of splits.
    :param seed: seed, as for :func:`split_by_day_null`.
    :param max_samples: subsampling, as for :func:`split_by_day_null`.
    :return: per split, (X rows, Y rows) as indices into the pooled rows of ``obs``.
    """
    _check_null_args(steps_per_day, repeats, 1, split)
    _, days, per_day = _day_rows(obs, steps_per_day, max_samples)
    split_rng, _ = _null_rngs(seed)
    return [_draw_split(days, split, per_day // 2, split_rng) for _ in range(repeats)]


class _NullScorer:
    """p-values of splits of one pooled trace against (cached or fresh) permutation references."""

    def __init__(
        self,
        ks: _KernelStats,
        position: np.ndarray,
        permutations: int,
        rng: np.random.Generator,
        p_value_rule: str,
        share_reference: bool,
        day_labels: np.ndarray | None,
        n_x_days: int,
    ) -> None:
        self.ks, self.position, self.permutations, self.rng = ks, position, permutations, rng
        self.p_value_rule, self.share = p_value_rule, share_reference
        self.day_labels, self.n_x_days = day_labels, n_x_days
        self.cache: dict[int, np.ndarray] = {}

    def _reference(self, x_pos: np.ndarray, y_pos: np.ndarray) -> np.ndarray:
        n = x_pos.size
        if self.day_labels is not None:  # blockwise: one reference, whole days move
            return self.ks.block_permutation_stats(
                self.day_labels, self.n_x_days, self.permutations, self.rng
            )
        order = None if self.share else np.concatenate([x_pos, y_pos])
        return self.ks.row_stats(n, self.permutations, self.rng, self.p_value_rule, order)

    def score(self, x_rows: np.ndarray, y_rows: np.ndarray) -> tuple[float, float]:
        """(observed MMD^2, p-value) of the split (X rows, Y rows) of pooled-row indices."""
        x_pos, y_pos = self.position[x_rows], self.position[y_rows]
        n = x_pos.size
        _check_sizes(n, y_pos.size, self.ks.estimator)
        ind = np.zeros((1, self.ks.n_total), dtype=np.float64)
        ind[0, x_pos] = 1.0
        observed = float(self.ks.from_indicators(ind, n)[0])
        key = -1 if self.day_labels is not None else n
        if not self.share:
            reference = self._reference(x_pos, y_pos)
        elif key not in self.cache:
            reference = self.cache[key] = self._reference(x_pos, y_pos)
        else:
            reference = self.cache[key]
        p = _perm_p_value(observed, reference, self.p_value_rule)
        return (max(observed, 0.0) if self.ks.estimator == "biased" else observed), p


def split_by_day_null(
    obs: Any,
    steps_per_day: int,
    *,
    repeats: int = 100,
    permutations: int = 1000,
    seed: int = 0,
    bandwidth: float | None = None,
    max_samples: int | None = None,
    estimator: Estimator = "biased",
    blockwise: bool = False,
    split: Split = "days",
    bandwidth_rule: BandwidthRule = "pairs",
    p_value_rule: PValueRule = "plus_one",
    share_reference: bool = True,
) -> SplitNullResult:
    """Null calibration of :func:`mmd_test` on clean data.

    The clean trace is cut into day blocks of ``steps_per_day`` consecutive
    steps (a trailing partial day is its own block; with a list of episodes,
    blocks never span episodes). Each repeat splits the rows at random into X
    and Y and runs the MMD permutation test between them:

    * ``split="days"`` (default): shuffle the days, the first ``n_days // 2``
      whole days go to X and the rest to Y. Each half's daily cycles stay
      intact and the halves differ by whole days, so on serially dependent data
      the row-permutation test rejects often (mean p 0.015 on the authors' clean
      SAC trace); ``blockwise=True`` scores each split against day-block
      permutations instead, which keeps it calibrated.
    * ``split="hours"``: the authors' ``MMD baseline.py``. Every day's rows are
      shuffled and ``steps_per_day // 2`` of them (12 of 24 hours) go to X, the
      rest to Y, so every day is in both halves; the halves are stratified
      samples of the same days and resemble each other more than random row sets
      do, so the p-values sit above uniform (mean 0.64 on their clean SAC trace,
      0.69-0.74 in their CSVs over 80-103 repeats). Row permutations only.

    Every split pools the same rows, so the kernel matrix and median-heuristic
    bandwidth are computed once. With ``share_reference`` (default) the
    permutation reference distribution, which depends only on the pooled rows
    and the size of X, is drawn once per distinct size of X and shared by the
    repeats: each p-value is a valid permutation p-value, but the p-values of
    different repeats are dependent through that shared draw.
    ``share_reference=False`` draws fresh permutations for every repeat as the
    authors did (``repeats`` times the cost).

    :param obs: clean trace ``(T, F)``, or a list of episodes.
    :param steps_per_day: steps per day block (24 for hourly data, 96 for 15-minute data).
    :param repeats: number of random splits.
    :param permutations: permutations per test.
    :param seed: seed for the splits and the permutations (two spawned streams).
    :param bandwidth: Gaussian sigma; ``None`` for the median heuristic.
    :param max_samples: if the trace has more than ``2 * max_samples`` rows, each
        day keeps the same number of evenly spaced rows
        (``max(1, 2 * max_samples // n_days)``; a partial day proportionally
        fewer) so each half has about ``max_samples`` rows; the hours split then
        puts half of each full day's kept rows in X.
    :param estimator: ``"biased"`` (default), ``"unbiased"`` or ``"torchdrift"``.
    :param blockwise: day-block permutations (``split="days"`` only).
    :param split: ``"days"`` (default) or ``"hours"``.
    :param bandwidth_rule: ``"pairs"`` (default) or ``"torchdrift"``.
    :param p_value_rule: ``"plus_one"`` (default) or ``"torchdrift"``.
    :param share_reference: draw the permutation reference once, not per repeat.
    :return: a :class:`SplitNullResult`.
    """
    _check_null_args(steps_per_day, repeats, permutations, split)
    _check_mmd_options(permutations, estimator, bandwidth_rule, p_value_rule)
    if blockwise and split != "days":
        raise ValueError("blockwise permutations need split='days'")
    rows, days, per_day = _day_rows(obs, steps_per_day, max_samples)
    kept = np.concatenate(days)
    position = np.full(rows.shape[0], -1, dtype=np.int64)
    position[kept] = np.arange(kept.size)
    kernel, sigma = _gaussian_kernel(rows[kept], bandwidth, bandwidth_rule)
    split_rng, perm_rng = _null_rngs(seed)
    day_labels = np.repeat(np.arange(len(days)), [d.size for d in days]) if blockwise else None
    scorer = _NullScorer(
        _KernelStats(kernel, estimator),
        position,
        permutations,
        perm_rng,
        p_value_rule,
        share_reference,
        day_labels,
        len(days) // 2,
    )
    scores = [
        scorer.score(*_draw_split(days, split, per_day // 2, split_rng)) for _ in range(repeats)
    ]
    pv = np.array([p for _, p in scores])
    return SplitNullResult(
        p_values=[float(p) for p in pv],
        mmd2=[float(v) for v, _ in scores],
        bandwidth=float(sigma),
        n_days=len(days),
        n_samples=int(kept.size),
        permutations=int(permutations),
        mean_p=float(pv.mean()),
        median_p=float(np.median(pv)),
        min_p=float(pv.min()),
        split=split,
    )


def hour_split_null(
    obs: Any,
    steps_per_day: int = 24,
    *,
    repeats: int = 80,
    permutations: int = 10_000,
    seed: int = 0,
    max_samples: int | None = None,
    procedure: Procedure = "paper",
    share_reference: bool = True,
) -> SplitNullResult:
    """The authors' null (``MMD baseline.py``): every day's hours split 12/12, 80 repeats.

    ``split_by_day_null(obs, steps_per_day, split="hours", **PROCEDURES[procedure], ...)``.
    The authors drew fresh permutations per repeat (``share_reference=False``);
    sharing one reference gives the same p-value distribution per repeat at
    ``1 / repeats`` of the cost.

    :param obs: clean trace ``(T, F)``, or a list of episodes.
    :param steps_per_day: steps per day (24: the authors' hourly building).
    :param repeats: number of splits (80 in ``MMD baseline.py``).
    :param permutations: permutations per test (10,000 in the paper).
    :param seed: seed for the splits and the permutations.
    :param max_samples: subsampling (see :func:`split_by_day_null`); the paper uses all rows.
    :param procedure: ``"paper"`` (torchdrift's test) or ``"rlkit"``.
    :param share_reference: draw the permutation reference once, not per repeat.
    :return: a :class:`SplitNullResult`.
    """
    return split_by_day_null(
        obs,
        steps_per_day,
        repeats=repeats,
        permutations=permutations,
        seed=seed,
        max_samples=max_samples,
        split="hours",
        share_reference=share_reference,
        **_procedure_options(procedure),
    )


# --------------------------------------------------------------------------- #
# KS
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FeatureKS:
    """Two-sample KS result for one feature.

    :ivar feature: feature name.
    :ivar statistic: KS statistic (sup-distance between the empirical CDFs).
    :ivar p_value: two-sided p-value (1.0 when both samples are the same constant).
    """

    feature: str
    statistic: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields."""
        return asdict(self)


def _ks_one(name: str, a: np.ndarray, b: np.ndarray) -> FeatureKS:
    """KS test of one feature; a feature that is one single value in both samples is not tested."""
    if np.all(a == a[0]) and np.all(b == a[0]):
        return FeatureKS(name, 0.0, 1.0)
    with warnings.catch_warnings():
        # large samples: scipy falls back from the exact to the asymptotic p-value
        warnings.filterwarnings("ignore", message=".*Exact calculation unsuccessful.*")
        res = sps.ks_2samp(a, b)
    return FeatureKS(name, float(res.statistic), float(min(1.0, res.pvalue)))


def ks_per_feature(x: Any, y: Any, feature_names: Sequence[str] | None = None) -> list[FeatureKS]:
    """Per-feature two-sample Kolmogorov-Smirnov tests (``scipy.stats.ks_2samp``).

    A feature that takes one single value in both samples gets statistic 0 and
    p-value 1 (scipy is not called). A feature constant within each sample but
    at different values is a genuine difference and is tested normally. The
    p-values are scipy's ``method="auto"`` ones (exact for small samples,
    asymptotic otherwise) and are not corrected for multiple testing, nor for
    the serial correlation of time-series rows.

    :param x: first sample ``(n, F)``, or a list of episodes (rows are pooled).
    :param y: second sample ``(m, F)``, or a list of episodes.
    :param feature_names: ``F`` names; default ``"f0", "f1", ...``.
    :return: one :class:`FeatureKS` per feature, in column order.
    """
    xa, ya = _pooled(x, "x"), _pooled(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x has {xa.shape[1]} features, y has {ya.shape[1]}")
    if xa.shape[0] < 1 or ya.shape[0] < 1:
        raise ValueError("both samples need at least one row")
    names = _feature_names(feature_names, xa.shape[1])
    return [_ks_one(name, xa[:, j], ya[:, j]) for j, name in enumerate(names)]


def _ks_summary(ks: list[FeatureKS], alpha: float) -> dict[str, Any]:
    ks_p = np.array([r.p_value for r in ks])
    imin = int(np.argmin(ks_p))
    return {
        "n_significant": int(np.count_nonzero(ks_p < alpha)),
        "n_significant_bonferroni": int(np.count_nonzero(ks_p < alpha / len(ks))),
        "min_p_value": float(ks_p[imin]),
        "min_p_feature": ks[imin].feature,
        "features": [r.to_dict() for r in ks],
    }


# --------------------------------------------------------------------------- #
# first differences
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FirstDiffResult:
    """Outcome of :func:`first_difference_check`.

    :ivar fraction_within: fraction of attacked steps (first differences) whose
        absolute change stays ``<= clean_max + atol`` for every feature (paper:
        0.976 for its stealthy SAC attack). 1.0 if there are none.
    :ivar n_steps: number of attacked first differences (summed over episodes).
    :ivar n_steps_exceeding: steps with at least one feature out of range.
    :ivar exceedances: per-feature number of steps out of range.
    :ivar clean_max: per-feature maximum absolute first difference of the clean trace.
    :ivar attacked_max: per-feature maximum absolute first difference of the attacked trace.
    :ivar steps_by_n_exceeded: entry ``k`` is the number of steps with exactly ``k``
        features out of range (length ``F + 1``).
    :ivar feature_names: feature names.
    """

    fraction_within: float
    n_steps: int
    n_steps_exceeding: int
    exceedances: list[int]
    clean_max: list[float]
    attacked_max: list[float]
    steps_by_n_exceeded: list[int]
    feature_names: list[str]

    def exceedances_by_feature(self) -> dict[str, int]:
        """``{feature name: exceedance count}``."""
        return dict(zip(self.feature_names, self.exceedances, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields."""
        return asdict(self)


def _abs_first_diffs(eps: list[np.ndarray]) -> np.ndarray:
    parts = [np.abs(np.diff(e, axis=0)) for e in eps if e.shape[0] >= 2]
    if not parts:
        return np.empty((0, eps[0].shape[1]), dtype=np.float64)
    return np.concatenate(parts, axis=0)


def _paired_episodes(
    clean_obs: Any, attacked_obs: Any
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    clean = _episodes(clean_obs, "clean_obs")
    attacked = _episodes(attacked_obs, "attacked_obs")
    if attacked[0].shape[1] != clean[0].shape[1]:
        raise ValueError(
            f"clean has {clean[0].shape[1]} features, attacked has {attacked[0].shape[1]}"
        )
    return clean, attacked


def first_difference_check(
    clean_obs: Any,
    attacked_obs: Any,
    *,
    feature_names: Sequence[str] | None = None,
    atol: float = 0.0,
) -> FirstDiffResult:
    """Check attacked consecutive-observation changes against the clean range.

    For each feature the clean reference is ``max_t |clean[t+1] - clean[t]|``.
    A step ``t`` of the attacked trace is *within range* when
    ``|attacked[t+1] - attacked[t]| <= clean_max + atol`` for every feature.
    With lists of episodes, first differences are taken within each episode
    and concatenated; the jump from one episode's last row to the next
    episode's first row is never used.

    :param clean_obs: clean trace ``(T, F)``, a list of episodes, or ``(E, T, F)``.
    :param attacked_obs: attacked trace(s), same feature layout.
    :param feature_names: ``F`` names; default ``"f0", "f1", ...``.
    :param atol: absolute slack added to the clean maxima (default 0: strict).
    :return: a :class:`FirstDiffResult`.
    """
    clean, attacked = _paired_episodes(clean_obs, attacked_obs)
    n_feat = clean[0].shape[1]
    names = _feature_names(feature_names, n_feat)
    dc = _abs_first_diffs(clean)
    if dc.shape[0] == 0:
        raise ValueError("clean_obs has no consecutive steps (every episode has < 2 rows)")
    da = _abs_first_diffs(attacked)
    clean_max = dc.max(axis=0)
    exceed = da > clean_max[None, :] + atol
    per_step = exceed.sum(axis=1)
    n_steps = int(da.shape[0])
    n_exc = int(np.count_nonzero(per_step))
    return FirstDiffResult(
        fraction_within=float(1.0 if n_steps == 0 else 1.0 - n_exc / n_steps),
        n_steps=n_steps,
        n_steps_exceeding=n_exc,
        exceedances=[int(c) for c in exceed.sum(axis=0)],
        clean_max=[float(v) for v in clean_max],
        attacked_max=[float(v) for v in (da.max(axis=0) if n_steps else np.zeros(n_feat))],
        steps_by_n_exceeded=[int(c) for c in np.bincount(per_step, minlength=n_feat + 1)],
        feature_names=names,
    )


def first_difference_mmd(
    clean_obs: Any,
    attacked_obs: Any,
    *,
    permutations: int = 10_000,
    seed: int = 0,
    max_samples: int | None = None,
    procedure: Procedure = "paper",
    bandwidth: float | None = None,
) -> MMDResult:
    """MMD test between the absolute first differences of the clean and the attacked trace.

    The authors' ``MMD feature absolute variation.ipynb``: ``df.diff().abs()`` of
    both traces, the first (NaN) row dropped, then their MMD test (detected their
    stealthy SAC attack, p = 0, whose plain MMD p was 0.39). A perturbation that
    keeps each observation plausible but breaks the smoothness of the series
    shows here. With lists of episodes, differences are taken within episodes.
    Row permutations only.

    :param clean_obs: clean trace ``(T, F)``, a list of episodes, or ``(E, T, F)``.
    :param attacked_obs: attacked trace(s), same feature layout.
    :param permutations: number of row permutations (10,000 in the paper).
    :param seed: seed of the permutation generator.
    :param max_samples: row cap per sample of differences (see :func:`mmd_test`).
    :param procedure: ``"paper"`` (default, torchdrift's test) or ``"rlkit"``.
    :param bandwidth: Gaussian sigma; ``None`` for the procedure's median heuristic.
    :return: an :class:`MMDResult` on the ``(T - 1, F)`` absolute differences.
    """
    clean, attacked = _paired_episodes(clean_obs, attacked_obs)
    return mmd_test(
        _abs_first_diffs(clean),
        _abs_first_diffs(attacked),
        permutations=permutations,
        seed=seed,
        max_samples=max_samples,
        bandwidth=bandwidth,
        **_procedure_options(procedure),
    )


# --------------------------------------------------------------------------- #
# combined report
# --------------------------------------------------------------------------- #
def _block_labels(obs: Any, block_steps: int) -> np.ndarray:
    """A label per pooled row: the block of ``block_steps`` consecutive steps of its episode."""
    if block_steps < 1:
        raise ValueError("block_steps must be >= 1")
    labels, offset = [], 0
    for episode in _episodes(obs, "obs"):
        ids = np.arange(episode.shape[0]) // block_steps
        labels.append(offset + ids)
        offset += int(ids.max()) + 1 if ids.size else 0
    return np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


def _with_detected(result: MMDResult, alpha: float) -> dict[str, Any]:
    out = result.to_dict()
    out["detected"] = bool(result.p_value < alpha)
    return out


def stealth_report(
    clean_obs: Any,
    attacked_obs: Any,
    *,
    feature_names: Sequence[str] | None = None,
    steps_per_day: int | None = None,
    permutations: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    max_samples: int | None = 2000,
    null_repeats: int = 100,
    block_steps: int | None = None,
    paired: bool = False,
    procedure: Procedure = "rlkit",
    null_split: Split = "days",
    difference_mmd: bool = False,
) -> dict[str, Any]:
    """All stealth statistics for one clean/attacked pair, as a JSON-ready dict.

    ``procedure`` picks the MMD test of the ``mmd``, ``null`` and
    ``first_difference_mmd`` entries (``PROCEDURES``: ``"rlkit"`` or the authors'
    ``"paper"``). ``block_steps`` (e.g. the steps of one day): the MMD test
    permutes whole blocks of that many consecutive steps of an episode instead
    of single steps, and so does the null calibration with ``null_split="days"``,
    which keeps them calibrated on time series (see :func:`mmd_test`).
    ``paired=True`` (with ``block_steps``): the attacked episodes replay the
    clean ones, block i of both is a pair. ``stealth_report(clean, attacked,
    steps_per_day=24, **PAPER_STEALTH)`` is the paper's analysis, with
    ``clean`` the clean observations of the attacked trace.

    Contents (plain ``float``/``int``/``bool``/``str``/``list``/``dict``/``None``):

    * ``mmd``: :class:`MMDResult` fields plus ``detected = p_value < alpha``
      (clean vs attacked rows, pooled over episodes); ``mmd_p_value`` and
      ``detected`` are repeated at top level.
    * ``ks``: ``n_significant`` (features with ``p < alpha``),
      ``n_significant_bonferroni`` (``p < alpha / F``), ``min_p_value``,
      ``min_p_feature`` and ``features`` (per-feature statistic and p-value).
    * ``first_difference``: :class:`FirstDiffResult` fields
      (``fraction_within`` is the paper's 97.6 % figure).
    * ``first_difference_mmd``: with ``difference_mmd``, :func:`first_difference_mmd`
      (row permutations) plus ``detected``; otherwise ``None``.
    * ``null``: when ``steps_per_day`` is given, :func:`split_by_day_null` on
      the clean trace (``mean_p``, ``median_p``, ``min_p``, ``split``,
      ``fraction_below_alpha``, ``p_values``, ...); otherwise ``None``.

    :param clean_obs: clean trace ``(T, F)`` or list of episodes.
    :param attacked_obs: attacked trace ``(T', F)`` or list of episodes.
    :param feature_names: ``F`` names; default ``"f0", "f1", ...``.
    :param steps_per_day: day length for the null calibration; ``None`` skips it.
    :param permutations: permutations for the MMD tests.
    :param alpha: significance level.
    :param seed: seed for all random draws.
    :param max_samples: row cap per sample for the MMD tests (see :func:`mmd_test`);
        default 2000 keeps a year of hourly data fast. ``None`` uses every row.
    :param null_repeats: number of splits for the null calibration.
    :param block_steps: block length for block (or paired) permutations; ``None``: rows.
    :param paired: with ``block_steps``, swap the clean and attacked copies of each block.
    :param procedure: ``"rlkit"`` (default) or ``"paper"``.
    :param null_split: ``"days"`` (default) or ``"hours"`` (the authors').
    :param difference_mmd: also run the MMD test on absolute first differences.
    :return: the report dict.
    """
    clean_rows, attacked_rows = (
        _pooled(clean_obs, "clean_obs"),
        _pooled(attacked_obs, "attacked_obs"),
    )
    n_feat = clean_rows.shape[1]
    if attacked_rows.shape[1] != n_feat:
        raise ValueError(f"clean has {n_feat} features, attacked has {attacked_rows.shape[1]}")
    _check_choice("null_split", null_split, _SPLITS)
    names = _feature_names(feature_names, n_feat)
    options = _procedure_options(procedure)
    blocks: dict[str, Any] = {}
    if block_steps is not None:
        blocks = {
            "x_blocks": _block_labels(clean_obs, block_steps),
            "y_blocks": _block_labels(attacked_obs, block_steps),
            "paired": paired,
        }
    mmd = mmd_test(
        clean_rows,
        attacked_rows,
        permutations=permutations,
        seed=seed,
        max_samples=max_samples,
        **options,
        **blocks,
    )
    diff = None
    if difference_mmd:
        diff = first_difference_mmd(
            clean_obs,
            attacked_obs,
            permutations=permutations,
            seed=seed,
            max_samples=max_samples,
            procedure=procedure,
        )
    null_d: dict[str, Any] | None = None
    if steps_per_day is not None:
        null = split_by_day_null(
            clean_obs,
            steps_per_day,
            repeats=null_repeats,
            permutations=permutations,
            seed=seed,
            max_samples=max_samples,
            blockwise=block_steps is not None and null_split == "days",
            split=null_split,
            **options,
        )
        null_d = null.to_dict()
        null_d["fraction_below_alpha"] = null.fraction_below(alpha)

    return {
        "alpha": float(alpha),
        "procedure": procedure,
        "n_clean": int(clean_rows.shape[0]),
        "n_attacked": int(attacked_rows.shape[0]),
        "n_features": int(n_feat),
        "feature_names": names,
        "mmd_p_value": float(mmd.p_value),
        "detected": bool(mmd.p_value < alpha),
        "mmd": _with_detected(mmd, alpha),
        "ks": _ks_summary(ks_per_feature(clean_rows, attacked_rows, names), alpha),
        "first_difference": first_difference_check(
            clean_obs, attacked_obs, feature_names=names
        ).to_dict(),
        "first_difference_mmd": None if diff is None else _with_detected(diff, alpha),
        "null": null_d,
    }
