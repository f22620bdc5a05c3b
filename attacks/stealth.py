"""Stealth statistics for observation-perturbation attacks.

These are the detectability checks of the bifurcation-attack stealth analysis
(Broda-Milian, Dagdougui, Al-Mallah 2024): a distribution-level two-sample test
between clean and attacked observation traces, a calibration of that test on
clean data alone, and a time-series plausibility check on consecutive
observations.

* :func:`mmd_test` -- kernel two-sample test (maximum mean discrepancy, Gaussian
  kernel, median-heuristic bandwidth, permutation p-value), after Grosse et al.
  2017 as used by the paper (10,000 permutations, alpha = 0.05).
* :func:`split_by_day_null` -- the paper's null calibration: a clean episode
  split at random, day by day, into two halves that are tested against each
  other, repeatedly.
* :func:`ks_per_feature` -- per-feature two-sample Kolmogorov-Smirnov tests
  (an addition; the paper's code has no KS test).
* :func:`first_difference_check` -- fraction of attacked steps whose
  consecutive-observation change stays, for every feature, within the largest
  change seen in the clean trace (the paper reports 97.6 % for its stealthy
  SAC attack).
* :func:`stealth_report` -- all of the above as one JSON-serialisable dict.

Observation inputs are ``(T, F)`` array-likes (a 1-D ``(T,)`` input is one
feature). Where noted, a list of episodes (each ``(T_i, F)``) or a 3-D
``(E, T, F)`` array is accepted as well; rows are pooled for the
distribution tests, while first differences are taken within episodes only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

__all__ = [
    "FeatureKS",
    "FirstDiffResult",
    "MMDResult",
    "SplitNullResult",
    "first_difference_check",
    "ks_per_feature",
    "median_heuristic",
    "mmd_test",
    "split_by_day_null",
    "stealth_report",
]

Estimator = Literal["biased", "unbiased"]

# Permutation statistics within this absolute distance of the observed one
# count as ties (i.e. as "at least as extreme"), so floating-point summation
# order can never make the test anti-conservative. MMD^2 with a Gaussian
# kernel lies in [0, 2], so this is far below any meaningful difference.
_TIE_TOL = 1e-12
# Upper bound on elements of one (chunk x N) float64 indicator block (32 MiB).
_CHUNK_ELEMS = 1 << 22


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


# --------------------------------------------------------------------------- #
# MMD
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class MMDResult:
    """Outcome of :func:`mmd_test`.

    Attributes:
        mmd2: MMD^2 estimate between the (possibly subsampled) samples.
        p_value: permutation p-value, ``(count + 1) / (permutations + 1)``.
        bandwidth: Gaussian kernel bandwidth sigma that was used.
        n_x: rows of ``x`` used (after subsampling).
        n_y: rows of ``y`` used (after subsampling).
        permutations: number of random permutations drawn.
        estimator: ``"biased"`` or ``"unbiased"``.
    """

    mmd2: float
    p_value: float
    bandwidth: float
    n_x: int
    n_y: int
    permutations: int
    estimator: str = "biased"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields."""
        return asdict(self)


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


def median_heuristic(z: np.ndarray) -> float:
    """Median-heuristic bandwidth of a pooled sample.

    Args:
        z: ``(N, F)`` pooled sample.

    Returns:
        ``sigma = median{ ||z_i - z_j||_2 : i < j }`` (``np.median``, so the mean
        of the two middle values for an even count). If that median is 0 (over
        half the pairs coincide) the mean of the positive distances is used
        instead, and 1.0 if all points coincide.
    """
    z = _as_2d(z, "z")
    return _median_from_sq(_sq_dists(z))


def _median_from_sq(d2: np.ndarray) -> float:
    # The flattened symmetric matrix holds the N zero diagonal entries plus every
    # pair value twice, and pair values are >= 0, so in sorted order pair rank k
    # (1-based) sits at 0-based positions N + 2k - 2 and N + 2k - 1. The pair
    # median is then found with one partial sort and no triangle copy.
    big_n = d2.shape[0]
    n_pairs = big_n * (big_n - 1) // 2
    if n_pairs == 0:
        return 1.0
    # odd count: the middle pair value; even count: the two middle ones (averaged)
    kth = [big_n + n_pairs - 1] if n_pairs % 2 else [big_n + n_pairs - 2, big_n + n_pairs]
    part = np.partition(d2.ravel(), kth)
    sigma = float(np.mean(np.sqrt(part[kth])))
    if sigma > 0.0:
        return sigma
    pos = d2[d2 > 0.0]
    return float(np.sqrt(pos).mean()) if pos.size else 1.0


def _gaussian_kernel(z: np.ndarray, bandwidth: float | None) -> tuple[np.ndarray, float]:
    """Kernel matrix ``exp(-||z_i - z_j||^2 / (2 sigma^2))`` and the sigma used."""
    d2 = _sq_dists(z)
    if bandwidth is None:
        sigma = _median_from_sq(d2)
    else:
        sigma = float(bandwidth)
        if not (sigma > 0.0 and math.isfinite(sigma)):
            raise ValueError(f"bandwidth must be positive and finite, got {bandwidth}")
    d2 *= -1.0 / (2.0 * sigma * sigma)
    np.exp(d2, out=d2)  # in place: d2 is now the kernel matrix
    return d2, sigma


class _KernelStats:
    """MMD^2 for any split of a fixed pooled kernel matrix, from index sums.

    With X the first group (size n), Y the rest (size m), ``S = sum(K)``,
    ``r = K @ 1`` (row sums), ``R_X = sum_{i in X} r_i`` and
    ``A = sum_{i, j in X} K_ij``, the block sums are
    ``sum_XX = A``, ``sum_XY = R_X - A``, ``sum_YY = S - 2 R_X + A``, so only the
    quadratic form ``A`` has to be computed per split (a matmul over a batch of
    0/1 indicator rows).
    """

    def __init__(self, kernel: np.ndarray, estimator: Estimator) -> None:
        if estimator not in ("biased", "unbiased"):
            raise ValueError(f"estimator must be 'biased' or 'unbiased', got {estimator!r}")
        self.k = kernel
        self.estimator = estimator
        self.r = kernel.sum(axis=1)
        self.total = float(self.r.sum())
        self.n_total = kernel.shape[0]

    def from_indicators(self, ind: np.ndarray, n: int | np.ndarray) -> np.ndarray:
        """MMD^2 for each row of ``ind`` (0/1 float64 with ``n`` ones per row; ``n`` may be a
        per-row array when the split sizes differ, as with block permutations)."""
        m = self.n_total - n
        a = np.einsum("ij,ij->i", ind @ self.k, ind)
        rx = ind @ self.r
        xy = rx - a
        yy = self.total - 2.0 * rx + a
        if self.estimator == "biased":
            return a / (n * n) + yy / (m * m) - 2.0 * xy / (n * m)
        # unbiased: drop the diagonal (k(z, z) = 1 for the Gaussian kernel)
        return (a - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - 2.0 * xy / (n * m)

    def direct(self, n: int) -> float:
        """MMD^2 of the split X = first ``n`` rows, from block means (no cancellation)."""
        m = self.n_total - n
        k = self.k
        xx = float(k[:n, :n].sum())
        yy = float(k[n:, n:].sum())
        xy = float(k[:n, n:].sum())
        if self.estimator == "biased":
            return xx / (n * n) + yy / (m * m) - 2.0 * xy / (n * m)
        return (xx - n) / (n * (n - 1)) + (yy - m) / (m * (m - 1)) - 2.0 * xy / (n * m)

    def permutation_stats(self, n: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
        """MMD^2 of ``permutations`` random splits into sizes ``(n, N - n)``.

        Permutation ``k`` assigns to X the ``n`` positions holding the smallest
        of the ``N`` uniforms ``rng.random(N)`` of draw ``k`` (i.e. the first
        ``n`` entries of ``argsort``); draws are taken in chunks, which does not
        change the random stream.
        """
        big_n = self.n_total
        out = np.empty(permutations, dtype=np.float64)
        chunk = max(1, _CHUNK_ELEMS // big_n)
        done = 0
        while done < permutations:
            c = min(chunk, permutations - done)
            u = rng.random((c, big_n))
            sel = np.argpartition(u, n - 1, axis=1)[:, :n]
            ind = np.zeros((c, big_n), dtype=np.float64)
            np.put_along_axis(ind, sel, 1.0, axis=1)
            out[done : done + c] = self.from_indicators(ind, n)
            done += c
        return out


    def block_permutation_stats(self, blocks: np.ndarray, n_x_blocks: int, permutations: int,
                                rng: np.random.Generator) -> np.ndarray:
        """MMD^2 of ``permutations`` random splits that move whole blocks.

        Rows with the same label in ``blocks`` (e.g. one simulated day) stay together: each
        split puts ``n_x_blocks`` randomly chosen blocks into X. Permuting blocks instead of
        rows keeps the dependence between consecutive steps of a time series out of the null.
        """
        labels, row_block = np.unique(blocks, return_inverse=True)
        member = np.zeros((labels.size, self.n_total), dtype=np.float64)
        member[row_block, np.arange(self.n_total)] = 1.0
        out = np.empty(permutations, dtype=np.float64)
        chunk = max(1, _CHUNK_ELEMS // self.n_total)
        done = 0
        while done < permutations:
            c = min(chunk, permutations - done)
            u = rng.random((c, labels.size))
            chosen = np.zeros((c, labels.size), dtype=np.float64)
            np.put_along_axis(chosen, np.argpartition(u, n_x_blocks - 1, axis=1)[:, :n_x_blocks], 1.0, axis=1)
            ind = chosen @ member
            out[done : done + c] = self.from_indicators(ind, ind.sum(axis=1))
            done += c
        return out


    def paired_permutation_stats(self, x_rows: list[np.ndarray], y_rows: list[np.ndarray], permutations: int,
                                 rng: np.random.Generator) -> np.ndarray:
        """MMD^2 of ``permutations`` random swaps within pairs of blocks.

        Pair ``i`` is (rows ``x_rows[i]`` of X, rows ``y_rows[i]`` of Y), e.g. the same day
        clean and attacked; each permutation swaps every pair's two blocks with probability 1/2.
        Differences between pairs (days, seasons) stay out of the null, so the test is
        calibrated and keeps its power on paired time series.
        """
        pairs = len(x_rows)
        member_x = np.zeros((pairs, self.n_total))
        member_y = np.zeros((pairs, self.n_total))
        for i, (xr, yr) in enumerate(zip(x_rows, y_rows, strict=True)):
            member_x[i, xr], member_y[i, yr] = 1.0, 1.0
        out = np.empty(permutations, dtype=np.float64)
        chunk = max(1, _CHUNK_ELEMS // self.n_total)
        done = 0
        while done < permutations:
            c = min(chunk, permutations - done)
            swap = (rng.random((c, pairs)) < 0.5).astype(np.float64)
            ind = (1.0 - swap) @ member_x + swap @ member_y
            out[done : done + c] = self.from_indicators(ind, ind.sum(axis=1))
            done += c
        return out


def _perm_p_value(observed: float, perm: np.ndarray) -> float:
    count = int(np.count_nonzero(perm >= observed - _TIE_TOL))
    return (count + 1) / (perm.size + 1)


def _check_sizes(n: int, m: int, estimator: str) -> None:
    lo = 2 if estimator == "unbiased" else 1
    if n < lo or m < lo:
        raise ValueError(
            f"need at least {lo} rows per sample for the {estimator} MMD, got {n}, {m}"
        )


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
) -> MMDResult:
    """Two-sample kernel MMD permutation test with a Gaussian kernel.

    With ``x_blocks``/``y_blocks`` (a block label per row, e.g. the day of each step) the
    permutations move whole blocks between the samples instead of single rows. Rows of a time
    series are not exchangeable (consecutive steps are alike), and the row-wise test then rejects
    too often; block permutation keeps the test calibrated at the price of power (with B blocks
    in all there are at most C(B, B_x) distinct splits). ``paired=True``: blocks with the same
    label in x and y form a pair (the same day, clean and attacked) and permutations swap the
    two blocks of a pair, so between-day differences stay out of the null (calibrated and
    powerful when the attacked trace replays the clean days).

    Kernel: ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))``. Unless ``bandwidth``
    is given, sigma is the median heuristic over the *pooled* sample: the
    median of the Euclidean distances over all pairs ``i < j`` of the pooled
    rows (see :func:`median_heuristic` for the degenerate-case fallback). The
    bandwidth is fixed once and shared by all permutations.

    Statistic (``estimator="biased"``, the default; the V-statistic):
    ``MMD^2 = mean K_XX + mean K_YY - 2 mean K_XY`` with the diagonals included;
    it is >= 0 and exactly 0 in exact arithmetic when the two samples are the
    same multiset. ``estimator="unbiased"`` (the U-statistic) excludes the
    diagonals of ``K_XX`` and ``K_YY`` and can be negative.

    p-value: the pooled kernel matrix is computed once; each of the
    ``permutations`` random relabellings (uniform random subsets of size n_x of
    the pooled rows, drawn from ``np.random.default_rng(seed)``) is scored
    from index sums of that matrix, vectorised in bounded-memory chunks.
    ``p = (#{perm stat >= observed} + 1) / (permutations + 1)``; ties within
    1e-12 count as exceeding.

    Cost: the kernel matrix takes ``8 N^2`` bytes (``N = n_x + n_y``) and the
    permutations about ``2 * permutations * N^2`` flops (10,000 permutations at
    ``n_x = n_y = 1000`` take a few seconds on two CPU cores). For long traces
    set ``max_samples``.

    Args:
        x: first sample, ``(n, F)`` (or ``(n,)`` for one feature).
        y: second sample, ``(m, F)``.
        permutations: number of random permutations (>= 1).
        bandwidth: Gaussian sigma; ``None`` for the median heuristic.
        seed: seed of the permutation generator.
        max_samples: if set, a sample with more rows is reduced to
            ``max_samples`` rows deterministically, by evenly spaced indices
            ``floor(k * n / max_samples)``, ``k = 0..max_samples-1`` (this keeps
            the whole time span of a trace). ``None`` uses all rows.
        estimator: ``"biased"`` (default) or ``"unbiased"``.

    Returns:
        An :class:`MMDResult`.
    """
    xa = _as_2d(x, "x")
    ya = _as_2d(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x has {xa.shape[1]} features, y has {ya.shape[1]}")
    if permutations < 1:
        raise ValueError("permutations must be >= 1")
    if (x_blocks is None) != (y_blocks is None):
        raise ValueError("give both x_blocks and y_blocks, or neither")
    xb = None if x_blocks is None else np.asarray(x_blocks).reshape(-1)
    yb = None if y_blocks is None else np.asarray(y_blocks).reshape(-1)
    if xb is not None and (xb.size != xa.shape[0] or yb.size != ya.shape[0]):
        raise ValueError("x_blocks / y_blocks need one label per row of x / y")
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError("max_samples must be >= 1")
        if xa.shape[0] > max_samples:
            keep = _even_subsample(xa.shape[0], max_samples)
            xa, xb = xa[keep], None if xb is None else xb[keep]
        if ya.shape[0] > max_samples:
            keep = _even_subsample(ya.shape[0], max_samples)
            ya, yb = ya[keep], None if yb is None else yb[keep]
    n, m = xa.shape[0], ya.shape[0]
    _check_sizes(n, m, estimator)

    kernel, sigma = _gaussian_kernel(np.concatenate([xa, ya], axis=0), bandwidth)
    ks = _KernelStats(kernel, estimator)
    observed = ks.direct(n)
    rng = np.random.default_rng(seed)
    if xb is None:
        perm = ks.permutation_stats(n, permutations, rng)
    elif paired:
        common = np.intersect1d(xb, yb)
        if common.size != np.union1d(xb, yb).size:
            raise ValueError("paired blocks need the same block labels in x and y")
        x_rows = [np.flatnonzero(xb == b) for b in common]
        y_rows = [n + np.flatnonzero(yb == b) for b in common]
        perm = ks.paired_permutation_stats(x_rows, y_rows, permutations, rng)
    else:  # labels made distinct per side: a block never mixes the two samples
        _, x_ids = np.unique(xb, return_inverse=True)
        _, y_ids = np.unique(yb, return_inverse=True)
        labels = np.concatenate([x_ids, x_ids.max() + 1 + y_ids])
        perm = ks.block_permutation_stats(labels, int(x_ids.max()) + 1, permutations, rng)
    p = _perm_p_value(observed, perm)
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
    )


# --------------------------------------------------------------------------- #
# null calibration
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class SplitNullResult:
    """Outcome of :func:`split_by_day_null`.

    Attributes:
        p_values: one MMD permutation p-value per random day split.
        mmd2: the matching MMD^2 statistics.
        bandwidth: the Gaussian sigma (median heuristic over the whole episode
            unless given), shared by all splits.
        n_days: number of day blocks (a trailing partial day counts as one).
        n_samples: rows used (after subsampling).
        permutations: permutations per p-value.
        mean_p: mean of ``p_values`` (paper: 0.69 PPO, 0.74 SAC).
        median_p: median of ``p_values``.
        min_p: minimum of ``p_values``.
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

    def fraction_below(self, alpha: float = 0.05) -> float:
        """Fraction of splits with ``p < alpha`` (the test's false-alarm rate).

        Args:
            alpha: significance level.
        """
        return float(np.mean(np.asarray(self.p_values) < alpha))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields."""
        return asdict(self)


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
) -> SplitNullResult:
    """Null calibration of :func:`mmd_test` on clean data, as in the paper.

    ``blockwise=True`` scores each split against day-block permutations (as
    ``mmd_test(..., x_blocks=..., y_blocks=...)`` does) instead of row permutations.

    The clean trace is cut into day blocks of ``steps_per_day`` consecutive
    steps (a trailing partial day is its own block; with a list of episodes,
    blocks never span episodes). Each repeat shuffles the blocks and puts the
    first ``n_days // 2`` into X and the rest into Y, then runs the MMD
    permutation test between X and Y. Because every split pools the same rows,
    the kernel matrix and median-heuristic bandwidth are computed once, and the
    permutation reference distribution (which depends only on the pooled rows
    and the size of X) is drawn once per distinct size of X and shared by the
    repeats: each p-value is a valid permutation p-value, but the p-values of
    different repeats are dependent through that shared draw. Day blocks keep
    each half's daily cycles intact, so on strongly periodic data the halves
    resemble each other more than random row sets do and the p-values sit
    above uniform (paper: mean 0.69-0.74 over ~100 splits).

    Args:
        obs: clean trace ``(T, F)``, or a list of episodes.
        steps_per_day: steps per day block (24 for hourly data).
        repeats: number of random day splits.
        permutations: permutations per test.
        seed: seed for the day splits and the permutations.
        bandwidth: Gaussian sigma; ``None`` for the median heuristic.
        max_samples: if the trace has more than ``2 * max_samples`` rows, each
            day keeps the same number of evenly spaced rows
            (``max(1, 2 * max_samples // n_days)``; a partial day
            proportionally fewer) so each half has about ``max_samples`` rows.
        estimator: ``"biased"`` (default) or ``"unbiased"`` MMD^2.

    Returns:
        A :class:`SplitNullResult`.
    """
    if steps_per_day < 1:
        raise ValueError("steps_per_day must be >= 1")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    if permutations < 1:
        raise ValueError("permutations must be >= 1")
    eps = _episodes(obs, "obs")
    days = [e[s : s + steps_per_day] for e in eps for s in range(0, e.shape[0], steps_per_day)]
    days = [d for d in days if d.shape[0] > 0]
    n_days = len(days)
    if n_days < 2:
        raise ValueError(f"need at least 2 day blocks, got {n_days}")
    total = sum(d.shape[0] for d in days)
    if max_samples is not None:
        if max_samples < 1:
            raise ValueError("max_samples must be >= 1")
        if total > 2 * max_samples:
            keep = max(1, (2 * max_samples) // n_days)
            sub = []
            for d in days:
                k = max(1, min(d.shape[0], (keep * d.shape[0]) // steps_per_day))
                sub.append(d[_even_subsample(d.shape[0], k)])
            days = sub
    sizes = np.array([d.shape[0] for d in days], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    z = np.concatenate(days, axis=0)
    big_n = z.shape[0]

    kernel, sigma = _gaussian_kernel(z, bandwidth)
    ks = _KernelStats(kernel, estimator)
    split_ss, perm_ss = np.random.SeedSequence(seed).spawn(2)
    split_rng = np.random.default_rng(split_ss)
    perm_rng = np.random.default_rng(perm_ss)
    reference: dict[int, np.ndarray] = {}
    half = n_days // 2

    p_values: list[float] = []
    mmd2: list[float] = []
    for _ in range(repeats):
        chosen = split_rng.permutation(n_days)[:half]
        ind = np.zeros((1, big_n), dtype=np.float64)
        for d in chosen:
            ind[0, starts[d] : starts[d] + sizes[d]] = 1.0
        n = int(sizes[chosen].sum())
        _check_sizes(n, big_n - n, estimator)
        observed = float(ks.from_indicators(ind, n)[0])
        key = -1 if blockwise else n
        if key not in reference:
            reference[key] = (
                ks.block_permutation_stats(np.repeat(np.arange(n_days), sizes), half, permutations, perm_rng)
                if blockwise
                else ks.permutation_stats(n, permutations, perm_rng)
            )
        p_values.append(_perm_p_value(observed, reference[key]))
        mmd2.append(max(observed, 0.0) if estimator == "biased" else observed)

    pv = np.asarray(p_values)
    return SplitNullResult(
        p_values=[float(p) for p in p_values],
        mmd2=[float(v) for v in mmd2],
        bandwidth=float(sigma),
        n_days=n_days,
        n_samples=int(big_n),
        permutations=int(permutations),
        mean_p=float(pv.mean()),
        median_p=float(np.median(pv)),
        min_p=float(pv.min()),
    )


# --------------------------------------------------------------------------- #
# KS
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FeatureKS:
    """Two-sample KS result for one feature.

    Attributes:
        feature: feature name.
        statistic: KS statistic (sup-distance between the empirical CDFs).
        p_value: two-sided p-value (1.0 when both samples are the same constant).
    """

    feature: str
    statistic: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict of the fields."""
        return asdict(self)


def ks_per_feature(x: Any, y: Any, feature_names: Sequence[str] | None = None) -> list[FeatureKS]:
    """Per-feature two-sample Kolmogorov-Smirnov tests (``scipy.stats.ks_2samp``).

    A feature that takes one single value in both samples gets statistic 0 and
    p-value 1 (scipy is not called). A feature constant within each sample but
    at different values is a genuine difference and is tested normally. The
    p-values are scipy's ``method="auto"`` ones (exact for small samples,
    asymptotic otherwise) and are not corrected for multiple testing, nor for
    the serial correlation of time-series rows.

    Args:
        x: first sample ``(n, F)``, or a list of episodes (rows are pooled).
        y: second sample ``(m, F)``, or a list of episodes.
        feature_names: ``F`` names; default ``"f0", "f1", ...``.

    Returns:
        One :class:`FeatureKS` per feature, in column order.
    """
    xa = _pooled(x, "x")
    ya = _pooled(y, "y")
    if xa.shape[1] != ya.shape[1]:
        raise ValueError(f"x has {xa.shape[1]} features, y has {ya.shape[1]}")
    if xa.shape[0] < 1 or ya.shape[0] < 1:
        raise ValueError("both samples need at least one row")
    names = _feature_names(feature_names, xa.shape[1])
    out: list[FeatureKS] = []
    for j, name in enumerate(names):
        a, b = xa[:, j], ya[:, j]
        v = a[0]
        if np.all(a == v) and np.all(b == v):
            out.append(FeatureKS(name, 0.0, 1.0))
            continue
        with warnings.catch_warnings():
            # large samples: scipy falls back from the exact to the asymptotic p-value
            warnings.filterwarnings("ignore", message=".*Exact calculation unsuccessful.*")
            res = sps.ks_2samp(a, b)
        out.append(FeatureKS(name, float(res.statistic), float(min(1.0, res.pvalue))))
    return out


# --------------------------------------------------------------------------- #
# first differences
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class FirstDiffResult:
    """Outcome of :func:`first_difference_check`.

    Attributes:
        fraction_within: fraction of attacked steps (first differences) whose
            absolute change stays ``<= clean_max + atol`` for every feature
            (paper: 0.976 for its stealthy SAC attack). 1.0 if there are none.
        n_steps: number of attacked first differences (summed over episodes).
        n_steps_exceeding: steps with at least one feature out of range.
        exceedances: per-feature number of steps out of range.
        clean_max: per-feature maximum absolute first difference of the clean trace.
        attacked_max: per-feature maximum absolute first difference of the attacked trace.
        steps_by_n_exceeded: entry ``k`` is the number of steps with exactly
            ``k`` features out of range (length ``F + 1``).
        feature_names: feature names.
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

    Args:
        clean_obs: clean trace ``(T, F)``, a list of episodes, or ``(E, T, F)``.
        attacked_obs: attacked trace(s), same feature layout.
        feature_names: ``F`` names; default ``"f0", "f1", ...``.
        atol: absolute slack added to the clean maxima (default 0: strict).

    Returns:
        A :class:`FirstDiffResult`.
    """
    clean = _episodes(clean_obs, "clean_obs")
    attacked = _episodes(attacked_obs, "attacked_obs")
    n_feat = clean[0].shape[1]
    if attacked[0].shape[1] != n_feat:
        raise ValueError(f"clean has {n_feat} features, attacked has {attacked[0].shape[1]}")
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
    frac = 1.0 if n_steps == 0 else 1.0 - n_exc / n_steps
    attacked_max = da.max(axis=0) if n_steps else np.zeros(n_feat)
    return FirstDiffResult(
        fraction_within=float(frac),
        n_steps=n_steps,
        n_steps_exceeding=n_exc,
        exceedances=[int(c) for c in exceed.sum(axis=0)],
        clean_max=[float(v) for v in clean_max],
        attacked_max=[float(v) for v in attacked_max],
        steps_by_n_exceeded=[int(c) for c in np.bincount(per_step, minlength=n_feat + 1)],
        feature_names=names,
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
) -> dict[str, Any]:
    """All stealth statistics for one clean/attacked pair, as a JSON-ready dict.

    ``block_steps`` (e.g. the steps of one day): the MMD test and the null calibration permute
    whole blocks of that many consecutive steps of an episode instead of single steps, which keeps
    the test calibrated on time series (see :func:`mmd_test`). ``paired=True`` (with
    ``block_steps``): the attacked episodes replay the clean ones, block i of both is a pair.

    Contents (plain ``float``/``int``/``bool``/``str``/``list``/``dict``/``None``):

    * ``mmd``: :class:`MMDResult` fields plus ``detected = p_value < alpha``
      (clean vs attacked rows, pooled over episodes); ``mmd_p_value`` and
      ``detected`` are repeated at top level.
    * ``ks``: ``n_significant`` (features with ``p < alpha``),
      ``n_significant_bonferroni`` (``p < alpha / F``), ``min_p_value``,
      ``min_p_feature`` and ``features`` (per-feature statistic and p-value).
    * ``first_difference``: :class:`FirstDiffResult` fields
      (``fraction_within`` is the paper's 97.6 % figure).
    * ``null``: when ``steps_per_day`` is given, :func:`split_by_day_null` on
      the clean trace (``mean_p``, ``median_p``, ``min_p``,
      ``fraction_below_alpha``, ``p_values``, ...); otherwise ``None``.

    Args:
        clean_obs: clean trace ``(T, F)`` or list of episodes.
        attacked_obs: attacked trace ``(T', F)`` or list of episodes.
        feature_names: ``F`` names; default ``"f0", "f1", ...``.
        steps_per_day: day length for the null calibration; ``None`` skips it.
        permutations: permutations for the MMD tests.
        alpha: significance level.
        seed: seed for all random draws.
        max_samples: row cap per sample for the MMD tests (see
            :func:`mmd_test`); default 2000 keeps a year of hourly data fast.
            ``None`` uses every row.
        null_repeats: number of day splits for the null calibration.

    Returns:
        The report dict.
    """
    clean_rows = _pooled(clean_obs, "clean_obs")
    attacked_rows = _pooled(attacked_obs, "attacked_obs")
    n_feat = clean_rows.shape[1]
    if attacked_rows.shape[1] != n_feat:
        raise ValueError(f"clean has {n_feat} features, attacked has {attacked_rows.shape[1]}")
    names = _feature_names(feature_names, n_feat)

    blocks: dict[str, Any] = {}
    if block_steps is not None:
        blocks = {"x_blocks": _block_labels(clean_obs, block_steps), "y_blocks": _block_labels(attacked_obs, block_steps)}
    mmd = mmd_test(
        clean_rows,
        attacked_rows,
        permutations=permutations,
        seed=seed,
        max_samples=max_samples,
        paired=paired and block_steps is not None,
        **blocks,
    )
    mmd_d = mmd.to_dict()
    mmd_d["detected"] = bool(mmd.p_value < alpha)

    ks = ks_per_feature(clean_rows, attacked_rows, names)
    ks_p = np.array([r.p_value for r in ks])
    imin = int(np.argmin(ks_p))
    ks_d = {
        "n_significant": int(np.count_nonzero(ks_p < alpha)),
        "n_significant_bonferroni": int(np.count_nonzero(ks_p < alpha / n_feat)),
        "min_p_value": float(ks_p[imin]),
        "min_p_feature": ks[imin].feature,
        "features": [r.to_dict() for r in ks],
    }

    fd = first_difference_check(clean_obs, attacked_obs, feature_names=names)

    null_d: dict[str, Any] | None = None
    if steps_per_day is not None:
        null = split_by_day_null(
            clean_obs,
            steps_per_day,
            repeats=null_repeats,
            permutations=permutations,
            seed=seed,
            max_samples=max_samples,
            blockwise=block_steps is not None,
        )
        null_d = null.to_dict()
        null_d["fraction_below_alpha"] = null.fraction_below(alpha)

    return {
        "alpha": float(alpha),
        "n_clean": int(clean_rows.shape[0]),
        "n_attacked": int(attacked_rows.shape[0]),
        "n_features": int(n_feat),
        "feature_names": names,
        "mmd_p_value": float(mmd.p_value),
        "detected": bool(mmd_d["detected"]),
        "mmd": mmd_d,
        "ks": ks_d,
        "first_difference": fd.to_dict(),
        "null": null_d,
    }
